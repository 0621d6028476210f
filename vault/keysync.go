package vault

import (
	"bytes"
	"encoding/json"
	"fmt"

	"tagwatch/vault/kv"
	"tagwatch/vault/seal"
)

// sharedKeyring is the keyring in the meta bucket as this daemon last
// read it (raw) and opened it (kr).
type sharedKeyring struct {
	raw []byte
	kr  *seal.Keyring
}

// keyringFor returns the keyring a transaction on a shared store uses:
// the one stored now, read in the transaction itself. Another daemon may
// have rotated the data key (a new active key, records re-sealed, old
// keys retired) since this one opened the store; reading the keyring in
// every transaction makes this daemon use it at once, and makes
// PostgreSQL's SERIALIZABLE fence a seal under a key against that key's
// retirement (RetireUnusedKeys counts the keys in use and rewrites the
// keyring in one transaction). On a store one process owns, the keyring
// changes only through this DB (swapKeyring, under keyMu): db.kr.
// Errors: the keyring record unreadable, or the master key no longer
// opening it (rotated to another master key by another daemon: restart
// this one with the new key).
func (db *DB) keyringFor(etx kv.Tx) (*seal.Keyring, error) {
	if !db.shared {
		return db.kr.Load(), nil
	}
	// The engine's own transaction: a meta bucket gone is for the schema
	// check to report (buckets.go), not for this read to fail on.
	meta := engineTx(etx).Bucket(bucketMeta)
	if meta == nil {
		return db.kr.Load(), nil
	}
	raw := meta.Get(keyKeyring)
	if raw == nil {
		return db.kr.Load(), nil
	}
	if cur := db.krShared.Load(); cur != nil && bytes.Equal(cur.raw, raw) {
		return cur.kr, nil
	}
	var st seal.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("vault: the keyring in %s is corrupt: %w", db.name, err)
	}
	kr, err := seal.Open(db.master.Load(), st)
	if err != nil {
		return nil, fmt.Errorf("vault: the keyring another daemon wrote to %s does not open with this daemon's master key: %w", db.name, err)
	}
	db.krShared.Store(&sharedKeyring{raw: bytes.Clone(raw), kr: kr})
	db.kr.Store(kr)
	return kr, nil
}
