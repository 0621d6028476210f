package main

import (
	"os"
	"testing"
	"time"
)

// TestMain runs the e2e peer when the bench starts this test binary as
// its peer (peerEnv), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) == "1" {
		os.Exit(peerMain())
	}
	os.Exit(m.Run())
}

// TestE2ESmoke runs the e2e mode at a tiny scale, its peer a process of
// its own as in the bench: 200 watches (20 users of 10) on `@every 2s`,
// one post 0.4 s before each fire for three seconds. Every post
// is queued exactly once and delivered to the receiver, signed, and every
// fire due in the window runs.
func TestE2ESmoke(t *testing.T) {
	r, err := runE2E(e2eOpts{Watches: 200, PerUser: 10, Schedule: "@every 2s", Hooks: 2, Warm: time.Second,
		Measure: 2 * time.Second, Drain: 300 * time.Millisecond, Lead: 400 * time.Millisecond, Notify: true,
		dir: t.TempDir(), quiet: true})
	if err != nil {
		t.Fatalf("runE2E() = %v", err)
	}
	// 200 watches on 2 s, posts for fires from 0.4 s to 3 s after the
	// start: about 260.
	if r.Posts < 200 {
		t.Errorf("posts made = %d, want about 260", r.Posts)
	}
	if r.Missed != 0 || r.Duplicated != 0 || r.Queued != r.Posts {
		t.Errorf("posts: %d made, %d queued, %d missed, %d duplicated; want each queued once", r.Posts, r.Queued, r.Missed, r.Duplicated)
	}
	if r.Delivered != r.Posts || r.DeliverDups != 0 || r.Undelivered != 0 || r.BadSigs != 0 {
		t.Errorf("deliveries: %d of %d posts delivered, %d twice, %d undelivered, %d bad signatures; want each once, signed",
			r.Delivered, r.Posts, r.DeliverDups, r.Undelivered, r.BadSigs)
	}
	if r.Scheduled < 90 || r.Sustained < 0.95*r.Scheduled {
		t.Errorf("runs: %.1f/s due in the window, %.1f/s run; want 100/s due, all run", r.Scheduled, r.Sustained)
	}
	if r.Failed != 0 || r.CatchUps != 0 {
		t.Errorf("%d runs failed, %d caught up; want none", r.Failed, r.CatchUps)
	}
	if r.CPU <= 0 || r.RSSSteadMiB <= 0 || r.DueToRow.p99 <= 0 {
		t.Errorf("CPU %.3f, RSS %.0f MiB, p99 due to row %s: want each measured", r.CPU, r.RSSSteadMiB, r.DueToRow.p99)
	}
}
