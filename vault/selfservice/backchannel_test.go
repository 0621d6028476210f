package selfservice

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/vaulttest"
)

// logoutClaims are a valid logout token's claims from op, shaped as Ory
// Hydra v2.3.0 sends them (no exp, no sub).
func logoutClaims(op *fakeOP) map[string]any {
	return map[string]any{"iss": op.srv.URL, "aud": []string{testClientID}, "iat": time.Now().Unix(), "jti": rand.Text(),
		"events": map[string]any{provider.BackChannelLogoutEvent: map[string]any{}}, "sid": "sid-1"}
}

var hydraHeader = map[string]any{"kid": testKID, "typ": "JWT"}

// postLogout posts a logout token as a provider does.
func (e *env) postLogout(form url.Values) page {
	e.t.Helper()
	resp, err := http.PostForm(e.url+Prefix+"/backchannel-logout", form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(body), header: resp.Header}
}

func tokenForm(tok string) url.Values { return url.Values{"logout_token": {tok}} }

// live reports whether the session b holds is live.
func (e *env) live(b *browser) bool {
	_, st := e.svc.sessions.lookup(b.cookie(e.url, SessionCookie), e.clock.Now())
	return st == sessionLive
}

func expectLogoutRefused(t *testing.T, p page) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	err := json.Unmarshal([]byte(p.body), &body)
	if p.status != http.StatusBadRequest || p.header.Get("Cache-Control") != "no-store" ||
		p.header.Get("Content-Type") != "application/json" || err != nil || body.Error != "invalid_request" || body.Description == "" {
		t.Errorf("logout token answer = %d, Cache-Control %q, Content-Type %q: %s; want 400, no-store, JSON invalid_request with a description",
			p.status, p.header.Get("Cache-Control"), p.header.Get("Content-Type"), p.body)
	}
}

// TestLogoutTokens: each malformed logout token is refused with 400,
// no-store and a JSON error, and ends nothing; each valid shape is
// accepted with 200 and no-store.
func TestLogoutTokens(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	b := newBrowser(t)
	e.signInFake(b) // a session with sid-1, the sid every token below names

	claims := func(edit func(c map[string]any)) func() string {
		return func() string {
			c := logoutClaims(op)
			edit(c)
			return signJWT(testKey(), hydraHeader, c)
		}
	}
	header := func(h map[string]any) func() string {
		return func() string { return signJWT(testKey(), h, logoutClaims(op)) }
	}
	set := func(k string, v any) func() string { return claims(func(c map[string]any) { c[k] = v }) }
	del := func(k string) func() string { return claims(func(c map[string]any) { delete(c, k) }) }
	now := time.Now()
	refused := []struct {
		name  string
		token func() string
		why   string
	}{
		{"bad signature (another key, same kid)", func() string { return signJWT(otherKey(), hydraHeader, logoutClaims(op)) }, "failed to verify signature"},
		{"unknown kid", func() string {
			return signJWT(otherKey(), map[string]any{"kid": "nope", "typ": "JWT"}, logoutClaims(op))
		}, "failed to verify signature"},
		{"signature cut off", func() string {
			t := signJWT(testKey(), hydraHeader, logoutClaims(op))
			return t[:strings.LastIndex(t, ".")+1]
		}, "failed to verify signature"},
		{"alg none", func() string { return unsigned(map[string]any{"alg": "none", "typ": "JWT"}, logoutClaims(op)) }, "unexpected signature algorithm \\\"none\\\""},
		{"HS256 keyed with the provider's public key", func() string { return hmacSigned(logoutClaims(op)) }, "unexpected signature algorithm \\\"HS256\\\""},
		{"not a JWT", func() string { return "not-a-jwt" }, "not a JWT"},
		{"empty", func() string { return "" }, "not a JWT"},
		{"larger than 16 KiB", set("pad", strings.Repeat("x", 17<<10)), "too large"},
		{"wrong iss (not a provider here)", set("iss", "https://idp.evil.example"), "issuer is not a provider"},
		{"iss with a trailing slash", func() string { return set("iss", op.srv.URL+"/")() }, "issuer is not a provider"},
		{"no iss", del("iss"), "not a JWT with an iss"},
		{"wrong aud", set("aud", []string{"another-client"}), "expected audience"},
		{"no aud", del("aud"), "expected audience"},
		{"several audiences, no azp", set("aud", []string{testClientID, "another-client"}), "azp"},
		{"azp of another client", set("azp", "another-client"), "azp \\\"another-client\\\" is not this client"},
		{"missing iat", del("iat"), "iat is missing"},
		{"iat not a number", set("iat", "yesterday"), "failed to unmarshal claims"},
		{"iat too old (no exp)", set("iat", now.Add(-provider.DefaultLogoutTokenMaxAge-time.Minute).Unix()), "iat is more than 2m0s old"},
		{"iat too old (exp still ahead)", claims(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(time.Hour).Unix()
		}), "iat is more than 2m0s old"},
		{"iat in the future", set("iat", now.Add(5*time.Minute).Unix()), "iat is in the future"},
		{"exp past", set("exp", now.Add(-time.Second).Unix()), "has expired (exp)"},
		{"exp not a number", set("exp", "soon"), "failed to unmarshal claims"},
		{"nbf in the future", set("nbf", now.Add(5*time.Minute).Unix()), "nbf is in the future"},
		{"missing jti", del("jti"), "jti is missing"},
		{"empty jti", set("jti", ""), "jti is missing"},
		{"jti not a string", set("jti", 42), "jti is not a string"},
		{"missing events", del("events"), "events is missing"},
		{"events not an object", set("events", []string{provider.BackChannelLogoutEvent}), "events is not a JSON object"},
		{"events without the logout event", set("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}), "events has no"},
		{"logout event is a string", set("events", map[string]any{provider.BackChannelLogoutEvent: ""}), "event is not a JSON object"},
		{"logout event is an array", set("events", map[string]any{provider.BackChannelLogoutEvent: []any{}}), "event is not a JSON object"},
		{"logout event is null", set("events", map[string]any{provider.BackChannelLogoutEvent: nil}), "event is not a JSON object"},
		{"nonce present", set("nonce", "n-1"), "must not carry a nonce"},
		{"nonce present, empty", set("nonce", ""), "must not carry a nonce"},
		{"neither sub nor sid", del("sid"), "neither sub nor sid"},
		{"sid empty", set("sid", ""), "sub or sid is empty"},
		{"sid not a string", set("sid", 7), "sid is not a string"},
		{"sub empty beside sid", set("sub", ""), "sub or sid is empty"},
		{"typ at+jwt", header(map[string]any{"kid": testKID, "typ": "at+jwt"}), "typ \\\"at+jwt\\\" is neither"},
		{"typ JOSE", header(map[string]any{"kid": testKID, "typ": "JOSE"}), "typ \\\"JOSE\\\" is neither"},
		{"typ a number", header(map[string]any{"kid": testKID, "typ": 1}), "is neither logout+jwt nor JWT"},
	}
	for _, c := range refused {
		t.Run("refused: "+c.name, func(t *testing.T) {
			e.t = t
			p := e.postLogout(tokenForm(c.token()))
			expectLogoutRefused(t, p)
			if !strings.Contains(p.body, c.why) {
				t.Errorf("logout token refused with %s, want the reason %q", p.body, c.why)
			}
			if !e.live(b) {
				t.Fatalf("a refused logout token ended the session")
			}
		})
	}
	t.Run("refused: request shapes", func(t *testing.T) {
		e.t = t
		good := signJWT(testKey(), hydraHeader, logoutClaims(op))
		expectLogoutRefused(t, e.postLogout(url.Values{"logout_token": {good, good}}))
		expectLogoutRefused(t, e.postLogout(url.Values{"token": {good}}))
		resp, err := http.Post(e.url+Prefix+"/backchannel-logout", "application/json", strings.NewReader(`{"logout_token":"`+good+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("JSON body = %d, Cache-Control %q; want 400 no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		resp, err = http.Get(e.url + Prefix + "/backchannel-logout")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET = %d, Cache-Control %q; want 405 no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		if !e.live(b) {
			t.Fatalf("a refused logout request ended the session")
		}
	})

	accepted := []struct {
		name  string
		token func() string
	}{
		{"Hydra's shape: typ JWT, sid, no exp, no sub", header(hydraHeader)},
		{"typ logout+jwt", header(map[string]any{"kid": testKID, "typ": "logout+jwt"})},
		{"typ application/logout+jwt", header(map[string]any{"kid": testKID, "typ": "application/logout+jwt"})},
		{"no typ", header(map[string]any{"kid": testKID})},
		{"exp ahead, sub and sid", claims(func(c map[string]any) { c["exp"], c["sub"] = now.Add(2*time.Minute).Unix(), "alice" })},
		{"aud a string, azp this client", claims(func(c map[string]any) { c["aud"], c["azp"] = testClientID, testClientID })},
		{"sub only", claims(func(c map[string]any) { delete(c, "sid"); c["sub"] = "alice" })},
	}
	for _, c := range accepted {
		t.Run("accepted: "+c.name, func(t *testing.T) {
			e.t = t
			b := newBrowser(t)
			e.signInFake(b)
			tok := c.token()
			p := e.postLogout(tokenForm(tok))
			if p.status != http.StatusOK || p.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("logout token = %v, Cache-Control %q; want 200 no-store", p, p.header.Get("Cache-Control"))
			}
			if e.live(b) {
				t.Errorf("a valid logout token left the session it names")
			}
			// The same token again is a replay.
			e.signInFake(b)
			expectLogoutRefused(t, e.postLogout(tokenForm(tok)))
			if !e.live(b) {
				t.Errorf("a replayed logout token ended a session")
			}
		})
	}
}

// unsigned is a JWT with alg none.
func unsigned(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// hmacSigned is the algorithm-confusion attack: HS256 keyed with the
// provider's public key.
func hmacSigned(claims map[string]any) string {
	der, err := x509.MarshalPKIXPublicKey(&testKey().PublicKey)
	if err != nil {
		panic(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: der}, (&jose.SignerOptions{}).WithHeader("kid", testKID).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	c, _ := json.Marshal(claims)
	jws, err := sig.Sign(c)
	if err != nil {
		panic(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// TestLogoutEndsOnlyMatching: a logout token ends the page sessions of its
// issuer and sid (and sub, when both), or issuer and sub; nothing else:
// not another provider's sessions with the same sid, not the user's
// grants or watches.
func TestLogoutEndsOnlyMatching(t *testing.T) {
	t.Parallel()
	op, other := newFakeOP(t, false), newFakeOPKey(t, false, otherKey())
	e := newEnv(t, Config{}, func(e *env) map[string]Provider {
		return map[string]Provider{
			"corp":  newProvider(t, "corp", op.srv.URL, testClientID, testSecret, e.tokens),
			"other": newProvider(t, "other", other.srv.URL, testClientID, testSecret, e.tokens),
		}
	}, nil)
	ada := vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "corp", Subject: "alice"})
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "other", Subject: "alice"})
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "bob", Provider: "corp", Subject: "bob-sub"})

	signIn := func(at *fakeOP, name, sub, sid string) *browser {
		at.set(func(op *fakeOP) { op.subject, op.sid = sub, sid })
		b := newBrowser(t)
		p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {name}})
		p = b.follow(e.url, b.follow(e.url, p))
		expectPage(t, "sign-in at "+name, b.follow(e.url, p), http.StatusOK, "Signed in as")
		return b
	}
	browsers := map[string]*browser{
		"corp alice sid-1":  signIn(op, "corp", "alice", "sid-1"),
		"corp alice sid-2":  signIn(op, "corp", "alice", "sid-2"),
		"corp bob sid-3":    signIn(op, "corp", "bob-sub", "sid-3"),
		"other alice sid-1": signIn(other, "other", "alice", "sid-1"),
	}
	g0, err := e.db.Grant(ada.Grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	w0, err := e.db.ListWatches("ada")
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name   string
		claims func(c map[string]any)
		ended  []string
	}{
		{"sid-1 at corp", func(c map[string]any) {}, []string{"corp alice sid-1"}},
		{"sid-2 with another sub", func(c map[string]any) { c["sid"], c["sub"] = "sid-2", "bob-sub" }, nil},
		{"an unknown sid", func(c map[string]any) { c["sid"] = "sid-9" }, nil},
		{"every session of alice at corp", func(c map[string]any) { delete(c, "sid"); c["sub"] = "alice" }, []string{"corp alice sid-2"}},
	}
	ended := map[string]bool{}
	for _, s := range steps {
		c := logoutClaims(op)
		s.claims(c)
		if p := e.postLogout(tokenForm(signJWT(testKey(), hydraHeader, c))); p.status != http.StatusOK {
			t.Fatalf("%s: logout token = %v, want 200", s.name, p)
		}
		for _, n := range s.ended {
			ended[n] = true
		}
		for name, b := range browsers {
			if e.live(b) == ended[name] {
				t.Errorf("after the logout token of %s: session %s live %t, want %t", s.name, name, e.live(b), !ended[name])
			}
		}
	}
	// Signing out is not unenrolling.
	g1, err := e.db.Grant(ada.Grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := e.db.ListWatches("ada")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g0, g1) || !reflect.DeepEqual(w0, w1) || g1.State != vault.GrantActive {
		t.Errorf("grant and watches after the logouts:\n%+v\n%+v\nwant unchanged:\n%+v\n%+v", g1, w1, g0, w0)
	}
	if !strings.Contains(e.logs.String(), "sessions_ended=1") {
		t.Errorf("log does not say how many sessions ended: %s", e.logs.String())
	}
}

// TestLogoutReplayClocks: a replayed logout token is refused even when the
// page's clock runs ahead of the provider's.
func TestLogoutReplayClocks(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	tok := signJWT(testKey(), hydraHeader, logoutClaims(op))
	e.clock.Advance(10 * time.Minute)
	if p := e.postLogout(tokenForm(tok)); p.status != http.StatusOK {
		t.Fatalf("logout token = %v, want 200", p)
	}
	e.clock.Advance(time.Minute)
	expectLogoutRefused(t, e.postLogout(tokenForm(tok)))
}
