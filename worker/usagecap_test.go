package worker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi/xsandbox"
)

// capFix is a fixture whose provider x reached its usage cap: two watches
// of every minute, both suspended by it, the probe planned an hour on.
// mods change the worker's configuration further.
func capFix(t *testing.T, mods ...func(*worker.Config)) (f *fix, w1, w2 string) {
	t.Helper()
	f = newFix(t, fixOpts{wcfg: func(c *worker.Config) {
		c.CapProbeInterval = time.Hour
		for _, m := range mods {
			m(c)
		}
	}})
	w1, _ = f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1m"}, time.Time{})
	w2, _ = f.addWatch("200", vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@every 1m"}, time.Time{})
	if err := f.w.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.reachCap(w1)
	for _, id := range []string{w1, w2} {
		if wt := f.watch(id); wt.SuspendReason != vault.SuspendUsageCapped {
			t.Fatalf("watch %s after the cap = %s, want suspended (usage_capped)", id, wt.StateText())
		}
	}
	return f, w1, w2
}

// TestCappedWatchNextRunIsTheProbe: the next run of a watch the usage cap
// suspended is when it may probe the provider (the first fire at or after
// the planned probe, an hour on), not its schedule's next fire, which
// asks nothing.
func TestCappedWatchNextRunIsTheProbe(t *testing.T) {
	f, w1, w2 := capFix(t)
	probe := f.clock.Now().Add(time.Hour)
	for _, id := range []string{w1, w2} {
		st, err := f.w.Status(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Next.Before(probe) || !st.Next.Before(probe.Add(time.Minute)) {
			t.Errorf("Status(%s).Next = %s, want the first fire at or after the planned probe %s", id, st.Next, probe)
		}
	}
}

// TestUsageCapNextProbeIsWhenItProbes: the next probe UsageCaps shows is
// when the probe happens, the first run of one of the provider's watches
// at or after the planned time: the earliest Next of their Status, not the
// planned time, which no watch fires at (the engine's next fire of each
// is at or after its Next). One time at every door; the run then is the
// probe.
func TestUsageCapNextProbeIsWhenItProbes(t *testing.T) {
	f, w1, w2 := capFix(t)
	planned := f.clock.Now().Add(time.Hour)
	caps := f.w.UsageCaps()
	if len(caps) != 1 {
		t.Fatalf("UsageCaps = %+v, want x's", caps)
	}
	first, firstID := time.Time{}, ""
	for _, id := range []string{w1, w2} {
		st, err := f.w.Status(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.UsageCap == nil || !st.UsageCap.NextProbe.Equal(caps[0].NextProbe) {
			t.Errorf("Status(%s).UsageCap = %+v, want next probe %s as UsageCaps", id, st.UsageCap, caps[0].NextProbe)
		}
		if firstID == "" || st.Next.Before(first) {
			first, firstID = st.Next, id
		}
	}
	if got := caps[0].NextProbe; !got.Equal(first) || got.Before(planned) {
		t.Fatalf("UsageCaps next probe = %s, want %s, the earliest next run of x's watches (the plan was %s)", got, first, planned)
	}
	// The watch that would probe leaves the schedule: the other one
	// probes, at its own next run, and both doors say so.
	other := w1
	if firstID == w1 {
		other = w2
	}
	f.w.Remove(firstID)
	st, err := f.w.Status(other)
	if caps := f.w.UsageCaps(); err != nil || len(caps) != 1 || !caps[0].NextProbe.Equal(st.Next) {
		t.Errorf("UsageCaps after %s left the schedule = %+v, want next probe %s, the next run of %s (%v)", firstID, caps, st.Next, other, err)
	}
	if err := f.w.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if caps := f.w.UsageCaps(); len(caps) != 1 || !caps[0].NextProbe.Equal(first) {
		t.Errorf("UsageCaps after %s came back = %+v, want next probe %s", firstID, caps, first)
	}
	capped := f.sb.Stats().UsageCapped
	f.clock.Set(first)
	if ev := f.run(firstID); ev.Kind != worker.EventRunFailed || ev.Reason != worker.SkipUsageCapped || f.sb.Stats().UsageCapped != capped+1 {
		t.Errorf("run at the shown probe %s = %s %s %v, want the probe answered usage-capped", first, ev.Kind, ev.Reason, ev.Err)
	}
}

// TestRunNowProbesTheUsageCap: an operator's manual run of a watch of a
// capped provider (suspended by the cap, or added since, active) is the
// probe, at once: if the provider answers, every watch resumes; if it is
// still capped, the watches stay suspended, make no request, and the next
// probe is an hour on.
func TestRunNowProbesTheUsageCap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lift   bool
		active bool // probe with a watch added after the cap
	}{
		{"the cap lifted", true, false},
		{"the cap lifted, a watch added since", true, true},
		{"still capped", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, w1, w2 := capFix(t)
			f.clock.Advance(5 * time.Minute)
			id := w1
			if tc.active {
				id, _ = f.addWatch("300", vault.WatchSpec{Hashtags: []string{"bbolt"}, Schedule: "@every 1m"}, time.Time{})
				if err := f.w.Reload(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.lift {
				f.sb.SetMonthlyPostBudget(0)
			}
			capped := f.sb.Stats().UsageCapped
			if err := f.w.RunNow(id); err != nil {
				t.Fatalf("RunNow(%s) of a capped watch = %v, want it queued as the probe", id, err)
			}
			ev := f.run(id) // the manual run
			if tc.lift {
				if ev.Kind != worker.EventRun {
					t.Fatalf("manual run after the cap lifted = %s %s %v, want a run (the probe)", ev.Kind, ev.Reason, ev.Err)
				}
				for _, w := range []string{w1, w2} {
					if wt := f.watch(w); wt.State != vault.WatchActive {
						t.Errorf("watch %s after the probe got through = %s, want active", w, wt.StateText())
					}
				}
				if len(f.eventsOf(worker.EventUsageCapLifted)) != 1 {
					t.Errorf("no usage_cap_lifted event")
				}
				return
			}
			if ev.Kind != worker.EventRunFailed || ev.Reason != worker.SkipUsageCapped || f.sb.Stats().UsageCapped != capped+1 {
				t.Fatalf("manual run still capped = %s %s %v, want the probe answered usage-capped", ev.Kind, ev.Reason, ev.Err)
			}
			if wt := f.watch(w2); wt.SuspendReason != vault.SuspendUsageCapped {
				t.Errorf("watch %s after a capped probe = %s, want suspended (usage_capped)", w2, wt.StateText())
			}
			f.clock.Advance(30 * time.Minute)
			if ev := f.run(w2); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipUsageCapped {
				t.Errorf("scheduled run after the capped probe = %s %s, want skipped usage_capped", ev.Kind, ev.Reason)
			}
			if n := f.sb.Stats().UsageCapped; n != capped+1 {
				t.Errorf("X answered %d usage-capped searches after the probe, want none before the next one", n-capped-1)
			}
			st, err := f.w.Status(w2)
			probe := f.clock.Now().Add(30 * time.Minute) // an hour after the manual probe
			if err != nil || st.Next.Before(probe) || !st.Next.Before(probe.Add(time.Minute)) {
				t.Errorf("Status(%s).Next = %s, %v; want the first fire at or after the next probe %s", w2, st.Next, err, probe)
			}
		})
	}
}

// TestUsageCapsAfterRestart: after a restart the worker's own state says
// which provider is capped and when it is probed next (from the store),
// and each capped watch's Status carries the cap; a probe that gets
// through clears it.
func TestUsageCapsAfterRestart(t *testing.T) {
	f, w1, _ := capFix(t)
	probe := f.clock.Now().Add(time.Hour)
	f.clock.Advance(10 * time.Minute)
	f.restart()
	caps := f.w.UsageCaps()
	if len(caps) != 1 || caps[0].Provider != "x" || caps[0].NextProbe.Before(probe) || !caps[0].NextProbe.Before(probe.Add(time.Minute)) ||
		caps[0].Probing {
		t.Fatalf("UsageCaps after a restart = %+v, want x probed at the first run at or after %s", caps, probe)
	}
	st, err := f.w.Status(w1)
	if err != nil || st.UsageCap == nil || !st.UsageCap.NextProbe.Equal(caps[0].NextProbe) || st.Next.Before(probe) {
		t.Fatalf("Status(%s) after a restart = %+v, %v; want its usage cap, next probe %s", w1, st, err, caps[0].NextProbe)
	}
	if n := f.sb.Stats().APICalls[xsandbox.EndpointSearch]["100"]; n != 2 {
		t.Errorf("user 100 made %d searches by the restart, want 2 (before the cap, over it)", n)
	}
	f.sb.SetMonthlyPostBudget(0)
	if err := f.w.RunNow(w1); err != nil {
		t.Fatal(err)
	}
	f.mustRun(w1)
	if caps := f.w.UsageCaps(); len(caps) != 0 {
		t.Errorf("UsageCaps after the probe got through = %+v, want none", caps)
	}
	if st, err := f.w.Status(w1); err != nil || st.UsageCap != nil {
		t.Errorf("Status(%s) after the probe got through = %+v, %v; want no usage cap", w1, st.UsageCap, err)
	}
}

// TestRunNowLogSaysWhatIsTrue: the log line of a manual run of a capped
// watch says what it did: the probe moved to now (with the plan it
// replaced), or, while a probe is already asking the provider, that that
// probe stands for it; never "probes now" beside probing=false.
func TestRunNowLogSaysWhatIsTrue(t *testing.T) {
	logs := &lockedBuffer{}
	f, w1, w2 := capFix(t, func(c *worker.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	planned := f.clock.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05")
	f.clock.Advance(5 * time.Minute)
	if err := f.w.RunNow(w1); err != nil {
		t.Fatal(err)
	}
	if n := logs.lines("manual run is the provider's usage-cap probe: the probe moved to now", "watch="+w1, "planned="+planned); n != 1 {
		t.Errorf("RunNow(%s) logged %d lines saying the probe moved to now from %s, want 1:\n%s", w1, n, planned, logs.String())
	}
	var runErr error
	f.hook.set(func(n int) {
		if n == 1 { // the probe is asking X
			runErr = f.w.RunNow(w2)
		}
	})
	f.run(w1)
	f.hook.set(nil)
	if runErr != nil {
		t.Fatalf("RunNow(%s) during the probe = %v", w2, runErr)
	}
	if n := logs.lines("manual run queued: a probe of the provider's usage cap is already asking it", "watch="+w2); n != 1 {
		t.Errorf("RunNow(%s) during the probe logged %d lines saying a probe is under way, want 1:\n%s", w2, n, logs.String())
	}
	if n := logs.lines("probing="); n != 0 {
		t.Errorf("a manual run logged probing=:\n%s", logs.String())
	}
}

// reachCap spends the sandbox's monthly post budget with one run of w
// (user 100, #golang) and checks that the next run is refused by the
// usage cap.
func (f *fix) reachCap(w string) {
	f.t.Helper()
	f.sb.SetMonthlyPostBudget(1)
	f.clock.Advance(time.Second)
	f.post("100", "#golang a")
	f.mustRun(w)
	f.clock.Advance(time.Second)
	if ev := f.run(w); ev.Kind != worker.EventRunFailed || ev.Reason != worker.SkipUsageCapped {
		f.t.Fatalf("run over the cap = %s %s %v, want run_failed usage_capped", ev.Kind, ev.Reason, ev.Err)
	}
}
