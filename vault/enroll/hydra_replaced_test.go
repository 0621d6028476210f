package enroll_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
)

// TestHydraReplacedGrant is C12 against a real Ory Hydra: zed enrolls,
// gets a second link and consents again as the same subject. Hydra
// revokes per grant (fosite revokes the tokens of the revoked token's
// request id only), so the replaced refresh token is queued for
// revocation in the consent's transaction, audited, and revoked by the
// revocation worker (renew.Manager, as the daemon runs it); afterwards
// Hydra's token endpoint refuses the first refresh token and the new one
// still works. The grant lives on, renewed, with one watch.
func TestHydraReplacedGrant(t *testing.T) {
	he := newHydraEnv(t)
	ctx := context.Background()
	p := he.ps["hydra"]

	link1, rec1 := he.link("zed", "hydra", "")
	b := newBrowser(t)
	_, cb := he.toCallback(b, link1)
	if pg := b.get(cb.String()); pg.status != http.StatusSeeOther {
		t.Fatalf("first consent = %d: %s", pg.status, pg.body)
	}
	g1 := he.expectEnrolled("zed", rec1, "user-1")
	_, tok1 := he.grantOf("zed", "hydra")

	link2, rec2 := he.link("zed", "hydra", "")
	_, cb = he.toCallback(b, link2)
	pg := b.get(cb.String())
	if pg.status != http.StatusSeeOther {
		t.Fatalf("second consent = %d: %s", pg.status, pg.body)
	}
	if done := b.get(he.url + pg.loc); done.status != http.StatusOK || !strings.Contains(done.body, "You already had this watch, so tagwatch kept it") {
		t.Errorf("success page = %d, want 200 saying the watch was kept:\n%s", done.status, done.body)
	}
	g2, tok2 := he.grantOf("zed", "hydra")
	if g2.ID != g1.ID || g2.State != vault.GrantActive || tok2.Refresh.Equal(tok1.Refresh.Value) {
		t.Fatalf("grant after the second consent = %+v, want %s renewed with a new refresh token", g2, g1.ID)
	}
	if ws, err := he.db.ListWatches("zed"); err != nil || len(ws) != 1 {
		t.Fatalf("zed has %d watches (%v), want 1", len(ws), err)
	} else {
		he.noEnrolledNotice("zed", ws[0].ID, rec2)
	}

	// Queued exactly once, in the consent's transaction, with the old
	// token sealed.
	due, err := he.db.DueRevocations(he.clock.Now())
	if err != nil || len(due) != 1 {
		t.Fatalf("pending revocations = %v, %v; want one", due, err)
	}
	r, rt, err := he.db.PendingRevocation(due[0])
	if err != nil || r.Cause != vault.RevocationReplaced || r.GrantID != g1.ID || !rt.Equal(tok1.Refresh.Value) {
		t.Fatalf("pending revocation = %+v, %v; want the replaced token of grant %s", r, err, g1.ID)
	}
	if q := he.audits(vault.AuditRevocationQueued); len(q) != 1 || !strings.Contains(q[0].Detail, rec2.ID) || !strings.Contains(q[0].Detail, "RFC 7009") {
		t.Errorf("revocation_queued audit = %+v, want one naming link %s and the rule", q, rec2.ID)
	}
	// Before the worker runs, Hydra still honours the old token: that is
	// the fault.
	if active, _ := he.h.Introspect(t, tok1.Refresh.Reveal()); !active {
		t.Fatal("Hydra refuses the replaced token before it was revoked: the test proves nothing")
	}

	m := renew.New(renew.Config{DB: he.db, Providers: map[string]renew.Provider{"hydra": p}, Now: he.clock.Now})
	m.RetryRevocations(ctx)
	if due, err := he.db.DueRevocations(he.clock.Now().Add(1e15)); err != nil || len(due) != 0 {
		t.Errorf("pending revocations after the worker = %v, %v; want none", due, err)
	}
	var settled bool
	for _, ev := range he.audits(vault.AuditGrantRevoked) {
		settled = settled || (ev.GrantID == g1.ID && strings.Contains(ev.Detail, "replaced refresh token revoked at provider hydra"))
	}
	if !settled {
		t.Errorf("audit trail %+v does not record the revocation done", he.audits(vault.AuditGrantRevoked))
	}
	if g, err := he.db.Grant(g1.ID); err != nil || g.State != vault.GrantActive {
		t.Errorf("grant after the revocation = %+v, %v; want it active still", g, err)
	}

	// Hydra's token endpoint: the first refresh token is refused, the
	// new one works.
	if _, err := p.Refresh(ctx, tok1.Refresh); provider.ClassOf(err) != provider.ClassDeadGrant {
		t.Errorf("refresh with the replaced token = %v, want refused as a dead grant", err)
	}
	tr, err := p.Refresh(ctx, tok2.Refresh)
	if err != nil || tr.Access.IsZero() {
		t.Fatalf("refresh with the new token = %v, want new tokens", err)
	}
	if active, _ := he.h.Introspect(t, tr.Access.Reveal()); !active {
		t.Error("the new grant's access token is not active at Hydra")
	}
}
