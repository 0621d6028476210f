package vault

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tagwatch/vault/kv"
)

// The buckets a vault's schema requires, and what happens when one is
// missing.
//
// A vault of schema version v holds the meta bucket and every bucket that
// migrations[0..v-1] create (requiredBuckets). The domain code reads them
// without looking for nil, because Open refuses a store that lacks one
// (a *BadFileError for a file, ErrMissingBucket either way) and no code
// of the vault deletes one. A store can still lose one under an open
// vault: the file replaced or rewritten while the daemon has it open
// (bbolt reads its header again at every transaction), rows deleted by
// hand in PostgreSQL. So every transaction runs on a schemaTx, which
// hands out a missing required bucket as one that holds nothing and
// refuses writes, and then fails the transaction (an Update rolls back)
// with an error naming the bucket. That is what bbolt did before the
// vault moved onto vault/kv: its nil *Bucket panicked inside bbolt and
// contained turned the panic into a *BadFileError.
//
// The buckets created on first use (watch_seen, rate_windows, damaged)
// are not required: a missing one is nil, and their readers treat it as
// empty.

// ErrMissingBucket means the store lacks a bucket its schema requires: a
// vault file damaged, replaced or edited by hand, or a PostgreSQL store
// whose rows were deleted. Open refuses such a store, and a transaction
// that meets one under an open vault fails; nothing is written either
// way. For a file the error is a *BadFileError (errors.Is(err,
// ErrBadFile) holds too).
var ErrMissingBucket = errors.New("vault: a bucket of the vault is missing")

// migrationBuckets[i] are the buckets migrations[i] creates
// (TestRequiredBucketsMatchMigrations runs each migration to check).
var migrationBuckets = [][][]byte{
	// 0 -> 1: the first layout.
	{bucketUsers, bucketGrants, bucketUserGrants, bucketEnrollments, bucketWatches, bucketUserWatches,
		bucketCursors, bucketOutbox, bucketOutboxDue, bucketAudit, bucketRevocations},
	// 1 -> 2: the sign-in index.
	{bucketSignIns},
}

// requiredBuckets returns the buckets a vault of schema version holds:
// the meta bucket and those the migrations up to version create.
func requiredBuckets(version int) [][]byte {
	out := [][]byte{bucketMeta}
	for _, bs := range migrationBuckets[:max(0, min(version, len(migrationBuckets)))] {
		out = append(out, bs...)
	}
	return out
}

// missingBuckets returns the names of the buckets a vault of schema
// version requires that tx does not hold, in requiredBuckets order.
func missingBuckets(tx kv.Tx, version int) []string {
	var missing []string
	for _, name := range requiredBuckets(version) {
		if tx.Bucket(name) == nil {
			missing = append(missing, string(name))
		}
	}
	return missing
}

// bucketList names buckets for a message: `the bucket "users"`, `the
// buckets "users", "grants"`.
func bucketList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	if len(names) == 1 {
		return "the bucket " + quoted[0]
	}
	return "the buckets " + strings.Join(quoted, ", ")
}

// missingAtOpen is Open's refusal of a store that lacks the buckets
// names, which its schema version requires: a *BadFileError for the
// file, ErrMissingBucket for an engine (Open names the engine).
func (db *DB) missingAtOpen(names []string, version int) error {
	if db.path != "" {
		return &BadFileError{Path: db.path, Err: ErrMissingBucket, Hint: hintRestore,
			Found: fmt.Sprintf("lacks %s, which its schema version %d requires", bucketList(names), version)}
	}
	return fmt.Errorf("%w: it lacks %s, which its schema version %d requires; restore the vault from a backup (tagwatchd has changed nothing)",
		ErrMissingBucket, bucketList(names), version)
}

// missingUnderOpen is the error of a transaction that met the missing
// required buckets names under the open vault.
func (db *DB) missingUnderOpen(names []string) error {
	if db.path != "" {
		return &BadFileError{Path: db.path, Err: ErrMissingBucket, Hint: hintRunning,
			Found: fmt.Sprintf("lacks %s since it was opened: the file was replaced or changed under the open vault", bucketList(names))}
	}
	return fmt.Errorf("%w in %s: %s, there when the vault was opened, is gone (deleted by hand?); stop every tagwatchd on it and restore the vault from a backup",
		ErrMissingBucket, db.name, bucketList(names))
}

// schemaTx is the engine's transaction as the vault's transactions see
// it: Bucket hands out a missing required bucket (of this build's
// SchemaVersion: an open vault is at it) as absentBucket and notes it;
// onSchema then fails the transaction. Optional buckets come as the
// engine gives them (nil when missing).
type schemaTx struct {
	kv.Tx
	missing []string
}

func (t *schemaTx) Bucket(name []byte) kv.Bucket {
	if b := t.Tx.Bucket(name); b != nil {
		return b
	}
	if !slices.ContainsFunc(requiredBuckets(SchemaVersion), func(r []byte) bool { return bytes.Equal(r, name) }) {
		return nil
	}
	if !slices.Contains(t.missing, string(name)) {
		t.missing = append(t.missing, string(name))
	}
	return absentBucket{name: string(name)}
}

// engineTx returns the engine's own transaction under tx (for what the
// engine implements beyond kv.Tx: kv.Checker).
func engineTx(tx kv.Tx) kv.Tx {
	if st, ok := tx.(*schemaTx); ok {
		return st.Tx
	}
	return tx
}

// onSchema runs fn on etx seen as a schemaTx. When fn met a missing
// required bucket, the transaction fails with the error naming it,
// whatever fn returned (an Update then rolls back).
func (db *DB) onSchema(etx kv.Tx, fn func(kv.Tx) error) error {
	st := &schemaTx{Tx: etx}
	err := fn(st)
	if len(st.missing) > 0 {
		return db.missingUnderOpen(st.missing)
	}
	return err
}

// engineView runs fn in a read transaction of the engine as View does
// (contained, on a schemaTx) without taking keyMu: for key management,
// which holds it already.
func (db *DB) engineView(fn func(kv.Tx) error) error {
	return contained(db.name, hintRunning, func() error {
		return db.engine.View(func(etx kv.Tx) error { return db.onSchema(etx, fn) })
	})
}

// engineUpdate is engineView's read-write transaction.
func (db *DB) engineUpdate(fn func(kv.Tx) error) error {
	return contained(db.name, hintRunning, func() error {
		return db.engine.Update(func(etx kv.Tx) error { return db.onSchema(etx, fn) })
	})
}

// absentBucket stands for a missing required bucket: it holds nothing
// and refuses writes (the transaction fails anyway: onSchema).
type absentBucket struct{ name string }

func (b absentBucket) err() error { return fmt.Errorf("%w: %q", ErrMissingBucket, b.name) }

func (absentBucket) Get([]byte) []byte                     { return nil }
func (b absentBucket) Put(_, _ []byte) error               { return b.err() }
func (b absentBucket) Delete([]byte) error                 { return b.err() }
func (b absentBucket) Cursor() kv.Cursor                   { return absentCursor{b} }
func (absentBucket) ForEach(func(k, v []byte) error) error { return nil }
func (b absentBucket) NextSequence() (uint64, error)       { return 0, b.err() }

// absentCursor walks an absentBucket: there is nothing.
type absentCursor struct{ b absentBucket }

func (absentCursor) First() ([]byte, []byte)      { return nil, nil }
func (absentCursor) Last() ([]byte, []byte)       { return nil, nil }
func (absentCursor) Seek([]byte) ([]byte, []byte) { return nil, nil }
func (absentCursor) Next() ([]byte, []byte)       { return nil, nil }
func (absentCursor) Prev() ([]byte, []byte)       { return nil, nil }
func (c absentCursor) Delete() error              { return c.b.err() }
