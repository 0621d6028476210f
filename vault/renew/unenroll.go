package renew

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// Unenroll ends a grant: locally at once (tokens deleted, state revoked,
// the user's watches at that provider suspended, the user told), and at the
// provider by revoking the refresh token (RFC 7009). When the provider
// cannot be reached the revocation stays queued, sealed, and Run retries
// it; the local part never waits for it.
func (m *Manager) Unenroll(ctx context.Context, grantID, actor string) error {
	unlock, err := m.locker.Lock(ctx, grantID)
	if err != nil {
		return err
	}
	defer unlock()
	var g vault.Grant
	var revID string
	err = m.db.Update(func(tx *vault.Tx) error {
		var err error
		if g, err = tx.Grant(grantID); err != nil {
			return err
		}
		tok, err := tx.OpenTokens(g)
		if err != nil {
			return err
		}
		p, _, ok := m.provider(g.Provider)
		if !tok.Refresh.IsZero() && ok && p.HasRevocation() {
			revID = vault.NewID()
			if err := tx.PutRevocation(vault.Revocation{ID: revID, Provider: g.Provider, GrantID: g.ID, NextAttempt: m.now(), CreatedAt: m.now()}, tok.Refresh); err != nil {
				return err
			}
		}
		now := m.now()
		g.State, g.StateSince = vault.GrantRevoked, now
		g.SealedRefresh, g.SealedAccess, g.AccessExpiry = nil, nil, time.Time{}
		g.RefreshInFlight, g.InFlightRetried = time.Time{}, false
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		targets, _, err := suspendWatches(tx, g, "revoked", true)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(vault.Notice{Type: vault.NoticeRevoked, UserID: g.UserID, Provider: g.Provider, Time: now,
			Message: "tagwatch's access was revoked and your watches stopped."})
		if err != nil {
			return err
		}
		for _, t := range targets {
			if _, err := tx.Enqueue(vault.OutboxRow{ID: vault.OutboxID(g.UserID, g.ID, t, vault.NoticeRevoked, now.String()), Kind: vault.NoticeRevoked,
				UserID: g.UserID, Target: t, Payload: payload}); err != nil {
				return err
			}
		}
		return tx.Audit(vault.AuditEvent{Kind: vault.AuditGrantRevoked, Actor: actor, UserID: g.UserID, GrantID: g.ID,
			Detail: "unenrolled; tokens deleted locally, revocation at the provider queued"})
	})
	if err != nil {
		return fmt.Errorf("renew: unenroll %s: %w", grantID, err)
	}
	e := m.entry(grantID)
	e.cur.Store(nil)
	e.dead.Store(true)
	m.emit(Event{Kind: EventRevoked, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider})
	if revID != "" {
		if err := m.revokeOne(ctx, revID); err != nil {
			m.log.Warn("revocation at the provider failed; will retry", "grant", grantID, "provider", g.Provider, "err", err)
		}
	}
	return nil
}

// suspendWatches suspends the user's watches at g's provider with reason:
// the active ones, or every one when all is set (the user left). It
// returns their notification targets, once each, and their hashtags.
func suspendWatches(tx *vault.Tx, g vault.Grant, reason string, all bool) (targets, hashtags []string, err error) {
	err = tx.UserWatches(g.UserID, func(w vault.Watch) error {
		if w.Provider != g.Provider {
			return nil
		}
		for _, t := range w.Targets {
			if !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
		hashtags = append(hashtags, w.Hashtags...)
		if !all && w.State != vault.WatchActive {
			return nil
		}
		w.State, w.SuspendReason = vault.WatchSuspended, reason
		return tx.PutWatch(w)
	})
	return targets, hashtags, err
}

// revokeOne tries one pending revocation; on success the record and the
// grant are deleted, on failure the next attempt is scheduled.
func (m *Manager) revokeOne(ctx context.Context, id string) error {
	var r vault.Revocation
	var rtok vault.Tokens
	err := m.db.View(func(tx *vault.Tx) error {
		var err error
		if r, err = tx.Revocation(id); err != nil {
			return err
		}
		rtok.Refresh, err = tx.OpenRevocation(r)
		return err
	})
	if err != nil {
		return err
	}
	p, _, ok := m.provider(r.Provider)
	if !ok {
		return fmt.Errorf("provider %q is not configured", r.Provider)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeout)
	rerr := p.Revoke(rctx, rtok.Refresh)
	cancel()
	return m.db.Update(func(tx *vault.Tx) error {
		if rerr == nil {
			if err := tx.DeleteRevocation(r.ID); err != nil {
				return err
			}
			if g, err := tx.Grant(r.GrantID); err == nil && g.State == vault.GrantRevoked {
				if err := tx.DeleteGrant(g.ID); err != nil {
					return err
				}
			}
			return tx.Audit(vault.AuditEvent{Kind: vault.AuditGrantRevoked, Actor: "tagwatchd renewal", GrantID: r.GrantID,
				Detail: "refresh token revoked at provider " + r.Provider})
		}
		r.Attempts++
		r.NextAttempt = m.now().Add(m.backoff(r.Attempts))
		if errors.Is(rerr, context.Canceled) {
			r.Attempts--
		}
		if err := tx.PutRevocation(r, secret.RefreshToken{}); err != nil {
			return err
		}
		return rerr
	})
}

// Run retries pending revocations until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.RevocationInterval)
	defer t.Stop()
	for {
		m.RetryRevocations(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RetryRevocations attempts every pending revocation that is due.
func (m *Manager) RetryRevocations(ctx context.Context) {
	var due []string
	_ = m.db.View(func(tx *vault.Tx) error {
		return tx.Revocations(func(r vault.Revocation) error {
			if !r.NextAttempt.After(m.now()) {
				due = append(due, r.ID)
			}
			return nil
		})
	})
	for _, id := range due {
		if err := m.revokeOne(ctx, id); err != nil && provider.ClassOf(err) != provider.ClassTransient {
			m.log.Warn("revocation at the provider failed", "revocation", id, "err", err)
		}
	}
}
