package enroll

import (
	"context"
	"fmt"
	"net/url"

	"tagwatch/vault"
	"tagwatch/vault/provider"
)

// CreateLink stores a one-time consent link (vault.DB.CreateLink, which
// checks the request and its watch against the vault's rules) and returns
// it with its record. A sign-in link (vault.PurposeSignIn) is only for an
// OpenID Connect provider the Service serves. The link, <PublicURL>/enroll/<token>, carries 256
// random bits; only their hash is stored, so the link cannot be shown
// again. A zero req.TTL takes Config.LinkTTL. Errors: *vault.InvalidError
// for a bad request (wrapping ErrUnknownProvider for a provider the
// Service does not know), *vault.NotFoundError for a re-consent link's
// missing grant.
func (s *Service) CreateLink(ctx context.Context, req vault.LinkRequest) (string, vault.Enrollment, error) {
	if err := ctx.Err(); err != nil {
		return "", vault.Enrollment{}, err
	}
	p, ok := s.provider(req.Provider)
	if !ok {
		return "", vault.Enrollment{}, &vault.InvalidError{Object: "consent link",
			Err: &unknownProviderError{req.Provider}}
	}
	if req.Purpose == vault.PurposeSignIn && (p == nil || p.Kind() != provider.KindOIDC) {
		// Only a verified ID token says who signs in; X has none.
		return "", vault.Enrollment{}, &vault.InvalidError{Object: "consent link",
			Err: fmt.Errorf("provider %q is not an OpenID Connect provider: a sign-in link needs one", req.Provider)}
	}
	if req.TTL == 0 {
		req.TTL = s.cfg.LinkTTL
	}
	token, rec, err := s.cfg.DB.CreateLink(req)
	if err != nil {
		return "", vault.Enrollment{}, fmt.Errorf("create consent link: %w", err)
	}
	s.log.Info("consent link created", "user", rec.UserID, "provider", rec.Provider, "enrollment", rec.ID,
		"purpose", string(rec.Purpose), "requested_by", rec.CreatedBy, "expires", rec.ExpiresAt)
	return s.base.String() + "/enroll/" + token, rec, nil
}

// targetKind is the default Config.TargetLabel: the kind of a target,
// nothing of its address.
func targetKind(t string) string {
	u, err := url.Parse(t)
	switch {
	case err != nil:
		return "A notification target"
	case u.Scheme == "mailto":
		return "Email"
	case u.Scheme == "http" || u.Scheme == "https":
		return "A webhook"
	}
	return "A " + u.Scheme + " notification"
}
