// Package hydratest runs a real Ory Hydra (v2.3.0) as the OpenID provider in
// tests, together with a login, consent and logout app that answers through
// Hydra's admin API, and drives the browser side of the authorization code
// flow over HTTP with a cookie jar (Browse, BrowseLogin); browser tests
// drive the same pages with Chromium.
//
// # Finding the Hydra binary
//
// Start looks for the binary in this order: the path in $TAGWATCH_HYDRA; then
// .ci/bin/hydra, found by walking up from the working directory to the
// repository root (where .ci/run builds it). When neither exists the test
// fails if $CI_STRICT is 1 (set by .ci/run, so that CI never skips silently)
// and is skipped with a message saying how to build it otherwise. A
// $TAGWATCH_HYDRA naming a missing file always fails the test.
//
// The same convention applies to every external tool a test needs: under
// CI_STRICT=1 a missing tool is a test failure, never a skip.
//
// # What the Hydra instance looks like
//
// Each Start launches its own `hydra serve all --dev` with an in-memory
// database, public and admin listeners on free loopback ports (plain http),
// PKCE enforced for all clients, and refresh-token rotation with a grace
// period of 0: a refresh token is valid exactly once, and presenting a used
// one makes Hydra revoke the whole token chain of that grant. Everything is
// torn down by t.Cleanup; on failure the tail of Hydra's log is printed.
//
// Browsers and clients reach Hydra's public side through a front door, a
// reverse proxy on its own loopback port that counts authorization
// requests (Stats); its URL is PublicURL and the issuer. Hydra's session
// cookie (ory_hydra_session_dev, set only for a remembered login) is
// host-only on 127.0.0.1, Path=/, HttpOnly, SameSite=Lax, not Secure, with
// Max-Age RememberFor.
//
// The login, consent and logout app (one loopback server) answers as
// Options say, each switchable at run time: the subject it signs in
// (default "user-1"), the login mode (default LoginAuto: every login and
// consent accepted at once and nothing remembered; LoginRemember and
// LoginInteractive remember both for RememberFor, default 1h, and
// LoginInteractive shows a login page when Hydra has no session), the
// scopes it grants (default all requested), a refusal of consent (default
// none) and extra ID token claims (default none). RP-initiated logout
// (/oauth2/sessions/logout) is accepted at once; without a
// post_logout_redirect_uri it ends on the app's "signed out" page.
// EndSession and EndSubjectSessions end Hydra's login sessions through the
// admin API; only EndSession sends back-channel logout tokens (see there).
package hydratest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures a Hydra instance. The zero value is usable: every zero
// field takes the default given in its comment.
type Options struct {
	// AccessTokenTTL is the lifetime of access tokens. Default 1h.
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens. Default 1h.
	IDTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of refresh tokens. Default 720h.
	RefreshTokenTTL time.Duration
	// AuthCodeTTL is the lifetime of authorization codes. Default 10m.
	AuthCodeTTL time.Duration

	// Subject is the user the login app logs in. Default "user-1".
	// SetSubject changes it later.
	Subject string
	// ConsentScopes, when not nil, is the set of scopes the consent app
	// grants: the requested scopes not in it are left out. Nil grants every
	// requested scope. SetConsentScopes changes it later.
	ConsentScopes []string
	// Deny makes the consent app refuse consent (error=access_denied at
	// the client's redirect URI). SetDeny changes it later.
	Deny bool
	// IDTokenClaims are extra claims put into ID tokens (for example
	// "email"). SetIDTokenClaims changes them later.
	IDTokenClaims map[string]any
	// Login is how the login app answers. Default LoginAuto: every login
	// accepted at once and nothing remembered. SetLoginMode changes it
	// later.
	Login LoginMode
	// RememberFor is how long Hydra remembers a login session and a consent
	// that the login mode remembers (LoginRemember, LoginInteractive): the
	// remember_for of their acceptance, and the lifetime of Hydra's session
	// cookie. Default 1h.
	RememberFor time.Duration

	// PKCEOptional turns off Hydra's PKCE enforcement, which is on by
	// default so that a client forgetting PKCE fails.
	PKCEOptional bool
	// RotationGracePeriod is Hydra's
	// oauth2.grant.refresh_token.rotation_grace_period. Default 0: a used
	// refresh token is dead, and its reuse revokes the whole chain.
	RotationGracePeriod time.Duration
	// LogLevel is Hydra's log level. Default "info".
	LogLevel string
	// StartTimeout bounds the wait for /health/ready. Default 60s.
	StartTimeout time.Duration
}

// Hydra is a running Hydra instance with its login and consent app.
// Its methods are safe for concurrent use. The process belongs to the test
// that started it and stops in that test's cleanup.
type Hydra struct {
	publicURL string // the front door: what browsers and clients use
	hydraURL  string // Hydra's own public listener, behind the front door
	adminURL  string
	issuer    string
	authURL   string
	tokenURL  string
	revokeURL string
	logPath   string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	http   *http.Client  // for admin API calls

	app *app
}

// Start launches Hydra for the test and returns once it is ready. It fails
// or skips the test when the binary cannot be found (see the package
// documentation) and fails it when Hydra does not become ready.
func Start(t testing.TB, opts Options) *Hydra {
	t.Helper()
	bin := Binary(t)

	app := newApp(opts)
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	door := &frontDoor{app: app}
	doorSrv := httptest.NewServer(door)
	t.Cleanup(doorSrv.Close)

	dir := t.TempDir()
	began := time.Now()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		h, err := start(t, bin, dir, attempt, srv.URL, doorSrv.URL, door, opts)
		if err == nil {
			h.app = app
			app.setAdmin(h.adminURL, h.http)
			t.Logf("hydratest: hydra ready in %v: public %s (hydra's own %s), admin %s",
				time.Since(began).Round(time.Millisecond), h.publicURL, h.hydraURL, h.adminURL)
			return h
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("hydratest: start hydra: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("port taken")

func start(t testing.TB, bin, dir string, attempt int, appURL, publicURL string, door *frontDoor, opts Options) (*Hydra, error) {
	t.Helper()
	publicPort, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	hydraURL := fmt.Sprintf("http://127.0.0.1:%d", publicPort)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if err := door.setTarget(hydraURL); err != nil {
		return nil, err
	}

	cfg := map[string]any{
		"dsn": "memory",
		"log": map[string]any{
			"level":                 orDefault(opts.LogLevel, "info"),
			"format":                "text",
			"leak_sensitive_values": true, // test-only instance: readable logs beat redaction
		},
		"serve": map[string]any{
			"public": map[string]any{
				"host":        "127.0.0.1",
				"port":        publicPort,
				"request_log": map[string]any{"disable_for_health": true},
			},
			"admin": map[string]any{
				"host":        "127.0.0.1",
				"port":        adminPort,
				"request_log": map[string]any{"disable_for_health": true},
			},
			"cookies": map[string]any{"same_site_mode": "Lax"},
		},
		"urls": map[string]any{
			"self": map[string]any{
				"issuer": publicURL,
				"public": publicURL,
				"admin":  adminURL,
			},
			"login":                appURL + "/login",
			"consent":              appURL + "/consent",
			"logout":               appURL + "/logout",
			"post_logout_redirect": appURL + "/signed-out",
		},
		"secrets": map[string]any{"system": []string{randomHex(16)}},
		"ttl": map[string]any{
			"access_token":  durationOr(opts.AccessTokenTTL, time.Hour),
			"id_token":      durationOr(opts.IDTokenTTL, time.Hour),
			"refresh_token": durationOr(opts.RefreshTokenTTL, 720*time.Hour),
			"auth_code":     durationOr(opts.AuthCodeTTL, 10*time.Minute),
		},
		"oauth2": map[string]any{
			"expose_internal_errors": true,
			"pkce":                   map[string]any{"enforced": !opts.PKCEOptional},
			"grant": map[string]any{
				"refresh_token": map[string]any{
					"rotation_grace_period": durationOr(opts.RotationGracePeriod, 0),
				},
			},
		},
		"sqa": map[string]any{"opt_out": true},
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("hydra-%d.json", attempt))
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("hydra-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", cfgPath)
	cmd.Dir = dir
	// Only what Hydra needs from the environment: a developer's DSN,
	// SECRETS_SYSTEM or similar must not leak into the test instance.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "SQA_OPT_OUT=true"}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	h := &Hydra{
		publicURL: publicURL,
		hydraURL:  hydraURL,
		adminURL:  adminURL,
		logPath:   logPath,
		cmd:       cmd,
		exited:    make(chan struct{}),
		http:      &http.Client{Timeout: 30 * time.Second},
	}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(h.exited)
	}()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("hydratest: last lines of hydra's log (%s):\n%s", logPath, tail(logPath, 60))
		}
	})

	if err := h.waitReady(durationOrDefault(opts.StartTimeout, 60*time.Second)); err != nil {
		h.stop()
		if strings.Contains(tail(logPath, 40), "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, err // the cleanup above prints the log's tail
	}
	return h, nil
}

// stop ends the process: SIGTERM, then SIGKILL after 5 s.
func (h *Hydra) stop() {
	select {
	case <-h.exited:
		return
	default:
	}
	_ = h.cmd.Process.Signal(terminateSignal)
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

func (h *Hydra) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	ready := func(base string) bool {
		resp, err := client.Get(base + "/health/ready")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for {
		select {
		case <-h.exited:
			return fmt.Errorf("hydra exited before it was ready (%v)", h.cmd.ProcessState)
		default:
		}
		if ready(h.adminURL) && ready(h.hydraURL) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hydra not ready after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Read the endpoints from discovery, as a relying party would, and
	// fetch the JWKS once. The first of these makes Hydra generate its ID
	// token signing key (RSA), which takes seconds on a busy machine: better
	// here than inside the first token request of a test.
	var disc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	client.Timeout = time.Until(deadline) + 10*time.Second
	if err := getJSON(client, h.publicURL+"/.well-known/openid-configuration", &disc); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	h.issuer = disc.Issuer
	h.authURL = disc.AuthorizationEndpoint
	h.tokenURL = disc.TokenEndpoint
	h.revokeURL = disc.RevocationEndpoint
	var jwks struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := getJSON(client, disc.JWKSURI, &jwks); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if len(jwks.Keys) == 0 {
		return errors.New("jwks: no keys")
	}
	return nil
}

// IssuerURL returns the issuer exactly as Hydra's discovery document
// states it (what an OIDC client must be configured with).
func (h *Hydra) IssuerURL() string { return h.issuer }

// PublicURL returns the base URL of Hydra's public side: the front door
// that counts authorization requests (Stats) and passes everything on to
// Hydra's public listener. It is also the issuer.
func (h *Hydra) PublicURL() string { return h.publicURL }

// AdminURL returns the base URL of Hydra's admin listener (paths under
// /admin/...).
func (h *Hydra) AdminURL() string { return h.adminURL }

// AuthURL returns the authorization endpoint from discovery.
func (h *Hydra) AuthURL() string { return h.authURL }

// TokenURL returns the token endpoint from discovery.
func (h *Hydra) TokenURL() string { return h.tokenURL }

// RevocationURL returns the RFC 7009 revocation endpoint from discovery.
func (h *Hydra) RevocationURL() string { return h.revokeURL }

// LogPath returns the file Hydra's output goes to. It lives in the test's
// temporary directory.
func (h *Hydra) LogPath() string { return h.logPath }

// Client describes an OAuth 2.0 client to register at Hydra.
type Client struct {
	// ID is the client_id; required.
	ID string
	// Secret is the client secret (at least 6 characters for Hydra). Empty
	// with a secret-based auth method makes Hydra generate one, which
	// CreateClient returns.
	Secret string
	// RedirectURIs must contain every redirect_uri the client will use.
	RedirectURIs []string
	// Scopes the client may request. Default {"openid", "offline_access"}.
	Scopes []string
	// GrantTypes default to {"authorization_code", "refresh_token"}.
	GrantTypes []string
	// TokenEndpointAuthMethod is "client_secret_basic" (default),
	// "client_secret_post", "private_key_jwt" or "none".
	TokenEndpointAuthMethod string
	// TokenEndpointAuthSigningAlg is the JWS algorithm of private_key_jwt
	// assertions; Hydra defaults to RS256.
	TokenEndpointAuthSigningAlg string
	// JWKS is the client's public JSON Web Key Set ({"keys":[...]}) for
	// private_key_jwt.
	JWKS json.RawMessage
	// Audience lists the audiences the client may request for access
	// tokens.
	Audience []string
	// BackChannelLogoutURI is where Hydra posts OpenID Connect
	// Back-Channel Logout tokens for this client. Hydra sends one when a
	// remembered login session in which the client was authorized ends by
	// EndSession or by RP-initiated logout (never by EndSubjectSessions).
	BackChannelLogoutURI string
	// BackChannelLogoutSessionRequired is the client's
	// backchannel_logout_session_required. Hydra puts sid into every
	// logout token regardless.
	BackChannelLogoutSessionRequired bool
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values the
	// client may send to /oauth2/sessions/logout. Hydra requires each to
	// share scheme, host and port with one of RedirectURIs.
	PostLogoutRedirectURIs []string
}

// CreateClient registers the client with Hydra's admin API and returns it
// as stored (with the generated secret when Secret was empty).
func (h *Hydra) CreateClient(t testing.TB, c Client) Client {
	t.Helper()
	if c.ID == "" {
		t.Fatal("hydratest: CreateClient: empty client ID")
	}
	if c.Scopes == nil {
		c.Scopes = []string{"openid", "offline_access"}
	}
	if c.GrantTypes == nil {
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = "client_secret_basic"
	}
	body := map[string]any{
		"client_id":                  c.ID,
		"redirect_uris":              c.RedirectURIs,
		"grant_types":                c.GrantTypes,
		"response_types":             []string{"code"},
		"scope":                      strings.Join(c.Scopes, " "),
		"token_endpoint_auth_method": c.TokenEndpointAuthMethod,
	}
	if c.Secret != "" {
		body["client_secret"] = c.Secret
	}
	if c.TokenEndpointAuthSigningAlg != "" {
		body["token_endpoint_auth_signing_alg"] = c.TokenEndpointAuthSigningAlg
	}
	if len(c.JWKS) > 0 {
		body["jwks"] = c.JWKS
	}
	if c.Audience != nil {
		body["audience"] = c.Audience
	}
	if c.BackChannelLogoutURI != "" {
		body["backchannel_logout_uri"] = c.BackChannelLogoutURI
	}
	if c.BackChannelLogoutSessionRequired {
		body["backchannel_logout_session_required"] = true
	}
	if c.PostLogoutRedirectURIs != nil {
		body["post_logout_redirect_uris"] = c.PostLogoutRedirectURIs
	}
	var out struct {
		ClientSecret string `json:"client_secret"`
	}
	h.admin(t, http.MethodPost, "/admin/clients", jsonBody(t, body), "application/json", http.StatusCreated, &out)
	if c.Secret == "" {
		c.Secret = out.ClientSecret
	}
	return c
}

// DeleteClient removes a client; its tokens stop working (invalid_client).
func (h *Hydra) DeleteClient(t testing.TB, clientID string) {
	t.Helper()
	h.admin(t, http.MethodDelete, "/admin/clients/"+url.PathEscape(clientID), nil, "", http.StatusNoContent, nil)
}

// Introspection is Hydra's RFC 7662 introspection answer.
type Introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope"`
	ClientID  string   `json:"client_id"`
	Subject   string   `json:"sub"`
	Expiry    int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	Issuer    string   `json:"iss"`
	Audience  []string `json:"aud"`
	TokenType string   `json:"token_type"`
	// TokenUse is "access_token" or "refresh_token".
	TokenUse string `json:"token_use"`
}

// Introspect asks Hydra's admin API whether a token (access or refresh) is
// active.
func (h *Hydra) Introspect(t testing.TB, token string) (active bool, info Introspection) {
	t.Helper()
	form := url.Values{"token": {token}}
	h.admin(t, http.MethodPost, "/admin/oauth2/introspect", strings.NewReader(form.Encode()),
		"application/x-www-form-urlencoded", http.StatusOK, &info)
	return info.Active, info
}

// RevokeConsent revokes the subject's consent to the client, as a user
// withdrawing it in the provider's settings would: every token of that
// grant stops working.
func (h *Hydra) RevokeConsent(t testing.TB, subject, clientID string) {
	t.Helper()
	q := url.Values{"subject": {subject}, "client": {clientID}}
	h.admin(t, http.MethodDelete, "/admin/oauth2/auth/sessions/consent?"+q.Encode(), nil, "", http.StatusNoContent, nil)
}

// EndSession ends Hydra's login session sid (DELETE
// /admin/oauth2/auth/sessions/login?sid=...), as a provider does when a
// person signs out there or an administrator ends their session: the next
// authorization request from that browser finds no session (prompt=none
// answers login_required, otherwise the login page). When the session was
// remembered, Hydra first posts a back-channel logout token (with that sid)
// to the backchannel_logout_uri of every client authorized in that session
// (an authorization request answered within it), in the background: the
// post may arrive after EndSession returns.
// Tokens already issued stay valid. An unknown or not remembered sid is
// not an error, and then Hydra sends nothing.
func (h *Hydra) EndSession(t testing.TB, sid string) {
	t.Helper()
	q := url.Values{"sid": {sid}}
	h.admin(t, http.MethodDelete, "/admin/oauth2/auth/sessions/login?"+q.Encode(), nil, "", http.StatusNoContent, nil)
}

// EndSubjectSessions ends every login session of subject (DELETE
// /admin/oauth2/auth/sessions/login?subject=...). Hydra sends no
// back-channel logout for these; the next authorization request finds no
// session. Tokens already issued stay valid.
func (h *Hydra) EndSubjectSessions(t testing.TB, subject string) {
	t.Helper()
	q := url.Values{"subject": {subject}}
	h.admin(t, http.MethodDelete, "/admin/oauth2/auth/sessions/login?"+q.Encode(), nil, "", http.StatusNoContent, nil)
}

// admin calls Hydra's admin API and decodes a JSON answer into out (when
// not nil), failing the test on any other status than want.
func (h *Hydra) admin(t testing.TB, method, path string, body io.Reader, contentType string, want int, out any) {
	t.Helper()
	if err := adminCall(h.http, h.adminURL, method, path, body, contentType, want, out); err != nil {
		t.Fatalf("hydratest: %v", err)
	}
}

func adminCall(c *http.Client, base, method, path string, body io.Reader, contentType string, want int, out any) error {
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// Browse follows the path a browser takes from authURL: through Hydra, the
// login app, Hydra, the consent app and Hydra again, with client's cookie
// jar (a client without a jar gets a fresh one for this call). It stops at
// the first redirect to a URL that starts with redirectPrefix and returns
// that URL (the callback with code, state and iss, or error=...) without
// requesting it. The test fails if the path ends anywhere else, the login
// page of LoginInteractive included (BrowseLogin signs in there).
func Browse(t testing.TB, client *http.Client, authURL, redirectPrefix string) *url.URL {
	t.Helper()
	return browse(t, client, authURL, redirectPrefix, false)
}

// BrowseLogin is Browse for a person who signs in when the login page of
// LoginInteractive shows: it posts the page's form, as a click on its
// button does, and goes on.
func BrowseLogin(t testing.TB, client *http.Client, authURL, redirectPrefix string) *url.URL {
	t.Helper()
	return browse(t, client, authURL, redirectPrefix, true)
}

// challengeField finds the login challenge in the login page's form.
var challengeField = regexp.MustCompile(`name="login_challenge" value="([^"]*)"`)

func browse(t testing.TB, client *http.Client, authURL, redirectPrefix string, signIn bool) *url.URL {
	t.Helper()
	var c http.Client
	if client != nil {
		c = *client
	}
	if c.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Jar = jar
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	var (
		found *url.URL
		hops  []string
	)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		hops = append(hops, req.URL.String())
		if strings.HasPrefix(req.URL.String(), redirectPrefix) {
			found = req.URL
			return http.ErrUseLastResponse
		}
		if len(via) >= 20 {
			return errors.New("stopped after 20 redirects")
		}
		return nil
	}
	resp, err := c.Get(authURL)
	if err == nil && found == nil && signIn {
		resp, err = submitLogin(&c, resp, &hops)
	}
	if err != nil {
		t.Fatalf("hydratest: Browse(%s): %v (hops: %s)", authURL, err, strings.Join(hops, " -> "))
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if found == nil {
		t.Fatalf("hydratest: Browse(%s) ended at %s with status %d, never reaching %s (hops: %s): %s",
			authURL, resp.Request.URL, resp.StatusCode, redirectPrefix, strings.Join(hops, " -> "), b)
	}
	return found
}

// submitLogin posts the form of the login page resp shows, as a click on
// its button does. Any other answer is returned as it is.
func submitLogin(c *http.Client, resp *http.Response, hops *[]string) (*http.Response, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return resp, nil
	}
	m := challengeField.FindSubmatch(b)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" || m == nil {
		return resp, nil
	}
	*hops = append(*hops, "POST "+resp.Request.URL.String())
	return c.PostForm(resp.Request.URL.String(), url.Values{"login_challenge": {html.UnescapeString(string(m[1]))}})
}

// frontDoor is Hydra's public side as browsers and clients see it: it
// counts authorization requests and passes every request on to Hydra's
// public listener, keeping the Host header (Hydra builds its URLs from its
// configuration, which names the front door).
type frontDoor struct {
	app   *app
	mu    sync.Mutex
	proxy *httputil.ReverseProxy
}

func (d *frontDoor) setTarget(hydraURL string) error {
	u, err := url.Parse(hydraURL)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
	}
	return nil
}

func (d *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	proxy := d.proxy
	d.mu.Unlock()
	if proxy == nil {
		http.Error(w, "hydratest: hydra not started", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path == "/oauth2/auth" {
		q := r.URL.Query()
		if r.Method == http.MethodPost && r.Body != nil {
			// A form post to the authorization endpoint: read the form
			// and put the body back for Hydra.
			b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body.Close()
			if err != nil {
				http.Error(w, "hydratest: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			if form, err := url.ParseQuery(string(b)); err == nil {
				for k, v := range form {
					q[k] = append(q[k], v...)
				}
			}
		}
		d.app.countAuthorization(q)
	}
	proxy.ServeHTTP(w, r)
}

// Binary returns the path of the Hydra binary, or ends the test: failed
// under CI_STRICT=1 or when $TAGWATCH_HYDRA names a missing file, skipped
// otherwise. See the package documentation.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("TAGWATCH_HYDRA"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("hydratest: TAGWATCH_HYDRA=%s is not an executable file", p)
		}
		return p
	}
	if p, ok := findUp(filepath.Join(".ci", "bin", "hydra")); ok {
		return p
	}
	msg := "hydratest: Ory Hydra not found: set TAGWATCH_HYDRA, or build it with .ci/run " +
		"(or: cd .ci/tools && go build -tags sqlite,sqlite_omit_load_extension -o ../bin/hydra github.com/ory/hydra/v2)"
	if os.Getenv("CI_STRICT") == "1" {
		t.Fatal(msg + " [CI_STRICT=1: a missing tool is a failure]")
	}
	t.Skip(msg)
	return ""
}

// findUp looks for rel in the working directory and its parents, up to and
// including the repository root (the first directory holding go.mod or
// .git).
func findUp(rel string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if p := filepath.Join(dir, rel); isExecutable(p) {
			return p, true
		}
		if exists(filepath.Join(dir, "go.mod")) || exists(filepath.Join(dir, ".git")) {
			return "", false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func getJSON(c *http.Client, u string, out any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// tail returns the last n lines of a file, each cut to 400 bytes (Hydra
// logs whole requests, with challenges of a kilobyte or more).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 400 {
			line = line[:400] + " [...]"
		}
		lines = append(lines, line)
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// mustJSON encodes v; a value that cannot be encoded (an unencodable ID
// token claim) yields a body Hydra rejects, so the error shows in its answer.
func mustJSON(v any) io.Reader {
	b, err := json.Marshal(v)
	if err != nil {
		return strings.NewReader(fmt.Sprintf("hydratest: encode: %v", err))
	}
	return bytes.NewReader(b)
}

func jsonBody(t testing.TB, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func durationOrDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// durationOr formats d (or def when d is zero) the way Hydra's config
// expects durations.
func durationOr(d, def time.Duration) string {
	return durationOrDefault(d, def).String()
}
