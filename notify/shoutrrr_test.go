package notify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestShoutrrrNtfy: an ntfy:// target reaches a loopback ntfy endpoint
// through shoutrrr when private targets are allowed, and is refused
// before any request when they are not.
func TestShoutrrrNtfy(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"abc","event":"message","topic":"tagwatch"}`)
	}))
	defer srv.Close()
	target := "ntfy://" + strings.TrimPrefix(srv.URL, "http://") + "/tagwatch?scheme=http"
	if err := ValidateTarget(target); err != nil {
		t.Fatalf("ValidateTarget(%s) = %v", target, err)
	}
	for _, allow := range []bool{true, false} {
		db := openDB(t, "", nil, nil)
		ev := newEvents()
		s, err := New(Config{DB: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), AllowPrivateTargets: allow, Observer: ev.observe})
		if err != nil {
			t.Fatal(err)
		}
		run(t, s)
		id := map[bool]string{true: "n-allow", false: "n-deny"}[allow]
		enqueue(t, db, id, target, matchNotice("u1", "w1", 1))
		s.Kick()
		e := ev.wait(t, id, EventDelivered, EventFailed)
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if allow && (e.Kind != EventDelivered || n != 1 || !strings.Contains(got[0], "POST /tagwatch") || !strings.Contains(got[0], "Go 1.26 is out!")) {
			t.Errorf("allowed: %+v, server got %q; want one POST with the post text", e, got)
		}
		if !allow && (e.Kind != EventFailed || !strings.Contains(e.Err, "not public") || n != 1) {
			t.Errorf("denied: %+v, server requests %d; want refused with no new request", e, n)
		}
	}
}

func TestTargetValidation(t *testing.T) {
	for _, tc := range []struct {
		in, kind string
	}{
		{"https://hooks.example.com/tagwatch", KindWebhook},
		{"http://127.0.0.1:9000/hook", KindWebhook},
		{"http://hooks.example.com/x", ""},
		{"https://user:pw@hooks.example.com/x", ""},
		{"mailto:ada@example.com", KindEmail},
		{"mailto:ada@example.com?cc=eve@example.com", ""},
		{"mailto:ada@example.com,eve@example.com", ""},
		{"mailto:Ada <ada@example.com>", ""},
		{"console:", KindConsole},
		{"ntfy://ntfy.sh/tagwatch-topic", KindShoutrrr},
		{"telegram://123456:ABCdefGHI@telegram?chats=@chan", KindShoutrrr},
		{"generic://hooks.example.com/x", ""},
		{"ftp://example.com/", ""},
		{"https://hooks.example.com/a\nb", ""},
		{"", ""},
	} {
		kind, err := TargetKind(tc.in)
		if kind != tc.kind || (err == nil) != (tc.kind != "") {
			t.Errorf("TargetKind(%q) = %q, %v; want %q", tc.in, kind, err, tc.kind)
		}
	}
	// Labels and errors never carry the tokens notification URLs hold.
	tok := "123456:SECRETTOKENabc"
	u := "telegram://" + tok + "@telegram?chats=@chan"
	if l := TargetLabel(u); strings.Contains(l, "SECRETTOKEN") {
		t.Errorf("TargetLabel(%q) = %q, leaks the token", u, l)
	}
	if r := redactTarget("Post https://api.telegram.org/bot"+tok+"/sendMessage: EOF", u); strings.Contains(r, "SECRETTOKEN") {
		t.Errorf("redactTarget = %q, leaks the token", r)
	}
	bad := "telegram://telegram" // no token
	if err := ValidateTarget(bad); err == nil {
		t.Errorf("ValidateTarget(%q) = nil, want error", bad)
	}
}
