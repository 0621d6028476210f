package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"tagwatch/vault/httpsec"
)

// This file verifies OpenID Connect Back-Channel Logout 1.0 logout tokens
// (section 2.4, validated as section 2.6 says), with the one departure Ory
// Hydra forces, named below.

// BackChannelLogoutEvent is the member of a logout token's events claim
// that makes it a logout token (Back-Channel Logout 1.0 section 2.4).
const BackChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// DefaultLogoutTokenMaxAge is how old (by iat) a logout token may be when
// Config.LogoutTokenMaxAge is not set: the lifetime section 2.4 suggests
// for exp ("two minutes"), for providers that send no exp.
const DefaultLogoutTokenMaxAge = 2 * time.Minute

// logoutLeeway absorbs the clock difference between the provider and
// tagwatch in the iat and nbf checks.
const logoutLeeway = 30 * time.Second

// maxLogoutToken bounds the size of a logout token; real ones are about
// one kilobyte.
const maxLogoutToken = 16 << 10

// maxUnixSeconds is the year 9999: a claim of seconds past it is not a
// time.
const maxUnixSeconds = 253402300799

// LogoutToken is a verified logout token: whose sessions at the provider
// ended.
type LogoutToken struct {
	// Issuer is the token's iss: the provider's issuer.
	Issuer string
	// Subject (sub) and SessionID (sid) name what ended: the sessions of
	// that sid, or every session of that subject. At least one is set.
	Subject, SessionID string
	// ID is the token's jti.
	ID string
	// IssuedAt is its iat; Expiry its exp (zero when absent, as from Hydra).
	IssuedAt, Expiry time.Time
	// Until is when the token stops being accepted (the earlier of exp
	// and iat + the maximum age, plus the clock leeway): a replay check
	// must remember ID at least until then.
	Until time.Time
}

// VerifyLogoutToken verifies a back-channel logout token as Back-Channel
// Logout 1.0 section 2.6 says: the signature by the provider's JWKS with
// an algorithm of the allow-list (Config.SigningAlgs, never "none"), iss
// exactly the issuer, aud containing the client id (and azp, when
// present or when there are several audiences, the client id), as for ID
// tokens; then the claims of section 2.4: iat present; jti present;
// events holding the back-channel logout event with a JSON object as its
// value; no nonce; sub or sid; and the header's typ, when present,
// "logout+jwt" (section 2.4 recommends it) or "JWT", which is what Ory
// Hydra v2.3.0 sends (vault/hydratest/testdata/logout_token_claims.json).
//
// Time: exp, when present, must not be past. Section 2.4 makes exp
// required, but Hydra v2.3.0 sends none, so a token without exp is
// accepted when its iat is at most Config.LogoutTokenMaxAge old: the
// departure Hydra forces, bounded by the lifetime the section suggests.
// The age bound applies with exp too, and iat (and nbf, when present) may
// not be in the future; both by 30 s of leeway for the clocks.
//
// Replay (a jti seen before) is the caller's to check: it must remember
// LogoutToken.ID until LogoutToken.Until. Errors are *Error of
// ClassProtocol (ClassClient for a provider that is not OpenID Connect)
// whose Description says what is wrong, without the token.
func (p *Provider) VerifyLogoutToken(ctx context.Context, raw string) (LogoutToken, error) {
	fail := func(format string, args ...any) (LogoutToken, error) {
		return LogoutToken{}, &Error{Op: "logout token", Class: ClassProtocol, Description: fmt.Sprintf(format, args...)}
	}
	if p.cfg.Kind != KindOIDC || p.logoutVerifier == nil {
		return LogoutToken{}, &Error{Op: "logout token", Class: ClassClient, Description: "the provider is not an OpenID Connect provider"}
	}
	if raw == "" {
		return fail("no logout token")
	}
	if len(raw) > maxLogoutToken {
		return fail("the logout token is larger than %d bytes", maxLogoutToken)
	}
	algs := make([]jose.SignatureAlgorithm, len(p.cfg.SigningAlgs))
	for i, a := range p.cfg.SigningAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(raw, algs) // a JWT is the compact serialization (RFC 7519 §1)
	if err != nil {
		return fail("not a signed JWT: %s", httpsec.Clip(err.Error(), 120))
	}
	if len(jws.Signatures) != 1 {
		return fail("the JWT has %d signatures, want 1", len(jws.Signatures))
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; ok {
		s, _ := typ.(string)
		s = strings.TrimPrefix(strings.ToLower(s), "application/")
		if s != "logout+jwt" && s != "jwt" {
			return fail("header typ %q is neither logout+jwt nor JWT", httpsec.Clip(fmt.Sprint(typ), 40))
		}
	}
	tok, err := p.logoutVerifier.Verify(ctx, raw)
	if err != nil {
		return fail("%s", httpsec.Clip(err.Error(), 200))
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return fail("claims: %s", httpsec.Clip(err.Error(), 100))
	}
	str := func(name string) (string, bool, error) {
		v, ok := claims[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, fmt.Errorf("%s is not a string", name)
		}
		return s, true, nil
	}
	now := p.cfg.Now()
	lt := LogoutToken{Issuer: tok.Issuer, IssuedAt: tok.IssuedAt}

	// The ID token rules go-oidc leaves to its caller: azp.
	azp, azpSet, err := str("azp")
	if err != nil {
		return fail("%v", err)
	}
	if (azpSet || len(tok.Audience) > 1) && azp != p.cfg.ClientID {
		return fail("azp %q is not this client", httpsec.Clip(azp, 80))
	}

	// Time.
	if _, ok := claims["iat"]; !ok || tok.IssuedAt.IsZero() {
		return fail("iat is missing")
	}
	if tok.IssuedAt.After(now.Add(logoutLeeway)) {
		return fail("iat is in the future")
	}
	until := tok.IssuedAt.Add(p.cfg.LogoutTokenMaxAge)
	if !now.Before(until.Add(logoutLeeway)) {
		return fail("iat is more than %v old", p.cfg.LogoutTokenMaxAge)
	}
	if _, ok := claims["exp"]; ok {
		if tok.Expiry.IsZero() {
			return fail("exp is not a time")
		}
		if !now.Before(tok.Expiry) {
			return fail("the logout token has expired (exp)")
		}
		lt.Expiry = tok.Expiry
		if tok.Expiry.Before(until) {
			until = tok.Expiry
		}
	}
	if v, ok := claims["nbf"]; ok {
		var nbf float64
		if json.Unmarshal(v, &nbf) != nil || nbf > maxUnixSeconds {
			return fail("nbf is not a time")
		}
		if time.Unix(int64(nbf), 0).After(now.Add(logoutLeeway)) {
			return fail("nbf is in the future")
		}
	}
	lt.Until = until.Add(logoutLeeway)

	// The claims of section 2.4.
	jti, _, err := str("jti")
	if err != nil {
		return fail("%v", err)
	}
	if jti == "" || len(jti) > 256 {
		return fail("jti is missing or longer than 256 bytes")
	}
	lt.ID = jti
	ev, ok := claims["events"]
	if !ok {
		return fail("events is missing")
	}
	var events map[string]json.RawMessage
	if err := json.Unmarshal(ev, &events); err != nil || events == nil {
		return fail("events is not a JSON object")
	}
	logout, ok := events[BackChannelLogoutEvent]
	if !ok {
		return fail("events has no %s member", BackChannelLogoutEvent)
	}
	var obj map[string]json.RawMessage
	if t := bytes.TrimSpace(logout); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &obj) != nil {
		return fail("the %s event is not a JSON object", BackChannelLogoutEvent)
	}
	if _, ok := claims["nonce"]; ok {
		return fail("a logout token must not carry a nonce")
	}
	sub, subSet, err := str("sub")
	if err != nil {
		return fail("%v", err)
	}
	sid, sidSet, err := str("sid")
	if err != nil {
		return fail("%v", err)
	}
	if subSet && sub == "" || sidSet && sid == "" {
		return fail("sub or sid is empty")
	}
	if sub == "" && sid == "" {
		return fail("neither sub nor sid is present")
	}
	lt.Subject, lt.SessionID = sub, sid
	return lt, nil
}
