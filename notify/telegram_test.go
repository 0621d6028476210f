package notify

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTelegramAnswers: what the Bot API (or whatever answers in its
// place) says decides the outcome: only ok true is a delivery; no answer,
// a proxy's page or a body that is not the Bot API's is a failure to
// retry (the library took them for deliveries); 429 waits retry_after; a
// refusal of the message itself is permanent.
func TestTelegramAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		body      string // "" with status 0: the connection is dropped
		delivered bool
		permanent bool
		wait      time.Duration
	}{
		{"ok", 200, `{"ok":true,"result":{"message_id":7}}`, true, false, 0},
		{"no answer", 0, "", false, false, 0},
		{"proxy page", 502, "<html><body>Bad Gateway</body></html>", false, false, 0},
		{"empty 200", 200, "", false, false, 0},
		{"not the Bot API's", 200, `{"result":"sent"}`, false, false, 0},
		{"ok false under 200", 200, `{"ok":false,"error_code":500,"description":"Internal"}`, false, false, 0},
		{"ok true under 500", 500, `{"ok":true}`, false, false, 0},
		{"flood wait", 429, `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 31","parameters":{"retry_after":31}}`,
			false, false, 31 * time.Second},
		{"message too long", 400, `{"ok":false,"error_code":400,"description":"Bad Request: message is too long"}`, false, true, 0},
		{"entities", 400, `{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities: unsupported start tag"}`, false, true, 0},
		{"chat not found", 400, `{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}`, false, false, 0},
		{"blocked", 403, `{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}`, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				if tc.status == 0 {
					if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
						c.Close()
					}
					return
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			bot, err := newTelegramBot(chatTargets["telegram"], srv.URL, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			err = bot.send(t.Context(), "hello")
			var se *SendError
			var pe *PermanentError
			switch {
			case (err == nil) != tc.delivered:
				t.Errorf("send = %v, want delivered %v", err, tc.delivered)
			case err != nil && errors.As(err, &pe) != tc.permanent:
				t.Errorf("send = %v, want permanent %v", err, tc.permanent)
			case tc.wait > 0 && (!errors.As(err, &se) || se.RetryAfter != tc.wait):
				t.Errorf("send = %v, want a wait of %s", err, tc.wait)
			case err != nil && strings.Contains(err.Error(), "ABCdefGHI"):
				t.Errorf("send = %v, names the token", err)
			}
		})
	}
}
