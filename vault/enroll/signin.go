package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
)

// This file is the flow of a sign-in link (vault.PurposeSignIn): the same
// pages, state, cookie, PKCE and nonce as an enrollment, but the
// authorization request asks for openid only (no offline access, no
// prompt=consent), the identity is the verified ID token's, every token
// is discarded, and what is stored is the identity on the user
// (vault.DB.CommitSignIn): no grant, no token.

// signInScopes are the scopes a sign-in link asks for.
var signInScopes = []string{"openid"}

// signInURL is the authorization request of a sign-in link: the
// provider's own request (state, PKCE S256, nonce, client, redirect)
// with scope openid only and without prompt=consent.
func signInURL(p Provider, state, verifier, nonce string) (string, error) {
	u, err := url.Parse(p.AuthCodeURL(state, verifier, nonce))
	if err != nil {
		return "", fmt.Errorf("sign-in authorization request: %w", err)
	}
	q := u.Query()
	q.Set("scope", "openid")
	q.Del("prompt")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// finishSignIn is finish for a sign-in link once the code is redeemed:
// the identity from the verified ID token (nonce checked), the link's
// expected account, then CommitSignIn. The tokens are discarded whatever
// happens (discardFor: a refresh token, should the provider send one, is
// revoked by the provider's rule), and none is stored.
func (s *Service) finishSignIn(ctx context.Context, f *flow, p Provider, e vault.Enrollment, tr *provider.TokenResult) error {
	if p.Kind() != provider.KindOIDC {
		s.discard(p, tr)
		return refuse(reasonProviderUnavailable, fmt.Errorf("provider %q is no longer an OpenID Connect provider", f.provider))
	}
	id, err := p.Identify(ctx, tr, f.nonce)
	if err != nil {
		s.discard(p, tr)
		s.auditRefusal(f, "the identity was not verified")
		return providerFailure(reasonIdentity, err)
	}
	s.discardFor(p, tr, f.provider, id.Subject)
	if !id.Matches(e.Expected) {
		s.auditRefusal(f, fmt.Sprintf("identity %s is not the expected %s", id.Subject, e.Expected))
		fl := refuse(reasonWrongAccount, fmt.Errorf("subject %q (username %q) is not the expected %q", id.Subject, id.Username, e.Expected))
		fl.account = s.accountLabel(e, p)
		return fl
	}
	issuer := id.Issuer
	if issuer == "" {
		issuer = p.Issuer()
	}
	res, err := s.cfg.DB.CommitSignIn(vault.SignInConsent{
		LinkHash: f.linkHash,
		LinkID:   f.enrollmentID,
		UserID:   f.userID,
		Provider: f.provider,
		Issuer:   issuer,
		Subject:  id.Subject,
		Username: httpsec.Clip(id.Username, 200),
		Name:     httpsec.Clip(id.Name, 200),
	})
	if err != nil {
		fl := signInFailure(err)
		var failed *failure
		if errors.As(fl, &failed) {
			s.auditRefusal(f, failed.Error())
			return failed
		}
		return refuse(reasonInternal, err)
	}
	s.log.Info("sign-in bound", "user", f.userID, "provider", f.provider, "enrollment", f.enrollmentID, "bound_before", res.Already)
	return nil
}

// signInFailure maps CommitSignIn's refusals to pages.
func signInFailure(err error) error {
	if errors.Is(err, vault.ErrSignInConflict) {
		return refuse(reasonSignInTaken, err)
	}
	return consentFailure(err)
}
