package enroll_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// time1 is the slack of link lifetime checks.
const time1 = time.Minute

// xEnv is the consent pages over the full stack (renewtest): the X
// sandbox with two users, its provider, renewal, and the stack's vault.
type xEnv struct {
	*env
	stack *renewtest.Stack
	x     *xsandbox.Server
}

func newXEnv(t *testing.T) *xEnv {
	t.Helper()
	xe := &xEnv{}
	xe.env = newEnv(t, func(e *env, redirect string, _ *http.Client) map[string]enroll.Provider {
		xe.stack = renewtest.New(t, renewtest.Options{Now: e.clock.Now, RedirectURL: redirect, Transport: e.tokens,
			Users: []xsandbox.User{{ID: "1001", Username: "ada", Name: "Ada L"}, {ID: "1002", Username: "mallory", Name: "M"}},
			Vault: []vaulttest.Option{vaulttest.Rules(vaulttest.StubRules{})}})
		xe.x, e.db = xe.stack.Sandbox, xe.stack.DB
		return map[string]enroll.Provider{"x": xe.stack.Provider}
	})
	return xe
}

// enroll runs the flow with auto-approve as the X user xUser and returns
// the success page.
func (xe *xEnv) enroll(b *browser, link, xUser string) page {
	xe.t.Helper()
	xe.x.SetAutoApprove(xUser)
	defer xe.x.SetAutoApprove("")
	auth := b.begin(link, xe.x.URL()+string(xsandbox.EndpointAuthorize))
	at := b.get(auth.String())
	if at.status != http.StatusFound || !strings.HasPrefix(at.loc, xe.url+"/callback?") {
		xe.t.Fatalf("authorize = %d %q, want a redirect to the callback: %s", at.status, at.loc, at.body)
	}
	cb := b.get(at.loc)
	if cb.status != http.StatusSeeOther || !strings.HasPrefix(cb.loc, "/enrolled/") {
		return cb
	}
	expectPKCE(xe.t, auth, xe.tokens.lastVerifier())
	return b.get(xe.url + cb.loc)
}

var hiddenRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)

func TestXEnrollment(t *testing.T) {
	xe := newXEnv(t)

	t.Run("auto-approve", func(t *testing.T) {
		xe.t = t
		link, rec := xe.link("ada", "x", "@Ada")
		p := xe.enroll(newBrowser(t), link, "1001")
		expectPage(t, p, http.StatusOK, "all set")
		g := xe.expectEnrolled("ada", rec, "1001")
		st := xe.x.Stats()
		if g.Username != "ada" || st.APICalls[xsandbox.EndpointUsersMe]["1001"] != 1 || st.TokenRequests["authorization_code"] != 1 {
			t.Errorf("grant %+v, sandbox stats %+v: want username ada from one users/me call and one code exchange", g, st)
		}
		if len(g.Scopes) != 3 {
			t.Errorf("grant scopes = %v, want %v", g.Scopes, provider.XScopes)
		}
		// The grant the pages stored renews: the stack's renewal refreshes
		// it with the stored refresh token, and the new token works.
		src, before := xe.stack.Manager.Source(g.ID), xe.stack.Refreshes()
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatalf("Token() of the enrolled grant = %v", err)
		}
		next, err := src.Invalidate(context.Background(), tok)
		if err != nil || next.Equal(tok.Value) || xe.stack.UsersMe(next) != http.StatusOK || xe.stack.Refreshes() != before+1 {
			t.Errorf("refresh of the enrolled grant = %v (%d refreshes); want a new working token from one refresh", err, xe.stack.Refreshes()-before)
		}
	})

	t.Run("consent page", func(t *testing.T) {
		xe.t = t
		link, rec := xe.link("ada2", "x", "")
		b := newBrowser(t)
		auth := b.begin(link, xe.x.URL())
		consent := b.get(auth.String())
		m := hiddenRequest.FindStringSubmatch(consent.body)
		if consent.status != http.StatusOK || m == nil {
			t.Fatalf("consent page = %d without a request field:\n%s", consent.status, consent.body)
		}
		ans := b.post(xe.x.URL()+string(xsandbox.EndpointAuthorize), url.Values{"request": {html.UnescapeString(m[1])},
			"username": {"ada"}, "action": {"authorize"}})
		if ans.status != http.StatusFound || !strings.HasPrefix(ans.loc, xe.url+"/callback?") {
			t.Fatalf("consent answer = %d %q, want a redirect to the callback", ans.status, ans.loc)
		}
		cb := b.get(ans.loc)
		if cb.status != http.StatusSeeOther {
			t.Fatalf("callback = %d: %s", cb.status, cb.body)
		}
		expectPage(t, b.get(xe.url+cb.loc), http.StatusOK, "all set")
		xe.expectEnrolled("ada2", rec, "1001")
	})

	t.Run("cancel on the consent page", func(t *testing.T) {
		xe.t = t
		link, rec := xe.link("canceler", "x", "")
		b := newBrowser(t)
		auth := b.begin(link, xe.x.URL())
		m := hiddenRequest.FindStringSubmatch(b.get(auth.String()).body)
		if m == nil {
			t.Fatal("no consent page")
		}
		ans := b.post(xe.x.URL()+string(xsandbox.EndpointAuthorize), url.Values{"request": {html.UnescapeString(m[1])}, "action": {"cancel"}})
		expectPage(t, b.get(ans.loc), http.StatusForbidden, "You did not allow access")
		xe.expectNothingStored("canceler", rec)
		if p := b.get(link); p.status != http.StatusOK {
			t.Errorf("landing after a cancel = %d, want 200 (the link stays usable)", p.status)
		}
	})

	t.Run("wrong account", func(t *testing.T) {
		xe.t = t
		link, rec := xe.link("ada3", "x", "ada")
		p := xe.enroll(newBrowser(t), link, "1002")
		expectPage(t, p, http.StatusForbidden, "different account")
		// The page says which account the link is for.
		expectPage(t, p, http.StatusForbidden, "This link is for @ada, so nothing was stored.")
		expectPage(t, p, http.StatusForbidden, "sign in as @ada.")
		xe.expectNothingStored("ada3", rec)
		if st := xe.x.Stats(); st.Revocations == 0 {
			t.Errorf("sandbox revocations = %d, want the refused sign-in's token revoked", st.Revocations)
		}
	})

	t.Run("reconsent resumes the watches", func(t *testing.T) {
		xe.t = t
		link, rec := xe.link("bea", "x", "")
		expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
		g := xe.expectEnrolled("bea", rec, "1001")
		// Renewal finds the grant dead: it suspends the watches and
		// queues a re-consent link; the operator sends another one.
		if _, err := xe.db.MarkNeedsReconsent(g.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: xe.url + "/enroll/", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		watches, err := xe.db.ListWatches("bea")
		if err != nil || len(watches) != 1 || watches[0].SuspendReason != vault.SuspendNeedsReconsent {
			t.Fatalf("watches after MarkNeedsReconsent = %+v, %v; want one suspended (needs_reconsent)", watches, err)
		}
		watchID := watches[0].ID
		rlink, rrec, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "bea", Provider: "x",
			Purpose: vault.PurposeReconsent, GrantID: g.ID, CreatedBy: "renewal"})
		if err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t)
		landing := b.get(rlink)
		if landing.status != http.StatusOK || !strings.Contains(landing.body, "Renew") || !strings.Contains(landing.body, "#golang") {
			t.Errorf("re-consent landing = %d, want the renewal text and the suspended watch's hashtags:\n%s", landing.status, landing.body)
		}
		// Another X account cannot take the grant over.
		// A re-consent link names the grant's account by its username,
		// never by its id.
		wrong := xe.enroll(b, rlink, "1002")
		expectPage(t, wrong, http.StatusForbidden, "This link is for @ada,")
		if strings.Contains(wrong.body, "1001") {
			t.Errorf("the wrong-account page names the account by its id:\n%s", wrong.body)
		}
		expectPage(t, xe.enroll(b, rlink, "1001"), http.StatusOK, "Access renewed")
		g2, _ := xe.grantOf("bea", "x")
		if g2.ID != g.ID || g2.State != vault.GrantActive || g2.Subject != "1001" {
			t.Errorf("grant after re-consent = %+v, want %s active", g2, g.ID)
		}
		w, err := xe.db.Watch(watchID)
		if err != nil {
			t.Fatal(err)
		}
		if w.State != vault.WatchActive || w.SuspendReason != "" {
			t.Errorf("watch after re-consent = %+v, want active", w)
		}
		if ws, err := xe.db.ListWatches("bea"); err != nil || len(ws) != 1 {
			t.Errorf("bea has %d watches (%v), want the one resumed", len(ws), err)
		}
		r, err := xe.db.OutboxRow(vault.OutboxID("bea", watchID, rrec.ID, vault.NoticeEnrolled, "console:"))
		if err != nil {
			t.Fatal(err)
		}
		var notice vault.Notice
		if err := json.Unmarshal(r.Payload, &notice); err != nil {
			t.Fatal(err)
		}
		if !notice.Resumed || notice.Message != "" || notice.Schedule != testWatch.Schedule {
			t.Errorf("notice = %s, want the facts of a resumed watch and no words", r.Payload)
		}
	})
}

func TestCreateLink(t *testing.T) {
	xe := newXEnv(t)
	ctx := context.Background()
	w := testWatch
	good := vault.LinkRequest{UserID: "u1", Provider: "x", Watch: &w}
	bad := func(mod func(*vault.LinkRequest)) vault.LinkRequest {
		r := good
		spec := *good.Watch
		r.Watch = &spec
		mod(&r)
		return r
	}
	tests := []struct {
		name string
		req  vault.LinkRequest
		want error
	}{
		{"unknown provider", bad(func(r *vault.LinkRequest) { r.Provider = "mastodon" }), enroll.ErrUnknownProvider},
		{"no user", bad(func(r *vault.LinkRequest) { r.UserID = "" }), vault.ErrInvalid},
		{"control characters", bad(func(r *vault.LinkRequest) { r.UserName = "a\nb" }), vault.ErrInvalid},
		{"no watch", bad(func(r *vault.LinkRequest) { r.Watch = nil }), vault.ErrInvalid},
		{"bad hashtag", bad(func(r *vault.LinkRequest) { r.Watch.Hashtags = []string{"no-dash"} }), vault.ErrInvalid},
		{"no hashtag", bad(func(r *vault.LinkRequest) { r.Watch.Hashtags = nil }), vault.ErrInvalid},
		{"no target", bad(func(r *vault.LinkRequest) { r.Watch.Targets = nil }), vault.ErrInvalid},
		{"bad target", bad(func(r *vault.LinkRequest) { r.Watch.Targets = []string{"ftp://x"} }), vault.ErrInvalid},
		{"no schedule", bad(func(r *vault.LinkRequest) { r.Watch.Schedule = " " }), vault.ErrInvalid},
		{"ttl too long", bad(func(r *vault.LinkRequest) { r.TTL = vault.MaxLinkTTL * 2 }), vault.ErrInvalid},
		{"reconsent of unknown grant", bad(func(r *vault.LinkRequest) { r.Purpose, r.GrantID, r.Watch = vault.PurposeReconsent, "nope", nil }), vault.ErrNotFound},
	}
	// The rules decide what a target is (worker.Rules through the
	// notifier in the daemon); here, a stub that refuses this one.
	xe.db.SetRules(vaulttest.StubRules{Refuse: []string{"ftp://x"}})
	for _, tc := range tests {
		if _, _, err := xe.svc.CreateLink(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("CreateLink(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := xe.svc.CreateLink(ctx, tests[0].req); !errors.Is(err, vault.ErrInvalid) || !strings.Contains(err.Error(), `"mastodon"`) {
		t.Errorf("CreateLink(unknown provider) = %v, want an invalid request naming the provider", err)
	}

	r := bad(func(r *vault.LinkRequest) {
		r.Watch.Hashtags = []string{"#Go", "go", "rust_lang"}
		r.UserEmail = "u1@example.com"
	})
	link, rec, err := xe.svc.CreateLink(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(link, xe.url+"/enroll/")
	if !ok || len(token) != 43 || rec.Hash != vault.HashLinkToken(token) {
		t.Fatalf("CreateLink = %q, want %s/enroll/<43-char token> stored by its hash", link, xe.url)
	}
	if got := rec.Watch.Hashtags; len(got) != 2 || got[0] != "Go" || got[1] != "rust_lang" {
		t.Errorf("hashtags = %v, want [Go rust_lang] (# dropped, duplicates removed)", got)
	}
	if d := rec.ExpiresAt.Sub(rec.CreatedAt); d < vault.DefaultLinkTTL-time1 || d > vault.DefaultLinkTTL+time1 {
		t.Errorf("link lives %v, want %v", d, vault.DefaultLinkTTL)
	}

	// A GET never consumes the link, however often.
	b := newBrowser(t)
	for range 3 {
		if p := b.get(link); p.status != http.StatusOK {
			t.Fatalf("GET link = %d, want 200", p.status)
		}
	}
	links, err := xe.db.ListLinks(xe.clock.Now())
	if err != nil || len(links) != 1 || links[0].State != vault.LinkPending || links[0].Hash != "" {
		t.Fatalf("ListLinks = %+v, %v; want one pending link without its hash", links, err)
	}

	// Canceled, then expired links get their pages.
	if err := xe.db.CancelLink(rec.ID, "op"); err != nil {
		t.Fatal(err)
	}
	expectPage(t, b.get(link), http.StatusGone, "canceled")
	expectPage(t, b.post(link, url.Values{}), http.StatusGone, "canceled")
	if err := xe.db.CancelLink("unknown", "op"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("CancelLink(unknown) = %v, want vault.ErrNotFound", err)
	}
	link2, rec2, err := xe.svc.CreateLink(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	xe.clock.Advance(vault.DefaultLinkTTL + time1)
	expectPage(t, b.get(link2), http.StatusGone, "expired")
	expectPage(t, b.post(link2, url.Values{}), http.StatusGone, "expired")
	links, _ = xe.db.ListLinks(xe.clock.Now())
	states := map[string]vault.LinkState{}
	for _, l := range links {
		states[l.ID] = l.State
	}
	if states[rec.ID] != vault.LinkCanceled || states[rec2.ID] != vault.LinkExpired {
		t.Errorf("link states = %v, want canceled and expired", states)
	}
	expectPage(t, b.get(xe.url+"/enroll/"+strings.Repeat("A", 43)), http.StatusNotFound, "not valid")
	expectPage(t, b.get(xe.url+"/enroll/short"), http.StatusNotFound, "not valid")
}

// TestDonePagesLinkToAccount: with the user's page on (Config.AccountURL),
// the page a consent ends on links to it and says what it is for; a
// re-consent that resumed nothing says only that access is renewed.
func TestDonePagesLinkToAccount(t *testing.T) {
	xe := &xEnv{}
	xe.env = newEnv(t, func(e *env, redirect string, _ *http.Client) map[string]enroll.Provider {
		e.accountURL = "https://tagwatch.example.com/account/"
		xe.stack = renewtest.New(t, renewtest.Options{Now: e.clock.Now, RedirectURL: redirect, Transport: e.tokens,
			Users: []xsandbox.User{{ID: "1001", Username: "ada", Name: "Ada L"}},
			Vault: []vaulttest.Option{vaulttest.Rules(vaulttest.StubRules{})}})
		xe.x, e.db = xe.stack.Sandbox, xe.stack.DB
		return map[string]enroll.Provider{"x": xe.stack.Provider}
	})
	link, _ := xe.link("ada", "x", "")
	p := xe.enroll(newBrowser(t), link, "1001")
	expectPage(t, p, http.StatusOK, `<a href="https://tagwatch.example.com/account/">Open your tagwatch page</a>`)
	expectPage(t, p, http.StatusOK, "Your tagwatch page shows your watches")

	// A re-consent of the active grant: the running watch is listed, and
	// nothing claims it had stopped.
	g, _ := xe.grantOf("ada", "x")
	token, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "ada", Provider: "x", Purpose: vault.PurposeReconsent, GrantID: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	p = xe.enroll(newBrowser(t), token, "1001")
	expectPage(t, p, http.StatusOK, "Access renewed")
	expectPage(t, p, http.StatusOK, "These watches of yours are running")
	if strings.Contains(p.body, "resume") {
		t.Errorf("a re-consent that resumed nothing says watches resume:\n%s", p.body)
	}
}
