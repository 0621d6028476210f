package selfservice

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/vault/webpage"
	"tagwatch/worker/xapi/xsandbox"
)

// toCallback starts a sign-in at "corp" and returns the callback URL the
// provider redirects to, without requesting it.
func (e *env) toCallback(b *browser) string {
	e.t.Helper()
	p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
	if p.status != http.StatusSeeOther {
		e.t.Fatalf("POST signin = %v, want 303", p)
	}
	p = b.follow(e.url, p)
	if p.status != http.StatusFound || !strings.HasPrefix(p.loc, e.url+Prefix+"/callback?") {
		e.t.Fatalf("authorize = %v, want a redirect to the callback", p)
	}
	return p.loc
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, true)
	b := newBrowser(t)

	start := b.get(e.url + Prefix + "/")
	expectPage(t, "GET /account/ without a session", start, http.StatusOK, `action="/account/signin"`)
	if !strings.Contains(start.body, `name="provider" value="corp"`) || !strings.Contains(start.body, "Sign in with corp") {
		t.Errorf("sign-in page has no button for corp: %s", start.body)
	}

	p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") {
		t.Fatalf("POST signin = %v, want 303 to the authorization endpoint", p)
	}
	au, _ := url.Parse(p.loc)
	q := au.Query()
	for k, want := range map[string]string{"response_type": "code", "scope": "openid", "code_challenge_method": "S256",
		"client_id": testClientID, "redirect_uri": e.url + "/account/callback", "prompt": "", "max_age": ""} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	if len(q.Get("state")) < 43 || len(q.Get("nonce")) < 43 || len(q.Get("code_challenge")) != 43 {
		t.Errorf("authorization request state %q nonce %q code_challenge %q: want 32 random bytes each", q.Get("state"), q.Get("nonce"), q.Get("code_challenge"))
	}
	cb := b.follow(e.url, p)
	done := b.follow(e.url, cb)
	if done.status != http.StatusSeeOther || done.loc != "/account/" {
		t.Fatalf("callback = %v, want 303 to /account/", done)
	}
	home := b.follow(e.url, done)
	expectPage(t, "the page after sign-in", home, http.StatusOK, "Signed in as <strong>alice</strong>")
	if n, _ := e.tokens.counts(); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
	sid := b.cookie(e.url, SessionCookie)
	if !webpage.WellFormed(sid) {
		t.Errorf("session cookie %q, want 32 random bytes", sid)
	}
	op.mu.Lock()
	idt := op.idTokens[0]
	op.mu.Unlock()
	for what, text := range map[string]string{"the page": home.body, "the callback's answer": fmt.Sprint(done.header),
		"the log": e.logs.String(), "the cookies": fmt.Sprint(b.jar.Cookies(mustURL(e.url)))} {
		noSecretsIn(t, what, text, idt, strings.Split(idt, ".")[2], mustURL(cb.loc).Query().Get("code"))
	}

	// The session is server side; the page keeps it.
	expectPage(t, "the page again", b.get(e.url+Prefix+"/"), http.StatusOK, "Signed in as")

	// Sign out here: the cookie goes, the session ends.
	out := b.post(e.url+Prefix+"/signout", nil)
	if out.status != http.StatusSeeOther || out.loc != "/account/signed-out" {
		t.Fatalf("POST signout = %v, want 303 to /account/signed-out", out)
	}
	expectPage(t, "signed-out page", b.follow(e.url, out), http.StatusOK, "You are signed out of your tagwatch page")
	expectPage(t, "the page after sign-out", b.get(e.url+Prefix+"/"), http.StatusOK, `action="/account/signin"`)
	// The old id is dead even if the browser kept it.
	if _, st := e.svc.sessions.lookup(sid, e.clock.Now()); st != sessionUnknown {
		t.Errorf("the signed-out session's id is %v, want unknown", st)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestCallbackRefusals: each way a callback can be wrong is refused with
// its page, and before the code is redeemed when the fault is visible
// before (the provider then sees no token request).
func TestCallbackRefusals(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, true)
	edit := func(k string, v any) func() {
		return func() { op.set(func(op *fakeOP) { op.edit = func(c map[string]any) { c[k] = v } }) }
	}
	with := func(k, v string) func(string) string {
		return func(cb string) string {
			u := mustURL(cb)
			q := u.Query()
			q.Set(k, v)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	without := func(k string) func(string) string {
		return func(cb string) string {
			u := mustURL(cb)
			q := u.Query()
			q.Del(k)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	cases := []struct {
		name   string
		setup  func()
		cb     func(string) string
		status int
		text   string
		tokens int
	}{
		{"iss missing, advertised", nil, without("iss"), 400, "did not come from the expected provider", 0},
		{"iss of another provider", nil, with("iss", "https://idp.evil.example"), 400, "did not come from the expected provider", 0},
		{"iss with a trailing slash", nil, func(cb string) string { return with("iss", op.srv.URL+"/")(cb) }, 400, "did not come from the expected provider", 0},
		{"state repeated", nil, func(cb string) string { return cb + "&state=x" }, 400, "incomplete", 0},
		{"no state", nil, without("state"), 400, "incomplete", 0},
		{"unknown state", nil, with("state", strings.Repeat("A", 43)), 400, "expired or was already completed", 0},
		{"no code", nil, without("code"), 400, "incomplete", 0},
		{"error access_denied", nil, func(cb string) string { return without("code")(with("error", "access_denied")(cb)) }, 403, "You did not sign in", 0},
		{"error server_error", nil, func(cb string) string { return without("code")(with("error", "server_error")(cb)) }, 400, "could not complete the sign-in", 0},
		{"login_required without prompt=none", nil, func(cb string) string { return without("code")(with("error", "login_required")(cb)) }, 400, "could not complete the sign-in", 0},
		{"nonce of another sign-in", edit("nonce", "another-nonce"), nil, 400, "could not be verified", 1},
		{"no nonce", edit("nonce", nil), nil, 400, "could not be verified", 1},
		{"ID token of another issuer", edit("iss", "https://idp.evil.example"), nil, 400, "could not be verified", 1},
		{"ID token for another client", edit("aud", []string{"another-client"}), nil, 400, "could not be verified", 1},
		{"ID token expired", edit("exp", time.Now().Add(-time.Minute).Unix()), nil, 400, "could not be verified", 1},
		{"auth_time not a time", edit("auth_time", -5), nil, 400, "could not be verified", 1},
		{"an account tagwatch does not know", func() { op.set(func(op *fakeOP) { op.subject = "mallory" }) }, nil, 403, "No tagwatch watches for this account", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			op.set(func(op *fakeOP) { op.edit, op.subject = nil, "alice" })
			if c.setup != nil {
				c.setup()
			}
			b := newBrowser(t)
			cb := e.toCallback(b)
			if c.cb != nil {
				cb = c.cb(cb)
			}
			before, _ := e.tokens.counts()
			p := b.get(cb)
			expectPage(t, "GET callback", p, c.status, c.text)
			if n, _ := e.tokens.counts(); n-before != c.tokens {
				t.Errorf("token requests = %d, want %d", n-before, c.tokens)
			}
			if v := b.cookie(e.url, SessionCookie); v != "" {
				t.Errorf("refused sign-in left session cookie %q", v)
			}
			if got := b.get(e.url + Prefix + "/"); !strings.Contains(got.body, `action="/account/signin"`) {
				t.Errorf("page after a refused sign-in = %v, want the sign-in page", got)
			}
		})
	}
}

// TestFlowBinding: the state is single use, bound to the browser that
// started the flow, and lives FlowTTL; the provider sees no token request
// for a refused one.
func TestFlowBinding(t *testing.T) {
	t.Parallel()
	e, _ := fakeEnv(t, Config{}, true)

	t.Run("without the flow cookie, then with it", func(t *testing.T) {
		e.t = t
		b := newBrowser(t)
		cb := e.toCallback(b)
		thief := newBrowser(t)
		expectPage(t, "callback in another browser", thief.get(cb), http.StatusBadRequest, "started in another browser")
		forged := newBrowser(t)
		forged.jar.SetCookies(mustURL(e.url), []*http.Cookie{{Name: FlowCookie, Value: strings.Repeat("B", 43), Path: "/", Secure: true}})
		expectPage(t, "callback with another flow cookie", forged.get(cb), http.StatusBadRequest, "started in another browser")
		if n, _ := e.tokens.counts(); n != 0 {
			t.Fatalf("token requests = %d, want 0", n)
		}
		// The state was not spent: its own browser finishes.
		if p := b.get(cb); p.status != http.StatusSeeOther || p.loc != "/account/" {
			t.Fatalf("callback in its own browser = %v, want 303 to /account/", p)
		}
		before, _ := e.tokens.counts()
		expectPage(t, "replayed callback", b.get(cb), http.StatusBadRequest, "expired or was already completed")
		if n, _ := e.tokens.counts(); n != before {
			t.Errorf("replayed state: %d token requests, want none", n-before)
		}
	})

	t.Run("expired flow", func(t *testing.T) {
		e.t = t
		b := newBrowser(t)
		cb := e.toCallback(b)
		e.clock.Advance(DefaultFlowTTL + time.Second)
		before, _ := e.tokens.counts()
		expectPage(t, "callback after FlowTTL", b.get(cb), http.StatusBadRequest, "expired or was already completed")
		if n, _ := e.tokens.counts(); n != before {
			t.Errorf("expired state: %d token requests, want none", n-before)
		}
	})

	t.Run("many tabs", func(t *testing.T) {
		e.t = t
		b := newBrowser(t)
		var cbs []string
		for range maxFlowsPerBrowser + 1 {
			cbs = append(cbs, e.toCallback(b))
		}
		// The oldest was evicted; the newest works.
		expectPage(t, "oldest tab's callback", b.get(cbs[0]), http.StatusBadRequest, "expired or was already completed")
		if p := b.get(cbs[len(cbs)-1]); p.status != http.StatusSeeOther {
			t.Errorf("newest tab's callback = %v, want 303", p)
		}
	})

	t.Run("busy", func(t *testing.T) {
		e2, _ := fakeEnv(t, Config{MaxFlows: 2}, false)
		for range 2 {
			e2.toCallback(newBrowser(t))
		}
		p := newBrowser(t).post(e2.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
		expectPage(t, "a third sign-in with MaxFlows 2", p, http.StatusServiceUnavailable, "busy")
	})

	t.Run("unknown provider", func(t *testing.T) {
		e.t = t
		p := newBrowser(t).post(e.url+Prefix+"/signin", url.Values{"provider": {"nosuch"}})
		expectPage(t, "POST signin provider=nosuch", p, http.StatusBadRequest, "does not sign people in with that provider")
	})
}

// TestSessionLifetimes: idle and absolute lifetimes end a session; an
// expired session is renewed by a top-level prompt=none request, which
// gives a new id; the old one is dead.
func TestSessionLifetimes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		advance func(e *env, b *browser)
	}{
		{"idle", func(e *env, b *browser) { e.clock.Advance(DefaultIdleTimeout + time.Second) }},
		{"absolute", func(e *env, b *browser) {
			// Used every 10 minutes, it still ends 8 hours after the sign-in.
			for range int(DefaultAbsoluteTimeout / (10 * time.Minute)) {
				e.clock.Advance(10 * time.Minute)
				b.get(e.url + Prefix + "/")
			}
			e.clock.Advance(time.Second)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, op := fakeEnv(t, Config{}, false)
			b := newBrowser(t)
			e.signInFake(b)
			old := b.cookie(e.url, SessionCookie)
			e.clock.Advance(DefaultIdleTimeout - time.Second)
			expectPage(t, "the page just before the idle timeout", b.get(e.url+Prefix+"/"), http.StatusOK, "Signed in as")
			c.advance(e, b)
			p := b.get(e.url + Prefix + "/?tab=watches")
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") {
				t.Fatalf("GET /account/ after the %s timeout = %v, want 303 to the authorization endpoint", c.name, p)
			}
			if q := mustURL(p.loc).Query(); q.Get("prompt") != "none" || q.Get("scope") != "openid" {
				t.Errorf("renewal request prompt %q scope %q, want none and openid", q.Get("prompt"), q.Get("scope"))
			}
			if got := p.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("renewal redirect Cache-Control %q, want no-store", got)
			}
			p = b.follow(e.url, b.follow(e.url, p))
			if p.status != http.StatusSeeOther || p.loc != "/account/?tab=watches" {
				t.Fatalf("renewal callback = %v, want 303 back to /account/?tab=watches", p)
			}
			expectPage(t, "the page after renewal", b.follow(e.url, p), http.StatusOK, "Signed in as")
			if now := b.cookie(e.url, SessionCookie); now == old || !webpage.WellFormed(now) {
				t.Errorf("session id after renewal %q, want a new one (old %q)", now, old)
			}
			if _, st := e.svc.sessions.lookup(old, e.clock.Now()); st != sessionUnknown {
				t.Errorf("old session id after renewal is %v, want unknown", st)
			}
		})
	}
}

// TestRenewalOnPost: a POST whose session expired is not replayed: the
// renewal returns to the page with a notice.
func TestRenewalOnPost(t *testing.T) {
	t.Parallel()
	op := newFakeOP(t, false)
	done := 0
	e := newEnv(t, Config{}, func(e *env) map[string]Provider {
		return map[string]Provider{"corp": newProvider(t, "corp", op.srv.URL, testClientID, testSecret, e.tokens)}
	}, func(s *Service, h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.HandleFunc("POST /account/test-action", func(w http.ResponseWriter, r *http.Request) {
			if _, ok := s.requireSession(w, r); ok {
				done++
				io.WriteString(w, "done")
			}
		})
		return s.crossOriginCheck(mux)
	})
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "corp", Subject: "alice"})
	b := newBrowser(t)
	e.signInFake(b)
	if p := b.post(e.url+"/account/test-action", nil); p.body != "done" {
		t.Fatalf("POST with a live session = %v, want done", p)
	}
	e.clock.Advance(DefaultIdleTimeout + time.Second)
	p := b.post(e.url+"/account/test-action", nil)
	if p.status != http.StatusSeeOther || mustURL(p.loc).Query().Get("prompt") != "none" {
		t.Fatalf("POST with an expired session = %v, want 303 to a prompt=none request", p)
	}
	p = b.follow(e.url, b.follow(e.url, p))
	if p.loc != "/account/" {
		t.Fatalf("renewal callback = %v, want 303 to /account/", p)
	}
	home := b.follow(e.url, p)
	expectPage(t, "the page after a renewal during a POST", home, http.StatusOK, "nothing was changed")
	if done != 1 {
		t.Errorf("the action ran %d times, want once (not replayed after the renewal)", done)
	}
	if again := b.get(e.url + Prefix + "/"); strings.Contains(again.body, "nothing was changed") {
		t.Errorf("the notice shows twice")
	}
	// Without any session, a POST goes to the page's start.
	if p := newBrowser(t).post(e.url+"/account/test-action", nil); p.status != http.StatusSeeOther || p.loc != "/account/" || done != 1 {
		t.Errorf("POST without a session = %v (done %d), want 303 to /account/ and nothing done", p, done)
	}
}

// TestRestartRenews: a session id from before a restart (unknown to this
// process) is renewed silently when one OpenID provider signs people in.
func TestRestartRenews(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	b := newBrowser(t)
	b.jar.SetCookies(mustURL(e.url), []*http.Cookie{{Name: SessionCookie, Value: webpage.RandomString(32), Path: "/", Secure: true}})
	p := b.get(e.url + Prefix + "/")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") || mustURL(p.loc).Query().Get("prompt") != "none" {
		t.Fatalf("GET /account/ with an unknown session id = %v, want a prompt=none renewal", p)
	}
	// A failed renewal then signs in interactively, same way back.
	op.set(func(op *fakeOP) { op.answer, op.noneOnly = "login_required", true })
	p = b.follow(e.url, p) // the provider answers login_required
	p = b.follow(e.url, p) // the callback starts an interactive sign-in
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") || mustURL(p.loc).Query().Has("prompt") {
		t.Fatalf("callback with login_required = %v, want 303 to an authorization request without prompt", p)
	}
	p = b.follow(e.url, b.follow(e.url, p))
	expectPage(t, "the page after the interactive sign-in", b.follow(e.url, p), http.StatusOK, "Signed in as")
}

// TestRenewalErrors: which prompt=none answers become an interactive
// sign-in, and which an error page.
func TestRenewalErrors(t *testing.T) {
	t.Parallel()
	for answer, interactive := range map[string]bool{"login_required": true, "interaction_required": true, "consent_required": true,
		"account_selection_required": true, "access_denied": false, "server_error": false, "invalid_request": false} {
		t.Run(answer, func(t *testing.T) {
			e, op := fakeEnv(t, Config{}, false)
			b := newBrowser(t)
			e.signInFake(b)
			e.clock.Advance(DefaultIdleTimeout + time.Second)
			op.set(func(op *fakeOP) { op.answer, op.noneOnly = answer, true })
			p := b.follow(e.url, b.follow(e.url, b.get(e.url+Prefix+"/")))
			isAuth := p.status == http.StatusSeeOther && strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") && !mustURL(p.loc).Query().Has("prompt")
			if isAuth != interactive {
				t.Errorf("renewal answered %s: callback = %v, want an interactive sign-in %t", answer, p, interactive)
			}
			if !interactive && p.status < 400 {
				t.Errorf("renewal answered %s: callback = %v, want an error page", answer, p)
			}
		})
	}
}

// TestRecentAuth: an action that needs a recent sign-in asks the provider
// with max_age and checks auth_time; a stale one is refused and nothing
// runs.
func TestRecentAuth(t *testing.T) {
	t.Parallel()
	op := newFakeOP(t, false)
	ran := 0
	e := newEnv(t, Config{}, func(e *env) map[string]Provider {
		return map[string]Provider{"corp": newProvider(t, "corp", op.srv.URL, testClientID, testSecret, e.tokens)}
	}, func(s *Service, h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		guarded := func(w http.ResponseWriter, r *http.Request) {
			sess, ok := s.requireSession(w, r)
			if !ok || !s.requireRecentAuth(w, r, sess, "/account/test-guarded") {
				return
			}
			if r.Method == http.MethodPost {
				ran++
			}
			io.WriteString(w, "confirm")
		}
		mux.HandleFunc("GET /account/test-guarded", guarded)
		mux.HandleFunc("POST /account/test-guarded", guarded)
		return s.crossOriginCheck(mux)
	})
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "corp", Subject: "alice"})
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "bob", Provider: "corp", Subject: "bob-sub"})
	b := newBrowser(t)
	op.set(func(op *fakeOP) { op.authTime = time.Now().Add(-time.Hour) })
	e.signInFake(b)

	// A stale auth_time: the guarded page and the action both go to the
	// provider with max_age; the action does not run.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		p := b.do(method, e.url+"/account/test-guarded", map[string]url.Values{http.MethodPost: {}}[method])
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/authorize?") {
			t.Fatalf("%s guarded with a stale sign-in = %v, want 303 to the provider", method, p)
		}
		if q := mustURL(p.loc).Query(); q.Get("max_age") != "300" || q.Has("prompt") {
			t.Errorf("recent sign-in request max_age %q prompt %q, want 300 and none", q.Get("max_age"), q.Get("prompt"))
		}
	}
	cases := []struct {
		name   string
		setup  func(op *fakeOP)
		status int
		text   string
	}{
		{"provider ignores max_age: auth_time stale", func(op *fakeOP) {}, 403, "not recent enough"},
		{"no auth_time", func(op *fakeOP) { op.edit = func(c map[string]any) { delete(c, "auth_time") } }, 403, "not recent enough"},
		{"another user's account", func(op *fakeOP) { op.authTime, op.subject = time.Time{}, "bob-sub" }, 403, "another account"},
		{"an account tagwatch does not know", func(op *fakeOP) { op.authTime, op.subject = time.Time{}, "mallory" }, 403, "another account"},
		{"the person declines", func(op *fakeOP) { op.answer = "access_denied" }, 403, "You are still signed in to your tagwatch page"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			op.set(func(op *fakeOP) {
				op.authTime, op.edit, op.subject, op.answer = time.Now().Add(-time.Hour), nil, "alice", ""
				c.setup(op)
			})
			before := b.cookie(e.url, SessionCookie)
			p := b.get(e.url + "/account/test-guarded")
			p = b.follow(e.url, b.follow(e.url, p))
			expectPage(t, "recent sign-in callback", p, c.status, c.text)
			if got := b.cookie(e.url, SessionCookie); got != before {
				t.Errorf("a refused recent sign-in changed the session cookie")
			}
			expectPage(t, "the page after a refused recent sign-in", b.get(e.url+Prefix+"/"), http.StatusOK, "Signed in as <strong>alice</strong>")
			if ran != 0 {
				t.Errorf("the guarded action ran %d times", ran)
			}
		})
	}

	// A fresh sign-in: back to the confirmation page, then the action runs.
	op.set(func(op *fakeOP) { op.authTime, op.edit, op.subject, op.answer = time.Time{}, nil, "alice", "" })
	p := b.follow(e.url, b.follow(e.url, b.get(e.url+"/account/test-guarded")))
	if p.status != http.StatusSeeOther || p.loc != "/account/test-guarded" {
		t.Fatalf("fresh recent sign-in callback = %v, want 303 to /account/test-guarded", p)
	}
	if got := b.follow(e.url, p); got.body != "confirm" {
		t.Fatalf("confirmation page after a fresh sign-in = %v", got)
	}
	if got := b.post(e.url+"/account/test-guarded", nil); got.body != "confirm" || ran != 1 {
		t.Errorf("POST guarded after a fresh sign-in = %v, ran %d, want it done once", got, ran)
	}
	// RecentAuth later, it is stale again.
	e.clock.Advance(DefaultRecentAuth + clockLeeway + time.Second)
	if p := b.get(e.url + "/account/test-guarded"); p.status != http.StatusSeeOther {
		t.Errorf("guarded page %v after RecentAuth = %v, want a new recent sign-in", DefaultRecentAuth, p)
	}
}

// TestXSignIn: X signs in with users.read tweet.read, the identity from
// /2/users/me; its tokens are dropped, never revoked at X (that would end
// the app's whole authorization for the user); an expired X session shows
// the sign-in page, with no redirect.
func TestXSignIn(t *testing.T) {
	t.Parallel()
	var x *xsandbox.Server
	e := newEnv(t, Config{}, func(e *env) map[string]Provider {
		publicURL := e.url
		var err error
		x, err = xsandbox.Start(xsandbox.Config{ClientID: "tw", ClientSecret: "tw-secret", RedirectURIs: []string{publicURL + "/account/callback"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(x.Close)
		if err := x.AddUser(xsandbox.User{ID: "1001", Username: "ada_x", Name: "Ada"}); err != nil {
			t.Fatal(err)
		}
		ep := func(p xsandbox.Endpoint) string { return x.URL() + string(p) }
		p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tw",
			ClientSecret: secret.NewClientSecret("tw-secret"), RedirectURL: publicURL + "/callback",
			AuthURL: ep(xsandbox.EndpointAuthorize), TokenURL: ep(xsandbox.EndpointToken), RevokeURL: ep(xsandbox.EndpointRevoke),
			APIURL: x.URL(), HTTPClient: &http.Client{Transport: e.tokens}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]Provider{"x": p}
	}, nil)
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "x", Subject: "1001"})
	x.SetAutoApprove("1001")
	b := newBrowser(t)
	expectPage(t, "sign-in page", b.get(e.url+Prefix+"/"), http.StatusOK, "X cannot confirm who you are without asking you")
	p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {"x"}})
	q := mustURL(p.loc).Query()
	if q.Get("scope") != "users.read tweet.read" || q.Has("nonce") || q.Has("prompt") || q.Get("code_challenge_method") != "S256" {
		t.Errorf("X authorization request %v, want scope users.read tweet.read, PKCE, no nonce, no prompt", q)
	}
	p = b.follow(e.url, b.follow(e.url, p))
	expectPage(t, "the page after an X sign-in", b.follow(e.url, p), http.StatusOK, "Signed in as <strong>@ada_x</strong>")
	st := x.Stats()
	if st.Revocations != 0 || st.APICalls[xsandbox.EndpointUsersMe]["1001"] != 1 || st.TokenRequests["authorization_code"] != 1 {
		t.Errorf("X sandbox stats: %d revocations, %d users/me calls, %d code exchanges; want 0, 1, 1",
			st.Revocations, st.APICalls[xsandbox.EndpointUsersMe]["1001"], st.TokenRequests["authorization_code"])
	}
	if _, rv := e.tokens.counts(); rv != 0 {
		t.Errorf("%d revocations sent, want none", rv)
	}

	e.clock.Advance(DefaultIdleTimeout + time.Second)
	before := x.Stats().AuthorizeRequests
	expectPage(t, "the page after the X session expired", b.get(e.url+Prefix+"/"), http.StatusOK, "X cannot renew it without asking you")
	if x.Stats().AuthorizeRequests != before {
		t.Errorf("an expired X session sent the browser to X")
	}
	// Signing out everywhere: X has no end session endpoint, so the page
	// offers no such button and says how to sign out at X.
	e.signInX(b)
	home := b.get(e.url + Prefix + "/")
	expectPage(t, "the page signed in with X", home, http.StatusOK, "You stay signed in at X: sign out there yourself")
	if strings.Contains(home.body, "signout-everywhere") {
		t.Errorf("the page signed in with X offers to sign out everywhere")
	}
	out := b.post(e.url+Prefix+"/signout-everywhere", nil)
	if out.status != http.StatusSeeOther || !strings.HasPrefix(out.loc, "/account/signed-out?state=") {
		t.Fatalf("sign out everywhere at X = %v, want 303 to the signed-out page", out)
	}
	expectPage(t, "signed-out page", b.follow(e.url, out), http.StatusOK, "X has no way for tagwatch to sign you out there")
}

func (e *env) signInX(b *browser) {
	e.t.Helper()
	p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {"x"}})
	p = b.follow(e.url, b.follow(e.url, p))
	expectPage(e.t, "X sign-in", b.follow(e.url, p), http.StatusOK, "Signed in as")
}

// TestDiscardRefreshToken: a refresh token a sign-in did not ask for is
// revoked where that ends only its own grant.
func TestDiscardRefreshToken(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	op.set(func(op *fakeOP) { op.refresh = true })
	e.signInFake(newBrowser(t))
	op.mu.Lock()
	revoked := op.revoked
	op.mu.Unlock()
	if revoked != 1 {
		t.Errorf("provider saw %d revocations, want 1 (the unasked-for refresh token)", revoked)
	}
}

// TestSignOutEverywhere: RP-initiated logout at the provider with
// client_id and logout_hint only: no token in the redirect (no
// id_token_hint), no post_logout_redirect_uri or state (Hydra refuses
// them without id_token_hint); the session ends here first.
func TestSignOutEverywhere(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	b := newBrowser(t)
	e.signInFake(b)
	id := b.cookie(e.url, SessionCookie)
	op.mu.Lock()
	idt := op.idTokens[len(op.idTokens)-1]
	op.mu.Unlock()
	p := b.post(e.url+Prefix+"/signout-everywhere", nil)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, op.srv.URL+"/logout?") {
		t.Fatalf("POST signout-everywhere = %v, want 303 to the end session endpoint", p)
	}
	q := mustURL(p.loc).Query()
	if len(q) != 2 || q.Get("client_id") != testClientID || q.Get("logout_hint") != "alice" {
		t.Errorf("end session request %v, want client_id and logout_hint only", q)
	}
	noSecretsIn(t, "the sign-out's redirect", fmt.Sprint(p.header), idt, strings.Split(idt, ".")[2])
	if _, st := e.svc.sessions.lookup(id, e.clock.Now()); st != sessionUnknown {
		t.Errorf("the session is %v after signing out everywhere, want ended", st)
	}
	if b.cookie(e.url, SessionCookie) != "" {
		t.Errorf("session cookie kept after signing out everywhere")
	}
	expectPage(t, "the page after signing out everywhere", b.get(e.url+Prefix+"/"), http.StatusOK, `action="/account/signin"`)
}
