package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestKeyTableMatchesMap drives the key arena and table through random
// upserts and removals (keys of 1 to 300 bytes, enough removed bytes to
// compact the arena many times) and checks every lookup, the count and
// Keys against a map.
func TestKeyTableMatchesMap(t *testing.T) {
	e, _ := New(Config{Job: func(context.Context, Fire) {}})
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d-%s", i, strings.Repeat("x", rng.IntN(300)))
	}
	keys[0] = "k" // one byte
	want := map[string]bool{}
	compactions := 0
	now := time.Now()
	for op := 0; op < 40_000; op++ {
		k := keys[rng.IntN(len(keys))]
		garbage := e.keys.garbage
		if rng.IntN(3) == 0 {
			if got := e.Remove(k); got != want[k] {
				t.Fatalf("op %d: Remove(%.10q) = %v, want %v", op, k, got, want[k])
			}
			delete(want, k)
			continue
		}
		mustUpsert(t, e, Entry{Key: k, User: "u", Schedule: "@every 1h", LastRun: now})
		want[k] = true
		if e.keys.garbage < garbage {
			compactions++
		}
	}
	if compactions < 3 {
		t.Errorf("the arena compacted %d times, want several (the test must exercise it)", compactions)
	}
	for _, k := range keys {
		_, _, err := e.Next(k)
		if want[k] != (err == nil) {
			t.Fatalf("Next(%.10q) = %v, want known %v", k, err, want[k])
		}
	}
	if st := e.Stats(); st.Entries != len(want) {
		t.Errorf("Stats().Entries = %d, want %d", st.Entries, len(want))
	}
	var got []string
	e.Keys(func(k string) { got = append(got, k) })
	var all []string
	for k := range want {
		all = append(all, k)
	}
	slices.Sort(got)
	slices.Sort(all)
	if !slices.Equal(got, all) {
		t.Errorf("Keys gave %d keys, want the %d live ones", len(got), len(all))
	}
	if err := e.Upsert(Entry{Key: strings.Repeat("k", maxKeyLen+1), Schedule: "@every 1h"}); err == nil {
		t.Errorf("Upsert(key of %d bytes) = nil, want an error", maxKeyLen+1)
	}
	if err := e.Upsert(Entry{Key: strings.Repeat("k", maxKeyLen), Schedule: "@every 1h"}); err != nil {
		t.Errorf("Upsert(key of %d bytes) = %v, want nil", maxKeyLen, err)
	}
}

// TestScheduleChangesLeaveNoDuplicateFires changes schedules back and forth
// (each change leaves a stale heap item, and A, B, A leaves two items for
// the same fire): every entry still fires once per interval, and the heap
// stays within twice the live items.
func TestScheduleChangesLeaveNoDuplicateFires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, Workers: 64, PerProviderConcurrency: 1000})
		const n = 2000
		for round := 0; round < 30; round++ {
			spec := "@every 10s"
			if round%2 == 1 {
				spec = "@every 20s"
			}
			for i := 0; i < n; i++ {
				mustUpsert(t, e, Entry{Key: fmt.Sprintf("w%d", i), User: fmt.Sprint(i), Schedule: spec, LastRun: time.Now()})
			}
			if e.heap.len() > 2*e.inHeap+1024 {
				t.Fatalf("round %d: heap holds %d items for %d entries", round, e.heap.len(), e.inHeap)
			}
		}
		// The last round set @every 20s; back to 10s.
		for i := 0; i < n; i++ {
			mustUpsert(t, e, Entry{Key: fmt.Sprintf("w%d", i), User: fmt.Sprint(i), Schedule: "@every 10s", LastRun: time.Now()})
		}
		stop := start(t, e)
		time.Sleep(60*time.Second - time.Millisecond)
		stop()
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("w%d", i)
			fs := r.fires[k]
			if len(fs) != 6 {
				t.Fatalf("%s fired %d times in 60 s on @every 10s, want 6", k, len(fs))
			}
			for j := 1; j < len(fs); j++ {
				if d := fs[j].Scheduled.Sub(fs[j-1].Scheduled); d != 10*time.Second {
					t.Fatalf("%s: fires %s apart, want 10s", k, d)
				}
			}
		}
	})
}

// TestEveryNextMatchesSchedule checks the `@every` shortcut (the previous
// fire plus the interval, missed ticks folded) against the phase
// arithmetic it replaces, for lags of zero to several intervals.
func TestEveryNextMatchesSchedule(t *testing.T) {
	e, _ := New(Config{Job: func(context.Context, Fire) {}})
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("w%d", i)
		every := []string{"@every 1s", "@every 7s", "@every 1h", "@every 90m"}[i%4]
		mustUpsert(t, e, Entry{Key: key, Schedule: every, LastRun: now})
		idx := e.lookup(key)
		en := &e.entries[idx]
		d := e.specs[en.spec].every
		scheduled := en.next + int64(rng.IntN(100))*d
		for _, lag := range []int64{0, 1, d - 1, d, d + 1, 5*d + int64(rng.IntN(int(d)))} {
			now := scheduled + lag
			want := e.fireAfter(en, scheduled)
			if want <= now {
				want = e.fireAfter(en, now)
			}
			if got := e.nextFire(en, scheduled, now, false); got != want {
				t.Fatalf("%s %s lag %d: nextFire = %d, want %d", key, every, lag, got, want)
			}
		}
	}
}

// TestSlowRunsSpreadOverWorkers: runs that take long do not wait for each
// other while workers are free. Eight due at the same instant (a cron
// schedule, no phase) are dispatched by one pass, whose worker takes one;
// the next pass, a Resolution later, gives each waiting run a worker (one
// per tick would take eight ticks).
func TestSlowRunsSpreadOverWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.hold = time.Second
		e, _ := New(Config{Job: r.job, Workers: 8, PerProviderConcurrency: 8, MaxPhase: time.Nanosecond})
		for i := 0; i < 8; i++ {
			mustUpsert(t, e, Entry{Key: fmt.Sprintf("w%d", i), User: fmt.Sprint(i), Schedule: "* * * * *", LastRun: time.Now()})
		}
		stop := start(t, e)
		time.Sleep(62 * time.Second)
		stop()
		if r.maxAll != 8 {
			t.Errorf("at most %d runs at once, want 8 (one per worker)", r.maxAll)
		}
		for i := 0; i < 8; i++ {
			k := fmt.Sprintf("w%d", i)
			if len(r.starts[k]) != 1 {
				t.Fatalf("%s ran %d times, want 1", k, len(r.starts[k]))
			}
			if lag := r.starts[k][0].Sub(r.fires[k][0].Scheduled); lag > 5*time.Millisecond {
				t.Errorf("%s started %s after it was due, want within two 2 ms Resolutions", k, lag)
			}
		}
	})
}

// TestUserChangeWhileRunning: a run is counted against the user it started
// under, so a watch moved to another user while it runs does not leave its
// old user's count taken (which would hold that user's other watches
// forever at one run per user).
func TestUserChangeWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.hold = time.Second
		e, _ := New(Config{Job: r.job})
		mustUpsert(t, e, Entry{Key: "a", User: "u1", Schedule: "@every 1h", LastRun: time.Now()})
		mustUpsert(t, e, Entry{Key: "b", User: "u1", Schedule: "@every 1h", LastRun: time.Now()})
		stop := start(t, e)
		if err := e.RunNow("a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		mustUpsert(t, e, Entry{Key: "a", User: "u2", Schedule: "@every 1h", LastRun: time.Now()})
		time.Sleep(2 * time.Second) // a's run ends
		if err := e.RunNow("b"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		stop()
		if n := r.count("b"); n != 1 {
			t.Errorf("b (user u1) ran %d times after a moved to u2, want 1", n)
		}
	})
}

// TestRemoveWhileRunningReusesSlot: an entry removed during its run keeps
// its slot until the run ends; the same key added back meanwhile is a new
// entry that fires on its own.
func TestRemoveWhileRunningReusesSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.hold = 1500 * time.Millisecond
		e, _ := New(Config{Job: r.job, Workers: 4})
		mustUpsert(t, e, Entry{Key: "a", User: "u", Schedule: "@every 1h", LastRun: time.Now()})
		stop := start(t, e)
		if err := e.RunNow("a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if !e.Remove("a") {
			t.Fatal("Remove(a) = false during its run")
		}
		mustUpsert(t, e, Entry{Key: "a", User: "v", Schedule: "@every 2s", LastRun: time.Now()})
		time.Sleep(5 * time.Second)
		st := e.Stats()
		stop()
		if n := r.count("a"); n < 3 {
			t.Errorf("a ran %d times, want the first run and the new entry's fires every 2 s", n)
		}
		if st.Entries != 1 {
			t.Errorf("Stats().Entries = %d, want 1", st.Entries)
		}
		if len(e.free) != 1 {
			t.Errorf("%d free slots after the removed run ended, want 1", len(e.free))
		}
	})
}

func TestRunTwice(t *testing.T) {
	e, _ := New(Config{Job: func(context.Context, Fire) {}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	for {
		e.mu.Lock()
		started := e.started
		e.mu.Unlock()
		if started {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := e.Run(ctx); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("second Run = %v, want an error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
