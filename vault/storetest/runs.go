package storetest

import (
	"encoding/json"
	"slices"
	"testing"

	"tagwatch/vault"
)

// queuedPosts returns every post id queued for a watch, once per row.
func queuedPosts(t *testing.T, s Backend, watchID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range rows(t, s, vault.NoticeMatch, watchID) {
		var n vault.Notice
		if err := json.Unmarshal(r.Payload, &n); err != nil {
			t.Fatalf("row %s payload: %v", r.ID, err)
		}
		for _, p := range n.Posts {
			out[r.Target+" "+p.ID]++
		}
	}
	return out
}

func commit(t *testing.T, s Backend, c vault.RunCommit) vault.RunOutcome {
	t.Helper()
	out, err := s.CommitRun(c)
	if err != nil {
		t.Fatalf("CommitRun(%+v) = %v", c, err)
	}
	return out
}

// testRunCommit: one commit moves the cursor, queues the rows and fills
// the seen index together.
func testRunCommit(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	started := s.Now()
	out := commit(t, s, vault.RunCommit{WatchID: w.ID, StartedAt: started, NewSinceID: "30", PostsRead: 5, Posts: posts(30, 20, 10)})
	if out.Queued != 3 || out.Duplicates != 0 || out.Rows != 2 {
		t.Errorf("CommitRun = queued %d, duplicates %d, rows %d; want 3, 0, 2 (one digest per target)", out.Queued, out.Duplicates, out.Rows)
	}
	cur := watchOf(t, s, w.ID).Cursor
	if cur.SinceID != "30" || cur.Runs != 1 || cur.Matches != 3 || cur.PostsRead != 5 || !cur.Started ||
		cur.LastResult != vault.RunOK || !cur.LastRunAt.Equal(started) || cur.SinceID != out.Cursor.SinceID || cur.Matches != out.Cursor.Matches {
		t.Errorf("cursor = %+v, want since 30, 1 run, 3 matches, 5 read, ok, as returned %+v", cur, out.Cursor)
	}
	got := rows(t, s, vault.NoticeMatch, w.ID)
	if len(got) != 2 {
		t.Fatalf("match rows = %d, want 2", len(got))
	}
	for _, r := range got {
		var n vault.Notice
		json.Unmarshal(r.Payload, &n)
		var ids []string
		for _, p := range n.Posts {
			ids = append(ids, p.ID)
		}
		if r.State != vault.OutboxPending || !slices.Equal(ids, []string{"10", "20", "30"}) || !slices.Contains(spec1.Targets, r.Target) {
			t.Errorf("row %s = %s to %s with posts %v, want pending with 10 20 30 (oldest first)", r.ID, r.State, r.Target, ids)
		}
	}
	ids, _ := due(t, s, s.Now())
	for _, r := range got {
		if !slices.Contains(ids, r.ID) {
			t.Errorf("row %s is not due after the commit", r.ID)
		}
	}
}

// testRunRepeated: a repeated or overlapping commit queues no post twice,
// also after a reopen (the seen index is durable).
func testRunRepeated(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	c := vault.RunCommit{WatchID: w.ID, NewSinceID: "30", Posts: posts(30, 20, 10)}
	commit(t, s, c)
	if out := commit(t, s, c); out.Queued != 0 || out.Duplicates != 3 || out.Rows != 0 {
		t.Errorf("CommitRun again = queued %d, duplicates %d, rows %d; want 0, 3, 0", out.Queued, out.Duplicates, out.Rows)
	}
	s = reopen(t, s)
	if out := commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: "40", Posts: posts(40, 30)}); out.Queued != 1 || out.Duplicates != 1 {
		t.Errorf("overlapping CommitRun after a reopen = queued %d, duplicates %d; want 1, 1", out.Queued, out.Duplicates)
	}
	for k, n := range queuedPosts(t, s, w.ID) {
		if n != 1 {
			t.Errorf("post %s queued %d times, want 1", k, n)
		}
	}
	if got := len(queuedPosts(t, s, w.ID)); got != 4*len(spec1.Targets) {
		t.Errorf("%d (target, post) pairs queued, want %d", got, 4*len(spec1.Targets))
	}
	if cur := watchOf(t, s, w.ID).Cursor; cur.Matches != 4 || cur.Runs != 3 {
		t.Errorf("cursor = %d matches in %d runs, want 4 in 3", cur.Matches, cur.Runs)
	}
}

// testRunFailed: a failed run records its result and moves nothing else;
// its posts are not marked seen.
func testRunFailed(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: "5", Posts: posts(5)})
	before := len(rows(t, s, "", ""))
	out := commit(t, s, vault.RunCommit{WatchID: w.ID, Failed: true, Error: "search: 503", NewSinceID: "30", PostsRead: 3, Posts: posts(30, 20)})
	if out.Queued != 0 || out.Rows != 0 {
		t.Errorf("failed CommitRun = queued %d, rows %d; want 0, 0", out.Queued, out.Rows)
	}
	cur := watchOf(t, s, w.ID).Cursor
	if cur.SinceID != "5" || cur.LastResult != vault.RunFailed || cur.LastError != "search: 503" || cur.Runs != 2 || cur.PostsRead != 0 || cur.Matches != 1 {
		t.Errorf("cursor after a failed run = %+v, want since 5, failed with its error, 2 runs, counters unmoved", cur)
	}
	if n := len(rows(t, s, "", "")); n != before {
		t.Errorf("outbox rows %d -> %d after a failed run, want unchanged", before, n)
	}
	if out := commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: "30", Posts: posts(30, 20)}); out.Queued != 2 {
		t.Errorf("CommitRun of the failed run's posts = queued %d, want 2 (a failed run marks nothing seen)", out.Queued)
	}
}

// testRunCursor: the cursor never moves back; ids compare as numbers.
func testRunCursor(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	for _, step := range []struct{ since, want string }{{"100", "100"}, {"99", "100"}, {"", "100"}, {"1000", "1000"}} {
		commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: step.since})
		if got := watchOf(t, s, w.ID).Cursor.SinceID; got != step.want {
			t.Errorf("CommitRun(since %q) cursor = %q, want %q", step.since, got, step.want)
		}
	}
}

// testRunDeletedWatch: a commit for a watch deleted meanwhile stores
// nothing.
func testRunDeletedWatch(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	if _, err := s.DeleteWatch(w.ID, "op"); err != nil {
		t.Fatal(err)
	}
	before := len(rows(t, s, "", ""))
	_, err := s.CommitRun(vault.RunCommit{WatchID: w.ID, NewSinceID: "30", Posts: posts(30)})
	wantErr(t, "CommitRun(deleted watch)", err, vault.ErrNotFound)
	if nf, ok := err.(*vault.NotFoundError); !ok || nf.Kind != "watch" || nf.ID != w.ID {
		t.Errorf("CommitRun(deleted watch) = %#v, want a *vault.NotFoundError naming the watch", err)
	}
	if n := len(rows(t, s, "", "")); n != before {
		t.Errorf("outbox rows %d -> %d after a commit for a deleted watch, want unchanged", before, n)
	}
	if _, err := s.Watch(w.ID); err == nil {
		t.Error("the deleted watch is back after a commit")
	}
	_, err = s.RunInput(w.ID)
	wantErr(t, "RunInput(deleted watch)", err, vault.ErrNotFound)
}

// testRunInput: RunInput and RunnableWatches read one state; paused and
// suspended watches do not run, usage-capped ones do (they probe).
func testRunInput(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	amy := enroll(t, s, "amy", spec2)
	bob := enroll(t, s, "bob", spec2)
	in, err := s.RunInput(zed.Started[0].ID)
	if err != nil || in.GrantID != zed.Grant.ID || in.GrantState != vault.GrantActive || in.Watch.ID != zed.Started[0].ID {
		t.Errorf("RunInput = %+v, %v; want the watch with zed's active grant", in, err)
	}
	if _, _, err := s.PauseWatch(amy.Started[0].ID, "op"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkNeedsReconsent(bob.Grant.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix}); err != nil {
		t.Fatal(err)
	}
	in, _ = s.RunInput(bob.Started[0].ID)
	if in.GrantState != vault.GrantNeedsReconsent || in.Watch.State != vault.WatchSuspended {
		t.Errorf("RunInput(bob) = grant %s, watch %s; want needs_reconsent, suspended", in.GrantState, in.Watch.State)
	}
	runnable := func() []string {
		var ids []string
		if err := s.RunnableWatches(func(w vault.WatchWithCursor) error { ids = append(ids, w.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := runnable(); !slices.Equal(got, []string{zed.Started[0].ID}) {
		t.Errorf("RunnableWatches = %v, want only zed's active watch", got)
	}
	if _, err := s.SuspendProviderWatches("x", vault.SuspendUsageCapped); err != nil {
		t.Fatal(err)
	}
	if got := runnable(); !slices.Equal(got, []string{zed.Started[0].ID}) {
		t.Errorf("RunnableWatches with the usage cap = %v, want zed's watch still (its runs probe the cap)", got)
	}
}
