package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi/xsandbox"
)

// TestHeldWatchNextRunAndRunNow: while a rate limit holds a user's runs
// (X's per-user window spent, or the user's fair share of the app's window
// used), Status's Next is when the watch next asks X (the first fire of
// its schedule at or after the hold's end), not a fire the hold skips; and
// RunNow refuses with a conflict naming the hold and until when, instead
// of queueing a run that asks nothing. Once the hold has passed, RunNow
// queues the run and Next is the schedule's own.
func TestHeldWatchNextRunAndRunNow(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perUser  int
		appShare int
		window   string // as the error names it
	}{
		{"X's per-user window spent", 2, -1, "the provider's per-user window"},
		{"the user's fair share of the app's window used", 300, 2, "the user's fair share of the app-wide window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.AppRequestsPerWindow = tc.appShare }})
			f.sb.SetRateLimit(xsandbox.EndpointSearch, tc.perUser, 0, 15*time.Minute)
			id, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1m"}, time.Time{})
			if err := f.w.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				f.mustRun(id)
				f.clock.Advance(time.Second)
			}
			if ev := f.run(id); ev.NotBefore.IsZero() {
				t.Fatalf("third run = %s %s %v, want one held by the rate limit", ev.Kind, ev.Reason, ev.Err)
			}
			h, ok := f.w.HoldOf("u100", "x")
			if !ok {
				t.Fatal("no hold after the window was spent")
			}
			st, err := f.w.Status(id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Next.Before(h.Until) || !st.Next.Before(h.Until.Add(time.Minute)) {
				t.Errorf("Status.Next = %s during a hold until %s: want the first fire at or after the hold's end", st.Next, h.Until)
			}
			until := h.Until.UTC().Format("2006-01-02 15:04:05Z")
			err = f.w.RunNow(id)
			if !errors.Is(err, vault.ErrConflict) {
				t.Fatalf("RunNow during the hold = %v, want a conflict", err)
			}
			for _, part := range []string{id, "held by a rate limit", tc.window, "/2/tweets/search/recent", "until " + until} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("RunNow's error %q does not say %q", err, part)
				}
			}

			f.clock.Set(h.Until)
			if err := f.w.RunNow(id); err != nil {
				t.Errorf("RunNow after the hold = %v, want it queued", err)
			}
			if st, err := f.w.Status(id); err != nil || st.Next.After(h.Until.Add(time.Minute)) {
				t.Errorf("Status after the hold = next %s, %v; want the schedule's own", st.Next, err)
			}
		})
	}
}
