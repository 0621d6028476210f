package xsandbox

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestControlPageSaysWhatTheUsageCapDoes: the control page, and what it
// says after "Reach the usage cap" and "Lift the cap", tell a new user
// what tagwatch does then: its watches stay suspended until its next
// probe (an hour by default), lifting the cap resumes nothing by itself,
// and `tagwatchctl watches run WATCH` probes now.
func TestControlPageSaysWhatTheUsageCapDoes(t *testing.T) {
	e := newEnv(t)
	get := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("control page = %d:\n%s", resp.StatusCode, b)
		}
		return html.UnescapeString(string(b))
	}
	b := browser(t)
	page := get(b.Get(e.s.URL() + ControlPath))
	for _, want := range []string{"until its next probe, an hour later by default", "Lifting it here resumes nothing by itself",
		"tagwatchctl watches run WATCH probes now"} {
		if !strings.Contains(page, want) {
			t.Errorf("control page does not say %q:\n%s", want, page)
		}
	}
	for _, tc := range []struct{ action, want string }{
		{"set", "searches answer usage-capped. tagwatch suspends the provider's watches until its next probe, an hour later by default. tagwatchctl watches run WATCH probes now."},
		{"lift", "usage cap lifted: searches are served again. tagwatch's suspended watches resume at its next probe, not before. tagwatchctl watches run WATCH probes now."},
	} {
		page := get(b.PostForm(e.s.URL()+controlUsageCap, url.Values{"action": {tc.action}}))
		if !strings.Contains(page, tc.want) {
			t.Errorf("after %s, the control page does not say %q:\n%s", tc.action, tc.want, page)
		}
	}
}
