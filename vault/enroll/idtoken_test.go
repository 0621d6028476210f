package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// craftIssuer is a small OpenID provider whose token endpoint returns an
// ID token crafted by the test: Hydra will not mint bad ones.
type craftIssuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey

	mu     sync.Mutex
	nonces map[string]string // code -> nonce of its authorization request
	craft  func(claims map[string]any) map[string]any
	alg    string // "ES256" or "none"
	signer *ecdsa.PrivateKey
}

const craftClientID = "tagwatch-client"

func newCraftIssuer(t *testing.T) *craftIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ci := &craftIssuer{key: key, nonces: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer": ci.srv.URL, "authorization_endpoint": ci.srv.URL + "/authorize",
			"token_endpoint": ci.srv.URL + "/token", "jwks_uri": ci.srv.URL + "/jwks",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported":          []string{"ES256"},
			"token_endpoint_auth_methods_supported":          []string{"client_secret_basic"},
			"authorization_response_iss_parameter_supported": true,
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code := base64.RawURLEncoding.EncodeToString([]byte(time.Now().String()))
		ci.mu.Lock()
		ci.nonces[code] = q.Get("nonce")
		ci.mu.Unlock()
		back := url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {ci.srv.URL}}
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		ci.mu.Lock()
		nonce, ok := ci.nonces[r.PostForm.Get("code")]
		delete(ci.nonces, r.PostForm.Get("code"))
		craft, alg, signer := ci.craft, ci.alg, ci.signer
		ci.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		now := time.Now()
		claims := map[string]any{"iss": ci.srv.URL, "sub": "subject-7", "aud": craftClientID, "nonce": nonce,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": "ada"}
		if craft != nil {
			claims = craft(claims)
		}
		writeJSON(w, map[string]any{"access_token": "at-" + nonce, "token_type": "Bearer", "expires_in": 3600,
			"refresh_token": "rt-" + nonce, "scope": "openid offline_access", "id_token": ci.sign(t, claims, alg, signer)})
	})
	ci.srv = httptest.NewServer(mux)
	t.Cleanup(ci.srv.Close)
	return ci
}

func (ci *craftIssuer) sign(t *testing.T, claims map[string]any, alg string, key *ecdsa.PrivateKey) string {
	if alg == "none" {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		b, _ := json.Marshal(claims)
		return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
	}
	if key == nil {
		key = ci.key
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Error(err)
		return ""
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Error(err)
	}
	return raw
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// TestIDTokenRefused runs the flow against an issuer that hands out a
// crafted ID token: each bad one is refused with a clear page and nothing
// stored; the good one (the control) enrolls.
func TestIDTokenRefused(t *testing.T) {
	ci := newCraftIssuer(t)
	e := newEnv(t, func(_ *env, redirect string, hc *http.Client) map[string]enroll.Provider {
		p, err := provider.New(context.Background(), provider.Config{Name: "op", Kind: provider.KindOIDC, Issuer: ci.srv.URL,
			ClientID: craftClientID, ClientSecret: secret.NewClientSecret("s3cret"), RedirectURL: redirect, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]enroll.Provider{"op": p}
	})
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := func(k string, v any) func(map[string]any) map[string]any {
		return func(c map[string]any) map[string]any { c[k] = v; return c }
	}
	tests := []struct {
		name   string
		craft  func(map[string]any) map[string]any
		alg    string
		signer *ecdsa.PrivateKey
	}{
		{name: "bad nonce", craft: set("nonce", "not-this-flows-nonce")},
		{name: "no nonce", craft: func(c map[string]any) map[string]any { delete(c, "nonce"); return c }},
		{name: "wrong audience", craft: set("aud", "another-client")},
		{name: "several audiences without azp", craft: set("aud", []string{craftClientID, "another-client"})},
		{name: "azp of another client", craft: set("azp", "another-client")},
		{name: "expired", craft: func(c map[string]any) map[string]any {
			c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
			return c
		}},
		{name: "wrong issuer", craft: set("iss", "https://attacker.example")},
		{name: "alg none", alg: "none"},
		{name: "signed by another key", signer: otherKey},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			ci.mu.Lock()
			ci.craft, ci.alg, ci.signer = tc.craft, tc.alg, tc.signer
			ci.mu.Unlock()
			user := "idt-" + string(rune('a'+i))
			link, rec := e.link(user, "op", "")
			b := newBrowser(t)
			auth := b.begin(link, ci.srv.URL+"/authorize")
			at := b.get(auth.String())
			if at.status != http.StatusFound || !strings.HasPrefix(at.loc, e.url+"/callback?") {
				t.Fatalf("authorize = %d %q, want a redirect to the callback", at.status, at.loc)
			}
			before := e.tokens.count()
			p := b.get(at.loc)
			expectPage(t, p, http.StatusBadRequest, "could not be verified")
			if n := e.tokens.count() - before; n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
			e.expectNothingStored(user, rec)
		})
	}
	t.Run("control: a good ID token enrolls", func(t *testing.T) {
		e.t = t
		ci.mu.Lock()
		ci.craft, ci.alg, ci.signer = nil, "", nil
		ci.mu.Unlock()
		link, rec := e.link("idt-good", "op", "ada")
		b := newBrowser(t)
		auth := b.begin(link, ci.srv.URL+"/authorize")
		at := b.get(auth.String())
		cb, err := url.Parse(at.loc)
		if err != nil {
			t.Fatal(err)
		}
		// The provider advertises RFC 9207: a callback without iss is
		// refused before the code is redeemed.
		before := e.tokens.count()
		expectPage(t, b.get(withParam(cb, "iss", "")), http.StatusBadRequest, "did not come from the expected provider")
		if n := e.tokens.count() - before; n != 0 {
			t.Errorf("missing iss: %d token requests, want 0", n)
		}
		e.expectNothingStored("idt-good", rec)
		// That refusal spent the state; a new flow from the same link works.
		auth = b.begin(link, ci.srv.URL+"/authorize")
		at = b.get(auth.String())
		if p := b.get(at.loc); p.status != http.StatusSeeOther {
			t.Fatalf("callback = %d, want 303: %s", p.status, p.body)
		}
		expectPKCE(t, auth, e.tokens.lastVerifier())
		g := e.expectEnrolled("idt-good", rec, "subject-7")
		if g.Issuer != ci.srv.URL || g.Username != "ada" || len(g.IDTokenAudience) != 1 || g.IDTokenAudience[0] != craftClientID {
			t.Errorf("grant = %+v, want issuer, username ada and audience %s", g, craftClientID)
		}
	})
}
