package vault

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"tagwatch/vault/seal"
)

func openRunsDB(t *testing.T, now func() time.Time) *DB {
	t.Helper()
	master, _, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(Options{Path: filepath.Join(t.TempDir(), "v.db"), Master: master, Create: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	checkAtCleanup(t, db)
	putGrant(t, db, "u1", "rt-u1", "at-u1")
	err = db.Update(func(tx *Tx) error {
		return tx.PutWatch(Watch{ID: "w1", UserID: "u1", Provider: "x", State: WatchActive,
			WatchSpec: WatchSpec{Hashtags: []string{"golang"}, Schedule: "@hourly", Targets: []string{"console:", "mailto:a@b.c"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func posts(ids ...int) []Post {
	var ps []Post
	for _, id := range ids {
		ps = append(ps, Post{ID: strconv.Itoa(id), Text: "#golang"})
	}
	return ps
}

func TestCommitRunQueuesEachPostOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openRunsDB(t, func() time.Time { return now })
	out, err := db.CommitRun(RunCommit{WatchID: "w1", NewSinceID: "105", PostsRead: 5, Posts: posts(105, 104, 103, 102, 101), MaxPerDigest: 2})
	if err != nil {
		t.Fatal(err)
	}
	if out.Queued != 5 || out.Rows != 6 || out.Cursor.SinceID != "105" || out.Cursor.Matches != 5 {
		t.Errorf("first commit = %+v, want 5 queued in 6 rows (3 digests x 2 targets), since 105", out)
	}
	// An overlapping search (a crash after commit, or a since_id that went
	// back) returns some posts again: they are not queued twice.
	out, err = db.CommitRun(RunCommit{WatchID: "w1", NewSinceID: "104", PostsRead: 3, Posts: posts(106, 105, 104), MaxPerDigest: 2})
	if err != nil {
		t.Fatal(err)
	}
	if out.Queued != 1 || out.Duplicates != 2 || out.Rows != 2 || out.Cursor.SinceID != "105" {
		t.Errorf("overlapping commit = %+v, want 1 queued, 2 duplicates, cursor kept at 105", out)
	}
	seen := map[string]int{}
	err = db.View(func(tx *Tx) error {
		return tx.Outbox(func(r OutboxRow) error {
			var n Notice
			if err := json.Unmarshal(r.Payload, &n); err != nil {
				return err
			}
			if n.Type != NoticeMatch || n.WatchID != "w1" || len(n.Posts) > 2 || n.Message != "" {
				t.Errorf("row %s: notice %+v", r.ID, n)
			}
			for _, p := range n.Posts {
				seen[p.ID+" "+r.Target]++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 12 {
		t.Errorf("distinct post/target pairs = %d, want 12", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s queued %d times", k, n)
		}
	}
}

func TestCommitRunFailedMovesNothing(t *testing.T) {
	db := openRunsDB(t, time.Now)
	if _, err := db.CommitRun(RunCommit{WatchID: "w1", NewSinceID: "10", Posts: posts(10)}); err != nil {
		t.Fatal(err)
	}
	out, err := db.CommitRun(RunCommit{WatchID: "w1", Failed: true, Error: "boom", NewSinceID: "99", Posts: posts(99)})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Cursor
	if c.SinceID != "10" || c.LastResult != RunFailed || c.LastError != "boom" || c.Runs != 2 || c.Matches != 1 || out.Rows != 0 {
		t.Errorf("cursor after a failed run = %+v (rows %d), want since 10, failure recorded, nothing queued", c, out.Rows)
	}
	var seen bool
	_ = db.View(func(tx *Tx) error { seen = tx.Seen("w1", "99"); return nil })
	if seen {
		t.Error("a failed run's post is in the seen index")
	}
	if _, err := db.CommitRun(RunCommit{WatchID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("CommitRun(unknown watch) = %v, want ErrNotFound", err)
	}
}

func TestSeenIndexPruned(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openRunsDB(t, func() time.Time { return now })
	if _, err := db.CommitRun(RunCommit{WatchID: "w1", Posts: posts(1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(SeenRetention + time.Hour)
	if _, err := db.CommitRun(RunCommit{WatchID: "w1", Posts: posts(4)}); err != nil {
		t.Fatal(err)
	}
	err := db.View(func(tx *Tx) error {
		if n := tx.SeenCount("w1"); n != 1 {
			t.Errorf("seen entries after the window = %d, want 1", n)
		}
		if !tx.Seen("w1", "4") || tx.Seen("w1", "1") {
			t.Errorf("wrong entries pruned")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.DeleteSeen("w1") }); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		if n := tx.SeenCount("w1"); n != 0 {
			t.Errorf("seen entries after DeleteSeen = %d", n)
		}
		return nil
	})
}

func TestProviderWatchesSuspendResume(t *testing.T) {
	db := openRunsDB(t, time.Now)
	if err := db.Update(func(tx *Tx) error {
		return tx.PutWatch(Watch{ID: "w2", UserID: "u2", Provider: "x", State: WatchPaused})
	}); err != nil {
		t.Fatal(err)
	}
	ids, err := db.SuspendProviderWatches("x", SuspendUsageCapped)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("SuspendProviderWatches changed %v, want [w1 w2]", ids)
	}
	w2, _ := db.Watch("w2")
	if w2.State != WatchPaused || w2.SuspendReason != SuspendUsageCapped {
		t.Errorf("paused watch after the cap is %s, want paused with the cap pending", w2.StateText())
	}
	if ids, err = db.ClearProviderWatches("x", SuspendUsageCapped); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("ClearProviderWatches changed %v, want [w1 w2]", ids)
	}
	w1, _ := db.Watch("w1")
	w2, _ = db.Watch("w2")
	if w1.State != WatchActive || w2.State != WatchPaused || w2.SuspendReason != SuspendNone {
		t.Errorf("after the cap lifted: w1 %s, w2 %s; want active and paused", w1.StateText(), w2.StateText())
	}
}
