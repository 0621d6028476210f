package renew_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestShortLivedTokenIsUsed is case C06: access tokens that live less than
// the renewal margin (expires_in 45 under the default 60 s skew; the 5
// minutes assumed without expires_in under a skew of 5 minutes) are used
// for half their life, not refreshed on every call; also after a restart,
// from what the grant record stores.
func TestShortLivedTokenIsUsed(t *testing.T) {
	noExpiresIn := renewtest.EditTokenAnswers{Edit: func(m map[string]any) { delete(m, "expires_in") }}
	cases := []struct {
		name      string
		ttl       time.Duration // the sandbox's expires_in
		transport http.RoundTripper
		skew      time.Duration // 0: the default, 60 s
		// used is how long the token is served; calls spread over it make
		// no further refresh.
		used time.Duration
	}{
		{name: "expires_in 45, default skew", ttl: 45 * time.Second, used: 22500 * time.Millisecond},
		{name: "expires_in 1", ttl: time.Second, used: 500 * time.Millisecond},
		{name: "expires_in missing, skew 5m", ttl: 2 * time.Hour, transport: noExpiresIn, skew: 5 * time.Minute, used: 150 * time.Second},
		{name: "expires_in missing, default skew", ttl: 2 * time.Hour, transport: noExpiresIn, used: 4 * time.Minute},
		{name: "skew larger than a long lifetime", ttl: 2 * time.Hour, skew: 3 * time.Hour, used: time.Hour},
		// A long-lived token keeps the configured margin.
		{name: "expires_in 7200, default skew", ttl: 2 * time.Hour, used: 2*time.Hour - time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := xsandbox.NewClock(t0)
			f := renewtest.New(t, renewtest.Options{Clock: clock, AccessTokenTTL: c.ttl, Transport: c.transport,
				Renew: func(rc *renew.Config) { rc.Skew = c.skew }})
			g := f.Enroll(renewtest.Enrollee{Expiry: t0.Add(-time.Minute)}).Grant
			src := f.Manager.Source(g.ID)
			// Five calls within the first part of the token's use (for C06's
			// 45 s token: within one second), then one just before it is due.
			step := min(c.used/10, 200*time.Millisecond)
			for i := 0; i < 5; i++ {
				tok, err := src.Token(context.Background())
				if err != nil {
					t.Fatalf("Token() #%d = %v", i, err)
				}
				if code := f.UsersMe(tok); code != http.StatusOK {
					t.Fatalf("users/me with the token of call #%d = %d", i, code)
				}
				clock.Advance(step)
			}
			clock.Set(t0.Add(c.used - time.Millisecond))
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := f.Refreshes(); n != 1 {
				t.Fatalf("%d refreshes while the token is served, want 1", n)
			}
			// A restarted daemon knows the token's lifetime from the record.
			if _, err := f.Restart().Source(g.ID).Token(context.Background()); err != nil || f.Refreshes() != 1 {
				t.Fatalf("after a restart: Token() = %v with %d refreshes, want the stored token (1 refresh)", err, f.Refreshes())
			}
			// Once due, one refresh.
			clock.Set(t0.Add(c.used))
			if _, err := src.Token(context.Background()); err != nil || f.Refreshes() != 2 {
				t.Errorf("when due: Token() = %v with %d refreshes, want 2", err, f.Refreshes())
			}
		})
	}
}

// TestStoredTokenLifetime: a token loaded from the vault after a restart
// gets the margin of its own lifetime, known from the consent that stored
// it (no refresh yet).
func TestStoredTokenLifetime(t *testing.T) {
	clock := xsandbox.NewClock(t0)
	f := renewtest.New(t, renewtest.Options{Clock: clock, AccessTokenTTL: 45 * time.Second})
	g := f.Enroll(renewtest.Enrollee{}).Grant // expires t0+45s, stored at t0
	clock.Advance(20 * time.Second)
	for i := 0; i < 5; i++ {
		if _, err := f.Restart().Source(g.ID).Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Millisecond)
	}
	if n := f.Refreshes(); n != 0 {
		t.Errorf("a 45 s token stored 20 s ago made %d refreshes, want 0", n)
	}
	clock.Set(t0.Add(23 * time.Second))
	if _, err := f.Restart().Source(g.ID).Token(context.Background()); err != nil || f.Refreshes() != 1 {
		t.Errorf("past half its life: Token() = %v with %d refreshes, want 1", err, f.Refreshes())
	}
}
