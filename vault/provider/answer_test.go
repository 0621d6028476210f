package provider_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// tokenShape is one answer a token endpoint gives to a refresh.
type tokenShape struct {
	name   string
	status int
	ctype  string // Content-Type; "" sends none
	body   string
	header http.Header
	// cut, when > 0, sends a Content-Length this much larger than the body
	// and closes the connection: the body is cut short on the wire.
	cut int

	class     provider.Class // "" for a token
	ambiguous bool
	lifetime  time.Duration // for a token: the lifetime it gets
	scopes    string        // for a token: its Scopes, fmt.Sprint'ed, or "nil"
}

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
	ctHTML = "text/html; charset=utf-8"
	ctText = "text/plain; charset=utf-8"
)

// tokenShapes are the answers real providers send, each with the class it
// must get. The rules (vault/provider/answer.go): 429 and 5xx are transient
// (500, 502 and 504 ambiguous: the provider may have acted); an RFC 6749
// 5.2 error code decides under any other status, 2xx included; without a
// code, a 2xx with no usable token is a lost answer (protocol, ambiguous),
// 401 is the client, any other status protocol; a body cut short on the
// wire is transient and ambiguous whatever its status.
var tokenShapes = []tokenShape{
	// Tokens.
	// X's answer, as its documentation gives it (shared/docs/X_API.md).
	{name: "X token", status: 200, ctype: ctJSON,
		body:     `{"token_type":"bearer","expires_in":7200,"access_token":"at","scope":"tweet.read users.read offline.access","refresh_token":"rt"}`,
		lifetime: 7200 * time.Second, scopes: "[tweet.read users.read offline.access]"},
	// Microsoft Entra ID: offline access granted, not listed (case C02).
	{name: "Entra token without offline_access listed", status: 200, ctype: ctJSON,
		body:     `{"token_type":"Bearer","scope":"openid profile email","expires_in":3600,"access_token":"at","refresh_token":"rt","id_token":"x.y.z"}`,
		lifetime: time.Hour, scopes: "[openid profile email]"},
	// GitHub App user token: "scope" is "" (omniauth/omniauth-github#99),
	// which grants nothing, unlike a missing scope (RFC 6749 5.1).
	{name: "GitHub App token with empty scope", status: 200, ctype: ctJSON,
		body:     `{"access_token":"ghu_x","expires_in":28800,"refresh_token":"ghr_x","refresh_token_expires_in":15811200,"scope":"","token_type":"bearer"}`,
		lifetime: 28800 * time.Second, scopes: "[]"},
	{name: "scope omitted", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":60,"access_token":"at"}`,
		lifetime: time.Minute, scopes: "nil"},
	// expires_in as a string: "at least PayPal returns string"
	// (golang.org/x/oauth2 internal/token.go).
	{name: "expires_in string", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":"3600","access_token":"at"}`, lifetime: time.Hour, scopes: "nil"},
	{name: "expires_in float", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":3599.5,"access_token":"at"}`, lifetime: 3599 * time.Second, scopes: "nil"},
	{name: "expires_in string with spaces", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":" 45 ","access_token":"at"}`, lifetime: 45 * time.Second, scopes: "nil"},
	// Out of range or unreadable: the default lifetime (5 min), never an
	// eternal token nor one expired on arrival.
	{name: "expires_in huge", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":1e300,"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in negative", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":-3600,"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in NaN string", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":"NaN","access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in below a second", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":0.5,"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in an object", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":{"s":1},"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in 0", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":0,"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in null", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":null,"access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	{name: "expires_in missing", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","access_token":"at"}`, lifetime: 5 * time.Minute, scopes: "nil"},
	// RFC 6749 7.1 and 5.1: token_type is case-insensitive; tolerated when
	// missing.
	{name: "token_type BEARER", status: 200, ctype: ctJSON, body: `{"token_type":"BEARER","expires_in":60,"access_token":"at"}`, lifetime: time.Minute, scopes: "nil"},
	{name: "token_type Bearer", status: 200, ctype: ctJSON, body: `{"token_type":"Bearer","expires_in":60,"access_token":"at"}`, lifetime: time.Minute, scopes: "nil"},
	{name: "token_type missing", status: 200, ctype: ctJSON, body: `{"expires_in":60,"access_token":"at"}`, lifetime: time.Minute, scopes: "nil"},
	{name: "token_type mac", status: 200, ctype: ctJSON, body: `{"token_type":"mac","expires_in":60,"access_token":"at"}`, class: provider.ClassProtocol, ambiguous: true},
	{name: "white space and newlines around the JSON", status: 200, ctype: ctJSON, body: "\r\n\t {\"token_type\":\"bearer\",\n\"expires_in\":60,\"access_token\":\"at\"}\n\n", lifetime: time.Minute, scopes: "nil"},
	// RFC 8259 8.1 lets a parser ignore a byte order mark.
	{name: "JSON with a BOM", status: 200, ctype: ctJSON, body: "\ufeff{\"token_type\":\"bearer\",\"expires_in\":60,\"access_token\":\"at\"}", lifetime: time.Minute, scopes: "nil"},
	{name: "JSON sent as text/plain", status: 200, ctype: ctText, body: `{"token_type":"bearer","expires_in":60,"access_token":"at","scope":"a b"}`, lifetime: time.Minute, scopes: "[a b]"},
	{name: "JSON without a Content-Type", status: 200, body: `{"token_type":"bearer","expires_in":60,"access_token":"at"}`, lifetime: time.Minute, scopes: "nil"},
	// GitHub answers forms unless asked for JSON; golang.org/x/oauth2
	// reads them too.
	{name: "form token", status: 200, ctype: ctForm, body: `access_token=at&token_type=bearer&expires_in=60&scope=repo+user`, lifetime: time.Minute, scopes: "[repo user]"},

	// Error codes under any status but 429 and 5xx.
	// RFC 6749 5.2, and Google's wording.
	{name: "invalid_grant 400", status: 400, ctype: ctJSON, body: `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`, class: provider.ClassDeadGrant},
	{name: "invalid_grant 401", status: 401, ctype: ctJSON, body: `{"error":"invalid_grant"}`, class: provider.ClassDeadGrant},
	// Auth0's body (auth0/Auth0.swift#819), under the 403 its token
	// endpoint uses.
	{name: "invalid_grant 403 (Auth0)", status: 403, ctype: ctJSON, body: `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`, class: provider.ClassDeadGrant},
	{name: "invalid_grant 200", status: 200, ctype: ctJSON, body: `{"error":"invalid_grant","error_description":"expired"}`, class: provider.ClassDeadGrant},
	// Ory Hydra (RFC 6749 5.2 plus its own members).
	{name: "invalid_grant from Hydra", status: 400, ctype: ctJSON,
		body:  `{"error":"invalid_grant","error_description":"The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.","error_hint":"The refresh token was already used.","status_code":400}`,
		class: provider.ClassDeadGrant},
	// GitHub answers errors with 200 (golang/oauth2#274,
	// octokit/auth-oauth-app.js#13); the refresh's code is
	// bad_refresh_token.
	{name: "GitHub bad_refresh_token 200", status: 200, ctype: ctJSON,
		body:  `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired.","error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}`,
		class: provider.ClassDeadGrant},
	// cmd-johnson/deno-oauth2-client#25.
	{name: "GitHub incorrect_client_credentials 200", status: 200, ctype: ctJSON,
		body: `{"error":"incorrect_client_credentials","error_description":"The client_id and/or client_secret passed are incorrect."}`, class: provider.ClassClient},
	// jaredhanson/passport-oauth2#6: a form, under 200.
	{name: "GitHub form error 200", status: 200, ctype: ctForm + "; charset=utf-8", body: `error=bad_verification_code`, class: provider.ClassProtocol},
	{name: "form error bad_refresh_token 200", status: 200, ctype: ctForm, body: `error=bad_refresh_token&error_description=The+refresh+token+passed+is+incorrect+or+expired.`, class: provider.ClassDeadGrant},
	// X (shared/docs/X_API.md): invalid_request with this text is a spent,
	// revoked or unknown refresh token; some clients saw invalid_grant.
	{name: "X dead token invalid_request", status: 400, ctype: ctJSON, body: `{"error":"invalid_request","error_description":"Value passed for the token was invalid."}`, class: provider.ClassDeadGrant},
	{name: "X dead token invalid_grant", status: 400, ctype: ctJSON, body: `{"error":"invalid_grant","error_description":"Value passed for the token was invalid."}`, class: provider.ClassDeadGrant},
	{name: "X other invalid_request", status: 400, ctype: ctJSON, body: `{"error":"invalid_request","error_description":"Missing required parameter [refresh_token]."}`, class: provider.ClassProtocol},
	{name: "X missing Basic auth", status: 401, ctype: ctJSON, body: `{"error":"unauthorized_client","error_description":"Missing valid authorization header"}`, class: provider.ClassClient},
	{name: "invalid_client", status: 401, ctype: ctJSON, body: `{"error":"invalid_client"}`, class: provider.ClassClient},
	{name: "unsupported_grant_type", status: 400, ctype: ctJSON, body: `{"error":"unsupported_grant_type"}`, class: provider.ClassClient},
	{name: "invalid_scope", status: 400, ctype: ctJSON, body: `{"error":"invalid_scope"}`, class: provider.ClassProtocol},
	// Casing and white space around a code.
	{name: "INVALID_GRANT upper case", status: 400, ctype: ctJSON, body: `{"error":"INVALID_GRANT"}`, class: provider.ClassDeadGrant},
	{name: "invalid_grant with white space", status: 400, ctype: ctJSON, body: `{"error":" invalid_grant\n"}`, class: provider.ClassDeadGrant},
	{name: "X text in another case", status: 400, ctype: ctJSON, body: `{"error":"Invalid_Request","error_description":"value passed for the token was invalid"}`, class: provider.ClassDeadGrant},
	// Microsoft Entra ID: the user must sign in or consent again (MSAL's
	// InteractionRequiredAuthErrorCodes); temporarily_unavailable from
	// its token endpoint.
	{name: "Entra interaction_required", status: 400, ctype: ctJSON,
		body: `{"error":"interaction_required","error_description":"AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.","error_codes":[50076]}`, class: provider.ClassDeadGrant},
	{name: "Entra temporarily_unavailable", status: 400, ctype: ctJSON, body: `{"error":"temporarily_unavailable","error_codes":[90033]}`, class: provider.ClassTransient},
	// An error that is not a string is no code.
	{name: "nested error object 400", status: 400, ctype: ctJSON, body: `{"error":{"code":"invalid_grant"}}`, class: provider.ClassProtocol},
	{name: "nested error object 200", status: 200, ctype: ctJSON, body: `{"error":{"code":"invalid_grant"}}`, class: provider.ClassProtocol, ambiguous: true},

	// Overload and server failures: never a dead grant.
	{name: "429 with Retry-After", status: 429, ctype: ctJSON, body: `{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`,
		header: http.Header{"Retry-After": {"17"}}, class: provider.ClassTransient},
	{name: "429 saying invalid_grant", status: 429, ctype: ctJSON, body: `{"error":"invalid_grant"}`, class: provider.ClassTransient},
	{name: "503 empty", status: 503, class: provider.ClassTransient},
	{name: "503 text", status: 503, ctype: ctText, body: "oops", class: provider.ClassTransient},
	{name: "500 saying invalid_grant", status: 500, ctype: ctJSON, body: `{"error":"invalid_grant"}`, class: provider.ClassTransient, ambiguous: true},
	// A proxy's page: the provider behind it may have rotated.
	{name: "502 HTML from a proxy", status: 502, ctype: ctHTML, body: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
		class: provider.ClassTransient, ambiguous: true},
	{name: "504 from a gateway", status: 504, ctype: ctHTML, body: "<html><body>Gateway Timeout</body></html>", class: provider.ClassTransient, ambiguous: true},

	// No code, not a token.
	{name: "400 HTML", status: 400, ctype: ctHTML, body: "<!DOCTYPE html><html><body><h1>400 Bad Request</h1></body></html>", class: provider.ClassProtocol},
	{name: "401 HTML", status: 401, ctype: ctHTML, body: "<html><body>Unauthorized</body></html>", class: provider.ClassClient},
	{name: "400 empty", status: 400, class: provider.ClassProtocol},
	{name: "302 to a login page", status: 302, header: http.Header{"Location": {"/login"}}, class: provider.ClassProtocol},
	// A 2xx without a usable token: the provider acted, the answer is lost.
	{name: "200 empty", status: 200, ctype: ctJSON, class: provider.ClassProtocol, ambiguous: true},
	{name: "204", status: 204, class: provider.ClassProtocol, ambiguous: true},
	{name: "200 HTML", status: 200, ctype: ctHTML, body: "<html><body>Sign in</body></html>", class: provider.ClassProtocol, ambiguous: true},
	{name: "200 truncated JSON", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","expires_in":7200,"access_tok`, class: provider.ClassProtocol, ambiguous: true},
	{name: "200 JSON array", status: 200, ctype: ctJSON, body: `[{"access_token":"at"}]`, class: provider.ClassProtocol, ambiguous: true},
	{name: "200 access_token a number", status: 200, ctype: ctJSON, body: `{"access_token":12345,"token_type":"bearer"}`, class: provider.ClassProtocol, ambiguous: true},
	{name: "200 without access_token", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","refresh_token":"rt"}`, class: provider.ClassProtocol, ambiguous: true},
	// Cut short on the wire (the connection closes before Content-Length
	// bytes): a lost answer, whatever its status and the part received.
	{name: "200 cut short on the wire", status: 200, ctype: ctJSON, body: `{"token_type":"bearer","access_token":"at","refr`, cut: 40, class: provider.ClassTransient, ambiguous: true},
	{name: "400 invalid_grant cut short on the wire", status: 400, ctype: ctJSON, body: `{"error":"invalid_gr`, cut: 20, class: provider.ClassTransient, ambiguous: true},
}

// TestTokenAnswers sends every shape through a real HTTP server to a
// refresh and checks the class, the ambiguity, the lifetime and the scopes.
func TestTokenAnswers(t *testing.T) {
	if len(tokenShapes) < 12 {
		t.Fatalf("%d shapes, want at least 12", len(tokenShapes))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil || i < 0 || i >= len(tokenShapes) {
			http.NotFound(w, r)
			return
		}
		s := tokenShapes[i]
		if s.cut > 0 {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", s.status, http.StatusText(s.status), s.ctype, len(s.body)+s.cut, s.body)
			buf.Flush()
			return
		}
		for k, v := range s.header {
			w.Header()[k] = v
		}
		if s.ctype != "" {
			w.Header().Set("Content-Type", s.ctype)
		} else {
			w.Header()["Content-Type"] = nil
		}
		w.WriteHeader(s.status)
		bw := bufio.NewWriter(w)
		bw.WriteString(s.body)
		bw.Flush()
	}))
	defer srv.Close()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i, s := range tokenShapes {
		t.Run(s.name, func(t *testing.T) {
			// A client that does not follow redirects, as the daemon's.
			hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
				ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, TokenURL: fmt.Sprintf("%s/%d", srv.URL, i), HTTPClient: hc,
				Now: func() time.Time { return now }, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			tr, err := p.Refresh(context.Background(), secret.NewRefreshToken("rt-secret-value"))
			if s.class == "" {
				if err != nil {
					t.Fatalf("Refresh = %v, want a token", err)
				}
				if tr.Lifetime != s.lifetime || !tr.Expiry.Equal(now.Add(s.lifetime)) || scopesText(tr.Scopes) != s.scopes || tr.Access.IsZero() {
					t.Errorf("Refresh = lifetime %v expiry now+%v scopes %v, want lifetime %v scopes %s",
						tr.Lifetime, tr.Expiry.Sub(now), tr.Scopes, s.lifetime, s.scopes)
				}
				return
			}
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Refresh = %v, %v; want a *provider.Error of class %s", tr, err, s.class)
			}
			if pe.Class != s.class || pe.Ambiguous != s.ambiguous {
				t.Errorf("Refresh = %v: class %s ambiguous %v, want %s ambiguous %v", err, pe.Class, pe.Ambiguous, s.class, s.ambiguous)
			}
			if pe.Status != s.status {
				t.Errorf("Refresh = %v: status %d, want %d", err, pe.Status, s.status)
			}
			if ra := s.header.Get("Retry-After"); ra != "" && pe.RetryAfter != 17*time.Second {
				t.Errorf("RetryAfter = %v, want 17s", pe.RetryAfter)
			}
			if strings.Contains(err.Error(), "rt-secret-value") {
				t.Errorf("error %q shows the refresh token", err)
			}
		})
	}
}

func scopesText(s []string) string {
	if s == nil {
		return "nil"
	}
	return fmt.Sprint(s)
}
