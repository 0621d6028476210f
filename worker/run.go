package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tagwatch/vault"
)

// RunGap is the result (Cursor.LastResult) of a run whose search could
// not start from the watch's cursor: the source no longer serves the
// posts of a stretch of time (Found.Gap). The run succeeded otherwise;
// Cursor.LastError says which stretch.
const RunGap = "gap"

// Skip reasons of EventSkipped.
const (
	SkipDeleted      = "deleted"
	SkipPaused       = "paused"
	SkipSuspended    = "suspended"
	SkipNeedsConsent = "needs_consent"
	SkipUsageCapped  = "usage_capped"
	// SkipFairShare: the user has used their share of the provider's
	// app-wide request window; the run is held until it resets
	// (Event.NotBefore).
	SkipFairShare = "fair_share"
	// SkipInvalid: the store's current rules refuse the watch (Refused;
	// Event.Err is the rule's error); it leaves the schedule.
	SkipInvalid = "invalid"
)

// RunWatch runs one watch now: it checks the watch, its grant and the
// store's current rules (a watch they refuse is skipped, SkipInvalid, and
// leaves the schedule), takes a request of the user's fair share,
// searches the source from the cursor, and commits the matches with the
// new cursor. It returns the run's event (also for skips and failures;
// the caller reports it). Safe to call concurrently for different
// watches; the engine never runs one watch twice at once.
func (w *Worker) RunWatch(ctx context.Context, watchID string) Event {
	ev := Event{Kind: EventSkipped, WatchID: watchID}
	in, err := w.cfg.DB.RunInput(watchID)
	wt := in.Watch
	ev.UserID, ev.Provider = wt.UserID, wt.Provider
	switch {
	case errors.Is(err, vault.ErrNotFound):
		w.Remove(watchID)
		ev.Reason = SkipDeleted
		return ev
	case err != nil:
		return w.fail(ev, vault.Watch{}, time.Time{}, fmt.Errorf("worker: read watch: %w", err))
	case in.GrantID == "" || in.GrantState != vault.GrantActive:
		ev.Reason = SkipNeedsConsent // no grant that can be used
		return ev
	case wt.State == vault.WatchPaused:
		ev.Reason = SkipPaused
		return ev
	case !wt.Runs():
		ev.Reason = SkipSuspended
		return ev
	}
	if why := Refused(w.cfg.DB, wt); why != nil {
		w.refuse(wt, why)
		ev.Reason, ev.Err = SkipInvalid, why
		return ev
	}
	probe := false
	// Suspended by the usage cap (Runs), or active while its provider is
	// capped (added or resumed since): one run at a time probes, when
	// planned (usagecap.go).
	if wt.State == vault.WatchSuspended || w.isCapped(wt.Provider) {
		if probe = w.takeProbe(wt.Provider); !probe {
			ev.Reason = SkipUsageCapped
			return ev
		}
		defer w.endProbe(wt.Provider)
	}

	src := (*w.sources.Load())[wt.Provider]
	if src == nil {
		return w.fail(ev, wt, time.Time{}, fmt.Errorf("worker: no source for provider %q (not in the configuration)", wt.Provider))
	}
	now := w.cfg.Now()
	req := SearchRequest{Query: Query{Hashtags: wt.Hashtags, Lang: wt.Lang, IncludeRetweets: wt.IncludeRetweets},
		SinceID: in.Cursor.SinceID, MaxPages: w.cfg.MaxPages}
	// LastRunAt says what was read only when that run succeeded: a failed
	// run records its time too, and read nothing.
	lastOK := in.Cursor.Started && (in.Cursor.LastResult == vault.RunOK || in.Cursor.LastResult == RunGap)
	if lastOK {
		req.SearchedAt = in.Cursor.LastRunAt
	}
	if req.SinceID == "" {
		// No cursor yet. The first run starts from the watch's creation (no
		// backfill) unless it asked for one; later runs that found nothing
		// start from when the previous successful search was sent. A start
		// older than the source serves is the source's to handle (it
		// reports the gap).
		switch {
		case lastOK:
			req.StartTime = in.Cursor.LastRunAt.Add(-time.Second)
		case !wt.Backfill:
			req.StartTime = wt.CreatedAt
		}
	}
	w.noteGrant(in.GrantID, wt.UserID)
	ok, window, first := w.fair.admit(wt.Provider, wt.UserID)
	if !ok {
		// Held without a request: shown to operators (Holds), logged once
		// per window.
		w.hold(Hold{Provider: wt.Provider, UserID: wt.UserID, Endpoint: searchEndpoint(src), Window: HoldFairShare, Until: window})
		if first {
			used, share, total := w.fair.usage(wt.Provider, wt.UserID)
			w.log.Info("user has used their share of the provider's request window; runs held until it resets",
				"user", wt.UserID, "provider", wt.Provider, "used", used, "share", share, "window_used", total,
				"window_limit", w.cfg.AppRequestsPerWindow, "reset", window)
		}
		ev.Reason, ev.NotBefore = SkipFairShare, window
		return ev
	}
	res, err := src.Search(ctx, w.cfg.Tokens(in.GrantID), in.GrantID, req)
	if err == nil {
		w.clearHolds(wt.Provider, wt.UserID) // it got through: no hold was in force
	}
	w.keepWindows(wt.Provider, src) // a window it spent holds from now on
	if err != nil {
		return w.searchFailed(ctx, ev, wt, now, window, err)
	}
	w.fair.charge(wt.Provider, wt.UserID, window, res.Pages-1)
	w.cfg.Failpoint("after_search")
	posts := make([]vault.Post, len(res.Posts))
	for i, p := range res.Posts {
		posts[i] = vault.Post{ID: p.ID, Text: p.Text, AuthorID: p.AuthorID, AuthorUsername: p.AuthorName, CreatedAt: p.CreatedAt, URL: p.URL}
	}
	result, note := "", ""
	if g := res.Gap; g != nil {
		result, note = RunGap, g.String()
		w.log.Warn("watch searched from the start of what the source serves, not from its cursor: posts in the gap may be missed",
			"watch", wt.ID, "user", wt.UserID, "provider", wt.Provider, "gap_from", g.From, "gap_to", g.To, "reason", g.Reason,
			"cursor", in.Cursor.SinceID)
	}
	out, err := w.cfg.DB.CommitRun(vault.RunCommit{WatchID: wt.ID, StartedAt: now, NewSinceID: res.NewestID, Truncated: res.Truncated,
		PostsRead: len(res.Posts), Posts: posts, MaxPerDigest: w.cfg.MaxPerDigest, Result: result, Error: note})
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
	ev.Pages, ev.Truncated, ev.Gap = res.Pages, res.Truncated, res.Gap
	return ev
}

// searchFailed classifies a failed search, records it and returns its
// event. The cursor never moves. A search the source's rate limit held
// without a request is refunded to the user's fair share; other failures
// are charged the one request they were admitted with.
func (w *Worker) searchFailed(ctx context.Context, ev Event, wt vault.Watch, started, window time.Time, err error) Event {
	var rl *RateLimitError
	switch {
	case errors.Is(err, vault.ErrNeedsConsent):
		ev.Reason = SkipNeedsConsent
		return ev
	case errors.Is(err, ErrUsageCapped):
		w.capProvider(wt.Provider)
	case errors.As(err, &rl):
		ev.Kind, ev.NotBefore, ev.Err = EventRateLimited, rl.NotBefore, err
		// Held: shown to operators (Holds), logged once per window.
		h := Hold{Provider: wt.Provider, UserID: wt.UserID, Endpoint: rl.Endpoint, Window: HoldPerUser, Until: rl.NotBefore}
		if h.Endpoint == "" {
			h.Endpoint = searchEndpoint((*w.sources.Load())[wt.Provider])
		}
		if w.hold(h) {
			w.logHold(h, rl.Local)
		}
		if rl.Local {
			w.fair.charge(wt.Provider, wt.UserID, window, -1)
			return ev // no request was made: the hold table shows it, nothing is written
		}
		w.record(wt, started, "rate_limited", err)
		return ev
	case w.grantDead(wt.ID):
		ev.Reason = SkipNeedsConsent
		return ev
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (run timeout or shutdown)", err)
	}
	return w.fail(ev, wt, started, err)
}

// grantDead reports whether the grant of a watch is no longer active: a
// token source that found the grant dead (a refused refresh) records it in
// the store before it returns its error, whatever that error says.
func (w *Worker) grantDead(watchID string) bool {
	in, err := w.cfg.DB.RunInput(watchID)
	return err == nil && in.GrantState != vault.GrantActive
}

func (w *Worker) fail(ev Event, wt vault.Watch, started time.Time, err error) Event {
	ev.Kind, ev.Err = EventRunFailed, err
	if errors.Is(err, ErrUsageCapped) {
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

// takeProbe lets one run at a time, once per CapProbeInterval (or at once
// after RunNow: probeNow), ask a capped provider whether the cap is still
// there.
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
	next := c.next
	w.mu.Unlock()
	w.saveCap(provider, next) // a restart probes no sooner
	ids, err := w.cfg.DB.SuspendProviderWatches(provider, vault.SuspendUsageCapped)
	if err != nil {
		w.log.Error("suspend capped provider's watches failed", "provider", provider, "err", err)
	}
	if first || len(ids) > 0 {
		w.log.Error(UsageCapAlert, "provider", provider,
			"watches", len(ids), "next_probe", c.next)
		w.cfg.Observer(Event{Kind: EventUsageCapped, Provider: provider, Watches: len(ids), NotBefore: c.next,
			Err: ErrUsageCapped, Time: w.cfg.Now()})
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
