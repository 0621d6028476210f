package enroll

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tagwatch/vault/vaulttest"
)

// TestRefusalLogNamesRouteOnce: a refused request's log line carries the
// request's method once ("method") and the route's path pattern ("path"),
// never the method twice ("GET GET /callback") nor the link's token.
func TestRefusalLogNamesRouteOnce(t *testing.T) {
	var logs bytes.Buffer
	s, err := New(Config{DB: vaulttest.Open(t), PublicURL: "http://127.0.0.1:8080", Providers: map[string]Provider{},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	const token = "T0KENtokenT0KENtokenT0KENtokenT0KENtokenT0K"
	for _, c := range []struct{ method, target, path string }{
		{http.MethodGet, "/callback?state=s&code=c", "/callback"},
		{http.MethodPost, "/enroll/" + token, "/enroll/{token}"},
		{http.MethodGet, "/enroll/" + token, "/enroll/{token}"},
		{http.MethodHead, "/enroll/" + token, "/enroll/{token}"},
		{http.MethodDelete, "/callback", "/callback"},
		{http.MethodGet, "/enrolled/nosuch", "/enrolled/{id}"},
		{http.MethodGet, "/nothing/here", "/"},
	} {
		logs.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.target, nil))
		var rec struct{ Msg, Method, Path string }
		line := strings.TrimSpace(logs.String())
		if strings.Count(line, "\n") > 0 || json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "enrollment request refused" {
			t.Errorf("%s %s: log = %q, want one refusal line", c.method, c.target, line)
			continue
		}
		if rec.Method != c.method || rec.Path != c.path {
			t.Errorf("%s %s: logged method=%q path=%q, want %q %q", c.method, c.target, rec.Method, rec.Path, c.method, c.path)
		}
		if strings.Contains(line, token) {
			t.Errorf("%s %s: log %q shows the link's token", c.method, c.target, line)
		}
	}
}
