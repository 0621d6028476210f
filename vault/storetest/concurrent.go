package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"tagwatch/vault"
)

// testConcurrent: many goroutines mix the store's methods at once (run it
// under -race): runs committing overlapping posts of one watch, pauses and
// resumes, new watches, two delivery loops, refreshes and readers. After
// them every post is queued once per target, every row is settled once,
// every committed refresh is counted, and no call failed but the refresh
// fence's ErrConflict.
func testConcurrent(t *testing.T, s Backend) {
	runner := enroll(t, s, "run", spec1)
	toggled := enroll(t, s, "toggle", spec2)
	enroll(t, s, "add", spec2)
	refresher := enroll(t, s, "refresh", spec2)

	var wg sync.WaitGroup
	fail := func(format string, args ...any) { t.Errorf(format, args...) }
	goN := func(n int, fn func(g int)) {
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn(g)
			}()
		}
	}

	// kick wakes the delivery loops when a run queued rows.
	kick := make(chan struct{}, 1)
	// Runs: 4 goroutines, 6 commits each, overlapping windows of posts.
	var qmu sync.Mutex
	queued, dups := 0, 0
	goN(4, func(g int) {
		for i := range 6 {
			lo := 100 + g*5 + i*3
			out, err := s.CommitRun(vault.RunCommit{WatchID: runner.Started[0].ID, NewSinceID: fmt.Sprint(lo + 9), Posts: posts(lo+9, lo+6, lo+3, lo)})
			if err != nil {
				fail("CommitRun = %v", err)
				return
			}
			qmu.Lock()
			queued, dups = queued+out.Queued, dups+out.Duplicates
			qmu.Unlock()
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	// Pauses and resumes of one watch.
	goN(2, func(int) {
		for range 10 {
			if _, _, err := s.PauseWatch(toggled.Started[0].ID, "user"); err != nil {
				fail("PauseWatch = %v", err)
			}
			if _, _, err := s.ResumeWatch(toggled.Started[0].ID, "op"); err != nil {
				fail("ResumeWatch = %v", err)
			}
		}
	})
	// New watches for one user.
	goN(2, func(g int) {
		for i := range 5 {
			spec := vault.WatchSpec{Hashtags: []string{fmt.Sprintf("tag%d_%d", g, i)}, Schedule: "@hourly", Targets: []string{"console:"}}
			if _, err := s.AddWatch(vault.NewWatch{UserID: "add", Provider: "x", Spec: spec}, "op"); err != nil {
				fail("AddWatch = %v", err)
			}
		}
	})
	// Refreshes of one grant; only the fence may refuse.
	var commits sync.Map
	goN(2, func(g int) {
		for i := range 5 {
			tk, err := s.BeginRefresh(refresher.Grant.ID, "renewal")
			if err != nil {
				fail("BeginRefresh = %v", err)
				return
			}
			_, err = s.CommitRefresh(tk, refreshResult(fmt.Sprintf("rt-%d-%d", g, i)))
			switch {
			case err == nil:
				commits.Store(fmt.Sprint(g, i), true)
			case !errors.Is(err, vault.ErrConflict):
				fail("CommitRefresh = %v", err)
			}
		}
	})
	// Readers.
	goN(2, func(int) {
		for range 10 {
			if _, err := s.ListWatches(""); err != nil {
				fail("ListWatches = %v", err)
			}
			if err := s.RunnableWatches(func(vault.WatchWithCursor) error { return nil }); err != nil {
				fail("RunnableWatches = %v", err)
			}
			if _, err := s.OutboxTallies(); err != nil {
				fail("OutboxTallies = %v", err)
			}
		}
	})
	// Two delivery loops, until the producers above are done and nothing
	// is due.
	settled := map[string]int{}
	var smu sync.Mutex
	producers := make(chan struct{})
	var loops sync.WaitGroup
	for range 2 {
		loops.Add(1)
		go func() {
			defer loops.Done()
			done := false
			for round := 0; ; round++ {
				if round == 2000 {
					fail("the delivery loop has not drained the outbox after 2000 rounds: settled rows stay due")
					return
				}
				var ids []string
				if _, err := s.DueOutboxIDs(s.Now(), func(id string) bool { ids = append(ids, id); return len(ids) < 10 }); err != nil {
					fail("DueOutboxIDs = %v", err)
					return
				}
				if len(ids) == 0 {
					if done {
						return // a scan after the producers ended found nothing
					}
					select {
					case <-producers:
						done = true
					case <-kick:
					}
					continue
				}
				rs, err := s.LoadOutbox(ids)
				if err != nil {
					fail("LoadOutbox = %v", err)
					return
				}
				var outs []vault.OutboxOutcome
				for _, r := range rs {
					outs = append(outs, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered, Sent: true})
				}
				got, err := s.SettleOutbox(outs)
				if err != nil {
					fail("SettleOutbox = %v", err)
					return
				}
				smu.Lock()
				for _, g := range got {
					settled[g.Row.ID]++
				}
				smu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(producers)
	loops.Wait()

	distinct := map[string]bool{}
	for g := range 4 {
		for i := range 6 {
			lo := 100 + g*5 + i*3
			for _, p := range []int{lo, lo + 3, lo + 6, lo + 9} {
				distinct[fmt.Sprint(p)] = true
			}
		}
	}
	if queued != len(distinct) || queued+dups != 4*6*4 {
		t.Errorf("runs queued %d posts with %d duplicates, want %d distinct and %d in all", queued, dups, len(distinct), 4*6*4)
	}
	for k, n := range queuedPosts(t, s, runner.Started[0].ID) {
		if n != 1 {
			t.Errorf("post %s queued %d times, want once", k, n)
		}
	}
	all := rows(t, s, "", "")
	for _, r := range all {
		if settled[r.ID] != 1 || r.State != vault.OutboxDelivered {
			t.Errorf("row %s (%s) = %s, settled %d times; want delivered once", r.ID, r.Kind, r.State, settled[r.ID])
		}
	}
	if len(settled) != len(all) {
		t.Errorf("%d rows settled, %d rows stored", len(settled), len(all))
	}
	n := 0
	commits.Range(func(any, any) bool { n++; return true })
	if g := grantOf(t, s, refresher.Grant.ID); g.RefreshCount != n || n == 0 {
		t.Errorf("grant counted %d refreshes, %d commits succeeded (want equal, at least one)", g.RefreshCount, n)
	}
	if ws, _ := s.ListWatches("add"); len(ws) != 1+2*5 {
		t.Errorf("user add has %d watches, want %d", len(ws), 1+2*5)
	}
	if w := watchOf(t, s, toggled.Started[0].ID); w.State != vault.WatchActive && w.State != vault.WatchPaused {
		t.Errorf("toggled watch = %s, want active or paused", w.StateText())
	}
}
