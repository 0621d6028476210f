package storetest

import (
	"errors"
	"strings"
	"testing"

	"tagwatch/vault"
)

func trail(t *testing.T, s Backend, after uint64) []vault.AuditEvent {
	t.Helper()
	var evs []vault.AuditEvent
	if err := s.AuditTrail(after, func(e vault.AuditEvent) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatalf("AuditTrail(%d) = %v", after, err)
	}
	return evs
}

// testAudit: changes append entries in their own transaction, numbered in
// order; a refused change appends nothing; entries carry no secret and no
// target; RecordAudit appends the rest.
func testAudit(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	evs := trail(t, s, 0)
	var kinds []string
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Errorf("audit entry %d has seq %d after %d, want increasing", i, e.Seq, evs[i-1].Seq)
		}
		kinds = append(kinds, e.Kind)
	}
	for _, k := range []string{vault.AuditEnrollmentCreated, vault.AuditWatchAdded, vault.AuditEnrollmentUsed, vault.AuditGrantStored} {
		if !strings.Contains(strings.Join(kinds, " "), k) {
			t.Errorf("audit after an enrollment = %v, want a %s entry", kinds, k)
		}
	}
	last := evs[len(evs)-1].Seq

	_, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{"refused"}, Schedule: "@daily", Targets: []string{"console:"}}}, "op")
	wantErr(t, "AddWatch(refused)", err, vault.ErrInvalid)
	_, _, err = s.ResumeWatch("nosuch", "op")
	wantErr(t, "ResumeWatch(nosuch)", err, vault.ErrNotFound)
	if got := trail(t, s, last); len(got) != 0 {
		t.Errorf("refused changes appended %+v, want nothing", got)
	}

	if _, _, err := s.PauseWatch(zed.Started[0].ID, "op-ann"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAudit(vault.AuditEvent{Kind: "status_request", Actor: "ann", Detail: "pause"}); err != nil {
		t.Fatalf("RecordAudit = %v", err)
	}
	got := trail(t, s, last)
	if len(got) != 2 || got[0].Kind != vault.AuditWatchPaused || got[0].Actor != "op-ann" || got[0].UserID != "zed" ||
		got[1].Kind != "status_request" || got[1].Seq <= got[0].Seq || !got[1].Time.Equal(s.Now()) {
		t.Errorf("AuditTrail after a pause and a request = %+v, want watch_paused by op-ann, then the request at now", got)
	}

	for _, e := range trail(t, s, 0) {
		for _, secretText := range []string{"rt-zed", "at-rt-zed", "mailto:", "zed@example.com"} {
			if strings.Contains(e.Detail, secretText) || strings.Contains(e.Actor, secretText) {
				t.Errorf("audit entry %d (%s) shows %q: %q", e.Seq, e.Kind, secretText, e.Detail)
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.AuditTrail(0, func(vault.AuditEvent) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("AuditTrail with a callback that stops = %v after %d entries, want its error after 1", err, n)
	}
}
