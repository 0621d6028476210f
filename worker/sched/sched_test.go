package sched

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a Job that records fires and tracks concurrency.
type recorder struct {
	mu       sync.Mutex
	fires    map[string][]Fire
	starts   map[string][]time.Time
	running  map[string]int
	user     map[string]string
	byUser   map[string]int
	maxKey   int
	maxUser  int
	maxAll   int
	all      int
	hold     time.Duration
	panicKey string
}

func newRecorder() *recorder {
	return &recorder{fires: map[string][]Fire{}, starts: map[string][]time.Time{}, running: map[string]int{},
		user: map[string]string{}, byUser: map[string]int{}}
}

func (r *recorder) job(ctx context.Context, f Fire) {
	r.mu.Lock()
	r.fires[f.Key] = append(r.fires[f.Key], f)
	r.starts[f.Key] = append(r.starts[f.Key], time.Now())
	r.running[f.Key]++
	r.byUser[r.user[f.Key]]++
	r.all++
	r.maxKey = max(r.maxKey, r.running[f.Key])
	r.maxUser = max(r.maxUser, r.byUser[r.user[f.Key]])
	r.maxAll = max(r.maxAll, r.all)
	hold, pk := r.hold, r.panicKey
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running[f.Key]--
		r.byUser[r.user[f.Key]]--
		r.all--
		r.mu.Unlock()
	}()
	if f.Key == pk {
		panic("job exploded")
	}
	if hold > 0 {
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.fires[key])
}

// start runs e until the returned stop is called.
func start(t *testing.T, e *Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

func mustUpsert(t *testing.T, e *Engine, en Entry) {
	t.Helper()
	if err := e.Upsert(en); err != nil {
		t.Fatal(err)
	}
}

func TestPhaseSpreadsSharedSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, Workers: 64, PerProviderConcurrency: 1000})
		now := time.Now()
		for i := 0; i < 600; i++ {
			mustUpsert(t, e, Entry{Key: fmt.Sprintf("w%d", i), User: fmt.Sprint(i), Provider: "x", Schedule: "@every 1m", LastRun: now})
		}
		stop := start(t, e)
		time.Sleep(3*time.Minute - time.Millisecond)
		stop()
		perSecond := map[int64]int{}
		for i := 0; i < 600; i++ {
			k := fmt.Sprintf("w%d", i)
			fs := r.fires[k]
			if len(fs) != 3 {
				t.Fatalf("%s fired %d times in 3 minutes, want 3", k, len(fs))
			}
			if d := fs[1].Scheduled.Sub(fs[0].Scheduled); d != time.Minute {
				t.Errorf("%s: fires %s apart, want 1m", k, d)
			}
			if lag := r.starts[k][0].Sub(fs[0].Scheduled); lag < 0 || lag > 2*time.Millisecond {
				t.Errorf("%s: lag %s under a fake clock, want at most the 2 ms resolution", k, lag)
			}
			perSecond[fs[0].Scheduled.Unix()%60]++
		}
		// 600 watches over 60 seconds: about 10 a second, none crowded.
		for s, n := range perSecond {
			if n > 30 {
				t.Errorf("%d watches fire at second %d of the minute, want them spread", n, s)
			}
		}
		if len(perSecond) < 50 {
			t.Errorf("fires use %d distinct seconds of 60, want spread", len(perSecond))
		}
		// The phase is stable: another engine puts the same key at the same time.
		e2, _ := New(Config{Job: r.job})
		mustUpsert(t, e2, Entry{Key: "w7", Schedule: "@every 1m", LastRun: time.Now()})
		n1, _, _ := e2.Next("w7")
		if n1.Sub(r.fires["w7"][0].Scheduled)%time.Minute != 0 {
			t.Errorf("phase of w7 moved between engines")
		}
	})
}

func TestCronExpressionWithPhaseAndTZ(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, MaxPhase: time.Minute})
		mustUpsert(t, e, Entry{Key: "a", Schedule: "CRON_TZ=Europe/Paris 30 9 * * *", LastRun: time.Now()})
		next, _, err := e.Next("a")
		if err != nil {
			t.Fatal(err)
		}
		paris, _ := time.LoadLocation("Europe/Paris")
		local := next.In(paris)
		if local.Hour() != 9 || local.Minute() != 30 {
			t.Errorf("next fire %s, want 09:30 Paris plus a phase under a minute", local)
		}
		if err := e.Upsert(Entry{Key: "b", Schedule: "not a schedule"}); err == nil {
			t.Error("Upsert(bad schedule) = nil, want an error")
		}
	})
}

func TestNoOverlapCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.hold = 3500 * time.Millisecond // a run lasts 3.5 fires
		e, _ := New(Config{Job: r.job})
		mustUpsert(t, e, Entry{Key: "slow", User: "u", Schedule: "@every 1s", LastRun: time.Now()})
		stop := start(t, e)
		time.Sleep(10 * time.Second)
		stop()
		if r.maxKey != 1 {
			t.Errorf("max concurrent runs of one watch = %d, want 1", r.maxKey)
		}
		// Runs back to back: 10 s / 3.5 s, plus the one cut short.
		if n := r.count("slow"); n < 3 || n > 4 {
			t.Errorf("runs = %d, want 3 or 4 (due fires coalesced)", n)
		}
		if st := e.Stats(); st.Coalesced == 0 {
			t.Errorf("Stats().Coalesced = 0, want coalesced fires")
		}
		for _, f := range r.fires["slow"][1:] {
			if f.Reason != Coalesced {
				t.Errorf("later run reason %s, want coalesced", f.Reason)
			}
		}
	})
}

func TestConcurrencyLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.hold = 500 * time.Millisecond
		e, _ := New(Config{Job: r.job, Workers: 4, PerProviderConcurrency: 3, PerUserConcurrency: 1})
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("w%d", i)
			r.user[k] = fmt.Sprint(i % 5)
			mustUpsert(t, e, Entry{Key: k, User: r.user[k], Provider: "x", Schedule: "@every 10s", LastRun: time.Now()})
		}
		stop := start(t, e)
		time.Sleep(30 * time.Second)
		stop()
		if r.maxUser != 1 || r.maxAll > 3 {
			t.Errorf("max per user %d, max at once %d; want 1 and at most 3 (provider limit)", r.maxUser, r.maxAll)
		}
		for i := 0; i < 20; i++ {
			if n := r.count(fmt.Sprintf("w%d", i)); n != 3 {
				t.Errorf("w%d ran %d times in 30 s, want 3 (queued, not dropped)", i, n)
			}
		}
	})
}

func TestCatchUpRunsOnceSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, Workers: 100, PerProviderConcurrency: 100, CatchUpWindow: time.Minute})
		t0 := time.Now()
		for i := 0; i < 200; i++ {
			// Down for a day: 24 missed hourly fires each; half never ran.
			last := t0.Add(-24 * time.Hour)
			if i%2 == 0 {
				last = time.Time{}
			}
			mustUpsert(t, e, Entry{Key: fmt.Sprintf("w%d", i), User: fmt.Sprint(i), Schedule: "@hourly", LastRun: last})
		}
		stop := start(t, e)
		time.Sleep(time.Minute)
		stop()
		firstSecond := 0
		for i := 0; i < 200; i++ {
			fs := r.fires[fmt.Sprintf("w%d", i)]
			// One run: a catch-up, or the regular fire when it falls in the window.
			if len(fs) != 1 || (fs[0].Reason != CatchUp && fs[0].Reason != Scheduled) {
				t.Fatalf("w%d: %d fires (%v), want one", i, len(fs), fs)
			}
			if fs[0].Scheduled.Sub(t0) < time.Second {
				firstSecond++
			}
		}
		if firstSecond > 20 {
			t.Errorf("%d of 200 catch-up runs in the first second, want them spread over the window", firstSecond)
		}
	})
}

func TestUpsertRemoveRunNowPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.panicKey = "boom"
		e, _ := New(Config{Job: r.job})
		now := time.Now()
		mustUpsert(t, e, Entry{Key: "a", Schedule: "@every 1h", LastRun: now})
		mustUpsert(t, e, Entry{Key: "gone", Schedule: "@every 1s", LastRun: now})
		mustUpsert(t, e, Entry{Key: "boom", Schedule: "@every 1s", LastRun: now})
		stop := start(t, e)
		time.Sleep(5 * time.Second)
		if !e.Remove("gone") || e.Remove("gone") {
			t.Error("Remove: want true then false")
		}
		before := r.count("gone")
		// A changed schedule takes effect at once.
		mustUpsert(t, e, Entry{Key: "a", Schedule: "@every 1s", LastRun: now})
		if err := e.RunNow("a"); err != nil {
			t.Fatal(err)
		}
		if err := e.RunNow("nope"); err != ErrUnknown {
			t.Errorf("RunNow(unknown) = %v, want ErrUnknown", err)
		}
		time.Sleep(5 * time.Second)
		stop()
		if n := r.count("gone"); n != before {
			t.Errorf("removed entry fired %d more times", n-before)
		}
		if n := r.count("a"); n < 5 {
			t.Errorf("a ran %d times after its schedule went to 1s, want >= 5", n)
		}
		if r.fires["a"][0].Reason != Manual {
			t.Errorf("first run of a: %s, want manual", r.fires["a"][0].Reason)
		}
		if st := e.Stats(); st.Panics < 9 || r.count("boom") < 9 {
			t.Errorf("panics %d, boom runs %d: want the engine to keep going after panics", st.Panics, r.count("boom"))
		}
	})
}

// BenchmarkFireDue is the engine's own work per timed fire among 1,000,000
// `@every 200s` entries: the heap, the next fire time, the limits, the
// hand-off to runq and the end of the run; not the goroutines (the bench
// program measures those, cmd/tagwatch-bench sched).
func BenchmarkFireDue(b *testing.B) {
	var clock int64
	e, _ := New(Config{Job: func(context.Context, Fire) {}, Workers: 1 << 20, PerProviderConcurrency: 1 << 20,
		Now: func() time.Time { return time.Unix(0, clock) }})
	clock = time.Now().UnixNano()
	now := time.Unix(0, clock)
	for i := 0; i < 1_000_000; i++ {
		_ = e.Upsert(Entry{Key: fmt.Sprintf("w%025d", i), User: fmt.Sprint(i / 10), Provider: "x", Schedule: "@every 200s", LastRun: now})
	}
	e.running = true
	b.ResetTimer()
	fires := 0
	for fires < b.N {
		e.mu.Lock()
		clock = e.heap.a[0].next
		e.pass()
		for _, j := range e.runq[e.runqHead:] {
			e.done(j)
			fires++
		}
		e.runq, e.runqHead = e.runq[:0], 0
		e.mu.Unlock()
	}
}
