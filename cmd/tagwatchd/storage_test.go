package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault/pgtest"
)

// TestServiceOnPostgres: with [storage] engine = "postgres", the daemon
// keeps its vault in a real PostgreSQL database: a first start creates
// it, an enrollment, refreshes and a run are stored there, and a second
// daemon process life finds them (nothing in a bbolt file).
func TestServiceOnPostgres(t *testing.T) {
	c := pgtest.Start(t)
	db := c.CreateDB(t)
	s := newSvc(t, "\n[storage]\nengine = \"postgres\"\ndsn = \""+c.DSN(db)+"\"\n", false)
	s.start(200 * time.Millisecond)
	er := s.enrollUser("ada")
	var grants []statusapi.Grant
	s.ctlJSON(&grants, "grants")
	if len(grants) != 1 || grants[0].State != "active" || grants[0].UserID != "ada" {
		t.Fatalf("grants after enrollment = %+v", grants)
	}
	g := grants[0]
	time.Sleep(1600 * time.Millisecond)
	if _, err := s.op.d.renew.Source(g.ID).Token(context.Background()); err != nil {
		t.Fatalf("token after a refresh: %v", err)
	}
	if s.op.d.db.Path() != "" && !strings.Contains(s.op.d.db.Path(), "postgres") {
		t.Errorf("the vault is %q, want PostgreSQL", s.op.d.db.Path())
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	s.start(200 * time.Millisecond)
	s.ctlJSON(&grants, "grants")
	if len(grants) != 1 || grants[0].ID != g.ID || grants[0].RefreshCount < 1 {
		t.Fatalf("grants after a restart = %+v, want %s kept with its refreshes", grants, g.ID)
	}
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 || ws[0].UserID != "ada" {
		t.Errorf("watches after a restart = %+v (enrollment %+v)", ws, er)
	}
}
