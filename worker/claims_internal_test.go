package worker

import (
	"context"
	"testing"
	"time"

	"tagwatch/worker/sched"
)

// TestRunRound: a scheduled fire's round is its due time; two daemons'
// catch-up fires in the same period of the schedule (they started at
// different times) share one round, older than the next scheduled
// fire's, and a catch-up in the next period is a round of its own.
func TestRunRound(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	e, err := sched.New(sched.Config{Job: func(context.Context, sched.Fire) {}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Upsert(sched.Entry{Key: "w1", User: "u", Provider: "x", Schedule: "@every 1h"}); err != nil {
		t.Fatal(err)
	}
	w := &Worker{engine: e}
	n, err := e.FireFrom("w1", t0)
	if err != nil || n.IsZero() {
		t.Fatalf("FireFrom = %v, %v", n, err)
	}
	catchUp := func(at time.Time) int64 {
		return w.runRound(sched.Fire{Key: "w1", Scheduled: at, Reason: sched.CatchUp})
	}
	a, b := catchUp(n.Add(-50*time.Minute)), catchUp(n.Add(-5*time.Minute))
	if a != b || a != n.UnixNano()-1 {
		t.Errorf("catch-up rounds in one period = %d and %d, want both %d (just before the next fire)", a, b, n.UnixNano()-1)
	}
	scheduled := w.runRound(sched.Fire{Key: "w1", Scheduled: n, Reason: sched.Scheduled})
	if scheduled != n.UnixNano() || scheduled <= a {
		t.Errorf("scheduled fire's round = %d, want %d, newer than the catch-up's %d", scheduled, n.UnixNano(), a)
	}
	if c := catchUp(n.Add(5 * time.Minute)); c != n.Add(time.Hour).UnixNano()-1 {
		t.Errorf("catch-up in the next period: round %d, want %d", c, n.Add(time.Hour).UnixNano()-1)
	}
	manual := n.Add(17 * time.Second)
	if r := w.runRound(sched.Fire{Key: "w1", Scheduled: manual, Reason: sched.Manual}); r != manual.UnixNano() {
		t.Errorf("manual fire's round = %d, want when it was asked for, %d", r, manual.UnixNano())
	}
}
