package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
)

func row(id string, next time.Time) vault.OutboxRow {
	return vault.OutboxRow{ID: id, Kind: vault.NoticeMatch, UserID: "zed", Target: "console:",
		Payload: []byte(`{"type":"match","user_id":"zed"}`), NextAttempt: next}
}

func enqueue(t *testing.T, s Backend, rs ...vault.OutboxRow) {
	t.Helper()
	if _, err := s.Enqueue(rs...); err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
}

func settle(t *testing.T, s Backend, outs ...vault.OutboxOutcome) []vault.OutboxSettled {
	t.Helper()
	got, err := s.SettleOutbox(outs)
	if err != nil {
		t.Fatalf("SettleOutbox = %v", err)
	}
	return got
}

func load(t *testing.T, s Backend, id string) vault.OutboxRow {
	t.Helper()
	r, err := s.OutboxRow(id)
	if err != nil {
		t.Fatalf("OutboxRow(%s) = %v", id, err)
	}
	return r
}

// testOutboxDue: rows are due by next attempt, then id; the scan reports
// when the next row is due and stops when asked.
func testOutboxDue(t *testing.T, s Backend) {
	now := s.Now()
	enqueue(t, s, row("b", now), row("c", now.Add(time.Minute)), row("a", now), row("d", now.Add(-time.Minute)))
	ids, next := due(t, s, now)
	if want := []string{"d", "a", "b"}; !slices.Equal(ids, want) || !next.Equal(now.Add(time.Minute)) {
		t.Errorf("DueOutboxIDs(now) = %v, next %v; want %v, next %v", ids, next, want, now.Add(time.Minute))
	}
	var first []string
	next, err := s.DueOutboxIDs(now, func(id string) bool { first = append(first, id); return false })
	if err != nil || !slices.Equal(first, []string{"d"}) || !next.IsZero() {
		t.Errorf("DueOutboxIDs stopped after one = %v, next %v, %v; want [d], zero", first, next, err)
	}
	s.Advance(time.Minute)
	if ids, next := due(t, s, s.Now()); len(ids) != 4 || !next.IsZero() {
		t.Errorf("DueOutboxIDs a minute later = %v, next %v; want all 4, none later", ids, next)
	}
	got, err := s.LoadOutbox([]string{"c", "nosuch", "a"})
	if err != nil || len(got) != 2 || got[0].ID != "c" || got[1].ID != "a" {
		t.Errorf("LoadOutbox(c, nosuch, a) = %v, %v; want c and a in that order", got, err)
	}
}

// testOutboxSettle: an outcome applies only while the row is still in
// the state it was read in; stale and repeated outcomes are skipped.
func testOutboxSettle(t *testing.T, s Backend) {
	now := s.Now()
	enqueue(t, s, row("r1", now))
	r := load(t, s, "r1")
	got := settle(t, s, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxRetrying, Sent: true,
		NextAttempt: now.Add(5 * time.Minute), Error: "503"})
	if len(got) != 1 || got[0].Row.State != vault.OutboxRetrying || got[0].Row.Attempts != 1 {
		t.Fatalf("SettleOutbox(retrying) = %+v, want the row retrying after 1 attempt", got)
	}
	if ids, next := due(t, s, now); len(ids) != 0 || !next.Equal(now.Add(5*time.Minute)) {
		t.Errorf("due after a retry = %v, next %v; want none now, next in 5m", ids, next)
	}
	// The outcome of the first read, applied again: the row moved on.
	if got := settle(t, s, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered, Sent: true}); len(got) != 0 {
		t.Errorf("SettleOutbox(stale outcome) = %+v, want it skipped", got)
	}
	if cur := load(t, s, "r1"); cur.State != vault.OutboxRetrying || cur.Attempts != 1 || cur.LastError != "503" {
		t.Errorf("row after a stale outcome = %s, %d attempts, %q; want retrying, 1, 503", cur.State, cur.Attempts, cur.LastError)
	}
	s.Advance(5 * time.Minute)
	r = load(t, s, "r1")
	got = settle(t, s, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered, Sent: true})
	if len(got) != 1 || got[0].Row.State != vault.OutboxDelivered || !got[0].Row.DeliveredAt.Equal(s.Now()) || got[0].Row.LastError != "" {
		t.Fatalf("SettleOutbox(delivered) = %+v, want delivered now, error cleared", got)
	}
	if ids, next := due(t, s, s.Now().Add(time.Hour)); len(ids) != 0 || !next.IsZero() {
		t.Errorf("due after delivery = %v, next %v; want nothing", ids, next)
	}
	if got := settle(t, s, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDead, Sent: true}); len(got) != 0 {
		t.Errorf("SettleOutbox(delivered row again) = %+v, want it skipped", got)
	}
	if got := settle(t, s, vault.OutboxOutcome{ID: "nosuch", State: vault.OutboxDelivered}); len(got) != 0 {
		t.Errorf("SettleOutbox(pruned row) = %+v, want it skipped without error", got)
	}
}

// testOutboxGroup: a batch with one outcome that is not one applies none.
func testOutboxGroup(t *testing.T, s Backend) {
	now := s.Now()
	enqueue(t, s, row("r1", now), row("r2", now))
	for name, bad := range map[string]vault.OutboxOutcome{
		"unknown state":        {ID: "r2", State: "bogus"},
		"retry without a time": {ID: "r2", State: vault.OutboxRetrying},
		"no id":                {State: vault.OutboxDead},
	} {
		_, err := s.SettleOutbox([]vault.OutboxOutcome{{ID: "r1", State: vault.OutboxDelivered, Sent: true}, bad})
		wantErr(t, "SettleOutbox(good, "+name+")", err, vault.ErrInvalid)
	}
	if r := load(t, s, "r1"); r.State != vault.OutboxPending || r.Attempts != 0 {
		t.Errorf("row r1 after refused batches = %s, %d attempts; want pending, 0", r.State, r.Attempts)
	}
	got := settle(t, s, vault.OutboxOutcome{ID: "r1", State: vault.OutboxDelivered, Sent: true},
		vault.OutboxOutcome{ID: "r2", State: vault.OutboxDead, Sent: true, Error: "410"})
	if len(got) != 2 || got[0].Row.ID != "r1" || got[1].Row.ID != "r2" || got[1].Row.State != vault.OutboxDead {
		t.Errorf("SettleOutbox(batch) = %+v, want r1 delivered then r2 dead, in order", got)
	}
}

// testOutboxReplay: a replayed row keeps its id and starts over; only dead
// and dropped rows are replayed; an enqueue of an existing id adds
// nothing.
func testOutboxReplay(t *testing.T, s Backend) {
	now := s.Now()
	enqueue(t, s, row("r1", now))
	settle(t, s, vault.OutboxOutcome{ID: "r1", State: vault.OutboxDead, Sent: true, Error: "gave up"})
	s.Advance(time.Hour)
	r, err := s.ReplayOutbox("r1", "op")
	if err != nil || r.ID != "r1" || r.State != vault.OutboxPending || r.Attempts != 0 || r.LastError != "" || !r.NextAttempt.Equal(s.Now()) {
		t.Fatalf("ReplayOutbox = %+v, %v; want r1 pending from now with a fresh schedule", r, err)
	}
	if ids, _ := due(t, s, s.Now()); !slices.Equal(ids, []string{"r1"}) {
		t.Errorf("due after replay = %v, want [r1]", ids)
	}
	_, err = s.ReplayOutbox("r1", "op")
	wantErr(t, "ReplayOutbox(pending row)", err, vault.ErrConflict)
	_, err = s.ReplayOutbox("nosuch", "op")
	wantErr(t, "ReplayOutbox(nosuch)", err, vault.ErrNotFound)
	if n, err := s.Enqueue(row("r1", s.Now())); err != nil || n != 0 {
		t.Errorf("Enqueue(existing id) = %d, %v; want 0 added", n, err)
	}
}

// testOutboxTwoLoops: two delivery loops read the same due rows at once;
// each row is settled exactly once.
func testOutboxTwoLoops(t *testing.T, s Backend) {
	now := s.Now()
	var all []vault.OutboxRow
	for i := range 40 {
		all = append(all, row(string(rune('A'+i/26))+string(rune('a'+i%26)), now))
	}
	enqueue(t, s, all...)
	var mu sync.Mutex
	settled := map[string]int{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				if round == 100 {
					t.Error("the delivery loop has not drained the outbox after 100 rounds: settled rows stay due")
					return
				}
				var ids []string
				if _, err := s.DueOutboxIDs(now, func(id string) bool { ids = append(ids, id); return len(ids) < 7 }); err != nil {
					t.Error(err)
					return
				}
				if len(ids) == 0 {
					return
				}
				rs, err := s.LoadOutbox(ids)
				if err != nil {
					t.Error(err)
					return
				}
				var outs []vault.OutboxOutcome
				for _, r := range rs {
					outs = append(outs, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered, Sent: true})
				}
				got, err := s.SettleOutbox(outs)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, g := range got {
					settled[g.Row.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, r := range all {
		if settled[r.ID] != 1 {
			t.Errorf("row %s settled %d times, want once", r.ID, settled[r.ID])
		}
		if got := load(t, s, r.ID); got.State != vault.OutboxDelivered || got.Attempts != 1 {
			t.Errorf("row %s = %s after %d attempts, want delivered after 1", r.ID, got.State, got.Attempts)
		}
	}
}
