package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// OutboxID returns the deterministic id of a notification for the given
// parts, e.g. (user, watch, post, kind): the same parts always give the same
// id, so a repeated enqueue is recognised and a receiver can de-duplicate.
func OutboxID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

func dueKey(at time.Time, id string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())), id...)
}

// Enqueue adds a row to the outbox as pending, due now, unless a row with
// its id exists already. It reports whether the row was added.
func (tx *Tx) Enqueue(r OutboxRow) (bool, error) {
	if r.ID == "" || r.Target == "" {
		return false, fmt.Errorf("vault: enqueue: id and target are required")
	}
	b := tx.tx.Bucket(bucketOutbox)
	if b.Get([]byte(r.ID)) != nil {
		return false, nil
	}
	now := tx.Now()
	r.State = OutboxPending
	r.CreatedAt = now
	if r.NextAttempt.IsZero() {
		r.NextAttempt = now
	}
	return true, tx.putOutbox(r, time.Time{})
}

// SealOutboxSecret seals v into r.SealedSecret, bound to r.ID.
func (tx *Tx) SealOutboxSecret(r *OutboxRow, v secret.Value) error {
	env, err := tx.sealString(seal.AD{Kind: "outbox", ID: r.ID, Field: "secret"}, v)
	r.SealedSecret = env
	return err
}

// OpenOutboxSecret opens r.SealedSecret.
func (tx *Tx) OpenOutboxSecret(r OutboxRow) (secret.Value, error) {
	return tx.openString(seal.AD{Kind: "outbox", ID: r.ID, Field: "secret"}, r.SealedSecret)
}

// OutboxRow returns the row with the given id, ErrNotFound, or a
// *DamagedError naming it.
func (tx *Tx) OutboxRow(id string) (OutboxRow, error) {
	return getRecord(tx, bucketOutbox, id, decodeOutboxFast)
}

// PutOutboxRow replaces a row, keeping the due index in step: rows pending
// or retrying are indexed by NextAttempt.
func (tx *Tx) PutOutboxRow(r OutboxRow) error {
	old, err := tx.OutboxRow(r.ID)
	if err != nil {
		return err
	}
	prev := time.Time{}
	if old.State == OutboxPending || old.State == OutboxRetrying {
		prev = old.NextAttempt
	}
	return tx.putOutbox(r, prev)
}

func (tx *Tx) putOutbox(r OutboxRow, prevDue time.Time) error {
	due := tx.tx.Bucket(bucketOutboxDue)
	if !prevDue.IsZero() {
		if err := due.Delete(dueKey(prevDue, r.ID)); err != nil {
			return err
		}
	}
	if r.State == OutboxPending || r.State == OutboxRetrying {
		if err := due.Put(dueKey(r.NextAttempt, r.ID), nil); err != nil {
			return err
		}
	}
	return putJSON(tx.tx.Bucket(bucketOutbox), r.ID, r)
}

// DeleteOutboxRow removes a row (pruning).
func (tx *Tx) DeleteOutboxRow(id string) error {
	r, err := tx.OutboxRow(id)
	if err != nil {
		return err
	}
	if r.State == OutboxPending || r.State == OutboxRetrying {
		if err := tx.tx.Bucket(bucketOutboxDue).Delete(dueKey(r.NextAttempt, r.ID)); err != nil {
			return err
		}
	}
	return tx.tx.Bucket(bucketOutbox).Delete([]byte(id))
}

// DueOutbox calls fn for rows due at or before now, earliest first, until
// fn returns false or limit rows were seen (limit <= 0: no limit). Damaged
// rows, due keys shorter than their 8-byte time and keys of rows that no
// longer exist are skipped (CheckConsistency and FindDamaged report them).
func (tx *Tx) DueOutbox(now time.Time, limit int, fn func(OutboxRow) bool) error {
	c := tx.tx.Bucket(bucketOutboxDue).Cursor()
	end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	n := 0
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			continue
		}
		if bytes.Compare(k[:8], end) > 0 {
			break
		}
		r, err := tx.OutboxRow(string(k[8:]))
		if errors.Is(err, ErrDamaged) || errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		n++
		if !fn(r) || (limit > 0 && n >= limit) {
			return nil
		}
	}
	return nil
}

// NextDue returns when the earliest pending or retrying row is due, and
// false when none is.
func (tx *Tx) NextDue() (time.Time, bool) {
	k, _ := tx.tx.Bucket(bucketOutboxDue).Cursor().First()
	if len(k) < 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), true
}

// Outbox calls fn for every row in id order, skipping damaged ones.
func (tx *Tx) Outbox(fn func(OutboxRow) error) error {
	return scanRecords(tx, bucketOutbox, decodeOutboxFast, fn)
}
