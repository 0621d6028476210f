package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/renew"
	"tagwatch/worker/xapi"
)

// searchWindow is how far back recent search reaches; a start_time must
// stay inside it.
const searchWindow = 7*24*time.Hour - time.Minute

// Skip reasons of EventSkipped.
const (
	SkipDeleted      = "deleted"
	SkipPaused       = "paused"
	SkipSuspended    = "suspended"
	SkipNeedsConsent = "needs_consent"
	SkipUsageCapped  = "usage_capped"
)

// RunWatch runs one watch now: it checks the watch and its grant, polls
// the provider from the cursor, and commits the matches with the new
// cursor. It returns the run's event (also for skips and failures; the
// caller reports it). Safe to call concurrently for different watches;
// the engine never runs one watch twice at once.
func (w *Worker) RunWatch(ctx context.Context, watchID string) Event {
	ev := Event{Kind: EventSkipped, WatchID: watchID}
	var (
		wt    vault.Watch
		grant vault.Grant
		cur   vault.Cursor
	)
	err := w.cfg.DB.View(func(tx *vault.Tx) error {
		var err error
		if wt, err = tx.Watch(watchID); err != nil {
			return err
		}
		if grant, err = tx.UserGrant(wt.UserID, wt.Provider); err != nil {
			return fmt.Errorf("grant of user %s at %s: %w", wt.UserID, wt.Provider, err)
		}
		cur, err = tx.Cursor(watchID)
		return err
	})
	ev.UserID, ev.Provider = wt.UserID, wt.Provider
	switch {
	case errors.Is(err, vault.ErrNotFound) && wt.ID == "":
		w.engine.Remove(watchID)
		ev.Reason = SkipDeleted
		return ev
	case errors.Is(err, vault.ErrNotFound):
		ev.Reason = SkipNeedsConsent // no grant: nothing to ask with
		return ev
	case err != nil:
		return w.fail(ev, wt, time.Time{}, fmt.Errorf("worker: read watch: %w", err))
	case grant.State != vault.GrantActive:
		ev.Reason = SkipNeedsConsent
		return ev
	case wt.State == vault.WatchPaused:
		ev.Reason = SkipPaused
		return ev
	}
	probe := false
	if wt.State == vault.WatchSuspended {
		if wt.SuspendReason != SuspendUsageCapped {
			ev.Reason = SkipSuspended
			return ev
		}
		if probe = w.takeProbe(wt.Provider); !probe {
			ev.Reason = SkipUsageCapped
			return ev
		}
	} else if w.isCapped(wt.Provider) {
		ev.Reason = SkipUsageCapped
		return ev
	}
	if probe {
		defer w.endProbe(wt.Provider)
	}

	searcher := (*w.searchers.Load())[wt.Provider]
	if searcher == nil {
		return w.fail(ev, wt, time.Time{}, fmt.Errorf("worker: no searcher for provider %q (not in the configuration)", wt.Provider))
	}
	query, err := xapi.BuildQuery(xapi.QuerySpec{Hashtags: wt.Hashtags, Lang: wt.Lang, IncludeRetweets: wt.IncludeRetweets})
	if err != nil {
		return w.fail(ev, wt, time.Time{}, err)
	}
	now := w.cfg.Now()
	req := xapi.PollRequest{Query: query, SinceID: cur.SinceID, MaxPages: w.cfg.MaxPages}
	if req.SinceID == "" {
		// No cursor yet. The first run starts from the watch's creation (no
		// backfill) unless it asked for one; later runs that found nothing
		// start from when the previous search was sent.
		switch {
		case cur.Started:
			req.StartTime = cur.LastRunAt.Add(-time.Second)
		case !wt.Backfill:
			req.StartTime = wt.CreatedAt
		}
		if !req.StartTime.IsZero() {
			req.StartTime = later(req.StartTime, now.Add(-searchWindow))
		}
	}
	res, err := searcher.Poll(ctx, w.cfg.Tokens(grant.ID), grant.ID, req)
	if err != nil {
		return w.searchFailed(ctx, ev, wt, now, err)
	}
	w.cfg.Failpoint("after_search")
	posts := make([]vault.Post, len(res.Posts))
	for i, p := range res.Posts {
		url := "https://x.com/i/web/status/" + p.ID
		if p.AuthorUsername != "" {
			url = "https://x.com/" + p.AuthorUsername + "/status/" + p.ID
		}
		posts[i] = vault.Post{ID: p.ID, Text: p.Text, AuthorID: p.AuthorID, AuthorUsername: p.AuthorUsername, CreatedAt: p.CreatedAt, URL: url}
	}
	out, err := w.cfg.DB.CommitRun(vault.RunCommit{WatchID: wt.ID, StartedAt: now, NewSinceID: res.NewestID, Truncated: res.Truncated,
		PostsRead: len(res.Posts), Posts: posts, MaxPerDigest: w.cfg.MaxPerDigest})
	if err != nil {
		ev.Kind, ev.Err = EventRunFailed, fmt.Errorf("worker: commit run: %w", err)
		w.log.Error("watch run commit failed", "watch", wt.ID, "user", wt.UserID, "err", err)
		return ev
	}
	w.cfg.Failpoint("after_commit")
	if probe {
		w.liftCap(wt.Provider)
	}
	ev.Kind = EventRun
	ev.PostsRead, ev.Matches, ev.Duplicates, ev.Rows = len(res.Posts), out.Queued, out.Duplicates, out.Rows
	ev.Pages, ev.Truncated = res.Pages, res.Truncated
	return ev
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// searchFailed classifies a failed poll, records it and returns its event.
// The cursor never moves.
func (w *Worker) searchFailed(ctx context.Context, ev Event, wt vault.Watch, started time.Time, err error) Event {
	var rl *xapi.RateLimitError
	switch {
	case errors.Is(err, renew.ErrNeedsConsent):
		ev.Reason = SkipNeedsConsent
		return ev
	case errors.Is(err, xapi.ErrUsageCapped):
		w.capProvider(wt.Provider)
	case errors.As(err, &rl):
		ev.Kind, ev.NotBefore, ev.Err = EventRateLimited, rl.NotBefore, err
		if rl.Local {
			return ev // no request was made: nothing to record
		}
		w.record(wt, started, "rate_limited", err)
		return ev
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (run timeout or shutdown)", err)
	}
	return w.fail(ev, wt, started, err)
}

func (w *Worker) fail(ev Event, wt vault.Watch, started time.Time, err error) Event {
	ev.Kind, ev.Err = EventRunFailed, err
	if errors.Is(err, xapi.ErrUsageCapped) {
		ev.Reason = SkipUsageCapped
	}
	w.log.Warn("watch run failed", "watch", ev.WatchID, "user", ev.UserID, "provider", ev.Provider, "err", err)
	if wt.ID != "" {
		w.record(wt, started, vault.RunFailed, err)
	}
	return ev
}

// record stores a run that moved nothing (the cursor stays).
func (w *Worker) record(wt vault.Watch, started time.Time, result string, err error) {
	if started.IsZero() {
		started = w.cfg.Now()
	}
	if _, cerr := w.cfg.DB.CommitRun(vault.RunCommit{WatchID: wt.ID, StartedAt: started, Failed: true, Result: result, Error: err.Error()}); cerr != nil && !errors.Is(cerr, vault.ErrNotFound) {
		w.log.Error("watch run record failed", "watch", wt.ID, "err", cerr)
	}
}

func (w *Worker) isCapped(provider string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.capped[provider] != nil
}

// takeProbe lets one run at a time, once per CapProbeInterval, ask a
// capped provider whether the cap is still there.
func (w *Worker) takeProbe(provider string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.capped[provider]
	if c == nil {
		c = &capState{next: w.cfg.Now()}
		w.capped[provider] = c
	}
	if c.probing || w.cfg.Now().Before(c.next) {
		return false
	}
	c.probing = true
	return true
}

func (w *Worker) endProbe(provider string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.capped[provider]; c != nil {
		c.probing = false
	}
}

// capProvider suspends every watch of a provider after a usage-capped
// answer and raises the operator alert (once per cap).
func (w *Worker) capProvider(provider string) {
	w.mu.Lock()
	c := w.capped[provider]
	first := c == nil
	if first {
		c = &capState{}
		w.capped[provider] = c
	}
	c.next = w.cfg.Now().Add(w.cfg.CapProbeInterval)
	w.mu.Unlock()
	var ids []string
	err := w.cfg.DB.Update(func(tx *vault.Tx) error {
		var err error
		ids, err = tx.SuspendProviderWatches(provider, SuspendUsageCapped)
		return err
	})
	if err != nil {
		w.log.Error("suspend capped provider's watches failed", "provider", provider, "err", err)
	}
	if first || len(ids) > 0 {
		w.log.Error("operator alert: provider usage cap reached, its watches are suspended", "provider", provider,
			"watches", len(ids), "next_probe", c.next)
		w.cfg.Observer(Event{Kind: EventUsageCapped, Provider: provider, Watches: len(ids), NotBefore: c.next,
			Err: xapi.ErrUsageCapped, Time: w.cfg.Now()})
	}
}

// liftCap resumes a provider's capped watches after a probe got through.
func (w *Worker) liftCap(provider string) {
	n, err := w.ResumeProvider(provider)
	if err != nil {
		w.log.Error("resume provider's watches failed", "provider", provider, "err", err)
		return
	}
	w.log.Info("provider usage cap lifted, watches resumed", "provider", provider, "watches", n)
	w.cfg.Observer(Event{Kind: EventUsageCapLifted, Provider: provider, Watches: n, Time: w.cfg.Now()})
}
