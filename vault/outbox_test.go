package vault

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// obClock is a settable clock.
type obClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *obClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *obClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func openOutboxDB(t *testing.T) (*DB, *obClock) {
	t.Helper()
	master, _, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	clk := &obClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	db, err := Open(Options{Path: filepath.Join(t.TempDir(), "tagwatch.db"), Master: master, Create: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	checkAtCleanup(t, db)
	return db, clk
}

func obRow(id, user, target string) OutboxRow {
	return OutboxRow{ID: id, Kind: NoticeMatch, UserID: user, Target: target, Payload: []byte(`{"type":"match"}`)}
}

func obEnqueue(t *testing.T, db *DB, rows ...OutboxRow) {
	t.Helper()
	if _, err := db.Enqueue(rows...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func obSettle(t *testing.T, db *DB, outs ...OutboxOutcome) []OutboxSettled {
	t.Helper()
	s, err := db.SettleOutbox(outs)
	if err != nil {
		t.Fatalf("SettleOutbox: %v", err)
	}
	return s
}

func obDue(t *testing.T, db *DB, now time.Time) ([]string, time.Time) {
	t.Helper()
	var ids []string
	next, err := db.DueOutboxIDs(now, func(id string) bool { ids = append(ids, id); return true })
	if err != nil {
		t.Fatal(err)
	}
	return ids, next
}

// TestSettleOutbox: each outcome moves its row and the due index
// together; a stale outcome (the row moved on since it was read) is
// skipped; an invalid one records nothing of its batch.
func TestSettleOutbox(t *testing.T) {
	db, clk := openOutboxDB(t)
	t0 := clk.Now()
	obEnqueue(t, db, obRow("a", "u1", "console:"), obRow("b", "u1", "console:"), obRow("c", "u1", "console:"), obRow("d", "u1", "console:"))
	if ids, next := obDue(t, db, t0); strings.Join(ids, ",") != "a,b,c,d" || !next.IsZero() {
		t.Fatalf("DueOutboxIDs = %v, %v; want a,b,c,d and nothing later", ids, next)
	}
	clk.Set(t0.Add(time.Second))
	got := obSettle(t, db,
		OutboxOutcome{ID: "a", State: OutboxDelivered, Sent: true},
		OutboxOutcome{ID: "b", State: OutboxRetrying, Sent: true, NextAttempt: t0.Add(time.Minute), Error: strings.Repeat("é", 200)},
		OutboxOutcome{ID: "c", State: OutboxDead, Sent: true, Error: "status 500: Internal Server Error"},
		OutboxOutcome{ID: "gone", State: OutboxDelivered, Sent: true}, // pruned meanwhile: skipped
	)
	if len(got) != 3 {
		t.Fatalf("SettleOutbox recorded %d outcomes, want 3: %+v", len(got), got)
	}
	a, _ := db.OutboxRow("a")
	b, _ := db.OutboxRow("b")
	c, _ := db.OutboxRow("c")
	if a.State != OutboxDelivered || a.Attempts != 1 || !a.DeliveredAt.Equal(t0.Add(time.Second)) {
		t.Errorf("a = %+v, want delivered after 1 attempt at the commit's time", a)
	}
	if b.State != OutboxRetrying || b.Attempts != 1 || !b.NextAttempt.Equal(t0.Add(time.Minute)) || len(b.LastError) > LastErrorMax ||
		!strings.HasPrefix(strings.Repeat("é", 200), b.LastError) {
		t.Errorf("b = %s after %d, next %v, error of %d bytes; want retrying at +1m, the error clipped on a character", b.State, b.Attempts, b.NextAttempt, len(b.LastError))
	}
	if c.State != OutboxDead || c.LastError == "" {
		t.Errorf("c = %+v, want dead with its error", c)
	}
	if ids, next := obDue(t, db, t0.Add(time.Second)); strings.Join(ids, ",") != "d" || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("DueOutboxIDs after settling = %v, %v; want d, and b due at +1m", ids, next)
	}

	// Fencing: an outcome decided on an attempt count the row no longer
	// has, or for a row no longer waiting, changes nothing.
	stale := obSettle(t, db,
		OutboxOutcome{ID: "b", Attempts: 0, State: OutboxDead, Sent: true, Error: "late"},
		OutboxOutcome{ID: "a", Attempts: 1, State: OutboxRetrying, Sent: true, NextAttempt: t0},
	)
	if len(stale) != 0 {
		t.Errorf("stale outcomes recorded: %+v", stale)
	}
	if b2, _ := db.OutboxRow("b"); b2.State != OutboxRetrying || b2.Attempts != 1 {
		t.Errorf("b after a stale outcome = %s after %d, want unchanged", b2.State, b2.Attempts)
	}

	// A dropped row was not sent: its count stays.
	obSettle(t, db, OutboxOutcome{ID: "d", State: OutboxDropped, Error: "target disabled (410 Gone)"})
	if d, _ := db.OutboxRow("d"); d.State != OutboxDropped || d.Attempts != 0 {
		t.Errorf("d = %s after %d, want dropped after 0", d.State, d.Attempts)
	}

	// An invalid outcome: an *InvalidError, and nothing of the batch.
	obEnqueue(t, db, obRow("e", "u1", "console:"))
	for _, bad := range []OutboxOutcome{
		{ID: "e", State: OutboxRetrying, Sent: true},
		{ID: "e", State: OutboxPending},
		{ID: "", State: OutboxDelivered},
		{ID: "e", State: OutboxDead, DisableTarget: true},
	} {
		_, err := db.SettleOutbox([]OutboxOutcome{{ID: "b", Attempts: 1, State: OutboxDelivered, Sent: true}, bad})
		var inv *InvalidError
		if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) {
			t.Errorf("SettleOutbox(%+v) = %v, want an *InvalidError", bad, err)
		}
	}
	if b3, _ := db.OutboxRow("b"); b3.State != OutboxRetrying {
		t.Errorf("b = %s after a batch with an invalid outcome, want nothing recorded", b3.State)
	}
}

// TestSettleDisableTarget: a 410 drops every waiting row of the target,
// of every user, and tells each user on their other targets, with the
// target named by the label the notifier gave (a fact, no words).
func TestSettleDisableTarget(t *testing.T) {
	db, _ := openOutboxDB(t)
	hook := "https://hooks.example.com/services/T0000/B0000/XXXXXXXXXXXX"
	for _, u := range []string{"u1", "u2", "u3"} {
		putGrant(t, db, u, "rt-"+u, "at-"+u)
	}
	for _, w := range []Watch{
		{ID: "w1", UserID: "u1", Provider: "x", State: WatchActive, WatchSpec: WatchSpec{Hashtags: []string{"a"}, Schedule: "@hourly", Targets: []string{hook, "console:", "mailto:u1@example.com"}}},
		{ID: "w2", UserID: "u2", Provider: "x", State: WatchActive, WatchSpec: WatchSpec{Hashtags: []string{"b"}, Schedule: "@hourly", Targets: []string{hook, "console:"}}},
		{ID: "w3", UserID: "u3", Provider: "x", State: WatchActive, WatchSpec: WatchSpec{Hashtags: []string{"c"}, Schedule: "@hourly", Targets: []string{hook}}},
	} {
		if err := db.Update(func(tx *Tx) error { return tx.PutWatch(w) }); err != nil {
			t.Fatal(err)
		}
	}
	obEnqueue(t, db, obRow("r1", "u1", hook), obRow("r2", "u2", hook), obRow("r3", "u1", "console:"), obRow("r4", "u3", hook))
	got := obSettle(t, db, OutboxOutcome{ID: "r1", State: OutboxDropped, Sent: true, Error: "status 410: Gone",
		DisableTarget: true, TargetLabel: "https://hooks.example.com/…#0badf00d"})
	if len(got) != 1 || got[0].Dropped != 3 || got[0].Told != 3 {
		t.Fatalf("SettleOutbox(410) = %+v, want r1, r2 and r4 dropped and 3 notices (u1 twice, u2 once)", got)
	}
	for id, want := range map[string]OutboxState{"r1": OutboxDropped, "r2": OutboxDropped, "r4": OutboxDropped, "r3": OutboxPending} {
		if r, _ := db.OutboxRow(id); r.State != want {
			t.Errorf("%s = %s, want %s", id, r.State, want)
		}
	}
	rows, err := db.ListOutbox(OutboxPending, 0)
	if err != nil {
		t.Fatal(err)
	}
	var told []string
	for _, r := range rows {
		if r.Kind != NoticeTargetDisabled {
			continue
		}
		var n Notice
		if err := json.Unmarshal(r.Payload, &n); err != nil {
			t.Fatal(err)
		}
		if n.Type != NoticeTargetDisabled || n.UserID != r.UserID || n.Target != "https://hooks.example.com/…#0badf00d" || n.Message != "" ||
			strings.Contains(string(r.Payload), "XXXXXXXXXXXX") {
			t.Errorf("notice %s = %s, want facts only, the target by its label", r.ID, r.Payload)
		}
		told = append(told, r.UserID+" "+r.Target)
	}
	if strings.Join(told, ",") == "" || len(told) != 3 {
		t.Errorf("notices = %v, want u1 on console: and mail, u2 on console:", told)
	}
}

// TestReplayOutbox: only dead or dropped rows are replayed, with a fresh
// schedule and an audit entry; errors name the notification.
func TestReplayOutbox(t *testing.T) {
	db, clk := openOutboxDB(t)
	obEnqueue(t, db, obRow("dead", "u1", "console:"), obRow("done", "u1", "console:"), obRow("wait", "u1", "console:"))
	obSettle(t, db, OutboxOutcome{ID: "dead", State: OutboxDead, Sent: true, Error: "boom"},
		OutboxOutcome{ID: "done", State: OutboxDelivered, Sent: true})
	_, err := db.ReplayOutbox("nosuch", "ada")
	if !errors.Is(err, ErrNotFound) || err.Error() != `notification "nosuch" does not exist` {
		t.Errorf(`ReplayOutbox("nosuch") = %v, want notification "nosuch" does not exist`, err)
	}
	for id, state := range map[string]string{"done": "delivered", "wait": "pending"} {
		_, err := db.ReplayOutbox(id, "ada")
		var te *TransitionError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "notification "+id+": it is "+state+"; only dead or dropped ones are replayed") {
			t.Errorf("ReplayOutbox(%s) = %v, want a *TransitionError saying it is %s", id, err, state)
		}
	}
	clk.Set(clk.Now().Add(time.Hour))
	r, err := db.ReplayOutbox("dead", "ada")
	if err != nil || r.State != OutboxPending || r.Attempts != 0 || r.LastError != "" || !r.NextAttempt.Equal(clk.Now()) {
		t.Fatalf("ReplayOutbox(dead) = %+v, %v; want pending now with a fresh schedule", r, err)
	}
	if ids, _ := obDue(t, db, clk.Now()); strings.Join(ids, ",") != "wait,dead" {
		t.Errorf("due after the replay = %v, want wait then dead", ids)
	}
	var audit []AuditEvent
	db.View(func(tx *Tx) error {
		return tx.AuditTrail(0, func(ev AuditEvent) error {
			if ev.Kind == AuditOutboxReplayed {
				audit = append(audit, ev)
			}
			return nil
		})
	})
	if len(audit) != 1 || audit[0].Actor != "ada" || audit[0].UserID != "u1" || !strings.Contains(audit[0].Detail, "dead") {
		t.Errorf("audit = %+v, want one replay by ada", audit)
	}
}

// TestPruneOutbox: delivered and dropped rows older than the cutoff go;
// the rest stays.
func TestPruneOutbox(t *testing.T) {
	db, clk := openOutboxDB(t)
	t0 := clk.Now()
	obEnqueue(t, db, obRow("old-delivered", "u", "console:"), obRow("old-dropped", "u", "console:"), obRow("old-dead", "u", "console:"),
		obRow("old-pending", "u", "console:"))
	obSettle(t, db, OutboxOutcome{ID: "old-delivered", State: OutboxDelivered, Sent: true},
		OutboxOutcome{ID: "old-dropped", State: OutboxDropped}, OutboxOutcome{ID: "old-dead", State: OutboxDead, Sent: true})
	clk.Set(t0.Add(48 * time.Hour))
	obEnqueue(t, db, obRow("new-delivered", "u", "console:"), obRow("new-dropped", "u", "console:"))
	obSettle(t, db, OutboxOutcome{ID: "new-delivered", State: OutboxDelivered, Sent: true},
		OutboxOutcome{ID: "new-dropped", State: OutboxDropped})
	n, err := db.PruneOutbox(t0.Add(24 * time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneOutbox = %d, %v; want 2", n, err)
	}
	rows, _ := db.ListOutbox("", 0)
	var left []string
	for _, r := range rows {
		left = append(left, r.ID)
	}
	if got := strings.Join(left, ","); got != "old-dead,old-pending,new-delivered,new-dropped" {
		t.Errorf("left after pruning = %s", got)
	}
}

// TestDropOutboxBacklog: a target over the cap loses its newest waiting
// rows; targets at or under it are not reported.
func TestDropOutboxBacklog(t *testing.T) {
	db, clk := openOutboxDB(t)
	t0 := clk.Now()
	for i, id := range []string{"h1", "h2", "h3", "h4"} {
		clk.Set(t0.Add(time.Duration(i) * time.Second))
		obEnqueue(t, db, obRow(id, "u", "https://hooks.example.com/x"))
	}
	obEnqueue(t, db, obRow("c1", "u", "console:"), obRow("c2", "u", "console:"))
	over, err := db.DropOutboxBacklog(2, "backlog over max_backlog (2)")
	if err != nil || len(over) != 1 || over[0] != (OutboxBacklog{Target: "https://hooks.example.com/x", Waiting: 4, Dropped: 2}) {
		t.Fatalf("DropOutboxBacklog(2) = %+v, %v; want the hook, 4 waiting, 2 dropped", over, err)
	}
	for id, want := range map[string]OutboxState{"h1": OutboxPending, "h2": OutboxPending, "h3": OutboxDropped, "h4": OutboxDropped, "c2": OutboxPending} {
		if r, _ := db.OutboxRow(id); r.State != want {
			t.Errorf("%s = %s, want %s", id, r.State, want)
		}
	}
	// Two rows wait for each target now, four in all: a cap of 4 or more
	// is met by all of them together, a cap of 2 or 3 by each.
	for _, limit := range []int{2, 3, 4, 5} {
		if over, err := db.DropOutboxBacklog(limit, "x"); err != nil || len(over) != 0 {
			t.Errorf("DropOutboxBacklog(%d) with 2 and 2 waiting = %+v, %v; want none over", limit, over, err)
		}
	}
	if over, err := db.DropOutboxBacklog(1, "x"); err != nil || len(over) != 2 {
		t.Errorf("DropOutboxBacklog(1) with 2 and 2 waiting = %+v, %v; want both over", over, err)
	}
	if _, err := db.DropOutboxBacklog(0, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("DropOutboxBacklog(0) = %v, want ErrInvalid", err)
	}
}

// TestOutboxViews: tallies per target and listings by state.
func TestOutboxViews(t *testing.T) {
	db, clk := openOutboxDB(t)
	t0 := clk.Now()
	obEnqueue(t, db, obRow("a", "u", "console:"))
	clk.Set(t0.Add(time.Minute))
	obEnqueue(t, db, obRow("b", "u", "console:"), obRow("c", "u", "mailto:u@example.com"))
	obSettle(t, db, OutboxOutcome{ID: "a", State: OutboxDead, Sent: true}, OutboxOutcome{ID: "c", State: OutboxDelivered, Sent: true})
	tallies, err := db.OutboxTallies()
	want := []OutboxTally{{Target: "console:", Pending: 1, Dead: 1, OldestWaiting: t0.Add(time.Minute)}, {Target: "mailto:u@example.com", Delivered: 1}}
	if err != nil || len(tallies) != 2 || tallies[0] != want[0] || tallies[1] != want[1] {
		t.Errorf("OutboxTallies = %+v, %v; want %+v", tallies, err, want)
	}
	if rows, _ := db.ListOutbox(OutboxDead, 0); len(rows) != 1 || rows[0].ID != "a" {
		t.Errorf("ListOutbox(dead) = %+v, want a", rows)
	}
	if rows, _ := db.ListOutbox("", 2); len(rows) != 2 || rows[0].ID != "a" || rows[1].ID != "b" {
		t.Errorf("ListOutbox(all, 2) = %+v, want a, b", rows)
	}
	if _, err := db.ListOutbox("bogus", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("ListOutbox(bogus) = %v, want ErrInvalid", err)
	}
	if rows, err := db.LoadOutbox([]string{"c", "nosuch", "a"}); err != nil || len(rows) != 2 || rows[0].ID != "c" || rows[1].ID != "a" {
		t.Errorf("LoadOutbox(c, nosuch, a) = %+v, %v; want c, a", rows, err)
	}
}

// TestOpenOutboxSecret: a row's sealed secret opens through the DB.
func TestOpenOutboxSecret(t *testing.T) {
	db, _ := openOutboxDB(t)
	r := obRow("s", "u", "console:")
	if err := db.Update(func(tx *Tx) error {
		if err := tx.SealOutboxSecret(&r, secret.New("https://tagwatch.example/enroll/TOKEN")); err != nil {
			return err
		}
		_, err := tx.Enqueue(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := db.OutboxRow("s")
	v, err := db.OpenOutboxSecret(got)
	if err != nil || v.Reveal() != "https://tagwatch.example/enroll/TOKEN" {
		t.Errorf("OpenOutboxSecret = %v, want the sealed link", err)
	}
	got.ID = "other" // sealed under its own id: moving it fails
	if _, err := db.OpenOutboxSecret(got); err == nil {
		t.Error("OpenOutboxSecret of a secret moved to another row = nil error, want a failure")
	}
}

// TestOutboxProgress: what a target accepted of a row sent as several
// messages is kept while the row waits (retrying, dead, replayed) so no
// message goes twice, and is cleared once the row is delivered; a
// progress that is not partial is never stored.
func TestOutboxProgress(t *testing.T) {
	db, clk := openOutboxDB(t)
	obEnqueue(t, db, obRow("p", "u1", "console:"), obRow("q", "u1", "console:"))
	half := OutboxProgress{Parts: 1, Total: 3, Posts: 7}
	obSettle(t, db, OutboxOutcome{ID: "p", State: OutboxRetrying, Sent: true, NextAttempt: clk.Now().Add(time.Minute), Error: "1 of 3", Progress: half},
		OutboxOutcome{ID: "q", State: OutboxRetrying, Sent: true, NextAttempt: clk.Now().Add(time.Minute), Progress: OutboxProgress{Parts: 3, Total: 3, Posts: 7}})
	if r := obLoad(t, db, "p"); r.Progress != half {
		t.Errorf("retrying row's Progress = %+v, want %+v", r.Progress, half)
	}
	if r := obLoad(t, db, "q"); r.Progress != (OutboxProgress{}) {
		t.Errorf("a progress of every message = %+v, want none stored", r.Progress)
	}
	more := OutboxProgress{Parts: 2, Total: 3, Posts: 12}
	obSettle(t, db, OutboxOutcome{ID: "p", Attempts: 1, State: OutboxDead, Sent: true, Error: "2 of 3", Progress: more})
	r, err := db.ReplayOutbox("p", "ada")
	if err != nil || r.Progress != more {
		t.Fatalf("replayed row = %+v, %v; want its progress %+v kept (a replay sends the rest)", r.Progress, err, more)
	}
	obSettle(t, db, OutboxOutcome{ID: "p", State: OutboxDelivered, Sent: true, Progress: more})
	if r := obLoad(t, db, "p"); r.Progress != (OutboxProgress{}) || r.State != OutboxDelivered {
		t.Errorf("delivered row = %+v, want no progress left", r)
	}
}

func obLoad(t *testing.T, db *DB, id string) OutboxRow {
	t.Helper()
	rows, err := db.LoadOutbox([]string{id})
	if err != nil || len(rows) != 1 {
		t.Fatalf("LoadOutbox(%s) = %v, %v", id, rows, err)
	}
	return rows[0]
}
