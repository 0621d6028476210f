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
	allowed, err := NewTargetChecker(ChannelsConfig{AllowPrivateTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := allowed.CheckTarget(target); err != nil {
		t.Fatalf("CheckTarget(%s) = %v", target, err)
	}
	for _, allow := range []bool{true, false} {
		db := openDB(t, "", nil, nil)
		ev := newEvents()
		s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
			Channels: ChannelsConfig{AllowPrivateTargets: allow}, Observer: ev.observe})
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
