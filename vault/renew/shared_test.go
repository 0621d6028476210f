package renew_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/renew"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestSharedStore: two daemons, each with its own vault handle (its own
// holder) and its own Manager, on one PostgreSQL database, refreshing the
// same grants at the X sandbox, which revokes a token family when a spent
// refresh token is presented again.
func TestSharedStore(t *testing.T) {
	c := pgtest.Start(t)
	t.Run("ConcurrentRotations", func(t *testing.T) { testConcurrentRotations(t, c) })
	t.Run("CachedTokensFollowTheOtherDaemon", func(t *testing.T) { testNotified(t, c) })
	t.Run("WaitsForLiveHolder", func(t *testing.T) { testWaitsForLiveHolder(t, c) })
	t.Run("LiveHolderWaitIsBounded", func(t *testing.T) { testWaitBounded(t, c) })
	t.Run("DeadHolderTakenOver", func(t *testing.T) { testDeadHolder(t, c) })
	t.Run("DeadHolderJournaledAnswer", func(t *testing.T) { testJournaledAnswer(t, c) })
	t.Run("NoHeartbeatNoRequest", func(t *testing.T) { testNoHeartbeat(t, c) })
}

// testNoHeartbeat: a daemon whose heartbeat is not recorded sends no
// refresh (another daemon would take its marker for a dead holder's);
// once it is, it refreshes.
func testNoHeartbeat(t *testing.T, c *pgtest.Cluster) {
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, 0)
	g := p.st.Enroll(renewtest.Enrollee{Expiry: time.Now().Add(-time.Minute)}).Grant
	_, err := p.m2.Source(g.ID).Token(context.Background())
	if !errors.Is(err, vault.ErrNoHeartbeat) || !strings.Contains(err.Error(), g.ID) {
		t.Errorf("Token of a daemon with no heartbeat = %v, want ErrNoHeartbeat naming the grant", err)
	}
	if n := p.st.Refreshes(); n != 0 {
		t.Errorf("refreshes = %d, want none", n)
	}
	beat(t, p.db2, time.Second)
	tok, err := p.m2.Source(g.ID).Token(context.Background())
	if err != nil || p.st.Refreshes() != 1 {
		t.Fatalf("Token after a heartbeat = %v, %d refreshes; want a token, 1", err, p.st.Refreshes())
	}
	if code := p.st.UsersMe(tok); code != http.StatusOK {
		t.Errorf("users/me = %d", code)
	}
	noReuse(t, p.st)
}

// pair is two daemons on one database: daemon 1 is the stack's vault
// and Manager, daemon 2 a second vault handle and Manager built from the
// stack's configuration.
type pair struct {
	st       *renewtest.Stack
	db2      *vault.DB
	m2       *renew.Manager
	renewed2 atomic.Int64
	lost2    atomic.Int64
	// waits counts daemon 2's waits for daemon 1's refreshes (its log).
	waits *countingHandler
}

// twoDaemons starts a stack on a new database of c and a second daemon on
// it whose vault has lease lease2 (0: the default).
func twoDaemons(t *testing.T, c *pgtest.Cluster, o renewtest.Options, lease2 time.Duration) *pair {
	t.Helper()
	dsn := c.DSN(c.CreateDB(t))
	open := func() (kv.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	}
	o.Vault = append(o.Vault, vaulttest.Engine(open))
	p := &pair{st: renewtest.New(t, o), waits: &countingHandler{msg: waitMsg}}
	e, err := open()
	if err != nil {
		t.Fatal(err)
	}
	p.db2, err = vault.Open(vault.Options{Engine: e, Master: p.st.Master, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}, Lease: lease2})
	if err != nil {
		t.Fatalf("daemon 2's vault: %v", err)
	}
	t.Cleanup(func() {
		if err := p.db2.CheckConsistency(); err != nil {
			t.Errorf("daemon 2's vault: %v", err)
		}
		p.db2.Close()
	})
	if !p.st.DB.Shared() || !p.db2.Shared() || p.st.DB.Holder() == p.db2.Holder() {
		t.Fatalf("two vaults on one database: shared %v and %v, holders %s and %s; want shared, two holders",
			p.st.DB.Shared(), p.db2.Shared(), p.st.DB.Holder(), p.db2.Holder())
	}
	cfg := p.st.Config
	cfg.DB = p.db2
	cfg.Logger = slog.New(p.waits)
	cfg.Observer = func(ev renew.Event) {
		switch ev.Kind {
		case renew.EventRenewed:
			p.renewed2.Add(1)
		case renew.EventLostRotation:
			p.lost2.Add(1)
		}
	}
	p.m2 = renew.New(cfg)
	return p
}

// waitMsg is what a Manager logs when it waits for another daemon's
// refresh.
const waitMsg = "waiting for another daemon's refresh of a grant"

// slowTokens is a transport that holds token requests for d before
// sending them.
type slowTokens struct{ d time.Duration }

func (s slowTokens) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == string(xsandbox.EndpointToken) {
		time.Sleep(s.d)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// countingHandler is a slog.Handler that counts the records whose message
// is msg, at any level.
type countingHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// beat sends db's heartbeats every interval until the test ends (after a
// first one now).
func beat(t *testing.T, db *vault.DB, every time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	beat1 := func() {
		hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
		defer hcancel()
		if err := db.Heartbeat(hctx, kv.Daemon{Host: "renew-test", PID: 1, Version: "test"}); err != nil && ctx.Err() == nil {
			t.Errorf("heartbeat of %s: %v", db.Holder(), err)
		}
	}
	beat1()
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat1()
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// follow runs m.FollowInvalidations until the test ends, and returns once
// it takes effect: a notification of grant id published by db drops
// what m caches of it.
func follow(t *testing.T, m *renew.Manager, db *vault.DB, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := renew.Drops(m, id)
	go func() { done <- m.FollowInvalidations(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("FollowInvalidations = %v, want context.Canceled", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	// The first drop may be FollowInvalidations' own, at its start: wait
	// for one more.
	for renew.Drops(m, id) < before+2 {
		if time.Now().After(deadline) {
			t.Fatal("FollowInvalidations never dropped the grant on a notification")
		}
		if err := db.Cluster().Publish(context.Background(), vault.GrantTokensChannel, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// usersMe calls the sandbox's users/me with tok and returns the status;
// safe on any goroutine.
func usersMe(base string, tok secret.AccessToken) (int, error) {
	req, err := http.NewRequest(http.MethodGet, base+string(xsandbox.EndpointUsersMe), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// noReuse fails unless the sandbox saw no spent refresh token presented
// again and revoked no family.
func noReuse(t *testing.T, st *renewtest.Stack) {
	t.Helper()
	if s := st.Sandbox.Stats(); s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
		t.Errorf("sandbox: %d refresh-token reuses, %d families revoked; want none", s.RefreshReuses, s.FamilyRevocations)
	}
}

// testConcurrentRotations: goroutines of both daemons ask for tokens of
// three grants whose access tokens live 2 s, and now and then report one
// refused (Invalidate), for several rotations, with the token endpoint
// answering after 100 ms so that refreshes overlap: the sandbox sees no
// reuse, no API call is refused, every grant stays active, both daemons
// refreshed, and they waited for each other's refreshes.
func testConcurrentRotations(t *testing.T, c *pgtest.Cluster) {
	users := []xsandbox.User{{ID: "1000000001", Username: "ann"}, {ID: "1000000002", Username: "bob"}, {ID: "1000000003", Username: "cy"}}
	waits1 := &countingHandler{msg: waitMsg}
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: 2 * time.Second, Users: users,
		Transport: slowTokens{100 * time.Millisecond}, Renew: func(c *renew.Config) { c.Logger = slog.New(waits1) }}, 0)
	var grants []string
	for i, u := range users {
		grants = append(grants, p.st.Enroll(renewtest.Enrollee{XID: u.ID, User: fmt.Sprintf("u%d", i)}).Grant.ID)
	}
	beat(t, p.st.DB, time.Second)
	beat(t, p.db2, time.Second)
	follow(t, p.st.Manager, p.db2, grants[0])
	follow(t, p.m2, p.st.DB, grants[0])
	renewed1 := 0
	const run = 7 * time.Second
	var calls, invalidations atomic.Int64
	stop := time.Now().Add(run)
	var wg sync.WaitGroup
	for d, m := range []*renew.Manager{p.st.Manager, p.m2} {
		for range 5 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					id := grants[rand.IntN(len(grants))]
					src := m.Source(id)
					tok, err := src.Token(context.Background())
					if err != nil {
						t.Errorf("daemon %d: Token(%s) = %v", d+1, id, err)
						return
					}
					calls.Add(1)
					if rand.IntN(60) == 0 {
						invalidations.Add(1)
						if tok, err = src.Invalidate(context.Background(), tok); err != nil {
							t.Errorf("daemon %d: Invalidate(%s) = %v", d+1, id, err)
							return
						}
					}
					if rand.IntN(10) == 0 {
						// 429 is the sandbox's rate limit of users/me; a
						// token refused would be 401.
						if code, err := usersMe(p.st.Sandbox.URL(), tok); err != nil || (code != http.StatusOK && code != http.StatusTooManyRequests) {
							t.Errorf("daemon %d: users/me with grant %s's token = %d, %v; want 200", d+1, id, code, err)
							return
						}
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	}
	wg.Wait()
	for len(p.st.Events) > 0 {
		if ev := <-p.st.Events; ev.Kind == renew.EventRenewed {
			renewed1++
		}
	}
	noReuse(t, p.st)
	stats := p.st.Sandbox.Stats()
	if stats.Unauthorized != 0 {
		t.Errorf("sandbox refused %d API calls (401), want none", stats.Unauthorized)
	}
	refreshes := stats.TokenRequests["refresh_token"]
	t.Logf("%s: %d calls, %d invalidations, %d refreshes (daemon 1 %d, daemon 2 %d); waits for the other daemon's refresh: daemon 1 %d, daemon 2 %d",
		run, calls.Load(), invalidations.Load(), refreshes, renewed1, p.renewed2.Load(), waits1.n.Load(), p.waits.n.Load())
	if renewed1 == 0 || p.renewed2.Load() == 0 {
		t.Errorf("renewals: daemon 1 %d, daemon 2 %d; want both to have refreshed", renewed1, p.renewed2.Load())
	}
	if waits1.n.Load()+p.waits.n.Load() == 0 {
		t.Errorf("no daemon ever waited for the other's refresh: the test did not make them overlap")
	}
	total := 0
	for _, id := range grants {
		g, err := p.db2.Grant(id)
		if err != nil {
			t.Fatal(err)
		}
		total += g.RefreshCount
		if g.State != vault.GrantActive || !g.RefreshInFlight.IsZero() || g.RefreshCount < 3 || g.LostRotations != 0 {
			t.Errorf("grant %s = %s, marker %v, %d refreshes, %d lost; want active, no marker, >= 3 refreshes (%s of 2 s tokens), none lost",
				id, g.State, g.RefreshInFlight, g.RefreshCount, g.LostRotations, run)
		}
	}
	if total != refreshes {
		t.Errorf("grants counted %d refreshes, the sandbox answered %d: every refresh the provider made is stored once", total, refreshes)
	}
}

// testNotified: when daemon 2 refreshes, or unenrolls, a grant, daemon 1
// stops serving the access token it cached (valid for an hour) and serves
// what daemon 2 stored, with no refresh of its own and no API call
// refused; and the other way round.
func testNotified(t *testing.T, c *pgtest.Cluster) {
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, 0)
	g := p.st.Enroll(renewtest.Enrollee{}).Grant
	m1, m2 := p.st.Manager, p.m2
	beat(t, p.st.DB, time.Second)
	beat(t, p.db2, time.Second)
	follow(t, m1, p.db2, g.ID)
	follow(t, m2, p.st.DB, g.ID)
	ctx := context.Background()
	t1, err := m1.Source(g.ID).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := m2.Source(g.ID).Token(ctx); err != nil || !tok.Equal(t1.Value) {
		t.Fatalf("daemon 2's Token = %v; want daemon 1's", err)
	}
	// eventually waits until m's Token gives want, or an error when want
	// is zero.
	eventually := func(m *renew.Manager, want secret.AccessToken, what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			tok, err := m.Source(g.ID).Token(ctx)
			if want.IsZero() && (errors.Is(err, vault.ErrNeedsConsent) || errors.Is(err, vault.ErrNotFound)) {
				return // revoked, or deleted once revoked at the provider
			}
			if err == nil && !want.IsZero() && tok.Equal(want.Value) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %v after 15 s", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t2, err := m2.Source(g.ID).Invalidate(ctx, t1)
	if err != nil || t2.Equal(t1.Value) {
		t.Fatalf("daemon 2's Invalidate = %v; want a new token", err)
	}
	eventually(m1, t2, "daemon 1 after daemon 2's refresh")
	t3, err := m1.Source(g.ID).Invalidate(ctx, t2)
	if err != nil || t3.Equal(t2.Value) {
		t.Fatalf("daemon 1's Invalidate = %v; want a new token", err)
	}
	eventually(m2, t3, "daemon 2 after daemon 1's refresh")
	if n := p.st.Refreshes(); n != 2 {
		t.Errorf("refreshes = %d, want 2 (one per Invalidate; the other daemon read what it stored)", n)
	}
	if code := p.st.UsersMe(t3); code != http.StatusOK {
		t.Errorf("users/me with the token both serve = %d", code)
	}
	if s := p.st.Sandbox.Stats(); s.Unauthorized != 0 {
		t.Errorf("sandbox refused %d API calls, want none", s.Unauthorized)
	}
	if _, err := m2.Unenroll(ctx, g.ID, "test"); err != nil {
		t.Fatal(err)
	}
	eventually(m1, secret.AccessToken{}, "daemon 1 after daemon 2's unenroll")
	noReuse(t, p.st)
}

// testWaitsForLiveHolder: daemon 2 finds daemon 1's marker while daemon 1
// sends heartbeats: it sends no request and waits; once daemon 1 stores
// its refresh, daemon 2 serves that token.
func testWaitsForLiveHolder(t *testing.T, c *pgtest.Cluster) {
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, 2*time.Second)
	g := p.st.Enroll(renewtest.Enrollee{}).Grant
	beat(t, p.st.DB, 200*time.Millisecond)
	beat(t, p.db2, 200*time.Millisecond)
	ctx := context.Background()
	tk, err := p.st.DB.BeginRefresh(g.ID, "daemon 1")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		tok secret.AccessToken
		err error
	}
	got := make(chan result, 1)
	go func() {
		tok, err := p.m2.Source(g.ID).Token(ctx)
		got <- result{tok, err}
	}()
	time.Sleep(time.Second)
	select {
	case r := <-got:
		t.Fatalf("daemon 2's Token returned %v while daemon 1's refresh was in flight; want it to wait", r.err)
	default:
	}
	if n := p.st.Refreshes(); n != 0 {
		t.Fatalf("daemon 2 sent %d refreshes while daemon 1 held the marker", n)
	}
	res, err := p.st.Provider.Refresh(ctx, tk.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.st.DB.CommitRefresh(tk, vault.RefreshResult{Access: res.Access, Expiry: res.Expiry, Refresh: res.Refresh, Scopes: res.Scopes}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || !r.tok.Equal(res.Access.Value) {
			t.Errorf("daemon 2's Token = %v; want daemon 1's new token", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon 2 did not see daemon 1's refresh within 10 s")
	}
	if n := p.st.Refreshes(); n != 1 {
		t.Errorf("refreshes = %d, want 1 (daemon 1's)", n)
	}
	if n := p.waits.n.Load(); n != 1 {
		t.Errorf("daemon 2 logged %d waits, want 1", n)
	}
	noReuse(t, p.st)
}

// testWaitBounded: a live holder that never stores an outcome holds
// daemon 2 for the lease and a half (waitBound), then its Token fails
// naming the holder, having sent nothing; a caller's context ends the
// wait sooner.
func testWaitBounded(t *testing.T, c *pgtest.Cluster) {
	const lease = 2 * time.Second
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, lease)
	g := p.st.Enroll(renewtest.Enrollee{}).Grant
	beat(t, p.st.DB, 200*time.Millisecond)
	beat(t, p.db2, 200*time.Millisecond)
	if _, err := p.st.DB.BeginRefresh(g.ID, "daemon 1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, err := p.m2.Source(g.ID).Token(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("Token with a 300 ms context = %v after %s; want the context's deadline, soon", err, time.Since(start))
	}
	start = time.Now()
	_, err = p.m2.Source(g.ID).Token(context.Background())
	took := time.Since(start)
	if !errors.Is(err, vault.ErrRefreshBusy) || !strings.Contains(err.Error(), p.st.DB.Holder()) {
		t.Errorf("Token while a live holder never finishes = %v; want ErrRefreshBusy naming daemon %s", err, p.st.DB.Holder())
	}
	if took < lease || took > 4*lease {
		t.Errorf("Token gave up after %s, want after the lease and a half (%s)", took, lease*3/2)
	}
	if n := p.st.Refreshes(); n != 0 {
		t.Errorf("daemon 2 sent %d refreshes while a live holder held the marker", n)
	}
	if got, err := p.db2.Grant(g.ID); err != nil || got.RefreshHolder != p.st.DB.Holder() || got.LostRotations != 0 {
		t.Errorf("grant = holder %q, lost %d, %v; want daemon 1's marker untouched", got.RefreshHolder, got.LostRotations, err)
	}
}

// testDeadHolder: daemon 1 commits its marker and dies (no heartbeat
// ever again); daemon 2 waits until daemon 1's heartbeats have been
// missing for a lease and its own have been steady for one, then makes
// the one retry with the stored token, counted as a lost rotation; the
// grant lives on.
func testDeadHolder(t *testing.T, c *pgtest.Cluster) {
	const lease = 2 * time.Second
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, lease)
	g := p.st.Enroll(renewtest.Enrollee{}).Grant
	beat(t, p.db2, 200*time.Millisecond)
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.st.DB.Heartbeat(hctx, kv.Daemon{Host: "daemon-1"}); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	if _, err := p.st.DB.BeginRefresh(g.ID, "daemon 1"); err != nil {
		t.Fatal(err)
	}
	tok, err := p.m2.Source(g.ID).Token(context.Background())
	took := time.Since(died)
	if err != nil {
		t.Fatalf("daemon 2's Token over a dead holder's marker = %v", err)
	}
	if took < lease {
		t.Errorf("daemon 2 took the marker over %s after daemon 1's last heartbeat, want after the lease (%s)", took, lease)
	}
	if code := p.st.UsersMe(tok); code != http.StatusOK {
		t.Errorf("users/me with daemon 2's token = %d", code)
	}
	gg, err := p.db2.Grant(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gg.State != vault.GrantActive || !gg.RefreshInFlight.IsZero() || gg.RefreshHolder != "" || gg.LostRotations != 1 || gg.RefreshCount != 1 {
		t.Errorf("grant = %s, marker %v of %q, lost %d, refreshes %d; want active, cleared, 1 lost rotation, 1 refresh",
			gg.State, gg.RefreshInFlight, gg.RefreshHolder, gg.LostRotations, gg.RefreshCount)
	}
	if p.lost2.Load() != 1 || p.st.Refreshes() != 1 {
		t.Errorf("daemon 2: %d lost-rotation events, %d refreshes; want 1, 1", p.lost2.Load(), p.st.Refreshes())
	}
	noReuse(t, p.st)
}

// testJournaledAnswer: daemon 1 marks a refresh, the provider rotates the
// refresh token and answers, daemon 1 writes the answer down (the
// rotation journal) and dies before its commit. Daemon 2, once daemon 1
// is dead for a lease, completes the refresh from the journal: it
// presents no spent token (no reuse at the sandbox, whose family
// revocation is on), the grant stays active with the rotated tokens, and
// the journal entry is gone.
func testJournaledAnswer(t *testing.T, c *pgtest.Cluster) {
	const lease = 2 * time.Second
	p := twoDaemons(t, c, renewtest.Options{AccessTokenTTL: time.Hour}, lease)
	p.st.Sandbox.SetReuseRevokesFamily(true)
	g := p.st.Enroll(renewtest.Enrollee{}).Grant
	beat(t, p.db2, 200*time.Millisecond)
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.st.DB.Heartbeat(hctx, kv.Daemon{Host: "daemon-1"}); err != nil {
		t.Fatal(err)
	}
	ticket, err := p.st.DB.BeginRefresh(g.ID, "daemon 1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.st.Provider.Refresh(hctx, ticket.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	renew.Journal(p.st.Manager, ticket, res) // then daemon 1 dies: no commit
	tok, err := p.m2.Source(g.ID).Token(context.Background())
	if err != nil {
		t.Fatalf("daemon 2's Token over a dead holder's journaled refresh = %v", err)
	}
	if !tok.Equal(res.Access.Value) {
		t.Errorf("daemon 2 serves another access token than the journaled answer's")
	}
	if code := p.st.UsersMe(tok); code != http.StatusOK {
		t.Errorf("users/me with the journaled access token = %d", code)
	}
	gg, tt, err := p.db2.GrantTokens(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gg.State != vault.GrantActive || !gg.RefreshInFlight.IsZero() || !tt.Refresh.Equal(res.Refresh.Value) {
		t.Errorf("grant = %s, marker %v, stored refresh token the rotated one: %v; want active, cleared, true",
			gg.State, gg.RefreshInFlight, tt.Refresh.Equal(res.Refresh.Value))
	}
	if p.st.Refreshes() != 1 {
		t.Errorf("refreshes at the sandbox = %d, want 1 (daemon 1's; daemon 2 sent none)", p.st.Refreshes())
	}
	noReuse(t, p.st)
	// The next refresh uses the journaled refresh token: the family lives.
	if _, err := p.m2.Source(g.ID).Invalidate(context.Background(), tok); err != nil {
		t.Fatalf("a refresh after the recovery = %v", err)
	}
	noReuse(t, p.st)
}
