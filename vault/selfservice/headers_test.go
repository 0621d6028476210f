package selfservice

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/vaulttest"
	"tagwatch/vault/webpage"
)

// setCookie returns the Set-Cookie line of name in h, and the cookie it
// sets.
func setCookie(t *testing.T, h http.Header, name string) (string, *http.Cookie) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.Name == name {
			return line, c
		}
	}
	return "", nil
}

// TestCookieAttributes: every response that sets one of the page's
// cookies sets it __Host- (Secure, Path=/, no Domain), HttpOnly,
// SameSite=Lax, with the lifetime its purpose needs.
func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "bob", Provider: "corp", Subject: "bob-sub"})
	signedIn := func() *browser {
		b := newBrowser(t)
		e.signInFake(b)
		return b
	}
	session := int(2 * DefaultAbsoluteTimeout / time.Second)
	flowAge := int(DefaultFlowTTL / time.Second)
	cases := []struct {
		name   string
		do     func() page
		cookie string
		maxAge int // -1: deleted (Max-Age=0)
	}{
		{"flow cookie: sign-in started", func() page {
			return newBrowser(t).rawPost(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
		}, FlowCookie, flowAge},
		{"session cookie: signed in", func() page {
			b := newBrowser(t)
			return b.follow(e.url, b.follow(e.url, b.post(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})))
		}, SessionCookie, session},
		{"flow cookie: silent renewal started", func() page {
			b := signedIn()
			e.clock.Advance(DefaultIdleTimeout + time.Second)
			return b.get(e.url + Prefix + "/")
		}, FlowCookie, flowAge},
		{"session cookie: renewed", func() page {
			b := signedIn()
			e.clock.Advance(DefaultIdleTimeout + time.Second)
			return b.follow(e.url, b.follow(e.url, b.get(e.url+Prefix+"/")))
		}, SessionCookie, session},
		{"session cookie: signed out", func() page { return signedIn().post(e.url+Prefix+"/signout", nil) }, SessionCookie, -1},
		{"session cookie: signed out everywhere", func() page { return signedIn().rawPost(e.url+Prefix+"/signout-everywhere", nil) }, SessionCookie, -1},
		{"session cookie: an account tagwatch does not know", func() page {
			b := signedIn()
			op.set(func(op *fakeOP) { op.subject = "mallory" })
			defer op.set(func(op *fakeOP) { op.subject = "alice" })
			return b.get(e.toCallback(b))
		}, SessionCookie, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			p := c.do()
			line, ck := setCookie(t, p.header, c.cookie)
			if ck == nil {
				t.Fatalf("response %v sets no %s (Set-Cookie: %q)", p, c.cookie, p.header.Values("Set-Cookie"))
			}
			if !strings.HasPrefix(ck.Name, "__Host-") || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.Domain != "" ||
				strings.Contains(strings.ToLower(line), "domain=") || ck.SameSite != http.SameSiteLaxMode {
				t.Errorf("Set-Cookie %q: want __Host-, Secure, HttpOnly, Path=/, no Domain, SameSite=Lax", line)
			}
			if ck.MaxAge != c.maxAge {
				t.Errorf("Set-Cookie %q: Max-Age %d, want %d", line, ck.MaxAge, c.maxAge)
			}
			if c.maxAge > 0 && !webpage.WellFormed(ck.Value) {
				t.Errorf("Set-Cookie %q: value is not 32 random bytes", line)
			}
			if c.maxAge < 0 && ck.Value != "" {
				t.Errorf("Set-Cookie %q: a deleted cookie keeps a value", line)
			}
		})
	}
}

// TestSecurityHeaders: every kind of response carries the CSP (no script,
// frame-ancestors 'none', forms to the page itself only: form-action
// 'self' and no provider origin, since Chromium checks form-action on
// every redirect of a form submission and the continue page is how a
// form's POST reaches a provider), no-referrer, nosniff and no-store; no
// page carries a script.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e, _ := fakeEnv(t, Config{}, false)
	b := newBrowser(t)
	signIn := b.rawPost(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
	continuePage := b.follow(e.url, signIn)
	callback := b.follow(e.url, b.get(continueTarget(t, continuePage)))
	responses := map[string]page{
		"sign-in page":           newBrowser(t).get(e.url + Prefix + "/"),
		"sign-in redirect":       signIn,
		"continue page":          continuePage,
		"continue page, unknown": b.get(e.url + Prefix + "/continue?state=" + strings.Repeat("x", 43)),
		"callback redirect":      callback,
		"the page":               b.follow(e.url, callback),
		"callback error":         b.get(e.url + Prefix + "/callback"),
		"not found":              b.get(e.url + Prefix + "/nosuch"),
		"outside the page":       b.get(e.url + "/elsewhere"),
		"wrong method":           b.get(e.url + Prefix + "/signin"),
		"cross-site refusal":     b.post(e.url+Prefix+"/signout", nil, "Sec-Fetch-Site", "cross-site"),
		"signed-out page":        b.get(e.url + Prefix + "/signed-out"),
		"mux's own redirect":     b.get(e.url + Prefix),
		"sign-out redirect":      b.post(e.url+Prefix+"/signout", nil),
		"backchannel refusal":    b.post(e.url+Prefix+"/backchannel-logout", url.Values{"logout_token": {"x"}}),
		"backchannel wrong verb": b.get(e.url + Prefix + "/backchannel-logout"),
	}
	for name, p := range responses {
		t.Run(name, func(t *testing.T) {
			h := p.header
			if got := h.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if strings.HasPrefix(name, "backchannel") {
				return // JSON for a server, not a page
			}
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self';"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q allows script or unsafe sources", csp)
			}
			for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			if strings.Contains(strings.ToLower(p.body), "<script") {
				t.Errorf("page carries a script: %s", p.body)
			}
		})
	}
}

// TestCrossSitePost: a POST another site's page makes the browser send is
// refused with nothing changed (net/http's CrossOriginProtection), on
// every route but the back-channel logout; same-origin and non-browser
// requests pass.
func TestCrossSitePost(t *testing.T) {
	t.Parallel()
	e, _ := fakeEnv(t, Config{}, false)
	host := strings.TrimPrefix(e.url, "http://")
	cases := []struct {
		name    string
		hdr     []string
		refused bool
	}{
		{"Sec-Fetch-Site cross-site", []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"Sec-Fetch-Site same-site", []string{"Sec-Fetch-Site", "same-site"}, true},
		{"Origin of another site, no Sec-Fetch-Site", []string{"Origin", "https://evil.example"}, true},
		{"Origin null, no Sec-Fetch-Site", []string{"Origin", "null"}, true},
		{"cross-site despite a matching Origin", []string{"Sec-Fetch-Site", "cross-site", "Origin", e.url}, true},
		{"Sec-Fetch-Site same-origin", []string{"Sec-Fetch-Site", "same-origin"}, false},
		{"Sec-Fetch-Site none (typed by the person)", []string{"Sec-Fetch-Site", "none"}, false},
		{"Origin of the page, no Sec-Fetch-Site", []string{"Origin", "http://" + host}, false},
		{"no browser headers", nil, false},
	}
	routes := []struct {
		path    string
		form    url.Values
		changed func(b *browser, before int) bool
	}{
		{"/signin", url.Values{"provider": {"corp"}}, func(b *browser, before int) bool { return e.svc.flows.Len() != before }},
		{"/signout", nil, func(b *browser, _ int) bool {
			_, st := e.svc.sessions.lookup(b.cookie(e.url, SessionCookie), e.clock.Now())
			return st != sessionLive
		}},
		{"/signout-everywhere", nil, func(b *browser, _ int) bool {
			_, st := e.svc.sessions.lookup(b.cookie(e.url, SessionCookie), e.clock.Now())
			return st != sessionLive
		}},
	}
	for _, c := range cases {
		for _, r := range routes {
			t.Run(fmt.Sprintf("%s %s", c.name, r.path), func(t *testing.T) {
				e.t = t
				b := newBrowser(t)
				e.signInFake(b)
				sid := b.cookie(e.url, SessionCookie)
				before := e.svc.flows.Len()
				p := b.post(e.url+Prefix+r.path, r.form, c.hdr...)
				// The browser's jar may have lost the cookie; judge by the id.
				b.jar.SetCookies(mustURL(e.url), []*http.Cookie{{Name: SessionCookie, Value: sid, Path: "/", Secure: true}})
				changed := r.changed(b, before)
				if c.refused {
					expectPage(t, "POST", p, http.StatusForbidden, "Another site tried to make this change")
					if changed {
						t.Errorf("a refused POST changed something")
					}
				} else if p.status != http.StatusSeeOther || !changed {
					t.Errorf("POST = %v (changed %t), want 303 and done", p, changed)
				}
			})
		}
	}
	// The back-channel logout takes server-to-server posts, with or
	// without browser headers: judged by its token (400 here, not 403).
	p := newBrowser(t).post(e.url+Prefix+"/backchannel-logout", url.Values{"logout_token": {"x"}}, "Sec-Fetch-Site", "cross-site")
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "invalid_request") {
		t.Errorf("cross-site POST to the back-channel endpoint = %v, want its own 400", p)
	}
}
