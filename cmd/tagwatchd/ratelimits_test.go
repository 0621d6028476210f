package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/worker/xapi/xsandbox"
)

// TestLocalHoldShownC09: runs the local limiter holds without a request
// (the X client's spent per-user window; the user's fair share of the
// app-wide window) are visible at every door: `tagwatchctl watches` shows
// the watch "rate limited until T" with the window and the endpoint,
// `tagwatchctl status` names the held provider, endpoint, user and until
// when, `tagwatchctl metrics` counts the held user, and the log says it
// once for the window however many runs it holds. The daemon's own scheduler may run the watch meanwhile: the
// checks hold either way.
func TestLocalHoldShownC09(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  string // added to [scheduler]
		limit   func(x *xsandbox.Server)
		window  string
		logLine string
		metric  string
	}{
		{"X's per-user window", "", func(x *xsandbox.Server) { x.SetRateLimit(xsandbox.EndpointSearch, 1, 0, 15*time.Minute) },
			"the provider's per-user window", "provider's rate-limit window spent", "per_user"},
		{"the app-wide fair share", "app_requests_per_window = 1\n", func(*xsandbox.Server) {},
			"the user's fair share of the app-wide window", "user has used their share of the provider's request window", "app_fair_share"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSvc(t, "", false)
			raw, err := os.ReadFile(s.config)
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.Replace(string(raw), "[scheduler]\n", "[scheduler]\n"+tc.config, 1)
			if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			s.start(0)
			s.enrollUser("ada")
			tc.limit(s.x)
			var ws []statusapi.Watch
			s.ctlJSON(&ws, "watches", "list")
			if len(ws) != 1 {
				t.Fatalf("watches = %+v, want one", ws)
			}
			id := ws[0].ID
			calls := func() int { return s.x.Stats().APICalls[xsandbox.EndpointSearch]["1001"] }
			for i := 0; i < 6; i++ {
				s.op.d.worker.RunWatch(context.Background(), id)
			}
			if n := calls(); n != 1 {
				t.Errorf("X saw %d searches, want 1 (the rest held without a request)", n)
			}
			want := "rate limited until "
			detail := "(" + tc.window + " of /2/tweets/search/recent at x)"
			if out, code := s.ctl("watches", "list"); code != 0 || !strings.Contains(out, want) || !strings.Contains(out, detail) {
				t.Errorf("tagwatchctl watches = %d\n%s\nwant the watch %q ... %q", code, out, want, detail)
			}
			out, code := s.ctl("status")
			if code != 0 || !strings.Contains(out, "rate limited:\n  x /2/tweets/search/recent  user ada  "+tc.window+"  until 20") {
				t.Errorf("tagwatchctl status = %d\n%s\nwant a rate limited section naming x, the endpoint, ada, the window and until when", code, out)
			}
			metric := `tagwatch_rate_limit_held_users{endpoint="/2/tweets/search/recent",provider="x",window="` + tc.metric + `"} 1`
			if out, code := s.ctl("metrics"); code != 0 || !strings.Contains(out, metric) {
				t.Errorf("tagwatchctl metrics = %d, want %s", code, metric)
			}
			for i := 0; i < 4; i++ {
				s.op.d.worker.RunWatch(context.Background(), id)
			}
			n := 0
			for line := range strings.Lines(s.logs.String()) {
				if strings.Contains(line, tc.logLine) && strings.Contains(line, "user=ada") && strings.Contains(line, "provider=x") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d log lines %q for ada, want 1 (once per window, not per held run)\n%s", n, tc.logLine, s.logs)
			}
		})
	}
}
