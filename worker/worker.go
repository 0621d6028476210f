// Package worker runs users' hashtag watches: a sched.Engine fires each
// watch on its schedule, and a run searches the watch's source (a Source,
// such as X through worker/xsource, with the token source of the user's
// grant) for posts newer than the watch's cursor and commits the matches
// to the outbox together with the new cursor, in one step of the store
// (Store.CommitRun).
//
// A run makes no request for a watch that is paused or suspended, or whose
// grant needs a new consent. Each user gets a fair share of a provider's
// app-wide request window (Config.AppRequestsPerWindow): a user over it is
// held until the window resets (EventSkipped, SkipFairShare) while the
// other users' runs go on. A usage-capped answer suspends every watch of
// that provider and raises an operator alert (EventUsageCapped); one watch
// then probes the source every Config.CapProbeInterval (an operator's
// RunNow probes at once) and the first success resumes them all. The cap
// is kept across restarts and shown from the worker's state (UsageCaps,
// Status: usagecap.go).
//
// Every run a rate limit holds (the source's per-user window, the fair
// share) is visible to operators (Holds, HoldOf) and logged once per
// window, and writes nothing. What providers said about their windows (a
// RateWindowKeeper source) and the usage cap are kept in the store when
// they change and given back at Reload, so a restarted worker asks no
// provider before a reset it was told of (ratelimit.go).
//
// The rules of a valid watch (Rules) live here too: the vault applies
// them at every door, and the worker applies the store's current rules to
// the watches it already holds: a stored watch they refuse (Refused: a
// schedule under a raised scheduler.min_interval, a target whose channel
// was removed) is not scheduled and not run until the rules or the watch
// change, and Status says why.
//
// Several daemons sharing one store (PostgreSQL) each schedule every
// watch, and share the runs through claims (Config.Claims, a kv.Cluster):
// before a run, a daemon claims the watch's round (the fire's due time,
// which is the same on every daemon: the engine's phases are a pure
// function of the watch's id) for a lease; the daemon that gets it runs
// the watch, the others skip that fire quietly (EventClaimedElsewhere),
// and the run's end releases the round as done, so a daemon whose fire
// of the same round comes late does not run it again. A run that lasts
// extends its lease. A daemon that dies mid-run leaves its round undone:
// once the lease has ended, the next fire of that watch on any daemon
// claims it and runs it, so no watch stays unrun for longer than its
// interval plus the lease (storage.lease). Without Claims (one daemon,
// bbolt) every fire runs, as it always did.
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
)

// Store is what the worker needs of the vault; *vault.DB satisfies it.
// See vault's documentation of each method for its atomicity and errors.
type Store interface {
	// RunInput reads a watch, its cursor and the state of its user's grant
	// in one read (*vault.NotFoundError for a deleted watch).
	RunInput(watchID string) (vault.RunInput, error)
	// CommitRun records a run: outbox rows, seen posts and cursor in one
	// step, or nothing.
	CommitRun(c vault.RunCommit) (vault.RunOutcome, error)
	// SuspendProviderWatches and ClearProviderWatches suspend every watch
	// of a provider for a reason, and lift it, each in one step; they
	// return the ids of the watches that changed.
	SuspendProviderWatches(provider string, r vault.SuspendReason) ([]string, error)
	ClearProviderWatches(provider string, r vault.SuspendReason) ([]string, error)
	// RunnableWatches calls fn with every watch to schedule (Watch.Runs)
	// and its cursor; fn must not call the store, but for CheckWatch,
	// which applies the rules and reads nothing.
	RunnableWatches(fn func(vault.WatchWithCursor) error) error
	// CheckWatch applies the store's current rules of a valid watch to
	// spec without storing anything (*vault.InvalidError when they refuse
	// it). The worker checks stored watches with it (Refused).
	CheckWatch(provider string, spec *vault.WatchSpec) error
	// SaveRateWindows and RateWindows keep what providers said about
	// their rate-limit windows and usage caps across restarts
	// (ratelimit.go).
	SaveRateWindows(ws ...vault.RateWindow) error
	RateWindows() ([]vault.RateWindow, error)
}

// Event kinds reported to Config.Observer.
const (
	// EventRun: a run committed (PostsRead, Matches, Lag...).
	EventRun = "run"
	// EventRunFailed: a run failed; its cursor did not move.
	EventRunFailed = "run_failed"
	// EventSkipped: a due watch was skipped without a request (Reason).
	EventSkipped = "skipped"
	// EventRateLimited: the source's rate limit held a run (NotBefore).
	EventRateLimited = "rate_limited"
	// EventUsageCapped: the provider's usage cap was reached; its watches
	// are suspended. An operator alert.
	EventUsageCapped = "usage_capped"
	// EventUsageCapLifted: a probe succeeded and the provider's watches
	// resumed.
	EventUsageCapLifted = "usage_cap_lifted"
	// EventClaimedElsewhere: another daemon sharing the store holds this
	// fire's round, or ran it already (Config.Claims): nothing was done
	// here. Reason is the fire's (scheduled, catch_up, manual, coalesced).
	EventClaimedElsewhere = "claimed_elsewhere"
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
	// Gap, for EventRun, says the search could not start from the
	// watch's cursor (older than the source serves): posts in it may be
	// missed. The run's result is RunGap.
	Gap *Gap
	// NotBefore is when a rate-limited source may be asked again, or, for
	// SkipFairShare, when the provider's window resets.
	NotBefore time.Time
	// Watches is how many watches a lifted usage cap resumed, or a new one
	// suspended.
	Watches int
	Err     error
	Time    time.Time
}

// Config configures a Worker. The zero value of each field is its default
// (those of the [scheduler] configuration section).
type Config struct {
	// DB is the store (the vault). Required.
	DB Store
	// Sources by provider name. Required: the daemon builds one per
	// provider (for X, xsource.New with an xapi.Client on the provider's
	// APIURL). SetSources replaces them while the Worker runs.
	Sources map[string]Source
	// Tokens returns the token source of a grant. Required: the daemon
	// passes func(id string) worker.TokenSource { return mgr.Source(id) }.
	Tokens func(grantID string) TokenSource
	// Workers, PerUserConcurrency, PerProviderConcurrency, CatchUpWindow:
	// see sched.Config (defaults 32, 1, 64, 5 min).
	Workers                int
	PerUserConcurrency     int
	PerProviderConcurrency int
	CatchUpWindow          time.Duration
	// MinInterval is the least time between two scheduled runs of one
	// watch (scheduler.min_interval, which Rules apply to new schedules):
	// a watch stored with a faster schedule runs at this pace. Default
	// DefaultMinInterval; negative: none.
	MinInterval time.Duration
	// AppRequestsPerWindow is how many search requests all users together
	// may make to one provider in AppWindow (X's recent search: 450 per 15
	// minutes per app); each user gets an equal share of it, at least one
	// request. Default DefaultAppRequestsPerWindow; negative: no limit.
	AppRequestsPerWindow int
	// AppWindow is the length of that window; default 15 min.
	AppWindow time.Duration
	// MaxPages bounds the pages one run reads; default 5.
	MaxPages int
	// RunTimeout bounds one run, retries included; default 2 min.
	RunTimeout time.Duration
	// MaxPerDigest is how many posts one notification carries; default 20.
	MaxPerDigest int
	// CapProbeInterval is how often a usage-capped provider is probed;
	// default 1 h.
	CapProbeInterval time.Duration
	// Parse parses schedules; default the engine's (sched.CheckSchedule
	// without a floor).
	Parse func(spec string) (cron.Schedule, error)
	// Observer receives events; it is called on the run's goroutine and
	// must be quick.
	Observer func(Event)
	// Claims, when set, shares the runs with the other daemons on the
	// same store (see the package documentation): each fire claims its
	// watch's round under Holder for Lease before it runs. The daemon
	// passes the vault's (vault.DB.Cluster, Holder, Lease) when the store
	// is shared (vault.DB.Shared). Nil: every fire runs here.
	Claims Claims
	// Holder is this daemon's id among those sharing the store; required
	// with Claims.
	Holder string
	// Lease is how long a claim holds without being extended: a run
	// extends it every Lease/3, and a dead daemon's round is run by
	// another after it; default 30 s (storage.lease).
	Lease time.Duration
	// Failpoint, when set, is called at "after_search" and "after_commit",
	// so tests can crash the process there.
	Failpoint func(name string)
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultAppRequestsPerWindow is X's app-wide limit of recent search: 450
// requests per 15 minutes.
const DefaultAppRequestsPerWindow = 450

// Worker schedules and runs watches.
type Worker struct {
	cfg    Config
	log    *slog.Logger
	engine *sched.Engine
	fair   *fairShare

	// sources is the live Config.Sources.
	sources atomic.Pointer[map[string]Source]

	// rate holds the rate-limit holds operators see (ratelimit.go).
	rate *rateState

	// gen counts the changes of the schedule and of the holds (changed).
	gen atomic.Uint64

	mu     sync.Mutex
	capped map[string]*capState
	// invalid holds the watches the current rules refuse (Refused), by
	// id, with the rule's message: they are not in the engine.
	invalid map[string]string

	claimsState // claims.go
}

type capState struct {
	next    time.Time
	probing bool
	memo    probeMemo // usagecap.go
}

// SetSources replaces the sources by provider name; the map is copied.
// Runs in progress finish with the source they started with; schedules,
// cursors and the fair-share windows are untouched, so no watch restarts,
// and a source kept from the previous set keeps its own state (an X
// client's rate-limit windows). A run of a watch whose provider has no
// source any more fails (EventRunFailed, "no source for provider") and is
// tried again on its schedule: the watch is kept for when the provider
// returns. Safe for concurrent use.
func (w *Worker) SetSources(ss map[string]Source) {
	m := maps.Clone(ss)
	if m == nil {
		m = map[string]Source{}
	}
	w.sources.Store(&m)
}

// New returns a Worker.
func New(cfg Config) (*Worker, error) {
	if cfg.DB == nil || cfg.Tokens == nil || cfg.Sources == nil {
		return nil, errors.New("worker: DB, Sources and Tokens are required")
	}
	if cfg.Claims != nil && cfg.Holder == "" {
		return nil, errors.New("worker: Claims need a Holder (this daemon's id)")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
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
	switch {
	case cfg.MinInterval == 0:
		cfg.MinInterval = DefaultMinInterval
	case cfg.MinInterval < 0:
		cfg.MinInterval = 0
	}
	if cfg.AppRequestsPerWindow == 0 {
		cfg.AppRequestsPerWindow = DefaultAppRequestsPerWindow
	}
	if cfg.AppWindow <= 0 {
		cfg.AppWindow = 15 * time.Minute
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
	w := &Worker{cfg: cfg, log: cfg.Logger, capped: map[string]*capState{}, invalid: map[string]string{},
		fair: newFairShare(cfg.AppRequestsPerWindow, cfg.AppWindow, cfg.Now), rate: newRateState()}
	w.SetSources(cfg.Sources)
	w.cfg.Sources = nil // the live set is w.sources
	var err error
	w.engine, err = sched.New(sched.Config{Job: w.fire, Workers: cfg.Workers, PerProviderConcurrency: cfg.PerProviderConcurrency,
		PerUserConcurrency: cfg.PerUserConcurrency, CatchUpWindow: cfg.CatchUpWindow, MinInterval: cfg.MinInterval,
		Parse: cfg.Parse, Logger: cfg.Logger, Now: cfg.Now})
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

// Reload re-reads the watches from the store and applies the differences
// to the schedule: new watches are added, changed schedules take effect,
// paused, suspended and deleted watches leave it, and so do watches the
// store's current rules refuse (Refused; each is logged at Warn once, and
// Status says why), which come back at the first Reload that finds them
// valid again. The daemon calls it at start, on SIGHUP (after the new
// rules are set) and after operator changes. It logs one Info line,
// "watches loaded", with how many watches are scheduled, how many of
// them the usage cap suspends (they run only as its probe), how many left
// the schedule and how many are invalid (refused by the rules, or whose
// schedule the engine does not take). A usage cap found in the store and
// not yet in force here (a restart) is logged at Warn, once, with its
// next probe.
func (w *Worker) Reload(ctx context.Context) error {
	// What providers said about their windows before a restart: the
	// sources get their holds back, capped providers their next probe.
	caps := w.restoreWindows()
	// Each watch is checked and scheduled as it is read, in the read's
	// callback: a million watches are never all held at once (they were
	// 700 MB at the peak of a load). The callback calls only the store's
	// CheckWatch, which applies the rules and reads nothing.
	prior := map[string]bool{} // scheduled before: those not read again leave
	w.engine.Keys(func(k string) { prior[k] = true })
	w.mu.Lock()
	before := maps.Clone(w.invalid)
	w.mu.Unlock()
	var bad []error
	cappedProv := map[string]int{} // suspended watches by provider
	refused := map[string]string{}
	var refusedWatches, acceptedAgain []vault.Watch
	scheduled := 0
	err := w.cfg.DB.RunnableWatches(func(wt vault.WatchWithCursor) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if wt.State == vault.WatchSuspended { // by the usage cap: Runs
			cappedProv[wt.Provider]++
		}
		if why := Refused(w.cfg.DB, wt.Watch); why != nil {
			refused[wt.ID] = why.Error()
			refusedWatches = append(refusedWatches, wt.Watch)
			return nil
		}
		if err := w.schedule(wt.Watch, wt.Cursor); err != nil {
			bad = append(bad, fmt.Errorf("watch %s: %w", wt.ID, err))
			return nil
		}
		delete(prior, wt.ID)
		scheduled++
		if _, had := before[wt.ID]; had {
			acceptedAgain = append(acceptedAgain, wt.Watch)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("worker: reload: %w", err)
	}
	gone := 0
	for k := range prior {
		w.unschedule(k)
		gone++
	}
	w.mu.Lock()
	var restored []UsageCap
	for p := range cappedProv {
		if w.capped[p] == nil {
			// Probed when the saved cap says, not at once after a restart.
			w.capped[p] = &capState{next: latest(w.cfg.Now(), caps[p])}
			restored = append(restored, UsageCap{Provider: p, NextProbe: w.capped[p].next})
		}
	}
	w.invalid = refused
	w.mu.Unlock()
	for _, c := range restored {
		w.log.Warn("provider's usage cap still in force: its watches stay suspended until the next probe", "provider", c.Provider,
			"watches", cappedProv[c.Provider], "next_probe", c.NextProbe)
	}
	for _, wt := range refusedWatches {
		if prev, had := before[wt.ID]; !had || prev != refused[wt.ID] {
			w.logRefused(wt, refused[wt.ID])
		}
	}
	for _, wt := range acceptedAgain {
		w.log.Info("watch accepted by the current rules again: scheduled", "watch", wt.ID, "user", wt.UserID, "provider", wt.Provider)
	}
	for _, err := range bad {
		w.log.Error("watch not scheduled", "err", err)
	}
	nCapped := 0
	for _, n := range cappedProv {
		nCapped += n
	}
	w.log.Info("watches loaded", "scheduled", scheduled, "usage_capped", nCapped, "removed", gone, "invalid", len(refused)+len(bad))
	return nil
}

// schedule puts a runnable watch in the engine and its user in the
// provider's fair share.
func (w *Worker) schedule(wt vault.Watch, cur vault.Cursor) error {
	if err := w.engine.Upsert(sched.Entry{Key: wt.ID, User: wt.UserID, Provider: wt.Provider, Schedule: wt.Schedule, LastRun: cur.LastRunAt}); err != nil {
		return err
	}
	w.fair.track(wt.ID, wt.UserID, wt.Provider)
	w.changed()
	return nil
}

// Upsert schedules one watch as it is now, without a full Reload, or
// unschedules it when it does not run (Watch.Runs) or the store's current
// rules refuse it (Refused: logged and shown by Status, as Reload does;
// not an error).
func (w *Worker) Upsert(wt vault.Watch) error {
	if !wt.Runs() {
		w.Remove(wt.ID)
		return nil
	}
	if why := Refused(w.cfg.DB, wt); why != nil {
		w.refuse(wt, why)
		return nil
	}
	in, err := w.cfg.DB.RunInput(wt.ID)
	if err != nil {
		return err
	}
	if err := w.schedule(wt, in.Cursor); err != nil {
		return err
	}
	w.accepted(wt)
	return nil
}

// SetMinInterval changes the least time between two scheduled runs of one
// watch (Config.MinInterval: 0 the default, negative none) while the
// Worker runs; the floor applies from each watch's next run on.
func (w *Worker) SetMinInterval(d time.Duration) {
	switch {
	case d == 0:
		d = DefaultMinInterval
	case d < 0:
		d = 0
	}
	w.engine.SetMinInterval(d)
	w.changed()
}

// Remove unschedules a watch (and forgets whether the rules refused it).
func (w *Worker) Remove(watchID string) {
	w.unschedule(watchID)
	w.mu.Lock()
	delete(w.invalid, watchID)
	w.mu.Unlock()
}

// unschedule takes a watch out of the engine and the fair share.
func (w *Worker) unschedule(watchID string) {
	w.engine.Remove(watchID)
	w.fair.untrack(watchID)
	w.changed()
}

// RunNow runs a watch as soon as the limits allow. A watch the store's
// current rules refuse is not run: the error is a *vault.InvalidError
// naming the watch, with the rule's message (errors.Is vault.ErrInvalid),
// and the watch leaves the schedule if it was still in it. Other errors:
// *vault.NotFoundError for a watch that does not exist, sched.ErrUnknown
// for one that is not scheduled (paused, suspended), a
// *vault.TransitionError (errors.Is vault.ErrConflict) while a rate limit
// holds the runs of the watch's user at its provider (Holds): a run then
// would ask nothing, so none is queued; the error names the hold, until
// when, and when the watch next asks (held.go).
//
// A manual run of a watch of a usage-capped provider (suspended
// usage_capped, or active while its provider is capped) is the cap's
// probe, now, whatever the planned time (usagecap.go): the operator says
// the cap may have lifted. If the provider answers, every watch the cap
// suspended resumes; if it still answers usage-capped, they stay
// suspended and the next probe is planned Config.CapProbeInterval later.
// A probe already under way stands for it.
func (w *Worker) RunNow(watchID string) error {
	in, err := w.cfg.DB.RunInput(watchID)
	if err != nil {
		return err
	}
	if why := Refused(w.cfg.DB, in.Watch); why != nil {
		if in.Watch.Runs() {
			w.refuse(in.Watch, why)
		}
		return refusedError(watchID, why)
	}
	if h, next, held := w.heldNext(in.Watch); held {
		return heldError(watchID, h, next)
	}
	if !in.Watch.Runs() {
		return w.engine.RunNow(watchID)
	}
	planned, probing, capped, undo := w.probeNow(in.Watch.Provider)
	if err := w.engine.RunNow(watchID); err != nil {
		undo()
		return err
	}
	switch {
	case probing:
		w.log.Info("manual run queued: a probe of the provider's usage cap is already asking it and stands for this one",
			"watch", watchID, "user", in.Watch.UserID, "provider", in.Watch.Provider)
	case capped:
		w.log.Info("manual run is the provider's usage-cap probe: the probe moved to now", "watch", watchID,
			"user", in.Watch.UserID, "provider", in.Watch.Provider, "planned", planned)
	}
	return nil
}

// WatchStatus is what operators see of a watch.
type WatchStatus struct {
	Watch vault.Watch
	// Cursor holds the last run, its result and error, the since_id, and
	// the counters (runs, posts read, matches).
	Cursor vault.Cursor
	// Scheduled is false for watches not in the schedule (paused,
	// suspended, refused by the rules).
	Scheduled bool
	// Next is when the watch next asks its provider: the scheduler's next
	// fire or, while a rate limit holds its user's runs at its provider
	// (Held) or its provider's usage cap holds every run but the probe
	// (UsageCap), the first fire at or after the hold's end or the planned
	// probe (the fires before it ask nothing).
	Next    time.Time
	Running bool
	// Held is the rate limit holding the runs of the watch's user at its
	// provider now (HoldOf), or nil.
	Held *Hold
	// UsageCap is the usage cap of the watch's provider while it is in
	// force and the watch runs (active, or suspended by the cap), or nil.
	UsageCap *UsageCap
	// Invalid is, when the store's current rules refuse the watch
	// (Refused), the rule's message, such as `schedule "@every 5m" runs
	// every 5m0s; the minimum between runs of one watch is 20m0s
	// (scheduler.min_interval)`; "" when they accept it. It is the rules'
	// answer now, whatever the watch's state: a refused watch is not
	// scheduled (from the next Reload or Upsert on) and is not run.
	Invalid string
}

// Status returns a watch's status, or a *vault.NotFoundError.
func (w *Worker) Status(watchID string) (WatchStatus, error) {
	var st WatchStatus
	in, err := w.cfg.DB.RunInput(watchID)
	if err != nil {
		return st, err
	}
	st.Watch, st.Cursor = in.Watch, in.Cursor
	next, running, err := w.engine.Next(watchID)
	st.Scheduled, st.Next, st.Running = err == nil, next, running
	var heldUntil, probe time.Time
	if h, held := w.HoldOf(in.Watch.UserID, in.Watch.Provider); held {
		st.Held, heldUntil = &h, h.Until
	}
	if planned, probing, capped := w.capPlan(in.Watch.Provider); capped && in.Watch.Runs() {
		st.UsageCap = &UsageCap{Provider: in.Watch.Provider, NextProbe: w.probeAt(in.Watch.Provider, planned), Probing: probing}
		probe = planned
	}
	if st.Scheduled {
		st.Next = w.asks(watchID, st.Next, heldUntil, probe) // as UsageCaps' NextProbe
	}
	if why := Refused(w.cfg.DB, in.Watch); why != nil {
		st.Invalid = why.Error()
	}
	return st, nil
}

// ResumeProvider resumes the watches of a provider suspended for its usage
// cap (an operator raised the budget) and returns how many.
func (w *Worker) ResumeProvider(provider string) (int, error) {
	ids, err := w.cfg.DB.ClearProviderWatches(provider, vault.SuspendUsageCapped)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	delete(w.capped, provider)
	w.mu.Unlock()
	w.saveCap(provider, time.Time{})
	return len(ids), nil
}

// fire runs one fire of the engine: when this daemon gets the claim on
// its round (claims.go), or when there are no claims.
func (w *Worker) fire(ctx context.Context, f sched.Fire) {
	start := w.cfg.Now()
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RunTimeout)
	defer cancel()
	held, ok := w.claim(ctx, f, start, cancel)
	if !ok {
		return
	}
	defer held.stop()
	ev := w.RunWatch(rctx, f.Key)
	held.release(ctx, ev)
	if ev.Reason == "" {
		ev.Reason = f.Reason.String()
	}
	ev.Lag = start.Sub(f.Scheduled)
	ev.Duration = w.cfg.Now().Sub(start)
	ev.Time = start
	w.cfg.Observer(ev)
}
