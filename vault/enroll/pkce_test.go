package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

// newTestService is a Service on a fresh vault with one X provider whose
// endpoints are at providerURL, and one enrollment link.
func newTestService(t testing.TB, providerURL string) (*Service, string) {
	t.Helper()
	db := vaulttest.Open(t, vaulttest.Rules(vaulttest.StubRules{}))
	const public = "http://127.0.0.1:8080"
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
		ClientSecret: secret.NewClientSecret("s"), RedirectURL: public + "/callback",
		AuthURL: providerURL + "/authorize", TokenURL: providerURL + "/token", RevokeURL: providerURL + "/revoke",
		APIURL: providerURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DB: db, PublicURL: public, Providers: map[string]Provider{"x": p}})
	if err != nil {
		t.Fatal(err)
	}
	link, _, err := s.CreateLink(context.Background(), vault.LinkRequest{UserID: "u", Provider: "x",
		Watch: &vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly", Targets: []string{"console:"}}})
	if err != nil {
		t.Fatal(err)
	}
	return s, link
}

// TestPKCEPerFlow starts 1,000 flows: each has its own state and its own
// S256 challenge of a fresh 43-character verifier, kept server side.
func TestPKCEPerFlow(t *testing.T) {
	s, link := newTestService(t, "http://127.0.0.1:9")
	h := s.Handler()
	const n = 1000
	challenges := map[string]bool{}
	states := map[string]bool{}
	verifiers := map[string]bool{}
	for i := range n {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, link, nil))
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("POST %d = %d: %s", i, rec.Code, rec.Body)
		}
		u, err := url.Parse(continueOf(t, h, rec))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		state, challenge := q.Get("state"), q.Get("code_challenge")
		if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" || len(state) < 22 {
			t.Fatalf("authorization request %v: want response_type=code, S256 and a state of at least 128 bits", q)
		}
		var binding string
		for _, c := range rec.Result().Cookies() {
			if c.Name == s.cookieName() {
				binding = c.Value
			}
		}
		f, err := s.flows.Peek(context.Background(), state, binding, s.cfg.Now())
		if err != nil {
			t.Fatalf("flow %d not kept: %v", i, err)
		}
		sum := sha256.Sum256([]byte(f.verifier))
		if len(f.verifier) != 43 || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			t.Fatalf("flow %d: verifier of %d characters does not hash to the challenge", i, len(f.verifier))
		}
		challenges[challenge], states[state], verifiers[f.verifier] = true, true, true
	}
	if len(challenges) != n || len(states) != n || len(verifiers) != n {
		t.Errorf("%d flows gave %d challenges, %d states, %d verifiers; want all distinct", n, len(challenges), len(states), len(verifiers))
	}
	// One link cannot fill the table: it keeps its newest flows only.
	if got := s.flows.Len(); got != maxFlowsPerLink {
		t.Errorf("flows held for one link = %d, want %d", got, maxFlowsPerLink)
	}
}
