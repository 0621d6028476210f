package renew_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestRefreshWithOfflineAccessUnlisted is case C02 on the renewal side: a
// refresh answer proves offline access by succeeding (the refresh token
// just used, or the new one), whether or not its scope lists it; other
// missing scopes still end the grant as reduced permissions. X through the
// sandbox, its answers edited.
func TestRefreshWithOfflineAccessUnlisted(t *testing.T) {
	cases := []struct {
		name string
		edit func(map[string]any)
		// reason is the grant's LastErrorClass after the refresh; "" keeps
		// it active.
		reason      string
		keepRefresh bool // the answer has no refresh_token: the old one stays
	}{
		{name: "offline.access not listed", edit: func(m map[string]any) { m["scope"] = "tweet.read users.read" }},
		{name: "offline.access not listed, no new refresh token", edit: func(m map[string]any) {
			m["scope"] = "tweet.read users.read"
			delete(m, "refresh_token")
		}, keepRefresh: true},
		{name: "no scope, no new refresh token", edit: func(m map[string]any) { delete(m, "scope"); delete(m, "refresh_token") }, keepRefresh: true},
		{name: "users.read and offline.access not listed", edit: func(m map[string]any) { m["scope"] = "tweet.read" }, reason: "scope_reduced: users.read"},
		{name: "empty scope", edit: func(m map[string]any) { m["scope"] = "" }, reason: "scope_reduced: tweet.read users.read"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := xsandbox.NewClock(t0)
			f := renewtest.New(t, renewtest.Options{Clock: clock, Transport: renewtest.EditTokenAnswers{Edit: c.edit}})
			g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
			_, before, err := f.DB.GrantTokens(g.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Manager.Source(g.ID).Token(context.Background())
			gg, after, gerr := f.DB.GrantTokens(g.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if c.reason != "" {
				if !errors.Is(err, renew.ErrNeedsConsent) || gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != c.reason {
					t.Fatalf("Token() = %v; grant %s %q, want needs_reconsent %q", err, gg.State, gg.LastErrorClass, c.reason)
				}
				return
			}
			if err != nil || gg.State != vault.GrantActive || gg.RefreshCount != 1 {
				t.Fatalf("Token() = %v; grant %s %q count %d, want active after one refresh", err, gg.State, gg.LastErrorClass, gg.RefreshCount)
			}
			if kept := after.Refresh.Equal(before.Refresh.Value); kept != c.keepRefresh {
				t.Errorf("refresh token kept = %v, want %v", kept, c.keepRefresh)
			}
		})
	}
}

// TestEntraRefreshKeepsGrant: C02's answer, verbatim but for the tokens,
// from an OpenID provider's token endpoint, to refreshes: the grant stays
// active; a provider that also needs an API scope the answer lacks ends
// it as reduced permissions, naming that scope only.
func TestEntraRefreshKeepsGrant(t *testing.T) {
	var n atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%[1]s/authorize","token_endpoint":"%[1]s/token","jwks_uri":"%[1]s/jwks",
				"response_types_supported":["code"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}`, srv.URL)
		case "/token":
			i := n.Add(1)
			fmt.Fprintf(w, `{"token_type":"Bearer","scope":"openid profile email","expires_in":3600,`+
				`"access_token":"at-%d","refresh_token":"rt-%d","id_token":"eyJ.eyJ.sig"}`, i, i)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, c := range []struct {
		name   string
		extra  []string
		reason string
	}{
		{name: "openid offline_access", reason: ""},
		{name: "with an API scope the answer lacks", extra: []string{"api.read"}, reason: "scope_reduced: api.read"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := vaulttest.NewClock(t0)
			p, err := provider.New(context.Background(), provider.Config{Name: "entra", Kind: provider.KindOIDC, Issuer: srv.URL, ClientID: "c",
				ClientSecret: secret.NewClientSecret("s"), RedirectURL: renewtest.RedirectURL, Scopes: c.extra, Now: clock.Now, Logger: vaulttest.Quiet()})
			if err != nil {
				t.Fatal(err)
			}
			db := vaulttest.Open(t, vaulttest.Now(clock.Now))
			g := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "u", Provider: "entra", Scopes: []string{"openid", "profile", "email"},
				AccessExpiry: t0.Add(-time.Minute)}).Grant
			m := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"entra": p}, PublicURL: renewtest.PublicURL,
				Now: clock.Now, Logger: vaulttest.Quiet()})
			src := m.Source(g.ID)
			for i := 0; i < 3; i++ {
				_, err = src.Token(context.Background())
				if err != nil {
					break
				}
				clock.Advance(time.Hour)
			}
			gg, gerr := db.Grant(g.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if c.reason == "" {
				if err != nil || gg.State != vault.GrantActive || gg.RefreshCount != 3 {
					t.Fatalf("Token() = %v; grant %s %q after %d refreshes, want active after 3", err, gg.State, gg.LastErrorClass, gg.RefreshCount)
				}
				return
			}
			if !errors.Is(err, renew.ErrNeedsConsent) || gg.State != vault.GrantNeedsReconsent || gg.LastErrorClass != c.reason ||
				strings.Contains(gg.LastErrorClass, "offline") {
				t.Fatalf("Token() = %v; grant %s %q, want needs_reconsent %q", err, gg.State, gg.LastErrorClass, c.reason)
			}
		})
	}
}
