package webpage_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/vault/httpsec"
	"tagwatch/vault/webpage"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestContinuePageInBrowser proves, in Chromium, why the continue page
// exists. Three origins: ours (a page with a form), a provider whose
// authorization endpoint redirects to a third origin (its login UI, as
// self-hosted Ory Hydra's login app does), and that third origin.
//
//   - The old way, a POST answered with a 303 straight to the provider
//     under form-action 'self' <provider origin>, is blocked at the
//     provider's redirect to the third origin: Chromium checks form-action
//     on every redirect that follows a form submission.
//   - The new way, a POST answered with a 303 to our continue page, whose
//     meta refresh is not a form submission, reaches the third origin
//     under form-action 'self'.
func TestContinuePageInBrowser(t *testing.T) {
	var loginHits atomic.Int32
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/login" {
			http.NotFound(w, r) // the favicon
			return
		}
		loginHits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>login</title><p id="login">the provider's login UI</p>`))
	}))
	defer login.Close()
	var authorizeHits atomic.Int32
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authorizeHits.Add(1)
		http.Redirect(w, r, login.URL+"/login?challenge=c", http.StatusFound)
	}))
	defer authz.Close()
	target := authz.URL + "/authorize?client_id=c&state=s"

	form := func(action string) string {
		return `<!doctype html><title>ours</title><form method="post" action="` + action + `"><button id="go" type="submit">Continue</button></form>`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /new", func(w http.ResponseWriter, r *http.Request) {
		httpsec.SetPageHeaders(w.Header(), "")
		_, _ = w.Write([]byte(form("/new")))
	})
	mux.HandleFunc("POST /new", func(w http.ResponseWriter, r *http.Request) {
		httpsec.SetPageHeaders(w.Header(), "")
		http.Redirect(w, r, "/continue", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /continue", func(w http.ResponseWriter, r *http.Request) {
		webpage.WriteContinuePage(w, target, "the provider")
	})
	// The old way: the provider's origin in form-action, a direct 303.
	oldCSP := "default-src 'none'; form-action 'self' " + authz.URL + "; frame-ancestors 'none'; base-uri 'none'"
	mux.HandleFunc("GET /old", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", oldCSP)
		_, _ = w.Write([]byte(form("/old")))
	})
	mux.HandleFunc("POST /old", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", oldCSP)
		http.Redirect(w, r, target, http.StatusSeeOther)
	})
	ours := httptest.NewServer(mux)
	defer ours.Close()

	bctx := browsertest.New(t, 90*time.Second)
	location := func() string {
		t.Helper()
		u, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	// The old way is blocked at the provider's redirect.
	if err := chromedp.Do(bctx, chromedp.Navigate(ours.URL+"/old"), chromedp.WaitVisible("#go"), chromedp.Click("#go")); err != nil {
		t.Fatalf("old way: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for authorizeHits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // time enough for the redirect to the login UI, were it allowed
	if authorizeHits.Load() == 0 {
		t.Fatalf("old way: the provider's authorization endpoint was never reached (at %s)", location())
	}
	if n := loginHits.Load(); n != 0 || strings.HasPrefix(location(), login.URL) || strings.HasPrefix(location(), authz.URL) {
		t.Fatalf("old way: the browser reached the third origin (%d requests, at %s): Chromium no longer checks form-action on redirects?", n, location())
	}

	// The new way reaches the third origin.
	before := authorizeHits.Load()
	if err := chromedp.Do(bctx, chromedp.Navigate(ours.URL+"/new"), chromedp.WaitVisible("#go"), chromedp.Click("#go"),
		chromedp.WaitVisible("#login")); err != nil {
		t.Fatalf("new way: %v (at %s)", err, location())
	}
	if loc := location(); !strings.HasPrefix(loc, login.URL+"/login?challenge=c") || authorizeHits.Load() != before+1 || loginHits.Load() != 1 {
		t.Fatalf("new way: at %s, authorize hits %d, login hits %d", loc, authorizeHits.Load()-before, loginHits.Load())
	}
}
