// Package sched is the engine that fires a million watches on one node:
// each entry has a cron schedule (robfig/cron/v3's parser, via the caller)
// and a stable per-entry phase, and a 4-ary heap of fire times drives one
// timer. Fires go to a bounded pool of workers under per-provider and
// per-user concurrency limits; a run never overlaps the same entry's
// previous run (a fire meanwhile is coalesced into one run after it);
// after downtime a missed entry runs once, spread over a catch-up window.
//
// Cost (cmd/tagwatch-bench sched): the entries hold no pointers (keys in
// one byte arena, an open-addressing key table, a heap of plain items), so
// a garbage collection does not scan them; an `@every` fire's next time is
// the previous one plus the interval. There is no timer goroutine: the idle
// workers wait on one ticker (period Config.Resolution while fires are due
// that soon), and the one a tick wakes dispatches every due fire and runs
// them itself, so a pass of cheap runs costs one wake-up, not one per run;
// slow runs get more workers at the next pass (run.go).
//
// An Engine is safe for concurrent use. Run owns every goroutine the engine
// starts and returns after they have all ended.
package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
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

// Entry flags.
const (
	flagRunning uint8 = 1 << iota
	flagPending       // came due while running: run once more after
	flagQueued        // waiting in a limit queue
	flagLive          // slot in use
	flagCatchUp       // the next timed fire is a catch-up
	flagInHeap        // next is a fire time with an item in the heap
	flagMark          // scratch, for heap compaction
)

// entry is one scheduled watch: 40 bytes, no pointer, plus its key's bytes
// in the arena and its slot in the key table.
type entry struct {
	next   int64  // Unix ns of the next fire; math.MaxInt64: never
	user   uint64 // hash of the user id: only compared, for limits
	keyOff uint32 // key bytes: keys.b[keyOff:keyOff+keyLen]
	hash   uint32 // key hash, for the key table
	gen    uint32 // bumped when the slot is reused
	spec   uint32
	keyLen uint16
	prov   uint16
	flags  uint8
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

// job is a started run, waiting for or held by a worker. It carries the
// user and provider it was counted under, so the counts stay right when
// the entry changes meanwhile.
type job struct {
	idx  int32
	gen  uint32
	prov uint16
	user uint64
	f    Fire
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
	keys     arena
	index    keyTable
	heap     fireHeap
	inHeap   int // entries with flagInHeap; the heap's other items are stale
	specs    []specInfo
	specIdx  map[string]uint32
	specFree []uint32
	provs    []string
	provIdx  map[string]uint16

	active    int // started runs: in runq or on a worker
	provCount []int
	userCount map[uint64]int
	waitAll   []queued
	waitProv  [][]queued
	waitUser  map[uint64][]queued
	stats     Stats

	runq     []job // started runs no worker has taken yet: runq[runqHead:]
	runqHead int
	enq, deq uint64          // runs put in and taken from runq, ever
	enqPass  uint64          // enq at the last pass
	idle     []int32         // parked workers
	wakeCh   []chan struct{} // one per worker
	awake    int             // workers not parked: running a job, or on their way to runq
	passing  bool            // a worker is in pass
	stopping bool
	ticker   *time.Ticker // paces the passes; nil until Run
	period   time.Duration

	wake    chan struct{} // a pass is wanted now (an earlier fire, a run to take)
	running bool
	started bool
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
	return &Engine{cfg: cfg, log: cfg.Logger, seed: maphash.MakeSeed(),
		specIdx: map[string]uint32{}, provIdx: map[string]uint16{}, userCount: map[uint64]int{},
		waitUser: map[uint64][]queued{}, wake: make(chan struct{}, 1)}, nil
}

func (e *Engine) now() int64 { return e.cfg.Now().UnixNano() }

func (e *Engine) hashKey(key string) uint32 {
	h := maphash.String(e.seed, key)
	return uint32(h ^ h>>32)
}

// phase is the entry's stable offset: the same key always gets the same
// one, so watches sharing a schedule fire spread out, and restarts do not
// move them.
func phase(key []byte) uint64 { return fnv64a(key) }

// fireAfter returns the entry's first fire time strictly after t.
func (e *Engine) fireAfter(en *entry, t int64) int64 {
	s := &e.specs[en.spec]
	ph := int64(phase(e.keyOf(en)) % uint64(s.cap))
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

// nextFire returns the fire after the one scheduled at scheduled, past
// now (missed ticks fold into the fire being made). A timed fire of an
// `@every` entry is on its phase's grid, so the next one is the interval
// later, with no phase to hash and no schedule to call.
func (e *Engine) nextFire(en *entry, scheduled, now int64, catchUp bool) int64 {
	if d := e.specs[en.spec].every; d > 0 && !catchUp {
		next := scheduled + d
		if next <= now {
			next += ((now-next)/d + 1) * d
		}
		return next
	}
	next := e.fireAfter(en, scheduled)
	if next <= now {
		next = e.fireAfter(en, now)
	}
	return next
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
// alone. It returns an error for an empty key, a key longer than 65,535
// bytes, or a schedule the parser refuses.
func (e *Engine) Upsert(en Entry) error {
	if en.Key == "" {
		return errors.New("sched: upsert: empty key")
	}
	if len(en.Key) > maxKeyLen {
		return fmt.Errorf("sched: upsert: key of %d bytes, longer than %d", len(en.Key), maxKeyLen)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	user := maphash.String(e.seed, en.User)
	prov := e.internProv(en.Provider)
	now := e.now()
	h := e.hashKey(en.Key)
	if i, _ := e.find(en.Key, h); i >= 0 {
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
	off := e.storeKey(en.Key)
	e.entries[i] = entry{keyOff: off, keyLen: uint16(len(en.Key)), hash: h, user: user, spec: spec, prov: prov, gen: gen,
		flags: flagLive, next: math.MaxInt64}
	e.indexAdd(i)
	cur := &e.entries[i]
	last := en.LastRun.UnixNano()
	next := e.fireAfter(cur, now)
	if (en.LastRun.IsZero() || e.fireAfter(cur, last) <= now) && next > now+int64(e.cfg.CatchUpWindow) {
		// Missed (or never ran), and the schedule does not come due within
		// the catch-up window: once, spread over the window.
		next = now + int64(phase(e.keyOf(cur))>>1%uint64(e.cfg.CatchUpWindow))
		cur.flags |= flagCatchUp
	}
	e.setNext(i, next)
	return nil
}

// setNext gives entry i a new fire time (math.MaxInt64: none). Its old
// heap item, if any, goes stale.
func (e *Engine) setNext(i int32, next int64) {
	en := &e.entries[i]
	was := en.flags&flagInHeap != 0
	if was && en.next == next {
		return
	}
	en.next = next
	if next == math.MaxInt64 {
		if was {
			en.flags &^= flagInHeap
			e.inHeap--
			e.compactHeap()
		}
		return
	}
	if !was {
		en.flags |= flagInHeap
		e.inHeap++
	}
	e.heap.push(item{next: next, idx: i, gen: en.gen})
	if top := e.heap.a[0]; top.idx == i && top.next == next {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	e.compactHeap()
}

// live reports whether heap item it is its entry's current fire.
func (e *Engine) live(it item) bool {
	en := &e.entries[it.idx]
	return en.gen == it.gen && en.flags&flagInHeap != 0 && en.next == it.next
}

// compactHeap drops the stale items once they are as many as the live
// ones (the heap at most doubles between two compactions).
func (e *Engine) compactHeap() {
	if e.heap.len() < 2*e.inHeap+1024 {
		return
	}
	e.heap.filter(func(it item) bool {
		en := &e.entries[it.idx]
		if !e.live(it) || en.flags&flagMark != 0 { // stale, or a second item for the same fire
			return false
		}
		en.flags |= flagMark
		return true
	})
	for _, it := range e.heap.a {
		e.entries[it.idx].flags &^= flagMark
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
	i, slot := e.find(key, e.hashKey(key))
	if i < 0 {
		return false
	}
	en := &e.entries[i]
	if en.flags&flagInHeap != 0 {
		e.inHeap--
	}
	e.releaseSpec(en.spec)
	e.indexDelete(slot)
	e.keys.garbage += int(en.keyLen)
	running := en.flags&flagRunning != 0
	*en = entry{gen: en.gen + 1, next: math.MaxInt64}
	if running {
		// The slot is freed when the run ends.
		en.flags = flagRunning
	} else {
		e.free = append(e.free, i)
	}
	e.compactHeap()
	return true
}

// Keys calls fn with every key (under the engine's lock: fn must not call
// the engine). Each key is a new string fn may keep.
func (e *Engine) Keys(fn func(key string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.entries {
		if en := &e.entries[i]; en.flags&flagLive != 0 {
			fn(e.keyString(en))
		}
	}
}

// Next returns an entry's next fire time (zero when it has none) and
// whether a run of it is going on.
func (e *Engine) Next(key string) (next time.Time, running bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.lookup(key)
	if i < 0 {
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
	i := e.lookup(key)
	if i < 0 {
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
	i := e.lookup(key)
	if i < 0 {
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
	s.Entries = e.index.n
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
		e.runq = append(e.runq, job{idx: q.idx, gen: q.gen, prov: en.prov, user: en.user,
			f: Fire{Key: e.keyString(en), Scheduled: time.Unix(0, q.scheduled), Reason: q.reason}})
		e.enq++
		e.wakeWorker()
		return true
	}
	en.flags |= flagQueued
	return false
}

// done ends run j and lets queued runs start.
func (e *Engine) done(j job) {
	en := &e.entries[j.idx]
	e.active--
	e.provCount[j.prov]--
	if c := e.userCount[j.user]; c <= 1 {
		delete(e.userCount, j.user)
	} else {
		e.userCount[j.user] = c - 1
	}
	en.flags &^= flagRunning
	if en.gen != j.gen { // removed while running: free the slot now
		en.flags = 0
		e.free = append(e.free, j.idx)
	} else if en.flags&flagPending != 0 {
		en.flags &^= flagPending
		e.tryStart(queued{idx: j.idx, gen: en.gen, scheduled: e.now(), reason: Coalesced})
	}
	if q := e.waitUser[j.user]; len(q) > 0 {
		e.waitUser[j.user] = q[1:]
		if len(q) == 1 {
			delete(e.waitUser, j.user)
		}
		e.tryStart(q[0])
	}
	e.drain(&e.waitProv[j.prov])
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
