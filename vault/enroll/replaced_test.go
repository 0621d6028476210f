package enroll_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"tagwatch/vault"
)

// audits returns the audit entries of kind (every kind when empty).
func (e *env) audits(kind string) []vault.AuditEvent {
	e.t.Helper()
	var out []vault.AuditEvent
	if err := e.db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if kind == "" || ev.Kind == kind {
			out = append(out, ev)
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// noEnrolledNotice checks that link rec queued no enrolled notice for
// watch id.
func (e *env) noEnrolledNotice(user, watchID string, rec vault.Enrollment) {
	e.t.Helper()
	for _, target := range testWatch.Targets {
		if r, err := e.db.OutboxRow(vault.OutboxID(user, watchID, rec.ID, vault.NoticeEnrolled, target)); !errors.Is(err, vault.ErrNotFound) {
			e.t.Errorf("link %s queued an enrolled notice %+v (err %v) for the kept watch, want none", rec.ID, r, err)
		}
	}
}

// TestReplacedGrantX is C12 at X: zed enrolls, an operator sends a second
// link (the same watch, written differently), zed consents again as the
// same X account. The grant is renewed, one watch stays (the page says
// so, the audit trail too, its targets are not told twice), and the
// replaced refresh token is not revoked: X ends the app's whole
// authorization for the user on revocation (the sandbox models it), which
// would end the new grant; the audit trail says why. The end of the test
// shows that reason against the sandbox: revoking the old token kills the
// new grant.
func TestReplacedGrantX(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("zed", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	g1 := xe.expectEnrolled("zed", rec, "1001")
	_, tok1 := xe.grantOf("zed", "x")

	same := testWatch
	same.Hashtags = []string{"#BBolt", "golang"}
	same.Targets = slices.Clone(testWatch.Targets)
	slices.Reverse(same.Targets)
	link2, rec2, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "zed", Provider: "x", Watch: &same})
	if err != nil {
		t.Fatal(err)
	}
	if p := xe.enroll(newBrowser(t), link2, "1001"); p.status != http.StatusOK || !strings.Contains(p.body, "You already had this watch, so tagwatch kept it") {
		t.Errorf("success page = %d, want 200 saying the watch was kept:\n%s", p.status, p.body)
	}

	g2, tok2 := xe.grantOf("zed", "x")
	if g2.ID != g1.ID || g2.State != vault.GrantActive || g2.Subject != "1001" || tok2.Refresh.Equal(tok1.Refresh.Value) {
		t.Fatalf("grant after the second consent = %+v, want %s renewed with a new refresh token", g2, g1.ID)
	}
	watches, err := xe.db.ListWatches("zed")
	if err != nil || len(watches) != 1 || watches[0].State != vault.WatchActive {
		t.Fatalf("ListWatches(zed) = %+v, %v; want one active watch", watches, err)
	}
	l2, err := xe.db.LinkByID(rec2.ID)
	if err != nil || l2.UsedAt.IsZero() || !l2.WatchKept || l2.WatchID != watches[0].ID {
		t.Errorf("second link = %+v, %v; want used, keeping watch %s", l2, err, watches[0].ID)
	}
	xe.noEnrolledNotice("zed", watches[0].ID, rec2)
	if kept := xe.audits(vault.AuditWatchKept); len(kept) != 1 || !strings.Contains(kept[0].Detail, watches[0].ID) || !strings.Contains(kept[0].Detail, "no second watch created") {
		t.Errorf("watch_kept audit = %+v, want one naming watch %s", kept, watches[0].ID)
	}

	const why = "replaced refresh token not revoked: X ends the app's whole authorization for the user on revocation; it expires unused"
	if sk := xe.audits(vault.AuditRevocationSkipped); len(sk) != 1 || sk[0].Detail != why || sk[0].GrantID != g1.ID {
		t.Errorf("revocation_skipped audit = %+v, want one for grant %s: %q", sk, g1.ID, why)
	}
	if q := xe.audits(vault.AuditRevocationQueued); len(q) != 0 {
		t.Errorf("revocation_queued audit = %+v, want none", q)
	}
	xe.stack.Manager.RetryRevocations(context.Background())
	if due, err := xe.db.DueRevocations(xe.clock.Now().Add(1e15)); err != nil || len(due) != 0 {
		t.Errorf("pending revocations = %v, %v; want none", due, err)
	}
	if n := xe.x.Stats().Revocations; n != 0 {
		t.Errorf("sandbox revocations = %d, want 0", n)
	}
	// The new grant works.
	tr, err := xe.stack.Provider.Refresh(context.Background(), tok2.Refresh)
	if err != nil || xe.stack.UsersMe(tr.Access) != http.StatusOK {
		t.Fatalf("refresh with the new grant's token = %v, want a working token", err)
	}
	// Why: at X, revoking the replaced token ends the new grant too.
	if err := xe.stack.Provider.Revoke(context.Background(), tok1.Refresh); err != nil {
		t.Fatal(err)
	}
	if _, err := xe.stack.Provider.Refresh(context.Background(), tr.Refresh); err == nil {
		t.Error("after revoking the replaced token, the new grant still refreshes: the sandbox does not model X's revocation")
	}
}

// TestAccountSwitchX: zed's grant is X account 1001. A second enrollment
// link that names no account, signed in as 1002, is refused (nothing
// changes, the page says why; the refused sign-in's token is revoked, as
// nobody holds 1002). A link that names @mallory (1002) moves the grant,
// audited, and the old account's token is revoked at X: it ends only
// 1001's authorization, which no grant holds any more.
func TestAccountSwitchX(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("zed", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	g1 := xe.expectEnrolled("zed", rec, "1001")
	_, tok1 := xe.grantOf("zed", "x")

	other := testWatch
	other.Hashtags = []string{"zig"}
	link2, rec2, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "zed", Provider: "x", Watch: &other})
	if err != nil {
		t.Fatal(err)
	}
	expectPage(t, xe.enroll(newBrowser(t), link2, "1002"), http.StatusForbidden, "tagwatch already works for you with another account")
	if g, tok := xe.grantOf("zed", "x"); g.Subject != "1001" || !tok.Refresh.Equal(tok1.Refresh.Value) {
		t.Errorf("grant after the refused switch = %+v, want 1001's, unchanged", g)
	}
	if l, _ := xe.db.LinkByID(rec2.ID); !l.UsedAt.IsZero() {
		t.Error("the refused switch used the link")
	}
	if ws, _ := xe.db.ListWatches("zed"); len(ws) != 1 {
		t.Errorf("zed has %d watches after the refused switch, want 1", len(ws))
	}
	if n := xe.x.Stats().Revocations; n != 1 {
		t.Errorf("sandbox revocations after the refused switch = %d, want 1 (the refused sign-in's token)", n)
	}

	link3, rec3, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "zed", Provider: "x", Watch: &other, Expected: "@mallory"})
	if err != nil {
		t.Fatal(err)
	}
	expectPage(t, xe.enroll(newBrowser(t), link3, "1002"), http.StatusOK, "all set")
	g3, tok3 := xe.grantOf("zed", "x")
	if g3.ID != g1.ID || g3.Subject != "1002" || g3.Username != "mallory" {
		t.Fatalf("grant after the named switch = %+v, want %s moved to 1002", g3, g1.ID)
	}
	if sw := xe.audits(vault.AuditAccountSwitched); len(sw) != 1 || !strings.Contains(sw[0].Detail, `from subject "1001" to "1002"`) ||
		!strings.Contains(sw[0].Detail, rec3.ID) {
		t.Errorf("grant_account_switched audit = %+v, want one naming both subjects and link %s", sw, rec3.ID)
	}
	if q := xe.audits(vault.AuditRevocationQueued); len(q) != 1 {
		t.Fatalf("revocation_queued audit = %+v, want one (1001's token)", q)
	}
	xe.stack.Manager.RetryRevocations(context.Background())
	if n := xe.x.Stats().Revocations; n != 2 {
		t.Errorf("sandbox revocations = %d, want 2", n)
	}
	if _, err := xe.stack.Provider.Refresh(context.Background(), tok1.Refresh); err == nil {
		t.Error("1001's replaced token still refreshes after the switch")
	}
	if tr, err := xe.stack.Provider.Refresh(context.Background(), tok3.Refresh); err != nil || xe.stack.UsersMe(tr.Access) != http.StatusOK {
		t.Errorf("refresh with 1002's token = %v, want a working token", err)
	}
}

// TestSharedAccountX: amy and zed are two users whose grants are the same
// X account. Revoking either's token at X would end both, so neither a
// refused sign-in of that account nor zed's unenroll revokes: the token
// expires unused, audited; amy keeps working. Once nobody else holds the
// account, amy's unenroll revokes it.
func TestSharedAccountX(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("amy", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	amy := xe.expectEnrolled("amy", rec, "1001")
	_, amyTok := xe.grantOf("amy", "x")

	// A refused sign-in as the shared account: not revoked.
	link2, _ := xe.link("yan", "x", "@mallory")
	expectPage(t, xe.enroll(newBrowser(t), link2, "1001"), http.StatusForbidden, "different account")
	if n := xe.x.Stats().Revocations; n != 0 {
		t.Fatalf("sandbox revocations after a refused sign-in of amy's account = %d, want 0", n)
	}

	link3, rec3 := xe.link("zed", "x", "")
	expectPage(t, xe.enroll(newBrowser(t), link3, "1001"), http.StatusOK, "all set")
	zed := xe.expectEnrolled("zed", rec3, "1001")
	res, err := xe.stack.Manager.Unenroll(context.Background(), zed.ID, "op")
	if err != nil || res.RevokedAtProvider || res.Queued {
		t.Fatalf("Unenroll(zed) = %+v, %v; want nothing revoked at X", res, err)
	}
	if n := xe.x.Stats().Revocations; n != 0 {
		t.Fatalf("sandbox revocations after zed's unenroll = %d, want 0", n)
	}
	var said bool
	for _, ev := range xe.audits(vault.AuditGrantRevoked) {
		said = said || (ev.GrantID == zed.ID && strings.Contains(ev.Detail, "not revoked at the provider: X ends the app's whole authorization") &&
			strings.Contains(ev.Detail, amy.ID))
	}
	if !said {
		t.Errorf("audit trail %+v does not say why zed's token was not revoked", xe.audits(vault.AuditGrantRevoked))
	}
	if tr, err := xe.stack.Provider.Refresh(context.Background(), amyTok.Refresh); err != nil || xe.stack.UsersMe(tr.Access) != http.StatusOK {
		t.Fatalf("amy's grant after zed's unenroll = %v, want working", err)
	}
	if err := xe.db.SettleRevocation("nosuch", "op"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("SettleRevocation(nosuch) = %v", err)
	}
	res, err = xe.stack.Manager.Unenroll(context.Background(), amy.ID, "op")
	if err != nil || !res.RevokedAtProvider {
		t.Fatalf("Unenroll(amy) = %+v, %v; want revoked at X", res, err)
	}
}
