package enroll

import (
	"errors"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
)

// commit stores what a successful callback learnt with
// vault.DB.CommitConsent (one transaction: the link consumed once, the
// grant, the watches, the notices, the audit trail). No network I/O
// happens here. Refusals the user can act on come back as *failure.
func (s *Service) commit(f *flow, p Provider, tr *provider.TokenResult, id provider.Identity, granted []string) (vault.ConsentResult, error) {
	issuer := id.Issuer
	if issuer == "" {
		issuer = p.Issuer()
	}
	res, err := s.cfg.DB.CommitConsent(vault.Consent{
		LinkHash:     f.linkHash,
		LinkID:       f.enrollmentID,
		UserID:       f.userID,
		Provider:     f.provider,
		Issuer:       issuer,
		Subject:      id.Subject,
		Username:     httpsec.Clip(id.Username, 200),
		Name:         httpsec.Clip(id.Name, 200),
		Audience:     id.Audience,
		Scopes:       granted,
		Tokens:       vault.Tokens{Refresh: tr.Refresh, Access: tr.Access},
		AccessExpiry: tr.Expiry,
		Revocation:   revocationRule(p),
	})
	if err != nil {
		return res, consentFailure(err)
	}
	return res, nil
}

// consentFailure maps the store's refusals of a link or a consent to the
// page the browser gets; other errors pass as they are.
func consentFailure(err error) error {
	var te *vault.TransitionError
	var ie *vault.InvalidError
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return refuse(reasonLinkUnknown, err)
	case errors.As(err, &te) && te.Kind == "consent link":
		return stateFailure(vault.LinkState(te.State), err)
	case errors.Is(err, vault.ErrAccountSwitch):
		return refuse(reasonAccountSwitch, err)
	case errors.Is(err, vault.ErrWrongAccount):
		return refuse(reasonWrongAccount, err)
	case errors.As(err, &ie) && ie.Object == "watch":
		return refuse(reasonWatchRefused, err)
	}
	return err
}

// revocationRule is the provider's rule for revoking a token tagwatch no
// longer needs (provider.Provider.Revocation). A provider that does not
// say what a revocation ends is taken to end every token of the account:
// a replaced token then expires unused rather than risk the grant that
// replaced it.
func revocationRule(p Provider) vault.RevocationRule {
	if rp, ok := p.(interface{ Revocation() provider.Revocation }); ok {
		r := rp.Revocation()
		return vault.RevocationRule{Endpoint: r.Endpoint, EndsAccount: r.EndsAccount, Why: r.Why}
	}
	r := vault.RevocationRule{EndsAccount: true, Why: "the provider does not say what a revocation ends"}
	if h, ok := p.(interface{ HasRevocation() bool }); ok {
		r.Endpoint = h.HasRevocation()
	}
	return r
}
