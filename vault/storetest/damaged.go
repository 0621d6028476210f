package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
)

// testDamaged: one damaged record is isolated, reported once and
// repaired by deleting it, while the other user keeps working.
func testDamaged(t *testing.T, s Backend) {
	amy := enroll(t, s, "amy", spec1)
	zed := enroll(t, s, "zed", spec2)
	amyW, zedW := amy.Started[0].ID, zed.Started[0].ID
	runnable := func() []string {
		t.Helper()
		var ids []string
		if err := s.RunnableWatches(func(w vault.WatchWithCursor) error { ids = append(ids, w.ID); return nil }); err != nil {
			t.Fatalf("RunnableWatches = %v", err)
		}
		return ids
	}
	audited := func(kind, id string) int {
		t.Helper()
		n := 0
		if err := s.AuditTrail(0, func(ev vault.AuditEvent) error {
			if ev.Kind == kind && strings.Contains(ev.Detail, `"`+id+`"`) {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}

	s.Damage(t, vault.KindWatch, amyW)
	first := s.Now()
	found, err := s.FindDamaged()
	if err != nil || len(found) != 1 || found[0].Kind != vault.KindWatch || found[0].ID != amyW || !found[0].FirstSeen.Equal(first) ||
		found[0].UserID != "amy" {
		t.Fatalf("FindDamaged = %+v, %v; want watch %s of amy, first seen %s", found, err, amyW, first)
	}
	s.Advance(time.Minute)
	if again, err := s.FindDamaged(); err != nil || len(again) != 1 || !again[0].FirstSeen.Equal(first) {
		t.Errorf("FindDamaged again = %+v, %v; want the first time kept", again, err)
	}
	if reg, err := s.DamagedRecords(); err != nil || len(reg) != 1 || reg[0].ID != amyW {
		t.Errorf("DamagedRecords = %+v, %v", reg, err)
	}
	if n := audited(vault.AuditRecordDamaged, amyW); n != 1 {
		t.Errorf("%d %s entries for watch %s, want 1", n, vault.AuditRecordDamaged, amyW)
	}
	var de *vault.DamagedError
	if _, err := s.Watch(amyW); !errors.Is(err, vault.ErrDamaged) || !errors.As(err, &de) || de.Kind != vault.KindWatch || de.ID != amyW {
		t.Errorf("Watch(damaged) = %v, want a *DamagedError naming it", err)
	}
	if ids := runnable(); !slices.Equal(ids, []string{zedW}) {
		t.Errorf("RunnableWatches = %v, want zed's %s only", ids, zedW)
	}
	if ws, err := s.ListWatches(""); err != nil || len(ws) != 1 {
		t.Errorf("ListWatches = %d watches, %v; want zed's", len(ws), err)
	}
	if _, err := s.CommitRun(vault.RunCommit{WatchID: zedW, Posts: []vault.Post{{ID: "7", Text: "t"}}}); err != nil {
		t.Errorf("CommitRun(zed) = %v", err)
	}

	if _, err := s.DeleteDamaged(vault.KindWatch, zedW, "storetest"); !errors.Is(err, vault.ErrConflict) {
		t.Errorf("DeleteDamaged(healthy watch) = %v, want ErrConflict", err)
	}
	if _, err := s.DeleteDamaged(vault.KindWatch, amyW, "storetest"); err != nil {
		t.Fatalf("DeleteDamaged(watch) = %v", err)
	}
	if _, err := s.Watch(amyW); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Watch(deleted) = %v, want ErrNotFound", err)
	}
	if n := audited(vault.AuditDamagedDeleted, amyW); n != 1 {
		t.Errorf("%d %s entries, want 1", n, vault.AuditDamagedDeleted)
	}
	if found, err := s.FindDamaged(); err != nil || len(found) != 0 {
		t.Errorf("FindDamaged after the repair = %+v, %v", found, err)
	}

	// A damaged grant: its watches do not run; deleting it suspends them
	// until a new consent.
	s.Damage(t, vault.KindGrant, zed.Grant.ID)
	if ids := runnable(); len(ids) != 0 {
		t.Errorf("RunnableWatches with zed's grant damaged = %v, want none", ids)
	}
	if _, err := s.UserGrant("zed", "x"); !errors.Is(err, vault.ErrDamaged) {
		t.Errorf("UserGrant(damaged) = %v, want ErrDamaged", err)
	}
	if gs, err := s.UserGrants("zed"); err != nil || len(gs) != 0 {
		t.Errorf("UserGrants(zed) = %d grants, %v; want zed's damaged one left out", len(gs), err)
	}
	if gs, err := s.ListGrants(); err != nil || slices.ContainsFunc(gs, func(g vault.Grant) bool { return g.ID == zed.Grant.ID }) {
		t.Errorf("ListGrants = %d grants, %v; want zed's damaged one left out", len(gs), err)
	}
	if dg, err := s.DamagedGrants(); err != nil || len(dg) != 1 || dg[0].ID != zed.Grant.ID || dg[0].UserID != "zed" ||
		dg[0].Provider != "x" || dg[0].Problem == "" {
		t.Errorf("DamagedGrants = %+v, %v; want zed's grant %s at x, with what is wrong", dg, err, zed.Grant.ID)
	}
	if _, err := s.DeleteDamaged(vault.KindGrant, zed.Grant.ID, "storetest"); err != nil {
		t.Fatalf("DeleteDamaged(grant) = %v", err)
	}
	w, err := s.Watch(zedW)
	if err != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendNeedsReconsent {
		t.Errorf("zed's watch after its grant's deletion = %+v, %v; want suspended needs_reconsent", w.Watch, err)
	}
	if _, err := s.CommitConsent(consentFor(s, link(t, s, "zed", spec2), "sub-zed", "rt-zed-2")); err != nil {
		t.Fatalf("CommitConsent(zed again) = %v", err)
	}
	if ids := runnable(); !slices.Equal(ids, []string{zedW}) {
		t.Errorf("RunnableWatches after zed's new consent = %v, want %s", ids, zedW)
	}
}
