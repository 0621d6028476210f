package enroll

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzCallback sends fuzzed callback parameters and cookies, optionally
// into a live flow (the placeholders STATE and COOKIE are replaced by a
// real flow's). Whatever comes in: no panic, no 5xx, every Location is
// same-origin or the provider's authorization endpoint, no page shows the
// state, and nothing is stored. The provider refuses every code, so even
// a live flow cannot enroll.
func FuzzCallback(f *testing.F) {
	var tokenRequests atomic.Int64
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokenRequests.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"code refused"}`))
	}))
	f.Cleanup(prov.Close)
	s, link := newTestService(f, prov.URL)
	h := s.Handler()
	authURL := prov.URL + "/authorize"
	linkPath := strings.TrimPrefix(link, "http://127.0.0.1:8080")

	for _, seed := range []struct {
		q, cookie string
		live      bool
	}{
		{"state=STATE&code=abc", "COOKIE", true},
		{"state=STATE&code=abc", "", true},
		{"state=STATE&code=abc&iss=https%3A%2F%2Fevil", "COOKIE", true},
		{"state=STATE&error=access_denied&error_description=no", "COOKIE", true},
		{"state=STATE&error=server_error", "COOKIE", true},
		{"state=STATE&state=STATE&code=a", "COOKIE", true},
		{"state=STATE", "COOKIE", true},
		{"state=x&code=y", "z", false},
		{"code=y", "", false},
		{"state=%zz&code=%00", "\x00", false},
		{"error=access_denied", "", false},
		{"", "", false},
		{"state=STATE&code=" + strings.Repeat("c", 5000), "COOKIE", true},
		{"next=https://evil.example&redirect_uri=//evil.example&state=STATE&code=a", "COOKIE", true},
	} {
		f.Add(seed.q, seed.cookie, seed.live)
	}
	f.Fuzz(func(t *testing.T, rawQuery, cookie string, live bool) {
		state := ""
		if live {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, linkPath, nil))
			u, err := url.Parse(continueOf(t, h, rec))
			if err != nil || !strings.HasPrefix(u.String(), authURL+"?") {
				t.Fatalf("POST link Location %q, want the authorization endpoint", u)
			}
			state = u.Query().Get("state")
			rawQuery = strings.ReplaceAll(rawQuery, "STATE", state)
			for _, c := range rec.Result().Cookies() {
				cookie = strings.ReplaceAll(cookie, "COOKIE", c.Value)
			}
		}
		req := httptest.NewRequest(http.MethodGet, "/callback", nil)
		req.URL.RawQuery = rawQuery
		if cookie != "" {
			req.Header.Set("Cookie", s.cookieName()+"="+cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("callback ?%q = %d, want no 5xx", rawQuery, rec.Code)
		}
		if loc := rec.Header().Get("Location"); loc != "" {
			if !(strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") && !strings.HasPrefix(loc, "/\\")) &&
				!strings.HasPrefix(loc, authURL+"?") {
				t.Fatalf("callback ?%q redirects to %q: neither same-origin nor the authorization endpoint", rawQuery, loc)
			}
		}
		if state != "" && strings.Contains(rec.Body.String(), state) {
			t.Fatalf("callback page shows the state")
		}
		db := s.cfg.DB
		if gs, err := db.ListGrants(); err != nil || len(gs) != 0 {
			t.Fatalf("ListGrants = %d grants, %v; want none stored", len(gs), err)
		}
		if rows, err := db.ListOutbox("", 0); err != nil || len(rows) != 0 {
			t.Fatalf("ListOutbox = %d rows, %v; want none stored", len(rows), err)
		}
		if ws, err := db.ListWatches(""); err != nil || len(ws) != 0 {
			t.Fatalf("ListWatches = %d watches, %v; want none stored", len(ws), err)
		}
		links, err := db.ListLinks(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range links {
			if !e.UsedAt.IsZero() {
				t.Fatalf("link %s used", e.ID)
			}
		}
	})
}

// FuzzLink sends fuzzed link tokens to the landing page with GET and
// POST: no panic, no 5xx, a redirect only to the authorization endpoint
// or a same-origin path (the mux cleaning one), and the token never
// echoed.
func FuzzLink(f *testing.F) {
	s, link := newTestService(f, "http://127.0.0.1:9")
	h := s.Handler()
	f.Add(strings.TrimPrefix(link, "http://127.0.0.1:8080/enroll/"), true)
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false)
	f.Add("..%2f..%2fcallback", true)
	f.Add("%00", false)
	f.Add("x/../../enrolled/0", false)
	f.Fuzz(func(t *testing.T, token string, post bool) {
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		req := httptest.NewRequest(method, "/", nil)
		req.URL.Path = "/enroll/" + token
		req.URL.RawPath = ""
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s /enroll/%q = %d", method, token, rec.Code)
		}
		if loc := rec.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, "http://127.0.0.1:9/authorize?") &&
			!(strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") && !strings.HasPrefix(loc, "/\\")) {
			t.Fatalf("%s /enroll/%q redirects to %q", method, token, loc)
		}
		// A page never shows the token. (net/http's path-cleaning redirects,
		// such as /enroll//x -> /enroll/x, name their target in a short
		// body; the browser already holds that URL.)
		if len(token) >= 16 && rec.Code/100 != 3 && strings.Contains(rec.Body.String(), token) {
			t.Fatalf("page echoes the token")
		}
	})
}
