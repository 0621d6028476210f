package renew

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

// memProvider is an in-process provider: rotation without a network, so
// benchmarks measure renewal's own cost.
type memProvider struct {
	mu      sync.Mutex
	current string
	n       atomic.Int64
	ttl     time.Duration
}

func (p *memProvider) Refresh(_ context.Context, rt secret.RefreshToken) (*provider.TokenResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rt.Reveal() != p.current {
		return nil, &provider.Error{Op: "refresh", Class: provider.ClassDeadGrant, Status: 400, Code: "invalid_grant"}
	}
	n := p.n.Add(1)
	p.current = fmt.Sprintf("rt-%d", n)
	return &provider.TokenResult{Access: secret.NewAccessToken(fmt.Sprintf("at-%d", n)), Refresh: secret.NewRefreshToken(p.current),
		Expiry: time.Now().Add(p.ttl), Lifetime: p.ttl}, nil
}
func (p *memProvider) Revoke(context.Context, secret.RefreshToken) error { return nil }
func (p *memProvider) HasRevocation() bool                               { return true }
func (p *memProvider) MissingScopes([]string, bool) []string             { return nil }
func (p *memProvider) VerifyIDToken(context.Context, secret.Value, string, *provider.Identity) (provider.Identity, error) {
	return provider.Identity{}, nil
}

func memFixture(tb testing.TB, ttl, skew time.Duration, expiry time.Time) (*Manager, *memProvider, *vault.DB, string) {
	tb.Helper()
	db := vaulttest.Open(tb)
	p := &memProvider{current: "rt-0", ttl: ttl}
	g := vaulttest.Enroll(tb, db, vaulttest.Enrollment{User: "u", Provider: "mem", Subject: "s", Refresh: "rt-0", Access: "at-0",
		AccessExpiry: expiry}).Grant
	mgr := New(Config{DB: db, Providers: map[string]Provider{"mem": p}, Skew: skew, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return mgr, p, db, g.ID
}

// BenchmarkCachedToken compares the cached-token path with
// golang.org/x/oauth2's ReuseTokenSource holding a valid token.
func BenchmarkCachedToken(b *testing.B) {
	b.Run("renew.Source", func(b *testing.B) {
		mgr, _, _, id := memFixture(b, time.Hour, time.Minute, time.Now().Add(time.Hour))
		src := mgr.Source(id)
		ctx := context.Background()
		if _, err := src.Token(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := src.Token(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("oauth2.ReuseTokenSource", func(b *testing.B) {
		src := oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "at", Expiry: time.Now().Add(time.Hour)}))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := src.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("renew.Source-parallel", func(b *testing.B) {
		mgr, _, _, id := memFixture(b, time.Hour, time.Minute, time.Now().Add(time.Hour))
		src := mgr.Source(id)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				src.Token(context.Background())
			}
		})
	})
	b.Run("oauth2.ReuseTokenSource-parallel", func(b *testing.B) {
		src := oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "at", Expiry: time.Now().Add(time.Hour)}))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				src.Token()
			}
		})
	})
}

// BenchmarkAcrossExpiry: 100 goroutines on one grant whose 20 ms tokens
// keep expiring; reports refreshes and the refreshes an ideal renewer
// would make (one per TTL-skew).
func BenchmarkAcrossExpiry(b *testing.B) {
	ttl, skew := 20*time.Millisecond, 5*time.Millisecond
	mgr, p, _, id := memFixture(b, ttl, skew, time.Now().Add(-time.Second))
	src := mgr.Source(id)
	b.SetParallelism(50) // 50 x GOMAXPROCS(2) = 100 goroutines
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := src.Token(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(p.n.Load()), "refreshes")
	b.ReportMetric(float64(elapsed/(ttl-skew))+1, "max-needed")
	if n := p.n.Load(); n > int64(elapsed/(ttl-skew))+1 {
		b.Errorf("%d refreshes in %v with %v tokens: more than one per expiry", n, elapsed, ttl)
	}
}

// BenchmarkRefreshPath measures a refresh without the network (marker tx,
// in-process provider, result tx) beside one bbolt Update with fsync of a
// grant-sized record on the same file system.
func BenchmarkRefreshPath(b *testing.B) {
	b.Run("refresh", func(b *testing.B) {
		mgr, _, _, id := memFixture(b, time.Hour, time.Minute, time.Now().Add(-time.Second))
		src := mgr.Source(id)
		tok, err := src.Token(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if tok, err = src.Invalidate(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bbolt-update-fsync", func(b *testing.B) {
		_, _, db, id := memFixture(b, time.Hour, time.Minute, time.Now())
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			err := db.Update(func(tx *vault.Tx) error {
				g, err := tx.Grant(id)
				if err != nil {
					return err
				}
				return tx.PutGrant(g)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestManyGoroutinesAcrossExpiry(t *testing.T) {
	ttl, skew := 30*time.Millisecond, 10*time.Millisecond
	mgr, p, _, id := memFixture(t, ttl, skew, time.Now().Add(-time.Second))
	src := mgr.Source(id)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 500*time.Millisecond {
				if _, err := src.Token(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n, max := p.n.Load(), int64(elapsed/(ttl-skew))+1; n == 0 || n > max {
		t.Errorf("100 goroutines over %v made %d refreshes, want 1..%d (one per expiry, none reused)", elapsed, n, max)
	}
}
