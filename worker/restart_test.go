package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
	"tagwatch/worker/xsource"
)

// restart stops the fixture's daemon as SIGKILL would (the worker and the
// X client are dropped with whatever they held in memory; nothing is
// flushed on the way out), closes and reopens the vault, and starts a new
// X client and worker on it, as a restarted tagwatchd does: Reload, then
// runs.
func (f *fix) restart() {
	f.t.Helper()
	if err := f.db.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.client = xapi.New(xapi.Config{BaseURL: f.prov.APIURL(), HTTPClient: &http.Client{Transport: f.hook}, MaxResults: 10,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Retries: 2, Now: f.clock.Now})
	f.src = xsource.New(f.client)
	f.db = vaulttest.Open(f.t, vaulttest.Path(f.dbPath), vaulttest.Master(f.master), vaulttest.Now(f.clock.Now),
		vaulttest.Rules(rules(f.src)))
	cfg := f.wcfg
	cfg.DB, cfg.Sources = f.db, map[string]worker.Source{"x": f.src}
	var err error
	if f.w, err = worker.New(cfg); err != nil {
		f.t.Fatal(err)
	}
	if err := f.w.Reload(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// TestRateWindowsSurviveRestartC18: X allows each user 3 searches per
// 20-second window; two users' watches run every 3 seconds for two
// minutes, and the daemon is restarted 4 times, each time while both
// users' windows are spent. X answers no request with a 429: what it
// said about the windows (remaining 0 until the reset) outlives each
// restart. Every window is still used in full (3 searches per user).
func TestRateWindowsSurviveRestartC18(t *testing.T) {
	f := newFix(t, fixOpts{})
	f.sb.SetRateLimit(xsandbox.EndpointSearch, 3, 0, 20*time.Second)
	a, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 3s"}, time.Time{})
	b, _ := f.addWatch("200", vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@every 3s"}, time.Time{})
	if err := f.w.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarts := map[int]bool{11: true, 32: true, 55: true, 97: true}
	held := 0
	for s := 0; s < 120; s++ {
		if restarts[s] {
			f.restart()
		}
		if s%3 == 0 {
			for _, id := range []string{a, b} {
				switch ev := f.run(id); ev.Kind {
				case worker.EventRun:
				case worker.EventRateLimited:
					held++
					if !ev.NotBefore.After(f.clock.Now()) {
						t.Errorf("second %d: held until %s, not after now", s, ev.NotBefore)
					}
				default:
					t.Fatalf("second %d: run of %s = %s %s %v", s, id, ev.Kind, ev.Reason, ev.Err)
				}
			}
		}
		f.clock.Advance(time.Second)
	}
	if st := f.sb.Stats(); st.RateLimited != 0 {
		t.Errorf("X answered %d searches with 429 across 4 restarts, want none before a known reset", st.RateLimited)
	}
	// Windows open at 0, 21, 42, 63, 84 and 105 s (3 requests, then a hold
	// until one second past the reset): 6 windows of 3 searches per user.
	for _, xid := range []string{"100", "200"} {
		if n := f.searches(xid); n != 18 {
			t.Errorf("user %s made %d searches, want 18 (3 in each of 6 windows)", xid, n)
		}
	}
	if held == 0 {
		t.Errorf("no run was held: the test did not spend a window")
	}
}

// TestUsageCapSurvivesRestart: a usage cap seen before a restart is still
// respected after it: the capped watches stay suspended and make no
// request until the probe the daemon had planned (not at once), and a
// probe that gets through resumes them, after another restart too.
func TestUsageCapSurvivesRestart(t *testing.T) {
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.CapProbeInterval = time.Hour }})
	w1, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	f.reachCap(w1)
	capped := f.sb.Stats().UsageCapped
	for i, d := range []time.Duration{time.Minute, 19 * time.Minute, 20 * time.Minute} {
		f.clock.Advance(d)
		f.restart()
		if ev := f.run(w1); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipUsageCapped {
			t.Errorf("restart %d: run of the capped watch = %s %s %v, want skipped usage_capped", i+1, ev.Kind, ev.Reason, ev.Err)
		}
	}
	f.clock.Advance(18 * time.Minute) // 58 minutes after the cap
	if ev := f.run(w1); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipUsageCapped {
		t.Errorf("run 2 minutes before the planned probe = %s %s %v, want skipped usage_capped", ev.Kind, ev.Reason, ev.Err)
	}
	if n := f.sb.Stats().UsageCapped; n != capped {
		t.Errorf("X answered %d more usage-capped 429s after restarts, want none before the planned probe", n-capped)
	}
	// The planned probe, an hour after the cap: still capped, planned
	// again an hour on, across a restart.
	f.clock.Advance(3 * time.Minute)
	if ev := f.run(w1); ev.Kind != worker.EventRunFailed || ev.Reason != worker.SkipUsageCapped {
		t.Fatalf("the probe = %s %s %v, want run_failed usage_capped", ev.Kind, ev.Reason, ev.Err)
	}
	f.clock.Advance(time.Minute)
	f.restart()
	if ev := f.run(w1); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipUsageCapped {
		t.Errorf("run after the failed probe and a restart = %s %s %v, want skipped usage_capped", ev.Kind, ev.Reason, ev.Err)
	}
	// The operator raised the budget: the next probe resumes the watch,
	// and it stays resumed across a restart.
	f.sb.SetMonthlyPostBudget(0)
	f.clock.Advance(time.Hour)
	f.mustRun(w1)
	if wt := f.watch(w1); wt.State != vault.WatchActive {
		t.Fatalf("watch after a probe that got through = %s, want active", wt.State)
	}
	f.restart()
	f.clock.Advance(time.Second)
	f.mustRun(w1)
}
