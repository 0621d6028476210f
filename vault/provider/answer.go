package provider

import (
	"bytes"
	"encoding/json"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tagwatch/vault/httpsec"
)

// answer is what a token endpoint's body says, read leniently: the
// classification goes by what an answer says, not by its Content-Type nor
// only by its status.
type answer struct {
	// readable: the body is a JSON object (after a UTF-8 byte order mark
	// and white space, whatever the Content-Type says) or a form
	// (application/x-www-form-urlencoded, or text/plain that is not JSON:
	// GitHub answers forms unless asked for JSON).
	readable bool
	// code is the RFC 6749 5.2 error code as sent, clipped; key is its
	// lower-cased, trimmed form, which the rules compare.
	code, key   string
	description string

	access, tokenType, refresh, idToken string
	// expiresIn is the expires_in value as sent: a JSON number literal or
	// the contents of a JSON string ("" when absent).
	expiresIn string
	// scope is nil when the answer has no usable scope member.
	scope []string
}

// utf8BOM is a byte order mark, which RFC 8259 8.1 lets a parser ignore.
var utf8BOM = []byte("\xef\xbb\xbf")

// readAnswer reads a token endpoint's body. It never fails: an unreadable
// body is an answer with readable false.
func readAnswer(contentType string, body []byte) answer {
	var a answer
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(body), utf8BOM))
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(trimmed, &m) != nil {
			return a
		}
		a.readable = true
		str := func(k string) string {
			var s string
			if raw, ok := m[k]; ok && json.Unmarshal(raw, &s) == nil {
				return s
			}
			return ""
		}
		a.code = str("error")
		a.description = firstNonEmpty(str("error_description"), str("detail"), str("title"))
		a.access, a.tokenType, a.refresh, a.idToken = str("access_token"), str("token_type"), str("refresh_token"), str("id_token")
		if raw, ok := m["expires_in"]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				a.expiresIn = s
			} else {
				a.expiresIn = string(bytes.TrimSpace(raw))
			}
		}
		if raw, ok := m["scope"]; ok {
			var s string
			var list []string
			switch {
			case json.Unmarshal(raw, &s) == nil && string(raw) != "null":
				a.scope = strings.Fields(s)
			case json.Unmarshal(raw, &list) == nil && list != nil:
				// Not RFC 6749's shape (a space-separated string), but
				// unambiguous.
				a.scope = list
			}
		}
	case mt == "application/x-www-form-urlencoded" || mt == "text/plain":
		v, err := url.ParseQuery(string(trimmed))
		if err != nil || len(v) == 0 {
			return a
		}
		a.readable = true
		a.code, a.description = v.Get("error"), v.Get("error_description")
		a.access, a.tokenType, a.refresh, a.idToken = v.Get("access_token"), v.Get("token_type"), v.Get("refresh_token"), v.Get("id_token")
		a.expiresIn = v.Get("expires_in")
		if v.Has("scope") {
			a.scope = strings.Fields(v.Get("scope"))
		}
	default:
		return a
	}
	a.code = httpsec.Clip(a.code, 64)
	a.key = strings.ToLower(strings.TrimSpace(a.code))
	a.description = httpsec.Clip(a.description, 200)
	return a
}

// Error codes with a rule of their own, compared lower-cased and trimmed.
var (
	// deadGrantCodes say the refresh token (or the authorization code)
	// will never work again: only the user can mend it.
	deadGrantCodes = map[string]bool{
		"invalid_grant": true, // RFC 6749 5.2
		// GitHub, answered with HTTP 200: "The refresh token passed is
		// incorrect or expired." (docs.github.com, "Refreshing user access
		// tokens"; octokit/auth-oauth-app.js#13 shows the 200).
		"bad_refresh_token": true,
		// Microsoft Entra ID answers these from its token endpoint when the
		// user must sign in or consent again (MSAL's
		// InteractionRequiredAuthErrorCodes, "server-originated").
		"interaction_required": true,
		"consent_required":     true,
		"login_required":       true,
		"bad_token":            true,
	}
	// clientCodes say the provider refuses tagwatch's client: the operator's
	// problem, not the user's.
	clientCodes = map[string]bool{
		"invalid_client":      true, // RFC 6749 5.2
		"unauthorized_client": true, // RFC 6749 5.2; X without Basic auth
		// RFC 6749 5.2: the client may not use this grant type.
		"unsupported_grant_type": true,
		// GitHub's answer (HTTP 200) to a wrong client id or secret.
		"incorrect_client_credentials": true,
	}
	// transientCodes say "not now": RFC 6749 4.1.2.1 names them for the
	// authorization endpoint; Entra ID also answers temporarily_unavailable
	// from its token endpoint.
	transientCodes = map[string]bool{
		"temporarily_unavailable": true,
		"server_error":            true,
	}
)

// xDeadToken is X's wording for a spent, revoked or unknown refresh token,
// which X sends with invalid_request (some clients saw invalid_grant).
const xDeadToken = "value passed for the token was invalid"

// classifyAnswer says what a token endpoint's answer means. It returns nil
// for an answer that claims success (a 2xx without an error code); the
// caller then checks the token itself. The rules, in order:
//   - 429 and 5xx are transient whatever the body says (a proxy's page, an
//     overloaded provider); 500, 502 and 504 are also ambiguous, because
//     the provider (or the server behind a gateway) may have acted on the
//     request before failing (RFC 9110 15.6), while 503 and 429 say it
//     was not handled;
//   - an error code decides next, under any other status, 2xx included
//     (GitHub answers errors with 200): a dead grant, the client, "not
//     now", or any other refusal (protocol);
//   - without a code: 401 is the client's credentials, any other non-2xx
//     is a protocol failure (an HTML page, an empty 400). None of these is
//     ambiguous: a 4xx was refused, not lost.
func classifyAnswer(op string, status int, h http.Header, a answer, now time.Time) *Error {
	e := &Error{Op: op, Status: status, Code: a.code, Description: a.description, RetryAfter: httpsec.RetryAfter(h, now, 24*time.Hour)}
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		e.Class = ClassTransient
		e.Ambiguous = status == http.StatusInternalServerError || status == http.StatusBadGateway || status == http.StatusGatewayTimeout
	case deadGrantCodes[a.key] || (a.key == "invalid_request" && strings.Contains(strings.ToLower(a.description), xDeadToken)):
		e.Class = ClassDeadGrant
	case clientCodes[a.key]:
		e.Class = ClassClient
	case transientCodes[a.key]:
		e.Class = ClassTransient
	case a.key != "":
		e.Class = ClassProtocol
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusUnauthorized:
		e.Class = ClassClient
	default:
		e.Class = ClassProtocol
	}
	return e
}

// maxExpiresIn is the longest lifetime believed; beyond it (or for zero,
// negative or unreadable values) the provider's DefaultLifetime applies:
// an access token is short-lived, never eternal.
const maxExpiresIn = 10 * 365 * 24 * 3600

// parseExpiresIn reads expires_in: a JSON number or a numeric string (some
// providers send one), fractions cut off. A missing, zero, negative,
// non-finite, absurdly large or unreadable value is "not given".
func parseExpiresIn(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 1 || f > maxExpiresIn {
		return 0, false
	}
	return time.Duration(f) * time.Second, true
}
