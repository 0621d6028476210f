package vault

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// This file is the store's side of outbox maintenance and of the
// operator's views of the outbox: pruning, backlog caps, replay, counts
// and listings. The notifier decides when and with which limits; these
// methods apply them.

// Audit kinds of outbox changes.
const (
	// AuditOutboxReplayed: an operator replayed a dead or dropped row.
	AuditOutboxReplayed = "outbox_replayed"
)

// ReplayOutbox puts a dead or dropped row back in the queue under the
// same id, due now, with a fresh retry schedule (Attempts 0, LastError
// cleared), and appends an audit entry naming actor, in one read-write
// transaction. It returns the row as committed.
//
// Errors: *NotFoundError (`notification "x" does not exist`);
// *TransitionError when the row is pending, retrying or delivered (only
// dead or dropped ones are replayed); the store's own. Nothing changes then.
func (db *DB) ReplayOutbox(id, actor string) (OutboxRow, error) {
	var r OutboxRow
	err := db.Update(func(tx *Tx) error {
		r = OutboxRow{}
		var err error
		if r, err = tx.outboxRow(id); err != nil {
			return err
		}
		if r.State != OutboxDead && r.State != OutboxDropped {
			return &TransitionError{Kind: "notification", ID: id, Action: "replay", State: string(r.State),
				Why: "only dead or dropped ones are replayed"}
		}
		was := r.State
		r.State, r.Attempts, r.NextAttempt, r.LastError = OutboxPending, 0, tx.Now(), ""
		if err := tx.PutOutboxRow(r); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditOutboxReplayed, Actor: actor, UserID: r.UserID,
			Detail: fmt.Sprintf("notification %s (%s) was %s", r.ID, r.Kind, was)})
	})
	if err != nil {
		return OutboxRow{}, err
	}
	return r, nil
}

// outboxRow is Tx.OutboxRow with a *NotFoundError that names the row.
func (tx *Tx) outboxRow(id string) (OutboxRow, error) {
	r, err := tx.OutboxRow(id)
	if errors.Is(err, ErrNotFound) {
		return OutboxRow{}, notFound("notification", id)
	}
	return r, err
}

// OutboxRow returns the row with id, from one read transaction.
// Errors: *NotFoundError (`notification "x" does not exist`).
func (db *DB) OutboxRow(id string) (OutboxRow, error) {
	var r OutboxRow
	err := db.View(func(tx *Tx) error {
		var err error
		r, err = tx.outboxRow(id)
		return err
	})
	return r, err
}

// Enqueue adds rows to the outbox, pending and due at once (or at their
// NextAttempt when set), in one read-write transaction: all or none. A row
// whose id is in the outbox already is left as it is (a repeated enqueue
// is a no-op). It returns how many rows were added. Producers that enqueue
// as part of a larger change (a run, a consent) use Tx.Enqueue in that
// change's transaction instead. Errors: a row without id or target; the
// store's own.
func (db *DB) Enqueue(rows ...OutboxRow) (int, error) {
	n := 0
	// The commit may be shared with other writes of the moment (DB.batch).
	err := db.batch(func(tx *Tx) error {
		n = 0
		for _, r := range rows {
			added, err := tx.Enqueue(r)
			if err != nil {
				return err
			}
			if added {
				n++
			}
		}
		return nil
	})
	return n, err
}

// pruneBatch bounds the rows one pruning transaction deletes, so a prune
// never holds the write lock for long.
const pruneBatch = 1000

// PruneOutbox deletes rows delivered before cutoff and rows dropped (by
// CreatedAt) before cutoff. It reads the candidates in one read
// transaction and deletes them in read-write transactions of at most 1000
// rows each, checking each row again inside (a row replayed meanwhile is
// kept). Each batch is atomic; the whole is not: after an error, the
// batches before it stay deleted. It returns how many rows were deleted.
func (db *DB) PruneOutbox(cutoff time.Time) (int, error) {
	old := func(r OutboxRow) bool {
		return (r.State == OutboxDelivered && r.DeliveredAt.Before(cutoff)) ||
			(r.State == OutboxDropped && r.CreatedAt.Before(cutoff))
	}
	var ids []string
	if err := db.View(func(tx *Tx) error {
		ids = nil
		return tx.Outbox(func(r OutboxRow) error {
			if old(r) {
				ids = append(ids, r.ID)
			}
			return nil
		})
	}); err != nil {
		return 0, err
	}
	deleted := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), pruneBatch)]
		n := 0
		err := db.Update(func(tx *Tx) error {
			n = 0
			for _, id := range batch {
				r, err := tx.OutboxRow(id)
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
					continue // damaged since the scan: left to FindDamaged
				}
				if err != nil {
					return err
				}
				if !old(r) {
					continue
				}
				if err := tx.DeleteOutboxRow(id); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += n
		ids = ids[len(batch):]
	}
	return deleted, nil
}

// OutboxBacklog is one target whose waiting rows exceeded the cap.
type OutboxBacklog struct {
	// Target is the raw target: show it only through notify.TargetLabel.
	Target string
	// Waiting is how many rows were pending or retrying for it.
	Waiting int
	// Dropped is how many of them, the newest, DropOutboxBacklog dropped.
	Dropped int
}

// DropOutboxBacklog caps every target at maxWaiting waiting (pending or
// retrying) rows: the newest rows (by CreatedAt, then id) beyond it are
// dropped with reason as their LastError. It reads the waiting rows in one
// read transaction and drops each target's excess in one read-write
// transaction, checking each row again inside (a row delivered meanwhile
// is kept). It returns the targets that were over the cap, sorted by
// target; a target not returned is at or under it. maxWaiting < 1 is an
// *InvalidError.
func (db *DB) DropOutboxBacklog(maxWaiting int, reason string) ([]OutboxBacklog, error) {
	if maxWaiting < 1 {
		return nil, &InvalidError{Object: "outbox backlog cap", Err: fmt.Errorf("must be at least 1, got %d", maxWaiting)}
	}
	type ref struct {
		id      string
		created time.Time
	}
	var byTarget map[string][]ref
	if err := db.View(func(tx *Tx) error {
		byTarget = map[string][]ref{}
		// No target can be over the cap while all of them together are
		// not: count the due index, which reads no row, before reading
		// the waiting rows (this runs every minute, backlog or not).
		waiting, c := 0, tx.tx.Bucket(bucketOutboxDue).Cursor()
		for k, _ := c.First(); k != nil && waiting <= maxWaiting; k, _ = c.Next() {
			waiting++
		}
		if waiting <= maxWaiting {
			return nil
		}
		return tx.DueOutbox(time.Unix(0, 1<<62), 0, func(r OutboxRow) bool {
			byTarget[r.Target] = append(byTarget[r.Target], ref{r.ID, r.CreatedAt})
			return true
		})
	}); err != nil {
		return nil, err
	}
	var out []OutboxBacklog
	for t, refs := range byTarget {
		if len(refs) <= maxWaiting {
			continue
		}
		sort.Slice(refs, func(i, j int) bool {
			if !refs[i].created.Equal(refs[j].created) {
				return refs[i].created.Before(refs[j].created)
			}
			return refs[i].id < refs[j].id
		})
		excess := refs[maxWaiting:]
		n := 0
		err := db.Update(func(tx *Tx) error {
			n = 0
			for _, x := range excess {
				r, err := tx.OutboxRow(x.id)
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
					continue // damaged since the scan: left to FindDamaged
				}
				if err != nil {
					return err
				}
				if !r.waiting() {
					continue
				}
				r.State, r.LastError = OutboxDropped, clipError(reason)
				if err := tx.PutOutboxRow(r); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		out = append(out, OutboxBacklog{Target: t, Waiting: len(refs), Dropped: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// OutboxTally counts one target's rows by state.
type OutboxTally struct {
	// Target is the raw target: show it only through notify.TargetLabel.
	Target    string
	Pending   int
	Retrying  int
	Dead      int
	Dropped   int
	Delivered int
	// OldestWaiting is the CreatedAt of the oldest pending or retrying
	// row; zero when none waits.
	OldestWaiting time.Time
}

// OutboxTallies counts every target's rows by state, from one read
// transaction, sorted by target. It reads every row: it is for operators
// and metrics, not for hot paths. Damaged rows are not counted
// (FindDamaged reports them). Errors: only the store's own.
func (db *DB) OutboxTallies() ([]OutboxTally, error) {
	var by map[string]*OutboxTally
	err := db.View(func(tx *Tx) error {
		by = map[string]*OutboxTally{}
		return tx.Outbox(func(r OutboxRow) error {
			t := by[r.Target]
			if t == nil {
				t = &OutboxTally{Target: r.Target}
				by[r.Target] = t
			}
			switch r.State {
			case OutboxPending:
				t.Pending++
			case OutboxRetrying:
				t.Retrying++
			case OutboxDead:
				t.Dead++
			case OutboxDropped:
				t.Dropped++
			case OutboxDelivered:
				t.Delivered++
			}
			if r.waiting() && (t.OldestWaiting.IsZero() || r.CreatedAt.Before(t.OldestWaiting)) {
				t.OldestWaiting = r.CreatedAt
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]OutboxTally, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// ListOutbox returns the rows in state (every state when state is ""),
// oldest first (by CreatedAt, then id), at most limit of them (limit <= 0:
// all), from one read transaction. The rows carry their payloads and
// sealed secrets; callers show operators only what is safe. Errors:
// *InvalidError for a state that is not one of the OutboxState values.
func (db *DB) ListOutbox(state OutboxState, limit int) ([]OutboxRow, error) {
	switch state {
	case "", OutboxPending, OutboxRetrying, OutboxDelivered, OutboxDead, OutboxDropped:
	default:
		return nil, &InvalidError{Object: "outbox listing", Err: fmt.Errorf("state %q is not pending, retrying, delivered, dead or dropped", state)}
	}
	var out []OutboxRow
	err := db.View(func(tx *Tx) error {
		out = nil
		return tx.Outbox(func(r OutboxRow) error {
			if state == "" || r.State == state {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
