package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/selfservice"
)

// actorUserPage names the self-service page in the audit trail (the
// page's own changes of watches say the same).
const actorUserPage = "user page"

// newAccount builds the self-service page from [account] when it is on
// (nil otherwise): the providers people sign in with, the vault, and what
// the page asks of the daemon (the scheduler, re-consent links, revoking
// and deleting, when a watch runs next, schedules in words, targets
// redacted). [account] and public_url change only on restart; a provider
// reloaded by SIGHUP (a rotated client secret) is the one the page uses
// from then on (reloadProviders calls selfservice.Service.SetProviders).
func (d *daemon) newAccount() (*selfservice.Service, error) {
	a := d.cfg.Account
	if !a.Enabled {
		return nil, nil
	}
	ps, err := d.signInProviders()
	if err != nil {
		return nil, err
	}
	s, err := selfservice.New(selfservice.Config{Store: d.db, Providers: ps, PublicURL: d.cfg.HTTP.PublicURL,
		IdleTimeout: a.IdleTimeout.Duration, AbsoluteTimeout: a.AbsoluteTimeout.Duration, RecentAuth: a.RecentAuth.Duration,
		Pages: d.accountPages(), Now: d.opts.Now, Logger: d.log})
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	return s, nil
}

// accountPages is what the page asks of the daemon beyond signing people
// in: the scheduler learns of the watches it changes, the consent door
// makes re-consent links, the daemon revokes and deletes, the worker says
// when a watch runs next, notify words schedules and redacts targets.
func (d *daemon) accountPages() selfservice.Pages {
	kind := func(name string) string {
		if p := d.liveProvider(name); p != nil {
			return p.Kind()
		}
		return ""
	}
	return selfservice.Pages{Scheduler: d.worker, Links: d.enroll, Access: pageAccess{d}, Status: d.runStatus,
		Cadence: notify.Cadence, TargetLabel: notify.TargetLabel, ProviderKind: kind}
}

// accountPath is where the page is mounted: public_url's path +
// "/account/".
func (d *daemon) accountPath() string {
	u, err := url.Parse(d.cfg.HTTP.PublicURL)
	if err != nil {
		return selfservice.Prefix + "/"
	}
	return strings.TrimRight(u.Path, "/") + selfservice.Prefix + "/"
}

// runStatus is what the page shows of a watch's next run: the worker's
// Status.
func (d *daemon) runStatus(watchID string) (selfservice.RunStatus, error) {
	st, err := d.worker.Status(watchID)
	if err != nil {
		return selfservice.RunStatus{}, err
	}
	rs := selfservice.RunStatus{Running: st.Running, Invalid: st.Invalid}
	if st.Scheduled {
		rs.Next = st.Next
	}
	return rs, nil
}

// pageAccess is what the page asks of the daemon for the changes that
// reach past the vault, audited as the user page's.
type pageAccess struct{ d *daemon }

var _ selfservice.Access = pageAccess{}

// Revoke ends tagwatch's access for the user at the provider as the
// one-click revoke does (daemon.revoke).
func (a pageAccess) Revoke(ctx context.Context, userID, providerName string) error {
	return a.d.revoke(ctx, userID, providerName, actorUserPage)
}

// DeleteUser deletes everything kept for the user (daemon.deleteUser).
func (a pageAccess) DeleteUser(ctx context.Context, userID, actor string) (vault.DeleteUserOutcome, error) {
	return a.d.deleteUser(ctx, userID, actor)
}

// deleteUser deletes a user and everything kept for them
// (vault.DB.DeleteUser, with every configured provider's revocation
// rule), then forgets the grants' cached tokens, tries the revocations it
// queued (renew's retry loop takes any left), unschedules the user's
// watches and wakes the notifier for the confirmation it queued. Errors:
// *vault.NotFoundError for a user already gone.
func (d *daemon) deleteUser(ctx context.Context, userID, actor string) (vault.DeleteUserOutcome, error) {
	rules := map[string]vault.RevocationRule{}
	for name, b := range d.currentProviders() {
		r := b.p.Revocation()
		rules[name] = vault.RevocationRule{Endpoint: r.Endpoint, EndsAccount: r.EndsAccount, Why: r.Why}
	}
	out, err := d.db.DeleteUser(userID, vault.UserDeletion{Actor: actor, Rules: rules})
	if err != nil {
		return out, err
	}
	for _, g := range out.Grants {
		d.renew.Forget(g.ID)
	}
	if len(out.RevocationIDs) > 0 {
		d.renew.RetryRevocations(ctx)
	}
	d.notify.Kick()
	if err := d.worker.Reload(ctx); err != nil {
		d.log.Error("reload watches after a user was deleted", "user", userID, "err", err)
	}
	return out, nil
}

// signInProviders returns the providers [account] signs people in with,
// as they are now. Errors: a name that is not a running provider.
func (d *daemon) signInProviders() (map[string]selfservice.Provider, error) {
	ps := make(map[string]selfservice.Provider, len(d.cfg.Account.SignIn))
	for _, name := range d.cfg.Account.SignIn {
		p := d.liveProvider(name)
		if p == nil {
			return nil, fmt.Errorf("account: sign-in provider %q is not configured", name)
		}
		ps[name] = p
	}
	return ps, nil
}
