package pgkv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/kvtest"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// open opens an engine on dsn, closed when t ends.
func open(t *testing.T, dsn string) *pgkv.Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestCluster: two engines on one database (two daemons) pass the
// contract of kv.Cluster, on the database's clock (Advance waits); and
// the engine's own parts of it, each on a database of one cluster.
func TestCluster(t *testing.T) {
	c := pgtest.Start(t)
	t.Run("contract", func(t *testing.T) {
		kvtest.RunCluster(t, func(t *testing.T) kvtest.Clusters {
			dsn := c.DSN(c.CreateDB(t))
			a, b := open(t, dsn), open(t, dsn)
			if kv.ClusterOf(a) == nil {
				t.Fatalf("kv.ClusterOf(pgkv engine) = nil, want the engine")
			}
			return kvtest.Clusters{A: a, B: b, Now: time.Now, Advance: time.Sleep}
		})
	})
	t.Run("migrate from version 1", func(t *testing.T) { testMigrateFromVersion1(t, c) })
	t.Run("flow sweep", func(t *testing.T) { testFlowSweep(t, c) })
	t.Run("dead daemons forgotten", func(t *testing.T) { testDaemonRetention(t, c) })
}

// testDaemonRetention: a daemon silent for kv.DaemonRetention (its
// heartbeat set back in the table, as a daemon killed long ago left it)
// is removed at another daemon's heartbeat; one silent for less stays,
// listed as not alive.
func testDaemonRetention(t *testing.T, c *pgtest.Cluster) {
	ctx := context.Background()
	e := open(t, c.DSN(c.CreateDB(t)))
	for _, id := range []string{"long-dead", "recently-dead", "live"} {
		if err := e.Heartbeat(ctx, kv.Daemon{ID: id, Host: "h", PID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Pool().Exec(ctx, `UPDATE kv_daemons SET heartbeat = now() - interval '61 minutes' WHERE id = 'long-dead';
UPDATE kv_daemons SET heartbeat = now() - interval '59 minutes' WHERE id = 'recently-dead'`); err != nil {
		t.Fatal(err)
	}
	if err := e.Heartbeat(ctx, kv.Daemon{ID: "live", Host: "h", PID: 1}); err != nil {
		t.Fatal(err)
	}
	ds, err := e.Daemons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if strings.Join(ids, ",") != "recently-dead,live" {
		t.Errorf("daemons after a heartbeat = %q, want recently-dead and live (long-dead silent for over %s)", ids, kv.DaemonRetention)
	}
	if alive, err := e.Alive(ctx, "recently-dead", time.Minute); err != nil || alive {
		t.Errorf("Alive(recently-dead) = %v, %v; want false", alive, err)
	}
}

// schemaV1 is the schema version 1 wrote, as that code wrote it.
const schemaV1 = `CREATE TABLE kv_schema (version int NOT NULL);
CREATE TABLE kv_buckets (name bytea PRIMARY KEY, seq bigint NOT NULL DEFAULT 0);
CREATE TABLE kv (bucket bytea NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (bucket, key));
INSERT INTO kv_schema (version) VALUES (1);
INSERT INTO kv_buckets (name, seq) VALUES ('\x6772616e7473', 7);
INSERT INTO kv (bucket, key, value) VALUES ('\x6772616e7473', '\x6731', '\x01');`

// testMigrateFromVersion1: a database of schema version 1 (buckets only)
// is brought to version 3 by three engines opening it at once (one
// migrates under the lock, the others find it done); its pairs and
// sequences are kept, and the cluster's tables work.
func testMigrateFromVersion1(t *testing.T, c *pgtest.Cluster) {
	dsn := c.DSN(c.CreateDB(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schemaV1); err != nil {
		t.Fatal(err)
	}
	engines := make([]*pgkv.Engine, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range engines {
		wg.Go(func() {
			engines[i], errs[i] = pgkv.Open(ctx, pgkv.Options{DSN: dsn})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d of a version-1 database = %v", i, err)
		}
		defer engines[i].Close()
	}
	var v, rows int
	if err := conn.QueryRow(ctx, "SELECT version, (SELECT count(*) FROM kv_schema) FROM kv_schema").Scan(&v, &rows); err != nil || v != 3 || rows != 1 {
		t.Fatalf("schema after Open = version %d in %d rows, %v; want version 3 in one row", v, rows, err)
	}
	var got []byte
	var seq uint64
	if err := engines[1].Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("grants"))
		if b == nil {
			return errors.New("bucket grants gone")
		}
		got = b.Get([]byte("g1"))
		var err error
		seq, err = b.NextSequence()
		return err
	}); err != nil || string(got) != "\x01" || seq != 8 {
		t.Fatalf("after the migration: g1 = %q, next sequence %d, %v; want \\x01 and 8 (kept)", got, seq, err)
	}
	if ok, err := engines[2].Claim(ctx, kv.Claim{Kind: "watch", ID: "w1", Round: 1, Holder: "d1", Lease: time.Minute}); !ok || err != nil {
		t.Fatalf("Claim after the migration = %v, %v; want true", ok, err)
	}
	// Opening a version-2 database changes nothing.
	e := open(t, dsn)
	if ok, err := e.Claim(ctx, kv.Claim{Kind: "watch", ID: "w1", Round: 1, Holder: "d2", Lease: time.Minute}); ok || err != nil {
		t.Fatalf("Claim of a held unit after reopening = %v, %v; want false (the claim kept)", ok, err)
	}
}

// testFlowSweep: expired flows nobody takes are deleted by later puts,
// and live ones are kept.
func testFlowSweep(t *testing.T, c *pgtest.Cluster) {
	e := open(t, c.DSN(c.CreateDB(t)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 100 {
		if err := e.PutFlow(ctx, fmt.Sprintf("old%d", i), []byte("o"), time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.PutFlow(ctx, "live", []byte("l"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Each put sweeps with probability 1/16: 400 puts miss with
	// probability (15/16)^400, about 6e-12.
	for i := range 400 {
		if err := e.PutFlow(ctx, "again", []byte(fmt.Sprint(i)), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	var expired, all int
	if err := e.Pool().QueryRow(ctx, "SELECT count(*) FILTER (WHERE expires <= now()), count(*) FROM kv_flows").Scan(&expired, &all); err != nil {
		t.Fatal(err)
	}
	if expired != 0 || all != 2 {
		t.Errorf("after 400 puts: %d expired flows of %d, want 0 of 2 (live, again)", expired, all)
	}
	if v, ok, err := e.TakeFlow(ctx, "live"); !ok || err != nil || string(v) != "l" {
		t.Errorf("TakeFlow(live) = %q, %v, %v; want l", v, ok, err)
	}
}

// TestSubscribeSurvivesRestart: a subscription outlives a crash and
// restart of PostgreSQL: it reconnects, calls reconnected, and hears
// what is published after; it ends when its context does, also while
// the server is down. A closed engine's Subscribe ends with
// kv.ErrClosed.
func TestSubscribeSurvivesRestart(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	e := open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []string
	heard := func(p string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if g == p {
				return true
			}
		}
		return false
	}
	var reconnects atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- e.Subscribe(ctx, "restart", func(p string) {
			mu.Lock()
			got = append(got, p)
			mu.Unlock()
		}, func() { reconnects.Add(1) })
	}()
	// publishUntil publishes p until the subscriber has heard it,
	// ignoring errors of a pool that is still finding its connections
	// dead.
	publishUntil := func(p string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var err error
		for time.Now().Before(deadline) {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err = e.Publish(pctx, "restart", p)
			pcancel()
			time.Sleep(50 * time.Millisecond)
			if heard(p) {
				return
			}
		}
		t.Fatalf("%q not heard in 30 s (last Publish: %v)", p, err)
	}
	publishUntil("before")
	if n := reconnects.Load(); n != 0 {
		t.Fatalf("reconnected called %d times before any restart, want 0", n)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a few failed reconnections
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for reconnects.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := reconnects.Load(); n != 1 {
		t.Fatalf("reconnected called %d times in 30 s after the restart, want 1", n)
	}
	publishUntil("after")

	// Down again, the context ends: Subscribe returns at once.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe after its context ended = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Subscribe did not return in 10 s after its context ended, the server down")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}

	e2 := open(t, dsn)
	e2.Close()
	if err := e2.Subscribe(context.Background(), "restart", func(string) {}, nil); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Subscribe on a closed engine = %v, want kv.ErrClosed", err)
	}
}
