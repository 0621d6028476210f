package provider_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault/hydratest"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

const redirect = "http://127.0.0.1:9/callback"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestClientAuthAgainstHydra enrolls and refreshes through Hydra with each
// client authentication method the provider package speaks.
func TestClientAuthAgainstHydra(t *testing.T) {
	h := hydratest.Start(t, hydratest.Options{Subject: "alice", IDTokenClaims: map[string]any{"email": "alice@example.test", "email_verified": true}})

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	signer, kid, err := provider.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := key.PublicKey.Bytes()
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
		"x": base64.RawURLEncoding.EncodeToString(pub[1:33]), "y": base64.RawURLEncoding.EncodeToString(pub[33:])}}})

	cases := []struct {
		method string
		client hydratest.Client
		cfg    provider.Config
	}{
		{provider.AuthSecretBasic, hydratest.Client{ID: "basic", Secret: "secret-basic-123456"},
			provider.Config{ClientSecret: secret.NewClientSecret("secret-basic-123456")}},
		{provider.AuthSecretPost, hydratest.Client{ID: "post", Secret: "secret-post-123456", TokenEndpointAuthMethod: "client_secret_post"},
			provider.Config{ClientSecret: secret.NewClientSecret("secret-post-123456")}},
		{provider.AuthPrivateKeyJWT, hydratest.Client{ID: "pkjwt", TokenEndpointAuthMethod: "private_key_jwt", TokenEndpointAuthSigningAlg: "ES256", JWKS: jwks},
			provider.Config{PrivateKey: signer, KeyID: kid}},
	}
	for _, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			c.client.RedirectURIs = []string{redirect}
			h.CreateClient(t, c.client)
			cfg := c.cfg
			cfg.Name, cfg.Kind, cfg.Issuer, cfg.ClientID, cfg.ClientAuth = "corp", provider.KindOIDC, h.IssuerURL(), c.client.ID, c.method
			cfg.RedirectURL, cfg.APIURL, cfg.Logger = redirect, "http://127.0.0.1:9", quiet
			p, err := provider.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			verifier, nonce := oauth2.GenerateVerifier(), "nonce-"+c.client.ID+"-0123456789"
			jar, _ := cookiejar.New(nil)
			cb := hydratest.Browse(t, &http.Client{Jar: jar}, p.AuthCodeURL("state-0123456789abcdef", verifier, nonce), redirect)
			if err := p.CheckAuthorizationIssuer(cb.Query().Get("iss"), cb.Query().Has("iss")); err != nil {
				t.Fatalf("iss check: %v", err)
			}
			tr, err := p.Exchange(context.Background(), cb.Query().Get("code"), verifier)
			if err != nil {
				t.Fatalf("Exchange = %v", err)
			}
			id, err := p.Identify(context.Background(), tr, nonce)
			if err != nil || id.Subject != "alice" || id.Email != "alice@example.test" || !id.Matches("alice@example.test") {
				t.Fatalf("Identify = %+v, %v", id, err)
			}
			if tr.Refresh.IsZero() || tr.NoExpiresIn || len(p.MissingScopes(tr.Scopes, !tr.Refresh.IsZero())) != 0 {
				t.Fatalf("token result: refresh %v, no expires_in %v, scopes %v", !tr.Refresh.IsZero(), tr.NoExpiresIn, tr.Scopes)
			}
			next, err := p.Refresh(context.Background(), tr.Refresh)
			if err != nil || next.Refresh.IsZero() || next.Refresh.Equal(tr.Refresh.Value) {
				t.Fatalf("Refresh = %v (rotated: %v)", err, err == nil && !next.Refresh.Equal(tr.Refresh.Value))
			}
			if _, err := p.VerifyIDToken(context.Background(), next.IDToken, "", &id); err != nil {
				t.Errorf("ID token from the refresh: %v", err)
			}
			other := id
			other.Subject = "mallory"
			if _, err := p.VerifyIDToken(context.Background(), next.IDToken, "", &other); err == nil {
				t.Error("an ID token from a refresh with another subject was accepted")
			}
			// The spent refresh token is a dead grant (Hydra: invalid_grant).
			if _, err := p.Refresh(context.Background(), tr.Refresh); provider.ClassOf(err) != provider.ClassDeadGrant {
				t.Errorf("reused refresh token: %v, want class dead_grant", err)
			}
			if err := p.Revoke(context.Background(), next.Refresh); err != nil {
				t.Errorf("Revoke = %v", err)
			}
			if active, _ := h.Introspect(t, next.Refresh.Reveal()); active {
				t.Error("refresh token active after Revoke")
			}
		})
	}

	t.Run("wrong client secret is a client error", func(t *testing.T) {
		h.CreateClient(t, hydratest.Client{ID: "wrong", Secret: "right-secret-123456", RedirectURIs: []string{redirect}})
		p, err := provider.New(context.Background(), provider.Config{Name: "corp", Kind: provider.KindOIDC, Issuer: h.IssuerURL(), ClientID: "wrong",
			ClientSecret: secret.NewClientSecret("wrong-secret-123456"), RedirectURL: redirect, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Refresh(context.Background(), secret.NewRefreshToken("whatever"))
		if provider.ClassOf(err) != provider.ClassClient || strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("Refresh with a wrong secret = %v, want class client without the secret", err)
		}
	})

	t.Run("issuer must match exactly", func(t *testing.T) {
		_, err := provider.New(context.Background(), provider.Config{Name: "corp", Kind: provider.KindOIDC, Issuer: h.IssuerURL() + "/",
			ClientID: "basic", ClientSecret: secret.NewClientSecret("x"), RedirectURL: redirect, Logger: quiet})
		if err == nil {
			t.Error("a configured issuer with a trailing slash was accepted")
		}
	})
}

func xProvider(t *testing.T, tokenURL string, now func() time.Time) *provider.Provider {
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
		ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, TokenURL: tokenURL, AuthURL: tokenURL, RevokeURL: tokenURL,
		APIURL: tokenURL, Now: now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLostResponseIsAmbiguous: a connection dropped before any answer
// may have been processed; one refused was not. (The answers themselves
// are TestTokenAnswers' table, answer_test.go.)
func TestLostResponseIsAmbiguous(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer srv.Close()
	_, err := xProvider(t, srv.URL, nil).Refresh(context.Background(), secret.NewRefreshToken("rt"))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassTransient || !pe.Ambiguous {
		t.Errorf("dropped connection = %v, want transient and ambiguous", err)
	}
	// Nothing listening: the request was never sent.
	_, err = xProvider(t, "http://127.0.0.1:1", nil).Refresh(context.Background(), secret.NewRefreshToken("rt"))
	if !errors.As(err, &pe) || pe.Ambiguous {
		t.Errorf("connection refused = %v, want not ambiguous", err)
	}
}

// TestCAFile: certificates are verified; an extra CA file can be named.
func TestCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"token_type":"bearer","access_token":"a","expires_in":60}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	mk := func(caFile string) *provider.Provider {
		p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
			ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, TokenURL: srv.URL, CAFile: caFile, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := mk("").Refresh(context.Background(), secret.NewRefreshToken("r")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v, want a certificate error", err)
	}
	if _, err := mk(ca).Refresh(context.Background(), secret.NewRefreshToken("r")); err != nil {
		t.Errorf("with the CA file: %v", err)
	}
}

func TestURLRules(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.x.com":        true,
		"http://127.0.0.1:8080/cb": true,
		"http://localhost:1":       true,
		"http://[::1]:2":           true,
		"http://api.x.com":         false,
		"https://u:p@x.com":        false,
		"https://x.com/#frag":      false,
		"javascript:alert(1)":      false,
	} {
		if err := provider.CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
	_, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
		ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, TokenURL: "http://token.example.com/", Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http token endpoint off loopback: %v, want refusal", err)
	}
}

func TestIdentityMatches(t *testing.T) {
	id := provider.Identity{Subject: "2244994945", Username: "XDevelopers", Email: "dev@example.com"}
	for expected, ok := range map[string]bool{"": true, "2244994945": true, "@xdevelopers": true, "XDevelopers": true,
		"DEV@example.com": true, "someone": false, "224499494": false} {
		if id.Matches(expected) != ok {
			t.Errorf("Matches(%q) = %v, want %v", expected, !ok, ok)
		}
	}
}

func TestScopes(t *testing.T) {
	p := xProvider(t, "http://127.0.0.1:1", nil)
	if got := fmt.Sprint(p.Scopes()); got != "[tweet.read users.read offline.access]" {
		t.Errorf("Scopes() = %s", got)
	}
	if got := p.MissingScopes([]string{"tweet.read", "offline.access"}, true); fmt.Sprint(got) != "[users.read]" {
		t.Errorf("MissingScopes = %v", got)
	}
}
