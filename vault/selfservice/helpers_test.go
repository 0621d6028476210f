package selfservice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

var _ Provider = (*provider.Provider)(nil)
var _ Store = (*vault.DB)(nil)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tokenCounter wraps a provider's HTTP transport and counts its token
// requests (a form with grant_type) and revocations (a form with token).
type tokenCounter struct {
	base                http.RoundTripper
	mu                  sync.Mutex
	tokens, revocations int
}

func (c *tokenCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil {
			c.mu.Lock()
			if form.Has("grant_type") {
				c.tokens++
			} else if form.Has("token") {
				c.revocations++
			}
			c.mu.Unlock()
		}
	}
	return c.base.RoundTrip(req)
}

func (c *tokenCounter) counts() (tokens, revocations int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens, c.revocations
}

// testKey is the fake provider's signing key, made once: RSA keys take a
// while.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// otherKey signs tokens that must fail the signature check.
var otherKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

const (
	testKID      = "test-key-1"
	testClientID = "tagwatch"
	testSecret   = "tagwatch-secret"
)

// fakeOP is an OpenID provider on a real HTTP server, signing with
// testKey: discovery, JWKS, an authorization endpoint that answers at once
// (a code, or the error set), a token endpoint checking PKCE and the
// redirect URI, an end session endpoint, a revocation endpoint. For what a
// real provider will not do: stale auth_time, another nonce, a logout
// token of any shape.
type fakeOP struct {
	srv *httptest.Server
	key *rsa.PrivateKey // signs everything; set at creation

	mu sync.Mutex
	// subject and sid go into the next ID tokens; authTime too (zero: now).
	subject, sid string
	authTime     time.Time
	// answer, when set, is the error the authorization endpoint answers
	// (for prompt=none only when noneOnly).
	answer   string
	noneOnly bool
	// edit changes the claims of the next ID tokens.
	edit func(map[string]any)
	// refresh: the token answer carries a refresh token.
	refresh bool
	// issParam: discovery advertises RFC 9207's iss and callbacks carry it.
	issParam bool

	codes          map[string]opCode
	authorizations []url.Values
	endSessions    []url.Values
	idTokens       []string
	revoked        int
}

type opCode struct {
	nonce, challenge, redirect string
}

func newFakeOP(t testing.TB, issParam bool) *fakeOP { return newFakeOPKey(t, issParam, testKey()) }

// newFakeOPKey is newFakeOP signing with key.
func newFakeOPKey(t testing.TB, issParam bool, key *rsa.PrivateKey) *fakeOP {
	op := &fakeOP{key: key, subject: "alice", sid: "sid-1", codes: map[string]opCode{}, issParam: issParam}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := op.srv.URL
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token", "jwks_uri": u + "/jwks",
			"end_session_endpoint": u + "/logout", "revocation_endpoint": u + "/revoke",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported":          []string{"RS256"},
			"authorization_response_iss_parameter_supported": op.issParam,
			"backchannel_logout_supported":                   true, "backchannel_logout_session_supported": true,
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &op.key.PublicKey, KeyID: testKID, Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		op.mu.Lock()
		op.authorizations = append(op.authorizations, q)
		answer := op.answer
		if op.noneOnly && q.Get("prompt") != "none" {
			answer = ""
		}
		back := url.Values{"state": {q.Get("state")}}
		if op.issParam {
			back.Set("iss", op.srv.URL)
		}
		if answer != "" {
			back.Set("error", answer)
		} else {
			code := rand.Text()
			op.codes[code] = opCode{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
			back.Set("code", code)
		}
		op.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, sec, _ := r.BasicAuth()
		op.mu.Lock()
		defer op.mu.Unlock()
		c, ok := op.codes[r.PostFormValue("code")]
		delete(op.codes, r.PostFormValue("code"))
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		w.Header().Set("Content-Type", "application/json")
		if id != testClientID || sec != testSecret || !ok || c.redirect != r.PostFormValue("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		now := time.Now()
		at := op.authTime
		if at.IsZero() {
			at = now
		}
		claims := map[string]any{"iss": op.srv.URL, "sub": op.subject, "aud": []string{testClientID}, "iat": now.Unix(),
			"exp": now.Add(time.Hour).Unix(), "nonce": c.nonce, "auth_time": at.Unix(), "sid": op.sid}
		if op.edit != nil {
			op.edit(claims)
		}
		idt := signJWT(op.key, map[string]any{"kid": testKID, "typ": "JWT"}, claims)
		op.idTokens = append(op.idTokens, idt)
		answer := map[string]any{"access_token": "at-" + rand.Text(), "token_type": "bearer", "expires_in": 3600, "id_token": idt}
		if op.refresh {
			answer["refresh_token"] = "rt-" + rand.Text()
		}
		json.NewEncoder(w).Encode(answer)
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		op.revoked++
		op.mu.Unlock()
	})
	mux.HandleFunc("GET /logout", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		op.mu.Lock()
		op.endSessions = append(op.endSessions, q)
		op.mu.Unlock()
		http.Redirect(w, r, q.Get("post_logout_redirect_uri")+"?"+url.Values{"state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *fakeOP) set(f func(op *fakeOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

// signJWT signs claims with key (RS256) under header's extra members.
func signJWT(key *rsa.PrivateKey, header, claims map[string]any) string {
	opts := &jose.SignerOptions{}
	for k, v := range header {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// newProvider configures the provider name at issuer, its HTTP client
// counting requests.
func newProvider(t testing.TB, name, issuer, clientID, secretValue string, counter *tokenCounter) *provider.Provider {
	t.Helper()
	hc := &http.Client{Transport: counter, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p, err := provider.New(context.Background(), provider.Config{Name: name, Kind: provider.KindOIDC, Issuer: issuer,
		ClientID: clientID, ClientSecret: secret.NewClientSecret(secretValue), RedirectURL: issuer + "/unused-enroll-callback",
		HTTPClient: hc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clock is the real time moved forward by what a test advanced it: the
// page's sessions expire in a test without waiting, while the providers,
// on real time, stay consistent with it.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// env is a Service on a real HTTP server with a real vault.
type env struct {
	t      testing.TB
	svc    *Service
	url    string // the public URL
	db     *vault.DB
	clock  *clock
	logs   *syncBuffer
	tokens *tokenCounter
}

// newEnv serves a Service with cfg (Store, PublicURL, Now and Logger are
// set here when empty) whose providers providers(url) makes once the
// server's URL (e.url) is known. extra, when set, wraps the handler (a test's own
// routes).
func newEnv(t testing.TB, cfg Config, providers func(e *env) map[string]Provider, extra func(*Service, http.Handler) http.Handler) *env {
	t.Helper()
	return newEnvWith(t, cfg, func(e *env, cfg *Config) { cfg.Providers = providers(e) }, extra)
}

// newEnvWith is newEnv whose setup completes cfg (its providers, its
// Pages) once the server's URL and the vault (e.url, e.db) are known.
func newEnvWith(t testing.TB, cfg Config, setup func(e *env, cfg *Config), extra func(*Service, http.Handler) http.Handler) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}, clock: &clock{}, tokens: &tokenCounter{base: http.DefaultTransport}}
	srv := httptest.NewUnstartedServer(nil)
	e.url = "http://" + srv.Listener.Addr().String()
	e.db = vaulttest.Open(t)
	if cfg.Store == nil {
		cfg.Store = e.db
	}
	cfg.PublicURL = e.url
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	setup(e, &cfg)
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	h := svc.Handler()
	if extra != nil {
		h = extra(svc, h)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

// fakeEnv is newEnv with the provider "corp" at a fakeOP, and user ada
// enrolled with account alice there.
func fakeEnv(t testing.TB, cfg Config, issParam bool) (*env, *fakeOP) {
	t.Helper()
	op := newFakeOP(t, issParam)
	e := newEnv(t, cfg, func(e *env) map[string]Provider {
		return map[string]Provider{"corp": newProvider(t, "corp", op.srv.URL, testClientID, testSecret, e.tokens)}
	}, nil)
	vaulttest.Enroll(t, e.db, vaulttest.Enrollment{User: "ada", Provider: "corp", Subject: "alice"})
	return e, op
}

// browser is a person's browser: a cookie jar, no redirect followed.
type browser struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, jar: jar, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer as the browser got it.
type page struct {
	status int
	loc    string
	body   string
	header http.Header
}

func (p page) String() string { return fmt.Sprintf("%d Location %q: %.300s", p.status, p.loc, p.body) }

// do sends a request; hdr are header name, value pairs. A POST answered
// with a 303 to the continue page goes on to it, as the browser does: the
// page it gets is a 303 to where the continue page leads (the provider).
func (b *browser) do(method, u string, form url.Values, hdr ...string) page {
	b.t.Helper()
	p := b.doRaw(method, u, form, hdr...)
	if method == http.MethodPost && p.status == http.StatusSeeOther && strings.Contains(p.loc, Prefix+"/continue?state=") {
		c := b.follow(u, p)
		p = page{status: http.StatusSeeOther, header: c.header, loc: continueTarget(b.t, c)}
	}
	return p
}

// doRaw sends a request as do, without following the continue page.
func (b *browser) doRaw(method, u string, form url.Values, hdr ...string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	bb, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, loc: resp.Header.Get("Location"), body: string(bb), header: resp.Header}
}

func (b *browser) get(u string, hdr ...string) page { return b.do(http.MethodGet, u, nil, hdr...) }

func (b *browser) post(u string, form url.Values, hdr ...string) page {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return b.do(http.MethodPost, u, form, hdr...)
}

// rawPost posts without following the continue page.
func (b *browser) rawPost(u string, form url.Values) page {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return b.doRaw(http.MethodPost, u, form)
}

var continueRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]*)">`)

// continueTarget checks a continue page (status, headers, body) and
// returns where its meta refresh sends the browser; its link must go to
// the same place.
func continueTarget(t testing.TB, c page) string {
	t.Helper()
	h := c.header
	if c.status != http.StatusOK || h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self';") {
		t.Fatalf("continue page = %v, headers %v", c, h)
	}
	m := continueRefresh.FindStringSubmatch(c.body)
	if m == nil || strings.Contains(c.body, "<script") || strings.Contains(c.body, "<form") {
		t.Fatalf("continue page without its meta refresh, or with a script or form: %s", c.body)
	}
	if !strings.Contains(c.body, `href="`+m[1]+`">Continue to `) {
		t.Fatalf("continue page's link does not go where its refresh does: %s", c.body)
	}
	return html.UnescapeString(m[1])
}

// follow gets p's Location, resolved against base.
func (b *browser) follow(base string, p page) page {
	b.t.Helper()
	if p.status/100 != 3 || p.loc == "" {
		b.t.Fatalf("want a redirect, got %v", p)
	}
	u, err := url.Parse(base)
	if err != nil {
		b.t.Fatal(err)
	}
	l, err := u.Parse(p.loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.get(l.String())
}

// cookie returns the value of the browser's cookie name for u.
func (b *browser) cookie(u, name string) string {
	pu, _ := url.Parse(u)
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// signInFake signs b in at the fake provider "corp" and returns the page
// it lands on.
func (e *env) signInFake(b *browser) page {
	e.t.Helper()
	p := b.post(e.url+Prefix+"/signin", url.Values{"provider": {"corp"}})
	if p.status != http.StatusSeeOther {
		e.t.Fatalf("POST signin = %v, want 303", p)
	}
	p = b.follow(e.url, p) // the provider's authorization endpoint
	p = b.follow(e.url, p) // the callback
	if p.status != http.StatusSeeOther {
		e.t.Fatalf("callback = %v, want 303", p)
	}
	return b.follow(e.url, p)
}

func expectPage(t testing.TB, what string, p page, status int, text string) {
	t.Helper()
	if p.status != status || !strings.Contains(p.body, text) {
		t.Errorf("%s = %v, want %d with %q", what, p, status, text)
	}
}

func noSecretsIn(t *testing.T, what, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s shows the secret %.12s...", what, v)
		}
	}
}
