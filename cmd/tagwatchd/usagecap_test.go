package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// capStatus is what the status JSON says of the usage caps.
type capStatus struct {
	UsageCaps []struct {
		Provider  string    `json:"provider"`
		Watches   int       `json:"watches"`
		NextProbe time.Time `json:"next_probe"`
		Probing   bool      `json:"probing"`
	} `json:"usage_caps"`
}

// TestUsageCapAtEveryDoor: after X answers usage-capped, every door says
// the same about the cap, from the scheduler's state, before and after a
// restart: `tagwatchctl status` has a "usage capped" line (provider,
// watches suspended, next probe: the first run an hour on), `watches`
// shows NEXT RUN as the watch's probe at that very time, not its
// schedule, and `watches resume` refuses with
// when the next probe is and how to probe now. `watches run` is the probe,
// now: still capped, the watch stays suspended and the next probe moves an
// hour on; after the cap lifted, the watch resumes.
func TestUsageCapAtEveryDoor(t *testing.T) {
	s, id := cappedWatch(t)
	capped := time.Now()
	var ws []statusapi.Watch
	s.op.d.worker.RunWatch(context.Background(), id)

	// shown checks every door against the planned probe and returns it.
	shown := func(when string, after time.Time) time.Time {
		t.Helper()
		var st capStatus
		s.ctlJSON(&st, "status")
		if len(st.UsageCaps) != 1 || st.UsageCaps[0].Provider != "x" || st.UsageCaps[0].Watches != 1 {
			t.Fatalf("%s: status usage_caps = %+v, want x's, suspending 1 watch", when, st.UsageCaps)
		}
		probe := st.UsageCaps[0].NextProbe
		// The watch runs every minute: its first run at or after the plan.
		if probe.Before(after.Add(time.Hour-time.Second)) || probe.After(time.Now().Add(time.Hour+time.Minute)) {
			t.Errorf("%s: next probe %s, want the first run an hour after %s", when, probe, after)
		}
		out, code := s.ctl("status")
		want := "usage capped:\n  x  1 watch suspended  next probe " + probe.UTC().Format("2006-01-02 15:04:05Z") + " (in "
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "tagwatchctl watches run WATCH probes now") {
			t.Errorf("%s: tagwatchctl status = %d\n%s\nwant %q and how to probe now", when, code, out, want)
		}
		s.ctlJSON(&ws, "watches", "list")
		next := ws[0].NextRun
		// One time, one truth: status's next probe is when the probe
		// runs, the NEXT RUN of the watch that makes it.
		if ws[0].SuspendReason != "usage_capped" || !next.Equal(probe) || ws[0].UsageCap == nil || !ws[0].UsageCap.NextProbe.Equal(probe) {
			t.Errorf("%s: watch %s %s, next run %s, cap %+v; want suspended (usage_capped), next run the probe at %s as status says",
				when, id, ws[0].State, next, ws[0].UsageCap, probe)
		}
		nextText := next.UTC().Format("2006-01-02 15:04:05Z") + " (in "
		if out, code := s.ctl("watches", "list"); code != 0 || !strings.Contains(out, nextText) || !strings.Contains(out, ", probe)") {
			t.Errorf("%s: tagwatchctl watches = %d\n%s\nwant NEXT RUN %s..., probe)", when, code, out, nextText)
		}
		out, code = s.ctl("watches", "resume", id)
		for _, want := range []string{"suspended (usage_capped)", "resumes by itself", "next probe is at " + nextText,
			"`tagwatchctl watches run " + id + "` probes now"} {
			if code != 6 || !strings.Contains(out, want) {
				t.Errorf("%s: tagwatchctl watches resume = %d %q, want a conflict (6) saying %q", when, code, out, want)
			}
		}
		return probe
	}
	probe := shown("after the cap", capped)
	if out, _ := s.ctl("status"); !strings.Contains(out, "last errors:") || !strings.Contains(out, "usage cap reached") {
		t.Errorf("tagwatchctl status while capped =\n%s\nwant the usage-cap alert under last errors", out)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s.start(0)
	if again := shown("after a restart", capped); !again.Equal(probe) {
		t.Errorf("next probe after a restart = %s, want %s as before", again, probe)
	}

	// The manual run probes now: still capped.
	answered := s.x.Stats().UsageCapped
	ran := time.Now()
	if out, code := s.ctl("watches", "run", id); code != 0 {
		t.Fatalf("tagwatchctl watches run (capped) = %d %q, want it queued as the probe", code, out)
	}
	waitFor(t, 15*time.Second, "the probe answered usage-capped", func() bool { return s.x.Stats().UsageCapped > answered })
	var st capStatus
	waitFor(t, 15*time.Second, "the next probe planned an hour after the manual one", func() bool {
		s.ctlJSON(&st, "status")
		return len(st.UsageCaps) == 1 && !st.UsageCaps[0].Probing && !st.UsageCaps[0].NextProbe.Before(ran.Add(time.Hour))
	})
	shown("after a manual probe still capped", ran)

	// The cap lifted at X: the manual run probes, and the watch resumes.
	s.x.SetMonthlyPostBudget(0)
	if out, code := s.ctl("watches", "run", id); code != 0 {
		t.Fatalf("tagwatchctl watches run (cap lifted) = %d %q, want it queued as the probe", code, out)
	}
	waitFor(t, 15*time.Second, "the watch resumed by the probe", func() bool {
		s.ctlJSON(&ws, "watches", "list")
		return ws[0].State == "active"
	})
	if out, code := s.ctl("status"); code != 0 || strings.Contains(out, "usage capped") || strings.Contains(out, "usage cap reached") {
		t.Errorf("tagwatchctl status after the cap lifted = %d\n%s\nwant no usage cap, and its alert gone from last errors", code, out)
	}
}

// TestLiftedUsageCapIsNoCurrentError: `tagwatchctl status` lists the
// usage-cap alert under "last errors" while the cap is in force, and not
// once a probe got through and the cap lifted: it is no current error
// (the daemon's log keeps it).
func TestLiftedUsageCapIsNoCurrentError(t *testing.T) {
	s, id := cappedWatch(t)
	s.op.d.worker.RunWatch(context.Background(), id)
	const alert = "operator alert: provider usage cap reached"
	if out, code := s.ctl("status"); code != 0 || !strings.Contains(out, "last errors:") || !strings.Contains(out, alert) {
		t.Fatalf("tagwatchctl status while capped = %d\n%s\nwant %q under last errors", code, out, alert)
	}
	s.x.SetMonthlyPostBudget(0)
	if out, code := s.ctl("watches", "run", id); code != 0 {
		t.Fatalf("tagwatchctl watches run (cap lifted) = %d %q, want it queued as the probe", code, out)
	}
	var ws []statusapi.Watch
	waitFor(t, 15*time.Second, "the watch resumed by the probe", func() bool {
		s.ctlJSON(&ws, "watches", "list")
		return ws[0].State == "active"
	})
	if out, code := s.ctl("status"); code != 0 || strings.Contains(out, alert) || strings.Contains(out, "usage capped") {
		t.Errorf("tagwatchctl status after the cap lifted = %d\n%s\nwant neither the cap nor its alert", code, out)
	}
	var st statusapi.Status
	s.ctlJSON(&st, "status")
	for _, e := range st.LastErrors {
		if strings.Contains(e.Message, alert) {
			t.Errorf("status last_errors after the cap lifted has %+v", e)
		}
	}
}

// cappedWatch starts a daemon with ada's one watch enrolled at the X
// sandbox and the sandbox's usage cap reached; the watch has not run since.
func cappedWatch(t *testing.T) (*svc, string) {
	t.Helper()
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada")
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 {
		t.Fatalf("watches = %+v, want one", ws)
	}
	s.x.CapUsage()
	return s, ws[0].ID
}
