package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
)

// TestReplay: Replay works without a running loop (a stopped daemon),
// names the object in its errors, audits the actor, and puts the row back
// under the same id for the next run to deliver.
func TestReplay(t *testing.T) {
	db := openDB(t, "", nil, nil)
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: ev.observe,
		Console: &logBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, db, "dead1", "console:", matchNotice("u1", "w1", 1))
	enqueue(t, db, "done1", "console:", matchNotice("u1", "w1", 1))
	if _, err := db.SettleOutbox([]vault.OutboxOutcome{
		{ID: "dead1", State: vault.OutboxDead, Sent: true, Error: "status 500: Internal Server Error"},
		{ID: "done1", State: vault.OutboxDelivered, Sent: true},
	}); err != nil {
		t.Fatal(err)
	}

	_, err = s.Replay("nosuch", "ada")
	var nf *vault.NotFoundError
	if !errors.As(err, &nf) || err.Error() != `notification "nosuch" does not exist` {
		t.Errorf(`Replay("nosuch") = %v, want *vault.NotFoundError "notification \"nosuch\" does not exist"`, err)
	}
	_, err = s.Replay("done1", "ada")
	var te *vault.TransitionError
	if !errors.As(err, &te) || !errors.Is(err, vault.ErrConflict) ||
		!strings.Contains(err.Error(), "notification done1: it is delivered; only dead or dropped ones are replayed") {
		t.Errorf(`Replay("done1") = %v, want a *vault.TransitionError saying it is delivered`, err)
	}

	got, err := s.Replay("dead1", "ada")
	if err != nil {
		t.Fatalf("Replay(dead1) on a stopped notifier = %v", err)
	}
	if got.ID != "dead1" || got.State != "pending" || got.Attempts != 0 || got.Target != "console:" || got.LastError != "" {
		t.Errorf("Replay(dead1) = %+v, want it pending with a fresh schedule", got)
	}
	if e := ev.wait(t, "dead1", EventReplayed); e.Target != "console:" {
		t.Errorf("replayed event = %+v", e)
	}
	var audited int
	for _, a := range auditTrail(t, db) {
		if a.Kind == vault.AuditOutboxReplayed && a.Actor == "ada" && a.UserID == "u1" && strings.Contains(a.Detail, "dead1") {
			audited++
		}
	}
	if audited != 1 {
		t.Errorf("audit entries for the replay by ada = %d, want 1", audited)
	}
	if _, err := s.Replay("dead1", "ada"); !errors.As(err, &te) {
		t.Errorf("Replay(dead1) twice = %v, want a *vault.TransitionError (it is pending now)", err)
	}

	// The next run delivers it under the same id.
	run(t, s)
	ev.wait(t, "dead1", EventDelivered)
	if r := getRow(t, db, "dead1"); r.State != vault.OutboxDelivered || r.Attempts != 1 {
		t.Errorf("dead1 after the run = %s after %d attempts, want delivered after 1", r.State, r.Attempts)
	}
}

// TestOutboxView: counts per target and rows by state, with targets as
// labels, without a running loop.
func TestOutboxView(t *testing.T) {
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t0 := clk.Now()
	for i, id := range []string{"a1", "a2", "a3", "a4"} {
		clk.Set(t0.Add(time.Duration(i) * time.Minute))
		enqueue(t, db, id, slackHook, matchNotice("u1", "w1", 1))
	}
	enqueue(t, db, "c1", "console:", matchNotice("u1", "w1", 1))
	if _, err := db.SettleOutbox([]vault.OutboxOutcome{
		{ID: "a1", State: vault.OutboxDead, Sent: true, Error: "status 500: Internal Server Error"},
		{ID: "a2", State: vault.OutboxDelivered, Sent: true},
		{ID: "a3", State: vault.OutboxRetrying, Sent: true, NextAttempt: t0.Add(time.Hour), Error: "timeout"},
		{ID: "c1", State: vault.OutboxDead, Sent: true, Error: "broken pipe"},
	}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Outbox("", 0)
	if err != nil {
		t.Fatal(err)
	}
	label := TargetLabel(slackHook)
	want := []TargetCounts{
		{Target: "console:", Dead: 1},
		{Target: label, Pending: 1, Retrying: 1, Dead: 1, Delivered: 1, OldestWaiting: t0.Add(2 * time.Minute)},
	}
	if len(v.Targets) != 2 || v.Targets[0] != want[0] || v.Targets[1] != want[1] {
		t.Errorf("Outbox counts = %+v, want %+v", v.Targets, want)
	}
	if len(v.Rows) != 2 || v.Rows[0].ID != "a1" || v.Rows[1].ID != "c1" || v.Rows[0].Target != label || !v.Rows[0].NextAttempt.IsZero() {
		t.Errorf("Outbox dead letters = %+v, want a1 then c1, labelled", v.Rows)
	}
	if v, _ := s.Outbox("all", 3); len(v.Rows) != 3 || v.Rows[0].ID != "a1" || v.Rows[2].ID != "a3" {
		t.Errorf("Outbox(all, 3) rows = %+v, want a1, a2, a3", v.Rows)
	}
	if v, _ := s.Outbox("retrying", 0); len(v.Rows) != 1 || v.Rows[0].ID != "a3" || !v.Rows[0].NextAttempt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Outbox(retrying) rows = %+v, want a3 with its next attempt", v.Rows)
	}
	var inv *vault.InvalidError
	if _, err := s.Outbox("bogus", 0); !errors.As(err, &inv) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf(`Outbox("bogus") = %v, want a *vault.InvalidError naming the state`, err)
	}
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), "/services/") || strings.Contains(string(b), "XXXXXXXXXXXX") {
		t.Errorf("Outbox view shows a target's path: %s", b)
	}
}
