package pgkv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault/kv"
)

// The Engine is the kv.Cluster of the daemons sharing its database, in
// the tables kv_claims, kv_daemons and kv_flows (schema version 2, see
// the package doc). Each method is one autocommit statement on the
// engine's pool, outside any kv transaction, bounded by ctx and the
// statement timeout; every time is the database's now() (the start of
// that statement), so daemons whose clocks disagree agree on every lease.
// Errors name the method and its object and wrap the driver's.
var _ kv.Cluster = (*Engine)(nil)

// claimSQL is Claim in one statement: insert the claim, or take over the
// row under the rule of kv.Cluster.Claim (the holder's own running
// claim; or an ended one whose round is older, or whose work was not
// done). Concurrent claims of one row are serialised by its lock: the
// loser re-evaluates the rule against the winner's row and returns no
// row. $5 is the lease in microseconds.
const claimSQL = `INSERT INTO kv_claims AS c (kind, id, round, holder, until, done)
VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond', false)
ON CONFLICT (kind, id) DO UPDATE
SET round = EXCLUDED.round, holder = EXCLUDED.holder, until = EXCLUDED.until, done = false
WHERE (c.holder = EXCLUDED.holder AND c.until > now())
   OR (c.until <= now() AND (c.round < EXCLUDED.round OR NOT c.done))
RETURNING true`

// micros is d in whole microseconds (PostgreSQL's resolution), rounded
// up so that a positive lease stays positive.
func micros(d time.Duration) int64 {
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

// Claim implements kv.Cluster (claimSQL).
func (e *Engine) Claim(ctx context.Context, c kv.Claim) (bool, error) {
	if err := c.Check(); err != nil {
		return false, err
	}
	var ok bool
	err := e.pool.QueryRow(ctx, claimSQL, c.Kind, c.ID, c.Round, c.Holder, micros(c.Lease)).Scan(&ok)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("pgkv: claim %q %q for %q: %w", c.Kind, c.ID, c.Holder, err)
	}
	return ok, nil
}

// Release implements kv.Cluster.
func (e *Engine) Release(ctx context.Context, kind, id, holder string, done bool) error {
	if _, err := e.pool.Exec(ctx, "UPDATE kv_claims SET until = now(), done = $4 WHERE kind = $1 AND id = $2 AND holder = $3",
		kind, id, holder, done); err != nil {
		return fmt.Errorf("pgkv: release %q %q of %q: %w", kind, id, holder, err)
	}
	return nil
}

// Heartbeat implements kv.Cluster: the entry's started is d.Started, or
// now() when d.Started is zero, at the first call; later calls keep it
// and set host, pid, version and the heartbeat.
func (e *Engine) Heartbeat(ctx context.Context, d kv.Daemon) error {
	if d.ID == "" {
		return errors.New("pgkv: a heartbeat needs the daemon's id")
	}
	var started *time.Time
	if !d.Started.IsZero() {
		started = &d.Started
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO kv_daemons (id, host, pid, version, started, heartbeat)
VALUES ($1, $2, $3, $4, COALESCE($5, now()), now())
ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, heartbeat = now()`,
		d.ID, d.Host, d.PID, d.Version, started); err != nil {
		return fmt.Errorf("pgkv: heartbeat of daemon %q: %w", d.ID, err)
	}
	if _, err := e.pool.Exec(ctx, "DELETE FROM kv_daemons WHERE heartbeat < now() - $1 * interval '1 microsecond'", micros(kv.DaemonRetention)); err != nil {
		return fmt.Errorf("pgkv: forget daemons dead for %s: %w", kv.DaemonRetention, err)
	}
	return nil
}

// Alive implements kv.Cluster.
func (e *Engine) Alive(ctx context.Context, id string, lease time.Duration) (bool, error) {
	var alive bool
	err := e.pool.QueryRow(ctx, "SELECT heartbeat > now() - $2 * interval '1 microsecond' FROM kv_daemons WHERE id = $1",
		id, micros(lease)).Scan(&alive)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("pgkv: is daemon %q alive: %w", id, err)
	}
	return alive, nil
}

// Leave implements kv.Cluster, in one statement.
func (e *Engine) Leave(ctx context.Context, id string) error {
	if _, err := e.pool.Exec(ctx, `WITH gone AS (DELETE FROM kv_daemons WHERE id = $1)
UPDATE kv_claims SET until = now(), done = false WHERE holder = $1 AND until > now()`, id); err != nil {
		return fmt.Errorf("pgkv: daemon %q leaves: %w", id, err)
	}
	return nil
}

// Daemons implements kv.Cluster.
func (e *Engine) Daemons(ctx context.Context) ([]kv.Daemon, error) {
	rows, err := e.pool.Query(ctx, `SELECT d.id, d.host, d.pid, d.version, d.started, d.heartbeat, c.kind, count(c.kind)
FROM kv_daemons d LEFT JOIN kv_claims c ON c.holder = d.id AND c.until > now()
GROUP BY d.id, c.kind
ORDER BY d.started, d.id, c.kind`)
	if err != nil {
		return nil, fmt.Errorf("pgkv: list the daemons: %w", err)
	}
	defer rows.Close()
	var out []kv.Daemon
	for rows.Next() {
		var d kv.Daemon
		var kind *string
		var n int
		if err := rows.Scan(&d.ID, &d.Host, &d.PID, &d.Version, &d.Started, &d.Heartbeat, &kind, &n); err != nil {
			return nil, fmt.Errorf("pgkv: list the daemons: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].ID != d.ID {
			d.Holds = map[string]int{}
			out = append(out, d)
		}
		if kind != nil {
			out[len(out)-1].Holds[*kind] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgkv: list the daemons: %w", err)
	}
	if out == nil {
		out = []kv.Daemon{}
	}
	return out, nil
}

// sweepOneIn is how often, on average, PutFlow also deletes expired
// flows (one call in sweepOneIn): they are never taken, and the table
// would keep them.
const sweepOneIn = 16

// sweepSQL deletes up to 1000 expired flows, skipping rows another
// daemon holds, so that two sweeps never wait on each other.
const sweepSQL = `DELETE FROM kv_flows WHERE key IN
(SELECT key FROM kv_flows WHERE expires <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED)`

// PutFlow implements kv.Cluster; now and then it also deletes expired
// flows (sweepOneIn).
func (e *Engine) PutFlow(ctx context.Context, key string, value []byte, expires time.Time) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO kv_flows (key, value, expires) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`, key, value, expires); err != nil {
		return fmt.Errorf("pgkv: put flow %q: %w", key, err)
	}
	if rand.IntN(sweepOneIn) == 0 {
		if _, err := e.pool.Exec(ctx, sweepSQL); err != nil {
			return fmt.Errorf("pgkv: delete expired flows: %w", err)
		}
	}
	return nil
}

// TakeFlow implements kv.Cluster: one DELETE ... RETURNING, so that of
// several takers the one whose delete wins gets the row, and the others
// find none.
func (e *Engine) TakeFlow(ctx context.Context, key string) ([]byte, bool, error) {
	var value []byte
	var live bool
	err := e.pool.QueryRow(ctx, "DELETE FROM kv_flows WHERE key = $1 RETURNING value, expires > now()", key).Scan(&value, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("pgkv: take flow %q: %w", key, err)
	case !live:
		return nil, false, nil
	}
	if value == nil {
		value = []byte{}
	}
	return value, true, nil
}

// Publish implements kv.Cluster with pg_notify (NOTIFY): payload is at
// most 7999 bytes (PostgreSQL's limit; a longer one is its error).
func (e *Engine) Publish(ctx context.Context, channel, payload string) error {
	if err := kv.CheckChannel(channel); err != nil {
		return err
	}
	if _, err := e.pool.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		return fmt.Errorf("pgkv: publish on %q: %w", channel, err)
	}
	return nil
}

// Reconnection backoff of Subscribe: from the first delay, doubling up
// to the last, each jittered by +-50%.
const (
	firstBackoff = 100 * time.Millisecond
	lastBackoff  = 5 * time.Second
)

// Subscribe implements kv.Cluster on a connection of its own (the pool's
// configuration, outside the pool): LISTEN, then wait for notifications.
// When the connection is lost (PostgreSQL restarted, the network cut) it
// connects again with backoff (firstBackoff doubling to lastBackoff,
// jittered), LISTENs again and then calls reconnected. It returns ctx's
// error when ctx ends, or kv.ErrClosed when it finds the engine closed
// on reconnecting (cancel ctx before Close to end it at once). fn runs
// on Subscribe's goroutine: a slow fn delays the next notification
// (PostgreSQL queues them meanwhile).
func (e *Engine) Subscribe(ctx context.Context, channel string, fn func(payload string), reconnected func()) error {
	if err := kv.CheckChannel(channel); err != nil {
		return err
	}
	listen := "LISTEN " + pgx.Identifier{channel}.Sanitize()
	backoff := firstBackoff
	lost := false // a connection was established and then lost
	for {
		if e.closed.Load() {
			return kv.ErrClosed
		}
		conn, err := e.listen(ctx, listen)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d := backoff/2 + rand.N(backoff)
			backoff = min(2*backoff, lastBackoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
			continue
		}
		backoff = firstBackoff
		if lost && reconnected != nil {
			reconnected()
		}
		wait(ctx, conn, fn)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lost = true // the connection is lost: connect again
	}
}

// listen opens a connection of its own and runs the LISTEN statement.
func (e *Engine) listen(ctx context.Context, listen string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, listen); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		return nil, err
	}
	return conn, nil
}

// wait calls fn with each notification on conn until ctx ends or the
// connection fails (Subscribe tells them apart by ctx).
func wait(ctx context.Context, conn *pgx.Conn, fn func(string)) {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		fn(n.Payload)
	}
}
