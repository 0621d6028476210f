package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// testRules: every method that stores a watch applies the rules it was
// given: the normalised spec is stored, a refused one is ErrInvalid and
// stores nothing.
func testRules(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	refused := vault.WatchSpec{Hashtags: []string{"refused"}, Schedule: "@hourly", Targets: []string{"console:"}}

	w, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{" #zig "},
		Schedule: "@daily", Targets: []string{"console:"}}}, "op")
	if err != nil || !slices.Equal(w.Hashtags, []string{"zig"}) || !slices.Equal(watchOf(t, s, w.ID).Hashtags, []string{"zig"}) {
		t.Errorf("AddWatch(' #zig ') = %v, %v; want it stored normalised as zig", w.Hashtags, err)
	}
	_, err = s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: refused}, "op")
	wantErr(t, "AddWatch(refused)", err, vault.ErrInvalid)
	var inv *vault.InvalidError
	if !errors.As(err, &inv) || inv.Object != "watch" {
		t.Errorf("AddWatch(refused) = %#v, want a *vault.InvalidError naming the watch", err)
	}
	if ws, _ := s.ListWatches("zed"); len(ws) != 2 {
		t.Errorf("zed has %d watches after a refused add, want 2", len(ws))
	}

	target := []string{"refused:"}
	_, err = s.ChangeWatch(w.ID, vault.WatchChange{Targets: target}, "op")
	wantErr(t, "ChangeWatch(refused target)", err, vault.ErrInvalid)
	if got := watchOf(t, s, w.ID); !slices.Equal(got.Targets, []string{"console:"}) {
		t.Errorf("watch after a refused change = %v, want unchanged", got.Targets)
	}
	if got, err := s.ChangeWatch(w.ID, vault.WatchChange{Hashtags: []string{"#odin"}}, "op"); err != nil || !slices.Equal(got.Hashtags, []string{"odin"}) {
		t.Errorf("ChangeWatch(#odin) = %v, %v; want odin", got.Hashtags, err)
	}

	spec := cloneSpec(refused)
	_, _, err = s.CreateLink(vault.LinkRequest{UserID: "amy", Provider: "x", Watch: &spec})
	wantErr(t, "CreateLink(refused watch)", err, vault.ErrInvalid)
	if links, _ := s.ListLinks(s.Now()); len(links) != 1 {
		t.Errorf("%d links after a refused CreateLink, want 1 (zed's)", len(links))
	}
	check := cloneSpec(spec1)
	check.Hashtags = []string{"#go"}
	if err := s.CheckWatch("x", &check); err != nil || check.Hashtags[0] != "go" {
		t.Errorf("CheckWatch(#go) = %v, %v; want go", check.Hashtags, err)
	}

	// Rules that change between the link and the consent: the link's watch
	// is checked again, and the consent stores nothing.
	e := link(t, s, "amy", spec2)
	s.SetRules(refuseAll{})
	_, err = s.CommitConsent(consentFor(s, e, "sub-amy", "rt-amy"))
	wantErr(t, "CommitConsent(watch the rules now refuse)", err, vault.ErrInvalid)
	if l, _ := s.LinkByID(e.ID); l.State(s.Now()) != vault.LinkPending {
		t.Errorf("link after a refused consent = %s, want pending", l.State(s.Now()))
	}
	if _, err := s.UserGrant("amy", "x"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("UserGrant(amy) after a refused consent = %v, want ErrNotFound", err)
	}
	_ = zed
}

// refuseAll refuses every watch.
type refuseAll struct{}

func (refuseAll) CheckWatch(string, *vault.WatchSpec) error {
	return errors.New("no watch is valid today")
}

// testNotFound: every method given an unknown id says which record does
// not exist.
func testNotFound(t *testing.T, s Backend) {
	var tk vault.RefreshTicket
	tk.Grant.ID = "nosuch"
	for _, c := range []struct {
		call string
		kind string
		err  func() error
	}{
		{"Watch", "watch", func() error { _, err := s.Watch("nosuch"); return err }},
		{"ChangeWatch", "watch", func() error { _, err := s.ChangeWatch("nosuch", vault.WatchChange{}, "op"); return err }},
		{"PauseWatch", "watch", func() error { _, _, err := s.PauseWatch("nosuch", "op"); return err }},
		{"ResumeWatch", "watch", func() error { _, _, err := s.ResumeWatch("nosuch", "op"); return err }},
		{"DeleteWatch", "watch", func() error { _, err := s.DeleteWatch("nosuch", "op"); return err }},
		{"RunInput", "watch", func() error { _, err := s.RunInput("nosuch"); return err }},
		{"CommitRun", "watch", func() error { _, err := s.CommitRun(vault.RunCommit{WatchID: "nosuch"}); return err }},
		{"User", "user", func() error { _, err := s.User("nosuch"); return err }},
		{"LinkByID", "consent link", func() error { _, err := s.LinkByID("nosuch"); return err }},
		{"Link", "consent link", func() error { _, err := s.Link(vault.HashLinkToken("nosuch")); return err }},
		{"CancelLink", "consent link", func() error { return s.CancelLink("nosuch", "op") }},
		{"CommitConsent", "consent link", func() error {
			_, err := s.CommitConsent(vault.Consent{LinkHash: vault.HashLinkToken("nosuch"), LinkID: "nosuch", UserID: "u", Provider: "x",
				Tokens: vault.Tokens{Refresh: secret.NewRefreshToken("rt")}})
			return err
		}},
		{"CreateLink(reconsent)", "grant", func() error {
			_, _, err := s.CreateLink(vault.LinkRequest{UserID: "u", Provider: "x", Purpose: vault.PurposeReconsent, GrantID: "nosuch"})
			return err
		}},
		{"Grant", "grant", func() error { _, err := s.Grant("nosuch"); return err }},
		{"UserGrant", "grant", func() error { _, err := s.UserGrant("nosuch", "x"); return err }},
		{"GrantTokens", "grant", func() error { _, _, err := s.GrantTokens("nosuch"); return err }},
		{"BeginRefresh", "grant", func() error { _, err := s.BeginRefresh("nosuch", "renewal"); return err }},
		{"CommitRefresh", "grant", func() error { _, err := s.CommitRefresh(tk, vault.RefreshResult{}); return err }},
		{"RecordRefreshFailure", "grant", func() error { return s.RecordRefreshFailure(tk, vault.RefreshFailure{}) }},
		{"MarkNeedsReconsent", "grant", func() error {
			_, err := s.MarkNeedsReconsent("nosuch", vault.Reconsent{LinkPrefix: linkPrefix})
			return err
		}},
		{"UnenrollGrant", "grant", func() error { _, err := s.UnenrollGrant("nosuch", vault.Unenroll{}); return err }},
		{"PendingRevocation", "pending revocation", func() error { _, _, err := s.PendingRevocation("nosuch"); return err }},
		{"SettleRevocation", "pending revocation", func() error { return s.SettleRevocation("nosuch", "op") }},
		{"DeferRevocation", "pending revocation", func() error { _, err := s.DeferRevocation("nosuch", s.Now(), true); return err }},
		{"OutboxRow", "notification", func() error { _, err := s.OutboxRow("nosuch"); return err }},
		{"ReplayOutbox", "notification", func() error { _, err := s.ReplayOutbox("nosuch", "op"); return err }},
	} {
		err := c.err()
		var nf *vault.NotFoundError
		if !errors.Is(err, vault.ErrNotFound) || !errors.As(err, &nf) || nf.Kind != c.kind {
			t.Errorf("%s(nosuch) = %v, want a *vault.NotFoundError for a %s", c.call, err, c.kind)
		}
	}
}

// testRevocations: an unenroll queues the refresh token, sealed, for
// revocation at the provider; settling it deletes the revoked grant.
func testRevocations(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	out, err := s.UnenrollGrant(zed.Grant.ID, vault.Unenroll{Actor: "op", Revoke: true})
	if err != nil || !out.Changed || out.RevocationID == "" || out.Grant.State != vault.GrantRevoked {
		t.Fatalf("UnenrollGrant = %+v, %v; want revoked with a revocation queued", out, err)
	}
	wantState(t, s, "unenrolled", zed.Started[0].ID, vault.WatchSuspended, vault.SuspendRevoked)
	if _, tok, err := s.GrantTokens(zed.Grant.ID); err != nil || !tok.Refresh.IsZero() || !tok.Access.IsZero() {
		t.Errorf("tokens after unenroll = %v; want none kept on the grant", err)
	}
	if again, err := s.UnenrollGrant(zed.Grant.ID, vault.Unenroll{Actor: "op", Revoke: true}); err != nil || again.Changed || again.RevocationID != "" {
		t.Errorf("UnenrollGrant again = %+v, %v; want unchanged", again, err)
	}
	ids, err := s.DueRevocations(s.Now())
	if err != nil || !slices.Equal(ids, []string{out.RevocationID}) {
		t.Fatalf("DueRevocations = %v, %v; want [%s]", ids, err, out.RevocationID)
	}
	r, rt, err := s.PendingRevocation(out.RevocationID)
	if err != nil || rt.Reveal() != "rt-zed" || r.GrantID != zed.Grant.ID {
		t.Fatalf("PendingRevocation = %+v, %v; want zed's refresh token", r, err)
	}
	next := s.Now().Add(time.Hour)
	if r, err := s.DeferRevocation(out.RevocationID, next, true); err != nil || r.Attempts != 1 || !r.NextAttempt.Equal(next) {
		t.Errorf("DeferRevocation = %+v, %v; want 1 attempt, next in an hour", r, err)
	}
	if ids, _ := s.DueRevocations(s.Now()); len(ids) != 0 {
		t.Errorf("DueRevocations after a deferral = %v, want none", ids)
	}
	if _, rt, _ := s.PendingRevocation(out.RevocationID); rt.Reveal() != "rt-zed" {
		t.Error("the deferral lost the sealed token")
	}
	if err := s.SettleRevocation(out.RevocationID, "revoker"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Grant(zed.Grant.ID)
	wantErr(t, "Grant(revoked and settled)", err, vault.ErrNotFound)
	wantErr(t, "SettleRevocation(again)", s.SettleRevocation(out.RevocationID, "revoker"), vault.ErrNotFound)
	// A new consent after all that starts over with a new grant.
	res := enroll(t, s, "zed", spec2)
	if res.Grant.ID == zed.Grant.ID || res.Grant.State != vault.GrantActive {
		t.Errorf("consent after unenroll = grant %s %s, want a new active grant", res.Grant.ID, res.Grant.State)
	}
	wantState(t, s, "consent after unenroll", zed.Started[0].ID, vault.WatchActive, "")
}

// testReopen: what was committed is there after a reopen.
func testReopen(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	commit(t, s, vault.RunCommit{WatchID: zed.Started[0].ID, NewSinceID: "30", Posts: posts(30)})
	if _, _, err := s.PauseWatch(zed.Started[0].ID, "op"); err != nil {
		t.Fatal(err)
	}
	e := link(t, s, "amy", spec2)
	before := rows(t, s, "", "")
	s = reopen(t, s)
	w := watchOf(t, s, zed.Started[0].ID)
	if w.State != vault.WatchPaused || w.Cursor.SinceID != "30" || w.Cursor.Matches != 1 {
		t.Errorf("watch after reopen = %s, cursor %+v; want paused at since 30", w.StateText(), w.Cursor)
	}
	if rt := refreshOf(t, s, zed.Grant.ID); rt != "rt-zed" {
		t.Errorf("refresh token after reopen = %q, want rt-zed", rt)
	}
	if l, err := s.Link(e.Hash); err != nil || l.State(s.Now()) != vault.LinkPending {
		t.Errorf("link after reopen = %v, %v; want pending", l.State(s.Now()), err)
	}
	if after := rows(t, s, "", ""); len(after) != len(before) {
		t.Errorf("outbox rows %d -> %d across a reopen", len(before), len(after))
	}
	if ids, _ := due(t, s, s.Now()); len(ids) != len(before) {
		t.Errorf("%d rows due after reopen, want %d", len(ids), len(before))
	}
	users, err := s.ListUsers()
	if err != nil || len(users) != 2 || users[0].ID != "amy" || users[1].ID != "zed" {
		t.Errorf("ListUsers after reopen = %+v, %v; want amy and zed in id order", users, err)
	}
	grants, err := s.ListGrants()
	if err != nil || len(grants) != 1 || grants[0].ID != zed.Grant.ID {
		t.Errorf("ListGrants after reopen = %d grants, %v; want zed's", len(grants), err)
	}
}
