// Package worker runs users' hashtag watches: a sched.Engine fires each
// watch on its schedule, and a run searches X (through a Searcher, with
// the token source of the user's grant) for posts newer than the watch's
// cursor and commits the matches to the outbox together with the new
// cursor, in one vault transaction (vault.DB.CommitRun).
//
// A run makes no request for a watch that is paused or suspended, or whose
// grant needs a new consent. A usage-capped answer suspends every watch of
// that provider and raises an operator alert (EventUsageCapped); one watch
// then probes the API every Config.CapProbeInterval and the first success
// resumes them all.
//
// A Worker is safe for concurrent use. Run owns its goroutines (the
// engine's workers) and returns after they have ended.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"tagwatch/vault"
	"tagwatch/worker/sched"
	"tagwatch/worker/xapi"
)

// Searcher finds the posts newer than a watch's cursor. *xapi.Client
// satisfies it; other sources (Mastodon, Bluesky) can later.
type Searcher interface {
	Poll(ctx context.Context, ts xapi.TokenSource, user string, r xapi.PollRequest) (*xapi.PollResult, error)
}

// SuspendUsageCapped is the SuspendReason of watches suspended because
// their provider's usage cap was reached.
const SuspendUsageCapped = "usage_capped"

// Event kinds reported to Config.Observer.
const (
	// EventRun: a run committed (PostsRead, Matches, Lag...).
	EventRun = "run"
	// EventRunFailed: a run failed; its cursor did not move.
	EventRunFailed = "run_failed"
	// EventSkipped: a due watch was skipped without a request (Reason).
	EventSkipped = "skipped"
	// EventRateLimited: X's rate limit held a run (NotBefore).
	EventRateLimited = "rate_limited"
	// EventUsageCapped: the provider's usage cap was reached; its watches
	// are suspended. An operator alert.
	EventUsageCapped = "usage_capped"
	// EventUsageCapLifted: a probe succeeded and the provider's watches
	// resumed.
	EventUsageCapLifted = "usage_cap_lifted"
)

// Event is something a run did, for logs, metrics and the demo. It never
// carries a secret or post text.
type Event struct {
	Kind     string
	WatchID  string
	UserID   string
	Provider string
	// Reason is why the run happened (scheduled, catch_up, manual,
	// coalesced) or, for EventSkipped, why it was skipped.
	Reason string
	// Lag is from when the run was due to when it started.
	Lag       time.Duration
	Duration  time.Duration
	PostsRead int
	// Matches is how many posts were new to the watch and queued;
	// Duplicates how many the seen index already had.
	Matches, Duplicates int
	// Rows is how many outbox rows were added.
	Rows      int
	Pages     int
	Truncated bool
	// NotBefore is when a rate-limited endpoint may be called again.
	NotBefore time.Time
	// Resumed is how many watches a lifted usage cap resumed, or a new one
	// suspended.
	Watches int
	Err     error
	Time    time.Time
}

// Config configures a Worker. The zero value of each field is its default
// (those of the [scheduler] configuration section).
type Config struct {
	// DB is the vault. Required.
	DB *vault.DB
	// Searchers by provider name. Required: the daemon builds one
	// xapi.Client per provider with its APIURL. SetSearchers replaces them
	// while the Worker runs.
	Searchers map[string]Searcher
	// Tokens returns the token source of a grant. Required: the daemon
	// passes func(id string) xapi.TokenSource { return mgr.Source(id) }.
	Tokens func(grantID string) xapi.TokenSource
	// Workers, PerUserConcurrency, PerProviderConcurrency, CatchUpWindow:
	// see sched.Config (defaults 32, 1, 64, 5 min).
	Workers                int
	PerUserConcurrency     int
	PerProviderConcurrency int
	CatchUpWindow          time.Duration
	// MaxPages bounds the pages one run reads; default 5.
	MaxPages int
	// RunTimeout bounds one run, retries included; default 2 min.
	RunTimeout time.Duration
	// MaxPerDigest is how many posts one notification carries; default 20.
	MaxPerDigest int
	// CapProbeInterval is how often a usage-capped provider is probed;
	// default 1 h.
	CapProbeInterval time.Duration
	// Parse parses schedules; default the engine's (pass
	// config.ScheduleParser.Parse).
	Parse func(spec string) (cron.Schedule, error)
	// Observer receives events; it is called on the run's goroutine and
	// must be quick.
	Observer func(Event)
	// Failpoint, when set, is called at "after_search" and "after_commit",
	// so tests can crash the process there.
	Failpoint func(name string)
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Worker schedules and runs watches.
type Worker struct {
	cfg    Config
	log    *slog.Logger
	engine *sched.Engine

	// searchers is the live Config.Searchers.
	searchers atomic.Pointer[map[string]Searcher]

	mu     sync.Mutex
	capped map[string]*capState
}

type capState struct {
	next    time.Time
	probing bool
}

// SetSearchers replaces the searchers by provider name; the map is copied.
// Runs in progress finish with the searcher they started with; schedules
// and cursors are untouched, so no watch restarts. A run of a watch whose
// provider has no searcher any more fails (EventRunFailed, "no searcher
// for provider") and is tried again on its schedule: the watch is kept
// for when the provider returns. Safe for concurrent use.
func (w *Worker) SetSearchers(ss map[string]Searcher) {
	m := maps.Clone(ss)
	if m == nil {
		m = map[string]Searcher{}
	}
	w.searchers.Store(&m)
}

// New returns a Worker.
func New(cfg Config) (*Worker, error) {
	if cfg.DB == nil || cfg.Tokens == nil || cfg.Searchers == nil {
		return nil, errors.New("worker: DB, Searchers and Tokens are required")
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = 5
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 2 * time.Minute
	}
	if cfg.MaxPerDigest <= 0 {
		cfg.MaxPerDigest = 20
	}
	if cfg.CapProbeInterval <= 0 {
		cfg.CapProbeInterval = time.Hour
	}
	if cfg.Observer == nil {
		cfg.Observer = func(Event) {}
	}
	if cfg.Failpoint == nil {
		cfg.Failpoint = func(string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, capped: map[string]*capState{}}
	w.SetSearchers(cfg.Searchers)
	w.cfg.Searchers = nil // the live set is w.searchers
	var err error
	w.engine, err = sched.New(sched.Config{Job: w.fire, Workers: cfg.Workers, PerProviderConcurrency: cfg.PerProviderConcurrency,
		PerUserConcurrency: cfg.PerUserConcurrency, CatchUpWindow: cfg.CatchUpWindow, Parse: cfg.Parse,
		Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Engine returns the scheduling engine (for its Stats).
func (w *Worker) Engine() *sched.Engine { return w.engine }

// Run loads the watches and runs them on schedule until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Reload(ctx); err != nil {
		return err
	}
	return w.engine.Run(ctx)
}

// schedulable reports whether a watch belongs in the engine: active ones,
// and those suspended for the usage cap (one of them probes).
func schedulable(wt vault.Watch) bool {
	return wt.State == vault.WatchActive || (wt.State == vault.WatchSuspended && wt.SuspendReason == SuspendUsageCapped)
}

// Reload re-reads the watches from the vault and applies the differences
// to the schedule: new watches are added, changed schedules take effect,
// paused, suspended and deleted watches leave it. The daemon calls it at
// start, on SIGHUP and after operator changes.
func (w *Worker) Reload(ctx context.Context) error {
	want := map[string]bool{}
	var bad []error
	cappedProv := map[string]bool{}
	err := w.cfg.DB.View(func(tx *vault.Tx) error {
		return tx.Watches(func(wt vault.Watch) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !schedulable(wt) {
				return nil
			}
			if wt.State == vault.WatchSuspended {
				cappedProv[wt.Provider] = true
			}
			cur, err := tx.Cursor(wt.ID)
			if err != nil {
				return err
			}
			if err := w.engine.Upsert(sched.Entry{Key: wt.ID, User: wt.UserID, Provider: wt.Provider, Schedule: wt.Schedule, LastRun: cur.LastRunAt}); err != nil {
				bad = append(bad, fmt.Errorf("watch %s: %w", wt.ID, err))
				return nil
			}
			want[wt.ID] = true
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("worker: reload: %w", err)
	}
	var gone []string
	w.engine.Keys(func(k string) {
		if !want[k] {
			gone = append(gone, k)
		}
	})
	for _, k := range gone {
		w.engine.Remove(k)
	}
	w.mu.Lock()
	for p := range cappedProv {
		if w.capped[p] == nil {
			w.capped[p] = &capState{next: w.cfg.Now()}
		}
	}
	w.mu.Unlock()
	for _, err := range bad {
		w.log.Error("watch not scheduled", "err", err)
	}
	w.log.Info("watches loaded", "scheduled", len(want), "removed", len(gone), "invalid", len(bad))
	return nil
}

// Upsert schedules one watch as it is now (or unschedules it when it is
// not active), without a full Reload.
func (w *Worker) Upsert(wt vault.Watch) error {
	if !schedulable(wt) {
		w.engine.Remove(wt.ID)
		return nil
	}
	var cur vault.Cursor
	err := w.cfg.DB.View(func(tx *vault.Tx) error {
		var err error
		cur, err = tx.Cursor(wt.ID)
		return err
	})
	if err != nil {
		return err
	}
	return w.engine.Upsert(sched.Entry{Key: wt.ID, User: wt.UserID, Provider: wt.Provider, Schedule: wt.Schedule, LastRun: cur.LastRunAt})
}

// Remove unschedules a watch.
func (w *Worker) Remove(watchID string) { w.engine.Remove(watchID) }

// RunNow runs a watch as soon as the limits allow. It returns
// sched.ErrUnknown for a watch that is not scheduled.
func (w *Worker) RunNow(watchID string) error { return w.engine.RunNow(watchID) }

// WatchStatus is what operators see of a watch.
type WatchStatus struct {
	Watch vault.Watch
	// Cursor holds the last run, its result and error, the since_id, and
	// the counters (runs, posts read, matches).
	Cursor vault.Cursor
	// Scheduled is false for watches not in the schedule (paused...).
	Scheduled bool
	Next      time.Time
	Running   bool
}

// Status returns a watch's status, or vault.ErrNotFound.
func (w *Worker) Status(watchID string) (WatchStatus, error) {
	var st WatchStatus
	err := w.cfg.DB.View(func(tx *vault.Tx) error {
		var err error
		if st.Watch, err = tx.Watch(watchID); err != nil {
			return err
		}
		st.Cursor, err = tx.Cursor(watchID)
		return err
	})
	if err != nil {
		return st, err
	}
	next, running, err := w.engine.Next(watchID)
	st.Scheduled, st.Next, st.Running = err == nil, next, running
	return st, nil
}

// ResumeProvider resumes the watches of a provider suspended for its usage
// cap (an operator raised the budget) and returns how many.
func (w *Worker) ResumeProvider(provider string) (int, error) {
	var ids []string
	err := w.cfg.DB.Update(func(tx *vault.Tx) error {
		var err error
		ids, err = tx.ResumeProviderWatches(provider, SuspendUsageCapped)
		return err
	})
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	delete(w.capped, provider)
	w.mu.Unlock()
	return len(ids), nil
}

func (w *Worker) fire(ctx context.Context, f sched.Fire) {
	start := w.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RunTimeout)
	defer cancel()
	ev := w.RunWatch(ctx, f.Key)
	if ev.Reason == "" {
		ev.Reason = f.Reason.String()
	}
	ev.Lag = start.Sub(f.Scheduled)
	ev.Duration = w.cfg.Now().Sub(start)
	ev.Time = start
	w.cfg.Observer(ev)
}
