package vault

import (
	"context"
	"time"

	"tagwatch/vault/kv"
)

// Heartbeat records that this daemon (d, with d.ID set to Holder) is
// alive, in the store's daemon registry (kv.Cluster.Heartbeat), and keeps
// since when its heartbeats have succeeded without a break (SteadyFor).
// A daemon calls it every Lease/3 or more often. Errors: the engine's
// (a lost connection), after which SteadyFor is 0 until the next success.
func (db *DB) Heartbeat(ctx context.Context, d kv.Daemon) error {
	d.ID = db.holder
	if err := db.cluster.Heartbeat(ctx, d); err != nil {
		db.steadySince.Store(0)
		return err
	}
	db.steadySince.CompareAndSwap(0, db.now().UnixNano())
	return nil
}

// SteadyFor returns how long this daemon's heartbeats have succeeded
// without a break (0: the last failed, or none yet). A daemon that has
// itself been cut off from the store cannot tell a dead holder from a
// live one that was cut off with it: it takes over another holder's
// refresh marker only once it has been steady for a whole Lease, so a
// live holder has had that lease to write its outcome (BeginRefresh).
func (db *DB) SteadyFor() time.Duration {
	s := db.steadySince.Load()
	if s == 0 {
		return 0
	}
	return db.now().Sub(time.Unix(0, s))
}

// Shared reports whether the store is shared by several processes (an
// engine with its own kv.Cluster, PostgreSQL), rather than owned by this
// one (bbolt).
func (db *DB) Shared() bool { return db.shared }
