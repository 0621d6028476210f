// Package boltkv is the bbolt engine of vault/kv: one bbolt file, whose
// top-level buckets are kv's buckets. It is a thin wrapper: the kv types
// are bbolt's own under other names, so it adds no allocation and no
// copying to bbolt, and it keeps bbolt's rules (one writer at a time,
// readers on the last commit, byte slices valid during the transaction).
//
// Its Batch is a group commit (batch.go): the calls that arrive while a
// commit is under way are committed together, in one transaction and
// one fsync, by the first of them.
//
// Beyond kv.Engine it offers what only a file has: the file's lock and
// descriptor (File), a copy of the file (BackupTo), bbolt's own page
// check inside a transaction (the Tx implements kv.Checker), and the
// bbolt handle itself (Bolt) for tools and tests about the file.
package boltkv

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"tagwatch/vault/kv"
)

// ErrTimeout means the file lock was not obtained within
// Options.Timeout: another process holds the file.
var ErrTimeout = berrors.ErrTimeout

// Options configure Open. The zero value of each field is its default.
type Options struct {
	// Mode is the permission of a file Open creates; default 0600.
	Mode os.FileMode
	// Timeout bounds the wait for the file lock; zero waits forever (as
	// bbolt does).
	Timeout time.Duration
	// ReadOnly opens the file for reading under a shared lock; every
	// Update fails.
	ReadOnly bool
}

// Engine is an open bbolt file. Safe for concurrent use.
type Engine struct {
	db   *bolt.DB
	file *os.File

	// The group commit of Batch (batch.go).
	bmu     sync.Mutex
	pending []*call // Batch calls waiting for the next commit
	leading bool    // a caller is committing a batch
	commits atomic.Uint64
}

var (
	_ kv.Engine   = (*Engine)(nil)
	_ kv.BackupTo = (*Engine)(nil)
	_ kv.Checker  = (*tx)(nil)
	// The optional interfaces Copy, Verify and Census use.
	_ kv.BucketLister = (*tx)(nil)
	_ kv.Sequencer    = (*bucket)(nil)
)

// Open opens (creating it when missing and not ReadOnly) the bbolt file
// at path. Errors: ErrTimeout when another process holds the lock, or
// bbolt's and the file system's own. Reading a damaged file may panic or
// fault inside bbolt, here and in any later transaction: the caller
// contains that (vault's contained).
func Open(path string, opts Options) (*Engine, error) {
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	var db *bolt.DB
	defer func() {
		// A failed open, or a panic inside bbolt, leaves no descriptor
		// (and so no lock) behind.
		if db == nil && file != nil {
			_ = file.Close()
		}
	}()
	db, err := bolt.Open(path, opts.Mode, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly, OpenFile: openFile})
	if err != nil {
		return nil, err
	}
	return &Engine{db: db, file: file}, nil
}

// View runs fn in a read-only bbolt transaction (kv.Engine).
func (e *Engine) View(fn func(kv.Tx) error) error {
	return mapErr(e.db.View(func(t *bolt.Tx) error { return fn((*tx)(t)) }))
}

// Update runs fn in a read-write bbolt transaction, committed and fsynced
// when fn returns nil (kv.Engine).
func (e *Engine) Update(fn func(kv.Tx) error) error {
	return mapErr(e.db.Update(func(t *bolt.Tx) error { return fn((*tx)(t)) }))
}

// Close closes the file, after the transactions running finish.
func (e *Engine) Close() error { return e.db.Close() }

// BackupTo writes a consistent copy of the file to w, in a read
// transaction (kv.BackupTo).
func (e *Engine) BackupTo(w io.Writer) (int64, error) {
	var n int64
	err := e.db.View(func(t *bolt.Tx) error {
		var err error
		n, err = t.WriteTo(w)
		return err
	})
	return n, mapErr(err)
}

// File returns bbolt's own descriptor of the file (the one holding its
// lock), for reading the file's pages without bbolt's map. Do not close
// it or move its offset (read with ReadAt).
func (e *Engine) File() *os.File { return e.file }

// Bolt returns the bbolt handle, for tools and tests about the file
// (page sizes, bucket roots). Domain code uses the kv interface.
func (e *Engine) Bolt() *bolt.DB { return e.db }

// tx, bucket and cursor are bbolt's types: a conversion, not a wrapper
// to allocate.
type (
	tx     bolt.Tx
	bucket bolt.Bucket
	cursor bolt.Cursor
)

func (t *tx) Bucket(name []byte) kv.Bucket {
	b := (*bolt.Tx)(t).Bucket(name)
	if b == nil {
		return nil // an untyped nil: callers compare with nil
	}
	return (*bucket)(b)
}

func (t *tx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	b, err := (*bolt.Tx)(t).CreateBucketIfNotExists(name)
	if err != nil {
		return nil, mapErr(err)
	}
	return (*bucket)(b), nil
}

func (t *tx) DeleteBucket(name []byte) error { return mapErr((*bolt.Tx)(t).DeleteBucket(name)) }

func (t *tx) Writable() bool { return (*bolt.Tx)(t).Writable() }

// Buckets names the file's top-level buckets, in bbolt's (bytewise)
// order (kv.BucketLister).
func (t *tx) Buckets() ([][]byte, error) {
	var names [][]byte
	err := (*bolt.Tx)(t).ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, append([]byte(nil), name...))
		return nil
	})
	return names, mapErr(err)
}

// Check runs bbolt's check of the file's pages (kv.Checker), draining its
// channel (bbolt's checker blocks until it is read). Run it in a
// read-write transaction, or with no writer able to run: bbolt's check is
// only safe against concurrent commits that way.
func (t *tx) Check() []error {
	var errs []error
	for err := range (*bolt.Tx)(t).Check() {
		errs = append(errs, err)
	}
	return errs
}

func (b *bucket) Get(key []byte) []byte { return (*bolt.Bucket)(b).Get(key) }

func (b *bucket) Put(key, value []byte) error { return mapErr((*bolt.Bucket)(b).Put(key, value)) }

func (b *bucket) Delete(key []byte) error { return mapErr((*bolt.Bucket)(b).Delete(key)) }

func (b *bucket) Cursor() kv.Cursor { return (*cursor)((*bolt.Bucket)(b).Cursor()) }

func (b *bucket) ForEach(fn func(k, v []byte) error) error { return (*bolt.Bucket)(b).ForEach(fn) }

func (b *bucket) NextSequence() (uint64, error) {
	n, err := (*bolt.Bucket)(b).NextSequence()
	return n, mapErr(err)
}

// Sequence and SetSequence are bbolt's own (kv.Sequencer).
func (b *bucket) Sequence() uint64 { return (*bolt.Bucket)(b).Sequence() }

func (b *bucket) SetSequence(n uint64) error { return mapErr((*bolt.Bucket)(b).SetSequence(n)) }

func (c *cursor) First() ([]byte, []byte)          { return (*bolt.Cursor)(c).First() }
func (c *cursor) Last() ([]byte, []byte)           { return (*bolt.Cursor)(c).Last() }
func (c *cursor) Seek(key []byte) ([]byte, []byte) { return (*bolt.Cursor)(c).Seek(key) }
func (c *cursor) Next() ([]byte, []byte)           { return (*bolt.Cursor)(c).Next() }
func (c *cursor) Prev() ([]byte, []byte)           { return (*bolt.Cursor)(c).Prev() }
func (c *cursor) Delete() error                    { return mapErr((*bolt.Cursor)(c).Delete()) }

// mappedError is one of bbolt's sentinels that kv names too: its message
// and errors.Is are bbolt's, and errors.Is matches kv's as well.
type mappedError struct{ kv, bolt error }

func (e *mappedError) Error() string        { return e.bolt.Error() }
func (e *mappedError) Is(target error) bool { return target == e.kv }
func (e *mappedError) Unwrap() error        { return e.bolt }

var (
	errTxNotWritable      error = &mappedError{kv.ErrTxNotWritable, berrors.ErrTxNotWritable}
	errBucketNotFound     error = &mappedError{kv.ErrBucketNotFound, berrors.ErrBucketNotFound}
	errBucketNameRequired error = &mappedError{kv.ErrBucketNameRequired, berrors.ErrBucketNameRequired}
	errKeyRequired        error = &mappedError{kv.ErrKeyRequired, berrors.ErrKeyRequired}
	errIncompatibleValue  error = &mappedError{kv.ErrIncompatibleValue, berrors.ErrIncompatibleValue}
	errClosed             error = &mappedError{kv.ErrClosed, berrors.ErrDatabaseNotOpen}
)

// mapErr gives bbolt's sentinels (which bbolt returns unwrapped) their kv
// meaning. Any other error, fn's own among them, is returned as is.
func mapErr(err error) error {
	switch err {
	case nil:
		return nil
	case berrors.ErrTxNotWritable:
		return errTxNotWritable
	case berrors.ErrBucketNotFound:
		return errBucketNotFound
	case berrors.ErrBucketNameRequired:
		return errBucketNameRequired
	case berrors.ErrKeyRequired:
		return errKeyRequired
	case berrors.ErrIncompatibleValue:
		return errIncompatibleValue
	case berrors.ErrDatabaseNotOpen:
		return errClosed
	}
	return err
}
