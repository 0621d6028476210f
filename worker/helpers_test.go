package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
	"tagwatch/worker/xsource"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var _ worker.Store = (*vault.DB)(nil)

// Every backend of the storage contract is a worker.Store.
var _ worker.Store = vault.Store(nil)

// hookTransport calls after once per search request that got an answer.
type hookTransport struct {
	mu    sync.Mutex
	after func(n int)
	n     int
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.URL.Path == string(xsandbox.EndpointSearch) {
		h.mu.Lock()
		h.n++
		n, after := h.n, h.after
		h.mu.Unlock()
		if after != nil {
			after(n)
		}
	}
	return resp, err
}

func (h *hookTransport) set(f func(n int)) {
	h.mu.Lock()
	h.after, h.n = f, 0
	h.mu.Unlock()
}

// testTargets accepts console: and mailto: targets, as a notifier with
// mail set up would.
type testTargets struct{}

func (testTargets) CheckTarget(raw string) error {
	if raw == "console:" || strings.HasPrefix(raw, "mailto:") && len(raw) > len("mailto:") {
		return nil
	}
	return fmt.Errorf("target %q: no channel delivers to it", raw)
}

// testTokens is a grant's token source in these tests: it holds the
// sandbox's tokens in memory and refreshes them through the provider as
// renewal does (a refresh when the access token is due, one forced by a
// 401). A refused refresh token marks the grant needs_reconsent in the
// vault and answers vault.ErrNeedsConsent from then on.
type testTokens struct {
	f       *fix
	grantID string

	mu      sync.Mutex
	access  secret.AccessToken
	refresh secret.RefreshToken
	expiry  time.Time
	dead    bool
}

func (s *testTokens) Token(ctx context.Context) (secret.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return secret.AccessToken{}, fmt.Errorf("grant %s: %w", s.grantID, vault.ErrNeedsConsent)
	}
	if s.f.now().Add(time.Minute).Before(s.expiry) {
		return s.access, nil
	}
	return s.refreshLocked(ctx)
}

func (s *testTokens) Invalidate(ctx context.Context, stale secret.AccessToken) (secret.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return secret.AccessToken{}, fmt.Errorf("grant %s: %w", s.grantID, vault.ErrNeedsConsent)
	}
	if !s.access.Equal(stale.Value) {
		return s.access, nil
	}
	return s.refreshLocked(ctx)
}

func (s *testTokens) refreshLocked(ctx context.Context) (secret.AccessToken, error) {
	res, err := s.f.prov.Refresh(ctx, s.refresh)
	if provider.ClassOf(err) == provider.ClassDeadGrant {
		s.dead = true
		s.f.markNeedsReconsent(s.grantID)
		return secret.AccessToken{}, fmt.Errorf("grant %s: %w", s.grantID, vault.ErrNeedsConsent)
	}
	if err != nil {
		return secret.AccessToken{}, err
	}
	s.access, s.expiry = res.Access, res.Expiry
	if !res.Refresh.IsZero() {
		s.refresh = res.Refresh
	}
	return s.access, nil
}

type fix struct {
	t      *testing.T
	clock  *xsandbox.Clock
	sb     *xsandbox.Server
	prov   *provider.Provider
	db     *vault.DB
	dbPath string
	master *seal.MasterKey
	// masterText is the master key's encoded form, for child processes.
	masterText []byte
	client     *xapi.Client
	src        *xsource.Source
	hook       *hookTransport
	wcfg       worker.Config
	w          *worker.Worker

	mu     sync.Mutex
	tokens map[string]*testTokens
	events []worker.Event
}

type fixOpts struct {
	realTime bool
	ttl      time.Duration // sandbox access-token lifetime
	xcfg     func(*xapi.Config)
	wcfg     func(*worker.Config)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rules are the watch rules of the fixture's vault: X, the test targets,
// and no floor (the tests run watches every second).
func rules(src worker.Source) worker.Rules {
	return worker.Rules{Sources: map[string]worker.Source{"x": src}, Targets: testTargets{}, MinInterval: -1}
}

func newFix(t *testing.T, o fixOpts) *fix {
	t.Helper()
	f := &fix{t: t, hook: &hookTransport{}, tokens: map[string]*testTokens{}}
	now := time.Now
	if !o.realTime {
		f.clock = xsandbox.NewClock(t0)
		now = f.clock.Now
	}
	var err error
	f.sb, err = xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s3cret-client",
		RedirectURIs: []string{"http://127.0.0.1:1/callback"}, AccessTokenTTL: o.ttl, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.sb.Close)
	f.prov, err = provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret("s3cret-client"), RedirectURL: "http://127.0.0.1:1/callback",
		AuthURL: f.sb.URL() + "/i/oauth2/authorize", TokenURL: f.sb.URL() + "/2/oauth2/token", RevokeURL: f.sb.URL() + "/2/oauth2/revoke",
		APIURL: f.sb.URL(), Now: now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	xc := xapi.Config{BaseURL: f.prov.APIURL(), HTTPClient: &http.Client{Transport: f.hook}, MaxResults: 10,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Retries: 2, Now: now}
	if o.xcfg != nil {
		o.xcfg(&xc)
	}
	f.client = xapi.New(xc)
	f.src = xsource.New(f.client)
	f.master, f.masterText = vaulttest.NewMaster(t)
	f.db = vaulttest.Open(t, vaulttest.Master(f.master), vaulttest.Now(now), vaulttest.Rules(rules(f.src)))
	f.dbPath = f.db.Path()
	f.wcfg = worker.Config{DB: f.db, Sources: map[string]worker.Source{"x": f.src}, Tokens: f.tokenSource,
		MaxPages: 5, MinInterval: -1, Now: now, Logger: quiet(),
		Observer: func(ev worker.Event) {
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
		}}
	if o.wcfg != nil {
		o.wcfg(&f.wcfg)
	}
	f.w, err = worker.New(f.wcfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fix) tokenSource(grantID string) worker.TokenSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ts := f.tokens[grantID]; ts != nil {
		return ts
	}
	return &testTokens{f: f, grantID: grantID, dead: true} // unknown grant
}

func (f *fix) now() time.Time {
	if f.clock != nil {
		return f.clock.Now()
	}
	return time.Now()
}

// addWatch adds sandbox user xid, and a vault user, grant and watch of
// spec for it as a consent link stores them (through the vault's rules;
// its access token taken as expiring at expiry; zero: in 2 h).
func (f *fix) addWatch(xid string, spec vault.WatchSpec, expiry time.Time) (watchID, grantID string) {
	f.t.Helper()
	if err := f.sb.AddUser(xsandbox.User{ID: xid, Username: "user" + xid}); err != nil {
		f.t.Fatal(err)
	}
	at, rt, err := f.sb.Grant(xid, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if expiry.IsZero() {
		expiry = f.now().Add(2 * time.Hour)
	}
	if spec.Schedule == "" {
		spec.Schedule = "@every 1m"
	}
	if len(spec.Targets) == 0 {
		spec.Targets = []string{"console:"}
	}
	res := vaulttest.Enroll(f.t, f.db, vaulttest.Enrollment{User: "u" + xid, Subject: xid, Watch: &spec,
		Refresh: rt, Access: at, AccessExpiry: expiry, Scopes: provider.XScopes})
	g := res.Grant
	f.mu.Lock()
	f.tokens[g.ID] = &testTokens{f: f, grantID: g.ID, access: secret.NewAccessToken(at), refresh: secret.NewRefreshToken(rt), expiry: expiry}
	f.mu.Unlock()
	return res.Started[0].ID, g.ID
}

// markNeedsReconsent ends a grant as renewal does when its refresh token
// is refused: needs_reconsent, its watches suspended, the user told.
func (f *fix) markNeedsReconsent(grantID string) {
	f.t.Helper()
	if _, err := f.db.MarkNeedsReconsent(grantID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: "https://tagwatch.example/enroll/",
		Actor: "test renewal"}); err != nil {
		f.t.Error(err) // not Fatal: token sources run on the worker's goroutines
	}
}

func (f *fix) post(author, text string) string {
	return f.sb.Post(xsandbox.Post{AuthorID: author, Text: text})
}

func (f *fix) cursor(watchID string) vault.Cursor {
	f.t.Helper()
	w, err := f.db.Watch(watchID)
	if err != nil {
		f.t.Fatal(err)
	}
	return w.Cursor
}

func (f *fix) watch(id string) vault.Watch {
	f.t.Helper()
	w, err := f.db.Watch(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return w.Watch
}

// queued returns how many times each post id was queued for watchID per
// target, and the number of outbox rows.
func (f *fix) queued(watchID string) (map[string]int, int) {
	f.t.Helper()
	counts := map[string]int{}
	rows := 0
	for _, n := range matchNotices(f.t, f.db, watchID) {
		rows++
		for _, p := range n.Posts {
			counts[p.ID]++
		}
	}
	return counts, rows
}

func (f *fix) run(watchID string) worker.Event {
	f.t.Helper()
	return f.w.RunWatch(context.Background(), watchID)
}

func (f *fix) mustRun(watchID string) worker.Event {
	f.t.Helper()
	ev := f.run(watchID)
	if ev.Kind != worker.EventRun {
		f.t.Fatalf("RunWatch(%s) = %s %s %v, want a run", watchID, ev.Kind, ev.Reason, ev.Err)
	}
	return ev
}

func (f *fix) searches(xid string) int {
	return f.sb.Stats().APICalls[xsandbox.EndpointSearch][xid]
}

func (f *fix) eventsOf(kind string) []worker.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []worker.Event
	for _, e := range f.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// checkExactlyOnce fails unless every id in want was queued exactly once
// and nothing else was.
func (f *fix) checkExactlyOnce(watchID string, want []string) {
	f.t.Helper()
	got, _ := f.queued(watchID)
	for _, id := range want {
		if got[id] != 1 {
			f.t.Errorf("post %s queued %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		f.t.Errorf("%d distinct posts queued, want %d", len(got), len(want))
	}
}

func tagPost(tag string, i int) string { return fmt.Sprintf("post %d about #%s", i, tag) }

var errStatic = errors.New("static token refused")

// staticToken is a TokenSource with one token (the crash test's child has
// no renewal).
type staticToken struct{ tok secret.AccessToken }

func (s staticToken) Token(context.Context) (secret.AccessToken, error) { return s.tok, nil }
func (s staticToken) Invalidate(context.Context, secret.AccessToken) (secret.AccessToken, error) {
	return secret.AccessToken{}, errStatic
}
