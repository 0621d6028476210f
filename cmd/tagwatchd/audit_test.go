package main

import (
	"context"
	"fmt"
	"testing"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
)

// TestStatusAudit: the socket's audit query over a real vault, the newest
// events by default for tagwatchctl audit.
func TestStatusAudit(t *testing.T) {
	db := vaulttest.Open(t)
	var first, last uint64
	if err := db.Update(func(tx *vault.Tx) error {
		for i := range 25 {
			if err := tx.Audit(vault.AuditEvent{Kind: "test", Detail: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *vault.Tx) error {
		return tx.AuditTrail(0, func(e vault.AuditEvent) error {
			if first == 0 {
				first = e.Seq
			}
			last = e.Seq
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	o := &operator{d: &daemon{db: db}}
	for _, c := range []struct {
		q           statusapi.AuditQuery
		n           int
		first, last uint64
	}{
		{statusapi.AuditQuery{Limit: 10, Newest: true}, 10, last - 9, last},
		{statusapi.AuditQuery{Limit: 10}, 10, first, first + 9},
		{statusapi.AuditQuery{Limit: 7, Newest: true, Before: last - 9}, 7, last - 16, last - 10},
		{statusapi.AuditQuery{Limit: 5, After: last - 3}, 3, last - 2, last},
		{statusapi.AuditQuery{Limit: 1000, Newest: true}, int(last - first + 1), first, last},
		{statusapi.AuditQuery{Limit: 3, Newest: true, After: first, Before: first + 3}, 2, first + 1, first + 2},
	} {
		evs, err := o.Audit(context.Background(), c.q)
		if err != nil || len(evs) != c.n || evs[0].Seq != c.first || evs[len(evs)-1].Seq != c.last {
			t.Errorf("Audit(%+v) = %d events, %v; want %d from %d to %d", c.q, len(evs), err, c.n, c.first, c.last)
			continue
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Seq != evs[i-1].Seq+1 {
				t.Errorf("Audit(%+v) = not oldest first, in sequence: %d after %d", c.q, evs[i].Seq, evs[i-1].Seq)
			}
		}
	}
}
