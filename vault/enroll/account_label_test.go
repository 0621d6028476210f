package enroll_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"tagwatch/vault"
)

// TestLandingNamesAccount: the landing page names the account to sign in
// with as people know it, "@name" at X, never the numeric account id a
// re-consent link is bound to (the grant's subject) (C16).
func TestLandingNamesAccount(t *testing.T) {
	xe := newXEnv(t)
	xe.t = t
	link, rec := xe.link("ada", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	g := xe.expectEnrolled("ada", rec, "1001")

	reconsent := func(expected string) string {
		l, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "x",
			Purpose: vault.PurposeReconsent, GrantID: g.ID, Expected: expected, CreatedBy: "renewal"})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	enrollLink := func(user, expected string) func() string {
		return func() string { l, _ := xe.link(user, "x", expected); return l }
	}
	for _, c := range []struct {
		name, want, not string
		link            func() string
	}{
		// Renewal binds the link to the grant's subject, X's account id.
		{"re-consent bound to the subject", "sign in as @ada", "1001", func() string { return reconsent(g.Subject) }},
		{"re-consent naming the username", "sign in as @ada", "@@", func() string { return reconsent("ada") }},
		{"link naming a username", "sign in as @grace", "@@", enrollLink("grace", "grace")},
		{"link naming @username", "sign in as @Grace", "@@", enrollLink("grace2", "@Grace")},
		{"link naming an unknown id", "sign in as the account with id 1002", "@1002", enrollLink("mallory", "1002")},
	} {
		t.Run(c.name, func(t *testing.T) {
			xe.t = t
			p := newBrowser(t).get(c.link())
			if p.status != http.StatusOK || !strings.Contains(p.body, c.want) || strings.Contains(p.body, c.not) {
				t.Errorf("landing = %d, want %q and not %q:\n%s", p.status, c.want, c.not, p.body)
			}
		})
	}
}
