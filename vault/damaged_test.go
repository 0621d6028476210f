package vault_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

// damageSeed is a working vault of three users: amy and zed with a grant
// and a watch each (amy's has run once, so it has a cursor), a pending
// link for amy, and bob, who unenrolled, with a pending revocation.
type damageSeed struct {
	amy, zed, bob vault.ConsentResult
	link          vault.Enrollment
	amyRow        string // one of amy's outbox rows
	revocation    string
	auditSeq      uint64 // an audit event of amy's
}

func seedDamage(t *testing.T, db *vault.DB) damageSeed {
	t.Helper()
	var s damageSeed
	s.amy = vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"})
	zedWatch := vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly", Targets: []string{"console:"}}
	s.zed = vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed", Watch: &zedWatch})
	s.bob = vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "bob"})
	out, err := db.UnenrollGrant(s.bob.Grant.ID, vault.Unenroll{Actor: "test", Revoke: true})
	if err != nil || out.RevocationID == "" {
		t.Fatalf("UnenrollGrant(bob) = %+v, %v", out, err)
	}
	s.revocation = out.RevocationID
	if _, err := db.CommitRun(vault.RunCommit{WatchID: s.amy.Started[0].ID, NewSinceID: "100"}); err != nil {
		t.Fatal(err)
	}
	linked := vault.WatchSpec{Hashtags: []string{"linked"}, Schedule: "@hourly", Targets: []string{"console:"}}
	if _, s.link, err = db.CreateLink(vault.LinkRequest{UserID: "amy", Provider: "x", Watch: &linked, CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.ListOutbox("", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.UserID == "amy" {
			s.amyRow = r.ID
		}
	}
	err = db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if ev.UserID == "amy" && s.auditSeq == 0 {
			s.auditSeq = ev.Seq
		}
		return nil
	})
	if err != nil || s.amyRow == "" || s.auditSeq == 0 {
		t.Fatalf("seed: amy's outbox row %q, audit event %d, %v", s.amyRow, s.auditSeq, err)
	}
	return s
}

// flipBase64 changes the middle of a base64 text to other base64
// characters: the record still decodes, its sealed field no longer opens.
func flipBase64(occ []byte) {
	for i := len(occ) / 2; i < len(occ)/2+4 && i < len(occ); i++ {
		if occ[i] == 'A' {
			occ[i] = 'B'
		} else {
			occ[i] = 'A'
		}
	}
}

// TestDamagedRecordIsolated is C10: a backup copy of a working vault in
// which one record's bytes are damaged on disk (0xff over a watch's
// opening brace; a few bytes of a grant's sealed token or of its JSON
// flipped; and the same for every other kind of record) opens, the
// damaged record is skipped by every reader and named by a lookup, the
// other users keep working (zed's watch runs, its notifications are
// delivered), the damage is reported once (FindDamaged, one audit event,
// the consistency check) and an operator deletes the one record, leaving
// a consistent store.
func TestDamagedRecordIsolated(t *testing.T) {
	cases := []struct {
		name string
		kind string
		// find is the bytes to damage; mutate changes them.
		find   func(s damageSeed) string
		mutate func([]byte)
		id     func(s damageSeed) string
		// problem is in what FindDamaged says is wrong.
		problem string
		// lookup reads the damaged record by its id.
		lookup func(db *vault.DB, s damageSeed) error
		// amyRuns: amy's watch is still scheduled.
		amyRuns bool
	}{
		{"watch: 0xff over its opening brace (C10)", vault.KindWatch,
			func(s damageSeed) string { return `{"id":"` + s.amy.Started[0].ID + `","user_id"` },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return s.amy.Started[0].ID }, "invalid character",
			func(db *vault.DB, s damageSeed) error { _, err := db.Watch(s.amy.Started[0].ID); return err }, false},
		{"grant: sealed refresh token bytes flipped (C10)", vault.KindGrant,
			func(s damageSeed) string {
				g := grantOf(s.amy)
				return `"sealed_refresh":"` + base64.StdEncoding.EncodeToString(g.SealedRefresh)[:24]
			},
			func(occ []byte) { flipBase64(occ[len(`"sealed_refresh":"`):]) }, func(s damageSeed) string { return s.amy.Grant.ID },
			"sealed refresh_token does not open",
			func(db *vault.DB, s damageSeed) error {
				_, _, err := db.GrantTokens(s.amy.Grant.ID)
				if !errors.Is(err, seal.ErrOpen) {
					return fmt.Errorf("GrantTokens = %w, not seal.ErrOpen", err)
				}
				return err
			}, false},
		{"grant: its JSON flipped (C10)", vault.KindGrant,
			func(s damageSeed) string { return `{"id":"` + s.amy.Grant.ID + `","user_id"` },
			// The key's closing quote becomes 'x': the key runs on to the
			// value's opening quote and no colon follows, whatever the id
			// (a flipped value quote read as a number depended on it).
			func(occ []byte) { occ[len(`{"id`)] ^= '"' ^ 'x' }, func(s damageSeed) string { return s.amy.Grant.ID }, "after object key",
			func(db *vault.DB, s damageSeed) error { _, err := db.UserGrant("amy", "x"); return err }, false},
		{"grant: its id flipped", vault.KindGrant,
			func(s damageSeed) string { return `{"id":"` + s.amy.Grant.ID + `","user_id"` },
			func(occ []byte) { occ[len(`{"id":"`)] ^= 1 }, func(s damageSeed) string { return s.amy.Grant.ID },
			"stored under another key",
			func(db *vault.DB, s damageSeed) error { _, err := db.Grant(s.amy.Grant.ID); return err }, false},
		{"cursor", vault.KindCursor,
			func(s damageSeed) string { return `{"watch_id":"` + s.amy.Started[0].ID + `"` },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return s.amy.Started[0].ID }, "invalid character",
			func(db *vault.DB, s damageSeed) error { _, err := db.RunInput(s.amy.Started[0].ID); return err }, false},
		{"user", vault.KindUser,
			func(damageSeed) string { return `{"id":"amy","created_at"` },
			vaulttest.OverwriteFirst(0xff), func(damageSeed) string { return "amy" }, "invalid character",
			func(db *vault.DB, _ damageSeed) error { _, err := db.User("amy"); return err }, true},
		{"consent link", vault.KindLink,
			func(s damageSeed) string { return `{"hash":"` + s.link.Hash + `"` },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return "sha256:" + s.link.Hash[:12] }, "invalid character",
			func(db *vault.DB, s damageSeed) error { _, err := db.Link(s.link.Hash); return err }, true},
		{"outbox row", vault.KindOutbox,
			func(s damageSeed) string { return `{"id":"` + s.amyRow + `","kind"` },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return s.amyRow }, "invalid character",
			func(db *vault.DB, s damageSeed) error { _, err := db.OutboxRow(s.amyRow); return err }, true},
		{"pending revocation", vault.KindRevocation,
			func(s damageSeed) string { return `{"id":"` + s.revocation + `","provider"` },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return s.revocation }, "invalid character",
			func(db *vault.DB, s damageSeed) error { _, _, err := db.PendingRevocation(s.revocation); return err }, true},
		{"audit event", vault.KindAudit,
			func(s damageSeed) string { return fmt.Sprintf(`{"seq":%d,"time"`, s.auditSeq) },
			vaulttest.OverwriteFirst(0xff), func(s damageSeed) string { return fmt.Sprint(s.auditSeq) }, "invalid character",
			nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tagwatch.db")
			master, _ := vaulttest.NewMaster(t)
			clock := vaulttest.NewClock(vaulttest.T0)
			open := func() *vault.DB {
				return vaulttest.Open(t, vaulttest.Path(path), vaulttest.Master(master), vaulttest.Now(clock.Now))
			}
			db := open()
			s := seedDamage(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			vaulttest.Damage(t, path, []byte(tc.find(s)), tc.mutate)

			// The backup opens: one record does not take the store down.
			db = open()
			id := tc.id(s)

			// Reported: found, named, recorded once.
			found, err := db.FindDamaged()
			if err != nil || len(found) != 1 || found[0].Kind != tc.kind || found[0].ID != id ||
				!strings.Contains(found[0].Problem, tc.problem) || !found[0].FirstSeen.Equal(vaulttest.T0) {
				t.Fatalf("FindDamaged() = %+v, %v; want %s %q (%s), first seen %s", found, err, tc.kind, id, tc.problem, vaulttest.T0)
			}
			clock.Advance(time.Hour)
			if again, err := db.FindDamaged(); err != nil || len(again) != 1 || !again[0].FirstSeen.Equal(vaulttest.T0) {
				t.Errorf("FindDamaged() again = %+v, %v; want the same record, first seen %s", again, err, vaulttest.T0)
			}
			if reg, err := db.DamagedRecords(); err != nil || len(reg) != 1 || reg[0].ID != id {
				t.Errorf("DamagedRecords() = %+v, %v; want %s %q", reg, err, tc.kind, id)
			}
			if n := auditCount(t, db, vault.AuditRecordDamaged, id); n != 1 {
				t.Errorf("%d %s audit events for %q after two scans, want 1", n, vault.AuditRecordDamaged, id)
			}
			var ce *vault.ConsistencyError
			if err := db.CheckConsistency(); !errors.As(err, &ce) || !strings.Contains(err.Error(), fmt.Sprintf("%q", strings.TrimPrefix(id, "sha256:"))) &&
				!strings.Contains(err.Error(), strings.TrimPrefix(id, "sha256:")) {
				t.Errorf("CheckConsistency() = %v, want it to name %s %q", err, tc.kind, id)
			}

			// A lookup names the record.
			if tc.lookup != nil {
				err := tc.lookup(db, s)
				var de *vault.DamagedError
				want := fmt.Sprintf("%s %q is damaged: ", tc.kind, id)
				if !errors.Is(err, vault.ErrDamaged) || !errors.As(err, &de) || de.Kind != tc.kind || de.ID != id ||
					!strings.Contains(err.Error(), want) {
					t.Errorf("lookup = %v, want a *DamagedError %q...", err, want)
				}
			}

			// Every list still answers.
			for name, list := range map[string]func() error{
				"ListUsers":        func() error { _, err := db.ListUsers(); return err },
				"ListGrants":       func() error { _, err := db.ListGrants(); return err },
				"ListWatches":      func() error { _, err := db.ListWatches(""); return err },
				"ListWatches(amy)": func() error { _, err := db.ListWatches("amy"); return err },
				"ListLinks":        func() error { _, err := db.ListLinks(clock.Now()); return err },
				"OutboxTallies":    func() error { _, err := db.OutboxTallies(); return err },
				"ListOutbox":       func() error { _, err := db.ListOutbox("", 0); return err },
				"DueRevocations":   func() error { _, err := db.DueRevocations(clock.Now()); return err },
				"KeyStatus":        func() error { _, err := db.KeyStatus(); return err },
				"AuditTrail":       func() error { return db.AuditTrail(0, func(vault.AuditEvent) error { return nil }) },
				"Reseal":           func() error { return db.Reseal(10) },
			} {
				if err := list(); err != nil {
					t.Errorf("%s() = %v, want the other records", name, err)
				}
			}

			// zed keeps working: scheduled, run, notified.
			var runnable []string
			if err := db.RunnableWatches(func(w vault.WatchWithCursor) error { runnable = append(runnable, w.ID); return nil }); err != nil {
				t.Fatalf("RunnableWatches() = %v", err)
			}
			if !slices.Contains(runnable, s.zed.Started[0].ID) || slices.Contains(runnable, s.amy.Started[0].ID) != tc.amyRuns {
				t.Errorf("RunnableWatches() = %v; want zed's %s, and amy's %s only if %v", runnable, s.zed.Started[0].ID, s.amy.Started[0].ID, tc.amyRuns)
			}
			in, err := db.RunInput(s.zed.Started[0].ID)
			if err != nil || in.GrantState != vault.GrantActive {
				t.Fatalf("RunInput(zed) = %+v, %v", in, err)
			}
			if _, _, err := db.GrantTokens(s.zed.Grant.ID); err != nil {
				t.Errorf("GrantTokens(zed) = %v", err)
			}
			out, err := db.CommitRun(vault.RunCommit{WatchID: s.zed.Started[0].ID, NewSinceID: "200",
				Posts: []vault.Post{{ID: "200", Text: "#rust"}}})
			if err != nil || out.Rows != 1 {
				t.Fatalf("CommitRun(zed) = %+v, %v; want one row", out, err)
			}
			var due []string
			if _, err := db.DueOutboxIDs(clock.Now(), func(id string) bool { due = append(due, id); return true }); err != nil {
				t.Fatal(err)
			}
			rows, err := db.LoadOutbox(due)
			if err != nil {
				t.Fatalf("LoadOutbox(due) = %v, want the rows that are not damaged", err)
			}
			delivered := false
			var settle []vault.OutboxOutcome
			for _, r := range rows {
				delivered = delivered || r.UserID == "zed" && r.Kind == vault.NoticeMatch
				if r.ID == id {
					t.Errorf("LoadOutbox handed out the damaged row %s", id)
				}
				settle = append(settle, vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, State: vault.OutboxDelivered})
			}
			if !delivered {
				t.Errorf("LoadOutbox(due) = %d rows without zed's match", len(rows))
			}
			if _, err := db.SettleOutbox(settle); err != nil {
				t.Errorf("SettleOutbox = %v", err)
			}

			// Repaired by an operator: the one record, audited.
			if _, err := db.DeleteDamaged(tc.kind, tc.id(s), "uid:0"); err != nil {
				t.Fatalf("DeleteDamaged(%s, %s) = %v", tc.kind, id, err)
			}
			if found, err := db.FindDamaged(); err != nil || len(found) != 0 {
				t.Errorf("FindDamaged() after the repair = %+v, %v; want none", found, err)
			}
			if n := auditCount(t, db, vault.AuditDamagedDeleted, id); n != 1 {
				t.Errorf("%d %s audit events, want 1", n, vault.AuditDamagedDeleted)
			}
			if _, err := db.DeleteDamaged(tc.kind, tc.id(s), "uid:0"); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("DeleteDamaged twice = %v, want ErrNotFound", err)
			}
			if _, err := db.RunInput(s.zed.Started[0].ID); err != nil {
				t.Errorf("RunInput(zed) after the repair = %v", err)
			}
			// vaulttest's cleanup checks that the repair left the store consistent.
		})
	}
}

func grantOf(r vault.ConsentResult) vault.Grant { return r.Grant }

func auditCount(t *testing.T, db *vault.DB, kind, id string) int {
	t.Helper()
	n := 0
	err := db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if ev.Kind == kind && strings.Contains(ev.Detail, fmt.Sprintf("%q", id)) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteDamagedRefuses: the repair deletes damaged records only; a
// healthy record goes through the ordinary commands.
func TestDeleteDamagedRefuses(t *testing.T) {
	db := vaulttest.Open(t)
	s := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"})
	for _, tc := range []struct {
		kind, id string
		want     error
	}{
		{vault.KindWatch, s.Started[0].ID, vault.ErrConflict},
		{vault.KindGrant, s.Grant.ID, vault.ErrConflict},
		{vault.KindWatch, "nosuch", vault.ErrNotFound},
		{"table", "x", vault.ErrInvalid},
		{vault.KindAudit, "first", vault.ErrInvalid},
		{vault.KindLink, "nosuch", vault.ErrInvalid},
	} {
		if _, err := db.DeleteDamaged(tc.kind, tc.id, "uid:0"); !errors.Is(err, tc.want) {
			t.Errorf("DeleteDamaged(%s, %s) = %v, want %v", tc.kind, tc.id, err, tc.want)
		}
	}
	if _, err := db.Watch(s.Started[0].ID); err != nil {
		t.Errorf("Watch() after refused deletes = %v", err)
	}
}

// TestDamagedGrantDeletedSuspendsItsWatches: deleting a damaged grant
// leaves its user's watches at the provider suspended until a new consent,
// which makes them run again.
func TestDamagedGrantDeletedSuspendsItsWatches(t *testing.T) {
	db := vaulttest.Open(t)
	amy := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"})
	err := vault.RawUpdate(db, func(btx kv.Tx) error {
		return btx.Bucket(vault.BucketGrants).Put([]byte(amy.Grant.ID), []byte("\xff"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeleteDamaged(vault.KindGrant, amy.Grant.ID, "uid:0"); err != nil {
		t.Fatal(err)
	}
	w, err := db.Watch(amy.Started[0].ID)
	if err != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendNeedsReconsent {
		t.Fatalf("Watch() after the grant's deletion = %+v, %v; want suspended needs_reconsent", w.Watch, err)
	}
	again := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"})
	w, err = db.Watch(amy.Started[0].ID)
	if err != nil || w.State != vault.WatchActive || again.Grant.ID == amy.Grant.ID {
		t.Errorf("Watch() after a new consent = %+v, %v (grant %s); want active on a new grant", w.Watch, err, again.Grant.ID)
	}
}

// TestResetDamagedGrant: a grant whose sealed token no longer opens (C10's
// flipped bytes) is reset to needs_reconsent with a fresh link sent to its
// user; the user's consent through that link makes the grant and its
// watch work again. A grant whose record does not decode, and a healthy
// one, are refused.
func TestResetDamagedGrant(t *testing.T) {
	db := vaulttest.Open(t)
	amy := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"})
	zedWatch := vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly", Targets: []string{"console:"}}
	zed := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed", Watch: &zedWatch})
	r := vault.Reconsent{LinkPrefix: "https://tagwatch.example/enroll/", Actor: "uid:0"}
	if _, err := db.ResetDamagedGrant(zed.Grant.ID, r); !errors.Is(err, vault.ErrConflict) {
		t.Errorf("ResetDamagedGrant(healthy) = %v, want ErrConflict", err)
	}
	err := vault.RawUpdate(db, func(btx kv.Tx) error {
		b := btx.Bucket(vault.BucketGrants)
		raw := string(b.Get([]byte(amy.Grant.ID)))
		i := strings.Index(raw, `"sealed_refresh":"`) + len(`"sealed_refresh":"`) + 10
		flipped := []byte(raw)
		flipBase64(flipped[i : i+8])
		return b.Put([]byte(amy.Grant.ID), flipped)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := db.ResetDamagedGrant(amy.Grant.ID, r)
	if err != nil || !out.Changed || out.Grant.State != vault.GrantNeedsReconsent || out.Notices != 1 || out.Link.Purpose != vault.PurposeReconsent {
		t.Fatalf("ResetDamagedGrant = %+v, %v; want needs_reconsent and one notice with a re-consent link", out, err)
	}
	if found, err := db.FindDamaged(); err != nil || len(found) != 0 {
		t.Errorf("FindDamaged after the reset = %+v, %v", found, err)
	}
	if n := auditCount(t, db, vault.AuditDamagedReset, amy.Grant.ID); n != 1 {
		t.Errorf("%d %s audit events, want 1", n, vault.AuditDamagedReset)
	}
	w, err := db.Watch(amy.Started[0].ID)
	if err != nil || w.State != vault.WatchSuspended {
		t.Errorf("amy's watch after the reset = %+v, %v; want suspended", w.Watch, err)
	}
	rows, err := db.ListOutbox(vault.OutboxPending, 0)
	if err != nil {
		t.Fatal(err)
	}
	var link string
	for _, row := range rows {
		if row.Kind == vault.NoticeReconsent && row.UserID == "amy" {
			v, err := db.OpenOutboxSecret(row)
			if err != nil {
				t.Fatal(err)
			}
			link = v.Reveal()
		}
	}
	token := strings.TrimPrefix(link, r.LinkPrefix)
	if token == link || token == "" {
		t.Fatalf("no re-consent link queued to amy (%q)", link)
	}
	e, err := db.Link(vault.HashLinkToken(token))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.CommitConsent(vault.Consent{LinkHash: e.Hash, LinkID: e.ID, UserID: "amy", Provider: "x", Subject: "sub-amy",
		Scopes: []string{"tweet.read", "users.read", "offline.access"}, AccessExpiry: time.Now().Add(time.Hour),
		Tokens: vault.Tokens{Refresh: secret.NewRefreshToken("rt-amy-2"), Access: secret.NewAccessToken("at-amy-2")}})
	if err != nil {
		t.Fatalf("CommitConsent through the reset's link = %v", err)
	}
	if _, tok, err := db.GrantTokens(amy.Grant.ID); err != nil || tok.Refresh.Reveal() != "rt-amy-2" {
		t.Errorf("GrantTokens after the new consent = %v", err)
	}
	if w, err := db.Watch(amy.Started[0].ID); err != nil || w.State != vault.WatchActive {
		t.Errorf("amy's watch after the new consent = %+v, %v; want active", w.Watch, err)
	}

	// A record that does not decode says nothing of whose it is: delete it.
	err = vault.RawUpdate(db, func(btx kv.Tx) error {
		return btx.Bucket(vault.BucketGrants).Put([]byte(zed.Grant.ID), []byte("\xff"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ResetDamagedGrant(zed.Grant.ID, r); !errors.Is(err, vault.ErrConflict) || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("ResetDamagedGrant(undecodable) = %v, want ErrConflict saying to delete it", err)
	}
	if _, err := db.DeleteDamaged(vault.KindGrant, zed.Grant.ID, "uid:0"); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecordsTakesInWhatReadersSkip: DamagedRecords, the view of
// status, users and metrics, never walks every record (FindDamaged's
// walk, counted at its failpoint): a record damaged after the last walk
// is in it once a reader has skipped it, recorded with the time and
// audited once; repaired behind the register's back it is forgotten, and
// damaged again it is noted and recorded again. Before, DamagedRecords
// returned the register as the last walk left it: a record damaged since
// was missing until the next walk.
func TestDamagedRecordsTakesInWhatReadersSkip(t *testing.T) {
	walks := 0
	clock := vaulttest.NewClock(vaulttest.T0)
	master, _ := vaulttest.NewMaster(t)
	path := filepath.Join(t.TempDir(), "tagwatch.db")
	db, err := vault.Open(vault.Options{Path: path, Master: master, Create: true, Now: clock.Now, Logger: vaulttest.Quiet(),
		Rules: vaulttest.StubRules{}, Failpoint: func(name string) {
			if name == vault.FailpointDamagedWalk {
				walks++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	amy := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy"}).Started[0].ID
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed"})
	if found, err := db.FindDamaged(); err != nil || len(found) != 0 {
		t.Fatalf("FindDamaged() = %+v, %v; want none", found, err)
	}
	brace := []byte(`{"id":"` + amy + `","user_id"`)
	damaged := append([]byte{0xff}, brace[1:]...)
	registered := func(when string, want int) {
		t.Helper()
		rs, err := db.DamagedRecords()
		if err != nil || len(rs) != want || want == 1 && (rs[0].Kind != vault.KindWatch || rs[0].ID != amy || rs[0].UserID != "amy" ||
			!rs[0].FirstSeen.Equal(clock.Now())) {
			t.Fatalf("DamagedRecords() %s = %+v, %v; want %d (amy's watch, first seen %s)", when, rs, err, want, clock.Now())
		}
	}
	skip := func() {
		t.Helper()
		ws, err := db.ListWatches("")
		if err != nil || len(ws) != 1 {
			t.Fatalf("ListWatches() = %d watches, %v; want zed's only", len(ws), err)
		}
	}

	vaulttest.Damage(t, path, brace, vaulttest.OverwriteFirst(0xff))
	registered("before a reader met the damaged watch", 0)
	skip()
	registered("after ListWatches skipped it", 1)
	clock.Advance(time.Minute)
	skip()
	if rs, err := db.DamagedRecords(); err != nil || len(rs) != 1 || !rs[0].FirstSeen.Equal(vaulttest.T0) {
		t.Errorf("DamagedRecords() again = %+v, %v; want first seen %s kept", rs, err, vaulttest.T0)
	}
	if n := auditCount(t, db, vault.AuditRecordDamaged, amy); n != 1 {
		t.Errorf("%d %s events, want 1", n, vault.AuditRecordDamaged)
	}

	vaulttest.Damage(t, path, damaged, vaulttest.OverwriteFirst('{'))
	registered("after the repair", 0)
	vaulttest.Damage(t, path, brace, vaulttest.OverwriteFirst(0xff))
	skip()
	registered("damaged again", 1)
	if walks != 1 {
		t.Errorf("%d walks of every record, want 1 (FindDamaged's)", walks)
	}
	vaulttest.Damage(t, path, damaged, vaulttest.OverwriteFirst('{'))
	registered("after the second repair", 0)
	if err := db.CheckConsistency(); err != nil {
		t.Errorf("CheckConsistency() = %v", err)
	}
}
