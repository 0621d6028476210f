package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"tagwatch/cmd/internal/statusapi"
)

// TestRefusedWatchAfterReload: a stored watch the daemon's current rules
// refuse gets the same answer at every door. Stored under a 1m floor, it
// is refused once a reload (the SIGHUP path) raises scheduler.min_interval
// to 20m: not scheduled, `tagwatchctl watches run` refuses it with the
// rule's message, `tagwatchctl watches` shows it refused, `tagwatchctl
// status` counts it invalid, the "watches loaded" line counts it and one
// Warn line names it however often the daemon reloads. It comes back at
// the reload that lowers the floor again, and by a `watches change` that
// makes it valid under the raised floor.
func TestRefusedWatchAfterReload(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada") // a watch on "@every 1m", newSvc's floor
	ctx := context.Background()

	watch := func() statusapi.Watch {
		t.Helper()
		var ws []statusapi.Watch
		s.ctlJSON(&ws, "watches", "list")
		if len(ws) != 1 {
			t.Fatalf("watches = %+v, want one", ws)
		}
		return ws[0]
	}
	invalidCount := func() int {
		t.Helper()
		var st statusapi.Status
		s.ctlJSON(&st, "status")
		return st.Counts.Watches["invalid"]
	}
	raw, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	const floor1m = `min_interval = "1m"`
	if !strings.Contains(string(raw), floor1m) {
		t.Fatalf("newSvc's configuration has no %s", floor1m)
	}
	// reload writes the configuration with floor as scheduler.min_interval
	// and applies it as SIGHUP does.
	reload := func(floor string) {
		t.Helper()
		cfg := strings.Replace(string(raw), floor1m, `min_interval = "`+floor+`"`, 1)
		if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.op.reload(ctx); err != nil {
			t.Fatalf("reload with min_interval %s = %v", floor, err)
		}
	}
	logLines := func(parts ...string) int {
		n := 0
		for line := range strings.Lines(s.logs.String()) {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				n++
			}
		}
		return n
	}

	w := watch()
	id := w.ID
	if w.NextRun.IsZero() || w.Invalid != "" {
		t.Fatalf("watch under the rules it was stored with = next run %v, invalid %q; want scheduled, valid", w.NextRun, w.Invalid)
	}

	reload("20m")
	reload("20m") // a second reload logs the refusal no more
	const why = `schedule "@every 1m" runs every 1m0s; the minimum between runs of one watch is 20m0s (scheduler.min_interval)`
	if w := watch(); !w.NextRun.IsZero() || w.Invalid != why {
		t.Errorf("watch after the floor rose = next run %v, invalid %q; want not scheduled, invalid %q", w.NextRun, w.Invalid, why)
	}
	if st, err := s.op.d.worker.Status(id); err != nil || st.Scheduled {
		t.Errorf("worker.Status = scheduled %v, %v; want not scheduled", st.Scheduled, err)
	}
	if out, code := s.ctl("watches", "list"); code != 0 || !strings.Contains(out, "active, refused: "+why) {
		t.Errorf("tagwatchctl watches = %d %q, want the state \"active, refused: %s\"", code, out, why)
	}
	if out, code := s.ctl("watches", "run", id); code != exitUsageCode || !strings.Contains(out, `watch "`+id+`": refused by the current rules, so it does not run: `+why) {
		t.Errorf("tagwatchctl watches run = %d %q, want %d and the rule's message", code, out, exitUsageCode)
	}
	if n := invalidCount(); n != 1 {
		t.Errorf("status counts %d invalid watches, want 1", n)
	}
	if n := logLines("watch rules reloaded", "min_interval=20m0s"); n != 2 {
		t.Errorf("%d \"watch rules reloaded\" lines naming the 20m floor, want 2 (one per reload)\n%s", n, s.logs)
	}
	if n := logLines("watches loaded", "scheduled=0", "invalid=1"); n != 2 {
		t.Errorf("%d \"watches loaded ... scheduled=0 ... invalid=1\" lines, want 2\n%s", n, s.logs)
	}
	if n := logLines("level=WARN", "watch refused by the current rules", "watch="+id, "the minimum between runs of one watch is 20m0s"); n != 1 {
		t.Errorf("%d Warn lines naming the refused watch and the rule, want 1\n%s", n, s.logs)
	}

	// Valid again: the reload that lowers the floor schedules it.
	reload("1m")
	if w := watch(); w.NextRun.IsZero() || w.Invalid != "" {
		t.Errorf("watch after the floor fell = next run %v, invalid %q; want scheduled, valid", w.NextRun, w.Invalid)
	}
	if n := invalidCount(); n != 0 {
		t.Errorf("status counts %d invalid watches after the floor fell, want 0", n)
	}
	if out, code := s.ctl("watches", "run", id); code != 0 {
		t.Errorf("tagwatchctl watches run of a valid watch = %d %q", code, out)
	}

	// Refused again; a change that makes it valid is accepted (the result
	// is checked, not the stored watch) and schedules it.
	reload("20m")
	if w := watch(); !w.NextRun.IsZero() || w.Invalid != why {
		t.Fatalf("watch after the floor rose again = next run %v, invalid %q", w.NextRun, w.Invalid)
	}
	var changed statusapi.Watch
	s.ctlJSON(&changed, "watches", "change", id, "--schedule", "@every 30m")
	if changed.Invalid != "" || changed.NextRun.IsZero() {
		t.Errorf("watches change to @every 30m = next run %v, invalid %q; want scheduled, valid", changed.NextRun, changed.Invalid)
	}
	if n := invalidCount(); n != 0 {
		t.Errorf("status counts %d invalid watches after the fixing change, want 0", n)
	}
}
