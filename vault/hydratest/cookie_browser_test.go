package hydratest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"tagwatch/vault/hydratest"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestChromiumHostCookieOverLoopbackHTTP answers a question the
// self-service page's tests depend on: does headless Chromium keep a
// `__Host-` cookie with Secure, HttpOnly, Path=/ and SameSite=Lax that a
// plain http://127.0.0.1 server sets (loopback counts as a secure context),
// and send it back when a top-level redirect from another loopback port
// (the provider's) returns to that server? Two ways to set it are tried: on
// a redirect to the other port (a relying party's sign-in start) and on a
// page before a link is followed. As a control, a `__Host-` cookie without
// Secure, which the prefix forbids, must be refused: the answer is not
// that Chromium ignores the prefix over http.
func TestChromiumHostCookieOverLoopbackHTTP(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got = map[string]string{} // path -> the cookie's value as received ("" absent)
	)
	record := func(r *http.Request) {
		v := ""
		if c, err := r.Cookie("__Host-x"); err == nil {
			v = c.Value
		}
		if _, err := r.Cookie("__Host-bad"); err == nil {
			v += " and __Host-bad"
		}
		mu.Lock()
		got[r.URL.Path] = v
		mu.Unlock()
	}
	setCookie := func(w http.ResponseWriter, value string) {
		w.Header().Add("Set-Cookie", "__Host-x="+value+"; Secure; HttpOnly; Path=/; SameSite=Lax")
	}

	provider := http.NewServeMux() // another loopback port, as Hydra is
	var rp *httptest.Server
	provider.HandleFunc("GET /bounce", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, rp.URL+r.URL.Query().Get("to"), http.StatusFound)
	})
	prov := httptest.NewServer(provider)
	t.Cleanup(prov.Close)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		setCookie(w, "on-redirect")
		w.Header().Add("Set-Cookie", "__Host-bad=1; HttpOnly; Path=/; SameSite=Lax")
		http.Redirect(w, r, prov.URL+"/bounce?to=/callback-1", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		setCookie(w, "on-page")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>page</title><a id="go" href="`+prov.URL+`/bounce?to=/callback-2">go</a>`)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>done</title><p id="done">done</p>`)
	})
	rp = httptest.NewServer(mux)
	t.Cleanup(rp.Close)

	bctx := browsertest.New(t, time.Minute)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(rp.URL+"/start"), chromedp.WaitVisible(`#done`),
		chromedp.Navigate(rp.URL+"/same-origin-1"), chromedp.WaitVisible(`#done`),
		chromedp.Navigate(rp.URL+"/page"), chromedp.Click(`#go`), chromedp.WaitVisible(`#done`),
		chromedp.Navigate(rp.URL+"/same-origin-2"), chromedp.WaitVisible(`#done`),
	); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("cookie received: %v", got)
	for path, want := range map[string]string{
		"/callback-1":    "on-redirect",
		"/same-origin-1": "on-redirect",
		"/callback-2":    "on-page",
		"/same-origin-2": "on-page",
	} {
		if got[path] != want {
			t.Errorf("GET %s carried __Host-x=%q, want %q", path, got[path], want)
		}
	}
}

// TestLoginPageInBrowser walks the provider's side of the self-service
// page's story in headless Chromium: a relying party on plain loopback
// http with a __Host- flow cookie sends the browser to Hydra; the login
// page shows and its button signs in; a prompt=none request comes back at
// once with a code and no page; after EndSession it comes back with
// login_required, and the next sign-in shows the page again.
func TestLoginPageInBrowser(t *testing.T) {
	t.Parallel()
	browsertest.Chromium(t) // skip (or fail under CI_STRICT) before starting Hydra
	h := hydratest.Start(t, hydratest.Options{Subject: "alice", Login: hydratest.LoginInteractive})
	rp := newRelyingParty(t, h, "page", nil)

	type visit struct{ state, cookie, code, err string }
	var (
		mu     sync.Mutex
		visits []visit
	)
	rp.mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		state := rand16()
		http.SetCookie(w, &http.Cookie{Name: "__Host-flow", Value: state, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("nonce", rand16())}
		if p := r.URL.Query().Get("prompt"); p != "" {
			opts = append(opts, oauth2.SetAuthURLParam("prompt", p))
		}
		http.Redirect(w, r, rp.cfg.AuthCodeURL(state, opts...), http.StatusSeeOther)
	})
	rp.mu.Lock()
	rp.callback = func(w http.ResponseWriter, r *http.Request) {
		v := visit{state: r.URL.Query().Get("state"), code: r.URL.Query().Get("code"), err: r.URL.Query().Get("error")}
		if c, err := r.Cookie("__Host-flow"); err == nil {
			v.cookie = c.Value
		}
		mu.Lock()
		visits = append(visits, v)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>callback</title><p id="done">back</p>`)
	}
	rp.mu.Unlock()
	last := func(what, wantErr string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(visits) == 0 {
			t.Fatalf("%s: the callback was never reached", what)
		}
		v := visits[len(visits)-1]
		if v.cookie == "" || v.cookie != v.state {
			t.Errorf("%s: callback state %q with __Host-flow %q, want the cookie back with the state", what, v.state, v.cookie)
		}
		if v.err != wantErr || (wantErr == "") != (v.code != "") {
			t.Errorf("%s: callback code %t error %q, want error %q", what, v.code != "", v.err, wantErr)
		}
	}

	bctx := browsertest.New(t, 2*time.Minute)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	do("open the login page", chromedp.Navigate(rp.srv.URL+"/start"), chromedp.WaitVisible(hydratest.LoginButton))
	if s, err := chromedp.Run(bctx, chromedp.Text(hydratest.LoginButton)); err != nil || s != "Sign in as alice" {
		t.Errorf("login button says %q (%v), want %q", s, err, "Sign in as alice")
	}
	do("sign in", chromedp.Click(hydratest.LoginButton), chromedp.WaitVisible(`#done`))
	last("sign-in", "")
	wantStats(t, "sign-in", h.Stats(), hydratest.Stats{
		Authorizations: prompts{"": 1}, LoginRequests: logins{{Prompt: "", Skip: false}: 1},
		LoginPagesShown: 1, LoginPagesSubmitted: 1, ConsentRequests: skips{false: 1},
	})

	h.ResetStats()
	do("renew silently", chromedp.Navigate(rp.srv.URL+"/start?prompt=none"), chromedp.WaitVisible(`#done`))
	last("prompt=none", "")
	wantStats(t, "prompt=none", h.Stats(), hydratest.Stats{
		Authorizations: prompts{"none": 1}, LoginRequests: logins{{Prompt: "none", Skip: true}: 1}, ConsentRequests: skips{true: 1},
	})

	h.EndSession(t, h.SessionID("alice"))
	h.ResetStats()
	do("renew after EndSession", chromedp.Navigate(rp.srv.URL+"/start?prompt=none"), chromedp.WaitVisible(`#done`))
	last("prompt=none after EndSession", "login_required")
	do("sign in again", chromedp.Navigate(rp.srv.URL+"/start"), chromedp.WaitVisible(hydratest.LoginButton))
	wantStats(t, "after EndSession", h.Stats(), hydratest.Stats{
		Authorizations: prompts{"none": 1, "": 1}, LoginRequests: logins{{Prompt: "", Skip: false}: 1}, LoginPagesShown: 1,
	})
	if tok := rp.waitToken(10 * time.Second); tok == "" {
		t.Errorf("EndSession: no logout token at the relying party")
	}
}
