package provider_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// signInOP is an OpenID provider's discovery, JWKS and token endpoint,
// recording the token requests' forms.
type signInOP struct {
	srv   *httptest.Server
	key   *rsa.PrivateKey
	mu    sync.Mutex
	forms []url.Values
}

func newSignInOP(t *testing.T, endSession bool) *signInOP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op := &signInOP{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := op.srv.URL
		d := map[string]any{"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token", "jwks_uri": u + "/jwks",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"}}
		if endSession {
			d["end_session_endpoint"] = u + "/logout?tenant=a"
		}
		json.NewEncoder(w).Encode(d)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		op.mu.Lock()
		op.forms = append(op.forms, r.PostForm)
		op.mu.Unlock()
		io.WriteString(w, `{"access_token":"at","token_type":"bearer","expires_in":60}`)
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *signInOP) provider(t *testing.T, now func() time.Time) *provider.Provider {
	p, err := provider.New(context.Background(), provider.Config{Name: "corp", Kind: provider.KindOIDC, Issuer: op.srv.URL, ClientID: "c",
		ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, Now: now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (op *signInOP) sign(t *testing.T, claims map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: op.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := sig.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// TestSignInURL: a sign-in asks for the least scope, with the page's
// redirect URI, PKCE S256, and for OpenID Connect a nonce and the prompt
// and max_age asked; X gets neither prompt nor max_age. Enrollment's
// request is unchanged.
func TestSignInURL(t *testing.T) {
	oidcP := newSignInOP(t, false).provider(t, nil)
	x := xProvider(t, "http://127.0.0.1:9/x", nil)
	const page = "http://127.0.0.1:9/account/callback"
	cases := []struct {
		name string
		p    *provider.Provider
		req  provider.SignInRequest
		want map[string]string // "" means absent
	}{
		{"OIDC interactive", oidcP, provider.SignInRequest{}, map[string]string{"scope": "openid", "nonce": "n", "prompt": "", "max_age": ""}},
		{"OIDC silent", oidcP, provider.SignInRequest{Prompt: "none"}, map[string]string{"scope": "openid", "prompt": "none", "max_age": ""}},
		{"OIDC recent", oidcP, provider.SignInRequest{MaxAge: 5 * time.Minute}, map[string]string{"prompt": "", "max_age": "300"}},
		{"OIDC max_age rounded up", oidcP, provider.SignInRequest{MaxAge: 1500 * time.Millisecond}, map[string]string{"max_age": "2"}},
		{"X", x, provider.SignInRequest{Prompt: "none", MaxAge: time.Minute}, map[string]string{"scope": "users.read tweet.read", "nonce": "", "prompt": "", "max_age": ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.State, c.req.Verifier, c.req.Nonce, c.req.RedirectURL = "st", strings.Repeat("v", 43), "n", page
			u, err := url.Parse(c.p.SignInURL(c.req))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			base := map[string]string{"response_type": "code", "state": "st", "redirect_uri": page, "code_challenge_method": "S256"}
			for k, v := range c.want {
				base[k] = v
			}
			for k, v := range base {
				if got, has := q.Get(k), q.Has(k); got != v || (v == "") == has {
					t.Errorf("SignInURL(%+v) %s = %q (present %t), want %q", c.req, k, got, has, v)
				}
			}
			if len(q.Get("code_challenge")) != 43 {
				t.Errorf("code_challenge %q, want an S256 challenge", q.Get("code_challenge"))
			}
		})
	}
	// Enrollment's request is what it was.
	q := mustParse(t, oidcP.AuthCodeURL("st", strings.Repeat("v", 43), "n")).Query()
	if q.Get("scope") != "openid offline_access" || q.Get("prompt") != "consent" || q.Get("redirect_uri") != redirect || q.Has("max_age") {
		t.Errorf("AuthCodeURL = %v, want enrollment's scope, prompt=consent and redirect URI", q)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestExchangeSignIn: the code of a sign-in is redeemed with the
// request's own redirect URI (RFC 6749 section 4.1.3).
func TestExchangeSignIn(t *testing.T) {
	op := newSignInOP(t, false)
	p := op.provider(t, nil)
	if _, err := p.ExchangeSignIn(context.Background(), "code-1", "ver-1", "http://127.0.0.1:9/account/callback"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exchange(context.Background(), "code-2", "ver-2"); err != nil {
		t.Fatal(err)
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if got := op.forms[0]; got.Get("redirect_uri") != "http://127.0.0.1:9/account/callback" || got.Get("code") != "code-1" ||
		got.Get("code_verifier") != "ver-1" || got.Get("grant_type") != "authorization_code" {
		t.Errorf("ExchangeSignIn sent %v", got)
	}
	if got := op.forms[1].Get("redirect_uri"); got != redirect {
		t.Errorf("Exchange sent redirect_uri %q, want enrollment's %q", got, redirect)
	}
}

// TestEndSessionURL: RP-Initiated Logout's request, keeping the
// endpoint's own query, never with an id_token_hint; the optional
// parameters only when given; none without an end session endpoint.
func TestEndSessionURL(t *testing.T) {
	p := newSignInOP(t, true).provider(t, nil)
	u := mustParse(t, p.EndSessionURL("alice", "http://127.0.0.1:9/account/signed-out", "st"))
	q := u.Query()
	if u.Path != "/logout" || q.Get("tenant") != "a" || q.Has("id_token_hint") || q.Get("client_id") != "c" || q.Get("logout_hint") != "alice" ||
		q.Get("post_logout_redirect_uri") != "http://127.0.0.1:9/account/signed-out" || q.Get("state") != "st" {
		t.Errorf("EndSessionURL = %s", u)
	}
	u = mustParse(t, p.EndSessionURL("", "", ""))
	if q := u.Query(); len(q) != 2 || q.Get("tenant") != "a" || q.Get("client_id") != "c" {
		t.Errorf("EndSessionURL with client_id only = %s", u)
	}
	if !p.HasEndSession() || !strings.HasPrefix(p.EndSessionOrigin(), "http://127.0.0.1:") {
		t.Errorf("HasEndSession %t, EndSessionOrigin %q", p.HasEndSession(), p.EndSessionOrigin())
	}
	none := newSignInOP(t, false).provider(t, nil)
	if got := none.EndSessionURL("alice", "x", "st"); got != "" || none.HasEndSession() || none.EndSessionOrigin() != "" {
		t.Errorf("without end_session_endpoint: EndSessionURL = %q", got)
	}
}

// TestVerifyLogoutTokenUntil: how long a replay check must remember a
// token's jti: until exp or iat + the maximum age, whichever is first,
// plus the clock leeway. (The rules themselves are vault/selfservice's
// TestLogoutTokens, through the endpoint.)
func TestVerifyLogoutTokenUntil(t *testing.T) {
	op := newSignInOP(t, false)
	now := time.Now().Truncate(time.Second)
	p := op.provider(t, func() time.Time { return now })
	base := func() map[string]any {
		return map[string]any{"iss": op.srv.URL, "aud": "c", "iat": now.Unix(), "jti": "j1", "sid": "s1",
			"events": map[string]any{provider.BackChannelLogoutEvent: map[string]any{}}}
	}
	noExp := base()
	shortExp := base()
	shortExp["exp"] = now.Add(time.Minute).Unix()
	longExp := base()
	longExp["exp"] = now.Add(time.Hour).Unix()
	for name, c := range map[string]struct {
		claims map[string]any
		until  time.Time
	}{
		"no exp":               {noExp, now.Add(provider.DefaultLogoutTokenMaxAge + 30*time.Second)},
		"exp before iat + age": {shortExp, now.Add(time.Minute + 30*time.Second)},
		"exp after iat + age":  {longExp, now.Add(provider.DefaultLogoutTokenMaxAge + 30*time.Second)},
	} {
		lt, err := p.VerifyLogoutToken(context.Background(), op.sign(t, c.claims))
		if err != nil {
			t.Fatalf("%s: VerifyLogoutToken = %v", name, err)
		}
		if !lt.Until.Equal(c.until) || lt.ID != "j1" || lt.SessionID != "s1" || lt.Issuer != op.srv.URL {
			t.Errorf("%s: VerifyLogoutToken = %+v, want Until %v", name, lt, c.until)
		}
	}
	// An X provider verifies no logout token.
	_, err := xProvider(t, "http://127.0.0.1:9/x", nil).VerifyLogoutToken(context.Background(), op.sign(t, noExp))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassClient {
		t.Errorf("X VerifyLogoutToken = %v, want a ClassClient error", err)
	}
}
