package vault

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"tagwatch/vault/secret"
)

// This file holds what becomes of a refresh token tagwatch stops needing
// while the provider may still honour it: the token a second consent
// replaces (CommitConsent), the token of an unenrolled grant whose account
// another grant still uses (UnenrollGrant), and a queued revocation that
// would now end a live grant (DropRevocation). The provider's rule decides
// (RevocationRule); each decision is audited in the transaction that makes
// it.

// RevocationRule is what revoking one refresh token ends at a provider:
// provider.Provider.Revocation says it for each configured provider (the
// same three fields), and the callers of CommitConsent and UnenrollGrant
// pass it on.
type RevocationRule struct {
	// Endpoint: the provider has a revocation endpoint (RFC 7009).
	Endpoint bool
	// EndsAccount: revoking any one token ends every token the client holds
	// for that account (X). A token is then revoked only while no other
	// grant at the provider holds the same account; otherwise it is left to
	// expire unused.
	EndsAccount bool
	// Why says what a revocation ends, for the audit trail.
	Why string
}

// RevocationCause says why a pending revocation was queued.
type RevocationCause string

// Causes of pending revocations.
const (
	// RevocationUnenrolled: the grant was unenrolled (records written
	// before causes existed have none and are this).
	RevocationUnenrolled RevocationCause = ""
	// RevocationReplaced: a new consent replaced the grant's refresh
	// token; the grant itself lives on (active, with the new token).
	RevocationReplaced RevocationCause = "replaced"
)

// Audit kinds of this file.
const (
	// AuditRevocationQueued: a replaced refresh token was queued for
	// revocation at the provider.
	AuditRevocationQueued = "revocation_queued"
	// AuditRevocationSkipped: a refresh token tagwatch no longer needs was
	// not revoked at the provider, and why (it would end a live grant, or
	// the provider cannot revoke).
	AuditRevocationSkipped = "revocation_skipped"
	// AuditWatchKept: a consent link's watch was already the user's; it
	// was kept and no second one created.
	AuditWatchKept = "watch_kept"
	// AuditAccountSwitched: a consent moved a user's grant to another
	// account, as the link's expected identity asked.
	AuditAccountSwitched = "grant_account_switched"
)

// liveAccountGrants returns, in id order, the ids of the grants at
// provider, other than except, that are not revoked and hold a refresh
// token of account subject: the grants a revocation that ends the whole
// account would end too.
func (tx *Tx) liveAccountGrants(provider, subject, except string) ([]string, error) {
	var ids []string
	if subject == "" {
		return nil, nil
	}
	err := tx.Grants(func(g Grant) error {
		if g.Provider == provider && g.Subject == subject && g.ID != except && g.State != GrantRevoked && len(g.SealedRefresh) > 0 {
			ids = append(ids, g.ID)
		}
		return nil
	})
	return ids, err
}

// LiveAccountGrants returns, in id order, the ids of the grants at
// provider, other than except, that are not revoked and hold a refresh
// token of account subject, from one read transaction: what revoking a
// token of that account ends at a provider whose revocation ends the
// whole account (RevocationRule.EndsAccount). An empty subject has none.
// Errors: only the store's own.
func (db *DB) LiveAccountGrants(provider, subject, except string) ([]string, error) {
	var ids []string
	err := db.View(func(tx *Tx) error {
		var err error
		ids, err = tx.liveAccountGrants(provider, subject, except)
		return err
	})
	return ids, err
}

// mayRevoke says whether a refresh token of account subject at provider
// may be revoked under rule, with except the grant it belongs to (or
// ""), and why not when it may not.
func (tx *Tx) mayRevoke(rule RevocationRule, provider, subject, except string) (bool, string, error) {
	if !rule.Endpoint {
		return false, orWhy(rule.Why, "no revocation rule was given for the provider"), nil
	}
	if !rule.EndsAccount {
		return true, "", nil
	}
	live, err := tx.liveAccountGrants(provider, subject, except)
	if err != nil || len(live) == 0 {
		return err == nil, "", err
	}
	return false, fmt.Sprintf("%s, which would end grant %s too", orWhy(rule.Why, "revoking ends the account's other tokens"),
		strings.Join(live, ", ")), nil
}

func orWhy(why, def string) string {
	if why == "" {
		return def
	}
	return why
}

// retireReplaced decides the fate of the refresh token rt of account
// subject that a consent through link replaced in grant g (stored
// already, with the new token): queued for revocation at the provider
// when rule allows it (RevocationReplaced), left alone otherwise; audited
// either way. It returns the pending revocation's id, or why it was not
// revoked.
func (tx *Tx) retireReplaced(g Grant, subject string, rt secret.RefreshToken, rule RevocationRule, actor string, link Enrollment) (id, why string, err error) {
	ok, why, err := tx.mayRevoke(rule, g.Provider, subject, g.ID)
	if err != nil {
		return "", "", err
	}
	if ok && rule.EndsAccount && subject == g.Subject {
		// The account's new grant is g itself.
		ok, why = false, orWhy(rule.Why, "revoking ends the account's other tokens")
	}
	if !ok {
		return "", why, tx.Audit(AuditEvent{Kind: AuditRevocationSkipped, Actor: actor, UserID: g.UserID, GrantID: g.ID,
			Detail: "replaced refresh token not revoked: " + why + "; it expires unused"})
	}
	now := tx.Now()
	id = NewID()
	if err := tx.PutRevocation(Revocation{ID: id, Provider: g.Provider, GrantID: g.ID, Subject: subject, Cause: RevocationReplaced,
		NextAttempt: now, CreatedAt: now}, rt); err != nil {
		return "", "", err
	}
	return id, "", tx.Audit(AuditEvent{Kind: AuditRevocationQueued, Actor: actor, UserID: g.UserID, GrantID: g.ID,
		Detail: fmt.Sprintf("refresh token replaced by %s link %s queued for revocation %s at provider %s (%s)",
			link.Purpose, link.ID, id, g.Provider, orWhy(rule.Why, "revocation per grant"))})
}

// DropRevocation deletes pending revocation id without revoking its token
// at the provider, and audits why (AuditRevocationSkipped), in one
// transaction: the revocation worker found that revoking it now would end
// a live grant (RevocationRule.EndsAccount, and another grant holds the
// account since it was queued). A revoked grant it was the last to wait
// for is deleted, as SettleRevocation does. Errors: *NotFoundError.
func (db *DB) DropRevocation(id, actor, why string) error {
	return db.closeRevocation(id, func(r Revocation) AuditEvent {
		return AuditEvent{Kind: AuditRevocationSkipped, Actor: actor, GrantID: r.GrantID,
			Detail: fmt.Sprintf("%s refresh token not revoked at provider %s: %s; it expires unused", r.Cause.text(), r.Provider, why)}
	})
}

// closeRevocation deletes pending revocation id, the revoked grant it was
// the last to wait for (deleteRevokedGrant), and records the audit event
// ev gives, in one transaction. Errors: *NotFoundError.
func (db *DB) closeRevocation(id string, ev func(Revocation) AuditEvent) error {
	return db.Update(func(tx *Tx) error {
		r, err := tx.revocation(id)
		if err != nil {
			return err
		}
		if err := tx.DeleteRevocation(r.ID); err != nil {
			return err
		}
		if err := tx.deleteRevokedGrant(r); err != nil {
			return err
		}
		return tx.Audit(ev(r))
	})
}

// deleteRevokedGrant deletes the grant of settled revocation r when r was
// an unenroll's, the grant is still revoked (a new consent may have
// replaced it meanwhile) and no other revocation waits for it. A replaced
// token's revocation leaves its grant alone: the grant lives on.
func (tx *Tx) deleteRevokedGrant(r Revocation) error {
	if r.Cause == RevocationReplaced {
		return nil
	}
	g, err := tx.Grant(r.GrantID)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
		return nil // gone, or damaged: an operator's to delete (DeleteDamaged)
	}
	if err != nil || g.State != GrantRevoked {
		return err
	}
	waiting := false
	if err := tx.Revocations(func(o Revocation) error {
		waiting = waiting || (o.ID != r.ID && o.GrantID == g.ID && o.Cause != RevocationReplaced)
		return nil
	}); err != nil || waiting {
		return err
	}
	return tx.DeleteGrant(g.ID)
}

// text names the cause in audit details.
func (c RevocationCause) text() string {
	if c == RevocationReplaced {
		return "replaced"
	}
	return "unenrolled grant's"
}

// keptWatchDetail says which watch a consent link kept instead of
// creating a second one.
func keptWatchDetail(w Watch, link Enrollment) string {
	return fmt.Sprintf("%s link %s names the same watch as the user's %s (since %s): kept, no second watch created",
		link.Purpose, link.ID, watchDetail(w), w.CreatedAt.UTC().Format(time.RFC3339))
}
