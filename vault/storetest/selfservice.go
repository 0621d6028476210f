package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"tagwatch/vault"
)

// The methods a user's own page calls: owner-scoped watch methods,
// sign-in identities and sign-in links, recent matches, deleting a user.

// wantNotFoundWatch fails unless err is exactly what an unknown watch id
// gives: a *vault.NotFoundError for the watch, `watch "id" does not
// exist`.
func wantNotFoundWatch(t *testing.T, call, id string, err error) {
	t.Helper()
	var nf *vault.NotFoundError
	want := fmt.Sprintf("watch %q does not exist", id)
	if !errors.As(err, &nf) || nf.Kind != "watch" || nf.ID != id || err.Error() != want {
		t.Errorf("%s = %v, want %q (as for a watch that does not exist)", call, err, want)
	}
}

// testOwnerScoped: with an Owner, a watch of another user is answered
// exactly as a missing one and never changes; the owner's own watches
// move as without one.
func testOwnerScoped(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1).Started[0]
	amy := enroll(t, s, "amy", spec2).Started[0]
	asZed := vault.Owner{UserID: "zed"}
	before := watchOf(t, s, amy.ID)
	last := trail(t, s, 0)
	seq := last[len(last)-1].Seq
	sched := "@every 30m"

	for _, id := range []string{amy.ID, "nosuch"} {
		_, _, err := s.PauseWatch(id, "page", asZed)
		wantNotFoundWatch(t, "PauseWatch(another's, owner zed)", id, err)
		_, _, err = s.ResumeWatch(id, "page", asZed)
		wantNotFoundWatch(t, "ResumeWatch(another's, owner zed)", id, err)
		_, err = s.ChangeWatch(id, vault.WatchChange{Schedule: &sched}, "page", asZed)
		wantNotFoundWatch(t, "ChangeWatch(another's, owner zed)", id, err)
		_, err = s.DeleteWatch(id, "page", asZed)
		wantNotFoundWatch(t, "DeleteWatch(another's, owner zed)", id, err)
		_, err = s.UserWatch("zed", id)
		wantNotFoundWatch(t, "UserWatch(zed, another's)", id, err)
		_, err = s.RecentMatches("zed", id, 5)
		wantNotFoundWatch(t, "RecentMatches(zed, another's)", id, err)
	}
	// A grant of another user is refused as a missing one.
	_, errOther := s.AddWatch(vault.NewWatch{UserID: "amy", Provider: "x", Spec: cloneSpec(spec1)}, "page", asZed)
	_, errNone := s.AddWatch(vault.NewWatch{UserID: "amy", Provider: "nosuch", Spec: cloneSpec(spec1)}, "page")
	wantErr(t, "AddWatch(amy's grant, owner zed)", errOther, vault.ErrInvalid)
	if want := strings.Replace(errNone.Error(), `"nosuch"`, `"x"`, 1); errOther == nil || errOther.Error() != want {
		t.Errorf("AddWatch(amy's grant, owner zed) = %v, want %q (as for a user without a grant)", errOther, want)
	}
	if after := watchOf(t, s, amy.ID); after.State != before.State || after.Schedule != before.Schedule || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("amy's watch after zed's calls = %s %q, want it unchanged", after.StateText(), after.Schedule)
	}
	if ws, _ := s.ListWatches("amy"); len(ws) != 1 {
		t.Errorf("amy has %d watches after zed's calls, want 1", len(ws))
	}
	if got := trail(t, s, seq); len(got) != 0 {
		t.Errorf("refused owner-scoped calls appended %+v, want nothing", got)
	}
	for _, o := range [][]vault.Owner{{{}}, {asZed, asZed}} {
		_, _, err := s.PauseWatch(zed.ID, "page", o...)
		wantErr(t, fmt.Sprintf("PauseWatch(owners %v)", o), err, vault.ErrInvalid)
	}
	_, err := s.UserWatch("", zed.ID)
	wantErr(t, "UserWatch(no owner)", err, vault.ErrInvalid)

	// The owner's own watch moves as without an Owner.
	if w, err := s.UserWatch("zed", zed.ID); err != nil || w.ID != zed.ID || w.Cursor.WatchID != zed.ID {
		t.Errorf("UserWatch(zed, own) = %+v, %v; want the watch with its cursor", w.Watch, err)
	}
	if _, c, err := s.PauseWatch(zed.ID, "page", asZed); err != nil || !c {
		t.Errorf("PauseWatch(own) = %v, %v; want changed", c, err)
	}
	wantState(t, s, "paused by its owner", zed.ID, vault.WatchPaused, "")
	if _, c, err := s.ResumeWatch(zed.ID, "page", asZed); err != nil || !c {
		t.Errorf("ResumeWatch(own) = %v, %v; want changed", c, err)
	}
	if w, err := s.ChangeWatch(zed.ID, vault.WatchChange{Schedule: &sched}, "page", asZed); err != nil || w.Schedule != sched {
		t.Errorf("ChangeWatch(own) = %q, %v; want %q", w.Schedule, err, sched)
	}
	added, err := s.AddWatch(vault.NewWatch{Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{"zig"}, Schedule: "@daily",
		Targets: []string{"console:"}}}, "page", asZed)
	if err != nil || added.UserID != "zed" || added.State != vault.WatchActive {
		t.Errorf("AddWatch(owner zed, no user) = %+v, %v; want zed's active watch", added, err)
	}
	_, err = s.AddWatch(vault.NewWatch{Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{"zig"}, Schedule: "@daily",
		Targets: []string{"console:"}}}, "page", asZed)
	wantErr(t, "AddWatch(owner zed, same again)", err, vault.ErrDuplicateWatch)
	if _, err := s.DeleteWatch(added.ID, "page", asZed); err != nil {
		t.Errorf("DeleteWatch(own) = %v", err)
	}
	evs := trail(t, s, seq)
	if len(evs) == 0 || evs[0].Actor != "page" || evs[0].UserID != "zed" {
		t.Errorf("audit of the owner's calls = %+v, want entries by page for zed", evs)
	}
}

// oidcConsent is a consent through link e at an OpenID provider with an
// issuer.
func oidcConsent(s Backend, e vault.Enrollment, issuer, subject, rt string) vault.Consent {
	c := consentFor(s, e, subject, rt)
	c.Issuer = issuer
	return c
}

// signInLink creates a sign-in link for user at provider.
func signInLink(t *testing.T, s Backend, user, provider string) vault.Enrollment {
	t.Helper()
	token, e, err := s.CreateLink(vault.LinkRequest{UserID: user, Provider: provider, Purpose: vault.PurposeSignIn, CreatedBy: "storetest"})
	if err != nil || token == "" || e.Purpose != vault.PurposeSignIn || e.Watch != nil {
		t.Fatalf("CreateLink(sign-in for %s) = %+v, %v; want a sign-in link", user, e, err)
	}
	return e
}

func signInFor(e vault.Enrollment, issuer, subject string) vault.SignInConsent {
	return vault.SignInConsent{LinkHash: e.Hash, LinkID: e.ID, UserID: e.UserID, Provider: e.Provider, Issuer: issuer,
		Subject: subject, Username: subject + "-name"}
}

func wantSignIn(t *testing.T, s Backend, provider, issuer, subject, user string) {
	t.Helper()
	u, err := s.UserBySignIn(provider, issuer, subject)
	if user == "" {
		var nf *vault.NotFoundError
		if !errors.As(err, &nf) || nf.Kind != "sign-in" {
			t.Errorf("UserBySignIn(%s, %q, %s) = %s, %v; want a *vault.NotFoundError for a sign-in", provider, issuer, subject, u.ID, err)
		}
		return
	}
	if err != nil || u.ID != user {
		t.Errorf("UserBySignIn(%s, %q, %s) = %s, %v; want %s", provider, issuer, subject, u.ID, err, user)
	}
}

// testSignIns: a user is found by their grant's account or by an
// identity a sign-in link bound; the link is used once, makes no grant
// and keeps no token; an identity signs in one user, never two.
func testSignIns(t *testing.T, s Backend) {
	const idp, other = "https://idp.example", "https://other.example"
	enroll(t, s, "zed", spec1)
	wantSignIn(t, s, "x", "", "sub-zed", "zed")
	wantSignIn(t, s, "x", idp, "sub-zed", "zed") // an X grant records no issuer
	wantSignIn(t, s, "x", "", "sub-amy", "")
	_, err := s.UserBySignIn("x", "", "")
	wantErr(t, "UserBySignIn(no subject)", err, vault.ErrInvalid)

	// An OpenID grant's issuer must match.
	link(t, s, "amy", spec2)
	spec := cloneSpec(spec2)
	_, corp, err := s.CreateLink(vault.LinkRequest{UserID: "amy", Provider: "corp", Watch: &spec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitConsent(oidcConsent(s, corp, idp, "amy-corp", "rt-amy")); err != nil {
		t.Fatalf("CommitConsent(amy at corp) = %v", err)
	}
	wantSignIn(t, s, "corp", idp, "amy-corp", "amy")
	wantSignIn(t, s, "corp", other, "amy-corp", "")
	wantSignIn(t, s, "x", idp, "amy-corp", "")

	// Sign-in links: only for a user that exists, and carry nothing else.
	_, _, err = s.CreateLink(vault.LinkRequest{UserID: "nobody", Provider: "corp", Purpose: vault.PurposeSignIn})
	var nf *vault.NotFoundError
	if !errors.As(err, &nf) || nf.Kind != "user" {
		t.Errorf("CreateLink(sign-in for nobody) = %v, want a *vault.NotFoundError for the user", err)
	}
	if _, err := s.User("nobody"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("User(nobody) after a refused sign-in link = %v, want ErrNotFound", err)
	}
	_, _, err = s.CreateLink(vault.LinkRequest{UserID: "zed", Provider: "corp", Purpose: vault.PurposeSignIn, Watch: &spec})
	wantErr(t, "CreateLink(sign-in with a watch)", err, vault.ErrInvalid)

	si := signInLink(t, s, "zed", "corp")
	// A sign-in link makes no grant, whatever a flow brings back.
	_, err = s.CommitConsent(oidcConsent(s, si, idp, "zed-corp", "rt-sneaky"))
	wantErr(t, "CommitConsent(sign-in link)", err, vault.ErrInvalid)
	// An enrollment link is not a sign-in link.
	enrollLink := link(t, s, "zed", spec2)
	_, err = s.CommitSignIn(signInFor(enrollLink, "", "sub-zed"))
	wantErr(t, "CommitSignIn(enrollment link)", err, vault.ErrInvalid)

	res, err := s.CommitSignIn(signInFor(si, idp, "zed-corp"))
	if err != nil || res.Already || res.Link.State(s.Now()) != vault.LinkUsed || res.SignIn.Subject != "zed-corp" ||
		!res.SignIn.BoundAt.Equal(s.Now()) {
		t.Fatalf("CommitSignIn = %+v, %v; want zed-corp bound now, the link used", res, err)
	}
	u, err := s.User("zed")
	if err != nil || len(u.SignIns) != 1 || u.SignIns[0] != res.SignIn {
		t.Errorf("User(zed).SignIns = %+v, %v; want the one bound", u.SignIns, err)
	}
	if _, err := s.UserGrant("zed", "corp"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("UserGrant(zed, corp) after a sign-in = %v, want ErrNotFound: a sign-in makes no grant", err)
	}
	wantSignIn(t, s, "corp", idp, "zed-corp", "zed")
	wantSignIn(t, s, "corp", other, "zed-corp", "")
	_, err = s.CommitSignIn(signInFor(si, idp, "zed-corp"))
	wantErr(t, "CommitSignIn(used link)", err, vault.ErrConflict)

	// The same identity again for the same user: kept, not doubled.
	s.Advance(time.Minute)
	res, err = s.CommitSignIn(signInFor(signInLink(t, s, "zed", "corp"), idp, "zed-corp"))
	if err != nil || !res.Already || len(res.User.SignIns) != 1 || !res.User.SignIns[0].BoundAt.Equal(s.Now().Add(-time.Minute)) {
		t.Errorf("CommitSignIn(bound already) = %+v, %v; want it kept with its first BoundAt", res, err)
	}

	// An identity signs in one user: never bound to a second one, by a
	// sign-in or by another user's grant.
	const user = "bob"
	link(t, s, user, spec2)
	for _, c := range []struct{ provider, issuer, subject, owner string }{
		{"corp", idp, "zed-corp", "zed"}, // zed's sign-in
		{"corp", idp, "amy-corp", "amy"}, // amy's grant
		{"x", "", "sub-zed", "zed"},      // zed's grant, at X
	} {
		l := signInLink(t, s, user, c.provider)
		seq := trail(t, s, 0)
		_, err := s.CommitSignIn(signInFor(l, c.issuer, c.subject))
		var ce *vault.SignInConflictError
		if !errors.Is(err, vault.ErrSignInConflict) || !errors.As(err, &ce) || !slices.Equal(ce.Users, []string{c.owner}) {
			t.Errorf("CommitSignIn(%s's identity %s for %s) = %v, want a *vault.SignInConflictError naming %s", c.owner, c.subject, user, err, c.owner)
		}
		if got, _ := s.LinkByID(l.ID); got.State(s.Now()) != vault.LinkPending {
			t.Errorf("link after a refused sign-in = %s, want pending", got.State(s.Now()))
		}
		if n := len(trail(t, s, seq[len(seq)-1].Seq)); n != 0 {
			t.Errorf("a refused sign-in appended %d audit entries, want none", n)
		}
		wantSignIn(t, s, c.provider, c.issuer, c.subject, c.owner)
	}

	// Users sharing one account: the account signs in neither.
	for _, user := range []string{"cy", "dee"} {
		if _, err := s.CommitConsent(consentFor(s, link(t, s, user, spec1), "shared", "rt-"+user)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.UserBySignIn("x", "", "shared")
	var ce *vault.SignInConflictError
	if !errors.As(err, &ce) || !slices.Equal(ce.Users, []string{"cy", "dee"}) {
		t.Errorf("UserBySignIn(an account two users share) = %v, want a *vault.SignInConflictError naming cy and dee", err)
	}

	// The index survives a reopen and follows an account switch.
	s = reopen(t, s)
	wantSignIn(t, s, "corp", idp, "zed-corp", "zed")
	switchTo := cloneSpec(spec2)
	_, sw, err := s.CreateLink(vault.LinkRequest{UserID: "zed", Provider: "x", Expected: "sub-zed2", Watch: &switchTo})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitConsent(consentFor(s, sw, "sub-zed2", "rt-zed2")); err != nil {
		t.Fatalf("CommitConsent(named switch) = %v", err)
	}
	wantSignIn(t, s, "x", "", "sub-zed", "")
	wantSignIn(t, s, "x", "", "sub-zed2", "zed")
}

// testRecentMatches: the posts a watch queued, newest first, each once
// however many targets it went to, owner-scoped.
func testRecentMatches(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0] // two targets
	long := strings.Repeat("é", vault.MatchExcerptMax+50)
	first := []vault.Post{{ID: "3", Text: "#golang three", AuthorUsername: "ann", URL: "https://x.com/ann/status/3"},
		{ID: "2", Text: long}, {ID: "1", Text: "#golang one"}}
	commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: "3", Posts: first})
	queued := s.Now()
	s.Advance(time.Minute)
	commit(t, s, vault.RunCommit{WatchID: w.ID, NewSinceID: "5", Posts: posts(5, 4, 3)})

	ms, err := s.RecentMatches("zed", w.ID, 10)
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.PostID)
	}
	if err != nil || !slices.Equal(ids, []string{"5", "4", "3", "2", "1"}) {
		t.Fatalf("RecentMatches(zed, 10) = %v, %v; want 5 4 3 2 1 (each once, newest first)", ids, err)
	}
	m3 := ms[2]
	if m3.URL != "https://x.com/ann/status/3" || m3.AuthorUsername != "ann" || m3.Excerpt != "#golang three" || !m3.QueuedAt.Equal(queued) || m3.Delivered {
		t.Errorf("match 3 = %+v, want its url, author, text, queued at the first run, not delivered", m3)
	}
	if m := ms[3]; utf8.RuneCountInString(m.Excerpt) != vault.MatchExcerptMax || !strings.HasSuffix(m.Excerpt, "…") {
		t.Errorf("match 2's excerpt has %d characters, want %d ending in …", utf8.RuneCountInString(m.Excerpt), vault.MatchExcerptMax)
	}
	if ms, err := s.RecentMatches("zed", w.ID, 2); err != nil || len(ms) != 2 || ms[0].PostID != "5" {
		t.Errorf("RecentMatches(zed, 2) = %d matches, %v; want 5 and 4", len(ms), err)
	}
	if ms, err := s.RecentMatches("", w.ID, 1); err != nil || len(ms) != 1 {
		t.Errorf("RecentMatches(operator, 1) = %d matches, %v; want 1", len(ms), err)
	}
	_, err = s.RecentMatches("zed", w.ID, 0)
	wantErr(t, "RecentMatches(0)", err, vault.ErrInvalid)

	// Delivered once one target took it.
	var outcomes []vault.OutboxOutcome
	for _, r := range rows(t, s, vault.NoticeMatch, w.ID) {
		if r.Target == "console:" {
			outcomes = append(outcomes, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered, Sent: true})
		}
	}
	if _, err := s.SettleOutbox(outcomes); err != nil {
		t.Fatal(err)
	}
	ms, _ = s.RecentMatches("zed", w.ID, 10)
	for _, m := range ms {
		if !m.Delivered {
			t.Errorf("match %s after console: took every digest: not delivered", m.PostID)
		}
	}
}

// testDeleteUser: a user's grants unenrolled (revocation queued by the
// provider's rule), their watches, cursors, seen indexes, links, outbox
// rows, sign-ins and the user deleted in one step, a confirmation queued
// to their targets, audited; the other users untouched.
func testDeleteUser(t *testing.T, s Backend) {
	const idp = "https://idp.example"
	zed := enroll(t, s, "zed", spec1)
	w1 := zed.Started[0]
	w2, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: cloneSpec(spec2)}, "op")
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, vault.RunCommit{WatchID: w1.ID, NewSinceID: "30", Posts: posts(30, 20)})
	if _, err := s.CommitSignIn(signInFor(signInLink(t, s, "zed", "corp"), idp, "zed-corp")); err != nil {
		t.Fatal(err)
	}
	pending := link(t, s, "zed", vault.WatchSpec{Hashtags: []string{"zig"}, Schedule: "@daily", Targets: []string{"console:"}})
	amy := enroll(t, s, "amy", spec2)
	commit(t, s, vault.RunCommit{WatchID: amy.Started[0].ID, NewSinceID: "7", Posts: posts(7)})
	window := func(g vault.Grant) vault.RateWindow {
		return vault.RateWindow{Provider: "x", Kind: vault.WindowRateLimit, Endpoint: "/2/tweets/search/recent", Key: g.ID, UserID: g.UserID,
			Limit: 60, Remaining: 0, Reset: s.Now().Add(10 * time.Minute), Observed: s.Now()}
	}
	if err := s.SaveRateWindows(window(zed.Grant), window(amy.Grant)); err != nil {
		t.Fatal(err)
	}
	amyRows := len(rows(t, s, "", "")) - len(zedRows(t, s))
	inFlight := zedRows(t, s)[0]
	seq := trail(t, s, 0)

	out, err := s.DeleteUser("zed", vault.UserDeletion{Actor: "zed (page)", Rules: map[string]vault.RevocationRule{"x": {Endpoint: true}}})
	if err != nil {
		t.Fatalf("DeleteUser(zed) = %v", err)
	}
	if out.User.ID != "zed" || len(out.Grants) != 1 || out.Grants[0].State != vault.GrantRevoked || len(out.RevocationIDs) != 1 ||
		out.Watches != 2 || out.Links != 3 || out.Notices != 2 || out.Notifications == 0 {
		t.Errorf("DeleteUser(zed) = %+v; want 1 grant unenrolled with its revocation queued, 2 watches, 3 links, "+
			"notifications deleted, a confirmation to each of 2 targets", out)
	}
	// The revocation goes out as after an unenroll; the grant waits for it
	// with its account scrubbed, then goes.
	if r, rt, err := s.PendingRevocation(out.RevocationIDs[0]); err != nil || rt.Reveal() != "rt-zed" || r.GrantID != zed.Grant.ID {
		t.Errorf("PendingRevocation = %+v, %v; want zed's refresh token queued", r, err)
	}
	if g, err := s.Grant(zed.Grant.ID); err != nil || g.State != vault.GrantRevoked || g.Subject != "" || g.Username != "" {
		t.Errorf("zed's grant while its revocation waits = %+v, %v; want revoked, without its account", g, err)
	}
	if err := s.SettleRevocation(out.RevocationIDs[0], "revoker"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(zed.Grant.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Grant(zed's) once revoked at the provider = %v, want ErrNotFound", err)
	}

	if _, err := s.User("zed"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("User(zed) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{w1.ID, w2.ID} {
		if _, err := s.Watch(id); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Watch(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if ws, _ := s.ListWatches("zed"); len(ws) != 0 {
		t.Errorf("ListWatches(zed) = %d, want none", len(ws))
	}
	if _, err := s.Link(pending.Hash); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Link(zed's pending link) = %v, want ErrNotFound", err)
	}
	links, _ := s.ListLinks(s.Now())
	for _, l := range links {
		if l.UserID == "zed" {
			t.Errorf("link %s of zed left", l.ID)
		}
	}
	wantSignIn(t, s, "corp", idp, "zed-corp", "")
	wantSignIn(t, s, "x", "", "sub-zed", "")
	var kinds []string
	for _, r := range zedRows(t, s) {
		kinds = append(kinds, r.Kind)
		if r.Kind != vault.NoticeAccountDeleted || r.State != vault.OutboxPending {
			t.Errorf("zed's row %s = %s %s, want only the pending confirmation", r.ID, r.Kind, r.State)
		}
	}
	if len(kinds) != 2 {
		t.Errorf("zed's rows = %v, want one confirmation per target", kinds)
	}
	// In flight: a run of a deleted watch commits nothing; a row being
	// sent is settled as a pruned one (skipped).
	_, err = s.CommitRun(vault.RunCommit{WatchID: w1.ID, NewSinceID: "40", Posts: posts(40)})
	wantErr(t, "CommitRun(deleted watch)", err, vault.ErrNotFound)
	if got, err := s.SettleOutbox([]vault.OutboxOutcome{{ID: inFlight.ID, Attempts: inFlight.Attempts, State: vault.OutboxDelivered, Sent: true}}); err != nil || len(got) != 0 {
		t.Errorf("SettleOutbox(a deleted row) = %+v, %v; want it skipped", got, err)
	}

	if ws, err := s.RateWindows(); err != nil || len(ws) != 1 || ws[0].UserID != "amy" {
		t.Errorf("RateWindows after zed's deletion = %+v, %v; want amy's only", ws, err)
	}
	// amy is untouched.
	wantState(t, s, "amy after zed's deletion", amy.Started[0].ID, vault.WatchActive, "")
	if g := grantOf(t, s, amy.Grant.ID); g.State != vault.GrantActive || refreshOf(t, s, g.ID) != "rt-amy" {
		t.Errorf("amy's grant after zed's deletion = %s, want active with her token", g.State)
	}
	if n := len(rows(t, s, "", "")) - len(zedRows(t, s)); n != amyRows {
		t.Errorf("amy has %d rows after zed's deletion, want %d", n, amyRows)
	}

	// Audited, without a token or a target.
	var deleted []vault.AuditEvent
	for _, e := range trail(t, s, seq[len(seq)-1].Seq) {
		for _, secretText := range []string{"rt-zed", "at-rt-zed", "mailto:", "zed@example.com", "console:"} {
			if strings.Contains(e.Detail, secretText) {
				t.Errorf("audit entry %d (%s) shows %q: %q", e.Seq, e.Kind, secretText, e.Detail)
			}
		}
		if e.Kind == vault.AuditUserDeleted {
			deleted = append(deleted, e)
		}
	}
	if len(deleted) != 1 || deleted[0].Actor != "zed (page)" || deleted[0].UserID != "zed" {
		t.Errorf("user_deleted entries = %+v, want one by zed (page)", deleted)
	}
	_, err = s.DeleteUser("zed", vault.UserDeletion{Actor: "op"})
	var nf *vault.NotFoundError
	if !errors.As(err, &nf) || nf.Kind != "user" {
		t.Errorf("DeleteUser(zed) again = %v, want a *vault.NotFoundError for the user", err)
	}

	// Without a rule for the provider nothing is queued and the grant
	// goes at once; the user id can start over.
	out, err = s.DeleteUser("amy", vault.UserDeletion{Actor: "op"})
	if err != nil || len(out.RevocationIDs) != 0 || out.Notices != len(spec2.Targets) {
		t.Errorf("DeleteUser(amy, no rules) = %+v, %v; want no revocation, a confirmation", out, err)
	}
	if _, err := s.Grant(amy.Grant.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Grant(amy's) = %v, want deleted at once", err)
	}
	again := enroll(t, s, "zed", spec1)
	wantSignIn(t, s, "x", "", "sub-zed", "zed")
	if again.Grant.ID == zed.Grant.ID {
		t.Error("zed's new enrollment reused the deleted grant")
	}
}

// zedRows returns zed's outbox rows.
func zedRows(t *testing.T, s Backend) []vault.OutboxRow {
	t.Helper()
	var out []vault.OutboxRow
	for _, r := range rows(t, s, "", "") {
		if r.UserID == "zed" {
			out = append(out, r)
		}
	}
	return out
}

// testUserGrants: a user's grants, one per provider in provider order,
// and only theirs, never a neighbour's whose id begins with theirs.
func testUserGrants(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	zeda := enroll(t, s, "zeda", spec2)
	// A second provider for zed: a consent through a link at "corp".
	spec := cloneSpec(spec2)
	_, e, err := s.CreateLink(vault.LinkRequest{UserID: "zed", Provider: "corp", Watch: &spec, CreatedBy: "storetest"})
	if err != nil {
		t.Fatalf("CreateLink(zed at corp) = %v", err)
	}
	corp, err := s.CommitConsent(consentFor(s, e, "zed-corp", "rt-zed-corp"))
	if err != nil {
		t.Fatalf("CommitConsent(zed at corp) = %v", err)
	}
	ids := func(user string) []string {
		t.Helper()
		gs, err := s.UserGrants(user)
		if err != nil {
			t.Fatalf("UserGrants(%s) = %v", user, err)
		}
		var out []string
		for _, g := range gs {
			if g.UserID != user || len(g.SealedRefresh) == 0 {
				t.Errorf("UserGrants(%s) holds grant %s of %q (sealed refresh %d bytes), want only %s's, sealed", user, g.ID, g.UserID, len(g.SealedRefresh), user)
			}
			out = append(out, g.Provider+"="+g.ID)
		}
		return out
	}
	for _, c := range []struct {
		user string
		want []string
	}{
		{"zed", []string{"corp=" + corp.Grant.ID, "x=" + zed.Grant.ID}},
		{"zeda", []string{"x=" + zeda.Grant.ID}},
		{"ze", nil},
		{"nosuch", nil},
		{"", nil},
	} {
		if got := ids(c.user); !slices.Equal(got, c.want) {
			t.Errorf("UserGrants(%q) = %q, want %q", c.user, got, c.want)
		}
	}
}

// newReconsentLink makes a re-consent link for user at x, naming grantID
// (none when empty).
func newReconsentLink(t *testing.T, s Backend, user, grantID string) vault.Enrollment {
	t.Helper()
	_, e, err := s.CreateLink(vault.LinkRequest{UserID: user, Provider: "x", Purpose: vault.PurposeReconsent, GrantID: grantID, CreatedBy: "storetest"})
	if err != nil {
		t.Fatalf("CreateLink(re-consent for %s, grant %q) = %v", user, grantID, err)
	}
	return e
}

// revokeAndDelete unenrolls grant id and settles its revocation, which
// deletes the grant's record, as after a revocation at the provider.
func revokeAndDelete(t *testing.T, s Backend, id string) {
	t.Helper()
	out, err := s.UnenrollGrant(id, vault.Unenroll{Actor: "storetest", Revoke: true})
	if err != nil || out.RevocationID == "" {
		t.Fatalf("UnenrollGrant(%s) = %+v, %v; want a revocation queued", id, out, err)
	}
	if err := s.SettleRevocation(out.RevocationID, "storetest"); err != nil {
		t.Fatalf("SettleRevocation = %v", err)
	}
	if _, err := s.Grant(id); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Grant(%s) after its revocation settled = %v, want ErrNotFound", id, err)
	}
}

// testStaleReconsentLink: a re-consent link made for a grant that was
// revoked and deleted since, and replaced by a newer grant, renews the
// newer grant when it is used: one grant per user and provider, never a
// second one beside it. A re-consent link that names no grant makes one
// where none is left, and the watches a revocation suspended resume.
func testStaleReconsentLink(t *testing.T, s Backend) {
	first := enroll(t, s, "zed", spec1)
	stale := newReconsentLink(t, s, "zed", first.Grant.ID)
	revokeAndDelete(t, s, first.Grant.ID)
	if w := watchOf(t, s, first.Started[0].ID); w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendRevoked {
		t.Fatalf("watch after the revocation = %s (%s), want suspended (revoked)", w.State, w.SuspendReason)
	}

	// Given again through a re-consent link that names no grant.
	again := newReconsentLink(t, s, "zed", "")
	res, err := s.CommitConsent(consentFor(s, again, "sub-zed", "rt-zed-2"))
	if err != nil || res.Grant.ID == first.Grant.ID || len(res.Resumed) != 1 {
		t.Fatalf("CommitConsent(re-consent, no grant named) = %+v, %v; want a new grant, the watch resumed", res, err)
	}
	second := res.Grant

	// The stale link, used now, renews the second grant.
	res, err = s.CommitConsent(consentFor(s, stale, "sub-zed", "rt-zed-3"))
	if err != nil || res.Grant.ID != second.ID || res.Replaced != vault.GrantActive {
		t.Fatalf("CommitConsent(stale re-consent link) = grant %s (replaced %q), %v; want grant %s renewed", res.Grant.ID, res.Replaced, err, second.ID)
	}
	gs, err := s.UserGrants("zed")
	if err != nil || len(gs) != 1 || gs[0].ID != second.ID || gs[0].State != vault.GrantActive {
		t.Fatalf("UserGrants(zed) = %+v, %v; want the one grant %s, active", gs, err, second.ID)
	}
	all, err := s.ListGrants()
	if err != nil || len(all) != 1 {
		t.Errorf("ListGrants = %d grants, %v; want 1", len(all), err)
	}
	// A re-consent as another account is refused, as ever.
	other := newReconsentLink(t, s, "zed", "")
	_, err = s.CommitConsent(consentFor(s, other, "sub-mallory", "rt-m"))
	wantErr(t, "CommitConsent(stale link, another account)", err, vault.ErrWrongAccount)
}

// testRevokedSignInKept: revoking a grant keeps its account as a way to
// sign in to the user's page once the grant is gone, unless another user
// signs in with the same account too (a shared account signs in nobody).
func testRevokedSignInKept(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	wantSignIn(t, s, "x", "", "sub-zed", "zed")
	revokeAndDelete(t, s, zed.Grant.ID)
	wantSignIn(t, s, "x", "", "sub-zed", "zed")
	u, err := s.User("zed")
	if err != nil || len(u.SignIns) != 1 || u.SignIns[0].Subject != "sub-zed" || u.SignIns[0].Provider != "x" {
		t.Fatalf("User(zed) = %+v, %v; want the revoked grant's account bound as its sign-in", u, err)
	}
	// Revoked twice: still one.
	again := newReconsentLink(t, s, "zed", "")
	res, err := s.CommitConsent(consentFor(s, again, "sub-zed", "rt-zed-2"))
	if err != nil {
		t.Fatal(err)
	}
	revokeAndDelete(t, s, res.Grant.ID)
	if u, _ := s.User("zed"); len(u.SignIns) != 1 {
		t.Errorf("User(zed).SignIns after a second revocation = %+v, want one", u.SignIns)
	}

	// amy and bob share an account: revoking bob's grant binds nothing.
	amy, err := s.CommitConsent(consentFor(s, link(t, s, "amy", spec1), "shared", "rt-amy"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.CommitConsent(consentFor(s, link(t, s, "bob", spec2), "shared", "rt-bob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UnenrollGrant(bob.Grant.ID, vault.Unenroll{Actor: "storetest"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("bob"); len(u.SignIns) != 0 {
		t.Errorf("User(bob).SignIns after revoking a shared account's grant = %+v, want none", u.SignIns)
	}
	_ = amy
}
