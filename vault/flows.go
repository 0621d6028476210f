package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tagwatch/vault/seal"
)

// Bounds of the one-time flow state PutFlow stores.
const (
	// MaxFlowKey is the longest flow key, in bytes.
	MaxFlowKey = 128
	// MaxFlowValue is the largest flow value, in bytes (before sealing).
	MaxFlowValue = 64 << 10
)

// flowAD binds a sealed flow state to its key: a value copied under
// another key does not open.
func flowAD(key string) seal.AD { return seal.AD{Kind: "flow", ID: key, Field: "state"} }

// checkFlowKey accepts a key of 1 to MaxFlowKey characters among A-Z,
// a-z, 0-9, '-' and '_' (a hash in hex, as webpage.FlowStore makes).
func checkFlowKey(key string) error {
	if key == "" || len(key) > MaxFlowKey {
		return fmt.Errorf("vault: a flow key has 1 to %d characters, not %d", MaxFlowKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("vault: flow key has character %q at %d: only A-Z, a-z, 0-9, - and _", c, i)
		}
	}
	return nil
}

// PutFlow stores value, the one-time state of a flow in progress (a
// consent or a sign-in between its authorization request and its
// callback: the PKCE code_verifier, the nonce, ...), under key until
// expires, in the store's kv.Cluster: shared by every daemon on the same
// store, so that the flow can finish on any of them. value is sealed
// with the vault's keyring (AES-256-GCM, vault/seal), bound to key: the
// store never holds it in the clear. A key already there is replaced.
// Errors: a key that is not 1 to MaxFlowKey characters of A-Z, a-z,
// 0-9, '-', '_'; a value longer than MaxFlowValue; the cluster's (a lost
// connection). None holds the value.
//
// webpage.FlowStore keeps its flows here (*DB is a webpage.FlowBackend).
func (db *DB) PutFlow(ctx context.Context, key string, value []byte, expires time.Time) error {
	if err := checkFlowKey(key); err != nil {
		return err
	}
	if len(value) > MaxFlowValue {
		return fmt.Errorf("vault: flow state of %d bytes is longer than %d", len(value), MaxFlowValue)
	}
	db.keyMu.RLock()
	env, err := db.kr.Load().Seal(flowAD(key), value)
	db.keyMu.RUnlock()
	if err != nil {
		return fmt.Errorf("vault: seal flow state: %w", err)
	}
	if err := db.cluster.PutFlow(ctx, key, env, expires); err != nil {
		return fmt.Errorf("vault: store flow state: %w", err)
	}
	return nil
}

// ErrFlowDamaged means a flow state taken from the store does not open
// with the keyring: altered, stored under another key, or sealed with a
// data key this daemon does not hold. It is spent all the same.
var ErrFlowDamaged = errors.New("vault: flow state does not open")

// TakeFlow returns the flow state under key (opened) and deletes it in
// the same atomic step (kv.Cluster.TakeFlow): of several daemons taking
// one key at once, exactly one gets it. ok is false for a key never put,
// taken, or expired (the store's clock). Errors: a malformed key (as
// PutFlow); the cluster's; ErrFlowDamaged (wrapping seal's error) for a
// state that does not open, which is then gone.
func (db *DB) TakeFlow(ctx context.Context, key string) (value []byte, ok bool, err error) {
	if err := checkFlowKey(key); err != nil {
		return nil, false, err
	}
	env, ok, err := db.cluster.TakeFlow(ctx, key)
	if err != nil {
		return nil, false, fmt.Errorf("vault: take flow state: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	db.keyMu.RLock()
	value, err = db.kr.Load().Open(flowAD(key), env)
	db.keyMu.RUnlock()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrFlowDamaged, err)
	}
	return value, true, nil
}
