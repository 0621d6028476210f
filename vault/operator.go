package vault

import (
	"bytes"
	"errors"
)

// This file is the store's side of the operator's views that no component
// owns (users and grants listed, the audit trail read) and of recording an
// operator's request in the audit trail. The doors (the status socket,
// the offline subcommands, metrics) call these instead of opening
// transactions of their own.

// ListUsers returns every user, in id order, from one read transaction.
// Damaged records are left out (FindDamaged reports them). Errors: only
// the store's own.
func (db *DB) ListUsers() ([]User, error) {
	var out []User
	err := db.View(func(tx *Tx) error {
		out = nil
		return tx.Users(func(u User) error { out = append(out, u); return nil })
	})
	return out, err
}

// ListGrants returns every grant, its tokens still sealed, in id order,
// from one read transaction. Callers show operators only what is safe
// (never a sealed field). Damaged grants (a record that does not decode,
// a sealed token that does not open) are left out: FindDamaged reports
// them. Errors: only the store's own.
func (db *DB) ListGrants() ([]Grant, error) {
	var out []Grant
	err := db.View(func(tx *Tx) error {
		out = nil
		return tx.Grants(func(g Grant) error {
			if err := tx.grantSealed(g); err != nil {
				tx.db.noteDamaged(err)
				return nil
			}
			out = append(out, g)
			return nil
		})
	})
	return out, err
}

// UserGrants returns the user's grants, one per provider, in provider
// name order, their tokens still sealed, from one read transaction (the
// user_grants index: a prefix scan, not a scan of every grant). Damaged
// grants are left out as ListGrants leaves them out (FindDamaged reports
// them). A user with no grant, or no user, is an empty list. Errors:
// only the store's own.
func (db *DB) UserGrants(userID string) ([]Grant, error) {
	var out []Grant
	err := db.View(func(tx *Tx) error {
		out = nil
		prefix := pair(userID, "")
		c := tx.tx.Bucket(bucketUserGrants).Cursor()
		for k, id := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, id = c.Next() {
			g, err := tx.Grant(string(id))
			if err == nil {
				err = tx.grantSealed(g)
			}
			switch {
			case errors.Is(err, ErrDamaged):
				tx.db.noteDamaged(err)
			case errors.Is(err, ErrNotFound):
				// an index entry without its grant: CheckConsistency's
				// user_grants invariant reports it
			case err != nil:
				return err
			default:
				out = append(out, g)
			}
		}
		return nil
	})
	return out, err
}

// DamagedGrant is a grant ListGrants leaves out because it is damaged,
// as the operator's grants listing shows it: never a token.
type DamagedGrant struct {
	ID string
	// UserID and Provider are whose grant it is and where, from the
	// user_grants index that points at it (the key through which the
	// user's watches find it) or else from what of the record decodes;
	// "" when nothing says.
	UserID, Provider string
	// Problem is what is wrong (DamagedError.Err's text: the sealed
	// refresh token does not open, the record does not decode).
	Problem string
}

// DamagedGrants returns the grants ListGrants leaves out as damaged (a
// record that does not decode, a sealed token that does not open), in id
// order, from one read transaction, checking each grant as FindDamaged
// does but recording and auditing nothing: the operator's grants and
// watches listings show them with the repair. Errors: only the store's
// own.
func (db *DB) DamagedGrants() ([]DamagedGrant, error) {
	var out []DamagedGrant
	err := db.View(func(tx *Tx) error {
		out = nil
		c := tx.tx.Bucket(bucketGrants).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				continue
			}
			g, err := decodeGrant(k, v)
			if err == nil {
				err = tx.grantSealed(g)
			}
			var de *DamagedError
			if !errors.As(err, &de) {
				continue
			}
			d := DamagedGrant{ID: de.ID, UserID: g.UserID, Provider: g.Provider, Problem: de.Err.Error()}
			if user, provider, ok := tx.grantIndex(string(k)); ok {
				d.UserID, d.Provider = user, provider
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// AuditTrail calls fn for every audit event whose sequence number is
// above after, oldest first, from one read transaction (fn sees one
// consistent trail; events appended meanwhile are not seen). An error
// from fn stops the walk and is returned as is; an event that does not
// decode is skipped (FindDamaged reports it).
func (db *DB) AuditTrail(after uint64, fn func(AuditEvent) error) error {
	return db.View(func(tx *Tx) error { return tx.AuditTrail(after, fn) })
}

// RecordAudit appends ev to the audit trail in one read-write
// transaction; its Seq is assigned and a zero Time is set to now. It is
// for what no other method records: an operator's request as the status
// socket received it (or refused it). Changes to records are audited by
// the methods that make them. Errors: only the store's own (a read-only
// vault refuses it); nothing is appended then.
func (db *DB) RecordAudit(ev AuditEvent) error {
	return db.Update(func(tx *Tx) error { return tx.Audit(ev) })
}
