package vault

import (
	"regexp"
	"testing"
)

// countRE finds the counted things of an audit detail.
var countRE = regexp.MustCompile(`\b(\d+) (targets?|watch(?:es)?)\b`)

// TestAuditCountsInWords: the audit trail says one thing in the singular
// and many in the plural ("1 target", "1 watch started", "2 targets"):
// an enrollment, a watch added, a grant moved to needs_reconsent.
func TestAuditCountsInWords(t *testing.T) {
	db, _ := openConsentDB(t)
	g, _, _ := enrolled(t, db)
	if _, err := db.MarkNeedsReconsent(g.ID, Reconsent{Reason: "dead_grant", LinkPrefix: "https://tagwatch.example/enroll/", Actor: "renewal"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err := db.View(func(tx *Tx) error {
		return tx.AuditTrail(0, func(ev AuditEvent) error {
			for _, m := range countRE.FindAllStringSubmatch(ev.Detail, -1) {
				one := m[1] == "1"
				plural := m[2] == "targets" || m[2] == "watches"
				if one == plural {
					t.Errorf("audit %s: %q says %q", ev.Kind, ev.Detail, m[0])
				}
				seen[ev.Kind] = true
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{AuditEnrollmentUsed, AuditWatchAdded, AuditGrantState} {
		if !seen[kind] {
			t.Errorf("no %s audit entry counts targets or watches (seen: %v)", kind, seen)
		}
	}
}
