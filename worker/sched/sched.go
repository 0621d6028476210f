// Package sched is the engine that fires a million watches on one node:
// each entry has a cron schedule (robfig/cron/v3's parser, via the caller)
// and a stable per-entry phase, and a 4-ary heap of fire times drives one
// timer. Fires go to a bounded pool of workers under per-provider and
// per-user concurrency limits; a run never overlaps the same entry's
// previous run (a fire meanwhile is coalesced into one run after it);
// after downtime a missed entry runs once, spread over a catch-up window.
//
// An Engine is safe for concurrent use. Run owns every goroutine the engine
// starts and returns after they have all ended.
package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Reason says why a job runs.
type Reason uint8

// Reasons of a Fire.
const (
	// Scheduled: the entry's schedule came due.
	Scheduled Reason = iota
	// CatchUp: the entry missed fires while the engine was not running (or
	// never ran) and runs once, within the catch-up window.
	CatchUp
	// Manual: RunNow asked for it.
	Manual
	// Coalesced: the entry came due while its previous run was going on;
	// this one run stands for every such fire.
	Coalesced
)

func (r Reason) String() string {
	switch r {
	case Scheduled:
		return "scheduled"
	case CatchUp:
		return "catch_up"
	case Manual:
		return "manual"
	case Coalesced:
		return "coalesced"
	}
	return "unknown"
}

// Fire is one run of an entry, handed to Config.Job.
type Fire struct {
	Key string
	// Scheduled is when the run was due; the job's start minus Scheduled
	// is the fire lag (queueing for limits included).
	Scheduled time.Time
	Reason    Reason
}

// ScheduledNano is Scheduled as Unix nanoseconds, without the conversion.
func (f Fire) ScheduledNano() int64 { return f.Scheduled.UnixNano() }

// Config configures an Engine. The zero value of each field is its
// default.
type Config struct {
	// Job runs one fire. Required. It runs on a worker goroutine; a panic
	// is recovered and logged. ctx ends when Run's context does.
	Job func(ctx context.Context, f Fire)
	// Workers bounds the jobs running at once; default 32.
	Workers int
	// PerProviderConcurrency bounds the jobs of one provider running at
	// once; default 64.
	PerProviderConcurrency int
	// PerUserConcurrency bounds the jobs of one user running at once;
	// default 1.
	PerUserConcurrency int
	// CatchUpWindow spreads the runs of entries that missed fires (or never
	// ran) when they are added; default 5 min.
	CatchUpWindow time.Duration
	// MaxPhase caps the phase offset of cron-expression schedules, which
	// have a wall-clock meaning; default 5 min. `@every` schedules have
	// none and are spread over their whole interval.
	MaxPhase time.Duration
	// Resolution is the shortest sleep of the timer loop: fires due within
	// it are dispatched together, trading at most that much lag for fewer
	// wake-ups; default 2 ms.
	Resolution time.Duration
	// MinInterval is the least time between two timed fires of one entry:
	// a schedule that comes due sooner (one stored before a floor was set,
	// a daylight-saving change) is held to it. Zero: no floor. RunNow is
	// not held.
	MinInterval time.Duration
	// Parse parses schedules; default CheckSchedule with no minimum
	// interval (robfig/cron/v3 with optional seconds and descriptors; a
	// schedule that never fires is refused, no input panics).
	Parse  func(spec string) (cron.Schedule, error)
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ErrUnknown means no entry has the key.
var ErrUnknown = errors.New("sched: unknown entry")

// Entry is what the engine needs to know of a watch.
type Entry struct {
	Key      string
	User     string
	Provider string
	Schedule string
	// LastRun is when the entry last ran (zero: never). When added, an entry
	// whose schedule came due after LastRun (or that never ran) runs once
	// within the catch-up window instead of waiting for its next fire.
	LastRun time.Time
}

const (
	flagRunning uint8 = 1 << iota
	flagPending       // came due while running: run once more after
	flagQueued        // waiting in a limit queue
	flagLive          // slot in use
	flagCatchUp       // the next timed fire is a catch-up
)

// entry is one scheduled watch: 48 bytes plus its key.
type entry struct {
	key   string
	user  uint64 // hash of the user id: only compared, for limits
	next  int64  // Unix ns of the next fire; math.MaxInt64: never
	gen   uint32 // bumped when the slot is reused
	spec  uint32
	heap  int32 // position in the heap, -1 when not in it
	prov  uint16
	flags uint8
}

type specInfo struct {
	text  string
	sched cron.Schedule
	every int64 // ns, for @every schedules
	cap   int64 // phase cap, ns
	refs  int
}

type queued struct {
	idx       int32
	gen       uint32
	scheduled int64
	reason    Reason
}

type job struct {
	idx int32
	gen uint32
	f   Fire
}

// Stats are the engine's counters.
type Stats struct {
	Entries   int
	Running   int
	Queued    int
	Fires     uint64
	Coalesced uint64
	Panics    uint64
}

// Engine schedules entries. Create it with New.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	seed maphash.Seed

	mu       sync.Mutex
	entries  []entry
	free     []int32
	index    map[string]int32
	heap     fireHeap
	specs    []specInfo
	specIdx  map[string]uint32
	specFree []uint32
	provs    []string
	provIdx  map[string]uint16

	active    int
	provCount []int
	userCount map[uint64]int
	waitAll   []queued
	waitProv  [][]queued
	waitUser  map[uint64][]queued
	stats     Stats

	jobs    chan job
	wake    chan struct{}
	running bool
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Job == nil {
		return nil, errors.New("sched: Config.Job is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.PerProviderConcurrency <= 0 {
		cfg.PerProviderConcurrency = 64
	}
	if cfg.PerUserConcurrency <= 0 {
		cfg.PerUserConcurrency = 1
	}
	if cfg.CatchUpWindow <= 0 {
		cfg.CatchUpWindow = 5 * time.Minute
	}
	if cfg.MaxPhase <= 0 {
		cfg.MaxPhase = 5 * time.Minute
	}
	if cfg.Resolution <= 0 {
		cfg.Resolution = 2 * time.Millisecond
	}
	if cfg.Parse == nil {
		cfg.Parse = func(spec string) (cron.Schedule, error) { return CheckSchedule(spec, 0) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{cfg: cfg, log: cfg.Logger, seed: maphash.MakeSeed(), index: map[string]int32{},
		specIdx: map[string]uint32{}, provIdx: map[string]uint16{}, userCount: map[uint64]int{},
		waitUser: map[uint64][]queued{}, jobs: make(chan job, cfg.Workers), wake: make(chan struct{}, 1)}, nil
}

func (e *Engine) now() int64 { return e.cfg.Now().UnixNano() }

// phase is the entry's stable offset: the same key always gets the same
// one, so watches sharing a schedule fire spread out, and restarts do not
// move them.
func phase(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return h.Sum64()
}

// fireAfter returns the entry's first fire time strictly after t.
func (e *Engine) fireAfter(en *entry, t int64) int64 {
	s := &e.specs[en.spec]
	ph := int64(phase(en.key) % uint64(s.cap))
	if s.every > 0 {
		d := s.every
		x := t - ph
		k := x / d
		if x < 0 && x%d != 0 {
			k--
		}
		return (k+1)*d + ph
	}
	next := s.sched.Next(time.Unix(0, t-ph))
	if next.IsZero() {
		return math.MaxInt64
	}
	return next.UnixNano() + ph
}

func (e *Engine) internSpec(text string) (uint32, error) {
	if i, ok := e.specIdx[text]; ok {
		e.specs[i].refs++
		return i, nil
	}
	s, err := e.cfg.Parse(text)
	if err != nil {
		return 0, fmt.Errorf("sched: schedule %q: %w", text, err)
	}
	info := specInfo{text: text, sched: s, refs: 1}
	if cd, ok := s.(cron.ConstantDelaySchedule); ok {
		info.every = int64(cd.Delay)
		info.cap = info.every
	} else {
		// The gap between two fires tells the schedule's period; the phase
		// stays below it so fires keep their order.
		now := time.Now()
		a := s.Next(now)
		b := s.Next(a)
		period := b.Sub(a)
		info.cap = int64(min(e.cfg.MaxPhase, period))
		if a.IsZero() || b.IsZero() || period <= 0 {
			info.cap = int64(time.Second)
		}
	}
	if info.cap <= 0 {
		info.cap = 1
	}
	if n := len(e.specFree); n > 0 { // reuse a slot no entry refers to
		i := e.specFree[n-1]
		e.specFree = e.specFree[:n-1]
		e.specs[i] = info
		e.specIdx[text] = i
		return i, nil
	}
	e.specs = append(e.specs, info)
	e.specIdx[text] = uint32(len(e.specs) - 1)
	return uint32(len(e.specs) - 1), nil
}

// releaseSpec drops a reference to a schedule, freeing it at zero.
func (e *Engine) releaseSpec(i uint32) {
	if e.specs[i].refs--; e.specs[i].refs == 0 {
		delete(e.specIdx, e.specs[i].text)
		e.specs[i] = specInfo{}
		e.specFree = append(e.specFree, i)
	}
}

func (e *Engine) internProv(name string) uint16 {
	if i, ok := e.provIdx[name]; ok {
		return i
	}
	e.provs = append(e.provs, name)
	e.provCount = append(e.provCount, 0)
	e.waitProv = append(e.waitProv, nil)
	i := uint16(len(e.provs) - 1)
	e.provIdx[name] = i
	return i
}

// Upsert adds an entry or changes one. A changed schedule takes effect at
// once (the next fire is computed from now); an unchanged entry is left
// alone. It returns an error for a schedule the parser refuses.
func (e *Engine) Upsert(en Entry) error {
	if en.Key == "" {
		return errors.New("sched: upsert: empty key")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	user := maphash.String(e.seed, en.User)
	prov := e.internProv(en.Provider)
	now := e.now()
	if i, ok := e.index[en.Key]; ok {
		cur := &e.entries[i]
		if e.specs[cur.spec].text == en.Schedule {
			cur.user, cur.prov = user, prov
			return nil
		}
		spec, err := e.internSpec(en.Schedule)
		if err != nil {
			return err
		}
		e.releaseSpec(cur.spec)
		cur.spec, cur.user, cur.prov = spec, user, prov
		e.setNext(i, e.fireAfter(cur, now))
		return nil
	}
	spec, err := e.internSpec(en.Schedule)
	if err != nil {
		return err
	}
	var i int32
	if n := len(e.free); n > 0 {
		i = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		e.entries = append(e.entries, entry{})
		i = int32(len(e.entries) - 1)
	}
	gen := e.entries[i].gen + 1
	key := string([]byte(en.Key)) // own the bytes: callers' strings may be views of bigger buffers
	e.entries[i] = entry{key: key, user: user, spec: spec, prov: prov, gen: gen, heap: -1, flags: flagLive}
	e.index[key] = i
	cur := &e.entries[i]
	var next int64
	last := en.LastRun.UnixNano()
	next = e.fireAfter(cur, now)
	if (en.LastRun.IsZero() || e.fireAfter(cur, last) <= now) && next > now+int64(e.cfg.CatchUpWindow) {
		// Missed (or never ran), and the schedule does not come due within
		// the catch-up window: once, spread over the window.
		next = now + int64(phase(key)>>1%uint64(e.cfg.CatchUpWindow))
		cur.flags |= flagCatchUp
	}
	e.setNext(i, next)
	return nil
}

func (e *Engine) setNext(i int32, next int64) {
	en := &e.entries[i]
	en.next = next
	switch {
	case next == math.MaxInt64 && en.heap >= 0:
		e.heap.remove(e, int(en.heap))
	case next == math.MaxInt64:
	case en.heap >= 0:
		e.heap.items[en.heap].next = next
		e.heap.fix(e, int(en.heap))
	default:
		e.heap.push(e, item{next: next, idx: i})
	}
	if e.heap.len() > 0 && e.heap.items[0].idx == i {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// SetMinInterval changes Config.MinInterval (a configuration reload): the
// floor applies from each entry's next fire on. Safe for concurrent use.
func (e *Engine) SetMinInterval(d time.Duration) {
	e.mu.Lock()
	e.cfg.MinInterval = max(d, 0)
	e.mu.Unlock()
}

// Remove deletes an entry; a run in progress finishes. It reports whether
// the key existed.
func (e *Engine) Remove(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.index[key]
	if !ok {
		return false
	}
	en := &e.entries[i]
	if en.heap >= 0 {
		e.heap.remove(e, int(en.heap))
	}
	e.releaseSpec(en.spec)
	delete(e.index, key)
	running := en.flags&flagRunning != 0
	*en = entry{gen: en.gen + 1, heap: -1, user: en.user, prov: en.prov}
	if running {
		// The slot is freed when the run ends, so its counters stay right.
		en.flags = flagRunning
	} else {
		e.free = append(e.free, i)
	}
	return true
}

// Keys calls fn with every key (under the engine's lock: fn must not call
// the engine).
func (e *Engine) Keys(fn func(key string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.index {
		fn(k)
	}
}

// Next returns an entry's next fire time (zero when it has none) and
// whether a run of it is going on.
func (e *Engine) Next(key string) (next time.Time, running bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.index[key]
	if !ok {
		return time.Time{}, false, ErrUnknown
	}
	en := &e.entries[i]
	if en.next != math.MaxInt64 {
		next = time.Unix(0, en.next)
	}
	return next, en.flags&flagRunning != 0, nil
}

// FireFrom returns the first fire of an entry's schedule at or after t
// (zero when the schedule has none): when a run held until t (a rate
// limit) next asks its provider.
func (e *Engine) FireFrom(key string, t time.Time) (time.Time, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.index[key]
	if !ok {
		return time.Time{}, ErrUnknown
	}
	next := e.fireAfter(&e.entries[i], t.UnixNano()-1)
	if next == math.MaxInt64 {
		return time.Time{}, nil
	}
	return time.Unix(0, next), nil
}

// RunNow runs an entry as soon as the limits allow (after its current run,
// if one is going on).
func (e *Engine) RunNow(key string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.index[key]
	if !ok {
		return ErrUnknown
	}
	e.dispatch(i, e.now(), Manual)
	return nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Entries = len(e.index)
	s.Running = e.active
	s.Queued = len(e.waitAll)
	for _, q := range e.waitProv {
		s.Queued += len(q)
	}
	for _, q := range e.waitUser {
		s.Queued += len(q)
	}
	return s
}

// dispatch starts a run of entry i or, when a limit is reached, queues it.
// A fire of an entry already running or queued is coalesced.
func (e *Engine) dispatch(i int32, scheduled int64, reason Reason) {
	en := &e.entries[i]
	e.stats.Fires++
	if en.flags&(flagRunning|flagQueued) != 0 {
		if en.flags&flagRunning != 0 {
			en.flags |= flagPending
		}
		e.stats.Coalesced++
		return
	}
	e.tryStart(queued{idx: i, gen: en.gen, scheduled: scheduled, reason: reason})
}

// tryStart starts q or queues it behind the limit that holds it; it
// reports whether q started.
func (e *Engine) tryStart(q queued) bool {
	en := &e.entries[q.idx]
	if en.gen != q.gen || en.flags&flagLive == 0 {
		return true // removed meanwhile: nothing to do
	}
	en.flags &^= flagQueued
	switch {
	case !e.running || e.active >= e.cfg.Workers:
		e.waitAll = append(e.waitAll, q)
	case e.provCount[en.prov] >= e.cfg.PerProviderConcurrency:
		e.waitProv[en.prov] = append(e.waitProv[en.prov], q)
	case e.userCount[en.user] >= e.cfg.PerUserConcurrency:
		e.waitUser[en.user] = append(e.waitUser[en.user], q)
	default:
		en.flags = en.flags&^flagQueued | flagRunning
		e.active++
		e.provCount[en.prov]++
		e.userCount[en.user]++
		e.jobs <- job{idx: q.idx, gen: q.gen, f: Fire{Key: en.key, Scheduled: time.Unix(0, q.scheduled), Reason: q.reason}}
		return true
	}
	en.flags |= flagQueued
	return false
}

// done ends a run of entry i and lets queued runs start.
func (e *Engine) done(j job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en := &e.entries[j.idx]
	prov, user := en.prov, en.user
	e.active--
	e.provCount[prov]--
	if e.userCount[user]--; e.userCount[user] <= 0 {
		delete(e.userCount, user)
	}
	en.flags &^= flagRunning
	if en.gen != j.gen { // removed while running: free the slot now
		en.flags = 0
		e.free = append(e.free, j.idx)
	} else if en.flags&flagPending != 0 {
		en.flags &^= flagPending
		e.tryStart(queued{idx: j.idx, gen: en.gen, scheduled: e.now(), reason: Coalesced})
	}
	if q := e.waitUser[user]; len(q) > 0 {
		e.waitUser[user] = q[1:]
		if len(q) == 1 {
			delete(e.waitUser, user)
		}
		e.tryStart(q[0])
	}
	e.drain(&e.waitProv[prov])
	e.drain(&e.waitAll)
}

// drain starts queued runs in order until one is held again.
func (e *Engine) drain(q *[]queued) {
	for len(*q) > 0 {
		head := (*q)[0]
		*q = (*q)[1:]
		before := len(*q)
		if !e.tryStart(head) && len(*q) > before {
			// Held by the same limit: put it back in front.
			*q = (*q)[:before]
			*q = append([]queued{head}, *q...)
			return
		}
	}
	if cap(*q) > 1024 && len(*q) == 0 {
		*q = nil
	}
}

// Run fires entries until ctx ends, then waits for the runs in progress
// (their ctx ends too) and returns nil. It must be called once.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("sched: Run called twice")
	}
	e.running = true
	e.drain(&e.waitAll)
	e.mu.Unlock()

	var wg sync.WaitGroup
	for w := 0; w < e.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range e.jobs {
				e.runJob(ctx, j)
			}
		}()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := max(e.fireDue(), e.cfg.Resolution)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.running = false
			close(e.jobs)
			e.mu.Unlock()
			wg.Wait()
			return nil
		case <-timer.C:
		case <-e.wake:
		}
	}
}

// fireDue dispatches every entry that is due and returns how long until
// the next one is.
func (e *Engine) fireDue() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	for e.heap.len() > 0 && e.heap.items[0].next <= now {
		i := e.heap.items[0].idx
		en := &e.entries[i]
		scheduled := en.next
		reason := Scheduled
		if en.flags&flagCatchUp != 0 {
			en.flags &^= flagCatchUp
			reason = CatchUp
		}
		next := e.fireAfter(en, scheduled)
		if next <= now {
			next = e.fireAfter(en, now) // missed ticks fold into this fire
		}
		if floor := int64(e.cfg.MinInterval); floor > 0 && next-scheduled < floor && next != math.MaxInt64 {
			next = e.fireAfter(en, scheduled+floor-1)
		}
		en.next = next
		if next == math.MaxInt64 {
			e.heap.remove(e, 0)
		} else {
			e.heap.items[0].next = next
			e.heap.down(e, 0)
		}
		e.dispatch(i, scheduled, reason)
	}
	if e.heap.len() == 0 {
		return time.Hour
	}
	return time.Duration(e.heap.items[0].next - now)
}

func (e *Engine) runJob(ctx context.Context, j job) {
	defer e.done(j)
	defer func() {
		if r := recover(); r != nil {
			e.mu.Lock()
			e.stats.Panics++
			e.mu.Unlock()
			e.log.Error("sched job panicked", "key", j.f.Key, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	e.cfg.Job(ctx, j.f)
}
