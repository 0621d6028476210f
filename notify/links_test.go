package notify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// actions records what one-click links asked for.
type actions struct {
	mu    sync.Mutex
	calls []string
}

func (a *actions) PauseWatch(_ context.Context, watchID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "pause "+watchID)
	return nil
}

func (a *actions) Revoke(_ context.Context, userID, provider string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "revoke "+userID+" "+provider)
	return nil
}

func (a *actions) n() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

var _ Actions = (*actions)(nil)

func TestLinks(t *testing.T) {
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	act := &actions{}
	srv := httptest.NewServer(nil)
	defer srv.Close()
	s, err := New(Config{Outbox: db, PublicURL: srv.URL, LinkKey: linkKey(), LinkTTL: time.Hour, Actions: act, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(LinkPrefix, s.Handler())
	srv.Config.Handler = mux
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(method, u string) (int, string, http.Header) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("List-Unsubscribe=One-Click")
		}
		req, _ := http.NewRequest(method, u, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	pause := s.PauseURL("u1", "w1")
	revoke := s.RevokeURL("u1", "x")

	// GET shows a page and never acts.
	code, body, h := do(http.MethodGet, pause)
	if code != 200 || !strings.Contains(body, `<form method="post">`) || act.n() != 0 {
		t.Errorf("GET pause = %d, calls %d; want 200 with a form and no action", code, act.n())
	}
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "style-src 'nonce-") ||
		!strings.Contains(csp, "default-src 'none'") || h.Get("Referrer-Policy") != "no-referrer" ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v", h)
	}
	nonce := csp[strings.Index(csp, "'nonce-")+7:]
	nonce = nonce[:strings.IndexByte(nonce, '\'')]
	if !strings.Contains(body, `<style nonce="`+nonce+`">`) || strings.Contains(body, "http://") || strings.Contains(body, "<script") {
		t.Errorf("page does not use its nonce or loads external assets")
	}

	// Tampered: flip one character in the payload, the signature, the action.
	tok := pause[strings.LastIndexByte(pause, '/')+1:]
	dot := strings.IndexByte(tok, '.')
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	forged := []string{
		srv.URL + LinkPrefix + "pause/" + flip(tok, 3),
		srv.URL + LinkPrefix + "pause/" + flip(tok, dot+5),
		srv.URL + LinkPrefix + "pause/" + tok[:dot],
		srv.URL + LinkPrefix + "revoke/" + tok,
		srv.URL + LinkPrefix + "pause/" + url.PathEscape("x.y"),
	}
	for _, u := range forged {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if code, _, _ := do(m, u); code != http.StatusBadRequest {
				t.Errorf("%s %s = %d, want 400", m, u, code)
			}
		}
	}
	if act.n() != 0 {
		t.Fatalf("forged links acted: %v", act.calls)
	}

	// POST acts through Actions (also a mail client's RFC 8058 one-click).
	if code, body, _ := do(http.MethodPost, pause); code != 200 || !strings.Contains(body, "Watch paused") {
		t.Errorf("POST pause = %d %q", code, body)
	}
	if code, _, _ := do(http.MethodPost, revoke); code != 200 {
		t.Errorf("POST revoke = %d", code)
	}
	if got := strings.Join(act.calls, ", "); got != "pause w1, revoke u1 x" {
		t.Errorf("actions = %q, want pause w1, revoke u1 x", got)
	}

	// Expired.
	clk.Set(clk.Now().Add(time.Hour))
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if code, _, _ := do(m, pause); code != http.StatusGone {
			t.Errorf("%s expired = %d, want 410", m, code)
		}
	}
	if act.n() != 2 {
		t.Errorf("expired link acted: %v", act.calls)
	}
}

// FuzzVerifyLink: a link token from outside never panics, and one that
// verifies is exactly a token the key signed.
func FuzzVerifyLink(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good := signLink(key, link{Action: ActionPause, UserID: "u1", WatchID: "w1", Expires: now.Add(time.Hour)})
	f.Add(good, ActionPause)
	f.Add(good+"x", ActionPause)
	f.Add("a.b", ActionRevoke)
	f.Add("", "")
	f.Fuzz(func(t *testing.T, token, action string) {
		l, err := verifyLink(key, action, token, now)
		if err != nil {
			return
		}
		if l.Action != action || !now.Before(l.Expires) {
			t.Fatalf("verifyLink accepted %+v for action %q", l, action)
		}
		if again := signLink(key, l); again != token {
			t.Fatalf("verifyLink accepted a token the key did not sign: %q (signed form %q)", token, again)
		}
	})
}
