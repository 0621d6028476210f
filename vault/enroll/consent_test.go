package enroll_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestWatchRefusedAtConsent is C11: a link whose watch stopped being valid
// after it was sent (the configuration changed: the mail channel is gone)
// gets a clear page when the user opens it and when they press the button,
// and the provider sees neither an authorization request nor a token
// request. Once the rules accept the watch again, the same link works.
func TestWatchRefusedAtConsent(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("zed", "x", "")
	xe.db.SetRules(vaulttest.StubRules{Refuse: []string{"mailto:ada@example.com"}})

	b := newBrowser(t)
	for _, p := range []page{b.get(link), b.post(link, url.Values{})} {
		expectPage(t, p, http.StatusConflict, "no longer accepted")
		if !strings.Contains(p.body, "Ask whoever sent you the link for a new one") || strings.Contains(p.body, "mailto") {
			t.Errorf("page = %s, want the short message without details", p.body)
		}
	}
	st := xe.x.Stats()
	if n := xe.tokens.count(); n != 0 || st.AuthorizeRequests != 0 || len(st.TokenRequests) != 0 {
		t.Errorf("the provider saw %d authorization and %d token requests (%v), want none", st.AuthorizeRequests, n, st.TokenRequests)
	}
	xe.expectNothingStored("zed", rec)
	if logs := xe.logs.String(); !strings.Contains(logs, "reason=watch_refused") || !strings.Contains(logs, "no channel delivers to it") {
		t.Errorf("log lacks the refusal and its cause:\n%s", logs)
	}

	xe.db.SetRules(vaulttest.StubRules{})
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	xe.expectEnrolled("zed", rec, "1001")
}

// TestWatchRefusedDuringFlow: the rules change while the user is at the
// provider. The commit checks the watch again: a clear page, nothing
// stored, and the tokens just obtained are revoked rather than kept.
func TestWatchRefusedDuringFlow(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("yan", "x", "")
	b := newBrowser(t)
	auth := b.begin(link, xe.x.URL()+string(xsandbox.EndpointAuthorize))
	xe.x.SetAutoApprove("1001")
	at := b.get(auth.String())
	xe.x.SetAutoApprove("")
	xe.db.SetRules(vaulttest.StubRules{Refuse: []string{"console:"}})
	expectPage(t, b.get(at.loc), http.StatusConflict, "no longer accepted")
	xe.expectNothingStored("yan", rec)
	if st := xe.x.Stats(); st.Revocations == 0 {
		t.Error("the refused consent's refresh token was not revoked at the provider")
	}
}
