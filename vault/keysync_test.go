package vault

import (
	"context"
	"testing"

	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/seal"
)

// TestKeyRotationSeenByOtherDaemons: two daemons on one PostgreSQL store;
// one rotates the data key (records re-sealed, the old key retired). The
// other, which opened the store before, reads every token at once and
// seals new ones under the new key, with no restart; and a grant it
// sealed before the rotation is found by the rotation's re-seal.
func TestKeyRotationSeenByOtherDaemons(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	m, _, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	open := func() *DB {
		e, err := pgkv.Open(context.Background(), pgkv.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		db, err := Open(Options{Engine: e, Master: m, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	before := putGrant(t, b, "u1", "refresh-1", "access-1")
	if _, err := a.RotateDataKey("test", 10); err != nil {
		t.Fatal(err)
	}
	st, err := a.KeyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 {
		t.Fatalf("after the rotation A's keyring holds %d keys, want 1 (the old retired)", len(st.Keys))
	}
	_, tok, err := b.GrantTokens(before.ID)
	if err != nil {
		t.Fatalf("B reads a grant A re-sealed under the new key: %v", err)
	}
	if tok.Refresh.Reveal() != "refresh-1" {
		t.Fatalf("B read the wrong refresh token")
	}
	after := putGrant(t, b, "u2", "refresh-2", "access-2")
	if _, tok, err := a.GrantTokens(after.ID); err != nil || tok.Access.Reveal() != "access-2" {
		t.Fatalf("A reads a grant B sealed after the rotation: %v", err)
	}
	bst, err := b.KeyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if bst.Active != st.Active {
		t.Errorf("B's active key = %d, A's = %d", bst.Active, st.Active)
	}
}
