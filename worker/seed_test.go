package worker_test

import (
	"encoding/json"
	"testing"

	"tagwatch/vault"
)

// The fixture's vault is seeded through the store's own methods
// (vaulttest.Enroll, MarkNeedsReconsent); only forceWatchState writes a
// record in a transaction of its own, for a state no method makes. The
// worker itself never takes a *vault.Tx (worker.Store).

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
	rows, err := db.ListOutbox("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []vault.Notice
	for _, r := range rows {
		if r.WatchID != watchID || r.Kind != vault.NoticeMatch {
			continue
		}
		var n vault.Notice
		if err := json.Unmarshal(r.Payload, &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}
