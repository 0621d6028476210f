package enroll_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
)

// TestOfflineAccessUnlisted is case C02: a provider (Microsoft Entra ID)
// that grants offline access with a refresh token but does not list
// offline_access in the answer's scope. The refresh token proves it: the
// enrollment succeeds. Its neighbours: no scope at all (RFC 6749 5.1: as
// requested), offline_access listed without a refresh token (refused as
// "did not grant offline access"), and another required scope missing
// (still refused as reduced permissions, naming that scope only).
func TestOfflineAccessUnlisted(t *testing.T) {
	ci := newCraftIssuer(t)
	var edit func(map[string]any)
	e := newEnv(t, func(_ *env, redirect string, hc *http.Client) map[string]enroll.Provider {
		c := *hc
		c.Transport = renewtest.EditTokenAnswers{Base: hc.Transport, Edit: func(m map[string]any) { edit(m) }}
		mk := func(name string, extra ...string) enroll.Provider {
			p, err := provider.New(context.Background(), provider.Config{Name: name, Kind: provider.KindOIDC, Issuer: ci.srv.URL,
				ClientID: craftClientID, ClientSecret: secret.NewClientSecret("s3cret"), RedirectURL: redirect, HTTPClient: &c, Scopes: extra})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		return map[string]enroll.Provider{"entra": mk("entra"), "api": mk("api", "api.read")}
	})
	set := func(scope any, refresh bool) func(map[string]any) {
		return func(m map[string]any) {
			if scope == nil {
				delete(m, "scope")
			} else {
				m["scope"] = scope
			}
			if !refresh {
				delete(m, "refresh_token")
			}
		}
	}
	cases := []struct {
		name     string
		provider string
		edit     func(map[string]any)
		status   int    // 303: enrolled
		text     string // on a refusal page
	}{
		// C02's answer: {"token_type":"Bearer","scope":"openid profile email","expires_in":3600,...}.
		{"Entra answer: refresh token, offline_access not listed", "entra", set("openid profile email", true), http.StatusSeeOther, ""},
		{"no scope in the answer, refresh token", "entra", set(nil, true), http.StatusSeeOther, ""},
		{"offline_access listed, refresh token", "entra", set("openid offline_access", true), http.StatusSeeOther, ""},
		{"offline_access listed, no refresh token", "entra", set("openid offline_access", false), http.StatusForbidden, "did not grant offline access"},
		{"no scope, no refresh token", "entra", set(nil, false), http.StatusForbidden, "did not grant offline access"},
		{"api scope missing, offline_access not listed", "api", set("openid profile email", true), http.StatusForbidden, "Some permissions were not granted"},
		{"api scope granted, offline_access not listed", "api", set("openid api.read", true), http.StatusSeeOther, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			edit = c.edit
			user := "offline-" + strconv.Itoa(i)
			link, rec := e.link(user, c.provider, "")
			b := newBrowser(t)
			auth := b.begin(link, ci.srv.URL+"/authorize")
			at := b.get(auth.String())
			p := b.get(at.loc)
			if c.status != http.StatusSeeOther {
				expectPage(t, p, c.status, c.text)
				if c.provider == "api" && !strings.Contains(p.body, "api.read") {
					t.Errorf("refusal does not name the missing api.read:\n%s", p.body)
				}
				if strings.Contains(p.body, "offline_access") && c.text != "did not grant offline access" {
					t.Errorf("refusal names offline_access, which the refresh token proves:\n%s", p.body)
				}
				e.expectNothingStored(user, rec)
				return
			}
			if p.status != http.StatusSeeOther {
				t.Fatalf("callback = %d, want 303 (enrolled): %s", p.status, p.body)
			}
			g, tok := e.grantOf(user, c.provider)
			if g.State != vault.GrantActive || tok.Refresh.IsZero() {
				t.Errorf("grant = %s, refresh token held %v; want active with one", g.State, !tok.Refresh.IsZero())
			}
			if l, err := e.db.LinkByID(rec.ID); err != nil || l.UsedAt.IsZero() {
				t.Errorf("link = %+v, %v; want used", l, err)
			}
		})
	}
}
