package vault

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRunInput: a run reads its watch, cursor and grant in one call; a
// user without a grant is no error, a deleted watch is a NotFoundError
// naming it.
func TestRunInput(t *testing.T) {
	db := openRunsDB(t, time.Now)
	// A watch whose user has no grant (any more) waits, suspended.
	err := db.Update(func(tx *Tx) error {
		return tx.PutWatch(Watch{ID: "w5", UserID: "u5", Provider: "x", State: WatchSuspended, SuspendReason: SuspendRevoked})
	})
	if err != nil {
		t.Fatal(err)
	}
	in, err := db.RunInput("w5")
	if err != nil || in.Watch.ID != "w5" || in.Cursor.WatchID != "w5" || in.GrantID != "" || in.GrantState != "" {
		t.Errorf("RunInput(w5) without a grant = %+v, %v; want the watch, an empty cursor, no grant", in, err)
	}
	g, err := db.UserGrant("u1", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.MarkNeedsReconsent(g.ID, Reconsent{Reason: "dead_grant", LinkPrefix: "https://tagwatch.example/enroll/"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitRun(RunCommit{WatchID: "w1", NewSinceID: "7"}); err != nil {
		t.Fatal(err)
	}
	in, err = db.RunInput("w1")
	if err != nil || in.GrantID != g.ID || in.GrantState != GrantNeedsReconsent || in.Cursor.SinceID != "7" {
		t.Errorf("RunInput(w1) = %+v, %v; want grant %s needs_reconsent and since_id 7", in, err, g.ID)
	}
	_, err = db.RunInput("nosuch")
	if !errors.Is(err, ErrNotFound) || err.Error() != `watch "nosuch" does not exist` {
		t.Errorf("RunInput(nosuch) = %v, want watch \"nosuch\" does not exist", err)
	}
}

// TestRunnableWatches: the scheduler gets the watches that run (active,
// suspended by the usage cap) with their cursors, and no others.
func TestRunnableWatches(t *testing.T) {
	db := openRunsDB(t, time.Now)
	putGrant(t, db, "u3", "rt-u3", "at-u3")
	err := db.Update(func(tx *Tx) error {
		for _, w := range []Watch{
			{ID: "w2", UserID: "u2", Provider: "x", State: WatchPaused},
			{ID: "w3", UserID: "u3", Provider: "x", State: WatchSuspended, SuspendReason: SuspendUsageCapped},
			{ID: "w4", UserID: "u4", Provider: "x", State: WatchSuspended, SuspendReason: SuspendRevoked},
		} {
			if err := tx.PutWatch(w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitRun(RunCommit{WatchID: "w3", NewSinceID: "9"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = db.RunnableWatches(func(w WatchWithCursor) error {
		got = append(got, w.ID)
		if w.ID == "w3" && w.Cursor.SinceID != "9" {
			t.Errorf("w3's cursor = %+v, want since_id 9", w.Cursor)
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"w1", "w3"}) {
		t.Errorf("RunnableWatches = %v, %v; want [w1 w3]", got, err)
	}
	stop := errors.New("stop")
	if err := db.RunnableWatches(func(WatchWithCursor) error { return stop }); err != stop {
		t.Errorf("RunnableWatches with fn failing = %v, want fn's error", err)
	}
}

// TestNewer: cursors compare as numbers; a damaged stored cursor (not a
// number, longer than any id) is replaced by the next good id.
func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"2", "1", true}, {"1", "2", false}, {"10", "9", true}, {"9", "10", false}, {"5", "5", false},
		{"1", "", true}, {"", "1", false}, {"", "", false},
		{"1900000000000000001", "999", true},
		{"1900000000000000001", "99999999999999999999999", true}, // damaged: 23 digits, beyond uint64
		{"1900000000000000001", "19x0000000000000000", true},
		{"1900000000000000001", "+5", true},
		{"abc", "1", false}, {"+7", "1", false}, {"-7", "1", false},
		{"18446744073709551615", "18446744073709551614", true},
	} {
		if got := newer(tc.a, tc.b); got != tc.want {
			t.Errorf("newer(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
