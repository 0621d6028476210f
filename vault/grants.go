package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"tagwatch/vault/secret"
)

// This file is the refresh protocol's side of the store (RT-01, RT-02,
// RT-04, RT-05 in SECURITY.md): every change to a grant that renewal makes
// is one method here, one fsynced transaction each, and none does network
// I/O. The protocol, as vault/renew runs it for one grant while holding
// the grant's lock:
//
//	t := BeginRefresh(id)          commit the in-flight marker (tx 1)
//	... call the token endpoint with t.Refresh, outside any transaction ...
//	CommitRefresh(t, result)       new tokens and expiry, marker cleared (tx 2)
//	  or RecordRefreshFailure(t, f)  transient: counters, marker kept or cleared
//	  or MarkNeedsReconsent(id, r)   dead grant: terminal, the user is told
//
// Only after CommitRefresh returns is the new access token used (RT-01).
// Unenroll's local part and the pending revocations it leaves are here
// too.

// NeedsConsentError says that a grant cannot be used until its user
// consents again: it is needs_reconsent or revoked. errors.Is(err,
// ErrNeedsConsent) is true for it.
type NeedsConsentError struct {
	GrantID string
	State   GrantState
}

func (e *NeedsConsentError) Error() string {
	return fmt.Sprintf("grant %s needs a new consent (it is %s)", e.GrantID, e.State)
}

// Is makes errors.Is(err, ErrNeedsConsent) true.
func (e *NeedsConsentError) Is(target error) bool { return target == ErrNeedsConsent }

// grant is Tx.Grant with a *NotFoundError that names the grant.
func (tx *Tx) grant(id string) (Grant, error) {
	g, err := tx.Grant(id)
	if errors.Is(err, ErrNotFound) {
		return Grant{}, notFound("grant", id)
	}
	return g, err
}

// Grant returns the grant with id, its tokens still sealed. Errors:
// *NotFoundError; *DamagedError (ErrDamaged) when its record does not
// decode or a sealed token does not open.
func (db *DB) Grant(id string) (Grant, error) {
	var g Grant
	err := db.View(func(tx *Tx) error {
		var err error
		if g, err = tx.grant(id); err != nil {
			return err
		}
		return tx.grantSealed(g)
	})
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// UserGrant returns the user's grant at provider. Errors: *NotFoundError
// naming the pair; *DamagedError as Grant.
func (db *DB) UserGrant(userID, provider string) (Grant, error) {
	var g Grant
	err := db.View(func(tx *Tx) error {
		var err error
		g, err = tx.UserGrant(userID, provider)
		if errors.Is(err, ErrNotFound) {
			return notFound("grant", userID+" at "+provider)
		}
		if err != nil {
			return err
		}
		return tx.grantSealed(g)
	})
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// GrantTokens returns the grant with id and its tokens, opened. The tokens
// exist in memory only; never log them. Errors: *NotFoundError;
// *DamagedError (ErrDamaged, and seal.ErrOpen when a sealed token does
// not open) naming the grant.
func (db *DB) GrantTokens(id string) (Grant, Tokens, error) {
	var (
		g   Grant
		tok Tokens
	)
	err := db.View(func(tx *Tx) error {
		var err error
		if g, err = tx.grant(id); err != nil {
			return err
		}
		tok, err = tx.OpenTokens(g)
		return err
	})
	return g, tok, err
}

// RefreshTicket is a refresh in flight, from BeginRefresh to the call that
// records its outcome. It is a fence: the outcome is stored only while the
// grant still holds the refresh token the ticket was issued for.
type RefreshTicket struct {
	// Grant is the grant as BeginRefresh committed it (marker set).
	Grant Grant
	// Refresh is the refresh token to present to the token endpoint.
	Refresh secret.RefreshToken
	// Retry is set when BeginRefresh found a marker already there: the
	// outcome of an earlier request with this token is unknown (a crash,
	// a lost response), and this request is the retry RT-04 allows.
	Retry bool
	// Fence is opaque to callers: the backend that issued the ticket sets
	// it and compares it when the outcome is recorded (bbolt: the hex
	// SHA-256 of the sealed refresh token the ticket was issued for).
	// Pass the ticket back unchanged. It is exported so that a backend in
	// another package can issue tickets.
	Fence string
}

// BeginRefresh is tx 1 of a refresh: it commits the in-flight marker
// (Grant.RefreshInFlight = now, Grant.RefreshHolder = this daemon's
// Holder) and returns the refresh token to use.
//
// A marker already there is either a refresh in flight now or one whose
// outcome is unknown (in doubt: a crash, a lost response). Only the latter
// may be retried with the stored refresh token: presenting a refresh token
// that a live holder is rotating at this moment is refresh-token reuse,
// which a provider with rotation takes as a replay and answers by
// revoking the whole token family (RFC 6749 §10.4; OAuth 2.0 Security
// BCP, RFC 9700 §4.14.2). The rule, from the issue "a marker left by a
// dead holder treated as in doubt":
//
//   - On a store this process owns (bbolt: Shared false) every marker is
//     in doubt at once: no other process can hold one.
//   - A marker of this daemon (a ticket whose outcome was never recorded)
//     or of no daemon (RecordRefreshFailure with KeepMarker handed it
//     over; a marker written before markers named their holder) is in
//     doubt at once.
//   - A daemon marks a refresh on a shared store only while its own
//     heartbeat is recorded (ErrNoHeartbeat otherwise), so that a marker's
//     holder is in the registry while its request may be in flight.
//   - A marker of another daemon on a shared store is that daemon's live
//     refresh unless both its holder is not alive (no heartbeat for a
//     Lease in the daemon registry: kv.Cluster.Alive) and this daemon has
//     itself been steady for a whole Lease (SteadyFor; after an outage of
//     the store every heartbeat is stale, and a live holder must first
//     have had the lease to write its outcome). A live holder's marker
//     gives a *RefreshBusyError (ErrRefreshBusy) and changes nothing:
//     wait, read the grant again, and use what that refresh stores.
//
// A marker in doubt makes the ticket a Retry, and the first such retry is
// counted (Grant.LostRotations, InFlightRetried, an AuditLostRotation
// entry); the marker becomes this daemon's. Fencing: two tickets issued
// for one refresh token (a retry of a marker in doubt) both exist, and at
// most one of them can commit (see CommitRefresh). Errors:
// *NotFoundError; *NeedsConsentError when the grant is not active;
// *RefreshBusyError; ErrNoHeartbeat on a shared store while this
// daemon's heartbeat is not recorded (none yet, or the last one failed:
// the others would soon take its marker for a dead holder's); an error
// when it holds no refresh token, or when the daemon registry cannot be
// read.
func (db *DB) BeginRefresh(id, actor string) (RefreshTicket, error) {
	if db.shared && db.steadySince.Load() == 0 {
		return RefreshTicket{}, fmt.Errorf("vault: begin a refresh of grant %s as daemon %s: %w", id, db.holder, ErrNoHeartbeat)
	}
	// The registry is read outside the transaction (a closure may run
	// more than once, and must not wait on the network): a run that finds
	// another daemon's marker it has no verdict on returns needVerdict,
	// rolled back, and runs again once the verdict is in. A verdict is
	// for one marker (holder and start), so a marker replaced meanwhile
	// is judged anew.
	verdicts := map[markerKey]verdict{}
	for run := 0; ; run++ {
		t, err := db.beginRefresh(id, actor, verdicts)
		var nv needVerdict
		if !errors.As(err, &nv) {
			return t, err
		}
		if run == maxVerdicts {
			// The marker changed at every run: other daemons are at work
			// on the grant.
			return RefreshTicket{}, &RefreshBusyError{GrantID: id, Holder: nv.holder, Since: nv.since, Alive: true}
		}
		v, err := db.judge(nv.holder)
		if err != nil {
			return RefreshTicket{}, fmt.Errorf("vault: begin a refresh of grant %s: is daemon %s, which holds its refresh, alive? %w", id, nv.holder, err)
		}
		verdicts[nv.markerKey] = v
	}
}

// maxVerdicts bounds how many markers one BeginRefresh judges; each one
// after the first means another daemon changed the marker meanwhile.
const maxVerdicts = 4

// markerKey names one in-flight marker: its holder and its start.
type markerKey struct {
	holder string
	since  int64
}

// verdict is what the daemon registry said of a marker's holder.
type verdict struct {
	alive, inDoubt bool
}

// needVerdict rolls back a run of BeginRefresh that found another
// daemon's marker it has no verdict on.
type needVerdict struct {
	markerKey
	since time.Time
}

func (needVerdict) Error() string { return "vault: the refresh marker's holder must be judged" }

// judge decides whether holder's marker is in doubt (BeginRefresh): the
// holder is not alive and this daemon has been steady for a whole lease.
func (db *DB) judge(holder string) (verdict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), db.lease)
	defer cancel()
	alive, err := db.cluster.Alive(ctx, holder, db.lease)
	if err != nil {
		return verdict{}, err
	}
	return verdict{alive: alive, inDoubt: !alive && db.SteadyFor() >= db.lease}, nil
}

// beginRefresh is one try of BeginRefresh with the verdicts known so far.
func (db *DB) beginRefresh(id, actor string, verdicts map[markerKey]verdict) (RefreshTicket, error) {
	var t RefreshTicket
	err := db.Update(func(tx *Tx) error {
		// A run again (DB.Update) must not keep Retry from a run that
		// found a marker another daemon's commit has cleared since.
		t = RefreshTicket{}
		g, err := tx.grant(id)
		if err != nil {
			return err
		}
		if g.State != GrantActive {
			return &NeedsConsentError{GrantID: g.ID, State: g.State}
		}
		tok, err := tx.OpenTokens(g)
		if err != nil {
			return err
		}
		if tok.Refresh.IsZero() {
			return fmt.Errorf("grant %s has no refresh token", g.ID)
		}
		if !g.RefreshInFlight.IsZero() {
			detail := "a refresh's outcome was lost (crash or timeout); retrying once with the stored refresh token"
			if h := g.RefreshHolder; db.shared && h != "" && h != db.holder {
				k := markerKey{holder: h, since: g.RefreshInFlight.UnixNano()}
				v, ok := verdicts[k]
				if !ok {
					return needVerdict{markerKey: k, since: g.RefreshInFlight}
				}
				if !v.inDoubt {
					return &RefreshBusyError{GrantID: g.ID, Holder: h, Since: g.RefreshInFlight, Alive: v.alive}
				}
				detail = "daemon " + h + " stopped during a refresh (no heartbeat for a lease), its outcome unknown; retrying once with the stored refresh token"
			}
			t.Retry = true
			if !g.InFlightRetried {
				g.InFlightRetried = true
				g.LostRotations++
				if err := tx.Audit(AuditEvent{Kind: AuditLostRotation, Actor: actor, UserID: g.UserID, GrantID: g.ID,
					Detail: detail}); err != nil {
					return err
				}
			}
		}
		g.RefreshInFlight, g.RefreshHolder = tx.Now(), db.holder
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		t.Grant, t.Refresh, t.Fence = g, tok.Refresh, refreshFence(g)
		return nil
	})
	return t, err
}

// refreshFence is the fence of a ticket issued for g: the hex SHA-256 of
// its sealed refresh token, which changes with every rotation (a fresh
// nonce each sealing), every re-consent and every unenroll.
func refreshFence(g Grant) string {
	h := sha256.Sum256(g.SealedRefresh)
	return hex.EncodeToString(h[:])
}

// GrantTokensChannel is the notification channel (kv.Cluster.Publish)
// on which a daemon announces that a grant's tokens changed, once the
// change is committed: a refresh (CommitRefresh), a consent that renewed
// the grant, a grant ended (MarkNeedsReconsent, UnenrollGrant,
// DeleteUser). The payload is the grant's id, nothing secret. Every other
// daemon drops what it caches of the grant (vault/renew
// FollowInvalidations) and reads the vault at its next use, instead of
// serving an access token the grant no longer holds until a 401 tells
// it. Notifications are delivered at most once and lost for a daemon not
// connected then, so a subscriber drops everything after reconnecting.
const GrantTokensChannel = "tagwatch_grant_tokens"

// publishTimeout bounds the announcement of a change (GrantTokensChannel).
const publishTimeout = 5 * time.Second

// tokensChanged announces on GrantTokensChannel that grant id's tokens
// changed, after this transaction commits (never for a run rolled back or
// run again). A failed announcement is logged, and the commit stands.
func (tx *Tx) tokensChanged(id string) {
	db := tx.db
	tx.afterCommit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		defer cancel()
		if err := db.cluster.Publish(ctx, GrantTokensChannel, id); err != nil {
			db.log.Warn("cannot tell the other daemons that a grant's tokens changed; they use the access token they cache until it is refused or expires",
				"grant", id, "err", err)
		}
	})
}

// fenced returns the grant of a ticket for an outcome to be recorded, or a
// *TransitionError when the grant moved on since BeginRefresh: another
// refresh committed (the refresh token changed), the grant was ended
// (needs_reconsent, revoked), or its marker was cleared.
func (tx *Tx) fenced(t RefreshTicket, action string) (Grant, error) {
	g, err := tx.grant(t.Grant.ID)
	if err != nil {
		return Grant{}, err
	}
	if g.State != GrantActive || g.RefreshInFlight.IsZero() || refreshFence(g) != t.Fence {
		return Grant{}, &TransitionError{Kind: "grant", ID: g.ID, Action: action, State: string(g.State),
			Why: "another refresh, a re-consent or an unenroll changed the grant since this refresh began"}
	}
	return g, nil
}

// RefreshResult is what the token endpoint answered to a refresh.
type RefreshResult struct {
	// Access is the new access token; Expiry its absolute expiry (a
	// response without expires_in gets a short one from the provider
	// package, never none: RT-09).
	Access secret.AccessToken
	Expiry time.Time
	// Refresh is the rotated refresh token; zero keeps the one presented.
	Refresh secret.RefreshToken
	// Scopes are the scopes granted, or nil when the answer named none.
	Scopes []string
}

// CommitRefresh is tx 2 of a refresh: the new tokens, sealed, with the
// absolute expiry, the marker cleared, the refresh counted and the error
// counters reset, in one fsynced transaction. It returns the grant as
// stored. Use the new access token only after it returns nil (RT-01).
// Errors: *TransitionError (ErrConflict) when the ticket is fenced off
// (see BeginRefresh), with nothing stored; *NotFoundError.
func (db *DB) CommitRefresh(t RefreshTicket, r RefreshResult) (Grant, error) {
	var out Grant
	err := db.Update(func(tx *Tx) error {
		out = Grant{}
		g, err := tx.fenced(t, "commit a refresh of")
		if err != nil {
			return err
		}
		old, err := tx.OpenTokens(g)
		if err != nil {
			return err
		}
		next := Tokens{Refresh: old.Refresh, Access: r.Access}
		if !r.Refresh.IsZero() {
			next.Refresh = r.Refresh
		}
		if err := tx.SealTokens(&g, next); err != nil {
			return err
		}
		g.AccessExpiry = r.Expiry
		g.RefreshInFlight, g.RefreshHolder, g.InFlightRetried = time.Time{}, "", false
		g.RefreshCount++
		g.LastRefreshAt = tx.Now()
		g.TransientErrors, g.LastErrorClass, g.LastErrorAt = 0, "", time.Time{}
		if r.Scopes != nil {
			g.Scopes = r.Scopes
		}
		out = g
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		tx.tokensChanged(g.ID)
		return nil
	})
	return out, err
}

// RefreshFailure is a refresh that failed without ending the grant
// (RT-06): a transient error or an operator's problem.
type RefreshFailure struct {
	// Class is the provider error class, stored as Grant.LastErrorClass.
	Class string
	// KeepMarker leaves the in-flight marker set: the request was sent
	// and its outcome is unknown, so the next attempt is a retry.
	KeepMarker bool
	// Alert, when set, is recorded in the audit trail as an operator
	// alert (the provider refuses tagwatch's client: RT-06).
	Alert string
	// Actor names who records it in the audit trail.
	Actor string
}

// RecordRefreshFailure counts a failed refresh (TransientErrors,
// LastErrorClass, LastErrorAt) and clears the marker unless f.KeepMarker,
// in one transaction; the grant's state never changes here. A ticket
// fenced off (see BeginRefresh) records nothing and returns the
// *TransitionError (ErrConflict). Errors: *NotFoundError too.
func (db *DB) RecordRefreshFailure(t RefreshTicket, f RefreshFailure) error {
	return db.Update(func(tx *Tx) error {
		g, err := tx.fenced(t, "record a failed refresh of")
		if err != nil {
			return err
		}
		if f.KeepMarker {
			// No request is in flight any more; its outcome is unknown:
			// whichever daemon refreshes next makes the one retry.
			g.RefreshHolder = ""
		} else {
			g.RefreshInFlight, g.RefreshHolder, g.InFlightRetried = time.Time{}, "", false
		}
		g.TransientErrors++
		g.LastErrorClass, g.LastErrorAt = f.Class, tx.Now()
		if f.Alert != "" {
			if err := tx.Audit(AuditEvent{Kind: AuditGrantState, Actor: f.Actor, UserID: g.UserID, GrantID: g.ID,
				Detail: "operator alert: " + f.Alert}); err != nil {
				return err
			}
		}
		return tx.PutGrant(g)
	})
}

// Reconsent asks MarkNeedsReconsent to end a grant's active life.
type Reconsent struct {
	// Reason is the cause, stored as Grant.LastErrorClass and carried by
	// the notice ("dead_grant", "lost_rotation", "scope_reduced: ...").
	Reason string
	// KeepTokens keeps the sealed tokens (they still work, e.g. the scope
	// shrank), so an unenroll can still revoke them.
	KeepTokens bool
	// LinkPrefix is what the re-consent link's token is appended to:
	// <PublicURL>/enroll/. Required.
	LinkPrefix string
	// LinkTTL is the link's lifetime; default DefaultLinkTTL.
	LinkTTL time.Duration
	// Actor names who decides, for the link and the audit trail.
	Actor string
}

// defaults returns r with its zero fields defaulted (LinkTTL:
// DefaultLinkTTL), or an error naming op ("vault: op: no link prefix")
// when r.LinkPrefix, which has no default, is empty.
func (r Reconsent) defaults(op string) (Reconsent, error) {
	if r.LinkPrefix == "" {
		return r, fmt.Errorf("vault: %s: no link prefix", op)
	}
	if r.LinkTTL <= 0 {
		r.LinkTTL = DefaultLinkTTL
	}
	return r, nil
}

// ReconsentOutcome is what MarkNeedsReconsent did.
type ReconsentOutcome struct {
	// Changed is false when the grant was not active (nothing was done).
	Changed bool
	// Grant is the grant as stored.
	Grant Grant
	// Link is the re-consent link created (its token is only in the
	// queued notices, sealed).
	Link Enrollment
	// Notices is how many NoticeReconsent rows were queued (one per
	// target of the user's watches at the provider).
	Notices int
}

// MarkNeedsReconsent ends an active grant's active life (RT-05), in one
// transaction: the grant moves to needs_reconsent (Grant.SetState) with
// r.Reason, its marker cleared and, unless r.KeepTokens, its tokens
// dropped; the user's watches at its provider are suspended
// (SuspendNeedsReconsent); a one-time re-consent link bound to the grant's
// subject is created; a NoticeReconsent (facts: Provider, Hashtags,
// Reason) is queued for every target of those watches with the link
// sealed in the row; and the audit trail records it. A grant that is not
// active is left alone (Changed false). Errors: *NotFoundError; an error
// when r.LinkPrefix is empty.
func (db *DB) MarkNeedsReconsent(grantID string, r Reconsent) (ReconsentOutcome, error) {
	var out ReconsentOutcome
	r, err := r.defaults("mark needs_reconsent")
	if err != nil {
		return out, err
	}
	err = db.Update(func(tx *Tx) error {
		// A run again (DB.Update) must not keep Changed, Link and
		// Notices from a run that found the grant still active.
		out = ReconsentOutcome{}
		g, err := tx.grant(grantID)
		if err != nil {
			return err
		}
		out.Grant = g
		if g.State != GrantActive {
			return nil
		}
		link, notices, targets, err := tx.toNeedsReconsent(&g, r)
		if err != nil {
			return err
		}
		out.Changed, out.Grant, out.Link, out.Notices = true, g, link, notices
		return tx.Audit(AuditEvent{Kind: AuditGrantState, Actor: r.Actor, UserID: g.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("active -> needs_reconsent (%s); re-consent link %s queued to %s", r.Reason, link.ID,
				count(targets, "target", "targets"))})
	})
	if err != nil {
		return ReconsentOutcome{}, err
	}
	return out, nil
}

// toNeedsReconsent moves g to needs_reconsent (Grant.SetState) with
// r.Reason as its last error, clears its in-flight marker, drops its
// tokens unless r.KeepTokens, stores it and queues the re-consent
// (queueReconsent, whose results it returns): MarkNeedsReconsent's and
// ResetDamagedGrant's common end of a grant's active life. g is updated
// as stored.
func (tx *Tx) toNeedsReconsent(g *Grant, r Reconsent) (Enrollment, int, int, error) {
	now := tx.Now()
	if _, err := g.SetState(GrantNeedsReconsent, now); err != nil {
		return Enrollment{}, 0, 0, err
	}
	g.LastErrorClass, g.LastErrorAt = r.Reason, now
	g.RefreshInFlight, g.RefreshHolder, g.InFlightRetried = time.Time{}, "", false
	if !r.KeepTokens {
		g.SealedRefresh, g.SealedAccess, g.AccessExpiry = nil, nil, time.Time{}
	}
	if err := tx.PutGrant(*g); err != nil {
		return Enrollment{}, 0, 0, err
	}
	tx.tokensChanged(g.ID)
	return tx.queueReconsent(*g, r, now)
}

// queueReconsent is the part of MarkNeedsReconsent after the grant is
// stored needs_reconsent (also DB.ResetDamagedGrant's): the user's
// watches at its provider are suspended, a re-consent link bound to the
// grant's subject is created and a NoticeReconsent with the link sealed
// in the row is queued for every target of those watches. It returns the
// link, how many notices were added and how many targets there are.
func (tx *Tx) queueReconsent(g Grant, r Reconsent, now time.Time) (Enrollment, int, int, error) {
	targets, hashtags, err := tx.suspendUserWatches(g.UserID, g.Provider, SuspendNeedsReconsent)
	if err != nil {
		return Enrollment{}, 0, 0, err
	}
	token, link, err := tx.CreateEnrollment(Enrollment{Purpose: PurposeReconsent, UserID: g.UserID, Provider: g.Provider,
		Expected: g.Subject, GrantID: g.ID, CreatedBy: r.Actor, ExpiresAt: now.Add(r.LinkTTL)})
	if err != nil {
		return Enrollment{}, 0, 0, err
	}
	payload, err := json.Marshal(Notice{Type: NoticeReconsent, UserID: g.UserID, Provider: g.Provider, Hashtags: hashtags,
		Reason: r.Reason, Time: now})
	if err != nil {
		return Enrollment{}, 0, 0, err
	}
	url := secret.New(r.LinkPrefix + token)
	notices := 0
	for _, t := range targets {
		row := OutboxRow{ID: OutboxID(g.UserID, link.ID, t, NoticeReconsent), Kind: NoticeReconsent,
			UserID: g.UserID, Target: t, Payload: payload}
		if err := tx.SealOutboxSecret(&row, url); err != nil {
			return Enrollment{}, 0, 0, err
		}
		added, err := tx.Enqueue(row)
		if err != nil {
			return Enrollment{}, 0, 0, err
		}
		if added {
			notices++
		}
	}
	return link, notices, len(targets), nil
}

// Unenroll asks UnenrollGrant to end a grant.
type Unenroll struct {
	// Actor names who asks, for the audit trail.
	Actor string
	// Revoke queues the refresh token for revocation at the provider (RFC
	// 7009); leave it unset when the provider has no revocation endpoint.
	Revoke bool
	// EndsAccount says that revoking one token ends every token the
	// client holds for the account (RevocationRule.EndsAccount, X): the
	// token is then not revoked while another grant at the provider holds
	// the same account (users sharing one), and the audit trail says so
	// with Why.
	EndsAccount bool
	Why         string
}

// UnenrollOutcome is what UnenrollGrant did.
type UnenrollOutcome struct {
	// Grant is the grant as stored (revoked, no tokens).
	Grant Grant
	// Changed is false when the grant was revoked already (nothing was
	// done).
	Changed bool
	// RevocationID names the pending revocation queued, "" when none was
	// (no refresh token, or Revoke unset). Settle it with
	// SettleRevocation or DeferRevocation.
	RevocationID string
}

// UnenrollGrant is an unenroll's local part, in one transaction: the
// grant's refresh token is queued, sealed, for revocation at the provider
// (when u.Revoke and there is one); the grant moves to revoked
// (Grant.SetState), its tokens and marker dropped; every watch of the user
// at its provider is suspended (SuspendRevoked; a paused one keeps it
// pending); a NoticeRevoked (facts: Provider, Hashtags) is queued for
// their targets; and the audit trail records it. The provider is not
// called here: revoke the queued token after this returns, and settle it.
// The grant's account stays a way for the user to sign in to their page
// (bound as a User.SignIns identity, as a sign-in link binds one), so
// that revoking tagwatch's access does not lock them out of the page that
// shows their waiting watches and gives access again; DeleteUser removes
// it with the user. A grant revoked already is left alone (Changed
// false). Errors: *NotFoundError.
func (db *DB) UnenrollGrant(grantID string, u Unenroll) (UnenrollOutcome, error) {
	var out UnenrollOutcome
	err := db.Update(func(tx *Tx) error {
		out = UnenrollOutcome{}
		g, err := tx.grant(grantID)
		if err != nil {
			return err
		}
		if out, err = tx.unenroll(g, u, true); err != nil || !out.Changed {
			return err
		}
		return tx.keepSignIn(g)
	})
	if err != nil {
		return UnenrollOutcome{}, err
	}
	return out, nil
}

// unenroll is UnenrollGrant's work on grant g inside a transaction (also
// DeleteUser's, for each of the user's grants): the refresh token queued
// for revocation by u's rule, the grant revoked with its tokens dropped,
// the user's watches at its provider suspended, and, when notify is set,
// a NoticeRevoked queued for their targets; audited. A grant revoked
// already is left alone (Changed false).
func (tx *Tx) unenroll(g Grant, u Unenroll, notify bool) (UnenrollOutcome, error) {
	out := UnenrollOutcome{Grant: g}
	now := tx.Now()
	changed, err := g.SetState(GrantRevoked, now)
	if err != nil || !changed {
		return out, err
	}
	tok, err := tx.OpenTokens(g)
	if err != nil {
		return out, err
	}
	queued := "no revocation at the provider (no endpoint or no token)"
	if u.Revoke && !tok.Refresh.IsZero() {
		ok, why, err := tx.mayRevoke(RevocationRule{Endpoint: true, EndsAccount: u.EndsAccount, Why: u.Why}, g.Provider, g.Subject, g.ID)
		if err != nil {
			return out, err
		}
		if ok {
			out.RevocationID = NewID()
			if err := tx.PutRevocation(Revocation{ID: out.RevocationID, Provider: g.Provider, GrantID: g.ID, Subject: g.Subject,
				NextAttempt: now, CreatedAt: now}, tok.Refresh); err != nil {
				return out, err
			}
			queued = "revocation at the provider queued"
		} else {
			queued = "refresh token not revoked at the provider: " + why + "; it expires unused"
		}
	}
	g.SealedRefresh, g.SealedAccess, g.AccessExpiry = nil, nil, time.Time{}
	g.RefreshInFlight, g.RefreshHolder, g.InFlightRetried = time.Time{}, "", false
	if err := tx.PutGrant(g); err != nil {
		return out, err
	}
	tx.tokensChanged(g.ID)
	targets, hashtags, err := tx.suspendUserWatches(g.UserID, g.Provider, SuspendRevoked)
	if err != nil {
		return out, err
	}
	if notify {
		payload, err := json.Marshal(Notice{Type: NoticeRevoked, UserID: g.UserID, Provider: g.Provider, Hashtags: hashtags, Time: now})
		if err != nil {
			return out, err
		}
		for _, t := range targets {
			if _, err := tx.Enqueue(OutboxRow{ID: OutboxID(g.UserID, g.ID, t, NoticeRevoked, now.Format(time.RFC3339Nano)),
				Kind: NoticeRevoked, UserID: g.UserID, Target: t, Payload: payload}); err != nil {
				return out, err
			}
		}
	}
	out.Grant, out.Changed = g, true
	return out, tx.Audit(AuditEvent{Kind: AuditGrantRevoked, Actor: u.Actor, UserID: g.UserID, GrantID: g.ID,
		Detail: "unenrolled; tokens deleted locally, " + queued})
}

// revocation is Tx.Revocation with a *NotFoundError that names it.
func (tx *Tx) revocation(id string) (Revocation, error) {
	r, err := tx.Revocation(id)
	if errors.Is(err, ErrNotFound) {
		return Revocation{}, notFound("pending revocation", id)
	}
	return r, err
}

// PendingRevocation returns a pending revocation and the refresh token it
// holds, opened. Errors: *NotFoundError (it was settled meanwhile);
// *DamagedError when it does not decode or its token does not open.
func (db *DB) PendingRevocation(id string) (Revocation, secret.RefreshToken, error) {
	var (
		r  Revocation
		rt secret.RefreshToken
	)
	err := db.View(func(tx *Tx) error {
		var err error
		if r, err = tx.revocation(id); err != nil {
			return err
		}
		if rt, err = tx.OpenRevocation(r); err != nil {
			return tx.revocationSealed(r)
		}
		return nil
	})
	return r, rt, err
}

// DueRevocations returns the ids of the pending revocations due at or
// before now, in id order, from one read transaction. Errors: only the
// store's own.
func (db *DB) DueRevocations(now time.Time) ([]string, error) {
	var due []string
	err := db.View(func(tx *Tx) error {
		due = nil
		return tx.Revocations(func(r Revocation) error {
			if tx.revocationSealed(r) != nil {
				return nil // damaged: FindDamaged reports it
			}
			if !r.NextAttempt.After(now) {
				due = append(due, r.ID)
			}
			return nil
		})
	})
	return due, err
}

// SettleRevocation records that the provider revoked the token of pending
// revocation id, in one transaction: the record is deleted, and so is an
// unenrolled grant when it is still revoked (a new consent may have
// replaced it meanwhile) and no other revocation waits for it (a replaced
// token's revocation, RevocationReplaced, leaves its grant alone); the
// audit trail records it. Errors: *NotFoundError.
func (db *DB) SettleRevocation(id, actor string) error {
	return db.closeRevocation(id, func(r Revocation) AuditEvent {
		return AuditEvent{Kind: AuditGrantRevoked, Actor: actor, GrantID: r.GrantID,
			Detail: r.Cause.text() + " refresh token revoked at provider " + r.Provider + " (revocation " + r.ID + ")"}
	})
}

// DeferRevocation records a failed attempt of pending revocation id: the
// next attempt is at next, and Attempts grows when counted (an attempt cut
// short by shutdown is not counted). It returns the record as stored.
// Errors: *NotFoundError.
func (db *DB) DeferRevocation(id string, next time.Time, counted bool) (Revocation, error) {
	var r Revocation
	err := db.Update(func(tx *Tx) error {
		r = Revocation{}
		var err error
		if r, err = tx.revocation(id); err != nil {
			return err
		}
		if counted {
			r.Attempts++
		}
		r.NextAttempt = next
		return tx.PutRevocation(r, secret.RefreshToken{})
	})
	return r, err
}

// keepSignIn binds revoked grant g's account to its user as a sign-in
// identity (User.SignIns), unless one is bound already, so that the
// account still signs the user in to their page once the grant is
// deleted (UserBySignIn). A grant with no account, or whose user is gone,
// binds nothing; nor does an account that signs in another user too (an
// X account users share: a bound sign-in belongs to one user, and such
// an account signs nobody in while it is shared).
func (tx *Tx) keepSignIn(g Grant) error {
	if g.Subject == "" {
		return nil
	}
	users, err := tx.signInUsers(g.Provider, g.Issuer, g.Subject)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(users, func(u string) bool { return u != g.UserID }) {
		return nil
	}
	usr, err := tx.User(g.UserID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	si := SignIn{Provider: g.Provider, Issuer: g.Issuer, Subject: g.Subject, Username: g.Username, BoundAt: tx.Now()}
	if slices.ContainsFunc(usr.SignIns, func(b SignIn) bool { return linkEntry(usr.ID, b) == linkEntry(usr.ID, si) }) {
		return nil
	}
	usr.SignIns = append(usr.SignIns, si)
	return tx.PutUser(usr)
}
