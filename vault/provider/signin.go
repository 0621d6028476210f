package provider

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// This file is the authorization request of a person signing in to a page
// of tagwatch's (the user's self-service page), beside enrollment's
// AuthCodeURL, which it leaves as it is: another redirect URI, the least
// scope that says who the person is, and the OpenID Connect parameters a
// page session needs (prompt=none for a silent renewal, max_age for a
// recent sign-in). Also RP-Initiated Logout's request.

// xSignInScopes are the least scopes X's GET /2/users/me accepts
// (X's documentation of the endpoint: users.read and tweet.read).
var xSignInScopes = []string{"users.read", "tweet.read"}

// SignInScopes returns the scopes a sign-in asks for: openid alone for
// OpenID Connect (no offline access: a page never needs a refresh token),
// users.read and tweet.read at X, whose only way to say who signed in is
// /2/users/me.
func (p *Provider) SignInScopes() []string {
	if p.cfg.Kind == KindX {
		return append([]string(nil), xSignInScopes...)
	}
	return []string{oidc.ScopeOpenID}
}

// SignInRequest is a sign-in's authorization request.
type SignInRequest struct {
	// State, Verifier (PKCE, sent as its S256 challenge) and Nonce (OIDC
	// only) are the flow's, kept by the caller.
	State, Verifier, Nonce string
	// RedirectURL is the page's callback; it must be registered at the
	// provider. Required.
	RedirectURL string
	// Prompt is OpenID Connect's prompt ("none" for a silent renewal,
	// "login"), or "" for none. Not sent to X, which has no prompt.
	Prompt string
	// MaxAge, when positive, is sent as max_age in whole seconds (rounded
	// up): the provider must authenticate the person again if their last
	// authentication is older, and the ID token must then carry auth_time
	// (OpenID Connect Core 1.0 section 3.1.2.1). Not sent to X.
	MaxAge time.Duration
}

// SignInURL returns the authorization request of a sign-in: response_type
// code, PKCE S256, the state, RedirectURL and SignInScopes; for OpenID
// Connect also the nonce, and prompt and max_age as asked.
func (p *Provider) SignInURL(r SignInRequest) string {
	c := p.oauth
	c.RedirectURL = r.RedirectURL
	c.Scopes = p.SignInScopes()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(r.Verifier)}
	if p.cfg.Kind == KindOIDC {
		opts = append(opts, oidc.Nonce(r.Nonce))
		if r.Prompt != "" {
			opts = append(opts, oauth2.SetAuthURLParam("prompt", r.Prompt))
		}
		if r.MaxAge > 0 {
			secs := int64((r.MaxAge + time.Second - 1) / time.Second)
			opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(secs, 10)))
		}
	}
	return c.AuthCodeURL(r.State, opts...)
}

// ExchangeSignIn redeems the code of a SignInURL request: as Exchange,
// with the request's redirect URI (RFC 6749 section 4.1.3: the same
// value).
func (p *Provider) ExchangeSignIn(ctx context.Context, code, verifier, redirectURL string) (*TokenResult, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURL}, "code_verifier": {verifier}}
	return p.token(ctx, "code exchange", form)
}

// HasEndSession reports whether the provider has an RP-Initiated Logout
// endpoint (end_session_endpoint in its discovery document).
func (p *Provider) HasEndSession() bool { return p.endSession != "" }

// EndSessionOrigin returns scheme://host of the end session endpoint, for
// a Content-Security-Policy form-action ("" without one).
func (p *Provider) EndSessionOrigin() string {
	u, err := url.Parse(p.endSession)
	if p.endSession == "" || err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// EndSessionURL returns the RP-Initiated Logout 1.0 request (§2) that
// ends the person's session at the provider: client_id, and logoutHint
// (logout_hint: whose session, such as the subject), postLogoutRedirect
// (post_logout_redirect_uri, registered at the provider) and state when
// not "". "" when the provider has no end session endpoint.
//
// It never sends id_token_hint: the request is a browser redirect, and an
// ID token in its address would reach the browser (its address bar, its
// history, the provider's access log). §2 lets client_id stand in for it.
// Not every provider honours that: Ory Hydra v2.3.0 refuses
// post_logout_redirect_uri and state without id_token_hint
// (invalid_request), and takes a request with only client_id and
// logout_hint, which it ignores, as a logout it initiated itself: its
// logout app asks, it ends its session, sends back-channel logout tokens
// to every client of that session (asynchronously) and lands on its own
// configured post-logout page. A caller that wants Hydra to act passes
// postLogoutRedirect and state as "".
func (p *Provider) EndSessionURL(logoutHint, postLogoutRedirect, state string) string {
	if p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("client_id", p.cfg.ClientID)
	if logoutHint != "" {
		q.Set("logout_hint", logoutHint)
	}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
