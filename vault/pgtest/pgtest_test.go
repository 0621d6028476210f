package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster: a cluster starts on a unix socket, gives each test its own
// database, survives a crash-stop and a start with its data, and answers
// again (what the PostgreSQL restart test of the daemons relies on).
func TestCluster(t *testing.T) {
	c := Start(t)
	db := c.CreateDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	var listen string
	if err := conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses = %q, %v; want none (unix socket only)", listen, err)
	}
	if other := c.CreateDB(t); other == db {
		t.Errorf("CreateDB gave %s twice", db)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Errorf("a connection still answers after Stop")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	conn2, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var v int
	if err := conn2.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Errorf("after the restart: %d, %v; want the committed row 42", v, err)
	}
}
