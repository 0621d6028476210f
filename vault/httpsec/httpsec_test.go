package httpsec

import (
	"net/http"
	"strings"
	"testing"
)

func TestSetPageHeaders(t *testing.T) {
	h := http.Header{}
	SetPageHeaders(h, "n0nce")
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'nonce-n0nce'", "form-action 'self';", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v", h)
	}
	h = http.Header{}
	SetPageHeaders(h, "")
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'none'") || !strings.Contains(csp, "form-action 'self';") {
		t.Errorf("CSP without nonce = %q", csp)
	}
}

func TestClip(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 10, "plain"},
		{"line\ninjected=1", 20, "line injected=1"},
		{"esc\x1b[31m\r", 20, "esc [31m "},
		{"tab\there\x7f", 20, "tab here "},
		{"aaaaaaaaaaaa", 10, "aaaaaaaaaa..."},
	}
	for _, c := range cases {
		if got := Clip(c.in, c.n); got != c.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
