package renew

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// countingTransport counts requests by path.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

// xfix is a vault, an X sandbox and a Manager wired together.
type xfix struct {
	t        *testing.T
	clock    *xsandbox.Clock
	sb       *xsandbox.Server
	db       *vault.DB
	dbPath   string
	master   *seal.MasterKey
	prov     *provider.Provider
	mgr      *Manager
	events   chan Event
	requests *countingTransport
}

type xopts struct {
	clock  *xsandbox.Clock // nil: real time
	ttl    time.Duration
	secret string // client secret the provider uses; default the right one
	cfg    func(*Config)
}

func newX(t *testing.T, o xopts) *xfix {
	t.Helper()
	now := time.Now
	if o.clock != nil {
		now = o.clock.Now
	}
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s3cret-client",
		RedirectURIs: []string{"http://127.0.0.1:1/callback"}, AccessTokenTTL: o.ttl, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	sb.SetReuseRevokesFamily(true)
	if err := sb.AddUser(xsandbox.User{ID: "2244994945", Username: "XDevelopers", Name: "X Dev"}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &xfix{t: t, clock: o.clock, sb: sb, events: make(chan Event, 1000), requests: &countingTransport{}}
	sec := o.secret
	if sec == "" {
		sec = "s3cret-client"
	}
	f.prov, err = provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret(sec), RedirectURL: "http://127.0.0.1:1/callback",
		AuthURL: sb.URL() + "/i/oauth2/authorize", TokenURL: sb.URL() + "/2/oauth2/token", RevokeURL: sb.URL() + "/2/oauth2/revoke",
		APIURL: sb.URL(), Now: now, HTTPClient: &http.Client{Transport: f.requests}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.dbPath = filepath.Join(t.TempDir(), "tagwatch.db")
	f.master, _, _ = seal.NewMasterKey()
	f.db, err = vault.Open(vault.Options{Path: f.dbPath, Master: f.master, Create: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.Close() })
	cfg := Config{DB: f.db, Providers: map[string]Provider{"x": f.prov}, PublicURL: "http://127.0.0.1:8080", Now: now, Logger: quiet,
		MinBackoff: time.Second, MaxBackoff: time.Minute,
		Observer: func(ev Event) {
			select {
			case f.events <- ev:
			default:
			}
		}}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	f.mgr = New(cfg)
	return f
}

// enroll stores a grant for the sandbox user with tokens minted by the
// sandbox, its access token expiring at expiry (past: expired).
func (f *xfix) enroll(expiry time.Time, scopes []string) vault.Grant {
	f.t.Helper()
	at, rt, err := f.sb.Grant("2244994945", scopes)
	if err != nil {
		f.t.Fatal(err)
	}
	g := vault.Grant{ID: vault.NewID(), UserID: "u1", Provider: "x", Subject: "2244994945", Username: "XDevelopers",
		Scopes: provider.XScopes, State: vault.GrantActive, AccessExpiry: expiry}
	err = f.db.Update(func(tx *vault.Tx) error {
		if err := tx.PutUser(vault.User{ID: "u1"}); err != nil {
			return err
		}
		if err := tx.SealTokens(&g, vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken(at)}); err != nil {
			return err
		}
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		return tx.PutWatch(vault.Watch{ID: "w1", UserID: "u1", Provider: "x", State: vault.WatchActive,
			WatchSpec: vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 15m", Targets: []string{"console:"}}})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return g
}

func (f *xfix) refreshes() int { return f.sb.Stats().TokenRequests["refresh_token"] }

func (f *xfix) grant(id string) vault.Grant {
	f.t.Helper()
	var g vault.Grant
	if err := f.db.View(func(tx *vault.Tx) error { var err error; g, err = tx.Grant(id); return err }); err != nil {
		f.t.Fatal(err)
	}
	return g
}

// usersMe makes an API call with tok, as a job would.
func (f *xfix) usersMe(tok secret.AccessToken) int {
	req, _ := http.NewRequest("GET", f.sb.URL()+"/2/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCachedTokenMakesNoRequest(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(2*time.Hour), nil)
	src := f.mgr.Source(g.ID)
	for i := 0; i < 10; i++ {
		tok, err := src.Token(context.Background())
		if err != nil || tok.IsZero() {
			t.Fatalf("Token() = %v", err)
		}
	}
	if n := f.refreshes(); n != 0 {
		t.Errorf("refresh requests = %d, want 0 for a valid token", n)
	}
}

func TestConcurrentCallersMakeOneRefresh(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(-time.Minute), nil)
	const n = 50
	toks := make([]secret.AccessToken, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := f.mgr.Source(g.ID).Token(context.Background())
			if err != nil {
				t.Errorf("Token() = %v", err)
			}
			toks[i] = tok
		}()
	}
	close(start)
	wg.Wait()
	if got := f.refreshes(); got != 1 {
		t.Errorf("%d callers on an expired token made %d token requests, want 1", n, got)
	}
	for i := range toks {
		if !toks[i].Equal(toks[0].Value) {
			t.Fatalf("caller %d got a different access token", i)
		}
	}
	if code := f.usersMe(toks[0]); code != 200 {
		t.Errorf("users/me with the renewed token = %d", code)
	}
	if gg := f.grant(g.ID); gg.RefreshCount != 1 || !gg.RefreshInFlight.IsZero() || !gg.AccessExpiry.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("grant after refresh = count %d, in flight %v, expiry %v", gg.RefreshCount, gg.RefreshInFlight, gg.AccessExpiry)
	}
}

// TestRefreshOnlyWhenNeeded is RT-07: 24 h of a watch every 15 min with
// 2 h tokens make at most 12 refreshes.
func TestRefreshOnlyWhenNeeded(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(2*time.Hour), nil)
	src := f.mgr.Source(g.ID)
	for i := 0; i < 24*4; i++ {
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatalf("Token() at %v = %v", clock.Now(), err)
		}
		if code := f.usersMe(tok); code != 200 {
			t.Fatalf("users/me at %v = %d", clock.Now(), code)
		}
		clock.Advance(15 * time.Minute)
	}
	if n := f.refreshes(); n > 12 || n < 11 {
		t.Errorf("24 h of use made %d refreshes, want 11 or 12", n)
	}
	if r := f.sb.Stats().RefreshReuses; r != 0 {
		t.Errorf("refresh token reuses = %d, want 0", r)
	}
}

// TestDeadGrant is RT-05: one request, state change, a re-consent link for
// the user, no further attempts.
func TestDeadGrant(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(-time.Minute), nil)
	f.sb.RevokeUser("2244994945")
	src := f.mgr.Source(g.ID)
	_, err := src.Token(context.Background())
	if !errors.Is(err, ErrNeedsConsent) {
		t.Fatalf("Token() after revocation = %v, want ErrNeedsConsent", err)
	}
	for i := 0; i < 5; i++ {
		clock.Advance(time.Hour)
		if _, err := src.Token(context.Background()); !errors.Is(err, ErrNeedsConsent) {
			t.Fatalf("Token() again = %v", err)
		}
	}
	if n := f.refreshes(); n != 1 {
		t.Errorf("token requests = %d, want exactly 1", n)
	}
	// A fresh Manager (a restart) makes no request either.
	if _, err := New(f.mgr.cfg).Source(g.ID).Token(context.Background()); !errors.Is(err, ErrNeedsConsent) || f.refreshes() != 1 {
		t.Errorf("after restart Token() = %v with %d requests", err, f.refreshes())
	}
	gg := f.grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "dead_grant" || len(gg.SealedRefresh) != 0 {
		t.Errorf("grant = state %s class %q sealed %d, want needs_reconsent dead_grant, no token", gg.State, gg.LastErrorClass, len(gg.SealedRefresh))
	}
	f.db.View(func(tx *vault.Tx) error {
		w, _ := tx.Watch("w1")
		if w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendNeedsReconsent {
			t.Errorf("watch = %s %q, want suspended for re-consent", w.State, w.SuspendReason)
		}
		var links []vault.Enrollment
		tx.Enrollments(func(e vault.Enrollment) error { links = append(links, e); return nil })
		if len(links) != 1 || links[0].Purpose != vault.PurposeReconsent || links[0].Expected != "2244994945" || links[0].GrantID != g.ID {
			t.Errorf("enrollments = %+v, want one re-consent link bound to the subject", links)
		}
		var rows []vault.OutboxRow
		tx.Outbox(func(r vault.OutboxRow) error { rows = append(rows, r); return nil })
		if len(rows) != 1 || rows[0].Kind != vault.NoticeReconsent || rows[0].Target != "console:" {
			t.Fatalf("outbox = %+v, want one reconsent notice", rows)
		}
		link, err := tx.OpenOutboxSecret(rows[0])
		if err != nil || len(links) == 1 && vault.HashLinkToken(link.Reveal()[len("http://127.0.0.1:8080/enroll/"):]) != links[0].Hash {
			t.Errorf("the queued link does not open the re-consent enrollment: %v", err)
		}
		return nil
	})
	select {
	case ev := <-f.events:
		if ev.Kind != EventNeedsReconsent {
			t.Errorf("event = %+v", ev)
		}
	default:
		t.Error("no needs_reconsent event")
	}
}

// TestTransientFailuresBackOff is RT-06.
func TestTransientFailuresBackOff(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(-time.Minute), nil)
	f.sb.FailNext(xsandbox.EndpointToken, 2, 503)
	src := f.mgr.Source(g.ID)
	if _, err := src.Token(context.Background()); provider.ClassOf(err) != provider.ClassTransient {
		t.Fatalf("Token() with 503 = %v, want transient", err)
	}
	// Within the backoff no request is made.
	if _, err := src.Token(context.Background()); err == nil || f.requests.count("/2/oauth2/token") != 1 {
		t.Fatalf("Token() during backoff = %v with %d requests, want an error and 1 request", err, f.requests.count("/2/oauth2/token"))
	}
	if gg := f.grant(g.ID); gg.State != vault.GrantActive || gg.LastErrorClass != "transient" || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = %s %q in flight %v, want active, transient, no marker", gg.State, gg.LastErrorClass, gg.RefreshInFlight)
	}
	clock.Advance(2 * time.Second)
	if _, err := src.Token(context.Background()); err == nil {
		t.Fatal("second 503 did not fail")
	}
	clock.Advance(5 * time.Second)
	tok, err := src.Token(context.Background())
	if err != nil || f.usersMe(tok) != 200 {
		t.Fatalf("Token() after the outage = %v", err)
	}
	if gg := f.grant(g.ID); gg.State != vault.GrantActive || gg.TransientErrors != 0 || gg.RefreshCount != 1 {
		t.Errorf("grant after recovery = %+v", gg)
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	m := New(Config{MinBackoff: time.Second, MaxBackoff: time.Minute})
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := m.backoff(n)
			if d < want/2 || d > want {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took only %d distinct values: no jitter", n, len(seen))
		}
	}
}

// TestLostResponseRetryAccepted: the token request hangs (never processed)
// and times out; the one retry with the stored token is accepted.
func TestLostResponseRetryAccepted(t *testing.T) {
	f := newX(t, xopts{cfg: func(c *Config) { c.Timeout = 300 * time.Millisecond }})
	g := f.enroll(time.Now().Add(-time.Minute), nil)
	f.sb.HangNext(xsandbox.EndpointToken, 1)
	tok, err := f.mgr.Source(g.ID).Token(context.Background())
	if err != nil {
		t.Fatalf("Token() after a lost response = %v, want the retry to succeed", err)
	}
	if f.usersMe(tok) != 200 {
		t.Error("renewed token refused")
	}
	st := f.sb.Stats()
	if st.RefreshReuses != 0 || st.TokenRequests["refresh_token"] != 1 || f.requests.count("/2/oauth2/token") != 2 {
		t.Errorf("sandbox processed %d refreshes (%d sent) with %d reuses, want 1 (2 sent: the hung one and the retry) and 0",
			st.TokenRequests["refresh_token"], f.requests.count("/2/oauth2/token"), st.RefreshReuses)
	}
	if gg := f.grant(g.ID); gg.LostRotations != 1 || gg.State != vault.GrantActive || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = lost %d state %s in flight %v, want 1 active none", gg.LostRotations, gg.State, gg.RefreshInFlight)
	}
}

// TestLostResponseRetryRefused: the token endpoint rotates and drops the
// connection; the retry with the old token is refused (X revokes the
// family), and the grant ends in needs_reconsent without a loop.
func TestLostResponseRetryRefused(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(-time.Minute), nil)
	f.sb.DropAfterRotateNext(1)
	_, err := f.mgr.Source(g.ID).Token(context.Background())
	if !errors.Is(err, ErrNeedsConsent) {
		t.Fatalf("Token() = %v, want ErrNeedsConsent", err)
	}
	for i := 0; i < 3; i++ {
		clock.Advance(time.Hour)
		f.mgr.Source(g.ID).Token(context.Background())
	}
	st := f.sb.Stats()
	if st.TokenRequests["refresh_token"] != 2 || st.Drops != 1 || st.RefreshReuses != 1 {
		t.Errorf("sandbox: %d refreshes, %d drops, %d reuses; want 2, 1, 1", st.TokenRequests["refresh_token"], st.Drops, st.RefreshReuses)
	}
	gg := f.grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "lost_rotation" || gg.LostRotations != 1 {
		t.Errorf("grant = %s %q lost %d, want needs_reconsent lost_rotation 1", gg.State, gg.LastErrorClass, gg.LostRotations)
	}
}

// TestMarkerFoundAtStart: a crash between the marker and the request; the
// next start retries once with the stored token.
func TestMarkerFoundAtStart(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(time.Hour), nil)
	// The crash: the marker committed, the request never sent.
	if _, err := f.db.BeginRefresh(g.ID, "a process that died"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.mgr.Source(g.ID).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if gg := f.grant(g.ID); gg.LostRotations != 1 || gg.RefreshCount != 1 || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = lost %d count %d marker %v", gg.LostRotations, gg.RefreshCount, gg.RefreshInFlight)
	}
	if f.refreshes() != 1 || f.sb.Stats().RefreshReuses != 0 {
		t.Errorf("refreshes %d reuses %d", f.refreshes(), f.sb.Stats().RefreshReuses)
	}
}

func TestClientErrorIsOperatorAlert(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock, secret: "wrong-secret"})
	g := f.enroll(t0.Add(-time.Minute), nil)
	_, err := f.mgr.Source(g.ID).Token(context.Background())
	if provider.ClassOf(err) != provider.ClassClient {
		t.Fatalf("Token() with a wrong client secret = %v, want class client", err)
	}
	if gg := f.grant(g.ID); gg.State != vault.GrantActive || gg.LastErrorClass != "client" {
		t.Errorf("grant = %s %q, want active with class client", gg.State, gg.LastErrorClass)
	}
	found := false
	for len(f.events) > 0 {
		if ev := <-f.events; ev.Kind == EventOperatorAlert {
			found = true
		}
	}
	if !found {
		t.Error("no operator alert event")
	}
}

func TestInvalidateForcesOneRefresh(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(time.Hour), nil)
	src := f.mgr.Source(g.ID)
	stale, _ := src.Token(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := src.Invalidate(context.Background(), stale); err != nil || tok.Equal(stale.Value) {
				t.Errorf("Invalidate() = %v, same token %v", err, tok.Equal(stale.Value))
			}
		}()
	}
	wg.Wait()
	if n := f.refreshes(); n != 1 {
		t.Errorf("10 callers invalidating the same stale token made %d refreshes, want 1", n)
	}
}

func TestScopeReducedNeedsReconsent(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(-time.Minute), []string{"tweet.read", "offline.access"})
	if _, err := f.mgr.Source(g.ID).Token(context.Background()); !errors.Is(err, ErrNeedsConsent) {
		t.Fatalf("Token() with users.read gone = %v, want ErrNeedsConsent", err)
	}
	gg := f.grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "scope_reduced: users.read" || len(gg.SealedRefresh) == 0 {
		t.Errorf("grant = %s %q sealed %d; want needs_reconsent, scope_reduced, token kept for revocation", gg.State, gg.LastErrorClass, len(gg.SealedRefresh))
	}
}

// TestUnenroll: the local part is done at once although the provider is
// down, the result says the revocation is only queued (the C15 neighbour:
// "revoked" must not be claimed), and a retry settles it.
func TestUnenroll(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(time.Hour), nil)
	f.sb.FailNext(xsandbox.EndpointRevoke, 1, 503)
	res, err := f.mgr.Unenroll(context.Background(), g.ID, "operator")
	if err != nil {
		t.Fatal(err)
	}
	if want := (UnenrollResult{Queued: true}); res != want {
		t.Errorf("Unenroll() with the provider down = %+v, want %+v", res, want)
	}
	// Local state is gone at once, although the provider was down.
	gg := f.grant(g.ID)
	if gg.State != vault.GrantRevoked || len(gg.SealedRefresh) != 0 || len(gg.SealedAccess) != 0 {
		t.Fatalf("grant after unenroll = %s sealed %d/%d", gg.State, len(gg.SealedRefresh), len(gg.SealedAccess))
	}
	if w, err := f.db.Watch("w1"); err != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendRevoked {
		t.Errorf("watch after unenroll = %+v, %v; want suspended (revoked)", w.Watch, err)
	}
	if _, err := f.mgr.Source(g.ID).Token(context.Background()); !errors.Is(err, ErrNeedsConsent) || !errors.Is(err, vault.ErrNeedsConsent) {
		t.Errorf("Token() after unenroll = %v, want ErrNeedsConsent", err)
	}
	pending := func() int {
		due, err := f.db.DueRevocations(clock.Now().Add(24 * time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return len(due)
	}
	if pending() != 1 || f.sb.Stats().Revocations != 0 {
		t.Fatalf("pending revocations %d, provider revocations %d; want 1, 0", pending(), f.sb.Stats().Revocations)
	}
	if again, err := f.mgr.Unenroll(context.Background(), g.ID, "operator"); err != nil || again != (UnenrollResult{AlreadyRevoked: true}) {
		t.Errorf("second Unenroll() = %+v, %v; want AlreadyRevoked", again, err)
	}
	clock.Advance(10 * time.Minute)
	f.mgr.RetryRevocations(context.Background())
	if pending() != 0 || f.sb.Stats().Revocations != 1 {
		t.Errorf("after retry: pending %d, provider revocations %d; want 0, 1", pending(), f.sb.Stats().Revocations)
	}
	if _, err := f.db.Grant(g.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("grant still stored after revocation at the provider: %v", err)
	}
	if _, err := f.mgr.Unenroll(context.Background(), "nosuch", "operator"); !errors.Is(err, vault.ErrNotFound) ||
		!strings.Contains(err.Error(), `grant "nosuch" does not exist`) {
		t.Errorf("Unenroll(nosuch) = %v, want a not-found error naming the grant", err)
	}
}

// TestUnenrollConfirmed: with the provider up, the result says the
// provider confirmed the revocation.
func TestUnenrollConfirmed(t *testing.T) {
	f := newX(t, xopts{clock: xsandbox.NewClock(t0)})
	g := f.enroll(t0.Add(time.Hour), nil)
	res, err := f.mgr.Unenroll(context.Background(), g.ID, "operator")
	if want := (UnenrollResult{RevokedAtProvider: true}); err != nil || res != want {
		t.Fatalf("Unenroll() = %+v, %v; want %+v", res, err, want)
	}
	if n := f.sb.Stats().Revocations; n != 1 {
		t.Errorf("provider revocations = %d, want 1", n)
	}
}

// TestKillAfterRefresh is RT-01: kill -9 right after the first API call that
// followed a refresh; after a restart the next refresh uses the new token
// and the provider sees no reuse.
func TestKillAfterRefresh(t *testing.T) {
	f := newX(t, xopts{ttl: 90 * time.Second})
	g := f.enroll(time.Now().Add(-time.Minute), nil)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	f.db.Close()
	// The helper process needs the same master key: rotate the vault to one
	// we can write down.
	m2, enc, _ := seal.NewMasterKey()
	db, err := vault.Open(vault.Options{Path: f.dbPath, Master: f.master})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RotateMaster(m2, "test"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.WriteFile(keyFile, enc, 0o600)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRefreshThenDie$")
	cmd.Env = append(os.Environ(), "TAGWATCH_HELPER=refresh-then-die", "TAGWATCH_DB="+f.dbPath, "TAGWATCH_KEY="+keyFile,
		"TAGWATCH_SANDBOX="+f.sb.URL(), "TAGWATCH_GRANT="+g.ID)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
	}
	if n := f.refreshes(); n != 1 {
		t.Fatalf("helper made %d refreshes, want 1\n%s", n, out)
	}
	// Restart: a new vault handle and Manager; force the next refresh.
	db, err = vault.Open(vault.Options{Path: f.dbPath, Master: m2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mgr := New(Config{DB: db, Providers: map[string]Provider{"x": f.prov}})
	src := mgr.Source(g.ID)
	cur, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.refreshes() != 1 {
		t.Fatalf("the stored access token was not reused after restart: %d refreshes", f.refreshes())
	}
	next, err := src.Invalidate(context.Background(), cur)
	if err != nil {
		t.Fatalf("refresh after restart = %v", err)
	}
	if f.usersMe(next) != 200 {
		t.Error("token from the refresh after restart is refused")
	}
	if st := f.sb.Stats(); st.RefreshReuses != 0 || st.TokenRequests["refresh_token"] != 2 {
		t.Errorf("sandbox: %d refreshes, %d reuses; want 2 and 0", st.TokenRequests["refresh_token"], st.RefreshReuses)
	}
}

func TestHelperRefreshThenDie(t *testing.T) {
	if os.Getenv("TAGWATCH_HELPER") != "refresh-then-die" {
		return // only meaningful as a subprocess of TestKillAfterRefresh
	}
	master, err := seal.LoadMasterKey(seal.Source{File: os.Getenv("TAGWATCH_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	db, err := vault.Open(vault.Options{Path: os.Getenv("TAGWATCH_DB"), Master: master})
	if err != nil {
		t.Fatal(err)
	}
	base := os.Getenv("TAGWATCH_SANDBOX")
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret("s3cret-client"), RedirectURL: "http://127.0.0.1:1/callback",
		TokenURL: base + "/2/oauth2/token", RevokeURL: base + "/2/oauth2/revoke", APIURL: base})
	if err != nil {
		t.Fatal(err)
	}
	mgr := New(Config{DB: db, Providers: map[string]Provider{"x": p}})
	tok, err := mgr.Source(os.Getenv("TAGWATCH_GRANT")).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", base+"/2/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API call after refresh: %v", err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
