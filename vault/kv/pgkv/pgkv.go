// Package pgkv is the PostgreSQL engine of vault/kv: the vault's buckets
// of ordered key/value pairs as rows of one table in a database that
// several tagwatch daemons share.
//
// Schema (created, or brought up to date, by Open under a transaction-
// scoped advisory lock, so daemons starting together do not race):
//
//	kv_schema (version int NOT NULL)  -- one row: schemaVersion
//	kv_buckets (name bytea PRIMARY KEY, seq bigint NOT NULL)
//	kv (bucket bytea, key bytea, value bytea NOT NULL, PRIMARY KEY (bucket, key))
//	-- version 2: the kv.Cluster (cluster.go)
//	kv_claims (kind text, id text, round bigint, holder text, until timestamptz,
//	           done bool, PRIMARY KEY (kind, id))  -- index on (holder, until)
//	kv_daemons (id text PRIMARY KEY, host text, pid int, version text,
//	            started timestamptz, heartbeat timestamptz)
//	kv_flows (key text PRIMARY KEY, value bytea, expires timestamptz)  -- index on expires
//	-- version 3: the write gate (see Contention)
//	kv_gate ()  -- no columns, no rows: only ever locked
//
// A database of an older version is brought up to this one, step by
// step, in the same transaction; a newer one is refused.
//
// bytea compares bytewise (memcmp, then length), which is the order
// bytes.Compare gives and the vault relies on.
//
// Isolation: Update runs at SERIALIZABLE, so a transaction of one daemon
// sees and is seen by the others' as if one ran after the other; that is
// what fences the refresh marker and every read-then-write rule of the
// vault across daemons. Update therefore may run fn more than once: when
// PostgreSQL aborts the transaction with a serialization failure
// (SQLSTATE 40001) or a deadlock (40P01), Update rolls back and runs fn
// again, up to MaxAttempts times, so fn must set what it returns only
// from inside the transaction (the vault's closures do). View runs at
// REPEATABLE READ, READ ONLY: one snapshot for the whole closure, never
// retried, never blocked by the gate below. It is not SERIALIZABLE: a
// View may see a state no serial order of the writers shows (the
// read-only anomaly), which is harmless because the vault decides
// nothing in a View: what it reads there (due rows, runnable watches) is
// read again and checked in the Update that acts on it; SERIALIZABLE
// READ ONLY DEFERRABLE would remove the anomaly at the price of waiting
// for a safe snapshot, as long as writers keep running.
//
// Contention: SERIALIZABLE (PostgreSQL's Serializable Snapshot Isolation)
// aborts more than the true conflicts: its predicate locks on a B-tree
// are per index page, so reading one key of kv's primary key conflicts
// with a write of any key on the same page (a page holds about a hundred
// keys, a small vault's whole bucket), and tuple locks are promoted to
// page and relation locks past max_pred_locks_per_page,
// max_pred_locks_per_relation and max_pred_locks_per_transaction
// (PostgreSQL 15 documentation, 13.2.3 "Serializable Isolation Level"
// and 20.12 "Lock Management"). Writers of one row (a grant, a watch's
// cursor, the audit bucket's sequence) conflict for real. Update bounds
// the storm this makes across daemons in two ways:
//
//   - Backoff: a retry waits a random time in [0, d), d doubling from
//     backoffBase up to backoffCap ("full jitter"), so that the
//     transactions that collided do not collide again in step.
//   - Progress: every Update transaction first takes the gate, the table
//     kv_gate, in ACCESS SHARE mode (no wait, no conflict among them).
//     After EscalateAfter failed attempts, fn runs in a transaction that
//     takes the gate in ACCESS EXCLUSIVE mode instead: it waits for the
//     Update transactions running now, in every daemon, to end; those
//     that begin meanwhile wait behind it (PostgreSQL queues a lock
//     request behind a conflicting waiting one); it then runs alone among
//     the writers, so every storm drains, one escalated transaction at a
//     time. The lock is the first statement (LOCK TABLE takes no
//     snapshot, so the snapshot, taken by fn's first statement, sees
//     every commit before the escalation): an advisory lock taken by a
//     SELECT would not do, as the SELECT's snapshot is taken before it
//     waits. An escalated attempt can still be aborted, rarely: by a
//     writer that does not take the gate (another program; a daemon of a
//     tagwatch before schema version 3), or at its commit by a
//     transaction that was ending when the gate was granted (PostgreSQL
//     releases a transaction's locks before its predicate locks, so for
//     a moment SSI still counts it as running: "conflict in from
//     prepared pivot": twice in some ten thousand escalated attempts of
//     TestContention); it then runs again, escalated again. Isolation
//     stays SERIALIZABLE in both modes. Stats counts what happened.
//
// Errors: a statement that fails inside fn (a lost connection, a
// timeout) makes every later call of the Tx a no-op answering nil, and
// the closure's outcome that error (View and Update return it, and
// Update rolls back), whatever fn returned.
package pgkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tagwatch/vault/kv"
)

// MaxAttempts is how many times Update runs fn at most when PostgreSQL
// keeps aborting it for serialization or a deadlock; the attempts after
// the first EscalateAfter hold the gate alone (see the package doc), and
// fail only rarely.
const MaxAttempts = 30

// EscalateAfter is how many attempts of an Update fail before fn runs
// holding the gate exclusively.
const EscalateAfter = 6

// Backoff before a retry: a random wait in [0, d), d = backoffBase
// doubling with each failed attempt, at most backoffCap.
const (
	backoffBase = 2 * time.Millisecond
	backoffCap  = 100 * time.Millisecond
)

// The statements that begin an Update's transaction: the isolation, and
// the gate taken before any snapshot (see the package doc), in one round
// trip (pgx runs a BeginQuery without arguments in the simple protocol,
// which allows several statements).
const (
	beginShared    = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE kv_gate IN ACCESS SHARE MODE"
	beginExclusive = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE kv_gate IN ACCESS EXCLUSIVE MODE"
)

// pageSize is how many pairs a cursor reads ahead in one query.
const pageSize = 128

// schemaLock is the advisory lock key Open takes while it creates or
// migrates the schema ("tagwatch" in ASCII, as an int64).
const schemaLock = 0x7461677761746368

// schemaVersion is the version of the schema this code writes: the
// number of migrations.
const schemaVersion = 3

// migrations[v] brings a database from schema version v to v+1.
var migrations = [schemaVersion]string{
	// 0 -> 1: the buckets.
	`CREATE TABLE kv_buckets (name bytea PRIMARY KEY, seq bigint NOT NULL DEFAULT 0);
CREATE TABLE kv (bucket bytea NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (bucket, key));`,
	// 1 -> 2: the kv.Cluster: claims, daemons, flows.
	`CREATE TABLE kv_claims (kind text NOT NULL, id text NOT NULL, round bigint NOT NULL, holder text NOT NULL,
	until timestamptz NOT NULL, done bool NOT NULL DEFAULT false, PRIMARY KEY (kind, id));
CREATE INDEX kv_claims_holder ON kv_claims (holder, until);
CREATE TABLE kv_daemons (id text PRIMARY KEY, host text NOT NULL, pid int NOT NULL, version text NOT NULL,
	started timestamptz NOT NULL, heartbeat timestamptz NOT NULL);
CREATE TABLE kv_flows (key text PRIMARY KEY, value bytea NOT NULL, expires timestamptz NOT NULL);
CREATE INDEX kv_flows_expires ON kv_flows (expires);`,
	// 2 -> 3: the write gate: every Update locks it, shared, or alone
	// after EscalateAfter serialization failures.
	`CREATE TABLE kv_gate ();
COMMENT ON TABLE kv_gate IS 'tagwatch: locked by every write transaction (ACCESS SHARE), or by one alone (ACCESS EXCLUSIVE) after repeated serialization failures; never holds rows';`,
}

// Options configure Open.
type Options struct {
	// DSN is the connection string (keyword=value or a postgres:// URL).
	DSN string
	// Password is the database password (a secret file's
	// content; never in the DSN).
	Password string
	// MaxConns is the pool's size; default 8.
	MaxConns int32
	// StatementTimeout bounds each statement; default 30s.
	StatementTimeout time.Duration
}

// Engine is a kv.Engine on a PostgreSQL database.
type Engine struct {
	pool   *pgxpool.Pool
	opts   Options
	closed atomic.Bool
	// exists remembers buckets seen to exist (committed), so that a
	// transaction does not ask again: buckets are created by schema
	// migrations and never deleted by the vault's domain code. A
	// DeleteBucket through this engine forgets its name.
	exists sync.Map // string -> struct{}
	// stats counts Update's attempts (Stats).
	stats struct {
		updates, attempts, retries, escalated, gaveUp, mostAttempts atomic.Uint64
	}
}

// Stats counts what Update did since Open, in every goroutine.
type Stats struct {
	// Updates is how many Update calls ended (committed, or returned an
	// error).
	Updates uint64
	// Attempts is how many transactions Update began: every run of fn.
	Attempts uint64
	// Retries is how many attempts PostgreSQL aborted with a
	// serialization failure (40001) or a deadlock (40P01).
	Retries uint64
	// Escalated is how many attempts ran holding the gate alone.
	Escalated uint64
	// GaveUp is how many Updates failed after MaxAttempts aborted
	// attempts.
	GaveUp uint64
	// MostAttempts is the most attempts one Update took.
	MostAttempts uint64
}

// Stats returns the engine's counts; they only grow.
func (e *Engine) Stats() Stats {
	s := &e.stats
	return Stats{Updates: s.updates.Load(), Attempts: s.attempts.Load(), Retries: s.retries.Load(),
		Escalated: s.escalated.Load(), GaveUp: s.gaveUp.Load(), MostAttempts: s.mostAttempts.Load()}
}

var _ kv.Engine = (*Engine)(nil)

// Open connects, creates or migrates the schema, and returns the engine.
// Errors name what failed: the DSN, the connection, the schema (a schema
// newer than this code is refused: a newer tagwatch wrote it).
func Open(ctx context.Context, o Options) (*Engine, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("pgkv: the connection string: %w", err)
	}
	// The password is Options.Password and nothing else: pgx would also
	// take PGPASSWORD or a ~/.pgpass file, which tagwatch's
	// configuration does not name (its password is a secret file or a
	// credential, never in the environment).
	cfg.ConnConfig.Password = o.Password
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	} else {
		cfg.MaxConns = 8
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 30 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	cfg.ConnConfig.RuntimeParams["application_name"] = "tagwatchd"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgkv: connect: %w", err)
	}
	e := &Engine{pool: pool, opts: o}
	if err := e.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return e, nil
}

// migrate creates the schema, or brings it up to schemaVersion, under
// the advisory lock, in one transaction: a daemon that starts while
// another migrates waits for the lock and then finds the schema done.
func (e *Engine) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return fmt.Errorf("pgkv: schema lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS kv_schema (version int NOT NULL)`); err != nil {
			return fmt.Errorf("pgkv: schema: %w", err)
		}
		var v int
		err := tx.QueryRow(ctx, "SELECT version FROM kv_schema").Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO kv_schema (version) VALUES (0)"); err != nil {
				return fmt.Errorf("pgkv: create the schema: %w", err)
			}
		case err != nil:
			return fmt.Errorf("pgkv: schema version: %w", err)
		case v > schemaVersion:
			return fmt.Errorf("pgkv: the database's schema is version %d, newer than this tagwatch's %d", v, schemaVersion)
		case v < 0:
			return fmt.Errorf("pgkv: the database's schema version is %d: damaged", v)
		}
		if v == schemaVersion {
			return nil
		}
		for ; v < schemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("pgkv: migrate the schema from version %d to %d: %w", v, v+1, err)
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE kv_schema SET version = $1", schemaVersion); err != nil {
			return fmt.Errorf("pgkv: migrate the schema: %w", err)
		}
		return nil
	})
}

// Pool returns the engine's connection pool, for what the vault asks of
// PostgreSQL beyond buckets (leases, the daemons' view).
func (e *Engine) Pool() *pgxpool.Pool { return e.pool }

// Close closes the pool; transactions begun after it fail with
// kv.ErrClosed.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.pool.Close()
	return nil
}

// View runs fn in a REPEATABLE READ, READ ONLY transaction.
func (e *Engine) View(fn func(kv.Tx) error) error {
	return e.run(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// Batch is Update (kv.Engine): PostgreSQL commits concurrent
// transactions on its own, with its own group commit (commit_delay).
func (e *Engine) Batch(fn func(kv.Tx) error) error { return e.Update(fn) }

// Update runs fn in a SERIALIZABLE transaction, again after a
// serialization failure or a deadlock, with backoff, holding the gate
// alone after EscalateAfter failures (see the package doc). Errors: fn's,
// as is; the engine's; after MaxAttempts aborted attempts, "pgkv: gave
// up after N serialization failures" wrapping the last abort.
func (e *Engine) Update(fn func(kv.Tx) error) error {
	s := &e.stats
	defer s.updates.Add(1)
	var err error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		begin := beginShared
		if attempt > EscalateAfter {
			begin = beginExclusive
			s.escalated.Add(1)
		}
		s.attempts.Add(1)
		err = e.run(pgx.TxOptions{BeginQuery: begin}, true, fn)
		if !retryable(err) {
			noteMost(&s.mostAttempts, uint64(attempt))
			return err
		}
		s.retries.Add(1)
		if attempt < MaxAttempts {
			time.Sleep(backoff(attempt))
		}
	}
	noteMost(&s.mostAttempts, MaxAttempts)
	s.gaveUp.Add(1)
	return fmt.Errorf("pgkv: gave up after %d serialization failures: %w", MaxAttempts, err)
}

// backoff is the wait after failed attempt n (1, 2, ...): uniform in
// [0, min(backoffCap, backoffBase<<(n-1))).
func backoff(n int) time.Duration {
	d := backoffCap
	if n <= 16 {
		d = min(backoffCap, backoffBase<<(n-1))
	}
	return rand.N(d)
}

// noteMost raises m to n.
func noteMost(m *atomic.Uint64, n uint64) {
	for {
		old := m.Load()
		if n <= old || m.CompareAndSwap(old, n) {
			return
		}
	}
}

// retryable reports a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func (e *Engine) run(o pgx.TxOptions, writable bool, fn func(kv.Tx) error) error {
	if e.closed.Load() {
		return kv.ErrClosed
	}
	ctx := context.Background()
	ptx, err := e.pool.BeginTx(ctx, o)
	if err != nil {
		return fmt.Errorf("pgkv: begin: %w", err)
	}
	t := &tx{e: e, ctx: ctx, tx: ptx, writable: writable, buckets: map[string]bool{}}
	committed := false
	defer func() {
		// Every way out but a commit rolls back: an error, a read-only
		// transaction, and a panic of fn (which goes on), so that the
		// connection goes back to the pool.
		if !committed {
			_ = ptx.Rollback(ctx)
		}
	}()
	ferr := fn(t)
	if t.err != nil {
		return t.err
	}
	if ferr != nil {
		return ferr
	}
	if !writable {
		return nil
	}
	committed = true
	if err := ptx.Commit(ctx); err != nil {
		if retryable(err) {
			return err
		}
		return fmt.Errorf("pgkv: commit: %w", err)
	}
	return nil
}

// tx is a kv.Tx over one PostgreSQL transaction.
type tx struct {
	e        *Engine
	ctx      context.Context
	tx       pgx.Tx
	writable bool
	// err is the first statement error; every later call is a no-op.
	err error
	// buckets caches which buckets exist in this transaction.
	buckets map[string]bool
	// writes counts the writes, so that cursors know their read-ahead is
	// stale.
	writes int
}

func (t *tx) fail(err error) {
	if t.err == nil && err != nil {
		t.err = fmt.Errorf("pgkv: %w", err)
	}
}

func (t *tx) Writable() bool { return t.writable }

func (t *tx) Bucket(name []byte) kv.Bucket {
	if len(name) == 0 {
		return nil
	}
	if t.err != nil {
		// After a failed statement every call is a no-op answering
		// nothing, a bucket's too; nil would be dereferenced by the
		// vault, which takes its buckets from the schema (a panic where
		// a serialization failure, retried, was due).
		return &bucket{t: t, name: bytes.Clone(name)}
	}
	ok, known := t.buckets[string(name)]
	if !known {
		if _, seen := t.e.exists.Load(string(name)); seen {
			ok, known = true, true
			t.buckets[string(name)] = true
		}
	}
	if !known {
		err := t.tx.QueryRow(t.ctx, "SELECT true FROM kv_buckets WHERE name = $1", name).Scan(&ok)
		if errors.Is(err, pgx.ErrNoRows) {
			ok, err = false, nil
		}
		if err != nil {
			t.fail(err)
			return &bucket{t: t, name: bytes.Clone(name)} // a no-op, as above
		}
		t.buckets[string(name)] = ok
		if ok {
			t.e.exists.Store(string(name), struct{}{})
		}
	}
	if !ok {
		return nil
	}
	return &bucket{t: t, name: bytes.Clone(name)}
}

func (t *tx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	switch {
	case !t.writable:
		return nil, kv.ErrTxNotWritable
	case len(name) == 0:
		return nil, kv.ErrBucketNameRequired
	case t.err != nil:
		return nil, t.err
	}
	// A bucket known to exist is not inserted again: no statement, and
	// no read of kv_buckets for SERIALIZABLE to lock (the vault asks for
	// watch_seen so in every watch run).
	ok, known := t.buckets[string(name)]
	if !known {
		_, ok = t.e.exists.Load(string(name))
	}
	if !ok {
		if _, err := t.tx.Exec(t.ctx, "INSERT INTO kv_buckets (name) VALUES ($1) ON CONFLICT DO NOTHING", name); err != nil {
			t.fail(err)
			return nil, t.err
		}
		t.writes++
	}
	t.buckets[string(name)] = true
	return &bucket{t: t, name: bytes.Clone(name)}, nil
}

func (t *tx) DeleteBucket(name []byte) error {
	switch {
	case !t.writable:
		return kv.ErrTxNotWritable
	case t.err != nil:
		return t.err
	}
	tag, err := t.tx.Exec(t.ctx, "DELETE FROM kv_buckets WHERE name = $1", name)
	if err != nil {
		t.fail(err)
		return t.err
	}
	if tag.RowsAffected() == 0 {
		return kv.ErrBucketNotFound
	}
	if _, err := t.tx.Exec(t.ctx, "DELETE FROM kv WHERE bucket = $1", name); err != nil {
		t.fail(err)
		return t.err
	}
	t.buckets[string(name)] = false
	t.e.exists.Delete(string(name))
	t.writes++
	return nil
}

// bucket is a kv.Bucket: rows of kv with this bucket name.
type bucket struct {
	t    *tx
	name []byte
}

func (b *bucket) Get(key []byte) []byte {
	if b.t.err != nil {
		return nil
	}
	var v []byte
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value FROM kv WHERE bucket = $1 AND key = $2", b.name, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		b.t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{}
	}
	return v
}

func (b *bucket) Put(key, value []byte) error {
	switch {
	case !b.t.writable:
		return kv.ErrTxNotWritable
	case len(key) == 0:
		return kv.ErrKeyRequired
	case b.t.err != nil:
		return b.t.err
	}
	if value == nil {
		value = []byte{}
	}
	if _, err := b.t.tx.Exec(b.t.ctx, `INSERT INTO kv (bucket, key, value) VALUES ($1, $2, $3)
ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value`, b.name, key, value); err != nil {
		b.t.fail(err)
		return b.t.err
	}
	b.t.writes++
	return nil
}

func (b *bucket) Delete(key []byte) error {
	switch {
	case !b.t.writable:
		return kv.ErrTxNotWritable
	case b.t.err != nil:
		return b.t.err
	}
	if _, err := b.t.tx.Exec(b.t.ctx, "DELETE FROM kv WHERE bucket = $1 AND key = $2", b.name, key); err != nil {
		b.t.fail(err)
		return b.t.err
	}
	b.t.writes++
	return nil
}

func (b *bucket) NextSequence() (uint64, error) {
	switch {
	case !b.t.writable:
		return 0, kv.ErrTxNotWritable
	case b.t.err != nil:
		return 0, b.t.err
	}
	var seq int64
	if err := b.t.tx.QueryRow(b.t.ctx, "UPDATE kv_buckets SET seq = seq + 1 WHERE name = $1 RETURNING seq", b.name).Scan(&seq); err != nil {
		b.t.fail(err)
		return 0, b.t.err
	}
	b.t.writes++
	return uint64(seq), nil
}

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *bucket) Cursor() kv.Cursor { return &cursor{b: b} }

// cursor reads ahead pageSize pairs in the direction it moves; a write in
// the transaction since the read makes it read again from where it is.
type cursor struct {
	b *bucket
	// at is the key the cursor is at (nil: not positioned, or past an
	// end); pastEnd says it went past the last key (Prev then moves to
	// the last key).
	at      []byte
	pastEnd bool
	// ahead are the pairs read after (forward) or before (backward) at,
	// in the order the cursor moves; writes is t.writes when read.
	ahead   [][2][]byte
	forward bool
	writes  int
}

// query reads up to pageSize pairs strictly after (forward) or before
// key, or from the start or end when key is nil; inclusive makes it
// start at key itself.
func (c *cursor) query(key []byte, forward, inclusive bool) [][2][]byte {
	t := c.b.t
	if t.err != nil {
		return nil
	}
	op, order := ">", "ASC"
	if !forward {
		op, order = "<", "DESC"
	}
	if inclusive {
		op += "="
	}
	var rows pgx.Rows
	var err error
	if key == nil {
		rows, err = t.tx.Query(t.ctx, "SELECT key, value FROM kv WHERE bucket = $1 ORDER BY key "+order+" LIMIT $2", c.b.name, pageSize)
	} else {
		rows, err = t.tx.Query(t.ctx, "SELECT key, value FROM kv WHERE bucket = $1 AND key "+op+" $2 ORDER BY key "+order+" LIMIT $3",
			c.b.name, key, pageSize)
	}
	if err != nil {
		t.fail(err)
		return nil
	}
	var out [][2][]byte
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			t.fail(err)
			return nil
		}
		if v == nil {
			v = []byte{}
		}
		out = append(out, [2][]byte{k, v})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.fail(err)
		return nil
	}
	c.writes = t.writes
	return out
}

// land moves the cursor to the first of pairs (or past the end).
func (c *cursor) land(pairs [][2][]byte, forward bool) ([]byte, []byte) {
	c.forward = forward
	if len(pairs) == 0 {
		c.at, c.ahead, c.pastEnd = nil, nil, forward
		return nil, nil
	}
	c.at, c.ahead, c.pastEnd = pairs[0][0], pairs[1:], false
	return pairs[0][0], pairs[0][1]
}

func (c *cursor) First() ([]byte, []byte) { return c.land(c.query(nil, true, false), true) }

func (c *cursor) Last() ([]byte, []byte) { return c.land(c.query(nil, false, false), false) }

func (c *cursor) Seek(key []byte) ([]byte, []byte) { return c.land(c.query(key, true, true), true) }

func (c *cursor) Next() ([]byte, []byte) { return c.step(true) }

func (c *cursor) Prev() ([]byte, []byte) {
	if c.at == nil && c.pastEnd {
		return c.Last()
	}
	return c.step(false)
}

// step moves one pair on, from the read-ahead while it is fresh.
func (c *cursor) step(forward bool) ([]byte, []byte) {
	if c.at == nil {
		return nil, nil
	}
	if forward == c.forward && c.writes == c.b.t.writes && len(c.ahead) > 0 {
		p := c.ahead[0]
		c.at, c.ahead = p[0], c.ahead[1:]
		return p[0], p[1]
	}
	return c.land(c.query(c.at, forward, false), forward)
}

func (c *cursor) Delete() error {
	t := c.b.t
	switch {
	case !t.writable:
		return kv.ErrTxNotWritable
	case c.at == nil:
		return nil
	}
	if err := c.b.Delete(c.at); err != nil {
		return err
	}
	// The read-ahead still holds what follows: the deleted key is not in
	// it, and nothing else changed.
	c.writes = t.writes
	return nil
}
