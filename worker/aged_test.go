package worker_test

import (
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

// TestAgedCursor is case C01 (../shared/cases/C01-aged-cursor.md) through
// the worker, the X source and the X sandbox (which refuses a since_id or
// start_time older than 7 days as X does): a watch that did not run for 8
// days (paused, or its grant waited that long for re-consent: both skip
// runs without a record) resumes; the run searches from the window's
// start, the new posts arrive, nothing is read or queued twice, and the
// stretch X no longer serves is recorded (event, run result, log). Its
// neighbours: a quiet hashtag polled all along (its cursor ages too, but
// nothing was missed: no gap), a watch idle 6 days (cursor inside the
// window), a watch whose runs never found a post (its cursor is a
// start_time), and failed runs meanwhile (a failed run read nothing, so
// the gap starts at the cursor's post, not at the failed run).
func TestAgedCursor(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name string
		idle time.Duration
		// every, when set, runs the watch that often while idle (it
		// finds nothing: a quiet hashtag).
		every time.Duration
		// noFirstPost: the first run finds nothing (no since_id yet).
		noFirstPost bool
		// failMidway: a run fails half way through the idle time.
		failMidway bool
		// gapFrom: where the gap must start: "run" (the first run's
		// time), "post" (the first post's), "" for no gap.
		gapFrom string
	}{
		{name: "C01: idle 8 days (paused, or grant waiting for re-consent)", idle: 8 * day, gapFrom: "run"},
		{name: "quiet hashtag polled every 12 hours for 8 days", idle: 8 * day, every: 12 * time.Hour},
		{name: "idle 6 days: cursor inside the window", idle: 6 * day},
		{name: "no post ever found, idle 8 days: start_time cursor", idle: 8 * day, noFirstPost: true, gapFrom: "run"},
		{name: "a failed run meanwhile", idle: 8 * day, failMidway: true, gapFrom: "post"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFix(t, fixOpts{})
			const xid = "300"
			wid, _ := f.addWatch(xid, vault.WatchSpec{Hashtags: []string{"c01"}}, time.Time{})
			f.clock.Advance(time.Second)
			var want []string
			var firstPost time.Time
			if !tc.noFirstPost {
				firstPost = f.clock.Now()
				want = append(want, f.post(xid, "first #c01"))
			}
			f.clock.Advance(time.Second)
			firstRun := f.clock.Now()
			f.mustRun(wid)

			quiet := tc.every > 0
			idle := func(d time.Duration) {
				for d > 0 {
					step := d
					if quiet {
						step = min(tc.every, d)
					}
					f.clock.Advance(step)
					d -= step
					if quiet {
						f.mustRun(wid)
					}
				}
			}
			idle(12 * time.Hour)
			if !quiet {
				p := f.post(xid, "12 hours after the first run #c01")
				if tc.idle-12*time.Hour < xapi.SearchWindow-xapi.WindowMargin {
					want = append(want, p) // still served at the resume
				} // else in the gap: X no longer serves it
			}
			if tc.failMidway {
				idle(day)
				f.sb.FailNext(xsandbox.EndpointSearch, 3, 503) // the client's try and 2 retries
				if ev := f.run(wid); ev.Kind != worker.EventRunFailed {
					t.Fatalf("run with X failing = %s %v, want a failed run", ev.Kind, ev.Err)
				}
				idle(tc.idle - 12*time.Hour - 3*day - day)
			} else {
				idle(tc.idle - 12*time.Hour - 3*day)
			}
			if !quiet {
				want = append(want, f.post(xid, "three days before the resume #c01"))
			}
			idle(3 * day)
			want = append(want, f.post(xid, "at the resume #c01"))
			f.clock.Advance(time.Minute)

			resumed := f.clock.Now()
			ev := f.mustRun(wid)
			c := f.cursor(wid)
			switch tc.gapFrom {
			case "":
				if ev.Gap != nil || c.LastResult != vault.RunOK || c.LastError != "" {
					t.Errorf("gap %+v, result %q %q; want none and ok", ev.Gap, c.LastResult, c.LastError)
				}
			default:
				from := firstRun
				if tc.gapFrom == "post" {
					from = firstPost
				}
				to := resumed.Add(-xapi.SearchWindow + xapi.WindowMargin)
				if ev.Gap == nil || !ev.Gap.From.Equal(from) || !ev.Gap.To.Equal(to) || ev.Gap.Reason != xapi.GapAged {
					t.Errorf("gap = %+v, want from %v to %v, aged", ev.Gap, from, to)
				}
				if c.LastResult != worker.RunGap || !strings.Contains(c.LastError, "were not read") ||
					!strings.Contains(c.LastError, to.Format(time.RFC3339)) {
					t.Errorf("run recorded %q %q; want %q naming the gap", c.LastResult, c.LastError, worker.RunGap)
				}
			}
			if c.SinceID != want[len(want)-1] {
				t.Errorf("cursor = %s, want the newest post %s", c.SinceID, want[len(want)-1])
			}

			// The next run asks from the new cursor: nothing twice.
			f.clock.Advance(time.Minute)
			want = append(want, f.post(xid, "after #c01"))
			f.clock.Advance(time.Second)
			if ev := f.mustRun(wid); ev.Gap != nil || ev.Matches != 1 {
				t.Errorf("next run: gap %+v, matches %d; want none and 1", ev.Gap, ev.Matches)
			}
			f.checkExactlyOnce(wid, want)
			if n := f.sb.Stats().PostsRead[xid]; n != len(want) {
				t.Errorf("posts read = %d, want %d (each post once)", n, len(want))
			}
		})
	}
}

// TestFailedRunIsNotCoverage: the same mistake as an aged cursor (a search
// from a point that loses posts), where a watch has never found a post and
// so has no since_id: its next run searches from when the last run that
// succeeded was sent, never from a failed run's time (a failed run read
// nothing). A post made between the last good run and a failed one
// arrives.
func TestFailedRunIsNotCoverage(t *testing.T) {
	f := newFix(t, fixOpts{})
	const xid = "310"
	wid, _ := f.addWatch(xid, vault.WatchSpec{Hashtags: []string{"c01b"}}, time.Time{})
	f.clock.Advance(time.Minute)
	f.mustRun(wid) // finds nothing: the cursor is a time
	f.clock.Advance(time.Minute)
	p := f.post(xid, "between the good run and the failed one #c01b")
	f.clock.Advance(time.Minute)
	f.sb.FailNext(xsandbox.EndpointSearch, 3, 503)
	if ev := f.run(wid); ev.Kind != worker.EventRunFailed {
		t.Fatalf("run with X failing = %s %v, want a failed run", ev.Kind, ev.Err)
	}
	f.clock.Advance(time.Minute)
	f.mustRun(wid)
	f.checkExactlyOnce(wid, []string{p})
}
