// Package provider speaks OAuth 2.0 and OpenID Connect to the providers
// users consent at: it builds authorization requests, redeems codes and
// refresh tokens over the back channel, verifies identities, revokes tokens,
// and classifies every failure so that renewal knows whether a grant is
// dead, a failure transient, or the operator's configuration at fault.
//
// Two kinds exist. KindOIDC takes its endpoints from discovery (the
// metadata's issuer must equal the configured one exactly) and verifies ID
// tokens with github.com/coreos/go-oidc/v3 plus the checks go-oidc leaves to
// its caller (nonce, azp, an algorithm allow-list). KindX is X's OAuth 2.0:
// no ID token; the identity comes from GET /2/users/me.
//
// A Provider is safe for concurrent use. Secrets (client secrets, tokens)
// never appear in its errors or logs.
package provider

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// Kinds of provider.
const (
	KindX    = "x"
	KindOIDC = "oidc"
)

// Client authentication methods at the token endpoint.
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
)

// X's endpoints, the defaults of a KindX provider.
const (
	XAuthURL   = "https://x.com/i/oauth2/authorize"
	XTokenURL  = "https://api.x.com/2/oauth2/token"
	XRevokeURL = "https://api.x.com/2/oauth2/revoke"
	XAPIURL    = "https://api.x.com"
)

// XScopes are the scopes tagwatch needs at X.
var XScopes = []string{"tweet.read", "users.read", "offline.access"}

// Config configures a provider. Zero values take the defaults documented.
type Config struct {
	// Name is how watches and grants refer to the provider.
	Name string
	// Kind is KindX or KindOIDC.
	Kind string
	// Issuer is the OpenID issuer URL (KindOIDC).
	Issuer   string
	ClientID string
	// ClientAuth is AuthSecretBasic (default), AuthSecretPost or AuthPrivateKeyJWT.
	ClientAuth   string
	ClientSecret secret.ClientSecret
	// PrivateKey signs client assertions for AuthPrivateKeyJWT (RSA or
	// ECDSA P-256), KeyID names it in the JWT header.
	PrivateKey crypto.Signer
	KeyID      string
	// Scopes are requested beyond the ones tagwatch needs.
	Scopes []string
	// RedirectURL is tagwatch's callback, registered at the provider.
	RedirectURL string
	// APIURL is the X-v2-compatible API the access tokens are for
	// (default XAPIURL for KindX).
	APIURL string
	// AuthURL, TokenURL and RevokeURL override the endpoints (KindX; for
	// KindOIDC they override discovery).
	AuthURL, TokenURL, RevokeURL string
	// CAFile is an extra PEM bundle to trust besides the system roots.
	CAFile string
	// HTTPClient, when set, is used as is (tests); otherwise one is built
	// with Timeout and CAFile.
	HTTPClient *http.Client
	// Timeout bounds each request to the provider; default 15 s.
	Timeout time.Duration
	// DefaultLifetime is assumed for an access token whose response has no
	// expires_in; default 5 minutes (short-lived, never eternal).
	DefaultLifetime time.Duration
	// SigningAlgs is the ID token algorithm allow-list; default RS256,
	// RS384, RS512, ES256, ES384, PS256, EdDSA. "none" is never allowed.
	// Logout tokens are held to the same list.
	SigningAlgs []string
	// LogoutTokenMaxAge is how old (by iat) a back-channel logout token
	// may be; default DefaultLogoutTokenMaxAge. See VerifyLogoutToken.
	LogoutTokenMaxAge time.Duration
	Now               func() time.Time
	Logger            *slog.Logger
}

// Provider is a configured, discovered provider.
type Provider struct {
	cfg       Config
	client    *http.Client
	oauth     oauth2.Config
	revokeURL string
	apiURL    string
	issuer    string
	// issParam: the provider advertises RFC 9207's iss parameter.
	issParam bool
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	// logoutVerifier checks a logout token's signature, iss and aud; it
	// skips the exp check, which VerifyLogoutToken does itself (Hydra
	// sends no exp).
	logoutVerifier *oidc.IDTokenVerifier
	// endSession is the RP-Initiated Logout endpoint from discovery.
	endSession string
	log        *slog.Logger
}

// New checks cfg, discovers an OIDC provider's endpoints, and returns the
// provider. Every URL must be https, except on loopback hosts (allowed for
// development and tests, and logged).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.DefaultLifetime <= 0 {
		cfg.DefaultLifetime = 5 * time.Minute
	}
	if cfg.LogoutTokenMaxAge <= 0 {
		cfg.LogoutTokenMaxAge = DefaultLogoutTokenMaxAge
	}
	if cfg.ClientAuth == "" {
		cfg.ClientAuth = AuthSecretBasic
	}
	if len(cfg.SigningAlgs) == 0 {
		cfg.SigningAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.PS256, oidc.EdDSA}
	}
	cfg.SigningAlgs = slices.DeleteFunc(slices.Clone(cfg.SigningAlgs), func(a string) bool { return strings.EqualFold(a, "none") })
	log := cfg.Logger.With("provider", cfg.Name)
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("provider %s: client id is required", cfg.Name)
	}
	switch cfg.ClientAuth {
	case AuthSecretBasic, AuthSecretPost:
		if cfg.ClientSecret.IsZero() {
			return nil, fmt.Errorf("provider %s: %s needs a client secret", cfg.Name, cfg.ClientAuth)
		}
	case AuthPrivateKeyJWT:
		if cfg.PrivateKey == nil {
			return nil, fmt.Errorf("provider %s: private_key_jwt needs a private key", cfg.Name)
		}
	default:
		return nil, fmt.Errorf("provider %s: unknown client authentication %q", cfg.Name, cfg.ClientAuth)
	}
	if err := CheckURL(cfg.RedirectURL); err != nil {
		return nil, fmt.Errorf("provider %s: redirect url: %w", cfg.Name, err)
	}
	client := cfg.HTTPClient
	if client == nil {
		var err error
		client, err = newHTTPClient(cfg.CAFile, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", cfg.Name, err)
		}
	}
	p := &Provider{cfg: cfg, client: client, log: log}
	var authURL, tokenURL string
	switch cfg.Kind {
	case KindX:
		authURL, tokenURL, p.revokeURL, p.apiURL = orDefault(cfg.AuthURL, XAuthURL), orDefault(cfg.TokenURL, XTokenURL),
			orDefault(cfg.RevokeURL, XRevokeURL), orDefault(cfg.APIURL, XAPIURL)
	case KindOIDC:
		if cfg.Issuer == "" {
			return nil, fmt.Errorf("provider %s: issuer is required", cfg.Name)
		}
		if err := CheckURL(cfg.Issuer); err != nil {
			return nil, fmt.Errorf("provider %s: issuer: %w", cfg.Name, err)
		}
		dctx := oidc.ClientContext(ctx, client)
		op, err := oidc.NewProvider(dctx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("provider %s: discovery at %s: %w", cfg.Name, cfg.Issuer, err)
		}
		var meta struct {
			Issuer       string   `json:"issuer"`
			Revocation   string   `json:"revocation_endpoint"`
			ISSParameter bool     `json:"authorization_response_iss_parameter_supported"`
			AuthMethods  []string `json:"token_endpoint_auth_methods_supported"`
			EndSession   string   `json:"end_session_endpoint"`
		}
		if err := op.Claims(&meta); err != nil {
			return nil, fmt.Errorf("provider %s: discovery metadata: %w", cfg.Name, err)
		}
		if meta.Issuer != cfg.Issuer {
			return nil, fmt.Errorf("provider %s: discovery issuer %q is not the configured %q", cfg.Name, meta.Issuer, cfg.Issuer)
		}
		if len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, cfg.ClientAuth) {
			return nil, fmt.Errorf("provider %s: it does not support client authentication %s (it supports %s)", cfg.Name, cfg.ClientAuth, strings.Join(meta.AuthMethods, ", "))
		}
		ep := op.Endpoint()
		authURL, tokenURL, p.revokeURL = orDefault(cfg.AuthURL, ep.AuthURL), orDefault(cfg.TokenURL, ep.TokenURL), orDefault(cfg.RevokeURL, meta.Revocation)
		p.apiURL = cfg.APIURL
		p.issuer, p.issParam, p.oidc = meta.Issuer, meta.ISSParameter, op
		p.verifier = op.Verifier(&oidc.Config{ClientID: cfg.ClientID, SupportedSigningAlgs: cfg.SigningAlgs, Now: cfg.Now})
		p.logoutVerifier = op.Verifier(&oidc.Config{ClientID: cfg.ClientID, SupportedSigningAlgs: cfg.SigningAlgs, Now: cfg.Now, SkipExpiryCheck: true})
		p.endSession = meta.EndSession
	default:
		return nil, fmt.Errorf("provider %s: unknown kind %q", cfg.Name, cfg.Kind)
	}
	for name, u := range map[string]string{"authorization endpoint": authURL, "token endpoint": tokenURL,
		"revocation endpoint": p.revokeURL, "api": p.apiURL, "end session endpoint": p.endSession} {
		if u == "" && (name == "revocation endpoint" || name == "api" || name == "end session endpoint") {
			continue
		}
		if err := CheckURL(u); err != nil {
			return nil, fmt.Errorf("provider %s: %s: %w", cfg.Name, name, err)
		}
		if pu, _ := url.Parse(u); pu != nil && pu.Scheme == "http" {
			log.Warn("provider endpoint is plain http on loopback: development only", "endpoint", name, "url", u)
		}
	}
	p.oauth = oauth2.Config{ClientID: cfg.ClientID, RedirectURL: cfg.RedirectURL, Scopes: p.Scopes(),
		Endpoint: oauth2.Endpoint{AuthURL: authURL, TokenURL: tokenURL}}
	return p, nil
}

func orDefault(v, d string) string {
	if v != "" {
		return v
	}
	return d
}

// Name returns the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// Kind returns KindX or KindOIDC.
func (p *Provider) Kind() string { return p.cfg.Kind }

// Issuer returns the OpenID issuer ("" for KindX).
func (p *Provider) Issuer() string { return p.issuer }

// APIURL returns the base URL of the API the access tokens are for.
func (p *Provider) APIURL() string { return p.apiURL }

// HasRevocation reports whether the provider has a revocation endpoint.
func (p *Provider) HasRevocation() bool { return p.revokeURL != "" }

// AuthorizationOrigin returns scheme://host of the authorization endpoint,
// for a Content-Security-Policy form-action.
func (p *Provider) AuthorizationOrigin() string {
	u, err := url.Parse(p.oauth.Endpoint.AuthURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Scopes returns every scope requested: what tagwatch needs plus the
// configured extras.
func (p *Provider) Scopes() []string {
	var s []string
	if p.cfg.Kind == KindX {
		s = append(s, XScopes...)
	} else {
		s = append(s, oidc.ScopeOpenID, oidc.ScopeOfflineAccess)
	}
	for _, extra := range p.cfg.Scopes {
		if !slices.Contains(s, extra) {
			s = append(s, extra)
		}
	}
	return s
}

// RequiredScopes returns the scopes a grant must keep for the watches to
// work; a grant whose scopes no longer cover them needs a new consent.
func (p *Provider) RequiredScopes() []string {
	if p.cfg.Kind == KindX {
		return slices.Clone(XScopes)
	}
	// openid is about the sign-in itself; what runs on the user's behalf
	// needs offline access and the configured API scopes.
	s := []string{oidc.ScopeOfflineAccess}
	return append(s, p.cfg.Scopes...)
}

// MissingScopes returns the required scopes a token answer did not grant:
// the one rule enrollment (a code exchange's answer) and renewal (a
// refresh's answer) both apply.
//
// granted is the answer's scope list; nil (the answer named no scope)
// means the scopes requested (RFC 6749 5.1). refresh says whether a
// refresh token is held: returned by the code exchange, or, for a refresh,
// the one just used (an answer without a new refresh_token keeps it).
//
// Offline access (X's offline.access, OpenID's offline_access) is proved by
// the refresh token, not by the list: Microsoft Entra ID grants it without
// listing it, and a list that names it without a refresh token grants
// nothing. Every other required scope must be listed.
func (p *Provider) MissingScopes(granted []string, refresh bool) []string {
	var missing []string
	for _, s := range p.RequiredScopes() {
		switch {
		case isOfflineScope(s):
			if !refresh {
				missing = append(missing, s)
			}
		case granted != nil && !slices.Contains(granted, s):
			missing = append(missing, s)
		}
	}
	return missing
}

// isOfflineScope reports whether scope asks for offline access: X's
// offline.access or OpenID Connect's offline_access.
func isOfflineScope(scope string) bool {
	return scope == oidc.ScopeOfflineAccess || scope == "offline.access"
}

// AuthCodeURL returns the authorization request URL: response_type=code,
// PKCE S256 from verifier, the state, and for OIDC the nonce and
// prompt=consent.
func (p *Provider) AuthCodeURL(state, verifier, nonce string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if p.cfg.Kind == KindOIDC {
		opts = append(opts, oidc.Nonce(nonce), oauth2.SetAuthURLParam("prompt", "consent"))
	}
	return p.oauth.AuthCodeURL(state, opts...)
}

// CheckAuthorizationIssuer applies RFC 9207 to a callback's iss parameter:
// when the provider advertises the parameter it must be present, and when
// present it must equal the issuer exactly.
func (p *Provider) CheckAuthorizationIssuer(iss string, present bool) error {
	switch {
	case present && iss != p.issuer:
		return &Error{Op: "authorization response", Class: ClassProtocol, Description: fmt.Sprintf("iss %q is not this provider's issuer", iss)}
	case !present && p.issParam:
		return &Error{Op: "authorization response", Class: ClassProtocol, Description: "iss is missing, but the provider advertises it"}
	}
	return nil
}

// CheckURL accepts an absolute https URL, or http on a loopback host
// (development and tests). URLs with credentials or a fragment are refused.
// Errors are *URLError, whose message never shows the URL's user part.
func CheckURL(raw string) error {
	bad := func(problem string) error { return &URLError{URL: raw, Problem: problem} }
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return bad("must be an absolute URL")
	}
	if u.User != nil {
		return bad("must not carry credentials in its user part")
	}
	if u.Fragment != "" {
		return bad("must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return bad("must be https (http is allowed only on loopback)")
	default:
		return bad("must be https")
	}
}

// URLError is a URL that CheckURL refuses. Its message reads
// `must be https (http is allowed only on loopback), got "http://id.example.org/"`,
// with the URL shown by WithoutUser: endpoint URLs carry no secret by
// contract, but a user part is a credential whatever the contract says.
// Callers that show the URL another way (a webhook target, whose path is
// its credential) use Problem.
type URLError struct {
	// URL is the URL as given.
	URL string
	// Problem says what is wrong, without the URL: "must not have a fragment".
	Problem string
}

func (e *URLError) Error() string { return fmt.Sprintf("%s, got %q", e.Problem, WithoutUser(e.URL)) }

// WithoutUser returns raw without the user part of its authority
// ("https://u:p@h/x" is "https://h/x"), cut from the text, so that a URL
// that does not parse loses it too.
func WithoutUser(raw string) string {
	start := 0
	if i := strings.Index(raw, ":"); i > 0 && !strings.ContainsAny(raw[:i], "/?#@") {
		start = i + 1 // after the scheme
	}
	start += len(raw[start:]) - len(strings.TrimPrefix(raw[start:], "//"))
	end := len(raw)
	if i := strings.IndexAny(raw[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndex(raw[start:end], "@"); at >= 0 {
		return raw[:start] + raw[start+at+1:]
	}
	return raw
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func newHTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = timeout
	if caFile != "" {
		// Not a secret, but read the same way: a FIFO or a directory
		// there is an error at once, not a hang.
		pem, err := seal.ReadFile(caFile, seal.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// Token, revocation and identity endpoints answer directly; a
		// redirect would carry credentials somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

var errNoAPI = errors.New("provider has no api url")
