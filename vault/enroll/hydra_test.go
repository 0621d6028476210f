package enroll_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"tagwatch/vault/enroll"
	"tagwatch/vault/hydratest"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// hydraEnv is the service against a real Ory Hydra: provider "hydra"
// (openid offline_access) and "hydra-profile" (which also needs profile).
type hydraEnv struct {
	*env
	h *hydratest.Hydra
	// ps are the providers by name.
	ps map[string]*provider.Provider
}

func newHydraEnv(t *testing.T) *hydraEnv {
	h := hydratest.Start(t, hydratest.Options{})
	he := &hydraEnv{h: h}
	he.env = newEnv(t, func(_ *env, redirect string, hc *http.Client) map[string]enroll.Provider {
		c := h.CreateClient(t, hydratest.Client{ID: "tagwatch", Secret: "tagwatch-secret",
			RedirectURIs: []string{redirect}, Scopes: []string{"openid", "offline_access", "profile"}})
		mk := func(name string, scopes []string) *provider.Provider {
			p, err := provider.New(context.Background(), provider.Config{Name: name, Kind: provider.KindOIDC,
				Issuer: h.IssuerURL(), ClientID: c.ID, ClientSecret: secret.NewClientSecret(c.Secret),
				Scopes: scopes, RedirectURL: redirect, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		he.ps = map[string]*provider.Provider{"hydra": mk("hydra", nil), "hydra-profile": mk("hydra-profile", []string{"profile"})}
		return map[string]enroll.Provider{"hydra": he.ps["hydra"], "hydra-profile": he.ps["hydra-profile"]}
	})
	return he
}

// toCallback walks the browser from the landing page through Hydra and
// returns the callback URL Hydra redirects to, without requesting it.
func (he *hydraEnv) toCallback(b *browser, link string) (auth, cb *url.URL) {
	he.t.Helper()
	auth = b.begin(link, he.h.AuthURL())
	cb = hydratest.Browse(he.t, b.c, auth.String(), he.url+"/callback")
	return auth, cb
}

func withParam(u *url.URL, k, v string) string {
	c := *u
	q := c.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	c.RawQuery = q.Encode()
	return c.String()
}

func TestHydraEnrollment(t *testing.T) {
	he := newHydraEnv(t)

	t.Run("full enrollment", func(t *testing.T) {
		he.t = t
		link, rec := he.link("ada", "hydra", "user-1")
		b := newBrowser(t)
		auth, cb := he.toCallback(b, link)
		// Hydra v2.3.0 neither sends nor advertises RFC 9207's iss.
		if cb.Query().Get("code") == "" || (cb.Query().Has("iss") && cb.Query().Get("iss") != he.h.IssuerURL()) {
			t.Fatalf("callback %v: want a code (and iss, when present, the issuer)", cb.Query())
		}
		if auth.Query().Get("nonce") == "" || auth.Query().Get("prompt") != "consent" {
			t.Errorf("authorization request %v: want a nonce and prompt=consent", auth.Query())
		}
		before := he.tokens.count()
		p := b.get(cb.String())
		if p.status != http.StatusSeeOther || p.loc != "/enrolled/"+rec.ID {
			t.Fatalf("GET callback = %d Location %q, want 303 to /enrolled/%s: %s", p.status, p.loc, rec.ID, p.body)
		}
		if n := he.tokens.count() - before; n != 1 {
			t.Errorf("token requests = %d, want 1", n)
		}
		expectPKCE(t, auth, he.tokens.lastVerifier())
		done := b.get(he.url + p.loc)
		expectPage(t, done, http.StatusOK, "all set")
		for _, tag := range testWatch.Hashtags {
			if !strings.Contains(done.body, "#"+tag) {
				t.Errorf("success page does not name #%s", tag)
			}
		}
		g := he.expectEnrolled("ada", rec, "user-1")
		if g.Issuer != he.h.IssuerURL() || !slices.Contains(g.IDTokenAudience, "tagwatch") || !slices.Contains(g.Scopes, "offline_access") {
			t.Errorf("grant = %+v, want issuer %s, audience tagwatch, offline_access", g, he.h.IssuerURL())
		}
		_, tok := he.grantOf("ada", "hydra")
		if active, info := he.h.Introspect(t, tok.Refresh.Reveal()); !active || info.TokenUse != "refresh_token" {
			t.Errorf("Hydra introspects the stored refresh token as %+v, want an active refresh token", info)
		}
		noSecretsIn(t, done.body+he.logs.String(), tok.Refresh.Reveal(), tok.Access.Reveal(), cb.Query().Get("code"), cb.Query().Get("state"))

		// The link is spent: GET and POST say so, and the replayed
		// callback (state used) is refused without a token request.
		expectPage(t, b.get(link), http.StatusGone, "already used")
		expectPage(t, b.post(link, url.Values{}), http.StatusGone, "already used")
		before = he.tokens.count()
		expectPage(t, b.get(cb.String()), http.StatusBadRequest, "expired or was already completed")
		if n := he.tokens.count() - before; n != 0 {
			t.Errorf("replayed state: %d token requests, want 0", n)
		}
	})

	t.Run("forged state", func(t *testing.T) {
		he.t = t
		link, rec := he.link("forged", "hydra", "")
		b := newBrowser(t)
		_, cb := he.toCallback(b, link)
		before := he.tokens.count()
		expectPage(t, b.get(withParam(cb, "state", "forged-state-0123456789abcdef")), http.StatusBadRequest, "expired or was already completed")
		expectPage(t, b.get(withParam(cb, "state", "")), http.StatusBadRequest, "incomplete")
		if n := he.tokens.count() - before; n != 0 {
			t.Errorf("forged state: %d token requests, want 0", n)
		}
		he.expectNothingStored("forged", rec)
	})

	t.Run("missing cookie", func(t *testing.T) {
		he.t = t
		link, rec := he.link("nocookie", "hydra", "")
		b := newBrowser(t)
		_, cb := he.toCallback(b, link)
		before := he.tokens.count()
		other := newBrowser(t) // no cookie: another browser, or an attacker's link
		expectPage(t, other.get(cb.String()), http.StatusBadRequest, "started in another browser")
		// A cookie of another flow does not fit either.
		b2 := newBrowser(t)
		b2.begin(link, he.h.AuthURL())
		expectPage(t, b2.get(cb.String()), http.StatusBadRequest, "started in another browser")
		if n := he.tokens.count() - before; n != 0 {
			t.Errorf("missing cookie: %d token requests, want 0", n)
		}
		he.expectNothingStored("nocookie", rec)
		// The refusal did not spend the flow of the browser that has it.
		if p := b.get(cb.String()); p.status != http.StatusSeeOther {
			t.Fatalf("the right browser's callback = %d, want 303: %s", p.status, p.body)
		}
		he.expectEnrolled("nocookie", rec, "user-1")
	})

	t.Run("wrong iss", func(t *testing.T) {
		he.t = t
		link, rec := he.link("mixup", "hydra", "")
		b := newBrowser(t)
		_, cb := he.toCallback(b, link)
		before := he.tokens.count()
		expectPage(t, b.get(withParam(cb, "iss", "https://attacker.example")), http.StatusBadRequest, "did not come from the expected provider")
		if n := he.tokens.count() - before; n != 0 {
			t.Errorf("wrong iss: %d token requests, want 0", n)
		}
		he.expectNothingStored("mixup", rec)
	})

	t.Run("replayed code", func(t *testing.T) {
		he.t = t
		link1, rec1 := he.link("first", "hydra", "")
		b := newBrowser(t)
		_, cb1 := he.toCallback(b, link1)
		if p := b.get(cb1.String()); p.status != http.StatusSeeOther {
			t.Fatalf("first enrollment = %d: %s", p.status, p.body)
		}
		he.expectEnrolled("first", rec1, "user-1")
		// A second flow (its own state and cookie) presented with the
		// first flow's code, already redeemed.
		link2, rec2 := he.link("second", "hydra", "")
		_, cb2 := he.toCallback(b, link2)
		replay := withParam(cb2, "code", cb1.Query().Get("code"))
		before := he.tokens.count()
		expectPage(t, b.get(replay), http.StatusBadRequest, "could not be completed")
		if n := he.tokens.count() - before; n != 1 {
			t.Errorf("replayed code: %d token requests, want 1 (refused by Hydra)", n)
		}
		he.expectNothingStored("second", rec2)
	})

	t.Run("access denied", func(t *testing.T) {
		he.t = t
		link, rec := he.link("denier", "hydra", "")
		b := newBrowser(t)
		he.h.SetDeny(true)
		_, cb := he.toCallback(b, link)
		he.h.SetDeny(false)
		if cb.Query().Get("error") != "access_denied" {
			t.Fatalf("callback %v: want error=access_denied", cb.Query())
		}
		before := he.tokens.count()
		p := b.get(cb.String())
		expectPage(t, p, http.StatusForbidden, "You did not allow access")
		if !strings.Contains(p.body, "works until") {
			t.Errorf("denied page does not say until when the link works:\n%s", p.body)
		}
		if n := he.tokens.count() - before; n != 0 {
			t.Errorf("access denied: %d token requests, want 0", n)
		}
		he.expectNothingStored("denier", rec)
		// The link is still usable.
		_, cb = he.toCallback(b, link)
		if p := b.get(cb.String()); p.status != http.StatusSeeOther {
			t.Fatalf("second try after a denial = %d, want 303: %s", p.status, p.body)
		}
		he.expectEnrolled("denier", rec, "user-1")
	})

	t.Run("identity mismatch", func(t *testing.T) {
		he.t = t
		link, rec := he.link("expects-user1", "hydra", "user-1")
		b := newBrowser(t)
		he.h.SetSubject("mallory")
		_, cb := he.toCallback(b, link)
		he.h.SetSubject("user-1")
		p := b.get(cb.String())
		expectPage(t, p, http.StatusForbidden, "different account")
		expectPage(t, p, http.StatusForbidden, "This link is for user-1,")
		he.expectNothingStored("expects-user1", rec)
	})

	t.Run("no offline access", func(t *testing.T) {
		he.t = t
		link, rec := he.link("online-only", "hydra", "")
		b := newBrowser(t)
		he.h.SetConsentScopes([]string{"openid"})
		_, cb := he.toCallback(b, link)
		he.h.SetConsentScopes(nil)
		expectPage(t, b.get(cb.String()), http.StatusForbidden, "did not grant offline access")
		he.expectNothingStored("online-only", rec)
	})

	t.Run("scope missing", func(t *testing.T) {
		he.t = t
		link, rec := he.link("no-profile", "hydra-profile", "")
		b := newBrowser(t)
		he.h.SetConsentScopes([]string{"openid", "offline_access"})
		_, cb := he.toCallback(b, link)
		he.h.SetConsentScopes(nil)
		p := b.get(cb.String())
		expectPage(t, p, http.StatusForbidden, "permissions were not granted")
		if !strings.Contains(p.body, "profile") {
			t.Errorf("page does not name the missing scope:\n%s", p.body)
		}
		he.expectNothingStored("no-profile", rec)
	})
}
