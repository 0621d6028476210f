package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// AuditUserDeleted is the audit kind of a user's data deleted
// (DeleteUser).
const AuditUserDeleted = "user_deleted"

// UserDeletion asks DeleteUser to delete a user and everything kept for
// them.
type UserDeletion struct {
	// Actor names who asks, for the audit trail.
	Actor string
	// Rules are the providers' revocation rules by provider name
	// (provider.Provider.Revocation, as UnenrollGrant's callers pass it):
	// each live grant's refresh token is queued for revocation at its
	// provider, or left to expire, by its provider's rule. A provider
	// missing here has the zero rule: nothing is revoked there, and the
	// audit trail says so.
	Rules map[string]RevocationRule
}

// DeleteUserOutcome is what DeleteUser did.
type DeleteUserOutcome struct {
	// User is the user as it was.
	User User
	// Grants are the user's grants that were live, as unenrolled
	// (revoked, no tokens).
	Grants []Grant
	// RevocationIDs name the pending revocations queued for the live
	// grants' refresh tokens: revoke and settle them as after
	// UnenrollGrant (the revocation worker retries them anyway).
	RevocationIDs []string
	// Watches, Links and Notifications count what was deleted: the
	// user's watches (with their cursors and seen indexes), consent
	// links (of any purpose and state) and outbox rows (in any state).
	Watches, Links, Notifications int
	// Notices is how many NoticeAccountDeleted rows were queued: one per
	// target the user's watches had.
	Notices int
}

// DeleteUser deletes a user and everything tagwatch keeps for them, in
// one transaction:
//   - every grant of the user that is not revoked is unenrolled as
//     UnenrollGrant does it (the same code): its refresh token queued for
//     revocation at the provider by d.Rules[provider] or left to expire,
//     tokens dropped, audited; no NoticeRevoked (the confirmation below
//     says it all). A revoked grant a pending revocation still waits for
//     is kept until SettleRevocation (or DropRevocation) deletes it, with
//     its account scrubbed (no subject, issuer, username, scopes or
//     audience: only its id, user and provider remain, and leave the
//     sign-in index); every other grant of the user is deleted now.
//   - every watch of the user is deleted with its cursor and seen index;
//     every consent link of the user (any purpose, any state); every
//     outbox row of the user (any state); the rate-limit windows kept for
//     the user's grants; the user's record with its sign-ins (and their
//     sign-in index entries).
//   - a NoticeAccountDeleted (facts: UserID, Time) is queued once for
//     each target the user's watches had, under a deterministic id: the
//     confirmation the user is sent, through the outbox, atomically with
//     the deletion. These rows are the only records of the user left,
//     with the pending revocations; PruneOutbox deletes them once settled
//     and old. The door needs nothing more to tell the user.
//   - the audit trail records the unenrolls and one AuditUserDeleted with
//     what was deleted (counts, no target, no token). Earlier audit
//     entries naming the user are kept: the trail is append-only.
//
// In flight meanwhile: a run of a deleted watch commits nothing
// (CommitRun: *NotFoundError); a refresh of a deleted or revoked grant is
// fenced off (its token answer is dropped, as after UnenrollGrant: a
// caller that must not race a refresh takes the renewal lock of each
// grant first, as renew.Manager.Unenroll does); a consent flow of a
// deleted link is refused (*NotFoundError) and its tokens discarded by
// the consent pages; an outbox row the delivery loop is sending may still
// reach its target, and its outcome is then skipped (SettleOutbox skips
// rows that no longer exist).
//
// Errors: *NotFoundError naming the user; *DamagedError when the user's
// record or one of its grants is damaged (delete it first with
// DeleteDamaged). On any error nothing changes.
func (db *DB) DeleteUser(userID string, d UserDeletion) (DeleteUserOutcome, error) {
	var out DeleteUserOutcome
	err := db.Update(func(tx *Tx) error {
		out = DeleteUserOutcome{}
		u, err := tx.User(userID)
		if errors.Is(err, ErrNotFound) {
			return notFound("user", userID)
		}
		if err != nil {
			return err
		}
		out.User = u
		now := tx.Now()

		var watches []Watch
		var targets []string
		if err := tx.UserWatches(userID, func(w Watch) error {
			watches = append(watches, w)
			for _, t := range w.Targets {
				if !slices.Contains(targets, t) {
					targets = append(targets, t)
				}
			}
			return nil
		}); err != nil {
			return err
		}

		// Grants: the user's, in any state (a revoked one replaced by a
		// new consent is no longer indexed by user and provider).
		var grants []Grant
		if err := tx.Grants(func(g Grant) error {
			if g.UserID == userID {
				grants = append(grants, g)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.userGrantsDamaged(userID); err != nil {
			return err
		}
		for _, g := range grants {
			if g.State == GrantRevoked {
				continue
			}
			rule := d.Rules[g.Provider]
			un, err := tx.unenroll(g, Unenroll{Actor: d.Actor, Revoke: rule.Endpoint, EndsAccount: rule.EndsAccount,
				Why: orWhy(rule.Why, "no revocation rule was given for the provider")}, false)
			if err != nil {
				return err
			}
			out.Grants = append(out.Grants, un.Grant)
			if un.RevocationID != "" {
				out.RevocationIDs = append(out.RevocationIDs, un.RevocationID)
			}
		}
		waiting := map[string]bool{}
		if err := tx.Revocations(func(r Revocation) error {
			if r.Cause != RevocationReplaced {
				waiting[r.GrantID] = true
			}
			return nil
		}); err != nil {
			return err
		}
		kept := 0
		for _, g := range grants {
			g, err := tx.Grant(g.ID) // as unenrolled
			if err != nil {
				return err
			}
			if !waiting[g.ID] {
				if err := tx.DeleteGrant(g.ID); err != nil {
					return err
				}
				continue
			}
			kept++
			g.Issuer, g.Subject, g.Username, g.Scopes, g.IDTokenAudience = "", "", "", nil, nil
			if err := tx.PutGrant(g); err != nil {
				return err
			}
		}

		for _, w := range watches {
			if err := tx.DeleteWatch(w.ID); err != nil {
				return err
			}
		}
		out.Watches = len(watches)

		var links []string
		if err := tx.Enrollments(func(e Enrollment) error {
			if e.UserID == userID {
				links = append(links, e.Hash)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, h := range links {
			if err := tx.DeleteEnrollment(h); err != nil {
				return err
			}
		}
		out.Links = len(links)

		var rows []string
		if err := tx.Outbox(func(r OutboxRow) error {
			if r.UserID == userID {
				rows = append(rows, r.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range rows {
			if err := tx.DeleteOutboxRow(id); err != nil {
				return err
			}
		}
		out.Notifications = len(rows)

		if err := tx.deleteRateWindows(userID, grants); err != nil {
			return err
		}
		if err := tx.deleteUser(u); err != nil {
			return err
		}

		payload, err := json.Marshal(Notice{Type: NoticeAccountDeleted, UserID: userID, Time: now})
		if err != nil {
			return err
		}
		for _, t := range targets {
			added, err := tx.Enqueue(OutboxRow{ID: OutboxID(userID, NoticeAccountDeleted, t, now.Format(time.RFC3339Nano)),
				Kind: NoticeAccountDeleted, UserID: userID, Target: t, Payload: payload})
			if err != nil {
				return err
			}
			if added {
				out.Notices++
			}
		}
		return tx.Audit(AuditEvent{Kind: AuditUserDeleted, Actor: d.Actor, UserID: userID,
			Detail: fmt.Sprintf("user deleted: %s unenrolled (%s queued), %s deleted, %d kept until revoked at the provider; "+
				"%s, %s, %s and %s deleted; confirmation queued to %s",
				count(len(out.Grants), "grant", "grants"), count(len(out.RevocationIDs), "revocation", "revocations"),
				count(len(grants)-kept, "grant", "grants"), kept, count(out.Watches, "watch", "watches"),
				count(out.Links, "consent link", "consent links"), count(len(u.SignIns), "sign-in", "sign-ins"),
				count(out.Notifications, "notification", "notifications"), count(out.Notices, "target", "targets"))})
	})
	if err != nil {
		return DeleteUserOutcome{}, err
	}
	return out, nil
}

// userGrantsDamaged returns the *DamagedError of the first grant the
// user_grants index names for userID whose record does not decode: the
// scans skip it, and deleting the user around it would orphan it.
func (tx *Tx) userGrantsDamaged(userID string) error {
	prefix := pair(userID, "")
	c := tx.tx.Bucket(bucketUserGrants).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if _, err := tx.Grant(string(v)); errors.Is(err, ErrDamaged) {
			return err
		}
	}
	return nil
}

// deleteRateWindows deletes the rate-limit windows kept for the user's
// grants (SaveRateWindows): keyed by grant id, naming the user.
func (tx *Tx) deleteRateWindows(userID string, grants []Grant) error {
	b := tx.tx.Bucket(bucketRateWindows)
	if b == nil {
		return nil
	}
	var stale [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		var w RateWindow
		if json.Unmarshal(v, &w) != nil {
			return nil
		}
		if w.UserID == userID || (w.Kind == WindowRateLimit && slices.ContainsFunc(grants, func(g Grant) bool { return g.ID == w.Key })) {
			stale = append(stale, slices.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
