package vault

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/secret"
)

// enrolled is zed, enrolled by a consent link with zedWatch, plus a
// second watch that zed paused.
func enrolled(t *testing.T, db *DB) (Grant, Watch, Watch) {
	t.Helper()
	res, err := db.CommitConsent(consent(link(t, db, "zed", zedWatch), "s1", "rt1"))
	if err != nil {
		t.Fatal(err)
	}
	paused, err := db.AddWatch(NewWatch{UserID: "zed", Provider: "x", Spec: WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly",
		Targets: []string{"https://hooks.example.com/zed"}}}, "op")
	if err != nil {
		t.Fatal(err)
	}
	if paused, _, err = db.PauseWatch(paused.ID, "user link"); err != nil {
		t.Fatal(err)
	}
	return res.Grant, res.Started[0], paused
}

// TestRefreshFencing: the in-flight marker is committed before the token
// request; a second begin while one is in flight reports it (Retry) and
// counts the lost rotation once; of the two tickets only one can commit,
// and the loser stores nothing.
func TestRefreshFencing(t *testing.T) {
	db, _ := openConsentDB(t)
	g, _, _ := enrolled(t, db)
	t1, err := db.BeginRefresh(g.ID, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	if stored, _ := db.Grant(g.ID); t1.Retry || stored.RefreshInFlight.IsZero() || t1.Refresh.Reveal() != "rt1" {
		t.Fatalf("BeginRefresh = retry %v, marker %v; want the marker committed and no retry", t1.Retry, stored.RefreshInFlight)
	}
	t2, err := db.BeginRefresh(g.ID, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	if t3, err := db.BeginRefresh(g.ID, "renewal"); err != nil || !t2.Retry || !t3.Retry || t3.Grant.LostRotations != 1 {
		t.Fatalf("BeginRefresh in flight = retry %v/%v, lost rotations %d, %v; want retries counted once", t2.Retry, t3.Retry, t3.Grant.LostRotations, err)
	}
	expiry := db.Now().Add(2 * time.Hour)
	out, err := db.CommitRefresh(t2, RefreshResult{Access: secret.NewAccessToken("at2"), Refresh: secret.NewRefreshToken("rt2"), Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	if !out.RefreshInFlight.IsZero() || out.InFlightRetried || out.RefreshCount != 1 || !out.AccessExpiry.Equal(expiry) {
		t.Errorf("CommitRefresh = %+v, want the marker cleared, one refresh, the expiry stored", out)
	}
	_, err = db.CommitRefresh(t1, RefreshResult{Access: secret.NewAccessToken("at-stale"), Refresh: secret.NewRefreshToken("rt-stale"), Expiry: expiry})
	var te *TransitionError
	if !errors.As(err, &te) || !errors.Is(err, ErrConflict) {
		t.Fatalf("CommitRefresh(fenced ticket) = %v, want a *TransitionError", err)
	}
	if err := db.RecordRefreshFailure(t1, RefreshFailure{Class: "transient"}); !errors.Is(err, ErrConflict) {
		t.Errorf("RecordRefreshFailure(fenced ticket) = %v, want ErrConflict", err)
	}
	_, tok, err := db.GrantTokens(g.ID)
	if err != nil || tok.Refresh.Reveal() != "rt2" || tok.Access.Reveal() != "at2" {
		t.Errorf("tokens after a fenced commit = %v, want rt2/at2 kept", err)
	}
}

func TestRecordRefreshFailure(t *testing.T) {
	db, _ := openConsentDB(t)
	g, _, _ := enrolled(t, db)
	for _, tt := range []struct {
		f          RefreshFailure
		wantMarker bool
	}{
		{RefreshFailure{Class: "transient"}, false},
		{RefreshFailure{Class: "transient", KeepMarker: true}, true},
		{RefreshFailure{Class: "client", Alert: "the provider refuses tagwatch's client: invalid_client", Actor: "renewal"}, false},
	} {
		tk, err := db.BeginRefresh(g.ID, "renewal")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.RecordRefreshFailure(tk, tt.f); err != nil {
			t.Fatal(err)
		}
		got, _ := db.Grant(g.ID)
		if got.State != GrantActive || got.LastErrorClass != tt.f.Class || got.RefreshInFlight.IsZero() != !tt.wantMarker {
			t.Errorf("RecordRefreshFailure(%+v) = state %s class %q marker %v", tt.f, got.State, got.LastErrorClass, got.RefreshInFlight)
		}
	}
	var alerts int
	db.View(func(tx *Tx) error {
		return tx.AuditTrail(0, func(ev AuditEvent) error {
			if ev.Kind == AuditGrantState && strings.Contains(ev.Detail, "operator alert") {
				alerts++
			}
			return nil
		})
	})
	if alerts != 1 {
		t.Errorf("%d operator alerts audited, want 1", alerts)
	}
}

// TestMarkNeedsReconsent is RT-05's store side: the grant is ended once,
// its watches held (a paused one stays paused with the cause pending),
// and the user is sent a fresh link, sealed, with the facts and no words.
func TestMarkNeedsReconsent(t *testing.T) {
	db, _ := openConsentDB(t)
	g, active, paused := enrolled(t, db)
	if _, err := db.BeginRefresh(g.ID, "renewal"); err != nil {
		t.Fatal(err)
	}
	out, err := db.MarkNeedsReconsent(g.ID, Reconsent{Reason: "dead_grant", LinkPrefix: "https://tw.example/enroll/", Actor: "renewal"})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Changed || out.Grant.State != GrantNeedsReconsent || len(out.Grant.SealedRefresh) != 0 || !out.Grant.RefreshInFlight.IsZero() {
		t.Errorf("MarkNeedsReconsent = %+v, want needs_reconsent, tokens dropped, marker cleared", out.Grant)
	}
	if _, err := db.BeginRefresh(g.ID, "renewal"); !errors.Is(err, ErrNeedsConsent) {
		t.Errorf("BeginRefresh after = %v, want ErrNeedsConsent", err)
	}
	for id, want := range map[string]string{active.ID: "suspended (needs_reconsent)", paused.ID: "paused; also suspended (needs_reconsent)"} {
		if w, _ := db.Watch(id); w.StateText() != want {
			t.Errorf("watch %s is %q, want %q", id, w.StateText(), want)
		}
	}
	rows := outboxRows(t, db, NoticeReconsent)
	if len(rows) != 3 || out.Notices != 3 {
		t.Fatalf("%d reconsent notices (%d reported), want one per target of zed's watches (3)", len(rows), out.Notices)
	}
	var n Notice
	if err := json.Unmarshal(rows[0].Payload, &n); err != nil {
		t.Fatal(err)
	}
	if n.Reason != "dead_grant" || n.Message != "" || len(n.Hashtags) != 3 {
		t.Errorf("notice = %+v, want the reason and the hashtags as facts, no words", n)
	}
	var link secret.Value
	db.View(func(tx *Tx) error { link, err = tx.OpenOutboxSecret(rows[0]); return err })
	token, ok := strings.CutPrefix(link.Reveal(), "https://tw.example/enroll/")
	if !ok || HashLinkToken(token) != out.Link.Hash || out.Link.Purpose != PurposeReconsent || out.Link.Expected != "s1" {
		t.Errorf("queued link %v does not open re-consent link %+v bound to s1", ok, out.Link)
	}
	again, err := db.MarkNeedsReconsent(g.ID, Reconsent{Reason: "dead_grant", LinkPrefix: "https://tw.example/enroll/"})
	if err != nil || again.Changed || len(outboxRows(t, db, NoticeReconsent)) != 3 {
		t.Errorf("second MarkNeedsReconsent = %+v, %v; want nothing done", again, err)
	}
}

// TestUnenrollGrant: the local part, the revocation queued sealed, and
// its settlement; a new consent afterwards gets a new grant (revoked is
// final) and lets the watches run again.
func TestUnenrollGrant(t *testing.T) {
	db, c := openConsentDB(t)
	g, active, paused := enrolled(t, db)
	out, err := db.UnenrollGrant(g.ID, Unenroll{Actor: "op", Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Changed || out.RevocationID == "" || out.Grant.State != GrantRevoked || len(out.Grant.SealedRefresh) != 0 {
		t.Fatalf("UnenrollGrant = %+v, want revoked, tokens dropped, revocation queued", out)
	}
	for id, want := range map[string]string{active.ID: "suspended (revoked)", paused.ID: "paused; also suspended (revoked)"} {
		if w, _ := db.Watch(id); w.StateText() != want {
			t.Errorf("watch %s is %q, want %q", id, w.StateText(), want)
		}
	}
	if rows := outboxRows(t, db, NoticeRevoked); len(rows) != 3 {
		t.Errorf("%d revoked notices, want 3", len(rows))
	}
	r, rt, err := db.PendingRevocation(out.RevocationID)
	if err != nil || rt.Reveal() != "rt1" || r.GrantID != g.ID {
		t.Fatalf("PendingRevocation = %+v, %v; want rt1 of grant %s", r, err, g.ID)
	}
	if again, err := db.UnenrollGrant(g.ID, Unenroll{Actor: "op", Revoke: true}); err != nil || again.Changed || again.RevocationID != "" {
		t.Errorf("second UnenrollGrant = %+v, %v; want nothing done", again, err)
	}
	next := c.Now().Add(time.Minute)
	if r, err := db.DeferRevocation(out.RevocationID, next, true); err != nil || r.Attempts != 1 || !r.NextAttempt.Equal(next) {
		t.Errorf("DeferRevocation = %+v, %v", r, err)
	}
	if due, _ := db.DueRevocations(c.Now()); len(due) != 0 {
		t.Errorf("due now = %v, want none before %v", due, next)
	}
	if due, _ := db.DueRevocations(next); len(due) != 1 {
		t.Errorf("due at %v = %v, want the revocation", next, due)
	}

	// zed enrolls again before the revocation settles: a new grant; the
	// revoked one stays until the revocation settles, then goes.
	res, err := db.CommitConsent(consent(link(t, db, "zed", zedWatch), "s1", "rt9"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Grant.ID == g.ID || res.Replaced != GrantRevoked || len(res.Kept) != 1 || len(res.Resumed) != 1 {
		t.Errorf("consent after unenroll = grant %s replaced %q kept %d resumed %d; want a new grant and the watch resumed",
			res.Grant.ID, res.Replaced, len(res.Kept), len(res.Resumed))
	}
	if w, _ := db.Watch(paused.ID); w.StateText() != "paused" {
		t.Errorf("paused watch after the new consent is %q, want paused", w.StateText())
	}
	if ug, err := db.UserGrant("zed", "x"); err != nil || ug.ID != res.Grant.ID {
		t.Errorf("UserGrant(zed) = %s, %v; want the new grant", ug.ID, err)
	}
	if err := db.SettleRevocation(out.RevocationID, "renewal"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Grant(g.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoked grant after settlement: %v, want deleted", err)
	}
	if ug, err := db.UserGrant("zed", "x"); err != nil || ug.ID != res.Grant.ID || ug.State != GrantActive {
		t.Errorf("UserGrant(zed) after settlement = %+v, %v; want the new grant untouched", ug, err)
	}
	if _, _, err := db.PendingRevocation(out.RevocationID); !errors.Is(err, ErrNotFound) {
		t.Errorf("PendingRevocation after settlement = %v, want not found", err)
	}
}
