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

	// Revoked and deleted since: a link that gives access again, bound to
	// the account id, still names @ada (from the sign-in the revocation
	// left), as does an old re-consent link of the deleted grant.
	old := reconsent(g.Subject)
	out, err := xe.db.UnenrollGrant(g.ID, vault.Unenroll{Actor: "test", Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := xe.db.SettleRevocation(out.RevocationID, "test"); err != nil {
		t.Fatal(err)
	}
	again, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "x",
		Purpose: vault.PurposeReconsent, Expected: "1001", CreatedBy: "user page"})
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]string{"give access again": again, "the deleted grant's re-consent link": old} {
		p := newBrowser(t).get(l)
		if p.status != http.StatusOK || !strings.Contains(p.body, "sign in as @ada") || strings.Contains(p.body, "1001") {
			t.Errorf("%s: landing = %d, want it to name @ada:\n%s", name, p.status, p.body)
		}
		// The watch the revocation suspended waits for this consent.
		if !strings.Contains(p.body, "#golang") || !strings.Contains(p.body, "resume where they stopped") {
			t.Errorf("%s: landing does not show the waiting watch and that it resumes:\n%s", name, p.body)
		}
	}
}

// TestLandingNothingWaiting: a re-consent link whose user has no watch
// waiting does not say that watches resume.
func TestLandingNothingWaiting(t *testing.T) {
	xe := newXEnv(t)
	xe.t = t
	link, rec := xe.link("ada", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	g := xe.expectEnrolled("ada", rec, "1001")
	l, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "x",
		Purpose: vault.PurposeReconsent, GrantID: g.ID, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if p := newBrowser(t).get(l); p.status != http.StatusOK || strings.Contains(p.body, "resume") {
		t.Errorf("landing of a re-consent with nothing waiting = %d, says watches resume:\n%s", p.status, p.body)
	}
}
