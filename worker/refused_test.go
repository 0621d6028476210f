package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
)

var _ worker.RuleChecker = (*vault.DB)(nil)

// logBuffer is a log sink tests read while the worker writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain every one of parts.
func (l *logBuffer) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// noConsole is the targets of a notifier whose console channel is gone.
type noConsole struct{}

func (noConsole) CheckTarget(raw string) error {
	if raw == "console:" {
		return fmt.Errorf("target %q: the console channel is not configured", raw)
	}
	return testTargets{}.CheckTarget(raw)
}

// TestRefusedStoredWatch: a stored watch the store's current rules refuse
// (a raised scheduler.min_interval, a target whose channel went away) is
// the same answer at every door of the worker: Reload and Upsert leave it
// out of the schedule, RunNow refuses it with the rule's message, a run
// skips it without a request, Status says why, the "watches loaded" line
// counts it invalid, and it is logged at Warn once however often the
// watches are reloaded. It is scheduled again as soon as it is valid:
// looser rules and a Reload, or a change that fixes it.
func TestRefusedStoredWatch(t *testing.T) {
	logs := &logBuffer{}
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 5m"}, time.Time{})
	ctx := context.Background()
	reload := func() {
		t.Helper()
		if err := f.w.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	status := func() worker.WatchStatus {
		t.Helper()
		st, err := f.w.Status(wid)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	reload()
	if st := status(); !st.Scheduled || st.Invalid != "" {
		t.Fatalf("Status under the rules it was stored with = scheduled %v, invalid %q; want scheduled, valid", st.Scheduled, st.Invalid)
	}

	loose := rules(f.src)
	tight := loose
	tight.MinInterval = 20 * time.Minute
	const tooOften = `schedule "@every 5m" runs every 5m0s; the minimum between runs of one watch is 20m0s (scheduler.min_interval)`
	const noChannel = `target "console:": the console channel is not configured`
	gone := loose
	gone.Targets = noConsole{}

	for _, tc := range []struct {
		name  string
		rules worker.Rules
		why   string
		// logged is a piece of the rule's message as the log quotes it.
		logged string
	}{
		{"min_interval raised", tight, tooOften, "the minimum between runs of one watch is 20m0s"},
		{"target's channel removed", gone, noChannel, "the console channel is not configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loaded := len(logs.lines("watches loaded", "scheduled=0", "invalid=1"))
			f.db.SetRules(tc.rules)
			reload()
			reload() // a second reload logs nothing new
			st := status()
			if st.Scheduled || st.Invalid != tc.why {
				t.Errorf("Status = scheduled %v, invalid %q; want not scheduled, invalid %q", st.Scheduled, st.Invalid, tc.why)
			}
			if n := len(logs.lines("watches loaded", "scheduled=0", "invalid=1")) - loaded; n != 2 {
				t.Errorf(`"watches loaded" lines with invalid=1 = %d, want 2 (one per reload)`, n)
			}
			err := f.w.RunNow(wid)
			want := fmt.Sprintf(`watch %q: refused by the current rules, so it does not run: %s`, wid, tc.why)
			if !errors.Is(err, vault.ErrInvalid) || err == nil || err.Error() != want {
				t.Errorf("RunNow = %v, want %q", err, want)
			}
			searches := f.searches("100")
			if ev := f.run(wid); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipInvalid || ev.Err == nil || ev.Err.Error() != tc.why {
				t.Errorf("RunWatch = %s %s %v, want skipped, %s, the rule's error", ev.Kind, ev.Reason, ev.Err, worker.SkipInvalid)
			}
			if n := f.searches("100") - searches; n != 0 {
				t.Errorf("a refused watch made %d search requests, want 0", n)
			}
			// Upsert (after a resume or a new consent) does not schedule it.
			if err := f.w.Upsert(f.watch(wid)); err != nil {
				t.Errorf("Upsert of a refused watch = %v, want nil (logged, not scheduled)", err)
			}
			if st := status(); st.Scheduled {
				t.Error("Upsert scheduled a refused watch")
			}
			// Two reloads, RunNow, a run and Upsert: one Warn line.
			if got := logs.lines("level=WARN", "watch refused by the current rules", "watch="+wid, tc.logged); len(got) != 1 {
				t.Errorf("Warn lines for the refused watch = %d %q, want 1", len(got), got)
			}

			// Valid again: the next Reload schedules it.
			f.db.SetRules(loose)
			reload()
			if st := status(); !st.Scheduled || st.Invalid != "" {
				t.Errorf("Status after the rules loosened = scheduled %v, invalid %q; want scheduled, valid", st.Scheduled, st.Invalid)
			}
			if got := logs.lines("level=INFO", "watch accepted by the current rules again", "watch="+wid); len(got) == 0 {
				t.Error("no Info line saying the watch is scheduled again")
			}
			if err := f.w.RunNow(wid); err != nil {
				t.Errorf("RunNow of a valid watch = %v", err)
			}
		})
	}

	// A change that fixes the watch is possible under the tight rules (the
	// result is checked, not the stored watch) and schedules it.
	f.db.SetRules(tight)
	reload()
	if st := status(); st.Scheduled {
		t.Fatal("refused watch scheduled")
	}
	every := "@every 30m"
	w, err := f.db.ChangeWatch(wid, vault.WatchChange{Schedule: &every}, "test")
	if err != nil {
		t.Fatalf("ChangeWatch(schedule %q) under a 20m floor = %v, want accepted", every, err)
	}
	if err := f.w.Upsert(w); err != nil {
		t.Fatal(err)
	}
	if st := status(); !st.Scheduled || st.Invalid != "" {
		t.Errorf("Status after the fixing change = scheduled %v, invalid %q; want scheduled, valid", st.Scheduled, st.Invalid)
	}
	reload()
	if got := logs.lines("watches loaded", "scheduled=1", "invalid=0"); len(got) == 0 {
		t.Error(`no "watches loaded ... scheduled=1 invalid=0" after the fixing change`)
	}
}

// TestRefusedWithoutRules: a store without rules (a tool that opens the
// vault without a configuration) refuses nothing: its watches run.
func TestRefusedWithoutRules(t *testing.T) {
	f := newFix(t, fixOpts{})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 5m"}, time.Time{})
	if why := worker.Refused(noRules{}, f.watch(wid)); why != nil {
		t.Errorf("Refused by a store without rules = %v, want nil", why)
	}
	f.db.SetRules(worker.Rules{}) // no source for "x": refused
	want := `provider "x" is not configured`
	if why := worker.Refused(f.db, f.watch(wid)); why == nil || why.Error() != want {
		t.Errorf("Refused = %v, want %q", why, want)
	}
}

// noRules answers as a vault without rules does: an error that is not a
// refusal.
type noRules struct{}

func (noRules) CheckWatch(string, *vault.WatchSpec) error {
	return errors.New("vault: no watch rules set (Options.Rules)")
}
