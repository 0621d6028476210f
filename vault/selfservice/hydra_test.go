package selfservice

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/hydratest"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/vault/webpage"
)

// hydraEnv is the page against a real Ory Hydra (provider "hydra"), whose
// client is registered with the page's callback, back-channel logout URI
// and post-logout redirect URI; user ada's grant there is alice's.
type hydraEnv struct {
	*env
	h     *hydratest.Hydra
	grant vault.ConsentResult
}

func newHydraEnv(t *testing.T, cfg Config, opts hydratest.Options, extra func(*Service, http.Handler) http.Handler) *hydraEnv {
	t.Helper()
	if opts.Subject == "" {
		opts.Subject = "alice"
	}
	h := hydratest.Start(t, opts)
	he := &hydraEnv{h: h}
	he.env = newEnv(t, cfg, func(e *env) map[string]Provider {
		c := h.CreateClient(t, hydratest.Client{ID: "tagwatch", Secret: "tagwatch-secret",
			RedirectURIs: []string{e.url + "/callback", e.url + "/account/callback"}, Scopes: []string{"openid", "offline_access"},
			BackChannelLogoutURI: e.url + "/account/backchannel-logout", PostLogoutRedirectURIs: []string{e.url + "/account/signed-out"}})
		hc := &http.Client{Transport: e.tokens, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		p, err := provider.New(context.Background(), provider.Config{Name: "hydra", Kind: provider.KindOIDC, Issuer: h.IssuerURL(),
			ClientID: c.ID, ClientSecret: secret.NewClientSecret(c.Secret), RedirectURL: e.url + "/callback", HTTPClient: hc,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]Provider{"hydra": p}
	}, extra)
	he.grant = vaulttest.Enroll(t, he.db, vaulttest.Enrollment{User: "ada", Provider: "hydra", Subject: "alice"})
	vaulttest.Enroll(t, he.db, vaulttest.Enrollment{User: "bob", Provider: "hydra", Subject: "bob-sub"})
	return he
}

// toHydra follows p, a 303 to Hydra's authorization endpoint, through
// Hydra (signing in on its login page when login) to the callback, and
// returns the callback's answer.
func (he *hydraEnv) toHydra(b *browser, p page, login bool) page {
	he.t.Helper()
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, he.h.AuthURL()+"?") {
		he.t.Fatalf("want a 303 to Hydra's authorization endpoint, got %v", p)
	}
	browse := hydratest.Browse
	if login {
		browse = hydratest.BrowseLogin
	}
	cb := browse(he.t, &http.Client{Jar: b.jar}, p.loc, he.url+Prefix+"/callback")
	return b.get(cb.String())
}

// signIn signs b in with the button, at Hydra's login page when it shows.
func (he *hydraEnv) signIn(b *browser, login bool) page {
	he.t.Helper()
	p := he.toHydra(b, b.post(he.url+Prefix+"/signin", url.Values{"provider": {"hydra"}}), login)
	if p.status != http.StatusSeeOther || p.loc != "/account/" {
		he.t.Fatalf("callback = %v, want 303 to /account/", p)
	}
	return b.follow(he.url, p)
}

func (he *hydraEnv) session(b *browser) (session, sessionState) {
	return he.svc.sessions.lookup(b.cookie(he.url, SessionCookie), he.clock.Now())
}

type prompts = map[string]int

// wantStats compares the provider's counters with want (the non-zero
// ones).
func wantStats(t *testing.T, what string, got, want hydratest.Stats) {
	t.Helper()
	for k, n := range got.Authorizations {
		if n == 0 {
			delete(got.Authorizations, k)
		}
	}
	norm := func(s *hydratest.Stats) {
		if s.Authorizations == nil {
			s.Authorizations = map[string]int{}
		}
		if s.LoginRequests == nil {
			s.LoginRequests = map[hydratest.LoginRequestKind]int{}
		}
		if s.ConsentRequests == nil {
			s.ConsentRequests = map[bool]int{}
		}
	}
	norm(&got)
	norm(&want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: Hydra's Stats() = %+v, want %+v", what, got, want)
	}
}

// TestHydraRenewal is the seed's first half against the real provider:
// an interactive sign-in; the page session expires and the next visit
// renews it with exactly one prompt=none authorization request and no
// login page; the provider's session ends and the next renewal shows the
// login page.
func TestHydraRenewal(t *testing.T) {
	t.Parallel()
	he := newHydraEnv(t, Config{}, hydratest.Options{Login: hydratest.LoginInteractive}, nil)
	b := newBrowser(t)
	expectPage(t, "first sign-in", he.signIn(b, true), http.StatusOK, "Signed in as <strong>alice</strong>")
	wantStats(t, "first sign-in", he.h.Stats(), hydratest.Stats{Authorizations: prompts{"": 1},
		LoginRequests: map[hydratest.LoginRequestKind]int{{Prompt: "", Skip: false}: 1}, LoginPagesShown: 1, LoginPagesSubmitted: 1,
		ConsentRequests: map[bool]int{false: 1}})
	sess, _ := he.session(b)
	if sess.sid == "" || sess.sid != he.h.SessionID("alice") || time.Since(sess.authTime) > time.Minute || sess.userID != "ada" {
		t.Errorf("session sid %q auth_time %v user %q, want Hydra's sid %q, now and ada", sess.sid, sess.authTime, sess.userID, he.h.SessionID("alice"))
	}
	first := b.cookie(he.url, SessionCookie)

	// Silent renewal.
	he.clock.Advance(DefaultIdleTimeout + time.Second)
	he.h.ResetStats()
	p := he.toHydra(b, b.get(he.url+Prefix+"/"), false)
	if p.status != http.StatusSeeOther || p.loc != "/account/" {
		t.Fatalf("renewal callback = %v, want 303 to /account/", p)
	}
	expectPage(t, "the page after a silent renewal", b.follow(he.url, p), http.StatusOK, "Signed in as <strong>alice</strong>")
	wantStats(t, "silent renewal", he.h.Stats(), hydratest.Stats{Authorizations: prompts{"none": 1},
		LoginRequests: map[hydratest.LoginRequestKind]int{{Prompt: "none", Skip: true}: 1}, ConsentRequests: map[bool]int{true: 1}})
	if now := b.cookie(he.url, SessionCookie); now == first {
		t.Errorf("renewal kept the session id")
	}
	renewed, _ := he.session(b)
	if renewed.sid != sess.sid || !renewed.authTime.Equal(sess.authTime) {
		t.Errorf("after the silent renewal sid %q auth_time %v, want Hydra's session kept: %q, %v", renewed.sid, renewed.authTime, sess.sid, sess.authTime)
	}

	// The provider's session ends (no back-channel logout for this one):
	// the next renewal gets login_required and shows the login page.
	he.h.EndSubjectSessions(t, "alice")
	he.clock.Advance(DefaultIdleTimeout + time.Second)
	he.h.ResetStats()
	p = he.toHydra(b, b.get(he.url+Prefix+"/"), false) // prompt=none: login_required
	if mustURL(p.loc).Query().Has("prompt") {
		t.Fatalf("callback with login_required = %v, want an interactive authorization request", p)
	}
	p = he.toHydra(b, p, true)
	expectPage(t, "the page after signing in again", b.follow(he.url, p), http.StatusOK, "Signed in as <strong>alice</strong>")
	wantStats(t, "renewal after the provider's session ended", he.h.Stats(), hydratest.Stats{Authorizations: prompts{"none": 1, "": 1},
		LoginRequests: map[hydratest.LoginRequestKind]int{{Prompt: "", Skip: false}: 1}, LoginPagesShown: 1, LoginPagesSubmitted: 1,
		ConsentRequests: map[bool]int{true: 1}})
	again, _ := he.session(b)
	if again.sid == sess.sid || again.sid != he.h.SessionID("alice") {
		t.Errorf("after signing in again sid %q, want Hydra's new one %q", again.sid, he.h.SessionID("alice"))
	}
}

// TestHydraCallbackAttacks: a replayed state, a state without its flow
// cookie, a nonce the flow did not send and an iss that is not Hydra's are
// refused; the first two and the last before any token request.
func TestHydraCallbackAttacks(t *testing.T) {
	t.Parallel()
	he := newHydraEnv(t, Config{}, hydratest.Options{}, nil)
	start := func(b *browser) string {
		p := b.post(he.url+Prefix+"/signin", url.Values{"provider": {"hydra"}})
		if p.status != http.StatusSeeOther {
			t.Fatalf("POST signin = %v", p)
		}
		return p.loc
	}
	callback := func(b *browser, auth string) string {
		return hydratest.Browse(t, &http.Client{Jar: b.jar}, auth, he.url+Prefix+"/callback").String()
	}
	cases := []struct {
		name   string
		run    func(t *testing.T) page
		status int
		text   string
		tokens int
	}{
		{"state replayed", func(t *testing.T) page {
			b := newBrowser(t)
			cb := callback(b, start(b))
			if p := b.get(cb); p.status != http.StatusSeeOther {
				t.Fatalf("first callback = %v", p)
			}
			before, _ := he.tokens.counts()
			p := b.get(cb)
			if n, _ := he.tokens.counts(); n != before {
				t.Errorf("replay made %d token requests", n-before)
			}
			return p
		}, 400, "expired or was already completed", -1},
		{"state without its flow cookie", func(t *testing.T) page {
			b := newBrowser(t)
			return newBrowser(t).get(callback(b, start(b)))
		}, 400, "started in another browser", 0},
		{"nonce changed on the way to Hydra", func(t *testing.T) page {
			b := newBrowser(t)
			u := mustURL(start(b))
			q := u.Query()
			q.Set("nonce", "injected-"+webpage.RandomString(16))
			u.RawQuery = q.Encode()
			return b.get(callback(b, u.String()))
		}, 400, "could not be verified", 1},
		{"iss of another provider", func(t *testing.T) page {
			b := newBrowser(t)
			return b.get(callback(b, start(b)) + "&iss=" + url.QueryEscape("https://idp.evil.example"))
		}, 400, "did not come from the expected provider", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			he.t = t
			before, _ := he.tokens.counts()
			p := c.run(t)
			expectPage(t, "callback", p, c.status, c.text)
			if n, _ := he.tokens.counts(); c.tokens >= 0 && n-before != c.tokens {
				t.Errorf("token requests = %d, want %d", n-before, c.tokens)
			}
		})
	}
}

// TestHydraRecentAuth: an action that needs a recent sign-in sends max_age;
// Hydra shows its login page, the new ID token's auth_time is checked, and
// the session takes the new login's sid (a back-channel logout of that sid
// then ends it).
func TestHydraRecentAuth(t *testing.T) {
	t.Parallel()
	const recent = 2 * time.Second
	he := newHydraEnv(t, Config{RecentAuth: recent}, hydratest.Options{Login: hydratest.LoginInteractive}, func(s *Service, h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.HandleFunc("GET /account/test-guarded", func(w http.ResponseWriter, r *http.Request) {
			sess, ok := s.requireSession(w, r)
			if ok && s.requireRecentAuth(w, r, sess, "/account/test-guarded") {
				io.WriteString(w, "confirm")
			}
		})
		return s.crossOriginCheck(mux)
	})
	b := newBrowser(t)
	he.signIn(b, true)
	old, _ := he.session(b)
	time.Sleep(recent + 1100*time.Millisecond)
	he.h.ResetStats()
	p := b.get(he.url + "/account/test-guarded")
	if q := mustURL(p.loc).Query(); q.Get("max_age") != "2" {
		t.Fatalf("guarded page with a stale sign-in = %v, want a request with max_age=2", p)
	}
	p = he.toHydra(b, p, true)
	if p.status != http.StatusSeeOther || p.loc != "/account/test-guarded" {
		t.Fatalf("recent sign-in callback = %v, want 303 back to the guarded page", p)
	}
	if got := b.follow(he.url, p); got.body != "confirm" {
		t.Errorf("guarded page after the recent sign-in = %v", got)
	}
	if s := he.h.Stats(); s.LoginPagesShown != 1 {
		t.Errorf("max_age exceeded: %d login pages, want 1", s.LoginPagesShown)
	}
	now, _ := he.session(b)
	if !now.authTime.After(old.authTime) || now.sid == old.sid || now.sid != he.h.SessionID("alice") {
		t.Errorf("after the recent sign-in auth_time %v sid %q, want a later auth_time than %v and Hydra's new sid %q (old %q)",
			now.authTime, now.sid, old.authTime, he.h.SessionID("alice"), old.sid)
	}
	he.h.EndSession(t, now.sid)
	waitEnded(t, he.env, b)
}

// waitEnded waits for b's session to end (a back-channel logout Hydra
// posts in the background).
func waitEnded(t *testing.T, e *env, b *browser) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for e.live(b) {
		if time.Now().After(deadline) {
			t.Fatalf("the page session did not end within 15 s of Hydra ending its session: no back-channel logout? log:\n%s", e.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHydraBackchannelLogout: Hydra's own logout token (EndSession) ends
// the page session of that sid, only it, and nothing of the user's grant
// or watches; the next visit finds no provider session and shows the
// login page.
func TestHydraBackchannelLogout(t *testing.T) {
	t.Parallel()
	he := newHydraEnv(t, Config{}, hydratest.Options{Login: hydratest.LoginInteractive}, nil)
	ada, bob := newBrowser(t), newBrowser(t)
	he.signIn(ada, true)
	he.h.SetSubject("bob-sub")
	he.signIn(bob, true)
	adaSess, _ := he.session(ada)
	bobSess, _ := he.session(bob)
	if adaSess.sid == bobSess.sid || adaSess.sid == "" {
		t.Fatalf("sids %q and %q: want two Hydra sessions", adaSess.sid, bobSess.sid)
	}
	g0, err := he.db.Grant(he.grant.Grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	w0, _ := he.db.ListWatches("ada")

	he.h.EndSession(t, adaSess.sid)
	waitEnded(t, he.env, ada)
	if !he.live(bob) {
		t.Errorf("bob's session ended with ada's logout")
	}
	// The handler logs just after it ends the sessions: wait for the line.
	logged := func() bool {
		return strings.Contains(he.logs.String(), "back-channel logout") && strings.Contains(he.logs.String(), "sessions_ended=1")
	}
	for deadline := time.Now().Add(5 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("log does not record the back-channel logout: %s", he.logs.String())
	}
	g1, _ := he.db.Grant(he.grant.Grant.ID)
	w1, _ := he.db.ListWatches("ada")
	if !reflect.DeepEqual(g0, g1) || !reflect.DeepEqual(w0, w1) {
		t.Errorf("the back-channel logout changed the grant or watches")
	}

	// The next visit: an unknown id, renewed silently, but Hydra has no
	// session: its login page.
	he.h.SetSubject("alice")
	he.h.ResetStats()
	p := he.toHydra(ada, ada.get(he.url+Prefix+"/"), false)
	expectPage(t, "the page after logging in again", he.toHydra(ada, p, true), http.StatusSeeOther, "")
	if s := he.h.Stats(); s.Authorizations["none"] != 1 || s.LoginPagesShown != 1 {
		t.Errorf("after the back-channel logout: Stats %+v, want one prompt=none and one login page", s)
	}
}

// TestHydraSignOutEverywhere: RP-initiated logout at Hydra v2.3.0 with
// client_id and logout_hint, no id_token_hint (so no token in the
// browser): the page session ends here at once; Hydra calls its logout
// app, ends its session, sends a back-channel logout token to the page,
// and ends on its own post-logout page; the next sign-in shows the login
// page. Whether the ID token is still valid makes no difference.
func TestHydraSignOutEverywhere(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		ttl  time.Duration
		wait time.Duration
	}{
		{"ID token still valid", 0, 0},
		{"ID token expired", 3 * time.Second, 4 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logoutTokens atomic.Int32
			he := newHydraEnv(t, Config{}, hydratest.Options{Login: hydratest.LoginInteractive, IDTokenTTL: c.ttl},
				func(_ *Service, h http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if r.URL.Path == Prefix+"/backchannel-logout" {
							logoutTokens.Add(1)
						}
						h.ServeHTTP(w, r)
					})
				})
			b := newBrowser(t)
			he.signIn(b, true)
			id := b.cookie(he.url, SessionCookie)
			time.Sleep(c.wait)
			he.h.ResetStats()
			p := b.post(he.url+Prefix+"/signout-everywhere", nil)
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, he.h.PublicURL()+"/oauth2/sessions/logout?") {
				t.Fatalf("POST signout-everywhere = %v, want 303 to Hydra's end session endpoint", p)
			}
			if q := mustURL(p.loc).Query(); len(q) != 2 || q.Get("client_id") != "tagwatch" || q.Get("logout_hint") != "alice" {
				t.Errorf("end session request %v, want client_id and logout_hint only", q)
			}
			if _, st := he.svc.sessions.lookup(id, he.clock.Now()); st != sessionUnknown {
				t.Errorf("page session %v before the provider was asked, want ended", st)
			}
			// Hydra's own post-logout page (urls.post_logout_redirect) is
			// the app's /signed-out.
			resp, err := (&http.Client{Jar: b.jar, Timeout: 30 * time.Second}).Get(p.loc)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/signed-out" || !strings.Contains(string(body), "You are signed out.") {
				t.Errorf("Hydra's logout ended at %s with %d, want its post-logout page:\n%s", resp.Request.URL, resp.StatusCode, body)
			}
			if s := he.h.Stats(); s.Logouts != 1 {
				t.Errorf("Hydra's logouts = %d, want 1", s.Logouts)
			}
			for deadline := time.Now().Add(10 * time.Second); logoutTokens.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if n := logoutTokens.Load(); n != 1 {
				t.Errorf("back-channel logout tokens = %d, want 1", n)
			}
			expectPage(t, "the page", b.get(he.url+Prefix+"/"), http.StatusOK, `action="/account/signin"`)
			he.h.ResetStats()
			he.signIn(b, true)
			if s := he.h.Stats(); s.LoginPagesShown != 1 {
				t.Errorf("sign-in after signing out everywhere: %d login pages, want 1", s.LoginPagesShown)
			}
		})
	}
}
