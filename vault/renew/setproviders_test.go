package renew

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

// sandboxProvider builds another provider for f's sandbox with a client
// secret of its own.
func (f *xfix) sandboxProvider(sec string) *provider.Provider {
	f.t.Helper()
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret(sec), RedirectURL: "http://127.0.0.1:1/callback",
		AuthURL: f.sb.URL() + "/i/oauth2/authorize", TokenURL: f.sb.URL() + "/2/oauth2/token", RevokeURL: f.sb.URL() + "/2/oauth2/revoke",
		APIURL: f.sb.URL(), Now: f.clock.Now, HTTPClient: &http.Client{Transport: f.requests},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// TestSetProviders: a provider with a wrong client secret backs a grant
// off; setting the same provider again changes nothing, replacing it with
// a fixed one refreshes at once with the new secret; a cached token
// survives a replacement without a request; a removed provider fails
// refreshes clearly while the cached token is still served.
func TestSetProviders(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock, secret: "wrong-secret"})
	g := f.enroll(t0.Add(-time.Minute), nil)
	src := f.mgr.Source(g.ID)
	ctx := context.Background()
	if _, err := src.Token(ctx); provider.ClassOf(err) != provider.ClassClient {
		t.Fatalf("Token() with a wrong client secret = %v, want class client", err)
	}
	tokenPath := "/2/oauth2/token"
	sent := f.requests.count(tokenPath)

	// The same provider again: the backoff holds, no request.
	f.mgr.SetProviders(map[string]Provider{"x": f.prov})
	if _, err := src.Token(ctx); err == nil || !strings.Contains(err.Error(), "backing off") {
		t.Errorf("Token() after setting the same provider = %v, want the backoff", err)
	}
	if n := f.requests.count(tokenPath); n != sent {
		t.Errorf("token requests after setting the same provider = %d, want %d", n, sent)
	}

	// The fixed provider: the backoff is over, the refresh uses it.
	f.mgr.SetProviders(map[string]Provider{"x": f.sandboxProvider("s3cret-client")})
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("Token() after the provider was fixed = %v, want a token", err)
	}
	if n := f.requests.count(tokenPath); n != sent+1 {
		t.Errorf("token requests after the fix = %d, want %d", n, sent+1)
	}

	// Another replacement: the cached token is still served, no request.
	f.mgr.SetProviders(map[string]Provider{"x": f.sandboxProvider("s3cret-client")})
	if got, err := src.Token(ctx); err != nil || !got.Equal(tok.Value) {
		t.Errorf("Token() after a replacement = %v, same %v; want the cached token", err, got.Equal(tok.Value))
	}
	if n := f.requests.count(tokenPath); n != sent+1 {
		t.Errorf("token requests after a replacement = %d, want %d (the cached token)", n, sent+1)
	}

	// Removed: the cached token is served; a forced refresh fails clearly.
	f.mgr.SetProviders(nil)
	if got, err := src.Token(ctx); err != nil || !got.Equal(tok.Value) {
		t.Errorf("Token() with the provider removed = %v; want the cached token", err)
	}
	if _, err := src.Invalidate(ctx, tok); err == nil || !strings.Contains(err.Error(), `provider "x" is not configured`) {
		t.Errorf("Invalidate() with the provider removed = %v, want not configured", err)
	}
	if n := f.requests.count(tokenPath); n != sent+1 {
		t.Errorf("token requests with the provider removed = %d, want %d", n, sent+1)
	}
}

// TestSetProvidersConcurrent races SetProviders with token callers (run
// with -race).
func TestSetProvidersConcurrent(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := newX(t, xopts{clock: clock})
	g := f.enroll(t0.Add(time.Hour), nil)
	src := f.mgr.Source(g.ID)
	other := f.sandboxProvider("s3cret-client")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			p := Provider(f.prov)
			if i%2 == 0 {
				p = other
			}
			f.mgr.SetProviders(map[string]Provider{"x": p})
		}
	}()
	for range 200 {
		if _, err := src.Token(context.Background()); err != nil {
			t.Fatalf("Token() = %v", err)
		}
	}
	<-done
}
