package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// TestStartChecksReplication: the daemon's start (openEngine, which the
// start, check-config and the offline doors share) on a PostgreSQL
// primary that streams to a real standby without waiting for it:
// storage.synchronous = "refuse" refuses with exit status 78 naming the
// key and the risk; "warn" opens and logs the risk. Once commits wait for
// the standby (synchronous_standby_names), "refuse" opens without a word.
func TestStartChecksReplication(t *testing.T) {
	c := pgtest.Start(t)
	db := c.CreateDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	probe, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	waitFor := func(what string, ok func(pgkv.Replication) bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			r, err := probe.ReadReplication(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok(r) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, r)
			}
		}
	}
	c.StartStandby(t, "s1")
	waitFor("the standby to stream", func(r pgkv.Replication) bool { return r.Standbys == 1 })

	open := func(policy string) (string, error) {
		t.Helper()
		cfg, err := config.Parse("tagwatch.toml", []byte("[storage]\nengine = \"postgres\"\ndsn = \""+c.DSN(db)+"\"\nsynchronous = \""+policy+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		var log syncBuffer
		e, err := openEngine(ctx, cfg, slog.New(slog.NewTextHandler(&log, nil)))
		if e != nil {
			e.Close()
		}
		return log.String(), err
	}
	_, err = open("refuse")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "storage.synchronous") ||
		!strings.Contains(err.Error(), "synchronous_standby_names is empty") {
		t.Errorf("start with an asynchronous standby and synchronous = \"refuse\" = %v, want exit 78 naming storage.synchronous and the risk", err)
	}
	log, err := open("warn")
	if err != nil || !strings.Contains(log, "commits are not safe from a failover") || !strings.Contains(log, "synchronous_standby_names is empty") {
		t.Errorf("start with synchronous = \"warn\" = %v, log %q; want it open and the risk logged", err, log)
	}

	if _, err := probe.Pool().Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = 's1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := probe.Pool().Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	waitFor("the standby to be synchronous", func(r pgkv.Replication) bool { return r.SyncStandbys == 1 })
	if log, err := open("refuse"); err != nil || strings.Contains(log, "not safe") {
		t.Errorf("start with a synchronous standby and synchronous = \"refuse\" = %v, log %q; want it open, silent", err, log)
	}
}
