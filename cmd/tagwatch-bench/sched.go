package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"tagwatch/worker/sched"
)

func benchSched(args []string) error {
	fs := flag.NewFlagSet("sched", flag.ContinueOnError)
	n := fs.Int("watches", 1_000_000, "watches in the engine")
	period := fs.Duration("period", 200*time.Second, "every watch's @every interval")
	dur := fs.Duration("dur", 60*time.Second, "measured time for each engine")
	rn := fs.Int("robfig", 50_000, "robfig/cron entries (@every 10s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Printf("machine: %s\nload average before: %s\n", machine(), loadavg())

	// --- our engine
	type rec struct {
		mu   sync.Mutex
		lags []time.Duration
	}
	var r rec
	fired := make([]atomic.Bool, *n)
	var fires atomic.Int64
	e, err := sched.New(sched.Config{Workers: 32, PerProviderConcurrency: 1 << 30, PerUserConcurrency: 1,
		Job: func(ctx context.Context, f sched.Fire) {
			lag := time.Since(f.Scheduled)
			i, _ := strconv.ParseUint(f.Key[len(f.Key)-8:], 16, 32)
			fired[i].Store(true)
			fires.Add(1)
			r.mu.Lock()
			r.lags = append(r.lags, lag)
			r.mu.Unlock()
		}})
	if err != nil {
		return err
	}
	spec := fmt.Sprintf("@every %s", *period)
	before := heapInUse()
	now := time.Now()
	for i := 0; i < *n; i++ {
		// 26-character keys, like vault.NewID, built here so their bytes count.
		key := fmt.Sprintf("w%017x%08x", uint64(i)*0x9e3779b97f4a7c15>>8, i)
		if err := e.Upsert(sched.Entry{Key: key, User: fmt.Sprintf("user%d", i), Provider: "x", Schedule: spec, LastRun: now}); err != nil {
			return err
		}
	}
	after := heapInUse()
	perWatch := float64(after-before) / float64(*n)
	fmt.Printf("engine: %d watches on %q: %.0f bytes per watch (heap, keys included)\n", *n, spec, perWatch)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	time.Sleep(2 * time.Second) // settle
	r.mu.Lock()
	r.lags = r.lags[:0]
	r.mu.Unlock()
	for i := range fired {
		fired[i].Store(false)
	}
	// Which watches are due in the window, before it starts.
	start := time.Now()
	end := start.Add(*dur)
	due := make([]bool, *n)
	expected := 0
	var keys []string
	e.Keys(func(k string) { keys = append(keys, k) })
	for _, k := range keys {
		next, _, err := e.Next(k)
		var i int
		fmt.Sscanf(k[len(k)-8:], "%08x", &i)
		if err == nil && next.After(start.Add(50*time.Millisecond)) && next.Before(end.Add(-50*time.Millisecond)) {
			due[i] = true
			expected++
		}
	}
	start = time.Now()
	cpu0 := cpuTime()
	f0 := fires.Load()
	time.Sleep(time.Until(end))
	cpu := cpuTime() - cpu0
	wall := time.Since(start)
	nf := fires.Load() - f0
	cancel()
	<-done
	missed := 0
	for i := range due {
		if due[i] && !fired[i].Load() {
			missed++
		}
	}
	r.mu.Lock()
	ls := percentiles(r.lags)
	r.mu.Unlock()
	ours := result{name: "tagwatch engine", entries: *n, fires: nf, wall: wall, cpu: cpu, lag: ls, missed: missed, expected: expected}
	ours.print()
	e = nil
	keys = nil
	heapInUse()

	// --- robfig/cron/v3's run loop
	var rl rec
	var rf atomic.Int64
	c := cron.New(cron.WithSeconds())
	c.Start()
	job := func() {
		// Its @every schedule fires on whole seconds.
		now := time.Now()
		lag := now.Sub(now.Truncate(time.Second))
		rf.Add(1)
		rl.mu.Lock()
		rl.lags = append(rl.lags, lag)
		rl.mu.Unlock()
	}
	// Added over 10 s while running, so fires spread over the seconds as a
	// daemon's watches would (added at once they all fire in one burst).
	for i := 0; i < *rn; i++ {
		if _, err := c.AddFunc("@every 10s", job); err != nil {
			return err
		}
		if batch := *rn / 100; batch > 0 && i%batch == batch-1 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(12 * time.Second) // past the first round
	rl.mu.Lock()
	rl.lags = rl.lags[:0]
	rl.mu.Unlock()
	rstart := time.Now()
	rcpu0 := cpuTime()
	rf0 := rf.Load()
	time.Sleep(*dur)
	rcpu := cpuTime() - rcpu0
	rwall := time.Since(rstart)
	rnf := rf.Load() - rf0
	<-c.Stop().Done()
	rl.mu.Lock()
	rls := percentiles(rl.lags)
	rl.mu.Unlock()
	rexp := int(int64(*rn) * int64(rwall/(10*time.Second)))
	theirs := result{name: "robfig/cron/v3", entries: *rn, fires: rnf, wall: rwall, cpu: rcpu, lag: rls, missed: max(0, rexp-int(rnf)), expected: rexp}
	theirs.print()
	fmt.Printf("ratios (robfig / ours): CPU per fire %.1fx, p99 lag %.1fx, max lag %.1fx\n",
		theirs.cpuPerFire()/ours.cpuPerFire(), float64(rls.p99)/float64(max(ls.p99, 1)), float64(rls.max)/float64(max(ls.max, 1)))
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}

type result struct {
	name      string
	entries   int
	fires     int64
	wall, cpu time.Duration
	lag       lagStats
	missed    int
	expected  int
}

func (r result) cpuPerFire() float64 { return float64(r.cpu) / float64(max(r.fires, 1)) }

func (r result) print() {
	fmt.Printf("%s: %d entries, %d fires in %s (%.0f/s), CPU %.1f%% of a core (%.1f µs/fire), lag p50 %s p99 %s max %s, missed %d of %d due\n",
		r.name, r.entries, r.fires, r.wall.Round(time.Millisecond), float64(r.fires)/r.wall.Seconds(),
		100*r.cpu.Seconds()/r.wall.Seconds(), r.cpuPerFire()/1e3, r.lag.p50, r.lag.p99, r.lag.max, r.missed, r.expected)
}
