package renew_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

// cannedAnswer is one answer of a scripted token endpoint.
type cannedAnswer struct {
	status int
	ctype  string
	body   string
}

var (
	tokenOK      = cannedAnswer{200, "application/json", `{"token_type":"bearer","expires_in":7200,"access_token":"at-new","refresh_token":"rt-new","scope":"tweet.read users.read offline.access"}`}
	htmlPage     = "<html><body><h1>Error</h1></body></html>"
	invalidGrant = cannedAnswer{400, "application/json", `{"error":"invalid_grant"}`}
)

// TestRenewalByAnswer checks what renewal does with each kind of token
// endpoint answer (vault/provider's TestTokenAnswers classifies them): a
// dead grant, said in any shape, ends the grant after one request and is
// never retried; a lost answer (a 2xx without a usable token, a gateway's
// 502, a 500) gets the one retry with the stored token, after which a
// refusal ends the grant as a lost rotation; an answer renewal cannot act
// on (an HTML page, an empty 400) is retried later and alerts the operator
// once per run, never silently; "not now" backs off quietly.
func TestRenewalByAnswer(t *testing.T) {
	cases := []struct {
		name    string
		answers []cannedAnswer
		rounds  int // Token() calls, the backoff waited out between them

		requests int
		state    vault.GrantState
		class    string // Grant.LastErrorClass
		marker   bool   // the in-flight marker is left set
		alerts   int
	}{
		{name: "GitHub bad_refresh_token under 200", answers: []cannedAnswer{{200, "application/json", `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}`}},
			requests: 1, state: vault.GrantNeedsReconsent, class: "dead_grant"},
		{name: "invalid_grant under 401", answers: []cannedAnswer{{401, "application/json", `{"error":"invalid_grant"}`}},
			requests: 1, state: vault.GrantNeedsReconsent, class: "dead_grant"},
		{name: "X dead token", answers: []cannedAnswer{{400, "application/json", `{"error":"invalid_request","error_description":"Value passed for the token was invalid."}`}},
			requests: 1, state: vault.GrantNeedsReconsent, class: "dead_grant"},
		{name: "Entra interaction_required", answers: []cannedAnswer{{400, "application/json", `{"error":"interaction_required","error_description":"AADSTS50076"}`}},
			requests: 1, state: vault.GrantNeedsReconsent, class: "dead_grant"},
		{name: "200 truncated, then invalid_grant", answers: []cannedAnswer{{200, "application/json", `{"access_token":"at-n`}, invalidGrant},
			requests: 2, state: vault.GrantNeedsReconsent, class: "lost_rotation"},
		{name: "200 truncated, then a token", answers: []cannedAnswer{{200, "application/json", `{"access_token":"at-n`}, tokenOK},
			requests: 2, state: vault.GrantActive},
		{name: "502 from a proxy, then a token", answers: []cannedAnswer{{502, "text/html", htmlPage}, tokenOK},
			requests: 2, state: vault.GrantActive},
		{name: "500 saying invalid_grant, then invalid_grant", answers: []cannedAnswer{{500, "application/json", `{"error":"invalid_grant"}`}, invalidGrant},
			requests: 2, state: vault.GrantNeedsReconsent, class: "lost_rotation"},
		{name: "200 HTML, every time", answers: []cannedAnswer{{200, "text/html", htmlPage}, {200, "text/html", htmlPage}, {200, "text/html", htmlPage}}, rounds: 2,
			requests: 3, state: vault.GrantActive, class: "protocol", marker: true, alerts: 1},
		{name: "400 HTML, every time", answers: []cannedAnswer{{400, "text/html", htmlPage}, {400, "text/html", htmlPage}}, rounds: 2,
			requests: 2, state: vault.GrantActive, class: "protocol", alerts: 1},
		{name: "400 empty", answers: []cannedAnswer{{400, "", ""}},
			requests: 1, state: vault.GrantActive, class: "protocol", alerts: 1},
		{name: "503 empty", answers: []cannedAnswer{{503, "", ""}},
			requests: 1, state: vault.GrantActive, class: "transient"},
		{name: "temporarily_unavailable", answers: []cannedAnswer{{400, "application/json", `{"error":"temporarily_unavailable"}`}},
			requests: 1, state: vault.GrantActive, class: "transient"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			next := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				a := cannedAnswer{599, "", "the test sent more requests than it scripted"}
				if i < len(c.answers) {
					a = c.answers[i]
				}
				if a.ctype != "" {
					w.Header().Set("Content-Type", a.ctype)
				}
				w.WriteHeader(a.status)
				io.WriteString(w, a.body)
			}))
			defer srv.Close()
			clock := vaulttest.NewClock(t0)
			p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
				ClientSecret: secret.NewClientSecret("s"), RedirectURL: renewtest.RedirectURL, TokenURL: srv.URL, RevokeURL: srv.URL,
				AuthURL: srv.URL, APIURL: srv.URL, Now: clock.Now, Logger: vaulttest.Quiet()})
			if err != nil {
				t.Fatal(err)
			}
			db := vaulttest.Open(t, vaulttest.Now(clock.Now))
			g := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "u", AccessExpiry: t0.Add(-time.Minute)}).Grant
			var alerts int
			m := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": p}, PublicURL: renewtest.PublicURL,
				Now: clock.Now, Logger: vaulttest.Quiet(), MinBackoff: time.Second, MaxBackoff: time.Minute,
				Observer: func(ev renew.Event) {
					if ev.Kind == renew.EventOperatorAlert {
						alerts++
					}
				}})
			rounds := max(c.rounds, 1)
			var tokErr error
			for i := 0; i < rounds; i++ {
				_, tokErr = m.Source(g.ID).Token(context.Background())
				clock.Advance(2 * time.Minute)
			}
			gg, err := db.Grant(g.ID)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			requests := next
			mu.Unlock()
			if requests != c.requests || gg.State != c.state || gg.LastErrorClass != c.class || !gg.RefreshInFlight.IsZero() != c.marker || alerts != c.alerts {
				t.Errorf("after %d Token() calls (last: %v): %d requests, grant %s %q marker %v, %d operator alerts; want %d requests, %s %q marker %v, %d alerts",
					rounds, tokErr, requests, gg.State, gg.LastErrorClass, !gg.RefreshInFlight.IsZero(), alerts,
					c.requests, c.state, c.class, c.marker, c.alerts)
			}
			if c.state == vault.GrantNeedsReconsent && !errors.Is(tokErr, renew.ErrNeedsConsent) {
				t.Errorf("Token() = %v, want renew.ErrNeedsConsent", tokErr)
			}
		})
	}
}
