package renew_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault"
	"tagwatch/vault/hydratest"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

const hydraRedirect = "http://127.0.0.1:9/callback"

// hfix is one client at a shared Hydra with its own vault and Manager.
type hfix struct {
	t        *testing.T
	h        *hydratest.Hydra
	clientID string
	prov     *provider.Provider
	db       *vault.DB
	mgr      *renew.Manager
	requests *renewtest.Counter
}

func newHydraFix(t *testing.T, h *hydratest.Hydra, clientID string, skew time.Duration) *hfix {
	t.Helper()
	h.CreateClient(t, hydratest.Client{ID: clientID, Secret: "secret-" + clientID, RedirectURIs: []string{hydraRedirect}})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &hfix{t: t, h: h, clientID: clientID, requests: &renewtest.Counter{}}
	var err error
	f.prov, err = provider.New(context.Background(), provider.Config{Name: "corp", Kind: provider.KindOIDC, Issuer: h.IssuerURL(),
		ClientID: clientID, ClientSecret: secret.NewClientSecret("secret-" + clientID), RedirectURL: hydraRedirect,
		APIURL: "http://127.0.0.1:9", HTTPClient: &http.Client{Transport: f.requests}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.db = vaulttest.Open(t)
	f.mgr = renew.New(renew.Config{DB: f.db, Providers: map[string]renew.Provider{"corp": f.prov}, Skew: skew, Logger: quiet, PublicURL: "http://127.0.0.1:8080"})
	return f
}

// enroll runs the authorization code flow through Hydra with the provider
// package and stores the grant, its access token expiring at the stored
// expiry (or already expired).
func (f *hfix) enroll(expired bool) vault.Grant {
	f.t.Helper()
	verifier, nonce, state := oauth2.GenerateVerifier(), vault.NewLinkToken(), vault.NewLinkToken()
	jar, _ := cookiejar.New(nil)
	cb := hydratest.Browse(f.t, &http.Client{Jar: jar}, f.prov.AuthCodeURL(state, verifier, nonce), hydraRedirect)
	q := cb.Query()
	if q.Get("state") != state || q.Get("code") == "" {
		f.t.Fatalf("callback %v", cb)
	}
	tr, err := f.prov.Exchange(context.Background(), q.Get("code"), verifier)
	if err != nil {
		f.t.Fatal(err)
	}
	id, err := f.prov.Identify(context.Background(), tr, nonce)
	if err != nil {
		f.t.Fatal(err)
	}
	if tr.Refresh.IsZero() {
		f.t.Fatal("no refresh token")
	}
	expiry := tr.Expiry
	if expired {
		expiry = time.Now().Add(-time.Second)
	}
	// Stored as the consent pages store it: through a link.
	spec := vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1m", Targets: []string{"console:"}}
	_, link, err := f.db.CreateLink(vault.LinkRequest{UserID: "alice", Provider: "corp", Watch: &spec, CreatedBy: "test"})
	if err != nil {
		f.t.Fatal(err)
	}
	res, err := f.db.CommitConsent(vault.Consent{LinkHash: link.Hash, LinkID: link.ID, UserID: "alice", Provider: "corp",
		Issuer: id.Issuer, Subject: id.Subject, Audience: id.Audience, Scopes: tr.Scopes, AccessExpiry: expiry,
		Tokens: vault.Tokens{Refresh: tr.Refresh, Access: tr.Access}})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.Grant
}

func (f *hfix) tokens(id string) (vault.Grant, vault.Tokens) {
	f.t.Helper()
	g, tok, err := f.db.GrantTokens(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return g, tok
}

func (f *hfix) tokenRequests() int { return f.requests.Count("/oauth2/token") }

// TestHydra runs renewal against a real Ory Hydra with 5-second access
// tokens and refresh-token rotation without a grace period, so any
// duplicate refresh would show up as a lost grant.
func TestHydra(t *testing.T) {
	h := hydratest.Start(t, hydratest.Options{AccessTokenTTL: 5 * time.Second, Subject: "alice"})

	t.Run("20 concurrent callers, one refresh", func(t *testing.T) {
		f := newHydraFix(t, h, "concurrent", time.Second)
		g := f.enroll(true)
		before := f.tokenRequests()
		var wg sync.WaitGroup
		toks := make([]secret.AccessToken, 20)
		for i := range toks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := f.mgr.Source(g.ID).Token(context.Background())
				if err != nil {
					t.Errorf("Token() = %v", err)
				}
				toks[i] = tok
			}()
		}
		wg.Wait()
		if n := f.tokenRequests() - before; n != 1 {
			t.Errorf("20 callers made %d token requests, want 1", n)
		}
		for _, tok := range toks {
			if !tok.Equal(toks[0].Value) {
				t.Fatal("callers got different tokens")
			}
		}
		if active, _ := h.Introspect(t, toks[0].Reveal()); !active {
			t.Error("renewed access token is not active at Hydra")
		}
	})

	t.Run("consent revoked", func(t *testing.T) {
		f := newHydraFix(t, h, "revoked", time.Second)
		g := f.enroll(true)
		h.RevokeConsent(t, "alice", f.clientID)
		if _, err := f.mgr.Source(g.ID).Token(context.Background()); !errors.Is(err, renew.ErrNeedsConsent) {
			t.Fatalf("Token() after consent revoked = %v, want renew.ErrNeedsConsent", err)
		}
		gg, _ := f.tokens(g.ID)
		if gg.State != vault.GrantNeedsReconsent {
			t.Errorf("grant state = %s", gg.State)
		}
		links, err := f.db.ListLinks(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range links {
			if e.Purpose == vault.PurposeReconsent && e.Expected == "alice" && e.GrantID == g.ID {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d re-consent links stored, want 1", n)
		}
	})

	t.Run("unenroll revokes at Hydra", func(t *testing.T) {
		f := newHydraFix(t, h, "unenroll", time.Second)
		g := f.enroll(false)
		_, tok := f.tokens(g.ID)
		if active, _ := h.Introspect(t, tok.Refresh.Reveal()); !active {
			t.Fatal("refresh token not active before unenroll")
		}
		res, err := f.mgr.Unenroll(context.Background(), g.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		if want := (renew.UnenrollResult{RevokedAtProvider: true}); res != want {
			t.Errorf("Unenroll() = %+v, want %+v", res, want)
		}
		if active, _ := h.Introspect(t, tok.Refresh.Reveal()); active {
			t.Error("refresh token still active at Hydra after unenroll")
		}
		if _, err := f.db.Grant(g.ID); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("grant kept after revocation: %v", err)
		}
	})

	t.Run("sustained use keeps the grant alive", func(t *testing.T) {
		// 10 minutes of use with 5-second tokens (30 s with -short): one
		// refresh per expiry and the grant still alive at the end.
		d := 10 * time.Minute
		if testing.Short() {
			d = 30 * time.Second
		}
		f := newHydraFix(t, h, "sustained", time.Second)
		g := f.enroll(false)
		src := f.mgr.Source(g.ID)
		start := time.Now()
		before := f.tokenRequests()
		var last secret.AccessToken
		for time.Since(start) < d {
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token() after %v = %v", time.Since(start).Round(time.Second), err)
			}
			last = tok
			time.Sleep(200 * time.Millisecond)
		}
		elapsed := time.Since(start)
		n := f.tokenRequests() - before
		gg, tok := f.tokens(g.ID)
		// Hydra's expires_in is whole seconds, so a 5 s TTL reaches the
		// client as 4 or 5 s. One refresh per expiry therefore means at
		// least one per 5 s and at most one per (4 s - 1 s skew). A
		// duplicate refresh would be reuse, and with a grace period of 0
		// Hydra would have killed the chain: the introspection below is
		// the proof that none happened.
		if lo, hi := int(elapsed/(5*time.Second)), int(elapsed/(3*time.Second))+1; n < lo || n > hi {
			t.Errorf("%v of use made %d token requests, want %d..%d (one per expiry)", elapsed.Round(time.Second), n, lo, hi)
		}
		if gg.RefreshCount != n || gg.State != vault.GrantActive {
			t.Errorf("grant refresh count %d (requests %d), state %s", gg.RefreshCount, n, gg.State)
		}
		if active, _ := h.Introspect(t, tok.Refresh.Reveal()); !active {
			t.Error("refresh token not active at Hydra after sustained use")
		}
		if active, _ := h.Introspect(t, last.Reveal()); !active && time.Now().Before(gg.AccessExpiry) {
			t.Error("current access token not active at Hydra")
		}
		t.Logf("%v of use: %d refreshes with 5 s tokens", elapsed.Round(time.Second), n)
	})
}
