package httpsec

import (
	"net/http"
	"testing"
	"time"
)

// TestRetryAfter: seconds or an HTTP date (RFC 9110 §10.2.3); a date is
// read against the response's Date when it has one (the sender's clock),
// so a server clock ahead or behind ours gives the wait it meant.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		name, retry, date string
		want              time.Duration
	}{
		{"absent", "", "", 0},
		{"seconds", "120", "", 2 * time.Minute},
		{"seconds with spaces", " 7 ", "", 7 * time.Second},
		{"zero", "0", "", 0},
		{"negative", "-5", "", 0},
		{"float", "1.5", "", 0},
		{"words", "soon", "", 0},
		{"huge seconds are bounded", "99999999999999999999", "", time.Hour},
		{"date, no Date header", date(90 * time.Second), "", 90 * time.Second},
		{"date in the past", date(-time.Minute), "", 0},
		{"date, server clock 10 min ahead", date(10*time.Minute + 30*time.Second), date(10 * time.Minute), 30 * time.Second},
		{"date, server clock 10 min behind", date(-10*time.Minute + 30*time.Second), date(-10 * time.Minute), 30 * time.Second},
		{"date far ahead is bounded", date(48 * time.Hour), date(0), time.Hour},
		{"garbled Date header falls back to now", date(45 * time.Second), "yesterday", 45 * time.Second},
		{"date equal to Date", date(5 * time.Minute), date(5 * time.Minute), 0},
	} {
		h := http.Header{}
		if tc.retry != "" {
			h.Set("Retry-After", tc.retry)
		}
		if tc.date != "" {
			h.Set("Date", tc.date)
		}
		if got := RetryAfter(h, now, time.Hour); got != tc.want {
			t.Errorf("%s: RetryAfter(%q, Date %q) = %s, want %s", tc.name, tc.retry, tc.date, got, tc.want)
		}
	}
}

// FuzzRetryAfter: any header pair gives a wait in [0, limit].
func FuzzRetryAfter(f *testing.F) {
	f.Add("120", "")
	f.Add("Sun, 01 Mar 2026 12:01:00 GMT", "Sun, 01 Mar 2026 11:00:00 GMT")
	f.Fuzz(func(t *testing.T, retry, date string) {
		h := http.Header{"Retry-After": {retry}, "Date": {date}}
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		if got := RetryAfter(h, now, time.Hour); got < 0 || got > time.Hour {
			t.Fatalf("RetryAfter(%q, %q) = %s, outside [0, 1h]", retry, date, got)
		}
	})
}
