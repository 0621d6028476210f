package kvtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// Clusters is one cluster as RunCluster sees it.
type Clusters struct {
	// A and B are two handles on the one cluster, as two daemons have
	// (two engines on one database), or the same one twice (a cluster
	// one process owns).
	A, B kv.Cluster
	// Now reads the cluster's clock (flow expiries are written on it).
	Now func() time.Time
	// Advance moves the cluster's clock on by d: a fake clock's step,
	// or a real wait (a database's now()).
	Advance func(d time.Duration)
}

// Leases of the suite: short ones end after Advance(wait), long ones do
// not end during a test. A real clock waits wait a few times per case
// (the cases run in parallel).
const (
	shortLease = 200 * time.Millisecond
	wait       = 2 * shortLease
	longLease  = time.Hour
)

// RunCluster runs the contract of kv.Cluster against clusters from open,
// a new, empty cluster per subtest (subtests run in parallel, so open
// must be safe for concurrent use). The rules checked are the ones its
// doc gives: claims and their leases and rounds, Release, the daemon
// registry, one-time flows, notifications, and bad input refused.
func RunCluster(t *testing.T, open func(t *testing.T) Clusters) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c Clusters)
	}{
		{"claim when absent and again", testClaimAbsent},
		{"refused while the lease runs", testClaimRefused},
		{"taken after the lease ends", testClaimExpired},
		{"a done round", testClaimDone},
		{"release by another holder", testReleaseOther},
		{"one winner of many claims", testClaimRace},
		{"leave", testLeave},
		{"alive", testAlive},
		{"daemons", testDaemons},
		{"flows", testFlows},
		{"one taker of a flow", testFlowRace},
		{"publish and subscribe", testPubSub},
		{"bad claims", testBadClaims},
		{"bad channels", testBadChannels},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// ctxT returns a context that ends with t, bounded by a minute.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// claim claims on c and fails t on an error or an outcome other than want.
func claim(t *testing.T, c kv.Cluster, want bool, cl kv.Claim) {
	t.Helper()
	got, err := c.Claim(ctxT(t), cl)
	if err != nil {
		t.Fatalf("Claim(%+v) = %v", cl, err)
	}
	if got != want {
		t.Fatalf("Claim(%+v) = %v, want %v", cl, got, want)
	}
}

func release(t *testing.T, c kv.Cluster, kind, id, holder string, done bool) {
	t.Helper()
	if err := c.Release(ctxT(t), kind, id, holder, done); err != nil {
		t.Fatalf("Release(%s, %s, %s, %v) = %v", kind, id, holder, done, err)
	}
}

func heartbeat(t *testing.T, c kv.Cluster, d kv.Daemon) {
	t.Helper()
	if err := c.Heartbeat(ctxT(t), d); err != nil {
		t.Fatalf("Heartbeat(%s) = %v", d.ID, err)
	}
}

func alive(t *testing.T, c kv.Cluster, id string, lease time.Duration, want bool) {
	t.Helper()
	got, err := c.Alive(ctxT(t), id, lease)
	if err != nil {
		t.Fatalf("Alive(%s, %s) = %v", id, lease, err)
	}
	if got != want {
		t.Fatalf("Alive(%s, %s) = %v, want %v", id, lease, got, want)
	}
}

func daemons(t *testing.T, c kv.Cluster) []kv.Daemon {
	t.Helper()
	ds, err := c.Daemons(ctxT(t))
	if err != nil {
		t.Fatalf("Daemons() = %v", err)
	}
	return ds
}

func w(id string, round int64, holder string, lease time.Duration) kv.Claim {
	return kv.Claim{Kind: "watch", ID: id, Round: round, Holder: holder, Lease: lease}
}

func testClaimAbsent(t *testing.T, c Clusters) {
	claim(t, c.A, true, w("w1", 1, "d1", longLease))
	// Re-entrant: the holder extends its claim, at the same round or
	// another, from either handle.
	claim(t, c.A, true, w("w1", 1, "d1", longLease))
	claim(t, c.B, true, w("w1", 2, "d1", longLease))
	// Other units and kinds are other claims.
	claim(t, c.B, true, w("w2", 1, "d2", longLease))
	claim(t, c.B, true, kv.Claim{Kind: "outbox", ID: "w1", Round: 1, Holder: "d2", Lease: longLease})
}

func testClaimRefused(t *testing.T, c Clusters) {
	claim(t, c.A, true, w("w1", 1, "d1", longLease))
	for _, round := range []int64{0, 1, 2, 1 << 62} {
		claim(t, c.B, false, w("w1", round, "d2", longLease))
	}
	// The refusals changed nothing: d1 still holds it.
	claim(t, c.A, true, w("w1", 1, "d1", longLease))
}

func testClaimExpired(t *testing.T, c Clusters) {
	claim(t, c.A, true, w("w1", 1, "d1", shortLease))
	c.Advance(wait)
	// d1 died without a Release: its round was not done, so another
	// holder takes the same round (and the dead one's lease is over).
	claim(t, c.B, true, w("w1", 1, "d2", longLease))
	claim(t, c.A, false, w("w1", 1, "d1", longLease))
	claim(t, c.A, false, w("w1", 2, "d1", longLease))
	// An older round is taken too when the work was not done.
	claim(t, c.A, true, w("w2", 5, "d1", shortLease))
	c.Advance(wait)
	claim(t, c.B, true, w("w2", 4, "d2", longLease))
}

func testClaimDone(t *testing.T, c Clusters) {
	claim(t, c.A, true, w("w1", 5, "d1", longLease))
	release(t, c.A, "watch", "w1", "d1", true)
	// A round finished is never claimed again for the same round (or an
	// older one), by anyone, its holder included.
	claim(t, c.B, false, w("w1", 5, "d2", longLease))
	claim(t, c.A, false, w("w1", 5, "d1", longLease))
	claim(t, c.B, false, w("w1", 4, "d2", longLease))
	c.Advance(wait)
	claim(t, c.B, false, w("w1", 5, "d2", longLease))
	// A newer round is claimed at once.
	claim(t, c.B, true, w("w1", 6, "d2", longLease))
	// Released undone (given back), the same round is free at once.
	release(t, c.B, "watch", "w1", "d2", false)
	claim(t, c.A, true, w("w1", 6, "d1", longLease))
}

func testReleaseOther(t *testing.T, c Clusters) {
	// Releasing what nobody holds is no error.
	release(t, c.A, "watch", "none", "d1", true)
	release(t, c.A, "watch", "none", "d1", false)
	claim(t, c.A, true, w("w1", 1, "d1", longLease))
	release(t, c.B, "watch", "w1", "d2", true)
	release(t, c.B, "watch", "w1", "d2", false)
	claim(t, c.B, false, w("w1", 1, "d2", longLease))
	if ds := holds(t, c.A, "d1"); ds["watch"] != 1 {
		t.Fatalf("d1 holds %v after others' Release, want watch:1", ds)
	}
	// The holder's own Release counts.
	release(t, c.A, "watch", "w1", "d1", false)
	claim(t, c.B, true, w("w1", 1, "d2", longLease))
}

// holds returns what daemon id holds (Daemons), registering it first.
func holds(t *testing.T, c kv.Cluster, id string) map[string]int {
	t.Helper()
	heartbeat(t, c, kv.Daemon{ID: id})
	for _, d := range daemons(t, c) {
		if d.ID == id {
			return d.Holds
		}
	}
	t.Fatalf("Daemons() lacks %s after its Heartbeat", id)
	return nil
}

func testClaimRace(t *testing.T, c Clusters) {
	const n = 50
	var wg sync.WaitGroup
	won := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		h := []kv.Cluster{c.A, c.B}[i%2]
		holder := fmt.Sprintf("d%d", i)
		wg.Go(func() {
			ok, err := h.Claim(context.Background(), w("w1", 1, holder, longLease))
			if err != nil {
				errs <- err
			}
			if ok {
				won <- holder
			}
		})
	}
	wg.Wait()
	close(won)
	close(errs)
	for err := range errs {
		t.Errorf("Claim() = %v", err)
	}
	var winners []string
	for h := range won {
		winners = append(winners, h)
	}
	if len(winners) != 1 {
		t.Fatalf("%d holders claimed one unit at once: %v won, want exactly one", n, winners)
	}
	claim(t, c.A, true, w("w1", 1, winners[0], longLease))
}

func testLeave(t *testing.T, c Clusters) {
	heartbeat(t, c.A, kv.Daemon{ID: "d1"})
	heartbeat(t, c.B, kv.Daemon{ID: "d2"})
	claim(t, c.A, true, w("x", 1, "d1", longLease))
	claim(t, c.A, true, w("y", 1, "d1", longLease))
	claim(t, c.A, true, w("z", 1, "d1", longLease))
	release(t, c.A, "watch", "z", "d1", true)
	if err := c.A.Leave(ctxT(t), "d1"); err != nil {
		t.Fatalf("Leave(d1) = %v", err)
	}
	// Its running claims are released undone, its finished one stays
	// finished.
	claim(t, c.B, true, w("x", 1, "d2", longLease))
	claim(t, c.B, true, w("y", 1, "d2", longLease))
	claim(t, c.B, false, w("z", 1, "d2", longLease))
	alive(t, c.B, "d1", longLease, false)
	alive(t, c.B, "d2", longLease, true)
	ds := daemons(t, c.B)
	if len(ds) != 1 || ds[0].ID != "d2" || ds[0].Holds["watch"] != 2 {
		t.Fatalf("Daemons() after d1 left = %+v, want only d2 holding watch:2", ds)
	}
	// Leaving twice, or unknown, is no error.
	if err := c.A.Leave(ctxT(t), "d1"); err != nil {
		t.Fatalf("Leave(d1) again = %v", err)
	}
}

func testAlive(t *testing.T, c Clusters) {
	alive(t, c.A, "d1", longLease, false)
	heartbeat(t, c.A, kv.Daemon{ID: "d1"})
	alive(t, c.A, "d1", longLease, true)
	alive(t, c.B, "d1", longLease, true)
	// A lease of a second, against heartbeats two seconds apart (a real
	// clock's calls take their time: a second leaves room for them).
	c.Advance(2 * time.Second)
	alive(t, c.B, "d1", time.Second, false)
	alive(t, c.B, "d1", longLease, true)
	heartbeat(t, c.A, kv.Daemon{ID: "d1"})
	alive(t, c.B, "d1", time.Second, true)
}

// near reports whether a and b are less than d apart.
func near(a, b time.Time, d time.Duration) bool { return a.Sub(b).Abs() < d }

func testDaemons(t *testing.T, c Clusters) {
	if ds := daemons(t, c.A); len(ds) != 0 {
		t.Fatalf("Daemons() of an empty cluster = %+v, want none", ds)
	}
	now := c.Now()
	newer := kv.Daemon{ID: "a-newer", Host: "h1", PID: 101, Version: "v1", Started: now.Add(-time.Minute)}
	older := kv.Daemon{ID: "z-older", Host: "h2", PID: 202, Version: "v2", Started: now.Add(-2 * time.Hour)}
	heartbeat(t, c.A, newer)
	heartbeat(t, c.B, older)
	heartbeat(t, c.A, kv.Daemon{ID: "m-now", Host: "h3", PID: 303, Version: "v3"}) // started: the first call

	claim(t, c.A, true, kv.Claim{Kind: "outbox", ID: "o2", Round: 1, Holder: "a-newer", Lease: shortLease})
	c.Advance(wait) // o2 ended
	claim(t, c.A, true, w("w1", 1, "a-newer", longLease))
	claim(t, c.B, true, w("w2", 1, "a-newer", longLease))
	claim(t, c.A, true, w("w3", 1, "a-newer", longLease))
	release(t, c.A, "watch", "w3", "a-newer", true)
	claim(t, c.A, true, kv.Claim{Kind: "outbox", ID: "o1", Round: 1, Holder: "a-newer", Lease: longLease})
	claim(t, c.A, true, w("w9", 1, "nobody-registered", longLease))

	// A later heartbeat keeps the start and takes the rest.
	newer.Version, newer.Started = "v1.1", now
	heartbeat(t, c.B, newer)

	ds := daemons(t, c.B)
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if want := []string{"z-older", "a-newer", "m-now"}; !slices.Equal(ids, want) {
		t.Fatalf("Daemons() = %v, want %v (oldest start first)", ids, want)
	}
	o, n, m := ds[0], ds[1], ds[2]
	if o.Host != "h2" || o.PID != 202 || o.Version != "v2" || !near(o.Started, older.Started, time.Millisecond) || len(o.Holds) != 0 {
		t.Errorf("Daemons()[z-older] = %+v, want host h2, pid 202, v2, started %s, holding nothing", o, older.Started)
	}
	if n.Version != "v1.1" || !near(n.Started, now.Add(-time.Minute), time.Millisecond) {
		t.Errorf("Daemons()[a-newer] = %+v, want v1.1 (the last heartbeat's) started %s (the first's)", n, now.Add(-time.Minute))
	}
	if want := map[string]int{"watch": 2, "outbox": 1}; !mapsEqual(n.Holds, want) {
		t.Errorf("Daemons()[a-newer].Holds = %v, want %v (running claims only)", n.Holds, want)
	}
	if !near(m.Started, now, time.Minute) || m.Heartbeat.Before(m.Started) {
		t.Errorf("Daemons()[m-now] started %s, heartbeat %s: want its first heartbeat's time (about %s)", m.Started, m.Heartbeat, now)
	}
	if !near(n.Heartbeat, c.Now(), time.Minute) || n.Heartbeat.Before(o.Heartbeat) {
		t.Errorf("Daemons()[a-newer] heartbeat %s, want about now (%s), after z-older's %s", n.Heartbeat, c.Now(), o.Heartbeat)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// take takes key and fails t unless the outcome is (want, ok).
func take(t *testing.T, c kv.Cluster, key string, want string, wantOK bool) {
	t.Helper()
	v, ok, err := c.TakeFlow(ctxT(t), key)
	if err != nil {
		t.Fatalf("TakeFlow(%s) = %v", key, err)
	}
	if ok != wantOK || string(v) != want {
		t.Fatalf("TakeFlow(%s) = %q, %v; want %q, %v", key, v, ok, want, wantOK)
	}
}

func put(t *testing.T, c kv.Cluster, key string, value []byte, expires time.Time) {
	t.Helper()
	if err := c.PutFlow(ctxT(t), key, value, expires); err != nil {
		t.Fatalf("PutFlow(%s) = %v", key, err)
	}
}

func testFlows(t *testing.T, c Clusters) {
	later := c.Now().Add(longLease)
	take(t, c.A, "never", "", false)

	v := []byte("state-1")
	put(t, c.A, "k1", v, later)
	v[0] = 'X' // the caller's slice is not the stored state
	take(t, c.B, "k1", "state-1", true)
	take(t, c.A, "k1", "", false)
	take(t, c.B, "k1", "", false)

	put(t, c.A, "k2", []byte("first"), later)
	put(t, c.B, "k2", []byte("second"), later)
	take(t, c.A, "k2", "second", true)

	put(t, c.A, "empty", []byte{}, later)
	take(t, c.B, "empty", "", true)

	put(t, c.A, "past", []byte("p"), c.Now().Add(-time.Second))
	take(t, c.B, "past", "", false)

	put(t, c.A, "short", []byte("s"), c.Now().Add(shortLease))
	put(t, c.A, "long", []byte("l"), later)
	c.Advance(wait)
	take(t, c.B, "short", "", false)
	take(t, c.B, "long", "l", true)

	// Many puts and takes (sweeps of expired flows, where an engine has
	// them, keep live ones).
	for i := range 64 {
		put(t, c.A, fmt.Sprintf("old%d", i), []byte("o"), c.Now().Add(-time.Second))
		put(t, c.A, fmt.Sprintf("live%d", i), []byte(fmt.Sprint(i)), later)
	}
	for i := range 64 {
		take(t, c.B, fmt.Sprintf("live%d", i), fmt.Sprint(i), true)
		take(t, c.B, fmt.Sprintf("old%d", i), "", false)
	}
}

func testFlowRace(t *testing.T, c Clusters) {
	put(t, c.A, "race", []byte("once"), c.Now().Add(longLease))
	const n = 50
	var wg sync.WaitGroup
	got := make(chan string, n)
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		h := []kv.Cluster{c.A, c.B}[i%2]
		wg.Go(func() {
			<-start
			v, ok, err := h.TakeFlow(context.Background(), "race")
			if err != nil {
				errs <- err
			}
			if ok {
				got <- string(v)
			}
		})
	}
	close(start)
	wg.Wait()
	close(got)
	close(errs)
	for err := range errs {
		t.Errorf("TakeFlow() = %v", err)
	}
	var vs []string
	for v := range got {
		vs = append(vs, v)
	}
	if len(vs) != 1 || vs[0] != "once" {
		t.Fatalf("%d takers of one flow got %q, want exactly one %q", n, vs, "once")
	}
}

// subscriber records what Subscribe delivers.
type subscriber struct {
	mu   sync.Mutex
	got  []string
	done chan error
}

func subscribe(ctx context.Context, c kv.Cluster, channel string) *subscriber {
	s := &subscriber{done: make(chan error, 1)}
	go func() {
		s.done <- c.Subscribe(ctx, channel, func(p string) {
			s.mu.Lock()
			s.got = append(s.got, p)
			s.mu.Unlock()
		}, nil)
	}()
	return s
}

// payloads returns what s got, pings left out, and whether it got one.
func (s *subscriber) payloads() (got []string, pinged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.got {
		if p == "ping" {
			pinged = true
		} else {
			got = append(got, p)
		}
	}
	return got, pinged
}

// eventually polls cond every 20ms for up to 20 s, calling each (when
// set) before each poll.
func eventually(each func(), cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if each != nil {
			each()
		}
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func testPubSub(t *testing.T, c Clusters) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	const ch = "grant.Refreshed-1" // case and punctuation kept
	s1, s2 := subscribe(ctx, c.A, ch), subscribe(ctx, c.B, ch)
	other := subscribe(ctx, c.B, "other")
	// A subscription starts listening some time after Subscribe is
	// called: ping until both hear.
	if !eventually(func() {
		if err := c.A.Publish(ctx, ch, "ping"); err != nil {
			t.Fatalf("Publish(ping) = %v", err)
		}
	}, func() bool {
		_, p1 := s1.payloads()
		_, p2 := s2.payloads()
		return p1 && p2
	}) {
		t.Fatalf("no subscriber heard a ping in 20 s")
	}
	want := []string{"m1", "m2", "m3 with spaces, ünïcode", "m4", ""}
	for i, p := range want {
		if err := []kv.Cluster{c.A, c.B}[i/3].Publish(ctx, ch, p); err != nil {
			t.Fatalf("Publish(%q) = %v", p, err)
		}
	}
	if !eventually(nil, func() bool {
		g1, _ := s1.payloads()
		g2, _ := s2.payloads()
		return len(g1) >= len(want) && len(g2) >= len(want)
	}) {
		g1, _ := s1.payloads()
		g2, _ := s2.payloads()
		t.Fatalf("in 20 s the subscribers got %q and %q, want %q each", g1, g2, want)
	}
	for i, s := range []*subscriber{s1, s2} {
		if got, _ := s.payloads(); !slices.Equal(got, want) {
			t.Errorf("subscriber %d got %q, want %q (in order, once each)", i+1, got, want)
		}
	}
	if got, pinged := other.payloads(); len(got) != 0 || pinged {
		t.Errorf("a subscriber of another channel got %q (pinged %v), want nothing", got, pinged)
	}
	cancel()
	for i, s := range []*subscriber{s1, s2, other} {
		select {
		case err := <-s.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Subscribe %d returned %v after its context ended, want context.Canceled", i+1, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("Subscribe %d did not return in 20 s after its context ended", i+1)
		}
	}
}

func testBadClaims(t *testing.T, c Clusters) {
	for _, tc := range []struct {
		name  string
		claim kv.Claim
		says  string
	}{
		{"no kind", kv.Claim{ID: "w1", Holder: "d1", Lease: time.Minute}, "a kind"},
		{"no id", kv.Claim{Kind: "watch", Holder: "d1", Lease: time.Minute}, "an id"},
		{"no holder", kv.Claim{Kind: "watch", ID: "w1", Lease: time.Minute}, "a holder"},
		{"zero lease", kv.Claim{Kind: "watch", ID: "w1", Holder: "d1"}, "positive lease"},
		{"negative lease", kv.Claim{Kind: "watch", ID: "w1", Holder: "d1", Lease: -time.Second}, "positive lease"},
		{"nothing", kv.Claim{}, "a kind, an id, a holder, a positive lease"},
		{"NUL in the id", kv.Claim{Kind: "watch", ID: "w\x001", Holder: "d1", Lease: time.Minute}, "without NUL in its id"},
		{"not UTF-8 kind", kv.Claim{Kind: "w\xff", ID: "w1", Holder: "d1", Lease: time.Minute}, "UTF-8 text without NUL in its kind"},
		{"NUL in the holder", kv.Claim{Kind: "watch", ID: "w1", Holder: "d\x00", Lease: time.Minute}, "in its holder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := c.A.Claim(ctxT(t), tc.claim)
			if err == nil || ok || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Claim(%+v) = %v, %v; want an error saying %q", tc.claim, ok, err, tc.says)
			}
		})
	}
	// Nothing was recorded: w1 is free for d2.
	claim(t, c.B, true, w("w1", 0, "d2", longLease))
	if err := c.A.Heartbeat(ctxT(t), kv.Daemon{Host: "h"}); err == nil {
		t.Errorf("Heartbeat(no id) = nil, want an error")
	}
	if ds := daemons(t, c.A); len(ds) != 0 {
		t.Errorf("Daemons() after a refused heartbeat = %+v, want none", ds)
	}
}

func testBadChannels(t *testing.T, c Clusters) {
	long := strings.Repeat("c", kv.MaxChannel)
	for _, tc := range []struct{ name, channel string }{
		{"empty", ""},
		{"too long", long + "c"},
		{"NUL", "a\x00b"},
		{"not UTF-8", "a\xffb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.A.Publish(ctxT(t), tc.channel, "p"); err == nil {
				t.Errorf("Publish(%q) = nil, want an error", tc.channel)
			}
			called := false
			err := c.B.Subscribe(ctxT(t), tc.channel, func(string) { called = true }, nil)
			if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || called {
				t.Errorf("Subscribe(%q) = %v, want an error at once", tc.channel, err)
			}
		})
	}
	// The longest name is fine.
	if err := c.A.Publish(ctxT(t), long, "p"); err != nil {
		t.Errorf("Publish(%d bytes) = %v", len(long), err)
	}
}
