package renew_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestQueuedRevocationRecheckedX: u1's unenroll at X could not reach the
// provider, so its revocation waits. Meanwhile amy consents with the same
// X account. X ends the app's whole authorization for the account on
// revocation, so the retry must not revoke: the worker drops the
// revocation, audited, and amy's grant keeps working. Without amy, the
// same retry revokes (TestUnenroll).
func TestQueuedRevocationRecheckedX(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock})
	g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(time.Hour)}).Grant
	f.Sandbox.FailNext(xsandbox.EndpointRevoke, 1, 503)
	if res, err := f.Manager.Unenroll(context.Background(), g.ID, "operator"); err != nil || !res.Queued {
		t.Fatalf("Unenroll() with X down = %+v, %v; want the revocation queued", res, err)
	}
	amy := f.Enroll(renewtest.Enrollee{User: "amy", Expiry: t0.Add(time.Hour)}).Grant
	if amy.Subject != g.Subject {
		t.Fatalf("amy's subject %q, want u1's %q", amy.Subject, g.Subject)
	}
	clock.Advance(10 * time.Minute)
	f.Manager.RetryRevocations(context.Background())
	if due, err := f.DB.DueRevocations(clock.Now().Add(24 * time.Hour)); err != nil || len(due) != 0 {
		t.Errorf("pending revocations after the retry = %v, %v; want none (dropped)", due, err)
	}
	if n := f.Sandbox.Stats().Revocations; n != 0 {
		t.Errorf("X revocations = %d, want 0: revoking would have ended amy's grant", n)
	}
	var said bool
	if err := f.DB.AuditTrail(0, func(ev vault.AuditEvent) error {
		said = said || (ev.Kind == vault.AuditRevocationSkipped && ev.GrantID == g.ID &&
			strings.Contains(ev.Detail, "X ends the app's whole authorization") && strings.Contains(ev.Detail, amy.ID))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !said {
		t.Error("no revocation_skipped audit entry saying why")
	}
	if _, err := f.DB.Grant(g.ID); err == nil {
		t.Error("u1's revoked grant is still stored after its revocation was dropped")
	}
	tok, err := f.Manager.Source(amy.ID).Token(context.Background())
	if err != nil || f.UsersMe(tok) != http.StatusOK {
		t.Errorf("amy's token = %v, want working", err)
	}
}
