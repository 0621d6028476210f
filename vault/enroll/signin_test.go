package enroll_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/hydratest"
	"tagwatch/vault/provider"
)

// signInLink creates a sign-in link for user at prov.
func (e *env) signInLink(user, prov, expected string) (string, vault.Enrollment) {
	e.t.Helper()
	l, rec, err := e.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: user, Provider: prov, Expected: expected,
		Purpose: vault.PurposeSignIn, CreatedBy: "test"})
	if err != nil {
		e.t.Fatalf("CreateLink(sign-in for %s at %s) = %v", user, prov, err)
	}
	return l, rec
}

// TestHydraSignInLink: a sign-in link against a real Ory Hydra asks for
// openid only (no offline_access, no prompt=consent), binds the verified
// ID token's subject to the user, stores no grant and no token, and
// refuses an account that already signs in another user.
func TestHydraSignInLink(t *testing.T) {
	he := newHydraEnv(t)
	for _, u := range []string{"ada", "bob"} {
		he.link(u, "hydra", "") // makes the user; never used
	}

	link, rec := he.signInLink("ada", "hydra", "")
	b := newBrowser(t)
	landing := b.get(link)
	if landing.status != http.StatusOK || !strings.Contains(landing.body, "Sign in to tagwatch with your hydra account") ||
		!strings.Contains(landing.body, "openid") || strings.Contains(landing.body, "offline_access") {
		t.Fatalf("sign-in landing page = %d, want the sign-in words and openid only:\n%s", landing.status, landing.body)
	}
	auth := b.begin(link, he.h.AuthURL())
	q := auth.Query()
	if q.Get("scope") != "openid" || q.Has("prompt") || q.Get("nonce") == "" || q.Get("code_challenge_method") != "S256" ||
		q.Get("client_id") != "tagwatch" {
		t.Errorf("sign-in authorization request %v: want scope=openid only, no prompt, a nonce and PKCE", q)
	}
	cb := hydratest.Browse(t, b.c, auth.String(), he.url+"/callback")
	before := he.tokens.count()
	p := b.get(cb.String())
	if p.status != http.StatusSeeOther || p.loc != "/enrolled/"+rec.ID {
		t.Fatalf("GET callback = %d Location %q, want 303 to /enrolled/%s: %s", p.status, p.loc, rec.ID, p.body)
	}
	if n := he.tokens.count() - before; n != 1 {
		t.Errorf("token requests = %d, want 1 (the code; a sign-in holds no refresh token to revoke)", n)
	}
	expectPKCE(t, auth, he.tokens.lastVerifier())
	done := b.get(he.url + p.loc)
	expectPage(t, done, http.StatusOK, "You can now sign in to your tagwatch page with this account")

	u, err := he.db.UserBySignIn("hydra", he.h.IssuerURL(), "user-1")
	if err != nil || u.ID != "ada" || len(u.SignIns) != 1 || u.SignIns[0].Issuer != he.h.IssuerURL() {
		t.Errorf("UserBySignIn(hydra, user-1) = %+v, %v; want ada with the sign-in bound", u, err)
	}
	if gs, err := he.db.ListGrants(); err != nil || len(gs) != 0 {
		t.Errorf("grants after a sign-in = %d, %v; want none", len(gs), err)
	}
	if ws, _ := he.db.ListWatches("ada"); len(ws) != 0 {
		t.Errorf("ada has %d watches after a sign-in, want none", len(ws))
	}
	if l, _ := he.db.LinkByID(rec.ID); l.UsedAt.IsZero() || l.GrantID != "" {
		t.Errorf("sign-in link = %+v, want used, for no grant", l)
	}
	noSecretsIn(t, done.body+he.logs.String(), cb.Query().Get("code"), cb.Query().Get("state"))
	expectPage(t, b.get(link), http.StatusGone, "already used")

	// The same account for bob: refused, nothing bound, the link unused.
	link2, rec2 := he.signInLink("bob", "hydra", "")
	b2 := newBrowser(t)
	cb2 := hydratest.Browse(t, b2.c, b2.begin(link2, he.h.AuthURL()).String(), he.url+"/callback")
	expectPage(t, b2.get(cb2.String()), http.StatusConflict, "already signs in someone else")
	if u, _ := he.db.User("bob"); len(u.SignIns) != 0 {
		t.Errorf("bob's sign-ins = %+v, want none", u.SignIns)
	}
	if l, _ := he.db.LinkByID(rec2.ID); !l.UsedAt.IsZero() {
		t.Error("the refused sign-in used bob's link")
	}
	if u, err := he.db.UserBySignIn("hydra", he.h.IssuerURL(), "user-1"); err != nil || u.ID != "ada" {
		t.Errorf("UserBySignIn(hydra, user-1) after bob's refusal = %s, %v; want ada", u.ID, err)
	}
}

// kindOnly is a provider of which CreateLink asks only the kind.
type kindOnly struct {
	enroll.Provider
	kind string
}

func (k kindOnly) Kind() string { return k.kind }

// TestSignInLinkNeedsOIDC: a sign-in link is refused at a provider that is
// not an OpenID Connect provider (X: no ID token says who signs in), and
// at one that is not available to check; it carries no watch.
func TestSignInLinkNeedsOIDC(t *testing.T) {
	e := newEnv(t, func(*env, string, *http.Client) map[string]enroll.Provider {
		return map[string]enroll.Provider{"x": kindOnly{kind: provider.KindX}, "corp": kindOnly{kind: provider.KindOIDC}, "offline": nil}
	})
	e.link("ada", "corp", "")
	for _, prov := range []string{"x", "offline"} {
		_, _, err := e.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: prov, Purpose: vault.PurposeSignIn})
		if !errors.Is(err, vault.ErrInvalid) || !strings.Contains(err.Error(), "not an OpenID Connect provider") {
			t.Errorf("CreateLink(sign-in at %s) = %v, want ErrInvalid naming the OpenID Connect need", prov, err)
		}
	}
	w := testWatch
	_, _, err := e.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "corp", Purpose: vault.PurposeSignIn, Watch: &w})
	if !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("CreateLink(sign-in with a watch) = %v, want ErrInvalid", err)
	}
	if _, _, err := e.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "corp", Purpose: vault.PurposeSignIn}); err != nil {
		t.Errorf("CreateLink(sign-in at corp) = %v", err)
	}
}
