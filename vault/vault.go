package vault

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/seal"
)

// SchemaVersion is the version of the layout this build writes.
var SchemaVersion = len(migrations)

var (
	// ErrLocked means another process holds the database file.
	ErrLocked = errors.New("database is locked by another process")
	// ErrNotFound means a record does not exist.
	ErrNotFound = errors.New("vault: not found")
	// ErrExists means a record with that id already exists.
	ErrExists = errors.New("vault: already exists")
	// ErrNoVault means the database file does not exist and Options.Create is off.
	ErrNoVault = errors.New("vault: database does not exist")
	// ErrNoKeyring means the file holds no keyring: it is not a tagwatch vault
	// or was never initialised. A new keyring is never minted over it.
	ErrNoKeyring = errors.New("vault: database has no keyring")
	// ErrNewerSchema means the file was written by a newer tagwatch.
	ErrNewerSchema = errors.New("vault: database schema is newer than this tagwatch")
	// ErrOlderSchema means a read-only open found a file that needs a
	// migration, which only a read-write open (the daemon) performs.
	ErrOlderSchema = errors.New("vault: database schema is older than this tagwatch: start the daemon once to migrate it")
	// ErrNotFile means what was asked is about the vault's file (Backup),
	// and the vault is on another storage engine (Options.Engine): use
	// that engine's own tools (PostgreSQL: pg_dump, a base backup).
	ErrNotFile = errors.New("vault: the vault is not a file")
	// errReadOnly is every write of a vault opened ReadOnly on an engine
	// that has no read-only mode of its own (bbolt refuses by itself).
	errReadOnly = fmt.Errorf("vault: the vault is open read-only: %w", kv.ErrTxNotWritable)
	// errCreatedMeanwhile: another daemon sharing the engine created the
	// vault between Open's read and its write; Open reads again.
	errCreatedMeanwhile = errors.New("vault: created meanwhile by another process")
)

var (
	bucketMeta        = []byte("meta")
	bucketUsers       = []byte("users")
	bucketGrants      = []byte("grants")
	bucketUserGrants  = []byte("user_grants")
	bucketEnrollments = []byte("enrollments")
	bucketWatches     = []byte("watches")
	bucketUserWatches = []byte("user_watches")
	bucketCursors     = []byte("cursors")
	bucketOutbox      = []byte("outbox")
	bucketOutboxDue   = []byte("outbox_due")
	bucketAudit       = []byte("audit")
	bucketRevocations = []byte("revocations")

	keySchema  = []byte("schema_version")
	keyKeyring = []byte("keyring")
)

// migrations[i] moves the layout from version i to i+1. Each runs inside
// the one transaction that also records the new version.
var migrations = []func(tx kv.Tx) error{
	// 0 -> 1: the first layout.
	func(tx kv.Tx) error {
		for _, b := range migrationBuckets[0] {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 1 -> 2: the sign-in index (signins.go), filled from the grants.
	indexExistingGrants,
}

// Options configure Open. The zero value of each field is its default.
type Options struct {
	// Path is the database file. Required unless Engine is set.
	Path string
	// Engine, when set, is the storage engine the vault runs on instead
	// of the bbolt file at Path (vault/kv/pgkv: PostgreSQL); Path may
	// then be empty, and messages name the engine ("postgres", from its
	// Name method when it has one) instead of a file. Everything about a
	// file is skipped or refused: identifying it before opening, its lock
	// (LockTimeout), Backup, the page check of CheckConsistency. All else
	// (the keyring and the master key check before a byte is written,
	// Create, ReadOnly, schema migrations, the rules, damaged records)
	// is as for bbolt. Open takes the engine over: DB.Close closes it,
	// and so does an Open that fails.
	Engine kv.Engine
	// Master is the master key that wraps the data keys. Required.
	Master *seal.MasterKey
	// Create allows Open to create the file, with a new keyring, when it does
	// not exist. An existing file is never given a new keyring.
	Create bool
	// LockTimeout bounds the wait for the file lock; default 1 s.
	LockTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the vault's log; default slog.Default().
	Logger *slog.Logger
	// Failpoint, when set, is called at named points of multi-step
	// operations so tests can crash the process there, and at
	// FailpointDamagedWalk so they can count the walks of all records.
	Failpoint func(name string)
	// ReadOnly opens an existing vault for reading only (check-config): a
	// shared file lock, so a running daemon's vault gives ErrLocked; no
	// migration, no write. An older schema gives ErrOlderSchema.
	ReadOnly bool
	// Rules decide what a valid watch is (worker.Rules). Methods that
	// create or change watches, or links that carry one, fail without
	// them; SetRules can set them later.
	Rules WatchRules
	// Holder is this process's id among the daemons sharing the store
	// (kv.Daemon.ID): it holds claims and refresh markers under it.
	// Default: a random id, new at every Open.
	Holder string
	// Lease is how long a claim, and a refresh marker, of a holder that
	// stopped sending heartbeats is honoured before the work is taken
	// over (storage.lease). Default 30s. On a single-process engine
	// (bbolt) no other holder is alive, so a marker found is a dead
	// holder's at once.
	Lease time.Duration
}

// DB is an open vault. Safe for concurrent use.
type DB struct {
	// engine holds the buckets (vault/kv); every record goes through it.
	engine kv.Engine
	path   string
	// name names the store in messages: the file's path, or the
	// engine's name (Options.Engine).
	name   string
	now    func() time.Time
	log    *slog.Logger
	fail   func(string)
	master atomic.Pointer[seal.MasterKey]
	kr     atomic.Pointer[seal.Keyring]
	// keyMu is held shared by every transaction and exclusively by key
	// rotation, so no record is sealed under, or read with, a keyring that
	// is being replaced.
	keyMu sync.RWMutex
	// file is bbolt's own descriptor of the file, read by filePages
	// (boltkv.Engine.File).
	file     *os.File
	rules    rules
	readOnly bool
	// damagedLogged holds the damaged records already logged (kind|0|id),
	// so each is logged once per process (damaged.go).
	damagedLogged sync.Map
	// damagedMet holds the damaged records readers skipped that the
	// register may not hold yet (kind|0|id -> true); DamagedRecords takes
	// them in (damaged.go).
	damagedMet sync.Map
	// cluster is the engine's kv.Cluster, or a kv.LocalCluster for an
	// engine one process owns; holder and lease are Options.Holder and
	// Options.Lease.
	cluster kv.Cluster
	shared  bool // the engine is shared by several processes (it has its own kv.Cluster)
	holder  string
	lease   time.Duration
	// steadySince is when this daemon's heartbeats started succeeding
	// without a break (Unix ns; 0: the last one failed, or none yet).
	steadySince atomic.Int64
	// krShared is the keyring as last read from a shared store
	// (keyringFor).
	krShared atomic.Pointer[sharedKeyring]
}

// Cluster returns the claims, daemon registry, flows and notifications of
// the store (kv.Cluster): shared by every daemon on the same engine, or
// this process's own (kv.LocalCluster) on bbolt.
func (db *DB) Cluster() kv.Cluster { return db.cluster }

// Holder returns this process's holder id (Options.Holder).
func (db *DB) Holder() string { return db.holder }

// Lease returns the lease of claims and refresh markers (Options.Lease).
func (db *DB) Lease() time.Duration { return db.lease }

// setCluster fills the cluster fields from opts and the engine.
func (db *DB) setCluster(opts Options) {
	db.holder, db.lease = opts.Holder, opts.Lease
	if db.holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		db.holder = hex.EncodeToString(b[:])
	}
	if db.lease <= 0 {
		db.lease = 30 * time.Second
	}
	db.cluster = kv.ClusterOf(db.engine)
	db.shared = db.cluster != nil
	if !db.shared {
		db.cluster = kv.NewLocalCluster(db.now)
	}
}

// Open opens (or, with Options.Create, creates) the vault at Options.Path,
// or on Options.Engine. It checks the master key before writing anything:
// a wrong key gives seal.ErrWrongMasterKey and leaves the file
// byte-for-byte unchanged (the engine's store unchanged).
func Open(opts Options) (*DB, error) {
	if opts.Engine == nil && opts.Path == "" {
		return nil, errors.New("vault: open: no path")
	}
	if opts.Master == nil {
		if opts.Engine != nil {
			_ = opts.Engine.Close()
			return nil, fmt.Errorf("vault: open %s: %w", engineName(opts.Engine), seal.ErrNoMasterKey)
		}
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, seal.ErrNoMasterKey)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Failpoint == nil {
		opts.Failpoint = func(string) {}
	}
	if opts.Engine != nil {
		return openEngine(opts)
	}
	// What is at the path is identified first, reading only: a file cut
	// short, empty, of another program or with damaged pages, or no file
	// at all (a directory, a FIFO, ...), is a *BadFileError and stays as
	// it is (identify.go).
	exists, err := identify(opts.Path, opts.LockTimeout)
	var badFile *BadFileError
	if errors.As(err, &badFile) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, err)
	}
	isNew := !exists
	if isNew && !opts.Create {
		return nil, fmt.Errorf("vault: open %s: %w (run `tagwatchd keys init` to create it)", opts.Path, ErrNoVault)
	}
	if opts.ReadOnly && isNew {
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, ErrNoVault)
	}
	if isNew {
		// A first start outside systemd (whose StateDirectory= makes it)
		// may find no state directory yet: make it, private to the
		// daemon's user, as StateDirectoryMode=0700 would.
		if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
			return nil, fmt.Errorf("vault: create the directory of %s: %w", opts.Path, err)
		}
	}
	// bbolt's reads at open are contained all the same: should one still
	// fault or panic on a damaged page, the file it opened is closed (its
	// lock released) and the error says the file is damaged.
	var engine *boltkv.Engine
	err = contained(opts.Path, hintRestore, func() error {
		var err error
		engine, err = boltkv.Open(opts.Path, boltkv.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly})
		return err
	})
	if errors.Is(err, boltkv.ErrTimeout) {
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, ErrLocked)
	}
	if err != nil {
		if isNew {
			_ = os.Remove(opts.Path)
		}
		if errors.As(err, &badFile) {
			return nil, err
		}
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, withoutPath(err))
	}
	db := &DB{engine: engine, path: opts.Path, name: opts.Path, now: opts.Now, log: opts.Logger, fail: opts.Failpoint, readOnly: opts.ReadOnly, file: engine.File()}
	db.setCluster(opts)
	if err := contained(opts.Path, hintRestore, func() error { return db.load(opts.Master, isNew) }); err != nil {
		_ = engine.Close()
		if isNew {
			_ = os.Remove(opts.Path)
		}
		if errors.As(err, &badFile) {
			return nil, err
		}
		return nil, fmt.Errorf("vault: open %s: %w", opts.Path, err)
	}
	db.master.Store(opts.Master)
	if opts.Rules != nil {
		db.SetRules(opts.Rules)
	}
	return db, nil
}

// engineName is how messages name a storage engine: its Name when it has
// one (kv.Named: "postgres"), else "the storage engine".
func engineName(e kv.Engine) string {
	if n, ok := e.(kv.Named); ok {
		return n.Name()
	}
	return "the storage engine"
}

// openEngine is Open on opts.Engine: no file to identify, lock or
// remove; the store is new when it holds none of the vault's buckets.
func openEngine(opts Options) (*DB, error) {
	name := engineName(opts.Engine)
	engine := opts.Engine
	if opts.ReadOnly {
		engine = readOnlyEngine{engine}
	}
	db := &DB{engine: engine, name: name, now: opts.Now, log: opts.Logger, fail: opts.Failpoint, readOnly: opts.ReadOnly}
	db.setCluster(opts)
	fail := func(err error) (*DB, error) {
		_ = engine.Close()
		return nil, fmt.Errorf("vault: open %s: %w", name, err)
	}
	// Twice at most: a daemon sharing the store may create the vault
	// between the read and the write of the first (errCreatedMeanwhile).
	for range 2 {
		isNew, err := db.isEmpty()
		if err != nil {
			return fail(err)
		}
		if isNew && opts.ReadOnly {
			return fail(ErrNoVault)
		}
		if isNew && !opts.Create {
			return fail(fmt.Errorf("%w (run `tagwatchd keys init` to create it)", ErrNoVault))
		}
		err = db.load(opts.Master, isNew)
		if errors.Is(err, errCreatedMeanwhile) {
			continue
		}
		if err != nil {
			return fail(err)
		}
		db.master.Store(opts.Master)
		if opts.Rules != nil {
			db.SetRules(opts.Rules)
		}
		return db, nil
	}
	return fail(errCreatedMeanwhile)
}

// isEmpty reports whether the engine's store holds none of the vault's
// buckets: a vault may be created there. A store with some of them but no
// meta bucket is not empty (load then finds no keyring: ErrNoKeyring).
func (db *DB) isEmpty() (bool, error) {
	empty := true
	err := db.engine.View(func(tx kv.Tx) error {
		empty = true
		for _, b := range [][]byte{bucketMeta, bucketUsers, bucketGrants, bucketUserGrants, bucketEnrollments,
			bucketWatches, bucketUserWatches, bucketCursors, bucketOutbox, bucketOutboxDue, bucketAudit,
			bucketRevocations, bucketSeen, bucketSignIns, bucketRateWindows, bucketDamaged} {
			if tx.Bucket(b) != nil {
				empty = false
				return nil
			}
		}
		return nil
	})
	return empty, err
}

// readOnlyEngine refuses every Update and Batch: a vault opened ReadOnly
// on an engine that has no read-only mode of its own writes nothing.
type readOnlyEngine struct{ kv.Engine }

func (readOnlyEngine) Update(func(kv.Tx) error) error { return errReadOnly }

func (readOnlyEngine) Batch(func(kv.Tx) error) error { return errReadOnly }

// withoutPath drops the path from an *os.PathError (the caller names it
// once): "stat: permission denied", not "open P: stat P: permission denied".
// The result still matches errors.Is for the underlying error.
func withoutPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// load reads the keyring and schema, checks the master key, and only then
// initialises a new file or migrates an old one.
func (db *DB) load(master *seal.MasterKey, isNew bool) error {
	var st *seal.State
	version := 0
	var missing []string
	err := db.engine.View(func(tx kv.Tx) error {
		st, version, missing = nil, 0, nil
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if v := meta.Get(keySchema); len(v) == 8 {
			version = int(binary.BigEndian.Uint64(v))
		}
		// Every bucket its schema requires: the vault's code reads them
		// without looking for nil (buckets.go).
		missing = missingBuckets(tx, version)
		if v := meta.Get(keyKeyring); v != nil {
			st = new(seal.State)
			if err := json.Unmarshal(v, st); err != nil {
				return fmt.Errorf("keyring record is corrupt: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: file has version %d, this build knows %d", ErrNewerSchema, version, SchemaVersion)
	}
	if st == nil {
		if !isNew {
			return ErrNoKeyring
		}
		fresh, err := seal.Init(master, db.now())
		if err != nil {
			return err
		}
		st = &fresh
	}
	if !isNew && len(missing) > 0 {
		return db.missingAtOpen(missing, version)
	}
	kr, err := seal.Open(master, *st)
	if err != nil {
		return err
	}
	db.kr.Store(kr)
	if version == SchemaVersion && !isNew {
		return nil
	}
	if db.readOnly {
		return fmt.Errorf("%w (file has version %d, this build %d)", ErrOlderSchema, version, SchemaVersion)
	}
	return db.engine.Update(func(tx kv.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		// Read again, in this transaction: a daemon sharing the engine
		// (and a retry of this closure after a serialization failure)
		// may find the vault created or migrated since the read above.
		from := 0
		if v := meta.Get(keySchema); len(v) == 8 {
			from = int(binary.BigEndian.Uint64(v))
		}
		switch has := meta.Get(keyKeyring) != nil; {
		case from > SchemaVersion:
			return fmt.Errorf("%w: file has version %d, this build knows %d", ErrNewerSchema, from, SchemaVersion)
		case isNew && has:
			return errCreatedMeanwhile
		case !isNew && !has:
			return ErrNoKeyring
		}
		for v := from; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, uint64(SchemaVersion))); err != nil {
			return err
		}
		if isNew {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := meta.Put(keyKeyring, b); err != nil {
				return err
			}
			return appendAudit(tx, AuditEvent{Time: db.now(), Kind: AuditVaultCreated, Actor: "tagwatchd",
				Detail: "new vault with master key " + master.ID()})
		}
		return nil
	})
}

// HasVault reports whether engine holds a vault (its keyring), without
// opening it: a first start on an empty PostgreSQL database says it
// creates one. Errors: the engine's.
func HasVault(engine kv.Engine) (bool, error) {
	has := false
	err := engine.View(func(tx kv.Tx) error {
		meta := tx.Bucket(bucketMeta)
		has = meta != nil && meta.Get(keyKeyring) != nil
		return nil
	})
	return has, err
}

// Close closes the database file (the engine, Options.Engine).
func (db *DB) Close() error { return db.engine.Close() }

// Path returns the database file's path; "" for a vault on another
// engine (Options.Engine).
func (db *DB) Path() string { return db.path }

// Now returns the vault's clock reading.
func (db *DB) Now() time.Time { return db.now() }

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(tx *Tx) error) error {
	db.keyMu.RLock()
	defer db.keyMu.RUnlock()
	// A page bbolt cannot read (the file changed under the daemon: cut
	// short, overwritten), or a bucket gone, fails this transaction, not
	// the process (engineView).
	return db.engineView(func(etx kv.Tx) error {
		kr, err := db.keyringFor(etx)
		if err != nil {
			return err
		}
		return fn(&Tx{tx: etx, db: db, kr: kr})
	})
}

// Update runs fn in a read-write transaction, committed (and fsynced) when
// fn returns nil. fn must not do network I/O.
//
// fn may run more than once: an engine shared by several daemons
// (PostgreSQL) rolls back and runs it again after a serialization
// failure, and only the last run commits. So fn sets what it hands out
// only from inside the transaction, resetting it first (out = X{} as its
// first statement: a slice appended to, a counter, a flag set in one
// branch would keep what a rolled-back run left), and defers what must
// happen only once the change is committed to Tx.afterCommit.
func (db *DB) Update(fn func(tx *Tx) error) error {
	// A page bbolt cannot read (the file changed under the daemon: cut
	// short, overwritten), or a bucket gone, fails this transaction, not
	// the process (engineUpdate).
	return db.update(db.engineUpdate, fn)
}

// batch is Update for a write that may share its commit with the others
// running at the same time (kv.Engine.Batch: on bbolt one fsync for
// many): the run commits of a million watches. fn follows Update's rules,
// and on bbolt too it may run more than once.
func (db *DB) batch(fn func(tx *Tx) error) error {
	return db.update(func(fn func(kv.Tx) error) error {
		return contained(db.name, hintRunning, func() error {
			return db.engine.Batch(func(etx kv.Tx) error { return db.onSchema(etx, fn) })
		})
	}, fn)
}

// update runs fn in a read-write transaction of run (engineUpdate or
// batch's), then what it deferred to the commit.
func (db *DB) update(run func(func(kv.Tx) error) error, fn func(tx *Tx) error) error {
	db.keyMu.RLock()
	defer db.keyMu.RUnlock()
	var last *Tx
	err := run(func(etx kv.Tx) error {
		kr, err := db.keyringFor(etx)
		if err != nil {
			return err
		}
		last = &Tx{tx: etx, db: db, kr: kr}
		return fn(last)
	})
	if err == nil && last != nil {
		for _, f := range last.committed {
			f()
		}
	}
	return err
}

// Backup writes a consistent copy of the whole file (still sealed) to w.
// A vault on another engine (Options.Engine) is not a file: ErrNotFile.
func (db *DB) Backup(w io.Writer) (int64, error) {
	b, ok := db.engine.(kv.BackupTo)
	if !ok {
		return 0, fmt.Errorf("vault: backup: %w: it is in %s, whose own tools back it up", ErrNotFile, db.name)
	}
	var n int64
	err := contained(db.name, hintRunning, func() error {
		var err error
		n, err = b.BackupTo(w)
		return err
	})
	return n, err
}

// SchemaVersionOnDisk returns the schema version stored in the file.
func (db *DB) SchemaVersionOnDisk() (int, error) {
	v := 0
	err := db.engineView(func(tx kv.Tx) error {
		v = 0
		if b := tx.Bucket(bucketMeta).Get(keySchema); len(b) == 8 {
			v = int(binary.BigEndian.Uint64(b))
		}
		return nil
	})
	return v, err
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a random 128-bit id, 26 characters of Crockford base32.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("vault: crypto/rand failed: " + err.Error())
	}
	return idEncoding.EncodeToString(b[:])
}
