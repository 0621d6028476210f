package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
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
// from then on (pageProvider).
func (d *daemon) newAccount() (*selfservice.Service, error) {
	a := d.cfg.Account
	if !a.Enabled {
		return nil, nil
	}
	ps := make(map[string]selfservice.Provider, len(a.SignIn))
	for _, name := range a.SignIn {
		if d.liveProvider(name) == nil {
			return nil, fmt.Errorf("account: sign-in provider %q is not configured", name)
		}
		ps[name] = pageProvider{d: d, name: name}
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

// pageProvider is a sign-in provider as the page sees it: the daemon's
// provider of that name as it is now, so that a provider SIGHUP rebuilt
// (a rotated secret, new keys) serves the next sign-in.
type pageProvider struct {
	d    *daemon
	name string
}

var _ selfservice.Provider = pageProvider{}

// errNoProvider stands for a provider that left the configuration (a
// reload refuses that while [account] names it, so it does not happen).
var errNoProvider = errors.New("the sign-in provider is not configured")

func (pp pageProvider) p() *provider.Provider { return pp.d.liveProvider(pp.name) }

func (pp pageProvider) Kind() string {
	if p := pp.p(); p != nil {
		return p.Kind()
	}
	return ""
}

func (pp pageProvider) Issuer() string {
	if p := pp.p(); p != nil {
		return p.Issuer()
	}
	return ""
}

func (pp pageProvider) SignInURL(r provider.SignInRequest) string {
	if p := pp.p(); p != nil {
		return p.SignInURL(r)
	}
	return ""
}

func (pp pageProvider) CheckAuthorizationIssuer(iss string, present bool) error {
	if p := pp.p(); p != nil {
		return p.CheckAuthorizationIssuer(iss, present)
	}
	return errNoProvider
}

func (pp pageProvider) ExchangeSignIn(ctx context.Context, code, verifier, redirectURL string) (*provider.TokenResult, error) {
	if p := pp.p(); p != nil {
		return p.ExchangeSignIn(ctx, code, verifier, redirectURL)
	}
	return nil, errNoProvider
}

func (pp pageProvider) Identify(ctx context.Context, tr *provider.TokenResult, nonce string) (provider.Identity, error) {
	if p := pp.p(); p != nil {
		return p.Identify(ctx, tr, nonce)
	}
	return provider.Identity{}, errNoProvider
}

func (pp pageProvider) EndSessionURL(idTokenHint, postLogoutRedirect, state string) string {
	if p := pp.p(); p != nil {
		return p.EndSessionURL(idTokenHint, postLogoutRedirect, state)
	}
	return ""
}

func (pp pageProvider) VerifyLogoutToken(ctx context.Context, raw string) (provider.LogoutToken, error) {
	if p := pp.p(); p != nil {
		return p.VerifyLogoutToken(ctx, raw)
	}
	return provider.LogoutToken{}, errNoProvider
}

func (pp pageProvider) Revocation() provider.Revocation {
	if p := pp.p(); p != nil {
		return p.Revocation()
	}
	return provider.Revocation{}
}

func (pp pageProvider) Revoke(ctx context.Context, rt secret.RefreshToken) error {
	if p := pp.p(); p != nil {
		return p.Revoke(ctx, rt)
	}
	return errNoProvider
}
