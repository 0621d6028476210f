package httpsec

import (
	"net/http"
	"strings"
	"time"
)

// RetryAfter reads a response's Retry-After (RFC 9110 §10.2.3): a count of
// seconds (digits only), or an HTTP date. A date is a time on the sender's
// clock, so it is read against the response's own Date header (RFC 9110
// §6.6.1) when that parses, and against now only without one: a server
// whose clock runs ahead or behind ours still gets the wait it asked for.
// The result is in [0, limit]; zero means "no usable Retry-After" (absent,
// negative, garbled, or already past).
func RetryAfter(h http.Header, now time.Time, limit time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" || limit <= 0 {
		return 0
	}
	if digits(v) {
		if len(v) > 9 {
			return limit
		}
		var n int64
		for _, c := range v {
			n = n*10 + int64(c-'0')
		}
		return min(time.Duration(n)*time.Second, limit)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	ref := now
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		ref = d
	}
	if !t.After(ref) {
		return 0
	}
	return min(t.Sub(ref), limit)
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
