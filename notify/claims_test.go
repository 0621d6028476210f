package notify

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

// The vault's cluster is what the notifier claims with.
var _ Claims = kv.Cluster(nil)

// pgOutbox opens a vault handle on PostgreSQL database dsn with master:
// each handle is a daemon of its own (its own engine, pool and holder),
// sharing the database's outbox and claims.
func pgOutbox(t testing.TB, dsn string, master *seal.MasterKey) *vault.DB {
	t.Helper()
	db := vaulttest.Open(t, vaulttest.Master(master), vaulttest.Engine(func() (kv.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	}))
	if !db.Shared() {
		t.Fatal("a vault on PostgreSQL is not shared (vault.DB.Shared): its claims would be this process's alone")
	}
	return db
}

// claimingService is a Service delivering db's outbox to hook (signed
// with sec), claiming under db's holder when claims is set.
func claimingService(t testing.TB, db *vault.DB, hook, sec string, claims bool, observe func(Event)) *Service {
	t.Helper()
	cfg := Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), PollInterval: 50 * time.Millisecond,
		Channels: ChannelsConfig{AllowPrivateTargets: true, PerTargetConcurrency: 8, BaseDelay: 50 * time.Millisecond,
			Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(sec)}}},
		Observer: observe, Logger: vaulttest.Quiet()}
	if claims {
		cfg.Claims, cfg.Holder, cfg.Lease = db.Cluster(), db.Holder(), 10*time.Second
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClaimsTwoDispatchers: two delivery loops, each on its own vault
// handle (two daemons) of one PostgreSQL database, deliver the same
// outbox of 400 notifications, every fifth failing once (a retry is a
// new round, taken by whichever daemon claims it first). Every id
// reaches the webhook exactly once as a delivery that succeeded, every
// row ends delivered, and both daemons did part of the work.
func TestClaimsTwoDispatchers(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	master, _ := vaulttest.NewMaster(t)
	dbA, dbB := pgOutbox(t, dsn, master), pgOutbox(t, dsn, master)
	sec, _ := whsec()
	rc := newReceiver(t, sec)
	var okMu sync.Mutex
	accepted := map[string]int{} // ids answered 204
	failedOnce := map[string]bool{}
	rc.respond = func(w http.ResponseWriter, r *http.Request, id string) {
		okMu.Lock()
		defer okMu.Unlock()
		n, _ := strconv.Atoi(id[len("c"):])
		if n%5 == 0 && !failedOnce[id] {
			failedOnce[id] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		accepted[id]++
		w.WriteHeader(http.StatusNoContent)
	}
	const total = 400
	payload := []byte(mustJSON(matchNotice("u1", "w1", 1)))
	rows := make([]vault.OutboxRow, total)
	for i := range rows {
		rows[i] = vault.OutboxRow{ID: "c" + strconv.Itoa(i), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1", Target: rc.url(), Payload: payload}
	}
	if _, err := dbA.Enqueue(rows...); err != nil {
		t.Fatal(err)
	}
	var delivered [2]atomic.Int64
	sA := claimingService(t, dbA, rc.url(), sec, true, func(ev Event) {
		if ev.Kind == EventDelivered {
			delivered[0].Add(1)
		}
	})
	sB := claimingService(t, dbB, rc.url(), sec, true, func(ev Event) {
		if ev.Kind == EventDelivered {
			delivered[1].Add(1)
		}
	})
	run(t, sA)
	run(t, sB)
	deadline := time.Now().Add(60 * time.Second)
	for delivered[0].Load()+delivered[1].Load() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive now
	okMu.Lock()
	defer okMu.Unlock()
	twice, missing := 0, 0
	for _, r := range rows {
		switch n := accepted[r.ID]; {
		case n == 0:
			missing++
		case n > 1:
			twice++
			t.Errorf("notification %s delivered %d times, want once", r.ID, n)
		}
		if got := getRow(t, dbB, r.ID); got.State != vault.OutboxDelivered {
			t.Errorf("row %s is %s, want delivered", r.ID, got.State)
		}
	}
	if missing != 0 || rc.bad != 0 {
		t.Errorf("%d notifications never delivered, %d deliveries failed verification; want 0 and 0", missing, rc.bad)
	}
	a, b := delivered[0].Load(), delivered[1].Load()
	if a+b != total || a == 0 || b == 0 {
		t.Errorf("daemon A delivered %d, B %d: want %d in all, by both", a, b, total)
	}
	t.Logf("%d notifications (%d failing once first): A delivered %d, B %d; %d duplicates", total, len(failedOnce), a, b, twice)
}

// countingClaims is a real cluster that counts the claims asked of it
// per id.
type countingClaims struct {
	kv.Cluster
	mu sync.Mutex
	n  map[string]int
}

func (c *countingClaims) Claim(ctx context.Context, cl kv.Claim) (bool, error) {
	c.mu.Lock()
	c.n[cl.ID]++
	c.mu.Unlock()
	return c.Cluster.Claim(ctx, cl)
}

func (c *countingClaims) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// TestClaimsLeaveHeldRow: a row whose attempt another daemon holds is
// left alone, and not asked for again and again while it is held: its
// claim is tried again only once this loop's lease would have ended. The
// other rows go out meanwhile. When the other daemon gives the claim back
// undone (it stopped), the row goes out, once.
func TestClaimsLeaveHeldRow(t *testing.T) {
	db := openDB(t, "", nil, nil)
	sec, _ := whsec()
	rc := newReceiver(t, sec)
	enqueue(t, db, "held", rc.url(), matchNotice("u1", "w1", 1))
	enqueue(t, db, "free", rc.url(), matchNotice("u1", "w1", 1))
	held := getRow(t, db, "held")
	cl := db.Cluster()
	if ok, err := cl.Claim(context.Background(), kv.Claim{Kind: ClaimKind, ID: "held", Round: claimRound(held), Holder: "other-daemon",
		Lease: time.Hour}); !ok || err != nil {
		t.Fatalf("the other daemon's claim = %v, %v", ok, err)
	}
	counting := &countingClaims{Cluster: cl, n: map[string]int{}}
	const lease, poll = 300 * time.Millisecond, 10 * time.Millisecond
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), PollInterval: poll,
		Claims: counting, Holder: "this-daemon", Lease: lease, Logger: vaulttest.Quiet(),
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New(sec)}}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	const watch = 1500 * time.Millisecond
	time.Sleep(watch)
	if rc.count("free") != 1 {
		t.Errorf("the free row reached the webhook %d times, want once", rc.count("free"))
	}
	if rc.count("held") != 0 {
		t.Errorf("the row another daemon holds reached the webhook %d times, want none", rc.count("held"))
	}
	// Once per lease (and the first), not once per poll (150 in that time).
	if n, most := counting.count("held"), int(watch/lease)+2; n < 2 || n > most {
		t.Errorf("the held row's claim was asked %d times in %s, want 2 to %d (once per lease of %s, polling every %s)",
			n, watch, most, lease, poll)
	}
	if err := cl.Release(context.Background(), ClaimKind, "held", "other-daemon", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(lease + 5*time.Second)
	for rc.count("held") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rc.count("held"); n != 1 {
		t.Fatalf("after the other daemon gave it back, the row reached the webhook %d times, want once", n)
	}
	deadline = time.Now().Add(5 * time.Second)
	for getRow(t, db, "held").State != vault.OutboxDelivered && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := getRow(t, db, "held").State; st != vault.OutboxDelivered {
		t.Errorf("row held is %s, want delivered", st)
	}
	// The claim was released done: no daemon takes that round again.
	if ok, err := cl.Claim(context.Background(), kv.Claim{Kind: ClaimKind, ID: "held", Round: claimRound(held), Holder: "third-daemon",
		Lease: time.Hour}); ok || err != nil {
		t.Errorf("claim of the delivered round by a third daemon = %v, %v; want refused (released done)", ok, err)
	}
}

// BenchmarkDeliveryClaims measures deliveries per second of 5,000
// notifications to one loopback webhook from an outbox on PostgreSQL,
// without claims (one daemon) and with them (every attempt claimed and
// released, as several daemons do), and reports the ratio. Run it once:
// go test -run '^$' -bench DeliveryClaims -benchtime 1x ./notify/
func BenchmarkDeliveryClaims(b *testing.B) {
	c := pgtest.Start(b)
	sec, _ := whsec()
	rc := newReceiver(b, sec)
	const total = 5000
	payload := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	rate := func(claims bool) float64 {
		db := pgOutbox(b, c.DSN(c.CreateDB(b)), nil)
		var n atomic.Int64
		done := make(chan struct{})
		s := claimingService(b, db, rc.url(), sec, claims, func(ev Event) {
			if ev.Kind == EventDelivered && n.Add(1) == total {
				close(done)
			}
		})
		rows := make([]vault.OutboxRow, total)
		for i := range rows {
			rows[i] = vault.OutboxRow{ID: fmt.Sprintf("b%v-%d", claims, i), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
				Target: rc.url(), Payload: payload}
		}
		if _, err := db.Enqueue(rows...); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		t0 := time.Now()
		go func() { ran <- s.Run(ctx) }()
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatal("deliveries did not finish within 5 minutes")
		}
		r := total / time.Since(t0).Seconds()
		cancel()
		<-ran
		return r
	}
	for range b.N {
		without, with := rate(false), rate(true)
		b.ReportMetric(without, "deliveries/s-one-daemon")
		b.ReportMetric(with, "deliveries/s-claimed")
		b.ReportMetric(with/without, "ratio")
	}
}
