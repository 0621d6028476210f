package worker_test

import (
	"encoding/json"
	"testing"

	"tagwatch/vault"
)

// The vault has no method yet that stores a grant outside a consent, nor
// one that lists a watch's notifications: these test-only helpers seed
// and read the fixture's vault in a transaction of their own. The worker
// itself never takes a *vault.Tx (worker.Store).

// seedGrant stores a user and their grant.
func seedGrant(t *testing.T, db *vault.DB, g vault.Grant) {
	t.Helper()
	err := db.Update(func(tx *vault.Tx) error {
		if err := tx.PutUser(vault.User{ID: g.UserID}); err != nil {
			return err
		}
		return tx.PutGrant(g)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// setGrantState moves a grant to st, as renewal does when a refresh is
// refused.
func setGrantState(t *testing.T, db *vault.DB, grantID string, st vault.GrantState) {
	t.Helper()
	err := db.Update(func(tx *vault.Tx) error {
		g, err := tx.Grant(grantID)
		if err != nil {
			return err
		}
		g.State = st
		return tx.PutGrant(g)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// forceWatchState writes a watch's state as is, for states no transition
// makes (a suspended watch whose grant is active again).
func forceWatchState(t *testing.T, db *vault.DB, id string, st vault.WatchState, r vault.SuspendReason) {
	t.Helper()
	err := db.Update(func(tx *vault.Tx) error {
		w, err := tx.Watch(id)
		if err != nil {
			return err
		}
		w.State, w.SuspendReason = st, r
		return tx.PutWatch(w)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// matchNotices returns the match notices queued for a watch, one per
// outbox row.
func matchNotices(t *testing.T, db *vault.DB, watchID string) []vault.Notice {
	t.Helper()
	var out []vault.Notice
	err := db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			if r.WatchID != watchID || r.Kind != vault.NoticeMatch {
				return nil
			}
			var n vault.Notice
			if err := json.Unmarshal(r.Payload, &n); err != nil {
				return err
			}
			out = append(out, n)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
