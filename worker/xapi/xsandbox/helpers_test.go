package xsandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

const (
	testClientID     = "Y2xpZW50LTE6MTpjaQ"
	testClientSecret = "s3cret/with+odd=chars"
)

// callback is the app's redirect target: it records what X sent back.
type callback struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []url.Values
}

func (c *callback) last() url.Values {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) == 0 {
		return nil
	}
	return c.got[len(c.got)-1]
}

type env struct {
	t     *testing.T
	s     *Server
	clock *Clock
	cb    *callback
	c     *http.Client
}

var testUsers = []User{
	{ID: "101", Username: "alice", Name: "Alice A"},
	{ID: "102", Username: "bob", Name: "Bob B"},
	{ID: "103", Username: "carol", Name: "Carol C"},
}

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	cb := &callback{}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.mu.Lock()
		cb.got = append(cb.got, r.URL.Query())
		cb.mu.Unlock()
		_, _ = io.WriteString(w, "callback ok")
	}))
	t.Cleanup(cb.srv.Close)
	clock := NewClock(t0)
	cfg := Config{
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURIs: []string{cb.srv.URL + "/callback"},
		Now:          clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, u := range testUsers {
		if err := s.AddUser(u); err != nil {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, s: s, clock: clock, cb: cb, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (e *env) redirectURI() string { return e.cb.srv.URL + "/callback" }

// get sends an API GET with a bearer token.
func (e *env) get(ep Endpoint, token string, params url.Values) (int, http.Header, string) {
	e.t.Helper()
	u := e.s.URL() + string(ep)
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", ep, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// post sends a form to the token or revoke endpoint, with Basic auth when
// basic is true.
func (e *env) post(ep Endpoint, form url.Values, basic bool) (int, string, error) {
	req, err := http.NewRequest("POST", e.s.URL()+string(ep), strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testClientSecret))
	}
	resp, err := e.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (e *env) mustPost(ep Endpoint, form url.Values, basic bool) (int, string) {
	e.t.Helper()
	st, body, err := e.post(ep, form, basic)
	if err != nil {
		e.t.Fatalf("POST %s: %v", ep, err)
	}
	return st, body
}

func (e *env) refresh(rt string) (int, string) {
	e.t.Helper()
	return e.mustPost(EndpointToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, true)
}

func decodeToken(t *testing.T, body string) tokenResponse {
	t.Helper()
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil {
		t.Fatalf("token response %q: %v", body, err)
	}
	return tr
}

// grant mints tokens for a user through Server.Grant.
func (e *env) grant(userID string) (string, string) {
	e.t.Helper()
	a, r, err := e.s.Grant(userID, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return a, r
}

type searchResult struct {
	Data []struct {
		ID          string   `json:"id"`
		Text        string   `json:"text"`
		EditHistory []string `json:"edit_history_tweet_ids"`
		AuthorID    string   `json:"author_id"`
		CreatedAt   string   `json:"created_at"`
		Lang        string   `json:"lang"`
	} `json:"data"`
	Includes struct {
		Users []userJSON `json:"users"`
	} `json:"includes"`
	Errors []partialError `json:"errors"`
	Meta   metaJSON       `json:"meta"`
}

func (e *env) search(token string, params url.Values) searchResult {
	e.t.Helper()
	st, _, body := e.get(EndpointSearch, token, params)
	if st != http.StatusOK {
		e.t.Fatalf("search %v = %d %s, want 200", params, st, body)
	}
	var r searchResult
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		e.t.Fatalf("search body %q: %v", body, err)
	}
	return r
}

func (r searchResult) ids() []string {
	var out []string
	for _, d := range r.Data {
		out = append(out, d.ID)
	}
	return out
}
