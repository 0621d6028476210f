package provider_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// oidcDiscovery serves only an OpenID discovery document: enough for
// provider.New, whose scope rules need no other endpoint.
func oidcDiscovery(t *testing.T) string {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%[1]s/authorize","token_endpoint":"%[1]s/token","jwks_uri":"%[1]s/jwks",
			"response_types_supported":["code"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}`, srv.URL)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestMissingScopes is the rule of case C02: offline access is proved by
// the refresh token, not by the scope list (Microsoft Entra ID does not
// list offline_access), for X's offline.access and OpenID's
// offline_access alike; every other required scope must be listed; a
// missing scope list is the scopes requested (RFC 6749 5.1).
func TestMissingScopes(t *testing.T) {
	issuer := oidcDiscovery(t)
	oidcP := func(extra ...string) *provider.Provider {
		p, err := provider.New(context.Background(), provider.Config{Name: "corp", Kind: provider.KindOIDC, Issuer: issuer, ClientID: "c",
			ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, Scopes: extra, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	x := xProvider(t, "http://127.0.0.1:1", nil)
	entra, api := oidcP(), oidcP("api.read")
	cases := []struct {
		name    string
		p       *provider.Provider
		granted []string
		refresh bool
		want    string
	}{
		// C02's answer, verbatim scope: a refresh token came, offline
		// access is granted.
		{"Entra: offline_access not listed, refresh token", entra, []string{"openid", "profile", "email"}, true, "[]"},
		{"OIDC: offline_access listed, refresh token", entra, []string{"openid", "offline_access"}, true, "[]"},
		// Listed without a refresh token: nothing to act offline with.
		{"OIDC: offline_access listed, no refresh token", entra, []string{"openid", "offline_access"}, false, "[offline_access]"},
		{"OIDC: no scope, refresh token", entra, nil, true, "[]"},
		{"OIDC: no scope, no refresh token", entra, nil, false, "[offline_access]"},
		{"OIDC: empty scope, refresh token", entra, []string{}, true, "[]"},
		// Other scopes still count.
		{"OIDC: api scope missing, refresh token", api, []string{"openid", "profile"}, true, "[api.read]"},
		{"OIDC: api scope listed, offline_access not", api, []string{"openid", "api.read"}, true, "[]"},
		{"OIDC: api scope missing, no refresh token", api, []string{"openid"}, false, "[offline_access api.read]"},
		{"X: offline.access not listed, refresh token", x, []string{"tweet.read", "users.read"}, true, "[]"},
		{"X: everything listed, no refresh token", x, []string{"tweet.read", "users.read", "offline.access"}, false, "[offline.access]"},
		{"X: users.read missing", x, []string{"tweet.read", "offline.access"}, true, "[users.read]"},
		{"X: no scope, refresh token", x, nil, true, "[]"},
		// An empty list grants nothing (GitHub Apps answer "scope": "").
		{"X: empty scope, refresh token", x, []string{}, true, "[tweet.read users.read]"},
		// Only exact names count: another provider's spelling is not X's.
		{"X: OpenID spelling", x, []string{"tweet.read", "users.read", "offline_access"}, false, "[offline.access]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fmt.Sprint(c.p.MissingScopes(c.granted, c.refresh)); got != c.want {
				t.Errorf("MissingScopes(%q, %v) = %s, want %s", c.granted, c.refresh, got, c.want)
			}
		})
	}
}
