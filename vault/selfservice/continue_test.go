package selfservice

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestContinuePage: every POST that sends the browser to the provider
// (the sign-in button, an action on an expired session, sign out
// everywhere) answers 303 to the same-origin continue page, never to the
// provider: Chromium checks form-action on every redirect that follows a
// form submission, and the provider may redirect on to a login or logout
// UI on a third origin. The continue page goes on with a meta refresh to
// the flow's exact URL, as often as it is loaded, for the flow's browser
// only. A GET that starts a flow keeps its direct 303.
func TestContinuePage(t *testing.T) {
	t.Parallel()
	pe := newPagesEnv(t)
	op := pe.op.srv.URL
	toContinue := func(what string, p page) string {
		t.Helper()
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, Prefix+"/continue?state=") || strings.Contains(p.loc, op) {
			t.Fatalf("%s = %v, want 303 to %s/continue?state=", what, p, Prefix)
		}
		if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self';") {
			t.Errorf("%s CSP %q", what, csp)
		}
		return strings.TrimPrefix(p.loc, Prefix+"/continue?state=")
	}

	b := newBrowser(t)
	p := b.rawPost(pe.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
	state := toContinue("POST signin", p)
	c := b.get(pe.url + p.loc)
	target := continueTarget(t, c)
	if !strings.HasPrefix(target, op+"/authorize?") || mustURL(target).Query().Get("state") != state {
		t.Fatalf("continue page target %q, want the authorization request of state %s", target, state)
	}
	if !strings.Contains(c.body, "Continue to corp") {
		t.Errorf("continue page does not name the provider: %s", c.body)
	}
	if again := continueTarget(t, b.get(pe.url+p.loc)); again != target {
		t.Errorf("continue page changed on a reload: %q", again)
	}
	other := newBrowser(t).get(pe.url + p.loc)
	expectPage(t, "another browser's continue page", other, http.StatusBadRequest, "another browser")
	noSecretsIn(t, "another browser's continue page", other.body, state)
	expectPage(t, "an unknown flow's continue page", b.get(pe.url+Prefix+"/continue?state=nosuch"), http.StatusBadRequest, "")

	// Signed in: an expired session on a GET is renewed with a direct 303;
	// on a POST, through the continue page.
	pe.signInFake(b)
	pe.clock.Advance(DefaultIdleTimeout + time.Second)
	if g := b.get(pe.url + Prefix + "/"); g.status != http.StatusSeeOther || !strings.HasPrefix(g.loc, op+"/authorize?") {
		t.Errorf("GET with an expired session = %v, want a direct 303 to the provider", g)
	}
	p = b.rawPost(pe.url+Prefix+"/watches/"+pe.adaWatch+"/pause", url.Values{})
	toContinue("POST with an expired session", p)
	if q := mustURL(continueTarget(t, b.get(pe.url+p.loc))).Query(); q.Get("prompt") != "none" {
		t.Errorf("renewal through the continue page %v, want prompt=none", q)
	}

	// Sign out everywhere: the end session request, through the page.
	b = newBrowser(t)
	pe.signInFake(b)
	p = b.rawPost(pe.url+Prefix+"/signout-everywhere", nil)
	state = toContinue("POST signout-everywhere", p)
	if target := continueTarget(t, b.get(pe.url+p.loc)); !strings.HasPrefix(target, op+"/logout?") {
		t.Errorf("sign out everywhere's continue page target %q, want the end session endpoint", target)
	}
	// Its state is no sign-in's.
	expectPage(t, "a sign-out's state at the callback", b.get(pe.url+Prefix+"/callback?code=x&state="+url.QueryEscape(state)), http.StatusBadRequest, "")
}
