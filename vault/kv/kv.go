// Package kv is the storage engine under the vault: named buckets of
// ordered key/value pairs, read and written in closure-scoped
// transactions. It is the whole of what the vault's domain code (package
// vault: records, indexes, rules, the consistency check) asks of its
// storage, so that one set of domain methods runs over every engine:
// bbolt (vault/kv/boltkv) today, PostgreSQL next.
//
// The shapes and the rules are bbolt's, because the vault was written
// against bbolt and an engine is correct exactly when the vault cannot
// tell it from bbolt (vault/kv/kvtest checks an engine against them):
//
//   - Keys are non-empty byte strings, ordered bytewise (bytes.Compare)
//     within a bucket. Values are byte strings, possibly empty.
//   - Byte slices an engine returns (Get, Cursor, ForEach) are valid only
//     until the transaction ends, and must not be modified: copy what is
//     kept. An engine may return slices that live longer (a PostgreSQL
//     engine copies rows anyway); callers may not rely on it.
//   - A byte slice passed to Put must stay unchanged until the
//     transaction ends (bbolt keeps it, uncopied, until commit).
//   - An empty value may read back as nil or as an empty slice (bbolt
//     returns nil for one written in the same transaction): presence of a
//     key with an empty value is read through a Cursor (Seek, then compare
//     the key), never from Get's nil.
//   - A Tx, and the Buckets and Cursors it hands out, belong to the one
//     goroutine running the closure, and are invalid after it returns.
//
// There are no nested buckets in the interface. A bbolt file edited by
// hand may hold some; its cursors then show a key with a nil value for
// each, which the vault skips.
package kv

import (
	"errors"
	"io"
)

// Errors an engine returns for misuse and for a closed engine, matched
// with errors.Is. Other errors (I/O, a lost connection, a failed commit)
// are the engine's own.
var (
	// ErrTxNotWritable: a write (Put, Delete, Cursor.Delete,
	// NextSequence, CreateBucketIfNotExists, DeleteBucket) in a read-only
	// transaction.
	ErrTxNotWritable = errors.New("kv: transaction not writable")
	// ErrBucketNotFound: DeleteBucket of a bucket that does not exist.
	ErrBucketNotFound = errors.New("kv: bucket not found")
	// ErrBucketNameRequired: a bucket name that is empty.
	ErrBucketNameRequired = errors.New("kv: bucket name required")
	// ErrKeyRequired: Put of an empty key.
	ErrKeyRequired = errors.New("kv: key required")
	// ErrIncompatibleValue: a key that names a nested bucket (only in a
	// bbolt file edited by hand) written or deleted as a value.
	ErrIncompatibleValue = errors.New("kv: key names a nested bucket, not a value")
	// ErrClosed: a transaction begun on an engine that was closed.
	ErrClosed = errors.New("kv: engine closed")
)

// Engine is an open store of buckets. Its methods are safe for concurrent
// use; the transactions they run follow the engine's isolation (bbolt:
// one writer at a time, readers see the last commit; see the engine).
type Engine interface {
	// View runs fn in a read-only transaction and returns fn's error as
	// is. Writes inside it fail with ErrTxNotWritable. Every engine runs
	// fn exactly once (a read is never retried), so fn may hand what it
	// reads to a callback of its caller.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed (durably)
	// when fn returns nil. When fn returns an error, or panics, nothing
	// fn wrote is kept (NextSequence included), and the error is
	// returned as is (the panic goes on). A commit that fails returns
	// the engine's error; nothing is kept then either. fn must not keep
	// the Tx, and must not call View or Update of the same engine (bbolt
	// deadlocks). bbolt runs fn exactly once; an engine that may run it
	// again (a retry after a serialization failure) must say so, and its
	// callers' closures must then reset what they set outside the Tx.
	Update(fn func(Tx) error) error
	// Batch runs fn as Update does, committed (durably) when fn returns
	// nil, except that the engine may commit it in one transaction with
	// other Batch calls running at the same time (group commit: bbolt
	// then syncs the file once for all of them). So fn may run more than
	// once even on bbolt: when another closure of the batch fails, the
	// others run again without it, and the closure that failed runs again
	// alone, for the error (or panic) its caller gets. fn must therefore
	// reset, at its top, everything it sets outside the Tx (the vault's
	// closures do: see Update). The closures of a batch run one
	// after another in its transaction, each seeing what those before it
	// wrote, as a sequence of Updates would. An error or a panic of fn is
	// its caller's alone, as from Update (nothing fn wrote is kept; the
	// others commit without it); a failed commit is returned to every
	// caller of the batch. An engine without group commit runs fn as
	// Update (pgkv).
	Batch(fn func(Tx) error) error
	// Close releases the engine. Transactions running meanwhile finish
	// first (bbolt waits for them).
	Close() error
}

// Tx is one transaction, valid only inside the closure that received it.
type Tx interface {
	// Bucket returns the named bucket, or nil when it does not exist.
	Bucket(name []byte) Bucket
	// CreateBucketIfNotExists returns the named bucket, creating it
	// empty when missing. Errors: ErrTxNotWritable, ErrBucketNameRequired.
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	// DeleteBucket removes the named bucket and everything in it.
	// Errors: ErrTxNotWritable, ErrBucketNotFound.
	DeleteBucket(name []byte) error
	// Writable reports whether this is a read-write transaction.
	Writable() bool
}

// Bucket is a set of key/value pairs in key order, valid only during the
// transaction that returned it.
type Bucket interface {
	// Get returns the value of key, or nil when key is absent (see the
	// package doc on empty values and on the slice's lifetime).
	Get(key []byte) []byte
	// Put sets key to value, replacing any value. Errors:
	// ErrTxNotWritable, ErrKeyRequired, the engine's size limits.
	Put(key, value []byte) error
	// Delete removes key; an absent key is not an error. Errors:
	// ErrTxNotWritable.
	Delete(key []byte) error
	// Cursor returns a new cursor over the bucket, not yet positioned.
	Cursor() Cursor
	// ForEach calls fn for every pair in key order; an error from fn
	// stops it and is returned as is. fn must not change the bucket.
	ForEach(fn func(k, v []byte) error) error
	// NextSequence increments the bucket's sequence and returns it: 1
	// the first time, then 2, 3, ...; it rolls back with the
	// transaction. Errors: ErrTxNotWritable.
	NextSequence() (uint64, error)
}

// Cursor walks a bucket's keys in order. Each method returns the key and
// value it moved to, or nil, nil when there is none there. After a
// method returned nil (past either end) only First, Last and Seek have a
// defined result.
type Cursor interface {
	// First moves to the first key.
	First() (k, v []byte)
	// Last moves to the last key.
	Last() (k, v []byte)
	// Seek moves to key, or to the first key after it when key is
	// absent; past the last key it returns nil, and Prev then moves to
	// the last key.
	Seek(key []byte) (k, v []byte)
	// Next moves to the following key.
	Next() (k, v []byte)
	// Prev moves to the preceding key.
	Prev() (k, v []byte)
	// Delete removes the pair the cursor is at; Next then moves to the
	// key that followed it, so a loop may delete as it goes. Errors:
	// ErrTxNotWritable.
	Delete() error
}

// Named is implemented by an engine that names itself in messages
// ("postgres"), where a file's engine names its path.
type Named interface {
	Name() string
}

// Checker is implemented by an engine's Tx when the engine can check its
// own storage structure (bbolt: the pages of the file). Check runs in the
// transaction and returns what it found, nil when the structure is sound.
type Checker interface {
	Check() []error
}

// BackupTo is implemented by an engine that can write a consistent copy
// of its whole store, in its own format, to w (bbolt: the file).
type BackupTo interface {
	BackupTo(w io.Writer) (int64, error)
}

// BucketLister is implemented by an engine's Tx that can name every
// bucket it holds (boltkv: the file's top-level buckets; pgkv: the rows
// of kv_buckets). Copy, Verify and Census need it.
type BucketLister interface {
	// Buckets returns the name of every bucket, in bytewise order.
	// Errors: the engine's (a failed statement).
	Buckets() ([][]byte, error)
}

// Sequencer is implemented by an engine's Bucket whose sequence (the
// counter NextSequence increments) can be read and set, so that a copy
// of the bucket carries it: the vault numbers its audit events with it,
// and a copy that started again at 1 would write new events over old
// ones.
type Sequencer interface {
	// Sequence returns the bucket's sequence: 0 before the first
	// NextSequence, else the last number it returned (in this
	// transaction or committed before it).
	Sequence() uint64
	// SetSequence sets the sequence to n: the next NextSequence returns
	// n+1. It rolls back with the transaction. Errors: ErrTxNotWritable,
	// the engine's range (pgkv: n at most 2^63-1).
	SetSequence(n uint64) error
}
