package vault_test

import (
	"encoding/binary"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/vaulttest"
)

// TestSignInIndexMigration: a vault of schema 1 (no sign-in index) gets
// the index at the first read-write open, with an entry for every grant
// already stored, so its users can sign in by their grants' accounts.
func TestSignInIndexMigration(t *testing.T) {
	master, _ := vaulttest.NewMaster(t)
	db := vaulttest.Open(t, vaulttest.Master(master))
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed"})
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy", Provider: "corp", Subject: "amy-corp"})
	if err := vault.RawUpdate(db, func(btx kv.Tx) error {
		if err := btx.DeleteBucket(vault.BucketSignIns); err != nil {
			return err
		}
		return btx.Bucket(vault.BucketMeta).Put(vault.KeySchema, binary.BigEndian.AppendUint64(nil, 1))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UserBySignIn("x", "", "sub-zed"); err == nil {
		t.Fatal("UserBySignIn without the index = nil error, want one")
	}
	path := db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = vaulttest.Open(t, vaulttest.Path(path), vaulttest.Master(master))
	if v, err := db.SchemaVersionOnDisk(); err != nil || v != vault.SchemaVersion || v < 2 {
		t.Errorf("schema after the migration = %d, %v; want %d", v, err, vault.SchemaVersion)
	}
	for _, c := range []struct{ provider, subject, user string }{{"x", "sub-zed", "zed"}, {"corp", "amy-corp", "amy"}} {
		if u, err := db.UserBySignIn(c.provider, "", c.subject); err != nil || u.ID != c.user {
			t.Errorf("UserBySignIn(%s, %s) after the migration = %q, %v; want %s", c.provider, c.subject, u.ID, err, c.user)
		}
	}
}
