// Package renew hands every job a valid access token for as long as the
// user's consent lasts, without ever losing the grant to a race or a crash.
//
// A Source serves the cached access token until it is due for renewal
// (renewAt: a margin before expiry, Config.Skew capped at half the token's
// own lifetime); that path takes no lock and allocates nothing. Near
// expiry exactly one refresh per grant is in flight (a Locker per grant);
// other callers wait for its result. Before calling the token endpoint the Manager commits a
// "refresh in flight" marker; on success it stores the rotated refresh
// token and the new access token with its absolute expiry in one fsynced
// transaction, and only then does anyone see the new access token. A marker
// found later (a crash, a lost response) means the next attempt is the one
// retry with the stored token; if the provider refuses it, the grant needs
// a new consent.
//
// Failures are classified: a dead grant is terminal (state needs_reconsent,
// the user's watches suspended, a re-consent link created and queued for
// the user, no further attempts); transient failures back off exponentially
// with jitter and leave the grant alone; a client failure is an operator
// alert, and so is the first of a run of answers renewal cannot act on
// (provider.ClassProtocol: an HTML page, an empty 400), which back off too.
// Which answer is which is vault/provider's classification, by what an
// answer says; a dead grant is never retried, a lost answer never ends a
// grant before the one retry with the stored token. A Manager is safe for
// concurrent use; Run owns its goroutine.
//
// Several daemons may share one store (PostgreSQL). The marker then names
// its daemon, and a refresh another daemon has in flight is waited for,
// never joined: vault.DB.BeginRefresh answers vault.ErrRefreshBusy while
// the marker's holder is alive, and the Manager polls the grant until that
// refresh's outcome is stored (then uses it) or the marker is in doubt
// (then makes the one retry), bounded by the lease and a margin
// (waitBound). Presenting the refresh token the other daemon is rotating
// would be the reuse that revokes the token family (RFC 9700 §4.14.2).
// Each commit of new tokens is announced on vault.GrantTokensChannel;
// FollowInvalidations drops this daemon's cached token of that grant.
//
// Every change to the store is one method of *vault.DB (vault/grants.go:
// BeginRefresh, CommitRefresh, RecordRefreshFailure, MarkNeedsReconsent,
// UnenrollGrant and the pending revocations' methods); this package holds
// the protocol's order, the locks, the backoff and the HTTP calls, and
// opens no transaction of its own.
package renew

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// Provider is what renewal needs of a provider.
type Provider interface {
	Refresh(ctx context.Context, rt secret.RefreshToken) (*provider.TokenResult, error)
	Revoke(ctx context.Context, rt secret.RefreshToken) error
	HasRevocation() bool
	MissingScopes(granted []string, refresh bool) []string
	VerifyIDToken(ctx context.Context, raw secret.Value, nonce string, prev *provider.Identity) (provider.Identity, error)
}

var _ Provider = (*provider.Provider)(nil)

// ErrNeedsConsent means the grant is not active: it needs a new consent
// (or was revoked). No request was made. It is vault.ErrNeedsConsent, so
// callers may test for either; the errors carrying it are
// *vault.NeedsConsentError.
var ErrNeedsConsent = vault.ErrNeedsConsent

// actor names renewal in the audit trail and on the links it creates.
const actor = "tagwatchd renewal"

// Event kinds reported to Config.Observer.
const (
	EventRenewed        = "renewed"
	EventRefreshFailed  = "refresh_failed"
	EventNeedsReconsent = "needs_reconsent"
	EventOperatorAlert  = "operator_alert"
	EventLostRotation   = "lost_rotation"
	EventRevoked        = "revoked"
)

// Event is something renewal did, for logs, metrics and the demo. It never
// carries a secret.
type Event struct {
	Kind         string
	GrantID      string
	UserID       string
	Provider     string
	RefreshCount int
	Class        provider.Class
	Reason       string
	Expiry       time.Time
	Time         time.Time
}

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	DB *vault.DB
	// Providers by name, as grants name them. SetProviders replaces them
	// while the Manager runs.
	Providers map[string]Provider
	// Locker serialises refreshes per grant; default a LocalLocker.
	Locker Locker
	// Skew: refresh this long before expiry; default 60 s. It is capped
	// at half of each token's own lifetime (see renewAt), so a token that
	// lives less than twice the skew is still used.
	Skew time.Duration
	// Timeout bounds one token request; default 15 s. On a store several
	// daemons share, another daemon takes a marker over once its holder's
	// heartbeats have stopped for the vault's lease (vault.Options.Lease,
	// storage.lease), and a holder cut off from the store may have sent
	// its request up to one heartbeat interval (a third of the lease)
	// after its last heartbeat: Timeout must stay below two thirds of the
	// lease, or that request may still be in flight when its refresh
	// token is presented again (New logs a warning when it is not).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the waits after transient failures;
	// defaults 2 s and 10 min.
	MinBackoff, MaxBackoff time.Duration
	// PublicURL is where re-consent links point (<PublicURL>/enroll/<token>).
	PublicURL string
	// LinkTTL is how long a re-consent link lives; default
	// vault.DefaultLinkTTL (72 h).
	LinkTTL time.Duration
	// RevocationInterval is how often Run retries pending revocations;
	// default 1 min.
	RevocationInterval time.Duration
	Observer           func(Event)
	Now                func() time.Time
	Logger             *slog.Logger
}

// Manager renews access tokens for every grant in the vault.
type Manager struct {
	cfg     Config
	db      *vault.DB
	locker  Locker
	now     func() time.Time
	log     *slog.Logger
	mu      sync.Mutex
	entries map[string]*entry

	// providers is read on the refresh path only; the cached-token path
	// never touches it. provMu serialises SetProviders.
	providers atomic.Pointer[providerSet]
	provMu    sync.Mutex
	provGen   uint64
}

// providerSet is one published set of providers. gen says, per name, which
// SetProviders call last replaced that provider: a backoff earned with an
// older provider (bad client credentials the operator has since fixed) no
// longer holds.
type providerSet struct {
	byName map[string]Provider
	gen    map[string]uint64
}

type cached struct {
	access secret.AccessToken
	// renewAt is when the token stops being served (renewAt()).
	renewAt time.Time
}

// renewAt is when a token that expires at expiry and lived lifetime is due
// for renewal: skew before its expiry, but never more than half its
// lifetime before, so a short-lived token (expires_in 45 with the default
// 60 s skew, or the 5 min assumed without expires_in under a skew of 5 min)
// is used for half its life instead of being refreshed on every call. A
// lifetime <= 0 (unknown) leaves the margin at skew. Every "still valid?"
// decision of this package goes through it.
func renewAt(expiry time.Time, lifetime, skew time.Duration) time.Time {
	margin := skew
	if lifetime > 0 && lifetime/2 < margin {
		margin = lifetime / 2
	}
	return expiry.Add(-margin)
}

// storedLifetime is the lifetime of the access token a grant record holds,
// for a token loaded from the vault (after a restart). The record keeps the
// token's absolute expiry, not when it was issued; the issue is taken as the
// later of the last refresh (Grant.LastRefreshAt, stored with the token) and
// the last time the grant became active (Grant.StateSince: the consent that
// stored it). That instant is never later than the real issue by more than
// the time from the token's answer to its commit, and may be earlier (a
// consent renewing a grant that was still active changes neither): a
// longer lifetime only lets the margin grow back to the skew, so at worst
// one refresh comes early, never one per call. Unknown (no such instant
// before the expiry) is 0.
func storedLifetime(g vault.Grant) time.Duration {
	issued := g.LastRefreshAt
	if g.StateSince.After(issued) {
		issued = g.StateSince
	}
	if issued.IsZero() || !issued.Before(g.AccessExpiry) {
		return 0
	}
	return g.AccessExpiry.Sub(issued)
}

// entry is the in-memory state of one grant.
type entry struct {
	id  string
	cur atomic.Pointer[cached]
	// dead is set when the grant is known not to be active.
	dead atomic.Bool
	// gen counts the drops of what is cached (drop): a token or a verdict
	// read from the vault before a drop is not kept after it (keep, kill).
	gen atomic.Uint64
	// slow-path state, guarded by the grant's Locker.
	notBefore time.Time
	failures  int
	lastErr   error
	// failProvider and failGen name the provider the failures were earned
	// with; a replaced provider starts the grant with a clean slate.
	failProvider string
	failGen      uint64
}

// New returns a Manager.
func New(cfg Config) *Manager {
	if cfg.Locker == nil {
		cfg.Locker = &LocalLocker{}
	}
	if cfg.Skew <= 0 {
		cfg.Skew = 60 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Minute
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = vault.DefaultLinkTTL
	}
	if cfg.RevocationInterval <= 0 {
		cfg.RevocationInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = func(Event) {}
	}
	m := &Manager{cfg: cfg, db: cfg.DB, locker: cfg.Locker, now: cfg.Now, log: cfg.Logger, entries: map[string]*entry{}}
	ps := &providerSet{byName: maps.Clone(cfg.Providers), gen: map[string]uint64{}}
	if ps.byName == nil {
		ps.byName = map[string]Provider{}
	}
	m.providers.Store(ps)
	m.cfg.Providers = nil // the live set is m.providers
	if m.db != nil && m.db.Shared() && 3*cfg.Timeout >= 2*m.db.Lease() {
		m.log.Warn("the token request timeout is not below two thirds of the storage lease: a daemon cut off from the store may still have a refresh in flight when another takes its marker over",
			"renewal_timeout", cfg.Timeout, "storage_lease", m.db.Lease())
	}
	return m
}

// SetProviders replaces the providers the Manager refreshes, revokes and
// verifies ID tokens with; the map is copied. A provider left the same
// (the same value) keeps its state; one that is new or replaced takes
// effect from the next refresh, and a grant backing off after failures
// with the provider it replaced (a wrong client secret, say) may try again
// at once. A refresh already in flight finishes with the provider it
// started with. A name no longer in ps fails refreshes of its grants with
// an error until it returns; the grants themselves are untouched.
//
// Cached access tokens are kept, also for replaced providers: they stay
// valid at the provider until they expire, whatever happened to the
// client's credentials, and an API that refuses one (401) makes the caller
// Invalidate it, which refreshes with the new provider.
//
// Safe for concurrent use; the cached-token path takes no lock for it.
func (m *Manager) SetProviders(ps map[string]Provider) {
	m.provMu.Lock()
	defer m.provMu.Unlock()
	old := m.providers.Load()
	m.provGen++
	next := &providerSet{byName: make(map[string]Provider, len(ps)), gen: make(map[string]uint64, len(ps))}
	for name, p := range ps {
		next.byName[name] = p
		if q, ok := old.byName[name]; ok && sameProvider(p, q) {
			next.gen[name] = old.gen[name]
		} else {
			next.gen[name] = m.provGen
		}
	}
	m.providers.Store(next)
}

// sameProvider reports whether a and b are the same provider value,
// without panicking on incomparable implementations.
func sameProvider(a, b Provider) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

// provider returns the provider of a name and its generation.
func (m *Manager) provider(name string) (Provider, uint64, bool) {
	ps := m.providers.Load()
	p, ok := ps.byName[name]
	return p, ps.gen[name], ok && p != nil
}

func (m *Manager) entry(grantID string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[grantID]
	if e == nil {
		e = &entry{id: grantID}
		m.entries[grantID] = e
	}
	return e
}

// drop forgets e's cached token and verdict: the next use reads the
// vault.
func (e *entry) drop() {
	e.gen.Add(1)
	e.cur.Store(nil)
	e.dead.Store(false)
}

// keep caches c, read from the vault or the provider when e.gen was gen,
// unless e was dropped since (it may be older than what the drop
// announced).
func (e *entry) keep(gen uint64, c *cached) {
	e.cur.Store(c)
	if e.gen.Load() != gen {
		e.cur.Store(nil)
	}
}

// kill records that the grant is not active, as read when e.gen was gen,
// unless e was dropped since (a consent may have renewed it).
func (e *entry) kill(gen uint64) {
	e.cur.Store(nil)
	e.dead.Store(true)
	if e.gen.Load() != gen {
		e.dead.Store(false)
	}
}

// Forget drops what the Manager caches about a grant, after it was
// replaced (a re-consent) or removed.
func (m *Manager) Forget(grantID string) { m.entry(grantID).drop() }

// FollowInvalidations drops what the Manager caches of a grant whenever a
// daemon sharing the store (this one included) announces that the
// grant's tokens changed (vault.GrantTokensChannel: a refresh, a consent,
// a grant ended), so that the next Token reads the vault instead of
// serving an access token the grant no longer holds until the API refuses
// it. After a lost connection to the store it drops everything (what was
// announced meanwhile is lost), and it drops everything when it starts:
// start it before the first Token. It runs until ctx ends, reconnecting
// as needed, and returns ctx's error (or the store's, closed). On a store
// one process owns (bbolt) the announcements are this process's own.
func (m *Manager) FollowInvalidations(ctx context.Context) error {
	m.dropAll()
	return m.db.Cluster().Subscribe(ctx, vault.GrantTokensChannel, m.dropGrant, m.dropAll)
}

// dropGrant drops what is cached of grant id, if anything.
func (m *Manager) dropGrant(id string) {
	m.mu.Lock()
	e := m.entries[id]
	m.mu.Unlock()
	if e != nil {
		e.drop()
	}
}

// dropAll drops what is cached of every grant.
func (m *Manager) dropAll() {
	m.mu.Lock()
	es := slices.Collect(maps.Values(m.entries))
	m.mu.Unlock()
	for _, e := range es {
		e.drop()
	}
}

// Source is the token source of one grant. Safe for concurrent use.
type Source struct {
	m *Manager
	e *entry
}

// Source returns the token source of a grant.
func (m *Manager) Source(grantID string) *Source { return &Source{m: m, e: m.entry(grantID)} }

// Token returns a valid access token: the cached one until it is due for
// renewal (no lock, no allocation), else a renewed one.
func (s *Source) Token(ctx context.Context) (secret.AccessToken, error) {
	if c := s.e.cur.Load(); c != nil && s.m.valid(c) {
		return c.access, nil
	}
	return s.m.renew(ctx, s.e, nil)
}

// Invalidate reports that the API refused stale (401): unless the grant's
// token changed meanwhile, it forces one refresh and returns the new token.
// Callers invoke it at most once per request.
func (s *Source) Invalidate(ctx context.Context, stale secret.AccessToken) (secret.AccessToken, error) {
	return s.m.renew(ctx, s.e, &stale)
}

// valid reports whether a cached token may still be served.
func (m *Manager) valid(c *cached) bool { return m.now().Before(c.renewAt) }

// cached returns the cache entry of a token that expires at expiry and
// lived lifetime.
func (m *Manager) cached(access secret.AccessToken, expiry time.Time, lifetime time.Duration) *cached {
	return &cached{access: access, renewAt: renewAt(expiry, lifetime, m.cfg.Skew)}
}

func (m *Manager) renew(ctx context.Context, e *entry, stale *secret.AccessToken) (secret.AccessToken, error) {
	if e.dead.Load() {
		return secret.AccessToken{}, &vault.NeedsConsentError{GrantID: e.id, State: vault.GrantNeedsReconsent}
	}
	unlock, err := m.locker.Lock(ctx, e.id)
	if err != nil {
		return secret.AccessToken{}, fmt.Errorf("renew: wait for grant %s: %w", e.id, err)
	}
	defer unlock()
	var until time.Time // when waiting for another daemon's refresh ends
	for {
		// Someone else may have renewed while we waited.
		if c := e.cur.Load(); c != nil && m.valid(c) && (stale == nil || !c.access.Equal(stale.Value)) {
			return c.access, nil
		}
		gen := e.gen.Load()
		// The vault may be fresher than the cache (a restart, a re-consent,
		// another daemon's refresh).
		g, tok, err := m.db.GrantTokens(e.id)
		if err != nil {
			return secret.AccessToken{}, fmt.Errorf("renew: load the grant: %w", err)
		}
		if g.State != vault.GrantActive {
			e.kill(gen)
			return secret.AccessToken{}, &vault.NeedsConsentError{GrantID: e.id, State: g.State}
		}
		if g.RefreshInFlight.IsZero() && !tok.Access.IsZero() && (stale == nil || !tok.Access.Equal(stale.Value)) {
			if c := m.cached(tok.Access, g.AccessExpiry, storedLifetime(g)); m.valid(c) {
				e.keep(gen, c)
				return tok.Access, nil
			}
		}
		if e.failures > 0 && e.failProvider == g.Provider {
			if _, pgen, _ := m.provider(g.Provider); pgen != e.failGen {
				// The provider was replaced since the failures: start afresh.
				e.failures, e.lastErr, e.notBefore = 0, nil, time.Time{}
			}
		}
		if now := m.now(); now.Before(e.notBefore) {
			return secret.AccessToken{}, fmt.Errorf("renew: grant %s backing off until %s: %w", e.id, e.notBefore.Format(time.RFC3339), e.lastErr)
		}
		at, err := m.refresh(ctx, e, g, gen)
		var busy *vault.RefreshBusyError
		if !errors.As(err, &busy) {
			return at, err
		}
		// Another daemon is refreshing the grant: wait for its outcome
		// and start over with what it stored.
		if until.IsZero() {
			until = time.Now().Add(m.waitBound())
			m.log.Debug("waiting for another daemon's refresh of a grant", "grant", e.id, "holder", busy.Holder)
		} else if !time.Now().Before(until) {
			return secret.AccessToken{}, fmt.Errorf("renew: grant %s: waited %s for daemon %s's refresh (in flight since %s), which neither finished nor was given up: %w",
				e.id, m.waitBound(), busy.Holder, busy.Since.UTC().Format(time.RFC3339), busy)
		}
		if err := m.await(ctx, busy, until); err != nil {
			return secret.AccessToken{}, err
		}
	}
}

// pollEvery is how often a grant whose refresh another daemon holds is
// read again: 100 ms plus up to 150 ms of jitter.
func pollEvery() time.Duration { return 100*time.Millisecond + rand.N(150*time.Millisecond) }

// waitBound is how long a refresh waits for another daemon's: the lease
// (a dead holder's marker is in doubt once its heartbeats have stopped
// for a lease, and this daemon's own have been steady for one) and half
// a lease more (a heartbeat interval, a third of it, and some).
func (m *Manager) waitBound() time.Duration { return m.db.Lease() + m.db.Lease()/2 }

// await reads the grant of b every pollEvery until its marker is no longer
// b's (its refresh stored an outcome, or another daemon took it over, or
// the grant ended) or until passes. Errors: ctx's; the vault's.
func (m *Manager) await(ctx context.Context, b *vault.RefreshBusyError, until time.Time) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			g, err := m.db.Grant(b.GrantID)
			if err != nil {
				return fmt.Errorf("renew: read grant %s while daemon %s refreshes it: %w", b.GrantID, b.Holder, err)
			}
			if g.State != vault.GrantActive || g.RefreshHolder != b.Holder || !g.RefreshInFlight.Equal(b.Since) {
				return nil
			}
		}
		left := time.Until(until)
		if left <= 0 {
			return nil
		}
		t.Reset(min(pollEvery(), left))
		select {
		case <-ctx.Done():
			return fmt.Errorf("renew: wait for daemon %s's refresh of grant %s: %w", b.Holder, b.GrantID, ctx.Err())
		case <-t.C:
		}
	}
}

// refresh runs the refresh protocol; gen is e.gen when g was read. The
// caller holds the grant's lock. Errors: *vault.RefreshBusyError when
// another daemon has the grant's refresh in flight (nothing was done).
func (m *Manager) refresh(ctx context.Context, e *entry, g vault.Grant, gen uint64) (secret.AccessToken, error) {
	p, pgen, ok := m.provider(g.Provider)
	if !ok {
		return secret.AccessToken{}, fmt.Errorf("renew: grant %s: provider %q is not configured", g.ID, g.Provider)
	}
	for attempt := 0; ; attempt++ {
		// tx 1: the marker. A marker already there means the last request's
		// outcome is unknown: this is the one retry with the stored token.
		t, err := m.db.BeginRefresh(g.ID, actor)
		if err != nil {
			if errors.Is(err, vault.ErrNeedsConsent) {
				e.kill(gen)
				return secret.AccessToken{}, err
			}
			if errors.Is(err, vault.ErrRefreshBusy) {
				return secret.AccessToken{}, err
			}
			return secret.AccessToken{}, fmt.Errorf("renew: mark a refresh in flight: %w", err)
		}
		g = t.Grant
		retry := t.Retry
		if retry {
			if res, ok := m.recover(t); ok {
				// The daemon that made the request wrote its answer down
				// before it stopped: commit that, present nothing again.
				m.log.Warn("a refresh whose outcome was lost is completed from its journaled answer", "grant", g.ID, "user", g.UserID, "provider", g.Provider)
				return m.commitSuccess(ctx, e, t, p, res, gen)
			}
			m.emit(Event{Kind: EventLostRotation, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider})
			m.log.Warn("retrying a refresh whose outcome was lost", "grant", g.ID, "user", g.UserID, "provider", g.Provider)
		}

		// The HTTP call, outside any transaction, detached from the caller:
		// abandoning a sent refresh would only lose its answer.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeout)
		res, rerr := p.Refresh(rctx, t.Refresh)
		cancel()

		if rerr == nil {
			m.journal(t, res)
			tok, err := m.commitSuccess(ctx, e, t, p, res, gen)
			if err == nil {
				m.forget(t)
			}
			return tok, err
		}
		var pe *provider.Error
		if !errors.As(rerr, &pe) {
			pe = &provider.Error{Op: "refresh", Class: provider.ClassTransient, Ambiguous: true, Err: rerr}
		}
		switch {
		case pe.Class == provider.ClassDeadGrant:
			reason := "dead_grant"
			if retry {
				reason = "lost_rotation"
			}
			if err := m.needsReconsent(g, reason, false); err != nil {
				return secret.AccessToken{}, err
			}
			e.kill(gen)
			return secret.AccessToken{}, &vault.NeedsConsentError{GrantID: g.ID, State: vault.GrantNeedsReconsent}
		case pe.Ambiguous && !retry && attempt == 0:
			// The request may have rotated the token: retry once, now, with
			// the stored one (the marker stays set).
			m.log.Warn("refresh answer lost; retrying once", "grant", g.ID, "provider", g.Provider, "err", pe)
			continue
		default:
			e.failProvider, e.failGen = g.Provider, pgen
			return secret.AccessToken{}, m.recordFailure(e, t, pe, retry || pe.Ambiguous)
		}
	}
}

// commitSuccess is tx 2 of a refresh: the new tokens, sealed, with the
// absolute expiry; the marker cleared. Only after it commits is the new
// access token used. gen is e.gen when the grant was read.
func (m *Manager) commitSuccess(ctx context.Context, e *entry, t vault.RefreshTicket, p Provider, res *provider.TokenResult, gen uint64) (secret.AccessToken, error) {
	g := t.Grant
	reason := ""
	// The refresh token just used proves offline access, whether or not
	// the answer rotated it or lists the scope (provider.MissingScopes).
	if missing := p.MissingScopes(res.Scopes, true); len(missing) > 0 {
		reason = "scope_reduced: " + strings.Join(missing, " ")
	}
	if reason == "" && !res.IDToken.IsZero() && g.Issuer != "" {
		prev := provider.Identity{Issuer: g.Issuer, Subject: g.Subject, Audience: g.IDTokenAudience}
		if _, err := p.VerifyIDToken(ctx, res.IDToken, "", &prev); err != nil {
			reason = "id_token_changed"
			m.log.Error("ID token from a refresh does not match the grant", "grant", g.ID, "err", err)
		}
	}
	out, err := m.storeRefresh(t, vault.RefreshResult{Access: res.Access, Expiry: res.Expiry, Refresh: res.Refresh, Scopes: res.Scopes})
	if err != nil {
		// The provider rotated but we could not store it: the marker stays,
		// so the next attempt is the retry and ends the grant cleanly if the
		// provider refuses the old token.
		return secret.AccessToken{}, fmt.Errorf("renew: store the refreshed tokens: %w", err)
	}
	e.failures, e.lastErr, e.notBefore = 0, nil, time.Time{}
	if reason != "" {
		if err := m.needsReconsent(out, reason, true); err != nil {
			return secret.AccessToken{}, err
		}
		e.kill(gen)
		return secret.AccessToken{}, &vault.NeedsConsentError{GrantID: g.ID, State: vault.GrantNeedsReconsent}
	}
	e.keep(gen, m.cached(res.Access, res.Expiry, res.Lifetime))
	m.emit(Event{Kind: EventRenewed, GrantID: out.ID, UserID: out.UserID, Provider: out.Provider, RefreshCount: out.RefreshCount, Expiry: res.Expiry})
	m.log.Info("access token renewed", "grant", out.ID, "user", out.UserID, "provider", out.Provider,
		"refresh_count", out.RefreshCount, "expires", res.Expiry.UTC().Format(time.RFC3339), "no_expires_in", res.NoExpiresIn)
	return res.Access, nil
}

// commitPatience is how long storeRefresh keeps trying to commit a
// refresh's tokens; commitPause the pause after the first failure,
// doubling up to commitMaxPause.
const (
	commitPatience = 10 * time.Minute
	commitPause    = 100 * time.Millisecond
	commitMaxPause = 2 * time.Second
)

// storeRefresh commits what the provider answered (vault.DB.CommitRefresh).
// The provider has rotated the refresh token, and this process holds the
// only copy of the new one: losing the answer ends the grant at the next
// refresh (its retry presents the spent token, and X revokes the whole
// family). So a commit that failed for a reason other than the fence (the
// database restarting or unreachable, serialization retries exhausted) is
// tried again, with pauses from commitPause doubling to commitMaxPause,
// for commitPatience: a database back within that time gets the tokens.
// Meanwhile the marker stays this daemon's and its heartbeats (which
// resume with the database) keep the other daemons waiting
// (vault.DB.BeginRefresh). Only after commitPatience is the marker handed
// over (RecordRefreshFailure with KeepMarker), and whichever daemon
// refreshes next makes the one retry.
func (m *Manager) storeRefresh(t vault.RefreshTicket, r vault.RefreshResult) (vault.Grant, error) {
	pause := commitPause
	deadline := m.now().Add(commitPatience)
	for try := 1; ; try++ {
		out, err := m.db.CommitRefresh(t, r)
		if err == nil || errors.Is(err, vault.ErrConflict) || errors.Is(err, vault.ErrNotFound) {
			// Fenced off: the grant moved on (another refresh, or this one
			// committed after all and its answer was lost; a re-consent; an
			// unenroll). The next use reads what it holds now.
			if try > 1 && err == nil {
				m.log.Info("a refresh's tokens are stored after all", "grant", t.Grant.ID, "tries", try)
			}
			return out, err
		}
		if !m.now().Before(deadline) {
			if ferr := m.db.RecordRefreshFailure(t, vault.RefreshFailure{Class: "store_failed", KeepMarker: true, Actor: actor}); ferr != nil {
				m.log.Error("cannot hand a refresh's marker over either", "grant", t.Grant.ID, "err", ferr)
			}
			m.log.Error("the provider rotated a refresh token but its answer could not be stored: the next refresh is the retry with the stored token",
				"grant", t.Grant.ID, "user", t.Grant.UserID, "provider", t.Grant.Provider, "tries", try, "err", err)
			return vault.Grant{}, err
		}
		if try == 1 || try%10 == 0 {
			m.log.Warn("cannot store a refresh's tokens; trying again until the store answers", "grant", t.Grant.ID, "try", try, "err", err)
		}
		time.Sleep(pause)
		pause = min(2*pause, commitMaxPause)
	}
}

// recordFailure notes a non-terminal failure and sets the backoff. keep
// leaves the in-flight marker set: the outcome of a sent request is still
// unknown.
//
// A client failure is an operator alert each time. So is the first of a
// run of protocol failures (an answer renewal cannot act on: an HTML page,
// an empty 400, a 200 without a usable token even on the retry): retrying
// is right, since it may be a passing fault, but it must not go on
// silently, as a dead grant that does not say so in a way tagwatch knows
// would.
func (m *Manager) recordFailure(e *entry, t vault.RefreshTicket, pe *provider.Error, keep bool) error {
	g := t.Grant
	var prev *provider.Error
	alert := pe.Class == provider.ClassClient ||
		(pe.Class == provider.ClassProtocol && (!errors.As(e.lastErr, &prev) || prev.Class != provider.ClassProtocol))
	e.failures++
	d := m.backoff(e.failures)
	if pe.RetryAfter > d {
		d = pe.RetryAfter
	}
	if pe.Class == provider.ClassClient {
		d = m.cfg.MaxBackoff
	}
	now := m.now()
	e.notBefore, e.lastErr = now.Add(d), pe
	f := vault.RefreshFailure{Class: string(pe.Class), KeepMarker: keep, Actor: actor}
	switch {
	case pe.Class == provider.ClassClient:
		f.Alert = "the provider refuses tagwatch's client: " + pe.Error()
	case alert:
		f.Alert = "the provider answers refreshes with something tagwatch cannot act on: " + pe.Error()
	}
	if err := m.db.RecordRefreshFailure(t, f); err != nil {
		m.log.Error("cannot record a refresh failure", "grant", g.ID, "err", err)
	}
	switch {
	case pe.Class == provider.ClassClient:
		m.log.Error("operator action needed: the provider refuses tagwatch's client credentials", "provider", g.Provider, "grant", g.ID, "err", pe)
		m.emit(Event{Kind: EventOperatorAlert, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider, Class: pe.Class})
	case alert:
		m.log.Error("operator action needed: the provider's token endpoint answers something tagwatch cannot act on; retrying",
			"provider", g.Provider, "grant", g.ID, "retry_in", d.Round(time.Millisecond), "err", pe)
		m.emit(Event{Kind: EventOperatorAlert, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider, Class: pe.Class})
	default:
		m.log.Warn("refresh failed; will retry", "grant", g.ID, "provider", g.Provider, "class", pe.Class, "retry_in", d.Round(time.Millisecond), "err", pe)
		m.emit(Event{Kind: EventRefreshFailed, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider, Class: pe.Class})
	}
	return fmt.Errorf("renew: grant %s: %w", g.ID, pe)
}

// backoff is exponential with full jitter between half and the whole step.
func (m *Manager) backoff(failures int) time.Duration {
	d := m.cfg.MinBackoff
	for i := 1; i < failures && d < m.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.cfg.MaxBackoff)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// needsReconsent ends a grant's active life with vault.DB.MarkNeedsReconsent
// (one transaction: state, suspended watches, a fresh one-time re-consent
// link queued for the user, an audit entry). keepTokens keeps the sealed
// tokens (they still work, e.g. the scope shrank) so an unenroll can
// revoke them.
func (m *Manager) needsReconsent(g vault.Grant, reason string, keepTokens bool) error {
	out, err := m.db.MarkNeedsReconsent(g.ID, vault.Reconsent{Reason: reason, KeepTokens: keepTokens,
		LinkPrefix: strings.TrimRight(m.cfg.PublicURL, "/") + "/enroll/", LinkTTL: m.cfg.LinkTTL, Actor: actor})
	if err != nil {
		return fmt.Errorf("renew: grant %s: mark needs_reconsent: %w", g.ID, err)
	}
	if out.Changed {
		m.log.Warn("grant needs a new consent; watches suspended, re-consent link queued", "grant", g.ID, "user", g.UserID,
			"provider", g.Provider, "reason", reason, "enrollment", out.Link.ID, "notices", out.Notices)
		m.emit(Event{Kind: EventNeedsReconsent, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider, Reason: reason})
	}
	return nil
}

func (m *Manager) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = m.now()
	}
	m.cfg.Observer(ev)
}
