package provider

// Revocation is what revoking one refresh token ends at a provider: a fact
// about the provider, learnt from its documentation and its behaviour,
// that decides whether tagwatch may revoke a token it no longer needs
// while it holds another one for the same account (a second consent, an
// account shared by two users). The vault applies it (vault.RevocationRule
// carries the same three fields); this is the one place that says it.
type Revocation struct {
	// Endpoint: the provider has a revocation endpoint (RFC 7009).
	Endpoint bool
	// EndsAccount: revoking any one token ends every token the client holds
	// for that account, not only the tokens of the token's own grant.
	// Revoking a replaced token would then end the grant that replaced it.
	EndsAccount bool
	// Why says what a revocation ends, in words for the audit trail.
	Why string
}

// The rules by kind, with their sources.
//
// KindOIDC: RFC 7009 section 2.1: revoking a refresh token invalidates
// "the actual token and, if applicable, other tokens based on the same
// authorization grant". Ory Hydra does so: fosite's TokenRevocationHandler
// (handler/oauth2/revocation.go) looks the token up, takes its request id
// (one per authorization code; refreshes keep it) and revokes the refresh
// and access tokens of that request id only. A second consent is another
// authorization code, another request id, and survives; vault/enroll's
// TestHydraReplacedGrant proves it against a real Hydra. Providers that
// revoke every token of the client for the end-user instead (newer
// Connect2id servers document this) are not KindOIDC's default.
//
// KindX: POST /2/oauth2/revoke is reported to end the app's whole
// authorization for the user, not one token family: the author of
// twitodon, which calls it to sign users out, says it "revokes *all*
// access from the app, not just the current session" and removes the app
// from the account's connected apps (github.com/lucyllewy/twitodon issue
// 22); X announced its OAuth 1.0a counterpart, POST oauth/invalidate_token,
// as "essentially 'revoking' their own apps authorization for the specific
// user" (twittercommunity.com, "New authorization endpoint:
// /1.1/oauth/invalidate_token.json"). X documents nothing finer. The X
// sandbox models it (xsandbox.Server.SetRevokeEndsAuthorization).
const (
	whyGrant = "revoking a refresh token ends only the tokens of its own grant (RFC 7009 section 2.1)"
	whyX     = "X ends the app's whole authorization for the user on revocation"
)

// Revocation returns the provider's revocation rule, from its kind and
// whether it has a revocation endpoint.
func (p *Provider) Revocation() Revocation {
	r := Revocation{Endpoint: p.HasRevocation(), Why: whyGrant}
	if p.cfg.Kind == KindX {
		r.EndsAccount, r.Why = true, whyX
	}
	if !r.Endpoint {
		r.Why = "the provider has no revocation endpoint"
	}
	return r
}

// RevokesReplacedGrant reports whether the refresh token a new consent of
// the same account replaces is revoked at the provider, and why not when it
// is not: revoking it must not end the grant that replaced it.
func (p *Provider) RevokesReplacedGrant() (bool, string) {
	r := p.Revocation()
	return r.Endpoint && !r.EndsAccount, r.Why
}
