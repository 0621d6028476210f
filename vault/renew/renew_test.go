package renew_test

import (
	"context"
	"errors"
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
	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestCachedTokenMakesNoRequest(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(2 * time.Hour)}).Grant
	src := f.Manager.Source(g.ID)
	for i := 0; i < 10; i++ {
		tok, err := src.Token(context.Background())
		if err != nil || tok.IsZero() {
			t.Fatalf("Token() = %v", err)
		}
	}
	if n := f.Refreshes(); n != 0 {
		t.Errorf("refresh requests = %d, want 0 for a valid token", n)
	}
}

func TestConcurrentCallersMakeOneRefresh(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
	const n = 50
	toks := make([]secret.AccessToken, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := f.Manager.Source(g.ID).Token(context.Background())
			if err != nil {
				t.Errorf("Token() = %v", err)
			}
			toks[i] = tok
		}()
	}
	close(start)
	wg.Wait()
	if got := f.Refreshes(); got != 1 {
		t.Errorf("%d callers on an expired token made %d token requests, want 1", n, got)
	}
	for i := range toks {
		if !toks[i].Equal(toks[0].Value) {
			t.Fatalf("caller %d got a different access token", i)
		}
	}
	if code := f.UsersMe(toks[0]); code != 200 {
		t.Errorf("users/me with the renewed token = %d", code)
	}
	if gg := f.Grant(g.ID); gg.RefreshCount != 1 || !gg.RefreshInFlight.IsZero() || !gg.AccessExpiry.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("grant after refresh = count %d, in flight %v, expiry %v", gg.RefreshCount, gg.RefreshInFlight, gg.AccessExpiry)
	}
}

// TestRefreshOnlyWhenNeeded is RT-07: 24 h of a watch every 15 min with
// 2 h tokens make at most 12 refreshes.
func TestRefreshOnlyWhenNeeded(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(2 * time.Hour)}).Grant
	src := f.Manager.Source(g.ID)
	for i := 0; i < 24*4; i++ {
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatalf("Token() at %v = %v", clock.Now(), err)
		}
		if code := f.UsersMe(tok); code != 200 {
			t.Fatalf("users/me at %v = %d", clock.Now(), code)
		}
		clock.Advance(15 * time.Minute)
	}
	if n := f.Refreshes(); n > 12 || n < 11 {
		t.Errorf("24 h of use made %d refreshes, want 11 or 12", n)
	}
	if r := f.Sandbox.Stats().RefreshReuses; r != 0 {
		t.Errorf("refresh token reuses = %d, want 0", r)
	}
}

// TestDeadGrant is RT-05: one request, state change, a re-consent link for
// the user, no further attempts.
func TestDeadGrant(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	res := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)})
	g := res.Grant
	f.Sandbox.RevokeUser("2244994945")
	src := f.Manager.Source(g.ID)
	_, err := src.Token(context.Background())
	if !errors.Is(err, renew.ErrNeedsConsent) {
		t.Fatalf("Token() after revocation = %v, want renew.ErrNeedsConsent", err)
	}
	for i := 0; i < 5; i++ {
		clock.Advance(time.Hour)
		if _, err := src.Token(context.Background()); !errors.Is(err, renew.ErrNeedsConsent) {
			t.Fatalf("Token() again = %v", err)
		}
	}
	if n := f.Refreshes(); n != 1 {
		t.Errorf("token requests = %d, want exactly 1", n)
	}
	// A fresh Manager (a restart) makes no request either.
	if _, err := f.Restart().Source(g.ID).Token(context.Background()); !errors.Is(err, renew.ErrNeedsConsent) || f.Refreshes() != 1 {
		t.Errorf("after restart Token() = %v with %d requests", err, f.Refreshes())
	}
	gg := f.Grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "dead_grant" || len(gg.SealedRefresh) != 0 {
		t.Errorf("grant = state %s class %q sealed %d, want needs_reconsent dead_grant, no token", gg.State, gg.LastErrorClass, len(gg.SealedRefresh))
	}
	if w, err := f.DB.Watch(res.Started[0].ID); err != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendNeedsReconsent {
		t.Errorf("watch = %s, %v; want suspended for re-consent", w.StateText(), err)
	}
	links, err := f.DB.ListLinks(f.Now())
	if err != nil {
		t.Fatal(err)
	}
	var reconsent []vault.LinkView
	for _, l := range links {
		if l.Purpose == vault.PurposeReconsent {
			reconsent = append(reconsent, l)
		}
	}
	if len(reconsent) != 1 || reconsent[0].Expected != "2244994945" || reconsent[0].GrantID != g.ID {
		t.Errorf("re-consent links = %+v, want one bound to the subject", reconsent)
	}
	rows, err := f.DB.ListOutbox(vault.OutboxPending, 0)
	if err != nil {
		t.Fatal(err)
	}
	var notices []vault.OutboxRow
	for _, r := range rows {
		if r.Kind == vault.NoticeReconsent {
			notices = append(notices, r)
		}
	}
	if len(notices) != 1 || notices[0].Target != "console:" {
		t.Fatalf("re-consent notices = %+v, want one to console:", notices)
	}
	link, err := f.DB.OpenOutboxSecret(notices[0])
	if err != nil {
		t.Fatal(err)
	}
	if l, err := f.DB.Link(vault.HashLinkToken(strings.TrimPrefix(link.Reveal(), renewtest.PublicURL+"/enroll/"))); err != nil ||
		len(reconsent) != 1 || l.ID != reconsent[0].ID {
		t.Errorf("the queued link does not open the re-consent link: %v", err)
	}
	select {
	case ev := <-f.Events:
		if ev.Kind != renew.EventNeedsReconsent {
			t.Errorf("event = %+v", ev)
		}
	default:
		t.Error("no needs_reconsent event")
	}
}

// TestTransientFailuresBackOff is RT-06.
func TestTransientFailuresBackOff(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
	f.Sandbox.FailNext(xsandbox.EndpointToken, 2, 503)
	src := f.Manager.Source(g.ID)
	if _, err := src.Token(context.Background()); provider.ClassOf(err) != provider.ClassTransient {
		t.Fatalf("Token() with 503 = %v, want transient", err)
	}
	// Within the backoff no request is made.
	if _, err := src.Token(context.Background()); err == nil || f.Requests.Count("/2/oauth2/token") != 1 {
		t.Fatalf("Token() during backoff = %v with %d requests, want an error and 1 request", err, f.Requests.Count("/2/oauth2/token"))
	}
	if gg := f.Grant(g.ID); gg.State != vault.GrantActive || gg.LastErrorClass != "transient" || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = %s %q in flight %v, want active, transient, no marker", gg.State, gg.LastErrorClass, gg.RefreshInFlight)
	}
	clock.Advance(2 * time.Second)
	if _, err := src.Token(context.Background()); err == nil {
		t.Fatal("second 503 did not fail")
	}
	clock.Advance(5 * time.Second)
	tok, err := src.Token(context.Background())
	if err != nil || f.UsersMe(tok) != 200 {
		t.Fatalf("Token() after the outage = %v", err)
	}
	if gg := f.Grant(g.ID); gg.State != vault.GrantActive || gg.TransientErrors != 0 || gg.RefreshCount != 1 {
		t.Errorf("grant after recovery = %+v", gg)
	}
}

// TestLostResponseRetryAccepted: the token request hangs (never processed)
// and times out; the one retry with the stored token is accepted.
func TestLostResponseRetryAccepted(t *testing.T) {
	f := renewtest.New(t, renewtest.Options{Renew: func(c *renew.Config) { c.Timeout = 300 * time.Millisecond }})
	g := f.Enroll(renewtest.Enrollee{Expiry: time.Now().Add(-time.Minute)}).Grant
	f.Sandbox.HangNext(xsandbox.EndpointToken, 1)
	tok, err := f.Manager.Source(g.ID).Token(context.Background())
	if err != nil {
		t.Fatalf("Token() after a lost response = %v, want the retry to succeed", err)
	}
	if f.UsersMe(tok) != 200 {
		t.Error("renewed token refused")
	}
	st := f.Sandbox.Stats()
	if st.RefreshReuses != 0 || st.TokenRequests["refresh_token"] != 1 || f.Requests.Count("/2/oauth2/token") != 2 {
		t.Errorf("sandbox processed %d refreshes (%d sent) with %d reuses, want 1 (2 sent: the hung one and the retry) and 0",
			st.TokenRequests["refresh_token"], f.Requests.Count("/2/oauth2/token"), st.RefreshReuses)
	}
	if gg := f.Grant(g.ID); gg.LostRotations != 1 || gg.State != vault.GrantActive || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = lost %d state %s in flight %v, want 1 active none", gg.LostRotations, gg.State, gg.RefreshInFlight)
	}
}

// TestLostResponseRetryRefused: the token endpoint rotates and drops the
// connection; the retry with the old token is refused (X revokes the
// family), and the grant ends in needs_reconsent without a loop.
func TestLostResponseRetryRefused(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
	f.Sandbox.DropAfterRotateNext(1)
	_, err := f.Manager.Source(g.ID).Token(context.Background())
	if !errors.Is(err, renew.ErrNeedsConsent) {
		t.Fatalf("Token() = %v, want renew.ErrNeedsConsent", err)
	}
	for i := 0; i < 3; i++ {
		clock.Advance(time.Hour)
		f.Manager.Source(g.ID).Token(context.Background())
	}
	st := f.Sandbox.Stats()
	if st.TokenRequests["refresh_token"] != 2 || st.Drops != 1 || st.RefreshReuses != 1 {
		t.Errorf("sandbox: %d refreshes, %d drops, %d reuses; want 2, 1, 1", st.TokenRequests["refresh_token"], st.Drops, st.RefreshReuses)
	}
	gg := f.Grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "lost_rotation" || gg.LostRotations != 1 {
		t.Errorf("grant = %s %q lost %d, want needs_reconsent lost_rotation 1", gg.State, gg.LastErrorClass, gg.LostRotations)
	}
}

// TestMarkerFoundAtStart: a crash between the marker and the request; the
// next start retries once with the stored token.
func TestMarkerFoundAtStart(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)}).Grant
	// The crash: the marker committed, the request never sent.
	if _, err := f.DB.BeginRefresh(g.ID, "a process that died"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Manager.Source(g.ID).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if gg := f.Grant(g.ID); gg.LostRotations != 1 || gg.RefreshCount != 1 || !gg.RefreshInFlight.IsZero() {
		t.Errorf("grant = lost %d count %d marker %v", gg.LostRotations, gg.RefreshCount, gg.RefreshInFlight)
	}
	if f.Refreshes() != 1 || f.Sandbox.Stats().RefreshReuses != 0 {
		t.Errorf("refreshes %d reuses %d", f.Refreshes(), f.Sandbox.Stats().RefreshReuses)
	}
}

func TestClientErrorIsOperatorAlert(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock, ClientSecret: "wrong-secret"})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
	_, err := f.Manager.Source(g.ID).Token(context.Background())
	if provider.ClassOf(err) != provider.ClassClient {
		t.Fatalf("Token() with a wrong client secret = %v, want class client", err)
	}
	if gg := f.Grant(g.ID); gg.State != vault.GrantActive || gg.LastErrorClass != "client" {
		t.Errorf("grant = %s %q, want active with class client", gg.State, gg.LastErrorClass)
	}
	found := false
	for len(f.Events) > 0 {
		if ev := <-f.Events; ev.Kind == renew.EventOperatorAlert {
			found = true
		}
	}
	if !found {
		t.Error("no operator alert event")
	}
}

func TestInvalidateForcesOneRefresh(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)}).Grant
	src := f.Manager.Source(g.ID)
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
	if n := f.Refreshes(); n != 1 {
		t.Errorf("10 callers invalidating the same stale token made %d refreshes, want 1", n)
	}
}

func TestScopeReducedNeedsReconsent(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute), Scopes: []string{"tweet.read", "offline.access"}}).Grant
	if _, err := f.Manager.Source(g.ID).Token(context.Background()); !errors.Is(err, renew.ErrNeedsConsent) {
		t.Fatalf("Token() with users.read gone = %v, want renew.ErrNeedsConsent", err)
	}
	gg := f.Grant(g.ID)
	if gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != "scope_reduced: users.read" || len(gg.SealedRefresh) == 0 {
		t.Errorf("grant = %s %q sealed %d; want needs_reconsent, scope_reduced, token kept for revocation", gg.State, gg.LastErrorClass, len(gg.SealedRefresh))
	}
}

// TestUnenroll: the local part is done at once although the provider is
// down, the result says the revocation is only queued (the C15 neighbour:
// "revoked" must not be claimed), and a retry settles it.
func TestUnenroll(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	res0 := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)})
	g := res0.Grant
	f.Sandbox.FailNext(xsandbox.EndpointRevoke, 1, 503)
	res, err := f.Manager.Unenroll(context.Background(), g.ID, "operator")
	if err != nil {
		t.Fatal(err)
	}
	if want := (renew.UnenrollResult{Queued: true}); res != want {
		t.Errorf("Unenroll() with the provider down = %+v, want %+v", res, want)
	}
	// Local state is gone at once, although the provider was down.
	gg := f.Grant(g.ID)
	if gg.State != vault.GrantRevoked || len(gg.SealedRefresh) != 0 || len(gg.SealedAccess) != 0 {
		t.Fatalf("grant after unenroll = %s sealed %d/%d", gg.State, len(gg.SealedRefresh), len(gg.SealedAccess))
	}
	if w, err := f.DB.Watch(res0.Started[0].ID); err != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendRevoked {
		t.Errorf("watch after unenroll = %+v, %v; want suspended (revoked)", w.Watch, err)
	}
	if _, err := f.Manager.Source(g.ID).Token(context.Background()); !errors.Is(err, renew.ErrNeedsConsent) || !errors.Is(err, vault.ErrNeedsConsent) {
		t.Errorf("Token() after unenroll = %v, want renew.ErrNeedsConsent", err)
	}
	pending := func() int {
		due, err := f.DB.DueRevocations(clock.Now().Add(24 * time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return len(due)
	}
	if pending() != 1 || f.Sandbox.Stats().Revocations != 0 {
		t.Fatalf("pending revocations %d, provider revocations %d; want 1, 0", pending(), f.Sandbox.Stats().Revocations)
	}
	if again, err := f.Manager.Unenroll(context.Background(), g.ID, "operator"); err != nil || again != (renew.UnenrollResult{AlreadyRevoked: true}) {
		t.Errorf("second Unenroll() = %+v, %v; want AlreadyRevoked", again, err)
	}
	clock.Advance(10 * time.Minute)
	f.Manager.RetryRevocations(context.Background())
	if pending() != 0 || f.Sandbox.Stats().Revocations != 1 {
		t.Errorf("after retry: pending %d, provider revocations %d; want 0, 1", pending(), f.Sandbox.Stats().Revocations)
	}
	if _, err := f.DB.Grant(g.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("grant still stored after revocation at the provider: %v", err)
	}
	if _, err := f.Manager.Unenroll(context.Background(), "nosuch", "operator"); !errors.Is(err, vault.ErrNotFound) ||
		!strings.Contains(err.Error(), `grant "nosuch" does not exist`) {
		t.Errorf("Unenroll(nosuch) = %v, want a not-found error naming the grant", err)
	}
}

// TestUnenrollConfirmed: with the provider up, the result says the
// provider confirmed the revocation.
func TestUnenrollConfirmed(t *testing.T) {
	f := renewtest.New(t, renewtest.Options{Clock: xsandbox.NewClock(t0)})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)}).Grant
	res, err := f.Manager.Unenroll(context.Background(), g.ID, "operator")
	if want := (renew.UnenrollResult{RevokedAtProvider: true}); err != nil || res != want {
		t.Fatalf("Unenroll() = %+v, %v; want %+v", res, err, want)
	}
	if n := f.Sandbox.Stats().Revocations; n != 1 {
		t.Errorf("provider revocations = %d, want 1", n)
	}
}

// TestKillAfterRefresh is RT-01: kill -9 right after the first API call that
// followed a refresh; after a restart the next refresh uses the new token
// and the provider sees no reuse.
func TestKillAfterRefresh(t *testing.T) {
	f := renewtest.New(t, renewtest.Options{AccessTokenTTL: 90 * time.Second})
	g := f.Enroll(renewtest.Enrollee{Expiry: time.Now().Add(-time.Minute)}).Grant
	keyFile := filepath.Join(t.TempDir(), "master.key")
	f.DB.Close()
	// The helper process needs the same master key: rotate the vault to one
	// we can write down.
	m2, enc, _ := seal.NewMasterKey()
	db, err := vault.Open(vault.Options{Path: f.DB.Path(), Master: f.Master})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RotateMaster(m2, "test"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.WriteFile(keyFile, enc, 0o600)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRefreshThenDie$")
	cmd.Env = append(os.Environ(), "TAGWATCH_HELPER=refresh-then-die", "TAGWATCH_DB="+f.DB.Path(), "TAGWATCH_KEY="+keyFile,
		"TAGWATCH_SANDBOX="+f.Sandbox.URL(), "TAGWATCH_GRANT="+g.ID)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
	}
	if n := f.Refreshes(); n != 1 {
		t.Fatalf("helper made %d refreshes, want 1\n%s", n, out)
	}
	// Restart: a new vault handle (checked after the test) and Manager;
	// force the next refresh.
	db = vaulttest.Open(t, vaulttest.Path(f.DB.Path()), vaulttest.Master(m2))
	mgr := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": f.Provider}})
	src := mgr.Source(g.ID)
	cur, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.Refreshes() != 1 {
		t.Fatalf("the stored access token was not reused after restart: %d refreshes", f.Refreshes())
	}
	next, err := src.Invalidate(context.Background(), cur)
	if err != nil {
		t.Fatalf("refresh after restart = %v", err)
	}
	if f.UsersMe(next) != 200 {
		t.Error("token from the refresh after restart is refused")
	}
	if st := f.Sandbox.Stats(); st.RefreshReuses != 0 || st.TokenRequests["refresh_token"] != 2 {
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
	mgr := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": p}})
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

// TestSetProviders: a provider with a wrong client secret backs a grant
// off; setting the same provider again changes nothing, replacing it with
// a fixed one refreshes at once with the new secret; a cached token
// survives a replacement without a request; a removed provider fails
// refreshes clearly while the cached token is still served.
func TestSetProviders(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock, ClientSecret: "wrong-secret"})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
	src := f.Manager.Source(g.ID)
	ctx := context.Background()
	if _, err := src.Token(ctx); provider.ClassOf(err) != provider.ClassClient {
		t.Fatalf("Token() with a wrong client secret = %v, want class client", err)
	}
	tokenPath := "/2/oauth2/token"
	sent := f.Requests.Count(tokenPath)

	// The same provider again: the backoff holds, no request.
	f.Manager.SetProviders(map[string]renew.Provider{"x": f.Provider})
	if _, err := src.Token(ctx); err == nil || !strings.Contains(err.Error(), "backing off") {
		t.Errorf("Token() after setting the same provider = %v, want the backoff", err)
	}
	if n := f.Requests.Count(tokenPath); n != sent {
		t.Errorf("token requests after setting the same provider = %d, want %d", n, sent)
	}

	// The fixed provider: the backoff is over, the refresh uses it.
	f.Manager.SetProviders(map[string]renew.Provider{"x": f.NewProvider("s3cret-client")})
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("Token() after the provider was fixed = %v, want a token", err)
	}
	if n := f.Requests.Count(tokenPath); n != sent+1 {
		t.Errorf("token requests after the fix = %d, want %d", n, sent+1)
	}

	// Another replacement: the cached token is still served, no request.
	f.Manager.SetProviders(map[string]renew.Provider{"x": f.NewProvider("s3cret-client")})
	if got, err := src.Token(ctx); err != nil || !got.Equal(tok.Value) {
		t.Errorf("Token() after a replacement = %v, same %v; want the cached token", err, got.Equal(tok.Value))
	}
	if n := f.Requests.Count(tokenPath); n != sent+1 {
		t.Errorf("token requests after a replacement = %d, want %d (the cached token)", n, sent+1)
	}

	// Removed: the cached token is served; a forced refresh fails clearly.
	f.Manager.SetProviders(nil)
	if got, err := src.Token(ctx); err != nil || !got.Equal(tok.Value) {
		t.Errorf("Token() with the provider removed = %v; want the cached token", err)
	}
	if _, err := src.Invalidate(ctx, tok); err == nil || !strings.Contains(err.Error(), `provider "x" is not configured`) {
		t.Errorf("Invalidate() with the provider removed = %v, want not configured", err)
	}
	if n := f.Requests.Count(tokenPath); n != sent+1 {
		t.Errorf("token requests with the provider removed = %d, want %d", n, sent+1)
	}
}

// TestSetProvidersConcurrent races SetProviders with token callers (run
// with -race).
func TestSetProvidersConcurrent(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)}).Grant
	src := f.Manager.Source(g.ID)
	other := f.NewProvider("s3cret-client")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			p := renew.Provider(f.Provider)
			if i%2 == 0 {
				p = other
			}
			f.Manager.SetProviders(map[string]renew.Provider{"x": p})
		}
	}()
	for range 200 {
		if _, err := src.Token(context.Background()); err != nil {
			t.Fatalf("Token() = %v", err)
		}
	}
	<-done
}
