package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"tagwatch/vault"
)

var (
	perGrant    = vault.RevocationRule{Endpoint: true, Why: "per grant"}
	endsAccount = vault.RevocationRule{Endpoint: true, EndsAccount: true, Why: "revoking ends the whole account"}
)

// audited returns the audit entries of kind, of user unless "".
func audited(t *testing.T, s Backend, kind string, user ...string) []vault.AuditEvent {
	t.Helper()
	var out []vault.AuditEvent
	for _, ev := range trail(t, s, 0) {
		if ev.Kind == kind && (len(user) == 0 || ev.UserID == user[0]) {
			out = append(out, ev)
		}
	}
	return out
}

// testReplacedToken: CommitConsent over a live grant retires the
// replaced refresh token by the provider's rule, in its transaction:
// queued for revocation exactly once where revocation is per grant (and
// settling it leaves the renewed grant alone), left to expire and audited
// where revocation ends the whole account. A refused commit queues
// nothing.
func testReplacedToken(t *testing.T, s Backend) {
	for _, tc := range []struct {
		name  string
		rule  vault.RevocationRule
		queue bool
		why   string
	}{
		{"per grant", perGrant, true, ""},
		{"ends the account", endsAccount, false, "replaced refresh token not revoked: revoking ends the whole account; it expires unused"},
		{"no endpoint", vault.RevocationRule{Why: "the provider has no revocation endpoint"}, false,
			"replaced refresh token not revoked: the provider has no revocation endpoint; it expires unused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			first := enroll(t, s, user, spec1)
			e := link(t, s, user, spec1)
			c := consentFor(s, e, "sub-"+user, "rt-2-"+user)
			c.Revocation = tc.rule
			res, err := s.CommitConsent(c)
			if err != nil || res.Grant.ID != first.Grant.ID {
				t.Fatalf("CommitConsent(second link) = %+v, %v; want grant %s renewed", res.Grant, err, first.Grant.ID)
			}
			c2 := c
			_, err = s.CommitConsent(c2)
			wantErr(t, "CommitConsent(the same link again)", err, vault.ErrConflict)
			due, err := s.DueRevocations(s.Now())
			if err != nil {
				t.Fatal(err)
			}
			queued := audited(t, s, vault.AuditRevocationQueued, user)
			skipped := audited(t, s, vault.AuditRevocationSkipped, user)
			if !tc.queue {
				if len(due) != 0 || res.RevocationID != "" || len(queued) != 0 {
					t.Fatalf("due %v, RevocationID %q, queued audits %d; want nothing queued", due, res.RevocationID, len(queued))
				}
				if len(skipped) != 1 || skipped[0].Detail != tc.why || res.NotRevoked == "" {
					t.Errorf("revocation_skipped audits = %+v, NotRevoked %q; want one: %q", skipped, res.NotRevoked, tc.why)
				}
				return
			}
			if !slices.Equal(due, []string{res.RevocationID}) || len(queued) != 1 || len(skipped) != 0 {
				t.Fatalf("due %v, RevocationID %q, audits queued %d skipped %d; want exactly one queued", due, res.RevocationID, len(queued), len(skipped))
			}
			r, rt, err := s.PendingRevocation(res.RevocationID)
			if err != nil || rt.Reveal() != "rt-"+user || r.Cause != vault.RevocationReplaced || r.GrantID != first.Grant.ID || r.Subject != "sub-"+user {
				t.Fatalf("PendingRevocation = %+v, %v; want the first refresh token, cause replaced", r, err)
			}
			if err := s.SettleRevocation(r.ID, "revoker"); err != nil {
				t.Fatal(err)
			}
			if g := grantOf(t, s, first.Grant.ID); g.State != vault.GrantActive || refreshOf(t, s, g.ID) != "rt-2-"+user {
				t.Errorf("grant after settling the replaced token = %s, want active with the new token", g.State)
			}
			// The grant unenrolled later is deleted once its own
			// revocation settles, not before.
			out, err := s.UnenrollGrant(first.Grant.ID, vault.Unenroll{Actor: "op", Revoke: true})
			if err != nil || out.RevocationID == "" {
				t.Fatalf("UnenrollGrant = %+v, %v", out, err)
			}
			if err := s.SettleRevocation(out.RevocationID, "revoker"); err != nil {
				t.Fatal(err)
			}
			_, err = s.Grant(first.Grant.ID)
			wantErr(t, "Grant(unenrolled and settled)", err, vault.ErrNotFound)
		})
	}
}

// testAccountSwitch: an enrollment link signed in as another account than
// the user's live grant is refused unless it named that account; then the
// grant moves, audited, and the old account's token is retired by the
// rule, unless another user's grant holds that account.
func testAccountSwitch(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	c := consentFor(s, link(t, s, "zed", spec2), "sub-other", "rt-other")
	c.Revocation = endsAccount
	_, err := s.CommitConsent(c)
	wantErr(t, "CommitConsent(another account, no expected identity)", err, vault.ErrWrongAccount)
	wantErr(t, "CommitConsent(another account, no expected identity)", err, vault.ErrAccountSwitch)
	if g := grantOf(t, s, zed.Grant.ID); g.Subject != "sub-zed" || refreshOf(t, s, g.ID) != "rt-zed" {
		t.Fatalf("grant after a refused switch = subject %q, want zed's unchanged", g.Subject)
	}
	if ws, _ := s.ListWatches("zed"); len(ws) != 1 {
		t.Errorf("zed has %d watches after a refused switch, want 1", len(ws))
	}
	if ids, _ := s.LiveAccountGrants("x", "sub-zed", ""); !slices.Equal(ids, []string{zed.Grant.ID}) {
		t.Errorf("LiveAccountGrants(sub-zed) = %v, want [%s]", ids, zed.Grant.ID)
	}

	spec := cloneSpec(spec2)
	_, e, err := s.CreateLink(vault.LinkRequest{UserID: "zed", Provider: "x", Watch: &spec, Expected: "sub-new"})
	if err != nil {
		t.Fatal(err)
	}
	c = consentFor(s, e, "sub-new", "rt-new")
	c.Revocation = endsAccount
	res, err := s.CommitConsent(c)
	if err != nil || res.Grant.ID != zed.Grant.ID || res.Grant.Subject != "sub-new" || res.SwitchedFrom != "sub-zed" {
		t.Fatalf("CommitConsent(named switch) = %+v, %v; want grant %s moved to sub-new", res, err, zed.Grant.ID)
	}
	if sw := audited(t, s, vault.AuditAccountSwitched); len(sw) != 1 || !strings.Contains(sw[0].Detail, `"sub-zed" to "sub-new"`) {
		t.Errorf("grant_account_switched audits = %+v, want one", sw)
	}
	r, rt, err := s.PendingRevocation(res.RevocationID)
	if err != nil || rt.Reveal() != "rt-zed" || r.Subject != "sub-zed" {
		t.Fatalf("PendingRevocation(%q) = %+v, %v; want sub-zed's old token queued (nobody else holds it)", res.RevocationID, r, err)
	}
	if ids, _ := s.LiveAccountGrants("x", "sub-zed", ""); len(ids) != 0 {
		t.Errorf("LiveAccountGrants(sub-zed) after the switch = %v, want none", ids)
	}

	// Amy consents as sub-zed before the revocation is attempted: the
	// worker finds her grant and drops the revocation rather than end it.
	amyLink := link(t, s, "amy", spec1)
	if _, err := s.CommitConsent(consentFor(s, amyLink, "sub-zed", "rt-amy")); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.LiveAccountGrants("x", "sub-zed", ""); len(ids) != 1 {
		t.Fatalf("LiveAccountGrants(sub-zed) = %v, want amy's grant", ids)
	}
	if err := s.DropRevocation(r.ID, "revoker", "amy's grant holds the account"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DropRevocation(again)", s.DropRevocation(r.ID, "revoker", "x"), vault.ErrNotFound)
	if sk := audited(t, s, vault.AuditRevocationSkipped); len(sk) != 1 || !strings.Contains(sk[0].Detail, "amy's grant holds the account") {
		t.Errorf("revocation_skipped audits = %+v, want the drop", sk)
	}
	if g := grantOf(t, s, zed.Grant.ID); g.State != vault.GrantActive {
		t.Errorf("zed's grant after the drop = %s, want active", g.State)
	}

	// Bob consents as sub-new, zed's account now: unenrolling zed where
	// revocation ends the account queues nothing, and says why.
	bob := link(t, s, "bob", spec1)
	if _, err := s.CommitConsent(consentFor(s, bob, "sub-new", "rt-bob")); err != nil {
		t.Fatal(err)
	}
	out, err := s.UnenrollGrant(zed.Grant.ID, vault.Unenroll{Actor: "op", Revoke: true, EndsAccount: true, Why: "revoking ends the whole account"})
	if err != nil || !out.Changed || out.RevocationID != "" {
		t.Fatalf("UnenrollGrant(shared account) = %+v, %v; want revoked locally, nothing queued", out, err)
	}
	var said bool
	for _, ev := range audited(t, s, vault.AuditGrantRevoked) {
		said = said || (ev.GrantID == zed.Grant.ID && strings.Contains(ev.Detail, "not revoked at the provider: revoking ends the whole account"))
	}
	if !said {
		t.Error("the unenroll's audit entry does not say why the token was not revoked")
	}
}

// testChangeWatchDuplicate: ChangeWatch refuses to make a watch the same
// as another of the user's, like AddWatch and CommitConsent.
func testChangeWatchDuplicate(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	w2, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: cloneSpec(spec2)}, "op")
	if err != nil {
		t.Fatal(err)
	}
	sched := spec1.Schedule
	got, err := s.ChangeWatch(w2.ID, vault.WatchChange{Hashtags: []string{"GoLang"}, Schedule: &sched,
		Targets: []string{spec1.Targets[1], spec1.Targets[0]}}, "op")
	if !errors.Is(err, vault.ErrDuplicateWatch) || got.ID != zed.Started[0].ID {
		t.Fatalf("ChangeWatch(into the same as another) = %s, %v; want ErrDuplicateWatch naming %s", got.ID, err, zed.Started[0].ID)
	}
	if w := watchOf(t, s, w2.ID); !w.WatchSpec.Same(spec2) {
		t.Errorf("refused change stored %+v", w.WatchSpec)
	}
	// Changing a watch into itself is no duplicate.
	if _, err := s.ChangeWatch(zed.Started[0].ID, vault.WatchChange{Schedule: &sched}, "op"); err != nil {
		t.Errorf("ChangeWatch(same schedule) = %v", err)
	}
}
