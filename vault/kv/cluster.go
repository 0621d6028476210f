package kv

import (
	"context"
	"time"
)

// Cluster is what several daemons sharing one engine need beyond its
// transactions: claims on units of work, each with a lease that expires
// (a watch's run, an outbox row's delivery); a registry of the daemons
// with their heartbeats; one-time flow state (a consent started on one
// daemon and finished on another); and notifications to every daemon. An
// engine that several processes open at once implements it (pgkv, in
// its own tables beside the buckets, on the database's clock). A
// single-process engine (bbolt: its file lock admits one process) gets
// LocalCluster, the same rules in memory.
//
// Times are the cluster's clock (PostgreSQL's now()), so daemons on
// machines whose clocks disagree still agree on every lease. Methods are
// safe for concurrent use; each is one atomic step.
type Cluster interface {
	// Claim takes the claim on work (c.Kind, c.ID) for c.Holder until
	// c.Lease has passed, and reports whether it did. It succeeds when
	// no claim exists; when c.Holder already holds it (its lease is then
	// extended and its round set to c.Round); or when the claim's lease
	// has ended (expired, or released) and either its round is older
	// than c.Round or its work was not done (a holder that died, or gave
	// the work back). A round finished (Release with done) is never
	// claimed again for the same round: a daemon that fires the same
	// round of a watch late finds it done and skips it.
	Claim(ctx context.Context, c Claim) (bool, error)
	// Release ends holder's claim on (kind, id), if holder still holds
	// it: done records that its round's work finished; !done lets any
	// daemon take the same round at once. Releasing a claim held by
	// another holder, or none, is not an error and changes nothing.
	Release(ctx context.Context, kind, id, holder string, done bool) error
	// Heartbeat records that daemon d is alive now, creating its entry
	// at its first call (d.Heartbeat and d.Holds are ignored), and
	// removes the entries of daemons silent for DaemonRetention (killed
	// long ago: a restarted daemon has a new id).
	Heartbeat(ctx context.Context, d Daemon) error
	// Alive reports whether daemon id's last heartbeat is less than
	// lease ago (false for a daemon never seen or that left).
	Alive(ctx context.Context, id string, lease time.Duration) (bool, error)
	// Leave removes daemon id's entry and releases its claims undone,
	// at a clean stop.
	Leave(ctx context.Context, id string) error
	// Daemons lists every daemon's entry, oldest start first, with the
	// claims each holds now (lease not ended) counted by kind.
	Daemons(ctx context.Context) ([]Daemon, error)
	// PutFlow stores one-time flow state (opaque, sealed by the caller)
	// under key until expires; a key already there is replaced.
	PutFlow(ctx context.Context, key string, value []byte, expires time.Time) error
	// TakeFlow returns the state under key and deletes it in the same
	// step, so that of several daemons taking one key at once exactly
	// one gets it; ok is false for a key never put, taken, or expired.
	TakeFlow(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Publish sends payload on channel to every daemon subscribed to it,
	// this one included (PostgreSQL NOTIFY: delivered at most once, in
	// order per sender, lost for a daemon not connected then).
	Publish(ctx context.Context, channel, payload string) error
	// Subscribe calls fn with each payload published on channel until ctx
	// ends, reconnecting after a lost connection (reconnected, when set,
	// is called after each reconnection: what was published meanwhile
	// was lost, so the subscriber drops what it caches). It returns
	// ctx's error.
	Subscribe(ctx context.Context, channel string, fn func(payload string), reconnected func()) error
}

// DaemonRetention is how long a daemon that stopped sending heartbeats
// without leaving (killed, its machine lost) stays listed, as dead.
const DaemonRetention = time.Hour

// Claimer is the part of a Cluster that shares units of work: what a
// component that runs them needs (the worker's watch runs, the
// notifier's deliveries). See Cluster for the rules.
type Claimer interface {
	Claim(ctx context.Context, c Claim) (bool, error)
	Release(ctx context.Context, kind, id, holder string, done bool) error
}

// Claim is a request for the claim on one unit of work.
type Claim struct {
	// Kind names the work's namespace ("watch", "outbox"); ID the unit.
	Kind, ID string
	// Round orders the work's repetitions: a watch's scheduled fire time
	// in Unix nanoseconds, an outbox row's attempt count.
	Round int64
	// Holder is the claiming daemon's id.
	Holder string
	// Lease is how long the claim holds without a Release; > 0.
	Lease time.Duration
}

// Daemon is one daemon's entry in the registry.
type Daemon struct {
	ID   string
	Host string
	PID  int
	// Version is the daemon's build version.
	Version string
	// Started is when it started; Heartbeat when it last said it was
	// alive (the cluster's clock).
	Started, Heartbeat time.Time
	// Holds counts the claims it holds now, by kind.
	Holds map[string]int
}

// ClusterOf returns e's Cluster when e implements one (an engine several
// processes share), else nil.
func ClusterOf(e Engine) Cluster {
	c, _ := e.(Cluster)
	return c
}
