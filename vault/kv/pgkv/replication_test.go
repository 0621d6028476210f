package pgkv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// TestRisk: which replication settings can lose an acknowledged commit
// at a failover (or stall commits), and which cannot.
func TestRisk(t *testing.T) {
	for _, c := range []struct {
		r    pgkv.Replication
		want string // "" for none
	}{
		{pgkv.Replication{SynchronousCommit: "on"}, ""},
		{pgkv.Replication{SynchronousCommit: "off"}, ""}, // no standby: nothing to fail over to
		{pgkv.Replication{SynchronousCommit: "on", Standbys: 1}, "synchronous_standby_names is empty"},
		{pgkv.Replication{SynchronousCommit: "local", SynchronousStandbyNames: "s1", Standbys: 1, SyncStandbys: 1}, "synchronous_commit is local"},
		{pgkv.Replication{SynchronousCommit: "remote_write", SynchronousStandbyNames: "s1", Standbys: 1, SyncStandbys: 1}, "synchronous_commit is remote_write"},
		{pgkv.Replication{SynchronousCommit: "on", SynchronousStandbyNames: "s1", Standbys: 1, SyncStandbys: 1}, ""},
		{pgkv.Replication{SynchronousCommit: "remote_apply", SynchronousStandbyNames: "FIRST 1 (s1, s2)", Standbys: 2, SyncStandbys: 1}, ""},
		{pgkv.Replication{SynchronousCommit: "on", SynchronousStandbyNames: "s1"}, "no synchronous standby is streaming"},
	} {
		got := c.r.Risk()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%+v.Risk() = %q, want %q", c.r, got, c.want)
		}
	}
}

// TestReadReplication: a real primary alone has no risk; with a streaming
// standby and asynchronous commits it has; with the standby named in
// synchronous_standby_names it has none again.
func TestReadReplication(t *testing.T) {
	c := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(c.CreateDB(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	read := func() pgkv.Replication {
		t.Helper()
		r, err := e.ReadReplication(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := read(); r.Standbys != 0 || r.Risk() != "" {
		t.Errorf("a primary alone: %+v, risk %q; want none", r, r.Risk())
	}
	c.StartStandby(t, "s1")
	var r pgkv.Replication
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = read(); r.Standbys == 1 {
			break
		}
	}
	if r.Standbys != 1 || !strings.Contains(r.Risk(), "synchronous_standby_names is empty") {
		t.Fatalf("with an asynchronous standby: %+v, risk %q", r, r.Risk())
	}
	if _, err := e.Pool().Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = 's1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pool().Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = read(); r.SyncStandbys == 1 {
			break
		}
	}
	if r.Risk() != "" {
		t.Errorf("with a synchronous standby: %+v, risk %q; want none", r, r.Risk())
	}
}
