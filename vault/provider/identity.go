package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"tagwatch/vault/httpsec"
	"tagwatch/vault/secret"
)

// Identity is who consented.
type Identity struct {
	Subject  string
	Username string
	Email    string
	Name     string
	Issuer   string
	// Audience is the ID token's audience (OIDC).
	Audience []string
	// AuthTime is the ID token's auth_time, when the user last
	// authenticated at the provider (zero when absent; always zero for X).
	AuthTime time.Time
	// SessionID is the ID token's sid: the provider's session, which
	// back-channel logout tokens name ("" when absent).
	SessionID string
}

// Matches reports whether expected names this identity: its subject, its
// username (with or without a leading @, case-insensitive) or its email.
func (id Identity) Matches(expected string) bool {
	if expected == "" {
		return true
	}
	if expected == id.Subject {
		return true
	}
	u := strings.TrimPrefix(expected, "@")
	if id.Username != "" && strings.EqualFold(u, id.Username) {
		return true
	}
	return id.Email != "" && strings.EqualFold(expected, id.Email)
}

// Identify establishes who consented: for OIDC by verifying the ID token
// of the code exchange against nonce; for X by asking /2/users/me with the
// new access token.
func (p *Provider) Identify(ctx context.Context, tr *TokenResult, nonce string) (Identity, error) {
	if p.cfg.Kind == KindX {
		return p.usersMe(ctx, tr.Access)
	}
	return p.VerifyIDToken(ctx, tr.IDToken, nonce, nil)
}

// VerifyIDToken verifies an ID token: signature by the provider's JWKS with
// an algorithm from the allow-list, iss exact, aud containing the client
// id, exp and iat (go-oidc), then nonce, azp when there are several
// audiences, and, for an ID token from a refresh (prev != nil), the same
// iss, sub and aud as at enrollment. An empty nonce skips the nonce check
// (refresh responses carry none). The identity carries the token's
// auth_time and sid when it has them; an auth_time that is not a positive
// number of seconds is refused.
func (p *Provider) VerifyIDToken(ctx context.Context, raw secret.Value, nonce string, prev *Identity) (Identity, error) {
	fail := func(format string, args ...any) (Identity, error) {
		return Identity{}, &Error{Op: "id token", Class: ClassProtocol, Description: fmt.Sprintf(format, args...)}
	}
	if raw.IsZero() {
		return fail("the provider sent no ID token")
	}
	tok, err := p.verifier.Verify(ctx, raw.Reveal())
	if err != nil {
		return fail("%s", httpsec.Clip(err.Error(), 200))
	}
	if tok.IssuedAt.IsZero() {
		return fail("iat is missing")
	}
	if nonce != "" && tok.Nonce != nonce {
		return fail("nonce does not match this sign-in")
	}
	var extra struct {
		AZP               string   `json:"azp"`
		Email             string   `json:"email"`
		EmailVerified     bool     `json:"email_verified"`
		PreferredUsername string   `json:"preferred_username"`
		Name              string   `json:"name"`
		AuthTime          *float64 `json:"auth_time"`
		SID               string   `json:"sid"`
	}
	if err := tok.Claims(&extra); err != nil {
		return fail("claims: %s", httpsec.Clip(err.Error(), 100))
	}
	if len(tok.Audience) > 1 && extra.AZP == "" {
		return fail("several audiences and no azp")
	}
	if extra.AZP != "" && extra.AZP != p.cfg.ClientID {
		return fail("azp %q is not this client", extra.AZP)
	}
	id := Identity{Subject: tok.Subject, Username: extra.PreferredUsername, Name: extra.Name, Issuer: tok.Issuer, Audience: tok.Audience,
		SessionID: extra.SID}
	if extra.AuthTime != nil {
		if *extra.AuthTime <= 0 || *extra.AuthTime > maxUnixSeconds {
			return fail("auth_time %v is not a time", *extra.AuthTime)
		}
		id.AuthTime = time.Unix(int64(*extra.AuthTime), 0).UTC()
	}
	if extra.EmailVerified {
		id.Email = extra.Email
	}
	if prev != nil && (prev.Issuer != id.Issuer || prev.Subject != id.Subject || !slices.Equal(prev.Audience, id.Audience)) {
		return fail("ID token from a refresh changed iss, sub or aud")
	}
	return id, nil
}

// usersMe asks X who the access token belongs to.
func (p *Provider) usersMe(ctx context.Context, at secret.AccessToken) (Identity, error) {
	if p.apiURL == "" {
		return Identity{}, &Error{Op: "users/me", Class: ClassClient, Err: errNoAPI}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.apiURL, "/")+"/2/users/me", nil)
	if err != nil {
		return Identity{}, &Error{Op: "users/me", Class: ClassClient, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+at.Reveal())
	resp, err := p.client.Do(req)
	if err != nil {
		return Identity{}, &Error{Op: "users/me", Class: ClassTransient, Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Identity{}, &Error{Op: "users/me", Class: ClassTransient, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		e := p.classify("users/me", resp, body)
		if resp.StatusCode == http.StatusUnauthorized {
			e.Class = ClassProtocol
		}
		return Identity{}, e
	}
	var me struct {
		Data struct {
			ID       string `json:"id"`
			Username string `json:"username"`
			Name     string `json:"name"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &me); err != nil || me.Data.ID == "" {
		return Identity{}, &Error{Op: "users/me", Class: ClassProtocol, Status: resp.StatusCode, Description: "answer has no data.id"}
	}
	return Identity{Subject: me.Data.ID, Username: me.Data.Username, Name: me.Data.Name}, nil
}
