package renew

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
)

// UnenrollResult says how far an unenroll got at the provider. Locally it
// is always complete when Unenroll returns nil: tokens deleted, grant
// revoked, watches suspended, the user told.
type UnenrollResult struct {
	// RevokedAtProvider: the provider confirmed the revocation of the
	// refresh token (RFC 7009).
	RevokedAtProvider bool
	// Queued: the revocation at the provider did not go through now (the
	// provider was down or refused it); it stays queued, sealed, and Run
	// retries it.
	Queued bool
	// AlreadyRevoked: the grant was revoked before this call; nothing
	// changed.
	AlreadyRevoked bool
}

// Unenroll ends a grant: locally at once (vault.DB.UnenrollGrant: tokens
// deleted, state revoked, the user's watches at that provider suspended,
// the user told), and at the provider by revoking the refresh token (RFC
// 7009). When the provider cannot be reached the revocation stays queued,
// sealed, and Run retries it; the local part never waits for it. When
// neither RevokedAtProvider nor Queued is set, nothing was revoked at the
// provider: it has no revocation endpoint, or the grant held no refresh
// token. Errors: *vault.NotFoundError for an unknown grant.
func (m *Manager) Unenroll(ctx context.Context, grantID, actor string) (UnenrollResult, error) {
	unlock, err := m.locker.Lock(ctx, grantID)
	if err != nil {
		return UnenrollResult{}, err
	}
	defer unlock()
	u := vault.Unenroll{Actor: actor}
	if g, err := m.db.Grant(grantID); err == nil {
		if p, _, ok := m.provider(g.Provider); ok {
			r := revocationOf(p)
			u.Revoke, u.EndsAccount, u.Why = r.Endpoint, r.EndsAccount, r.Why
		}
	}
	e := m.entry(grantID)
	gen := e.gen.Load()
	out, err := m.db.UnenrollGrant(grantID, u)
	if err != nil {
		return UnenrollResult{}, fmt.Errorf("renew: unenroll: %w", err)
	}
	e.kill(gen)
	if !out.Changed {
		return UnenrollResult{AlreadyRevoked: true}, nil
	}
	g := out.Grant
	m.emit(Event{Kind: EventRevoked, GrantID: g.ID, UserID: g.UserID, Provider: g.Provider})
	if out.RevocationID == "" {
		return UnenrollResult{}, nil
	}
	if err := m.revokeOne(ctx, out.RevocationID); err != nil {
		m.log.Warn("revocation at the provider failed; will retry", "grant", grantID, "provider", g.Provider, "err", err)
		return UnenrollResult{Queued: true}, nil
	}
	return UnenrollResult{RevokedAtProvider: true}, nil
}

// revocationOf returns what revoking a token ends at p: its own rule
// (provider.Provider.Revocation), or for a provider that does not say,
// its endpoint and the cautious assumption that revoking ends every
// token of the account.
func revocationOf(p Provider) provider.Revocation {
	if rp, ok := p.(interface{ Revocation() provider.Revocation }); ok {
		return rp.Revocation()
	}
	return provider.Revocation{Endpoint: p.HasRevocation(), EndsAccount: true,
		Why: "the provider does not say what a revocation ends"}
}

// revokeOne tries one pending revocation: on success it is settled (the
// record and the revoked grant deleted), on failure the next attempt is
// scheduled with backoff. Where revoking ends the whole account
// (provider.Revocation.EndsAccount) and a live grant holds the token's
// account now (a consent since it was queued), it is dropped unrevoked
// (vault.DB.DropRevocation): revoking it would end that grant.
func (m *Manager) revokeOne(ctx context.Context, id string) error {
	r, rt, err := m.db.PendingRevocation(id)
	if err != nil {
		return err
	}
	p, _, ok := m.provider(r.Provider)
	if !ok {
		return fmt.Errorf("provider %q is not configured", r.Provider)
	}
	if rule := revocationOf(p); rule.EndsAccount && r.Subject != "" {
		live, err := m.db.LiveAccountGrants(r.Provider, r.Subject, "")
		if err != nil {
			return err
		}
		if len(live) > 0 {
			return m.db.DropRevocation(r.ID, actor, fmt.Sprintf("%s, which would end grant %s, consented since",
				rule.Why, strings.Join(live, ", ")))
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeout)
	rerr := p.Revoke(rctx, rt)
	cancel()
	if rerr == nil {
		return m.db.SettleRevocation(r.ID, actor)
	}
	// An attempt cut short by shutdown is not counted.
	counted := !errors.Is(rerr, context.Canceled)
	if _, err := m.db.DeferRevocation(r.ID, m.now().Add(m.backoff(r.Attempts+1)), counted); err != nil {
		return errors.Join(rerr, err)
	}
	return rerr
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
	due, err := m.db.DueRevocations(m.now())
	if err != nil {
		m.log.Error("cannot list pending revocations", "err", err)
		return
	}
	for _, id := range due {
		if err := m.revokeOne(ctx, id); err != nil && provider.ClassOf(err) != provider.ClassTransient {
			m.log.Warn("revocation at the provider failed", "revocation", id, "err", err)
		}
	}
}
