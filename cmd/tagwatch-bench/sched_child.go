package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"tagwatch/worker/sched"
)

// schedEngine is one engine under test, loaded with n entries.
type schedEngine interface {
	// load adds the entries; job is each fire's work.
	load(n int, period time.Duration, job func(key string, due, now int64)) error
	start()
	// next is entry i's next fire (Unix ns; 0: none).
	next(i int) int64
	// stop stops the engine and waits for its running jobs.
	stop()
	note() string
}

// schedBook records fires: the job every engine runs, cheap and the same
// for all (an index parsed from the key, two atomic adds, a store).
type schedBook struct {
	alloc            int
	winStart, winEnd atomic.Int64
	fires            atomic.Int64
	fired            []atomic.Int64 // entry -> due time of its fire in the window
	dueAt            []int64        // entry -> due time in the window read before it, 0: none
	lags, dues       []int64
	nlag             atomic.Int64
}

// schedSink keeps the job's garbage from being optimized away.
var schedSink atomic.Pointer[[]byte]

func (b *schedBook) job(key string, due, now int64) {
	b.fires.Add(1)
	if b.alloc > 0 {
		g := make([]byte, b.alloc)
		schedSink.Store(&g)
	}
	if due < b.winStart.Load() || due >= b.winEnd.Load() {
		return
	}
	b.fired[schedKeyIndex(key)].Store(due)
	if k := b.nlag.Add(1) - 1; k < int64(len(b.lags)) {
		b.lags[k], b.dues[k] = now-due, due
	}
}

// schedKey is entry i's key: 26 characters, like vault.NewID.
func schedKey(i int) string {
	const hex = "0123456789abcdef"
	var b [26]byte
	b[0] = 'w'
	h := uint64(i) * 0x9e3779b97f4a7c15 >> 8
	for j := 17; j >= 1; j-- {
		b[j] = hex[h&15]
		h >>= 4
	}
	v := uint32(i)
	for j := 25; j >= 18; j-- {
		b[j] = hex[v&15]
		v >>= 4
	}
	return string(b[:])
}

func schedKeyIndex(key string) int {
	v := 0
	for _, c := range []byte(key[len(key)-8:]) {
		d := int(c - '0')
		if c >= 'a' {
			d = int(c-'a') + 10
		}
		v = v<<4 | d
	}
	return v
}

// schedChild runs one engine in this process and prints its result as a
// RESULT line of JSON.
func schedChild(name string, o schedOpts) error {
	r, err := measureSched(name, o)
	if err != nil {
		return err
	}
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT %s\n", js)
	return nil
}

// measureSched loads, runs and measures one engine in this process.
func measureSched(name string, o schedOpts) (*schedResult, error) {
	n := o.watches
	period := o.period(n)
	var eng schedEngine
	switch name {
	case "ours":
		eng = &oursEngine{resolution: o.resolution}
	case "robfig":
		eng = &robfigEngine{}
	case "robfig-phase":
		eng = &robfigEngine{phased: true}
	default:
		return nil, fmt.Errorf("sched: unknown engine %q (ours, robfig, robfig-phase)", name)
	}
	// The bench's own buffers exist before the heap is measured.
	capLags := int(o.rate*(o.dur+o.grace).Seconds())*2 + 10_000
	b := &schedBook{alloc: o.alloc, fired: make([]atomic.Int64, n), dueAt: make([]int64, n), lags: make([]int64, capLags), dues: make([]int64, capLags)}
	b.winStart.Store(1<<63 - 1)
	h0 := heapInUse()
	t0 := time.Now()
	if err := eng.load(n, period, b.job); err != nil {
		return nil, err
	}
	load := time.Since(t0)
	h1 := heapInUse()
	eng.start()
	time.Sleep(o.warm)

	// Which entries come due in the window, read before it starts.
	for i := range n {
		b.dueAt[i] = eng.next(i)
	}
	winStart := time.Now().Add(100 * time.Millisecond)
	winEnd := winStart.Add(o.dur)
	due := 0
	for i, t := range b.dueAt {
		if t >= winStart.UnixNano() && t < winEnd.UnixNano() {
			due++
		} else {
			b.dueAt[i] = 0
		}
	}
	b.winEnd.Store(winEnd.UnixNano())
	b.winStart.Store(winStart.UnixNano())
	time.Sleep(time.Until(winStart))
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	if o.traceFile != "" {
		f, err := os.Create(o.traceFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return nil, err
		}
	}
	gcCPU0, gcs0 := gcMetrics()
	cs0 := ctxSwitches()
	cpu0, f0, w0 := cpuTime(), b.fires.Load(), time.Now()
	time.Sleep(time.Until(winEnd))
	cpu1, f1, w1 := cpuTime(), b.fires.Load(), time.Now()
	cs1 := ctxSwitches()
	gcCPU1, gcs1 := gcMetrics()
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if o.traceFile != "" {
		trace.Stop()
	}
	time.Sleep(o.grace)
	eng.stop()

	r := schedResult{Engine: name, Entries: n, PeriodSec: period.Seconds(), Fires: f1 - f0, WallNs: int64(w1.Sub(w0)),
		CPUNs: int64(cpu1 - cpu0), GCCPUNs: int64((gcCPU1 - gcCPU0) * 1e9), GCs: uint32(gcs1 - gcs0), Due: due,
		BytesPerEntry: float64(int64(h1)-int64(h0)) / float64(n), LoadNs: int64(load), Note: eng.note(), CtxSwitches: cs1 - cs0}
	for i, t := range b.dueAt {
		if t != 0 && b.fired[i].Load() < t {
			r.Missed++
		}
	}
	k := min(int(b.nlag.Load()), len(b.lags))
	lags := slices.Clone(b.lags[:k])
	r.P50, r.P99, r.Max = quantiles(lags)
	mid := winStart.UnixNano() + int64(o.dur/2)
	var first, last []int64
	for j := range k {
		if b.dues[j] < mid {
			first = append(first, b.lags[j])
		} else {
			last = append(last, b.lags[j])
		}
	}
	_, r.P99FirstHalf, _ = quantiles(first)
	_, r.P99LastHalf, _ = quantiles(last)
	return &r, nil
}

func quantiles(v []int64) (p50, p99, mx int64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	at := func(q float64) int64 { return v[min(len(v)-1, int(q*float64(len(v))))] }
	return at(0.5), at(0.99), v[len(v)-1]
}

// ctxSwitches is the context switches of all the process's threads: a
// thread that sleeps (a futex, epoll, nanosleep) and is woken counts one.
func ctxSwitches() int64 {
	var n int64
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			var v int64
			if _, err := fmt.Sscanf(l, "voluntary_ctxt_switches: %d", &v); err == nil {
				n += v
			}
			if _, err := fmt.Sscanf(l, "nonvoluntary_ctxt_switches: %d", &v); err == nil {
				n += v
			}
		}
	}
	return n
}

func gcMetrics() (cpuSec float64, cycles uint64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64 {
		cpuSec = s[0].Value.Float64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		cycles = s[1].Value.Uint64()
	}
	return
}

// oursEngine is sched.Engine with the daemon's defaults: 32 workers, one
// run per user at once; 10 watches per user.
type oursEngine struct {
	resolution time.Duration
	e          *sched.Engine
	cancel     context.CancelFunc
	done       chan error
}

func (o *oursEngine) load(n int, period time.Duration, job func(key string, due, now int64)) error {
	e, err := sched.New(sched.Config{Resolution: o.resolution, Job: func(_ context.Context, f sched.Fire) {
		job(f.Key, f.ScheduledNano(), time.Now().UnixNano())
	}})
	if err != nil {
		return err
	}
	o.e = e
	spec := "@every " + period.String()
	now := time.Now()
	for i := range n {
		if err := e.Upsert(sched.Entry{Key: schedKey(i), User: fmt.Sprintf("u%07d", i/10), Provider: "x", Schedule: spec, LastRun: now}); err != nil {
			return err
		}
	}
	return nil
}

func (o *oursEngine) start() {
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel, o.done = cancel, make(chan error, 1)
	go func() { o.done <- o.e.Run(ctx) }()
}

func (o *oursEngine) next(i int) int64 {
	t, _, err := o.e.Next(schedKey(i))
	if err != nil || t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (o *oursEngine) stop() {
	o.cancel()
	<-o.done
}

func (o *oursEngine) note() string { return "" }

// robfigEngine is robfig/cron/v3's own run loop (Cron.Start), each entry a
// FuncJob that runs the bench's job, which robfig starts on a goroutine of
// its own.
type robfigEngine struct {
	phased bool
	c      *cron.Cron
	scheds []*robfigSchedule
}

// robfigSchedule is an entry's cron.Schedule. Unphased it is robfig's own
// `@every` (cron.ConstantDelaySchedule: whole seconds), except that the
// first fire is put on the entry's own second of the period, as watches
// added over time are (added at once, every entry would fire in the same
// second). Phased, it fires at phase + k*period, as ours does. It also
// keeps the fire times it returned, for the job's lag.
type robfigSchedule struct {
	every   cron.Schedule
	phased  bool
	started bool
	slot    time.Duration // unphased: the entry's second of the period
	period  int64
	phase   int64
	cur     atomic.Int64 // the fire time last returned
	prev    atomic.Int64 // the one before
}

func (s *robfigSchedule) Next(t time.Time) time.Time {
	var next time.Time
	switch {
	case s.phased:
		x := t.UnixNano() - s.phase
		k := x / s.period
		if x < 0 && x%s.period != 0 {
			k--
		}
		next = time.Unix(0, (k+1)*s.period+s.phase)
	case !s.started:
		s.started = true
		next = s.every.Next(t).Add(-time.Duration(s.period) + s.slot)
	default:
		next = s.every.Next(t)
	}
	// The job starts before its entry's Next is called: it reads cur, and
	// prev when cur is already the following fire.
	s.prev.Store(s.cur.Load())
	s.cur.Store(next.UnixNano())
	return next
}

// due is the fire time of the run that starts at now.
func (s *robfigSchedule) due(now int64) int64 {
	if c := s.cur.Load(); c <= now {
		return c
	}
	return s.prev.Load()
}

func (r *robfigEngine) load(n int, period time.Duration, job func(key string, due, now int64)) error {
	r.c = cron.New()
	spec := "@every " + period.String()
	every, err := cron.ParseStandard(spec)
	if err != nil {
		return err
	}
	if _, ok := every.(cron.ConstantDelaySchedule); !ok {
		return fmt.Errorf("sched: %q parsed as %T", spec, every)
	}
	secs := int64(period / time.Second)
	r.scheds = make([]*robfigSchedule, n)
	for i := range n {
		key := schedKey(i)
		h := fnv.New64a()
		h.Write([]byte(key))
		s := &robfigSchedule{every: every, phased: r.phased, period: int64(period), phase: int64(h.Sum64() % uint64(period)),
			slot: time.Duration(1+int64(i)%secs) * time.Second}
		r.scheds[i] = s
		r.c.Schedule(s, cron.FuncJob(func() {
			now := time.Now().UnixNano()
			job(key, s.due(now), now)
		}))
	}
	return nil
}

func (r *robfigEngine) start() { r.c.Start() }

func (r *robfigEngine) next(i int) int64 { return r.scheds[i].cur.Load() }

func (r *robfigEngine) stop() { <-r.c.Stop().Done() }

func (r *robfigEngine) note() string {
	if r.phased {
		return "robfig with per-entry phases: cron.Schedule returning phase + k*period; its loop sorts every entry on every wake"
	}
	return "robfig as it is: @every (cron.ConstantDelaySchedule, whole seconds), each entry's first fire on its own second; a second's entries fire in one burst"
}
