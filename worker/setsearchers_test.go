package worker

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker/xapi"
)

// countingSearcher counts the polls it passes on.
type countingSearcher struct {
	Searcher
	n atomic.Int64
}

func (c *countingSearcher) Poll(ctx context.Context, ts xapi.TokenSource, user string, r xapi.PollRequest) (*xapi.PollResult, error) {
	c.n.Add(1)
	return c.Searcher.Poll(ctx, ts, user, r)
}

// TestSetSearchers: runs use the searchers set last; a provider without
// one fails its runs clearly and leaves the watch and its cursor alone,
// and runs again once its searcher returns.
func TestSetSearchers(t *testing.T) {
	f := newFix(t, fixOpts{})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Backfill: true}, time.Time{})
	f.post("100", "first #golang")
	f.mustRun(wid)
	cur := f.cursor(wid)

	f.w.SetSearchers(map[string]Searcher{})
	ev := f.run(wid)
	if ev.Kind != EventRunFailed || ev.Err == nil || !strings.Contains(ev.Err.Error(), `no searcher for provider "x"`) {
		t.Errorf("RunWatch without a searcher = %s %v, want run_failed naming the provider", ev.Kind, ev.Err)
	}
	if got := f.cursor(wid); got.SinceID != cur.SinceID {
		t.Errorf("cursor after a failed run = %q, want %q", got.SinceID, cur.SinceID)
	}
	if w := f.watch(wid); w.State != vault.WatchActive {
		t.Errorf("watch after a failed run = %s, want active", w.State)
	}

	cs := &countingSearcher{Searcher: f.client}
	f.w.SetSearchers(map[string]Searcher{"x": cs})
	f.post("100", "second #golang")
	if ev := f.mustRun(wid); ev.Matches != 1 {
		t.Errorf("run with the new searcher = %d matches, want 1", ev.Matches)
	}
	if n := cs.n.Load(); n != 1 {
		t.Errorf("new searcher polled %d times, want 1", n)
	}
}
