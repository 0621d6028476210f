package vault

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"tagwatch/vault/secret"
)

// This file is the store's side of the delivery loop (notify.Outbox): find
// what is due, read it, open its sealed secret, and record outcomes, many
// per transaction. The loop's rules (the retry schedule, what a failure
// means) live in the notifier; the vault applies the outcomes it is given
// and keeps the due index in step with the rows.
//
// Ordering: rows are due by NextAttempt, earliest first; among rows due at
// the same instant, by id. Nothing here orders deliveries to different
// targets; the notifier does.

// DueOutboxIDs calls fn with the id of each pending or retrying row due at
// or before now, earliest first, in one read transaction, without decoding
// the rows, until fn returns false. It returns when the earliest row due
// after now is due; the zero time when no row is due later or fn stopped
// the scan (more rows may be due now: look again). fn runs inside the
// transaction: it must be quick and must not call the DB.
//
// It is the delivery loop's cheap look at what is due while most due rows
// are already queued in its memory. Errors: only the store's own.
func (db *DB) DueOutboxIDs(now time.Time, fn func(id string) bool) (time.Time, error) {
	var next time.Time
	err := db.View(func(tx *Tx) error {
		next = time.Time{}
		c := tx.tx.Bucket(bucketOutboxDue).Cursor()
		end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
		k, _ := c.First()
		for ; k != nil && (len(k) < 8 || bytes.Compare(k[:8], end) <= 0); k, _ = c.Next() {
			if len(k) < 8 {
				continue // a damaged key: CheckConsistency names it
			}
			if !fn(string(k[8:])) {
				return nil
			}
		}
		if len(k) >= 8 {
			next = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		return nil
	})
	return next, err
}

// LoadOutbox returns the rows with the given ids, in the order asked, from
// one read transaction. Ids without a row (pruned meanwhile) are left out,
// not an error. The rows are whatever state they are in now: a row may
// have been delivered, dropped or replayed since its id was seen due, so
// callers check State and NextAttempt. Damaged rows (a record that does
// not decode, a sealed secret that does not open) are left out too: the
// other rows are delivered, and FindDamaged reports them. Errors: only
// the store's own.
func (db *DB) LoadOutbox(ids []string) ([]OutboxRow, error) {
	var out []OutboxRow
	err := db.View(func(tx *Tx) error {
		out = make([]OutboxRow, 0, len(ids))
		for _, id := range ids {
			r, err := tx.OutboxRow(id)
			if err == nil {
				if err = tx.outboxSealed(r); err != nil {
					tx.db.noteDamaged(err)
				}
			}
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// OutboxTargets returns the target of each row with the given ids, in the
// order asked, from one read transaction, reading only as much of each
// record as it takes to find it (the record's start, where the target is
// stored before the payload): "" for an id without a row, or whose
// record does not give one (damaged: FindDamaged reports it). It is the
// delivery loop's cheap look at which target a due row is for, before it
// decides to read the row; the row LoadOutbox returns is what counts.
// Errors: only the store's own.
func (db *DB) OutboxTargets(ids []string) ([]string, error) {
	var out []string
	err := db.View(func(tx *Tx) error {
		out = make([]string, len(ids))
		b := tx.tx.Bucket(bucketOutbox)
		for i, id := range ids {
			if raw := b.Get([]byte(id)); raw != nil {
				out[i] = peekTarget(raw)
			}
		}
		return nil
	})
	return out, err
}

// OpenOutboxSecret opens the sealed secret of r (a consent link), bound to
// r.ID, with the current keyring, in its own read transaction. A row
// without one gives the zero Value. Errors: seal's (a row sealed under a
// retired key, or tampered with); they never carry the secret.
func (db *DB) OpenOutboxSecret(r OutboxRow) (secret.Value, error) {
	var v secret.Value
	err := db.View(func(tx *Tx) error {
		var err error
		v, err = tx.OpenOutboxSecret(r)
		return err
	})
	return v, err
}

// OutboxOutcome is what happened to one row the delivery loop read: the
// state the row moves to and what to record with it.
type OutboxOutcome struct {
	// ID is the row's id.
	ID string
	// Attempts is the row's Attempts when the loop read it. The outcome
	// applies only while the row still has that count and is pending or
	// retrying; otherwise it was dropped, replayed or settled meanwhile and
	// the outcome is skipped (fencing: a stale outcome never overwrites a
	// newer decision).
	Attempts int
	// State is where the row goes: OutboxDelivered (only after the target
	// accepted it), OutboxRetrying (due again at NextAttempt), OutboxDead
	// or OutboxDropped.
	State OutboxState
	// Sent says an attempt was made: Attempts grows by one. A row dropped
	// without being sent (its target is disabled, its backlog is full)
	// keeps its count.
	Sent bool
	// NextAttempt is when a retrying row is due again. Required for
	// OutboxRetrying, ignored otherwise.
	NextAttempt time.Time
	// Error is recorded as the row's LastError (at most 300 bytes are
	// kept); a delivered row's LastError is cleared. It must carry no
	// secret: the notifier redacts targets out of it.
	Error string
	// Progress is what the target accepted of a row sent as several
	// messages before this attempt failed (OutboxProgress). It is kept
	// for a retrying or dead row (a replay sends the rest) when partial,
	// and cleared otherwise, and for a delivered row.
	Progress OutboxProgress
	// DisableTarget says the target refused the row for good (HTTP 410):
	// every other pending or retrying row for the same target is dropped,
	// and every user concerned is told on their watches' other targets
	// (NoticeTargetDisabled). Use it with State OutboxDropped.
	DisableTarget bool
	// TargetLabel is how the NoticeTargetDisabled rows name the disabled
	// target (notify.TargetLabel: no secret); it is stored as their
	// Notice.Reason.
	TargetLabel string
}

// OutboxSettled is an outcome SettleOutbox recorded.
type OutboxSettled struct {
	// Row is the row as committed.
	Row OutboxRow
	// Dropped counts, for an outcome with DisableTarget, the target's rows
	// that were dropped, this one included.
	Dropped int
	// Told counts, for an outcome with DisableTarget, the
	// NoticeTargetDisabled rows queued for the users concerned.
	Told int
}

// LastErrorMax is how many bytes of an outcome's Error a row keeps.
const LastErrorMax = 300

// droppedGone is the LastError of rows dropped because their target
// answered 410 Gone.
const droppedGone = "target disabled (410 Gone)"

// SettleOutbox records a batch of outcomes in one read-write transaction
// (group commit: one fsync for the batch): all of them or, on error, none.
// Outcomes apply in the order given; each is fenced (see
// OutboxOutcome.Attempts), so an outcome for a row that was pruned,
// dropped, replayed or already settled is skipped without error. It
// returns what it recorded, in order.
//
// Durability: a row is OutboxDelivered only once this transaction has
// committed; a crash before it leaves the row due, and the loop sends it
// again under the same id (at-least-once).
//
// Errors: *InvalidError for an outcome that is not one (an unknown State,
// a retry without NextAttempt, an empty ID); the store's own. Nothing is
// recorded then. An outcome for a row that is damaged (FindDamaged) is
// skipped like one for a pruned row: the rest of the batch is recorded.
func (db *DB) SettleOutbox(outcomes []OutboxOutcome) ([]OutboxSettled, error) {
	for _, o := range outcomes {
		if err := o.check(); err != nil {
			return nil, err
		}
	}
	var out []OutboxSettled
	// Its commit may be shared with other writes of the moment (DB.batch):
	// the run commits that queue notifications, above all.
	err := db.batch(func(tx *Tx) error {
		out = out[:0]
		now := tx.Now()
		for _, o := range outcomes {
			cur, err := tx.OutboxRow(o.ID)
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
				continue // pruned; or damaged since it was read: skipped, the batch stands
			}
			if err != nil {
				return err
			}
			if !cur.waiting() || cur.Attempts != o.Attempts {
				continue
			}
			prevDue := cur.NextAttempt // waiting: its due key
			if o.Sent {
				cur.Attempts++
			}
			cur.State, cur.LastError, cur.Progress = o.State, clipError(o.Error), OutboxProgress{}
			if o.Progress.Partial() && o.State != OutboxDelivered {
				cur.Progress = o.Progress
			}
			switch o.State {
			case OutboxDelivered:
				cur.DeliveredAt, cur.LastError = now, ""
			case OutboxRetrying:
				cur.NextAttempt = o.NextAttempt
			}
			// The row was just read: put it without reading it again.
			if err := tx.putOutbox(cur, prevDue); err != nil {
				return err
			}
			s := OutboxSettled{Row: cur}
			if o.DisableTarget {
				if s.Dropped, s.Told, err = tx.disableTarget(cur, o.TargetLabel, now); err != nil {
					return err
				}
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (o OutboxOutcome) check() error {
	bad := func(format string, args ...any) error {
		return &InvalidError{Object: fmt.Sprintf("outcome of notification %q", o.ID), Err: fmt.Errorf(format, args...)}
	}
	switch {
	case o.ID == "":
		return bad("no id")
	case o.State == OutboxRetrying && o.NextAttempt.IsZero():
		return bad("a retry needs a next attempt")
	case o.DisableTarget && o.State != OutboxDropped:
		return bad("disabling a target drops the row, not %s", o.State)
	}
	switch o.State {
	case OutboxDelivered, OutboxRetrying, OutboxDead, OutboxDropped:
		return nil
	}
	return bad("%q is not a state an attempt ends in", o.State)
}

// waiting reports whether the row is still to be delivered.
func (r OutboxRow) waiting() bool { return r.State == OutboxPending || r.State == OutboxRetrying }

func clipError(s string) string {
	if len(s) <= LastErrorMax {
		return s
	}
	// Cut on a rune boundary so the stored text stays valid UTF-8.
	cut := LastErrorMax
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// disableTarget drops every other waiting row for r's target and queues a
// NoticeTargetDisabled for each user concerned on each other target of
// their watches. It returns the rows dropped (r included) and the notices
// queued.
func (tx *Tx) disableTarget(r OutboxRow, label string, now time.Time) (dropped, told int, err error) {
	var same []OutboxRow
	if err := tx.DueOutbox(time.Unix(0, 1<<62), 0, func(o OutboxRow) bool {
		if o.Target == r.Target && o.ID != r.ID {
			same = append(same, o)
		}
		return true
	}); err != nil {
		return 0, 0, err
	}
	users := []string{r.UserID}
	for _, o := range same {
		o.State, o.LastError = OutboxDropped, droppedGone
		if err := tx.PutOutboxRow(o); err != nil {
			return 0, 0, err
		}
		if !slices.Contains(users, o.UserID) {
			users = append(users, o.UserID)
		}
	}
	for _, u := range users {
		var others []string
		if err := tx.UserWatches(u, func(w Watch) error {
			for _, t := range w.Targets {
				if t != r.Target && !slices.Contains(others, t) {
					others = append(others, t)
				}
			}
			return nil
		}); err != nil {
			return 0, 0, err
		}
		payload, err := json.Marshal(Notice{Type: NoticeTargetDisabled, UserID: u, Target: label, Time: now})
		if err != nil {
			return 0, 0, err
		}
		for _, t := range others {
			added, err := tx.Enqueue(OutboxRow{ID: OutboxID(u, NoticeTargetDisabled, r.Target, t, now.String()),
				Kind: NoticeTargetDisabled, UserID: u, Target: t, Payload: payload})
			if err != nil {
				return 0, 0, err
			}
			if added {
				told++
			}
		}
	}
	return len(same) + 1, told, nil
}
