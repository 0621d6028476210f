package vault_test

import (
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/kv"
)

// Damage puts 0xff over the first byte of the record's JSON, as C10's
// backup copy has it.
func (b bboltBackend) Damage(t *testing.T, kind, id string) {
	t.Helper()
	bucket := map[string][]byte{vault.KindWatch: vault.BucketWatches, vault.KindGrant: vault.BucketGrants}[kind]
	if bucket == nil {
		t.Fatalf("Damage: no bucket for kind %q", kind)
	}
	err := vault.RawUpdate(b.DB, func(btx kv.Tx) error {
		raw := append([]byte(nil), btx.Bucket(bucket).Get([]byte(id))...)
		if len(raw) == 0 {
			t.Fatalf("Damage: no %s %q", kind, id)
		}
		raw[0] = 0xff
		return btx.Bucket(bucket).Put([]byte(id), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
}
