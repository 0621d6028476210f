package provider

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"tagwatch/vault/httpsec"
	"tagwatch/vault/secret"
)

// Class says what a failure means for a grant.
type Class string

// Failure classes.
const (
	// ClassDeadGrant: the refresh token is spent, revoked or unknown, or the
	// user must sign in again: the answer says so (invalid_grant under any
	// status but 429 and 5xx, and the codes of answer.go). Terminal for the
	// grant: it needs a new consent. Never ambiguous.
	ClassDeadGrant Class = "dead_grant"
	// ClassTransient: network, timeout, 5xx, 429, temporarily_unavailable.
	// Retry later; the grant is fine.
	ClassTransient Class = "transient"
	// ClassClient: the provider refuses tagwatch itself (invalid_client,
	// unauthorized_client): an operator problem, not a user's.
	ClassClient Class = "client"
	// ClassProtocol: the provider answered something tagwatch cannot accept
	// (a malformed body, an HTML page, an error code without a rule, a bad
	// ID token, a wrong issuer).
	ClassProtocol Class = "protocol"
)

// Error is a failed exchange with a provider. It never carries a secret.
type Error struct {
	Op          string // "refresh", "code exchange", "revoke", ...
	Class       Class
	Status      int    // HTTP status, 0 without a response
	Code        string // OAuth error code
	Description string
	// Ambiguous: the request was sent but no usable answer came back (a
	// timeout, a dropped connection, a body cut short, a 2xx without a
	// usable token, a 500 or a gateway's 502 or 504), so the provider may
	// have acted on it: a refresh token may have been rotated.
	Ambiguous bool
	// RetryAfter is the provider's Retry-After, if it sent one.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider: %s: %s", e.Op, e.Class)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		b.WriteString(")")
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if e.Ambiguous {
		b.WriteString(" (the request may have been processed)")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err: the Class of an *Error in its chain,
// ClassTransient for a context deadline, else ClassProtocol.
func ClassOf(err error) Class {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTransient
	}
	return ClassProtocol
}

// TokenResult is a token endpoint's answer.
type TokenResult struct {
	Access secret.AccessToken
	// Refresh is the new refresh token; zero when the provider did not
	// rotate it (keep the old one).
	Refresh secret.RefreshToken
	// Expiry is absolute: now + Lifetime.
	Expiry time.Time
	// Lifetime is expires_in, or the provider's DefaultLifetime when the
	// answer has none usable (NoExpiresIn): renewal caps its margin by it.
	Lifetime      time.Duration
	NoExpiresIn   bool
	Scopes        []string // nil when the response has no scope
	IDToken       secret.Value
	TokenType     string
	ReceivedAfter time.Duration // how long the request took
}

// Exchange redeems an authorization code with its PKCE verifier.
func (p *Provider) Exchange(ctx context.Context, code, verifier string) (*TokenResult, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {p.cfg.RedirectURL}, "code_verifier": {verifier}}
	return p.token(ctx, "code exchange", form)
}

// Refresh redeems a refresh token.
func (p *Provider) Refresh(ctx context.Context, rt secret.RefreshToken) (*TokenResult, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt.Reveal()}}
	return p.token(ctx, "refresh", form)
}

// Revoke revokes a refresh token (RFC 7009). A provider without a
// revocation endpoint gives an error of ClassClient.
func (p *Provider) Revoke(ctx context.Context, rt secret.RefreshToken) error {
	if p.revokeURL == "" {
		return &Error{Op: "revoke", Class: ClassClient, Description: "the provider has no revocation endpoint"}
	}
	form := url.Values{"token": {rt.Reveal()}, "token_type_hint": {"refresh_token"}}
	resp, body, err := p.post(ctx, "revoke", p.revokeURL, form)
	if err != nil {
		return err
	}
	// RFC 7009 2.2: 200, also for an unknown token; an error code in a 200
	// is still an error.
	if e := classifyAnswer("revoke", resp.StatusCode, resp.Header, readAnswer(resp.Header.Get("Content-Type"), body), p.cfg.Now()); e != nil {
		return e
	}
	if resp.StatusCode != http.StatusOK {
		return &Error{Op: "revoke", Class: ClassProtocol, Status: resp.StatusCode, Description: "unexpected status"}
	}
	return nil
}

func (p *Provider) token(ctx context.Context, op string, form url.Values) (*TokenResult, error) {
	start := p.cfg.Now()
	resp, body, err := p.post(ctx, op, p.oauth.Endpoint.TokenURL, form)
	if err != nil {
		return nil, err
	}
	res, perr := p.tokenAnswer(op, resp.StatusCode, resp.Header, body)
	if perr != nil {
		return nil, perr
	}
	res.ReceivedAfter = p.cfg.Now().Sub(start)
	return res, nil
}

// tokenAnswer interprets a token endpoint's answer (status, headers, body
// read in full): the token, or an *Error classed by what the answer says
// (classifyAnswer). A 2xx that carries no usable token (an empty, cut
// short or non-JSON body, no access_token, a token_type other than bearer)
// is ClassProtocol and Ambiguous: the provider acted, and may have rotated
// the refresh token, but the answer is as good as lost.
func (p *Provider) tokenAnswer(op string, status int, h http.Header, body []byte) (*TokenResult, *Error) {
	a := readAnswer(h.Get("Content-Type"), body)
	if e := classifyAnswer(op, status, h, a, p.cfg.Now()); e != nil {
		return nil, e
	}
	lost := func(why string) *Error {
		return &Error{Op: op, Class: ClassProtocol, Status: status, Description: why, Ambiguous: true}
	}
	switch tt := strings.TrimSpace(a.tokenType); {
	case !a.readable:
		return nil, lost("token response is neither a JSON object nor a form")
	case a.access == "":
		return nil, lost("token response has no access_token")
	case tt != "" && !strings.EqualFold(tt, "bearer"):
		// RFC 6749 7.1: the type is case-insensitive; tagwatch speaks
		// bearer (RFC 6750) only.
		return nil, lost(fmt.Sprintf("token_type %q is not bearer", httpsec.Clip(tt, 32)))
	}
	now := p.cfg.Now()
	res := &TokenResult{Access: secret.NewAccessToken(a.access), Refresh: secret.NewRefreshToken(a.refresh),
		IDToken: secret.New(a.idToken), TokenType: strings.TrimSpace(a.tokenType), Scopes: a.scope}
	if d, ok := parseExpiresIn(a.expiresIn); ok {
		res.Lifetime = d
	} else {
		res.Lifetime, res.NoExpiresIn = p.cfg.DefaultLifetime, true
	}
	res.Expiry = now.Add(res.Lifetime)
	return res, nil
}

var jtiCounter atomic.Uint64

// post sends a form to a provider endpoint with client authentication and
// returns the response with its body read (at most 1 MiB).
func (p *Provider) post(ctx context.Context, op, endpoint string, form url.Values) (*http.Response, []byte, error) {
	switch p.cfg.ClientAuth {
	case AuthSecretBasic:
	case AuthSecretPost:
		form.Set("client_id", p.cfg.ClientID)
		form.Set("client_secret", p.cfg.ClientSecret.Reveal())
	case AuthPrivateKeyJWT:
		assertion, err := p.clientAssertion(p.oauth.Endpoint.TokenURL)
		if err != nil {
			return nil, nil, &Error{Op: op, Class: ClassClient, Description: "sign client assertion", Err: err}
		}
		form.Set("client_id", p.cfg.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, &Error{Op: op, Class: ClassClient, Description: "bad endpoint URL"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.cfg.ClientAuth == AuthSecretBasic {
		// RFC 6749 2.3.1: form-encode id and secret before Basic.
		req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.cfg.ClientSecret.Reveal()))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, &Error{Op: op, Class: ClassTransient, Ambiguous: wrote.Load(), Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, &Error{Op: op, Class: ClassTransient, Status: resp.StatusCode, Ambiguous: true, Err: scrubURLError(err)}
	}
	return resp, body, nil
}

// scrubURLError keeps the cause of a transport error but not the URL's
// query, which never holds a secret here but might one day.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		u, perr := url.Parse(ue.URL)
		if perr == nil {
			u.RawQuery = ""
			return fmt.Errorf("%s %s: %w", ue.Op, u.Redacted(), ue.Err)
		}
	}
	return err
}

// classify turns an answer the caller does not accept into an *Error,
// never nil: a 2xx without an error code that the caller still refuses
// (not 200 where 200 is the answer) is ClassProtocol.
func (p *Provider) classify(op string, resp *http.Response, body []byte) *Error {
	if e := classifyAnswer(op, resp.StatusCode, resp.Header, readAnswer(resp.Header.Get("Content-Type"), body), p.cfg.Now()); e != nil {
		return e
	}
	return &Error{Op: op, Class: ClassProtocol, Status: resp.StatusCode, Description: "unexpected status"}
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// clientAssertion signs an RFC 7523 client assertion for audience aud.
func (p *Provider) clientAssertion(aud string) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := p.cfg.PrivateKey.Public().(type) {
	case *rsa.PublicKey:
		alg = jose.RS256
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			alg = jose.ES256
		case 384:
			alg = jose.ES384
		default:
			return "", fmt.Errorf("unsupported EC curve")
		}
	case ed25519.PublicKey:
		alg = jose.EdDSA
	default:
		return "", fmt.Errorf("unsupported private key type %T", k)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if p.cfg.KeyID != "" {
		opts = opts.WithHeader("kid", p.cfg.KeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: p.cfg.PrivateKey}, opts)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := p.cfg.Now()
	claims := jwt.Claims{Issuer: p.cfg.ClientID, Subject: p.cfg.ClientID, Audience: jwt.Audience{aud},
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]) + strconv.FormatUint(jtiCounter.Add(1), 36),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(60 * time.Second))}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
