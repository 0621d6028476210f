package pgkv

import (
	"context"
	"fmt"
	"strings"
)

// Replication is what the server says of its replication, read at start:
// a lost commit at failover would lose a rotated refresh token, whose
// next use then revokes the user's whole token family at the provider
// (RFC 9700 §4.14.2, refresh token rotation), so a standby must confirm
// every commit before the daemon is told it is durable.
type Replication struct {
	// SynchronousCommit is synchronous_commit (on, remote_apply,
	// remote_write, local, off).
	SynchronousCommit string
	// SynchronousStandbyNames is synchronous_standby_names ("" when no
	// standby is synchronous).
	SynchronousStandbyNames string
	// Standbys counts the standbys streaming from this server now
	// (pg_stat_replication), SyncStandbys those of them that are
	// synchronous (sync_state sync or quorum).
	Standbys, SyncStandbys int
}

// ReadReplication reads the server's replication settings and state.
// Errors: the queries' (a role that may not read pg_stat_replication
// sees its rows without state: counted as standbys, not synchronous).
// Source: PostgreSQL 15 documentation, 27.2.8 "Synchronous Replication"
// and 28.2.3 pg_stat_replication.
func (e *Engine) ReadReplication(ctx context.Context) (Replication, error) {
	var r Replication
	if err := e.pool.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names')").
		Scan(&r.SynchronousCommit, &r.SynchronousStandbyNames); err != nil {
		return r, fmt.Errorf("pgkv: read replication settings: %w", err)
	}
	if err := e.pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')) FROM pg_stat_replication").
		Scan(&r.Standbys, &r.SyncStandbys); err != nil {
		return r, fmt.Errorf("pgkv: read pg_stat_replication: %w", err)
	}
	return r, nil
}

// Risk says, in one sentence for the operator, why an acknowledged commit
// could be lost at a failover, or "" when it cannot be by what the server
// says: no standby at all (a failover has nothing to promote), or
// synchronous standbys named, at least one of them streaming, and
// synchronous_commit on or remote_apply (remote_write leaves it in the
// standby's memory only, local and off do not wait for the standby).
func (r Replication) Risk() string {
	if r.Standbys == 0 && strings.TrimSpace(r.SynchronousStandbyNames) == "" {
		return ""
	}
	switch {
	case strings.TrimSpace(r.SynchronousStandbyNames) == "":
		return fmt.Sprintf("%d standby(s) stream from this server but synchronous_standby_names is empty: commits are asynchronous, and a failover can lose a rotated refresh token", r.Standbys)
	case r.SynchronousCommit != "on" && r.SynchronousCommit != "remote_apply":
		return fmt.Sprintf("synchronous_commit is %s: a commit is acknowledged before a standby has it durably, and a failover can lose a rotated refresh token", r.SynchronousCommit)
	case r.SyncStandbys == 0:
		return "synchronous_standby_names is set but no synchronous standby is streaming now: commits wait for one (writes stall) until it is back"
	}
	return ""
}
