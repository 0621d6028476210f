package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
)

// countingSource counts the searches it passes on.
type countingSource struct {
	worker.Source
	n atomic.Int64
}

func (c *countingSource) Search(ctx context.Context, ts worker.TokenSource, user string, r worker.SearchRequest) (*worker.Found, error) {
	c.n.Add(1)
	return c.Source.Search(ctx, ts, user, r)
}

// TestSetSources: runs use the sources set last; a provider without one
// fails its runs clearly and leaves the watch and its cursor alone, and
// runs again once its source returns.
func TestSetSources(t *testing.T) {
	f := newFix(t, fixOpts{})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Backfill: true}, time.Time{})
	f.post("100", "first #golang")
	f.mustRun(wid)
	cur := f.cursor(wid)

	f.w.SetSources(map[string]worker.Source{})
	ev := f.run(wid)
	if ev.Kind != worker.EventRunFailed || ev.Err == nil || !strings.Contains(ev.Err.Error(), `no source for provider "x"`) {
		t.Errorf("RunWatch without a source = %s %v, want run_failed naming the provider", ev.Kind, ev.Err)
	}
	if got := f.cursor(wid); got.SinceID != cur.SinceID {
		t.Errorf("cursor after a failed run = %q, want %q", got.SinceID, cur.SinceID)
	}
	if w := f.watch(wid); w.State != vault.WatchActive {
		t.Errorf("watch after a failed run = %s, want active", w.State)
	}

	cs := &countingSource{Source: f.src}
	f.w.SetSources(map[string]worker.Source{"x": cs})
	f.post("100", "second #golang")
	if ev := f.mustRun(wid); ev.Matches != 1 {
		t.Errorf("run with the new source = %d matches, want 1", ev.Matches)
	}
	if n := cs.n.Load(); n != 1 {
		t.Errorf("new source searched %d times, want 1", n)
	}
}
