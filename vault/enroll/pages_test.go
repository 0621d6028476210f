package enroll_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

var styleNonce = regexp.MustCompile(`<style nonce="([^"]+)">`)

// TestPageHeaders visits every page the handler shows, for success and
// refusal, and checks the security headers, the per-response style nonce,
// that nothing third-party is loaded, and that no token, code or state
// shows.
func TestPageHeaders(t *testing.T) {
	xe := newXEnv(t)
	authOrigin := xe.x.URL()

	b := newBrowser(t)
	link, _ := xe.link("pages", "x", "")
	token := link[strings.LastIndex(link, "/")+1:]
	used, _ := xe.link("pages-used", "x", "")
	success := xe.enroll(b, used, "1001")
	if success.status != http.StatusOK {
		t.Fatalf("enrollment = %d: %s", success.status, success.body)
	}
	canceled, crec := xe.link("pages-canceled", "x", "")
	if err := xe.db.CancelLink(crec.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// A flow whose callback is refused, and one denied at the provider.
	auth := b.begin(link, authOrigin)
	state := auth.Query().Get("state")
	xe.x.SetAutoApprove("1001")
	at := b.get(auth.String())
	xe.x.SetAutoApprove("")
	cb, err := url.Parse(at.loc)
	if err != nil {
		t.Fatal(err)
	}
	code := cb.Query().Get("code")

	pages := []struct {
		name   string
		p      page
		status int
		form   bool
	}{
		{"landing", b.get(link), 200, true},
		{"success", success, 200, false},
		{"used link", b.get(used), 410, false},
		{"canceled link", b.get(canceled), 410, false},
		{"unknown link", b.get(xe.url + "/enroll/" + strings.Repeat("x", 43)), 404, false},
		{"other path", b.get(xe.url + "/admin"), 404, false},
		{"wrong method", b.do(http.MethodPut, link, nil), 405, false},
		{"cross-site post", func() page {
			req, _ := http.NewRequest(http.MethodPost, link, nil)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return page{status: resp.StatusCode, header: resp.Header}
		}(), 403, false},
		{"callback without cookie", newBrowser(t).get(cb.String()), 400, false},
		{"callback with wrong iss", b.get(withParam(cb, "iss", "https://evil.example")), 400, false},
		{"callback replayed", b.get(cb.String()), 400, false},
		{"callback without state", b.get(xe.url + "/callback?code=" + url.QueryEscape(code)), 400, false},
		{"unknown success page", b.get(xe.url + "/enrolled/" + strings.Repeat("0", 26)), 404, false},
		{"continue page, unknown state", b.get(xe.url + "/continue?state=" + strings.Repeat("x", 43)), 400, false},
		{"continue page, no state", b.get(xe.url + "/continue"), 400, false},
		{"continue page, wrong method", b.post(xe.url+"/continue", url.Values{}), 405, false},
	}
	nonces := map[string]bool{}
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			p := pg.p
			if p.status != pg.status {
				t.Fatalf("status = %d, want %d: %s", p.status, pg.status, p.body)
			}
			h := p.header
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %s", csp, want)
				}
			}
			// form-action 'self' and nothing else, on every page: the
			// landing form leads to the continue page (Chromium checks
			// form-action on each redirect of a form submission).
			if !strings.Contains(csp, "form-action 'self';") {
				t.Errorf("CSP %q: want form-action 'self' only", csp)
			}
			for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
				"Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if p.body == "" {
				return
			}
			if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			m := styleNonce.FindStringSubmatch(p.body)
			if m == nil || !strings.Contains(csp, "style-src 'nonce-"+m[1]+"'") || len(m[1]) < 22 {
				t.Errorf("style nonce %v not the CSP's (%q)", m, csp)
			} else if nonces[m[1]] {
				t.Errorf("style nonce %s reused", m[1])
			} else {
				nonces[m[1]] = true
			}
			for _, bad := range []string{"<script", "<img", "<link", "<iframe", "src=", "http://", "https://", "@import", "url("} {
				if strings.Contains(p.body, bad) {
					t.Errorf("page contains %q", bad)
				}
			}
			if n := strings.Count(p.body, "<form"); (pg.form && n != 1) || (!pg.form && n != 0) {
				t.Errorf("page has %d forms, want %v", n, pg.form)
			}
			if pg.form && (strings.Count(p.body, "<button") != 1 || strings.Contains(p.body, "action=")) {
				t.Errorf("landing form: want one button and no action (the link token stays out of the page)")
			}
			noSecretsIn(t, p.body, token, state, code)
		})
	}

	// The landing page says who asks and what will be done.
	landing := pages[0].p.body
	// Targets as the daemon names them (notify.TargetLabel): an address
	// is shown masked.
	for _, want := range []string{"Example Newsroom", "#golang", "#bbolt", "every 15 minutes", notify.TargetLabel("mailto:ada@example.com"),
		"tweet.read", "offline.access", "Continue to X", hostOf(authOrigin)} {
		if !strings.Contains(landing, want) {
			t.Errorf("landing page does not show %q", want)
		}
	}
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

// TestCookie checks the flow cookie's attributes: HttpOnly, SameSite=Lax,
// scoped to the site, and Secure with the __Host- prefix over https.
func TestCookie(t *testing.T) {
	xe := newXEnv(t)
	link, _ := xe.link("cookie", "x", "")
	req, _ := http.NewRequest(http.MethodPost, link, nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cs) != 1 {
		t.Fatalf("POST = %d with cookies %v, want 303 and one cookie", resp.StatusCode, cs)
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge <= 0 || c.MaxAge > 900 || len(c.Value) != 43 {
		t.Errorf("cookie = %+v, want HttpOnly, SameSite=Lax, Path=/, short-lived, not Secure on loopback http", c)
	}

	// Over https the cookie is Secure and __Host- prefixed.
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: renewtest.ClientID,
		ClientSecret: secret.NewClientSecret(renewtest.ClientSecret), RedirectURL: "https://tagwatch.example/callback",
		AuthURL: xe.x.URL() + string(xsandbox.EndpointAuthorize), TokenURL: xe.x.URL() + string(xsandbox.EndpointToken)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := enroll.New(enroll.Config{DB: xe.db, PublicURL: "https://tagwatch.example", Providers: map[string]enroll.Provider{"x": p}})
	if err != nil {
		t.Fatal(err)
	}
	path := link[len(xe.url):]
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "https://tagwatch.example"+path, nil))
	cs = rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure || cs[0].Name != "__Host-tagwatch-flow" || cs[0].Path != "/" {
		t.Errorf("https POST = %d, cookies %+v; want 303 and a Secure __Host- cookie", rec.Code, cs)
	}

	// A provider that is known but not served gives a clear page, and no cookie.
	svc, err = enroll.New(enroll.Config{DB: xe.db, PublicURL: "https://tagwatch.example", Providers: map[string]enroll.Provider{"x": nil}})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "https://tagwatch.example"+path, nil))
	if rec.Code != http.StatusServiceUnavailable || len(rec.Result().Cookies()) != 0 {
		t.Errorf("POST without a live provider = %d, cookies %v; want 503, none", rec.Code, rec.Result().Cookies())
	}
}

// TestLandingHidesRequester: the landing page names the operator who
// asks, not who made the link ("tagwatchctl uid:0", an operator's audit
// detail), which stays in the audit trail and the log.
func TestLandingHidesRequester(t *testing.T) {
	xe := newXEnv(t)
	w := testWatch
	const requester = "tagwatchctl uid:0"
	link, rec, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", UserName: "Ada", Provider: "x",
		Watch: &w, CreatedBy: requester})
	if err != nil {
		t.Fatal(err)
	}
	p := newBrowser(t).get(link)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Example Newsroom") {
		t.Fatalf("landing = %d, want 200 naming the operator:\n%s", p.status, p.body)
	}
	for _, bad := range []string{requester, "uid:0", "requested by"} {
		if strings.Contains(p.body, bad) {
			t.Errorf("landing page shows %q:\n%s", bad, p.body)
		}
	}
	if !strings.Contains(xe.logs.String(), `requested_by="`+requester+`"`) {
		t.Errorf("log does not name the requester:\n%s", xe.logs.String())
	}
	found := false
	if err := xe.db.AuditTrail(0, func(ev vault.AuditEvent) error {
		found = found || ev.Kind == vault.AuditEnrollmentCreated && ev.Actor == requester
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("audit trail has no %s event by %q for %s", vault.AuditEnrollmentCreated, requester, rec.ID)
	}
}

// rawPost posts an empty form without following the continue page.
func (b *browser) rawPost(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw), loc: resp.Header.Get("Location")}
}

// TestContinuePage: the landing form's POST answers 303 to the same-origin
// continue page, never to the provider (Chromium checks form-action on
// every redirect of a form submission, and the provider may redirect on
// to a login UI on a third origin); the continue page sends the browser
// on with a meta refresh to the flow's exact authorization request, as
// often as it is loaded, to the browser of the flow only.
func TestContinuePage(t *testing.T) {
	xe := newXEnv(t)
	b := newBrowser(t)
	link, _ := xe.link("continue", "x", "")
	p := b.rawPost(link)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, "/continue?state=") || p.body != "" {
		t.Fatalf("POST landing = %d Location %q, want 303 to /continue?state=: %s", p.status, p.loc, p.body)
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self';") {
		t.Errorf("303 CSP %q", csp)
	}
	state := strings.TrimPrefix(p.loc, "/continue?state=")
	c := b.get(xe.url + p.loc)
	target := enroll.ContinueTarget(t, c.status, c.header, c.body)
	u, err := url.Parse(target)
	if err != nil || !strings.HasPrefix(target, xe.x.URL()+"/i/oauth2/authorize?") || u.Query().Get("state") != state {
		t.Fatalf("continue page target %q, want the authorization request of state %s", target, state)
	}
	if !strings.Contains(c.body, "Continue to X") {
		t.Errorf("continue page does not name X: %s", c.body)
	}
	// Loaded again (a reload, a back button): the same request.
	if again := b.get(xe.url + p.loc); enroll.ContinueTarget(t, again.status, again.header, again.body) != target {
		t.Errorf("continue page changed on a reload")
	}
	// Another browser (no flow cookie) gets the error page, not the URL.
	other := newBrowser(t).get(xe.url + p.loc)
	expectPage(t, other, http.StatusBadRequest, "another browser")
	noSecretsIn(t, other.body, state)
	// Once the flow is finished, the page is gone.
	xe.x.SetAutoApprove("1001")
	at := b.get(target)
	xe.x.SetAutoApprove("")
	if at.status != http.StatusFound || !strings.HasPrefix(at.loc, xe.url+"/callback?") {
		t.Fatalf("authorize = %d %q: %s", at.status, at.loc, at.body)
	}
	if done := b.get(at.loc); done.status != http.StatusSeeOther {
		t.Fatalf("callback = %d: %s", done.status, done.body)
	}
	expectPage(t, b.get(xe.url+p.loc), http.StatusBadRequest, "expired or was already completed")
}
