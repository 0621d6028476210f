package xsandbox

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-padding-to-be-long"

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (e *env) authorizeParams(state string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {testClientID},
		"redirect_uri":          {e.redirectURI()},
		"scope":                 {"tweet.read users.read offline.access"},
		"state":                 {state},
		"code_challenge":        {challenge(verifier)},
		"code_challenge_method": {"S256"},
	}
}

var (
	reqFieldRE  = regexp.MustCompile(`name="request" value="([^"]+)"`)
	selectedRE  = regexp.MustCompile(`<option value="([^"]+)" selected>`)
	tokenBodyRE = regexp.MustCompile(`^\{"token_type":"bearer","expires_in":7200,"access_token":"[A-Za-z0-9_-]{20,}","scope":"tweet.read users.read offline.access","refresh_token":"[A-Za-z0-9_-]{20,}"\}$`)
)

func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// consent opens the consent page in a browser with a cookie jar, checks it,
// and submits it with action, following redirects to the callback.
func (e *env) consent(b *http.Client, state, action, username string) url.Values {
	e.t.Helper()
	resp, err := b.Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams(state).Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("consent page = %d %s", resp.StatusCode, page)
	}
	m := reqFieldRE.FindSubmatch(page)
	if m == nil {
		e.t.Fatalf("consent page has no request field:\n%s", page)
	}
	if sel := selectedRE.FindSubmatch(page); sel != nil {
		e.t.Fatalf("consent page preselects %q; the user must pick the account (C16)", sel[1])
	}
	if username == "" {
		username = testUsers[0].Username
	}
	resp, err = b.PostForm(e.s.URL()+string(EndpointAuthorize), url.Values{"request": {string(m[1])}, "action": {action}, "username": {username}})
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/callback" {
		e.t.Fatalf("consent submit ended at %s with %d %s, want the callback", resp.Request.URL, resp.StatusCode, body)
	}
	return e.cb.last()
}

func TestAuthorizationCodeFlowAndRotation(t *testing.T) {
	for _, family := range []bool{false, true} {
		t.Run(map[bool]string{false: "reuse refused", true: "reuse revokes family"}[family], func(t *testing.T) {
			e := newEnv(t)
			e.s.SetReuseRevokesFamily(family)
			state := strings.Repeat("s", 500)
			cb := e.consent(browser(t), state, "authorize", "bob")
			if cb.Get("state") != state || cb.Get("code") == "" || cb.Has("iss") {
				t.Fatalf("callback = %v, want state echoed, a code and no iss", cb)
			}
			form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Get("code")},
				"redirect_uri": {e.redirectURI()}, "code_verifier": {verifier}}
			st, body := e.mustPost(EndpointToken, form, true)
			if st != http.StatusOK || !tokenBodyRE.MatchString(body) {
				t.Fatalf("code exchange = %d %s, want X's token response", st, body)
			}
			tr := decodeToken(t, body)
			if st, _, me := e.get(EndpointUsersMe, tr.AccessToken, nil); st != 200 || me != `{"data":{"id":"102","name":"Bob B","username":"bob"}}` {
				t.Fatalf("users/me = %d %s, want bob", st, me)
			}
			// The code is single use.
			if st, body := e.mustPost(EndpointToken, form, true); st != 400 || body != `{"error":"invalid_request","error_description":"Value passed for the authorization code was invalid."}` {
				t.Fatalf("second exchange = %d %s", st, body)
			}

			seen := map[string]bool{tr.RefreshToken: true}
			old := []string{tr.RefreshToken}
			cur := tr
			for i := range 10 {
				e.clock.Advance(time.Hour)
				st, body := e.refresh(cur.RefreshToken)
				if st != 200 || !tokenBodyRE.MatchString(body) {
					t.Fatalf("refresh %d = %d %s", i, st, body)
				}
				next := decodeToken(t, body)
				if seen[next.RefreshToken] || next.AccessToken == cur.AccessToken {
					t.Fatalf("refresh %d did not rotate", i)
				}
				seen[next.RefreshToken] = true
				old = append(old, next.RefreshToken)
				cur = next
			}
			if st, _, _ := e.get(EndpointUsersMe, cur.AccessToken, nil); st != 200 {
				t.Fatalf("users/me with the newest token = %d", st)
			}
			// Reuse of a spent refresh token.
			st, body = e.refresh(old[3])
			if st != 400 || body != `{"error":"invalid_request","error_description":"Value passed for the token was invalid."}` {
				t.Fatalf("reuse = %d %s, want X's 400", st, body)
			}
			stats := e.s.Stats()
			if stats.RefreshReuses != 1 || stats.TokenRequests["refresh_token"] != 11 || stats.TokenRequests["authorization_code"] != 2 {
				t.Fatalf("stats = %+v", stats)
			}
			meSt, _, _ := e.get(EndpointUsersMe, cur.AccessToken, nil)
			refSt, _ := e.refresh(cur.RefreshToken)
			if family {
				if meSt != 401 || refSt != 400 || stats.FamilyRevocations != 1 {
					t.Fatalf("after reuse with the switch on: users/me %d, refresh %d, revocations %d; want 401, 400, 1", meSt, refSt, stats.FamilyRevocations)
				}
			} else if meSt != 200 || refSt != 200 || stats.FamilyRevocations != 0 {
				t.Fatalf("after reuse with the switch off: users/me %d, refresh %d; want 200, 200", meSt, refSt)
			}
		})
	}
}

func TestConsentCancelAndCookie(t *testing.T) {
	e := newEnv(t)
	cb := e.consent(browser(t), "st-1", "cancel", "")
	if cb.Get("error") != "access_denied" || cb.Get("state") != "st-1" || cb.Has("code") {
		t.Fatalf("cancel callback = %v", cb)
	}
	// A form posted without the session cookie (another browser) is refused.
	b := browser(t)
	resp, err := b.Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("st-2").Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req := reqFieldRE.FindSubmatch(page)[1]
	resp, err = http.PostForm(e.s.URL()+string(EndpointAuthorize), url.Values{"request": {string(req)}, "action": {"authorize"}, "username": {"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("consent without cookie = %d, want 403", resp.StatusCode)
	}
	// An unknown username shows the page again; a known one then works.
	resp, err = b.PostForm(e.s.URL()+string(EndpointAuthorize), url.Values{"request": {string(req)}, "action": {"authorize"}, "username": {"mallory"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "no sandbox account") {
		t.Fatalf("unknown username = %d", resp.StatusCode)
	}
	resp, err = b.PostForm(e.s.URL()+string(EndpointAuthorize), url.Values{"request": {string(req)}, "action": {"authorize"}, "username": {"@Carol"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cb := e.cb.last(); cb.Get("state") != "st-2" || cb.Get("code") == "" {
		t.Fatalf("callback = %v", cb)
	}
	st := e.s.Stats()
	if st.Consents != 1 || st.Denials != 1 || st.AuthorizeRequests != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConsentPage(t *testing.T) {
	e := newEnv(t)
	resp, err := browser(t).Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("x").Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`name="viewport"`, `<style>`, `value="authorize"`, `value="cancel"`, `method="post"`, "Authorize app", "Cancel", "offline.access", "@carol"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "<link", "@import"} {
		if strings.Contains(string(page), bad) {
			t.Errorf("consent page has %q: no external assets or scripts allowed", bad)
		}
	}
}

func TestAutoApprove(t *testing.T) {
	e := newEnv(t)
	e.s.SetAutoApprove("103")
	c := &http.Client{Timeout: 10 * time.Second} // no jar: no page is shown
	resp, err := c.Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("auto").Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb := e.cb.last()
	st, body := e.mustPost(EndpointToken, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Get("code")},
		"redirect_uri": {e.redirectURI()}, "code_verifier": {verifier}}, true)
	if st != 200 {
		t.Fatalf("exchange = %d %s", st, body)
	}
	if _, _, me := e.get(EndpointUsersMe, decodeToken(t, body).AccessToken, nil); !strings.Contains(me, `"username":"carol"`) {
		t.Fatalf("users/me = %s, want carol", me)
	}
	e.s.SetAutoApprove("")
	resp, err = c.Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("auto").Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != string(EndpointAuthorize) {
		t.Fatalf("with auto-approve off, ended at %s, want the consent page", resp.Request.URL)
	}
}

func TestAuthorizeValidation(t *testing.T) {
	e := newEnv(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name      string
		mod       func(url.Values)
		status    int
		wantError string // error= in the redirect
	}{
		{"valid", func(url.Values) {}, 200, ""},
		{"unknown client", func(q url.Values) { q.Set("client_id", "other") }, 400, ""},
		{"redirect not exact", func(q url.Values) { q.Set("redirect_uri", e.redirectURI()+"/") }, 400, ""},
		{"no state", func(q url.Values) { q.Del("state") }, 400, ""},
		{"state too long", func(q url.Values) { q.Set("state", strings.Repeat("a", 501)) }, 400, ""},
		{"state 500", func(q url.Values) { q.Set("state", strings.Repeat("a", 500)) }, 200, ""},
		{"plain refused", func(q url.Values) {
			q.Set("code_challenge_method", "plain")
			q.Set("code_challenge", verifier)
		}, 302, "invalid_request"},
		{"no challenge", func(q url.Values) { q.Del("code_challenge") }, 302, "invalid_request"},
		{"no method", func(q url.Values) { q.Del("code_challenge_method") }, 302, "invalid_request"},
		{"token response type", func(q url.Values) { q.Set("response_type", "token") }, 302, "unsupported_response_type"},
		{"unknown scope", func(q url.Values) { q.Set("scope", "tweet.read openid") }, 302, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := e.authorizeParams("state-" + tt.name)
			tt.mod(q)
			resp, err := noFollow.Get(e.s.URL() + string(EndpointAuthorize) + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("authorize = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 302 {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if !strings.HasPrefix(loc.String(), e.redirectURI()) || loc.Query().Get("error") != tt.wantError || loc.Query().Get("state") != q.Get("state") {
					t.Fatalf("Location = %s, want error=%s and the state", loc, tt.wantError)
				}
			}
		})
	}
}

// code runs the consent with auto-approve and returns a fresh code.
func (e *env) code(scope string) string {
	e.t.Helper()
	e.s.SetAutoApprove("101")
	defer e.s.SetAutoApprove("")
	q := e.authorizeParams("s")
	q.Set("scope", scope)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(e.s.URL() + string(EndpointAuthorize) + "?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return loc.Query().Get("code")
}

func TestTokenEndpoint(t *testing.T) {
	const badCode = `{"error":"invalid_request","error_description":"Value passed for the authorization code was invalid."}`
	const badToken = `{"error":"invalid_request","error_description":"Value passed for the token was invalid."}`
	const noAuth = `{"error":"unauthorized_client","error_description":"Missing valid authorization header"}`
	e := newEnv(t)
	exchange := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.redirectURI()}, "code_verifier": {verifier}}
	}
	tests := []struct {
		name   string
		form   func() url.Values
		basic  bool
		status int
		body   string // exact, when set
	}{
		{"no basic auth", func() url.Values { return exchange(e.code("tweet.read users.read")) }, false, 401, noAuth},
		{"unknown code", func() url.Values { return exchange("nope") }, true, 400, badCode},
		{"expired code", func() url.Values {
			c := e.code("tweet.read users.read")
			e.clock.Advance(31 * time.Second)
			return exchange(c)
		}, true, 400, badCode},
		{"code at 29 s", func() url.Values {
			c := e.code("tweet.read users.read")
			e.clock.Advance(29 * time.Second)
			return exchange(c)
		}, true, 200, ""},
		{"wrong verifier", func() url.Values {
			f := exchange(e.code("tweet.read users.read"))
			f.Set("code_verifier", verifier+"x")
			return f
		}, true, 400, badCode},
		{"wrong redirect", func() url.Values {
			f := exchange(e.code("tweet.read users.read"))
			f.Set("redirect_uri", e.redirectURI()+"?x=1")
			return f
		}, true, 400, badCode},
		{"missing verifier", func() url.Values {
			f := exchange(e.code("tweet.read users.read"))
			f.Del("code_verifier")
			return f
		}, true, 400, `{"error":"invalid_request","error_description":"Missing required parameter [code_verifier]."}`},
		{"no offline.access no refresh token", func() url.Values { return exchange(e.code("tweet.read users.read")) }, true, 200, ""},
		{"unknown refresh token", func() url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}
		}, true, 400, badToken},
		{"unknown grant type", func() url.Values { return url.Values{"grant_type": {"password"}} }, true, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := e.mustPost(EndpointToken, tt.form(), tt.basic)
			if st != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("token = %d %s, want %d %s", st, body, tt.status, tt.body)
			}
			if st == 200 && (strings.Contains(body, "refresh_token") || !strings.Contains(body, `"scope":"tweet.read users.read"`)) {
				t.Fatalf("token = %s, want no refresh token without offline.access", body)
			}
		})
	}
	// A wrong secret is refused like a missing one.
	req, _ := http.NewRequest("POST", e.s.URL()+string(EndpointToken), strings.NewReader(exchange(e.code("tweet.read users.read")).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, "wrong")
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(b) != noAuth {
		t.Fatalf("wrong secret = %d %s", resp.StatusCode, b)
	}
}

func TestAccessTokenLifetime(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AccessTokenTTL = 10 * time.Minute })
	a, r := e.grant("101")
	e.clock.Advance(10*time.Minute - time.Second)
	if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 200 {
		t.Fatalf("users/me before expiry = %d", st)
	}
	e.clock.Advance(time.Second)
	st, _, body := e.get(EndpointUsersMe, a, nil)
	if st != 401 || body != `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}` {
		t.Fatalf("users/me after expiry = %d %s", st, body)
	}
	st, body = e.refresh(r)
	if st != 200 || decodeToken(t, body).ExpiresIn != 600 {
		t.Fatalf("refresh = %d %s, want expires_in 600", st, body)
	}
}

// TestRevoke: revocation per token family (SetRevokeEndsAuthorization
// off); TestRevokeEndsAuthorization has X's default.
func TestRevoke(t *testing.T) {
	e := newEnv(t)
	e.s.SetRevokeEndsAuthorization(false)
	tests := []struct {
		name      string
		which     string // "access", "refresh", "unknown"
		wantMe    int
		wantRefSt int
	}{
		{"access token", "access", 401, 200},
		{"refresh token kills family", "refresh", 401, 400},
		{"unknown token", "unknown", 200, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, r := e.grant("102")
			tok := map[string]string{"access": a, "refresh": r, "unknown": "nope"}[tt.which]
			st, body := e.mustPost(EndpointRevoke, url.Values{"token": {tok}, "token_type_hint": {"refresh_token"}}, true)
			if st != 200 || body != `{"revoked":true}` {
				t.Fatalf("revoke = %d %s", st, body)
			}
			if st, _, _ := e.get(EndpointUsersMe, a, nil); st != tt.wantMe {
				t.Fatalf("users/me = %d, want %d", st, tt.wantMe)
			}
			if st, _ := e.refresh(r); st != tt.wantRefSt {
				t.Fatalf("refresh = %d, want %d", st, tt.wantRefSt)
			}
		})
	}
	if st, body := e.mustPost(EndpointRevoke, url.Values{"token": {"x"}}, false); st != 401 || body != `{"error":"unauthorized_client","error_description":"Missing valid authorization header"}` {
		t.Fatalf("revoke without auth = %d %s", st, body)
	}
}

func TestRevokeUser(t *testing.T) {
	e := newEnv(t)
	a1, r1 := e.grant("101")
	a2, r2 := e.grant("101")
	b, _ := e.grant("102")
	e.s.RevokeUser("101")
	for _, a := range []string{a1, a2} {
		if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 401 {
			t.Fatalf("users/me after RevokeUser = %d, want 401", st)
		}
	}
	for _, r := range []string{r1, r2} {
		if st, _ := e.refresh(r); st != 400 {
			t.Fatalf("refresh after RevokeUser = %d, want 400", st)
		}
	}
	if st, _, _ := e.get(EndpointUsersMe, b, nil); st != 200 {
		t.Fatalf("other user's token = %d, want 200", st)
	}
	if n := e.s.Stats().UserRevocations; n != 2 {
		t.Fatalf("UserRevocations = %d, want 2", n)
	}
	if _, _, err := e.s.Grant("999", nil); err != ErrUnknownUser {
		t.Fatalf("Grant(unknown) = %v, want ErrUnknownUser", err)
	}
}

func TestDropAfterRotate(t *testing.T) {
	e := newEnv(t)
	e.s.SetReuseRevokesFamily(true)
	a, r := e.grant("101")
	e.s.DropAfterRotateNext(1)
	if _, body, err := e.post(EndpointToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r}}, true); err == nil {
		t.Fatalf("refresh with drop got a response %q, want a dropped connection", body)
	}
	if st := e.s.Stats(); st.Drops != 1 || st.TokenRequests["refresh_token"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	// The rotation was stored: the old refresh token is spent, and retrying
	// it (what a naive client does) kills the family.
	if st, _ := e.refresh(r); st != 400 {
		t.Fatalf("retry with the spent token = %d, want 400", st)
	}
	if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 401 {
		t.Fatalf("access token after family revocation = %d, want 401", st)
	}
}

func TestPublicClient(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ClientSecret = "" })
	code := e.code("tweet.read users.read offline.access")
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.redirectURI()}, "code_verifier": {verifier}, "client_id": {testClientID}}
	if st, body := e.mustPost(EndpointToken, f, false); st != 200 {
		t.Fatalf("public client exchange = %d %s", st, body)
	}
	f.Set("client_id", "other")
	if st, _ := e.mustPost(EndpointToken, f, false); st != 401 {
		t.Fatalf("public client with a wrong client_id = %d, want 401", st)
	}
}
