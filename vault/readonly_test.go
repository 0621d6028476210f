package vault

import (
	"errors"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// A read-only open (check-config) reads, never writes: no migration, no
// audit entry, a shared lock that a running daemon's vault refuses.
func TestReadOnlyOpen(t *testing.T) {
	db, m, path := openNew(t)
	putGrant(t, db, "u1", "rt", "at")
	db.Close()
	before := fileSum(t, path)

	ro, err := Open(Options{Path: path, Master: m, ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(ReadOnly) = %v", err)
	}
	if g, err := ro.UserGrant("u1", "x"); err != nil || g.UserID != "u1" {
		t.Errorf("UserGrant on a read-only vault = %+v, %v", g, err)
	}
	if err := ro.RecordAudit(AuditEvent{Kind: "probe"}); err == nil {
		t.Errorf("a write on a read-only vault succeeded")
	}
	ro.Close()
	if fileSum(t, path) != before {
		t.Errorf("a read-only open changed the file")
	}

	rw, err := Open(Options{Path: path, Master: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: path, Master: m, ReadOnly: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("Open(ReadOnly) while the daemon holds the vault = %v, want ErrLocked", err)
	}
	// An older schema needs the daemon's migration, not a read-only open.
	rw.engine.Update(func(tx kv.Tx) error { return tx.Bucket(bucketMeta).Delete(keySchema) })
	rw.Close()
	before = fileSum(t, path)
	if _, err := Open(Options{Path: path, Master: m, ReadOnly: true}); !errors.Is(err, ErrOlderSchema) {
		t.Errorf("Open(ReadOnly) of schema 0 = %v, want ErrOlderSchema", err)
	}
	if fileSum(t, path) != before {
		t.Errorf("a refused read-only open changed the file")
	}
	if _, err := Open(Options{Path: path + ".missing", Master: m, ReadOnly: true, Create: true}); !errors.Is(err, ErrNoVault) {
		t.Errorf("Open(ReadOnly, Create) of a missing file = %v, want ErrNoVault", err)
	}
}
