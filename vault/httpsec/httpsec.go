// Package httpsec holds the security headers every page tagwatch serves to
// browsers carries (SetPageHeaders), the cleaning of outside text before
// it reaches a log line or an error (Clip), and the reading of a server's
// Retry-After (RetryAfter). The pages themselves share vault/webpage. Its
// functions are safe for concurrent use.
package httpsec

import (
	"net/http"
	"strings"
)

// SetPageHeaders sets the headers every HTML page carries: a Content
// Security Policy allowing nothing but a nonce'd style and forms posted to
// the page's own origin, no framing, no referrer, no sniffing, no caching.
//
// form-action is 'self' and nothing else, provider origins included.
// Chromium applies form-action to every redirect that follows a form
// submission, not only the first (CSP Level 3, section 6.4.1
// "form-action", whose check covers the request's redirects), so listing
// a provider's authorization origin is never enough: the provider's own
// redirect to its login or logout UI on another origin (self-hosted Ory
// Hydra's login app) would still be blocked. A POST that sends the browser
// to a provider therefore answers 303 to a same-origin page that goes on
// with a meta refresh (webpage.WriteContinuePage), which is not a form
// submission.
func SetPageHeaders(h http.Header, nonce string) {
	style := "'none'"
	if nonce != "" {
		style = "'nonce-" + nonce + "'"
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+style+"; form-action 'self'"+
		"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// Clip shortens s to n bytes (marking the cut with "...") and replaces
// control characters with spaces, so text from outside (an error
// description, a hostile answer) cannot forge log lines.
func Clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
