package worker

import (
	"slices"
	"sync"
	"time"

	"tagwatch/vault"
)

// This file keeps the rate limits that hold runs visible and durable:
//
//   - Holds: every run a rate limit holds (the provider's window for the
//     user, spent or answered with a 429, and the user's fair share of the
//     provider's app-wide window) is entered in an in-memory table that
//     operators read (Holds, HoldOf: `tagwatchctl watches` and `status`).
//     A held run writes nothing to the store: a hold is logged once when
//     it begins, not once per held run.
//   - Windows: what a provider said about its windows (a Source that is a
//     RateWindowKeeper reports a window whose hold began or moved) and its
//     usage cap are saved in the store (Store.SaveRateWindows) when they
//     change, and given back to the sources at Reload, so a restarted
//     daemon asks no provider before a reset it was told of, and probes a
//     usage-capped provider no sooner than it would have.

// Windows of a Hold.
const (
	// HoldPerUser: the provider's own rate-limit window of the endpoint
	// for the user is spent (an answer said so, or was a 429).
	HoldPerUser = "per_user"
	// HoldFairShare: the user has used their fair share of the
	// provider's app-wide request window (Config.AppRequestsPerWindow).
	HoldFairShare = "app_fair_share"
)

// Hold is a rate limit holding a user's runs at a provider, as operators
// see it.
type Hold struct {
	Provider string
	// UserID is the user; empty for a window restored from the store
	// whose user is not known.
	UserID string
	// Endpoint is the provider's endpoint the window counts (X:
	// /2/tweets/search/recent).
	Endpoint string
	// Window is HoldPerUser or HoldFairShare.
	Window string
	// Until is when runs go on again.
	Until time.Time
}

// RateWindow is what a provider said about one endpoint's rate-limit
// window for one user, as a RateWindowKeeper reports it; times on the
// worker's clock.
type RateWindow struct {
	// User is the source's user key (the grant id the worker passes to
	// Search); Endpoint the provider's endpoint.
	User, Endpoint string
	// Limit and Remaining as last reported; -1 when not said.
	Limit, Remaining int
	// Reset is when the window ends (zero: not known); NotBefore when the
	// endpoint may next be called for the user.
	Reset, NotBefore time.Time
	Observed         time.Time
}

// RateWindowKeeper is a Source that keeps what its provider said about its
// rate-limit windows, so the worker can keep them across restarts
// (xsource.Source is one). Both methods must be quick and safe for
// concurrent use.
type RateWindowKeeper interface {
	// ChangedRateWindows returns the windows whose hold began or moved
	// since the last call (not one per request).
	ChangedRateWindows() []RateWindow
	// RestoreRateWindows gives back windows saved before a restart.
	RestoreRateWindows(ws []RateWindow)
}

// endpointNamer is a Source that names the endpoint its searches count
// against (for Hold.Endpoint of a fair-share hold).
type endpointNamer interface {
	SearchEndpoint() string
}

func searchEndpoint(src Source) string {
	if n, ok := src.(endpointNamer); ok {
		return n.SearchEndpoint()
	}
	return "search"
}

type holdKey struct{ provider, user, window, endpoint string }

// rateState is the worker's table of holds and the grant → user map that
// names the users of windows.
type rateState struct {
	mu     sync.Mutex
	holds  map[holdKey]time.Time
	grants map[string]string // grant id -> user id
}

func newRateState() *rateState {
	return &rateState{holds: map[holdKey]time.Time{}, grants: map[string]string{}}
}

// noteGrant remembers whose a grant is.
func (w *Worker) noteGrant(grantID, userID string) {
	if grantID == "" || userID == "" {
		return
	}
	r := w.rate
	r.mu.Lock()
	r.grants[grantID] = userID
	r.mu.Unlock()
}

func (w *Worker) userOfGrant(grantID string) string {
	r := w.rate
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grants[grantID]
}

// hold enters h in the table and reports whether it begins a hold (none
// of its key was in force): the caller logs it then, once per window.
func (w *Worker) hold(h Hold) (first bool) {
	now := w.cfg.Now()
	if !h.Until.After(now) {
		return false
	}
	defer w.changed()
	r := w.rate
	r.mu.Lock()
	defer r.mu.Unlock()
	k := holdKey{h.Provider, h.UserID, h.Window, h.Endpoint}
	prev := r.holds[k]
	first = !prev.After(now)
	if h.Until.After(prev) {
		r.holds[k] = h.Until
	}
	if len(r.holds) > 256 {
		for k, until := range r.holds {
			if !until.After(now) {
				delete(r.holds, k)
			}
		}
	}
	return first
}

// logHold logs a per-user hold that begins.
func (w *Worker) logHold(h Hold, local bool) {
	w.log.Info("provider's rate-limit window spent: the user's runs are held until it resets",
		"user", h.UserID, "provider", h.Provider, "endpoint", h.Endpoint, "window", h.Window, "until", h.Until, "local", local)
}

// Holds returns the holds in force now, by provider, user, window and
// endpoint: every rate limit that holds a user's runs (the provider's
// per-user window, the app-wide fair share).
func (w *Worker) Holds() []Hold {
	now := w.cfg.Now()
	r := w.rate
	r.mu.Lock()
	var out []Hold
	for k, until := range r.holds {
		if until.After(now) {
			out = append(out, Hold{Provider: k.provider, UserID: k.user, Window: k.window, Endpoint: k.endpoint, Until: until})
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Hold) int {
		for _, c := range [][2]string{{a.Provider, b.Provider}, {a.UserID, b.UserID}, {a.Window, b.Window}, {a.Endpoint, b.Endpoint}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return out
}

// HoldOf returns the hold in force now that holds userID's runs at
// provider the longest, if any.
func (w *Worker) HoldOf(userID, provider string) (Hold, bool) {
	var best Hold
	found := false
	for _, h := range w.Holds() {
		if h.Provider == provider && h.UserID == userID && (!found || h.Until.After(best.Until)) {
			best, found = h, true
		}
	}
	return best, found
}

// keepWindows saves the windows src reports changed since the last call
// (one write when a window becomes spent or its hold moves, not one per
// request) and enters their holds in the table, logging those that begin.
func (w *Worker) keepWindows(provider string, src Source) {
	k, ok := src.(RateWindowKeeper)
	if !ok {
		return
	}
	ws := k.ChangedRateWindows()
	if len(ws) == 0 {
		return
	}
	recs := make([]vault.RateWindow, 0, len(ws))
	for _, rw := range ws {
		user := w.userOfGrant(rw.User)
		recs = append(recs, vault.RateWindow{Provider: provider, Kind: vault.WindowRateLimit, Endpoint: rw.Endpoint, Key: rw.User,
			UserID: user, Limit: rw.Limit, Remaining: rw.Remaining, Reset: rw.Reset, NotBefore: rw.NotBefore, Observed: rw.Observed})
		h := Hold{Provider: provider, UserID: user, Endpoint: rw.Endpoint, Window: HoldPerUser, Until: rw.NotBefore}
		if w.hold(h) {
			w.logHold(h, false)
		}
	}
	if err := w.cfg.DB.SaveRateWindows(recs...); err != nil {
		w.log.Warn("rate-limit windows not saved: a restart may ask the provider before their reset", "provider", provider, "err", err)
	}
}

// saveCap keeps a provider's usage cap across restarts: until is when it
// is probed next; zero when the cap lifted.
func (w *Worker) saveCap(provider string, until time.Time) {
	rec := vault.RateWindow{Provider: provider, Kind: vault.WindowUsageCap, Limit: -1, Remaining: -1, NotBefore: until, Observed: w.cfg.Now()}
	if err := w.cfg.DB.SaveRateWindows(rec); err != nil {
		w.log.Warn("usage cap not saved: a restart may probe the provider early", "provider", provider, "err", err)
	}
}

// restoreWindows reads the windows the store kept, gives each source its
// provider's (a source that keeps none ignores them), enters their holds
// in the table and returns when each usage-capped provider is probed
// next.
func (w *Worker) restoreWindows() map[string]time.Time {
	recs, err := w.cfg.DB.RateWindows()
	if err != nil {
		w.log.Warn("rate-limit windows not read: runs may ask providers before a known reset", "err", err)
		return nil
	}
	caps := map[string]time.Time{}
	byProv := map[string][]RateWindow{}
	// A stored time holds no longer than a provider's window could (the
	// sources bound what they restore alike), a cap no longer than a
	// probe interval.
	now := w.cfg.Now()
	for _, rec := range recs {
		switch rec.Kind {
		case vault.WindowUsageCap:
			caps[rec.Provider] = earliest(rec.NotBefore, now.Add(w.cfg.CapProbeInterval))
		case vault.WindowRateLimit:
			rec.NotBefore = earliest(rec.NotBefore, now.Add(w.cfg.AppWindow+time.Minute))
			byProv[rec.Provider] = append(byProv[rec.Provider], RateWindow{User: rec.Key, Endpoint: rec.Endpoint, Limit: rec.Limit,
				Remaining: rec.Remaining, Reset: rec.Reset, NotBefore: rec.NotBefore, Observed: rec.Observed})
			w.noteGrant(rec.Key, rec.UserID)
			w.hold(Hold{Provider: rec.Provider, UserID: rec.UserID, Endpoint: rec.Endpoint, Window: HoldPerUser, Until: rec.NotBefore})
		}
	}
	for p, src := range *w.sources.Load() {
		if k, ok := src.(RateWindowKeeper); ok && len(byProv[p]) > 0 {
			k.RestoreRateWindows(byProv[p])
		}
	}
	return caps
}

// clearHolds forgets the per-user holds of userID at provider: a search
// just got through, so none is in force (a restored hold may have been
// bounded shorter by the source).
func (w *Worker) clearHolds(provider, userID string) {
	defer w.changed()
	r := w.rate
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.holds {
		if k.provider == provider && k.user == userID && k.window == HoldPerUser {
			delete(r.holds, k)
		}
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
