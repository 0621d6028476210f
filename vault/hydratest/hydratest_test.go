package hydratest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault/hydratest"
)

const redirectURI = "http://127.0.0.1:9/callback"

// flow is one relying party against one Hydra: the client config and the
// steps of an authorization code flow with PKCE.
type flow struct {
	h   *hydratest.Hydra
	cfg *oauth2.Config
}

func newFlow(t *testing.T, h *hydratest.Hydra, clientID string) *flow {
	t.Helper()
	c := h.CreateClient(t, hydratest.Client{
		ID:           clientID,
		Secret:       "secret-" + clientID,
		RedirectURIs: []string{redirectURI},
	})
	return &flow{h: h, cfg: &oauth2.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret,
		RedirectURL:  redirectURI,
		Scopes:       []string{"openid", "offline_access"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   h.AuthURL(),
			TokenURL:  h.TokenURL(),
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}}
}

// authorize walks the browser side and returns the callback URL's query.
func (f *flow) authorize(t *testing.T, state, nonce, verifier string) map[string]string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	authURL := f.cfg.AuthCodeURL(state,
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("nonce", nonce),
		oauth2.SetAuthURLParam("prompt", "consent"))
	cb := hydratest.Browse(t, &http.Client{Jar: jar}, authURL, redirectURI)
	got := map[string]string{}
	for k, v := range cb.Query() {
		got[k] = v[0]
	}
	return got
}

// enroll runs the whole flow and returns the token response.
func (f *flow) enroll(t *testing.T) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(t, "state-123456789", "nonce-123456789", verifier)
	if q["code"] == "" {
		t.Fatalf("callback = %v, want a code", q)
	}
	tok, err := f.cfg.Exchange(context.Background(), q["code"], oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange = %v, want a token", err)
	}
	return tok
}

func (f *flow) refresh(rt string) (*oauth2.Token, error) {
	// An expired token makes the token source refresh right away.
	return f.cfg.TokenSource(context.Background(), &oauth2.Token{
		RefreshToken: rt,
		Expiry:       time.Now().Add(-time.Hour),
	}).Token()
}

func errorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token has %d parts, want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHydra establishes the Hydra behaviour the vault's tests build on.
// Subtests share one Hydra (starting one costs a few seconds) and use
// their own clients, so they do not see each other's grants.
func TestHydra(t *testing.T) {
	h := hydratest.Start(t, hydratest.Options{
		AccessTokenTTL: 30 * time.Second,
		Subject:        "alice",
		IDTokenClaims:  map[string]any{"email": "alice@example.test"},
	})
	if got, want := h.IssuerURL(), h.PublicURL(); strings.TrimSuffix(got, "/") != want {
		t.Fatalf("IssuerURL() = %q, want %q", got, want)
	}
	t.Logf("issuer %q, auth %s, token %s, revoke %s", h.IssuerURL(), h.AuthURL(), h.TokenURL(), h.RevocationURL())

	t.Run("code flow, rotation and reuse", func(t *testing.T) {
		f := newFlow(t, h, "rotation")
		verifier := oauth2.GenerateVerifier()
		q := f.authorize(t, "state-abcdefghij", "nonce-abcdefghij", verifier)
		t.Logf("callback parameters: %v", slices.Sorted(maps.Keys(q)))
		if q["state"] != "state-abcdefghij" {
			t.Errorf("callback state = %q, want %q", q["state"], "state-abcdefghij")
		}
		// RFC 9207: a client checks iss only when discovery advertises it.
		var disc struct {
			IssSupported bool `json:"authorization_response_iss_parameter_supported"`
		}
		resp, err := http.Get(h.PublicURL() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&disc)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("discovery authorization_response_iss_parameter_supported = %t", disc.IssSupported)
		if iss, ok := q["iss"]; (ok || disc.IssSupported) && iss != h.IssuerURL() {
			t.Errorf("callback iss = %q (advertised %t), want %q", iss, disc.IssSupported, h.IssuerURL())
		}
		tok, err := f.cfg.Exchange(context.Background(), q["code"], oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange = %v, want a token", err)
		}
		if tok.AccessToken == "" || tok.RefreshToken == "" {
			t.Fatalf("Exchange gave access %t refresh %t, want both", tok.AccessToken != "", tok.RefreshToken != "")
		}
		if ttl := time.Until(tok.Expiry); ttl < 20*time.Second || ttl > 31*time.Second {
			t.Errorf("access token expires in %v, want about 30s", ttl)
		}
		idt, _ := tok.Extra("id_token").(string)
		if idt == "" {
			t.Fatal("Exchange gave no id_token")
		}
		c := claims(t, idt)
		if c["sub"] != "alice" || c["nonce"] != "nonce-abcdefghij" || c["email"] != "alice@example.test" || c["iss"] != h.IssuerURL() {
			t.Errorf("ID token claims = %v, want sub alice, the nonce, the email and iss %s", c, h.IssuerURL())
		}
		t.Logf("token response scope %q; ID token aud %v azp %v", tok.Extra("scope"), c["aud"], c["azp"])

		if ok, info := h.Introspect(t, tok.AccessToken); !ok || info.Subject != "alice" || info.ClientID != "rotation" || info.TokenUse != "access_token" {
			t.Errorf("Introspect(access) = %t %+v, want active for alice/rotation", ok, info)
		}
		if ok, info := h.Introspect(t, tok.RefreshToken); !ok || info.TokenUse != "refresh_token" {
			t.Errorf("Introspect(refresh) = %t %+v, want active refresh token", ok, info)
		}

		// Refresh once: a new refresh token, the old one is used up.
		tok2, err := f.refresh(tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh = %v, want a token", err)
		}
		if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh did not rotate the refresh token")
		}
		if _, ok := tok2.Extra("id_token").(string); !ok {
			t.Logf("refresh response has no id_token")
		} else {
			t.Logf("refresh response has an id_token")
		}
		for _, c := range []struct {
			name, token string
			want        bool
		}{
			{"old access", tok.AccessToken, false},
			{"old refresh", tok.RefreshToken, false},
			{"new access", tok2.AccessToken, true},
			{"new refresh", tok2.RefreshToken, true},
		} {
			if got, _ := h.Introspect(t, c.token); got != c.want {
				t.Errorf("after one refresh, Introspect(%s) = %t, want %t", c.name, got, c.want)
			}
		}

		// Reuse of the old refresh token fails and, with a grace period
		// of 0, revokes the whole chain.
		_, err = f.refresh(tok.RefreshToken)
		if code := errorCode(err); code != "invalid_grant" {
			t.Fatalf("reuse of old refresh token = %v (code %q), want invalid_grant", err, code)
		}
		t.Logf("reuse answer: %v", err)
		if got, _ := h.Introspect(t, tok2.RefreshToken); got {
			t.Errorf("after reuse, Introspect(new refresh) = true, want false (chain revoked)")
		}
		if got, _ := h.Introspect(t, tok2.AccessToken); got {
			t.Errorf("after reuse, Introspect(new access) = true, want false (chain revoked)")
		}
		_, err = f.refresh(tok2.RefreshToken)
		if code := errorCode(err); code != "invalid_grant" {
			t.Errorf("after reuse, refresh with new token = %v (code %q), want invalid_grant", err, code)
		}
		t.Logf("refresh with the revoked chain's newest token: %v", err)
	})

	t.Run("revoked consent", func(t *testing.T) {
		f := newFlow(t, h, "revoke")
		tok := f.enroll(t)
		h.RevokeConsent(t, "alice", "revoke")
		for _, c := range []struct{ name, token string }{{"access", tok.AccessToken}, {"refresh", tok.RefreshToken}} {
			if got, _ := h.Introspect(t, c.token); got {
				t.Errorf("after RevokeConsent, Introspect(%s) = true, want false", c.name)
			}
		}
		_, err := f.refresh(tok.RefreshToken)
		if code := errorCode(err); code != "invalid_grant" {
			t.Fatalf("refresh after RevokeConsent = %v (code %q), want invalid_grant", err, code)
		}
		t.Logf("refresh after consent revocation: %v", err)
	})

	t.Run("consent to another client is untouched", func(t *testing.T) {
		a, b := newFlow(t, h, "keep-a"), newFlow(t, h, "keep-b")
		ta, tb := a.enroll(t), b.enroll(t)
		h.RevokeConsent(t, "alice", "keep-a")
		if got, _ := h.Introspect(t, ta.RefreshToken); got {
			t.Errorf("Introspect(revoked client's refresh) = true, want false")
		}
		if got, _ := h.Introspect(t, tb.RefreshToken); !got {
			t.Errorf("Introspect(other client's refresh) = false, want true")
		}
	})

	t.Run("subject switch", func(t *testing.T) {
		f := newFlow(t, h, "subject")
		h.SetSubject("bob")
		defer h.SetSubject("alice")
		tok := f.enroll(t)
		if ok, info := h.Introspect(t, tok.AccessToken); !ok || info.Subject != "bob" {
			t.Errorf("Introspect = %t %q, want active for bob", ok, info.Subject)
		}
	})

	t.Run("consent without offline_access", func(t *testing.T) {
		f := newFlow(t, h, "partial")
		h.SetConsentScopes([]string{"openid"})
		defer h.SetConsentScopes(nil)
		tok := f.enroll(t)
		if tok.RefreshToken != "" {
			t.Errorf("consent without offline_access gave a refresh token, want none")
		}
		if got := tok.Extra("scope"); got != "openid" {
			t.Errorf("token response scope = %v, want openid", got)
		}
	})

	t.Run("consent denied", func(t *testing.T) {
		f := newFlow(t, h, "denied")
		h.SetDeny(true)
		defer h.SetDeny(false)
		q := f.authorize(t, "state-denied-123", "nonce-denied-123", oauth2.GenerateVerifier())
		if q["error"] != "access_denied" || q["code"] != "" || q["state"] != "state-denied-123" {
			t.Errorf("callback = %v, want error=access_denied with the state and no code", q)
		}
	})

	t.Run("PKCE enforced", func(t *testing.T) {
		f := newFlow(t, h, "nopkce")
		jar, _ := cookiejar.New(nil)
		cb := hydratest.Browse(t, &http.Client{Jar: jar}, f.cfg.AuthCodeURL("state-nopkce-1234"), redirectURI)
		if cb.Query().Get("code") != "" || cb.Query().Get("error") == "" {
			t.Errorf("authorization without PKCE = %v, want an error and no code", cb.Query())
		}
		t.Logf("without PKCE: error=%s", cb.Query().Get("error"))
	})

	logins, consents := h.Counts()
	if logins == 0 || consents == 0 {
		t.Errorf("Counts() = %d, %d, want both > 0", logins, consents)
	}
}

// TestShortAccessTokens checks that Hydra honours a few-second access token
// lifetime, which the renewal tests rely on.
func TestShortAccessTokens(t *testing.T) {
	h := hydratest.Start(t, hydratest.Options{AccessTokenTTL: 2 * time.Second})
	f := newFlow(t, h, "short")
	tok := f.enroll(t)
	if ttl := time.Until(tok.Expiry); ttl > 3*time.Second {
		t.Errorf("access token expires in %v, want at most 2s", ttl)
	}
	if got, _ := h.Introspect(t, tok.AccessToken); !got {
		t.Fatalf("Introspect(fresh access) = false, want true")
	}
	time.Sleep(3 * time.Second)
	if got, _ := h.Introspect(t, tok.AccessToken); got {
		t.Errorf("Introspect(expired access) = true, want false")
	}
	if got, _ := h.Introspect(t, tok.RefreshToken); !got {
		t.Errorf("Introspect(refresh) = false, want true")
	}
	if _, err := f.refresh(tok.RefreshToken); err != nil {
		t.Errorf("refresh after access expiry = %v, want a token", err)
	}
}

// TestClientAuthMethods checks the client authentication methods the
// providers use: client_secret_post and private_key_jwt (RFC 7523).
func TestClientAuthMethods(t *testing.T) {
	h := hydratest.Start(t, hydratest.Options{})

	t.Run("client_secret_post", func(t *testing.T) {
		c := h.CreateClient(t, hydratest.Client{
			ID: "post", Secret: "secret-post", RedirectURIs: []string{redirectURI},
			TokenEndpointAuthMethod: "client_secret_post",
		})
		f := &flow{h: h, cfg: &oauth2.Config{
			ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: redirectURI,
			Scopes:   []string{"openid", "offline_access"},
			Endpoint: oauth2.Endpoint{AuthURL: h.AuthURL(), TokenURL: h.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		}}
		tok := f.enroll(t)
		tok2, err := f.refresh(tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh with client_secret_post = %v, want a token", err)
		}
		// Hydra holds a client to its registered method, and a refused
		// client authentication leaves the refresh token alone.
		f.cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
		_, err = f.refresh(tok2.RefreshToken)
		if code := errorCode(err); code != "invalid_client" {
			t.Errorf("refresh with Basic for a client_secret_post client = %v, want invalid_client", err)
		}
		if got, _ := h.Introspect(t, tok2.RefreshToken); !got {
			t.Errorf("after invalid_client, Introspect(refresh) = false, want true")
		}
	})

	t.Run("private_key_jwt", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := key.PublicKey.Bytes() // 0x04 | X | Y
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
			"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
			"x": base64.RawURLEncoding.EncodeToString(pub[1:33]),
			"y": base64.RawURLEncoding.EncodeToString(pub[33:]),
		}}})
		c := h.CreateClient(t, hydratest.Client{
			ID: "pkjwt", RedirectURIs: []string{redirectURI},
			TokenEndpointAuthMethod: "private_key_jwt", TokenEndpointAuthSigningAlg: "ES256",
			JWKS: jwks,
		})
		f := &flow{h: h, cfg: &oauth2.Config{
			ClientID: c.ID, RedirectURL: redirectURI, Scopes: []string{"openid", "offline_access"},
			Endpoint: oauth2.Endpoint{AuthURL: h.AuthURL(), TokenURL: h.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		}}
		verifier := oauth2.GenerateVerifier()
		q := f.authorize(t, "state-pkjwt-12345", "nonce-pkjwt-12345", verifier)
		tok, err := f.cfg.Exchange(context.Background(), q["code"], oauth2.VerifierOption(verifier),
			oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", signAssertion(t, key, c.ID, h.TokenURL())))
		if err != nil {
			t.Fatalf("Exchange with private_key_jwt = %v, want a token", err)
		}
		if tok.RefreshToken == "" {
			t.Fatal("Exchange with private_key_jwt gave no refresh token")
		}
		// A replayed assertion (same jti) is refused.
		a := signAssertion(t, key, c.ID, h.TokenURL())
		form := func(rt string) url.Values {
			return url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {a},
			}
		}
		resp, err := http.PostForm(h.TokenURL(), form(tok.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			RefreshToken string `json:"refresh_token"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || out.RefreshToken == "" {
			t.Fatalf("refresh with private_key_jwt: status %d, want 200 with a refresh token", resp.StatusCode)
		}
		resp, err = http.PostForm(h.TokenURL(), form(out.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed client assertion: status %d, want 400 or 401", resp.StatusCode)
		}
		t.Logf("replayed client assertion: %d %s", resp.StatusCode, b)
	})
}

// signAssertion makes an RFC 7523 client assertion signed with ES256.
func signAssertion(t *testing.T, key *ecdsa.PrivateKey, clientID, aud string) string {
	t.Helper()
	now := time.Now()
	hdr, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"})
	cl, _ := json.Marshal(map[string]any{
		"iss": clientID, "sub": clientID, "aud": aud, "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(cl)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
