package vault_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/seal"
	"tagwatch/vault/storetest"
	"tagwatch/vault/vaulttest"
)

// pgBackend is *vault.DB on PostgreSQL (vault.Options.Engine: pgkv) as
// the contract suite drives it: a fresh database of one cluster per
// case, on a clock the suite moves, reopened with a new engine on the
// same database and master key. vaulttest checks the store's invariants
// after each case, as for bbolt.
type pgBackend struct {
	*vault.DB
	clock  *vaulttest.Clock
	master *seal.MasterKey
	dsn    string
	// engine is the engine the vault is open on now (the last one open
	// made), for Damage.
	engine **pgkv.Engine
}

func (b pgBackend) open() (kv.Engine, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: b.dsn})
	if err != nil {
		return nil, err
	}
	*b.engine = e
	return e, nil
}

func (b pgBackend) Advance(d time.Duration) { b.clock.Advance(d) }

// Peer opens a second vault on the same database, with an engine of its
// own and a holder of its own, on the same clock and master key: a
// second daemon.
func (b pgBackend) Peer(t *testing.T) (storetest.Peer, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: b.dsn})
	if err != nil {
		t.Fatalf("peer: %v", err)
	}
	db, err := vault.Open(vault.Options{Engine: e, Master: b.master, Now: b.clock.Now, Logger: vaulttest.Quiet(),
		Rules: storetest.Rules{}})
	if err != nil {
		t.Fatalf("peer: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, true
}

func (b pgBackend) Reopen(t *testing.T) storetest.Backend {
	t.Helper()
	if err := b.DB.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	b.DB = vaulttest.Open(t, vaulttest.Engine(b.open), vaulttest.Master(b.master), vaulttest.Now(b.clock.Now))
	return b
}

// Damage puts 0xff over the first byte of the record's stored value, in
// the kv table, as the bbolt backend's Damage does in the file.
func (b pgBackend) Damage(t *testing.T, kind, id string) {
	t.Helper()
	bucket := map[string][]byte{vault.KindWatch: vault.BucketWatches, vault.KindGrant: vault.BucketGrants}[kind]
	if bucket == nil {
		t.Fatalf("Damage: no bucket for kind %q", kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tag, err := (*b.engine).Pool().Exec(ctx, `UPDATE kv SET value = overlay(value placing '\xff'::bytea from 1 for 1)
WHERE bucket = $1 AND key = $2 AND length(value) > 0`, bucket, []byte(id))
	if err != nil {
		t.Fatalf("Damage: %v", err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("Damage: no %s %q", kind, id)
	}
}

// TestStoreContractPostgres runs the storage contract suite
// (vault/storetest) against the vault on PostgreSQL: one cluster for
// the whole suite, a database per case.
func TestStoreContractPostgres(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		b := pgBackend{clock: vaulttest.NewClock(vaulttest.T0), dsn: c.DSN(c.CreateDB(t)), engine: new(*pgkv.Engine)}
		b.master, _ = vaulttest.NewMaster(t)
		b.DB = vaulttest.Open(t, vaulttest.Engine(b.open), vaulttest.Master(b.master), vaulttest.Now(b.clock.Now))
		return b
	})
}

// TestOpenPostgres: vault.Open on an engine does what it does on a file,
// through kv, with nothing about a file: an empty database is no vault
// unless Create; a wrong master key writes nothing; a read-only open
// writes nothing and refuses an older schema; the schema 1 -> 2
// migration (the sign-in index) runs; Backup is refused (ErrNotFile);
// daemons creating the vault at once end with one keyring; messages
// name the engine.
func TestOpenPostgres(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	b := pgBackend{dsn: dsn, engine: new(*pgkv.Engine), clock: vaulttest.NewClock(vaulttest.T0)}
	b.master, _ = vaulttest.NewMaster(t)
	open := func(o vault.Options) (*vault.DB, error) {
		t.Helper()
		e, err := b.open()
		if err != nil {
			t.Fatal(err)
		}
		o.Engine = e
		if o.Master == nil {
			o.Master = b.master
		}
		o.Logger = vaulttest.Quiet()
		return vault.Open(o)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sum := func() string {
		t.Helper()
		var s *string
		if err := conn.QueryRow(ctx,
			`SELECT md5(string_agg(encode(bucket, 'hex') || ':' || encode(key, 'hex') || ':' || encode(value, 'hex'), ',' ORDER BY bucket, key)) FROM kv`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return ""
		}
		return *s
	}

	if _, err := open(vault.Options{}); !errors.Is(err, vault.ErrNoVault) || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("Open of an empty database without Create = %v, want ErrNoVault naming postgres", err)
	}
	if _, err := open(vault.Options{ReadOnly: true, Create: true}); !errors.Is(err, vault.ErrNoVault) {
		t.Errorf("Open(ReadOnly, Create) of an empty database = %v, want ErrNoVault", err)
	}

	// Daemons starting together on an empty database: one keyring.
	var dbs [3]*vault.DB
	var wg sync.WaitGroup
	for i := range dbs {
		e, err := b.open()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := vault.Open(vault.Options{Engine: e, Master: b.master, Create: true, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}})
			if err != nil {
				t.Errorf("concurrent Open(Create) %d = %v", i, err)
				return
			}
			dbs[i] = db
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var keys []string
	for _, db := range dbs {
		ks, err := db.KeyStatus()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fmt.Sprint(ks.Active, ks.Keys))
	}
	if keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("three daemons creating the vault at once hold keyrings %q, want one", keys)
	}
	db := dbs[0]
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed"})
	if db.Path() != "" {
		t.Errorf("Path() = %q, want none", db.Path())
	}
	if _, err := db.Backup(io.Discard); !errors.Is(err, vault.ErrNotFile) {
		t.Errorf("Backup() = %v, want ErrNotFile", err)
	}
	if err := db.CheckConsistency(); err != nil {
		t.Errorf("CheckConsistency() = %v", err)
	}
	for _, db := range dbs {
		db.Close()
	}

	// A wrong master key: refused before a byte is written.
	before := sum()
	other, _ := vaulttest.NewMaster(t)
	if _, err := open(vault.Options{Master: other}); !errors.Is(err, seal.ErrWrongMasterKey) {
		t.Errorf("Open with another master key = %v, want ErrWrongMasterKey", err)
	}
	if sum() != before {
		t.Errorf("a refused open changed the database")
	}

	// Schema 1 (no sign-in index): a read-only open refuses it and
	// writes nothing; a read-write open migrates it through kv.
	db, err = open(vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.RawUpdate(db, func(btx kv.Tx) error {
		if err := btx.DeleteBucket(vault.BucketSignIns); err != nil {
			return err
		}
		return btx.Bucket(vault.BucketMeta).Put(vault.KeySchema, binary.BigEndian.AppendUint64(nil, 1))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before = sum()
	if _, err := open(vault.Options{ReadOnly: true}); !errors.Is(err, vault.ErrOlderSchema) {
		t.Errorf("Open(ReadOnly) of schema 1 = %v, want ErrOlderSchema", err)
	}
	if sum() != before {
		t.Errorf("a refused read-only open changed the database")
	}
	db, err = open(vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.SchemaVersionOnDisk(); err != nil || v != vault.SchemaVersion {
		t.Errorf("schema after the migration = %d, %v; want %d", v, err, vault.SchemaVersion)
	}
	if u, err := db.UserBySignIn("x", "", "sub-zed"); err != nil || u.ID != "zed" {
		t.Errorf("UserBySignIn after the migration = %q, %v; want zed", u.ID, err)
	}
	db.Close()

	// Read-only: reads, never writes.
	before = sum()
	ro, err := open(vault.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.UserGrant("zed", "x"); err != nil {
		t.Errorf("UserGrant on a read-only vault = %v", err)
	}
	if err := ro.RecordAudit(vault.AuditEvent{Kind: "probe"}); err == nil {
		t.Errorf("a write on a read-only vault succeeded")
	}
	if _, err := ro.FindDamaged(); err != nil {
		t.Errorf("FindDamaged on a read-only vault = %v", err)
	}
	if err := ro.CheckConsistency(); err != nil {
		t.Errorf("CheckConsistency on a read-only vault = %v", err)
	}
	ro.Close()
	if sum() != before {
		t.Errorf("a read-only open changed the database")
	}

	// Buckets of something, but no keyring: never given one.
	if _, err := conn.Exec(ctx, `DELETE FROM kv WHERE bucket = 'meta'; DELETE FROM kv_buckets WHERE name = 'meta'`); err != nil {
		t.Fatal(err)
	}
	if _, err := open(vault.Options{Create: true}); !errors.Is(err, vault.ErrNoKeyring) {
		t.Errorf("Open(Create) of a database with records but no keyring = %v, want ErrNoKeyring", err)
	}
}
