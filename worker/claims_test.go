package worker_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"runtime"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
)

// The vault's cluster is what the worker claims with.
var _ worker.Claims = kv.Cluster(nil)

// pgVault opens a vault handle on PostgreSQL database dsn with the
// fixture's master key and rules: every handle is a daemon of its own
// (its own engine, pool and holder id), sharing the database.
func (f *fix) pgVault(dsn string) *vault.DB {
	f.t.Helper()
	open := func() (kv.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	}
	db := vaulttest.Open(f.t, vaulttest.Engine(open), vaulttest.Master(f.master), vaulttest.Rules(rules(f.src)))
	if !db.Shared() {
		f.t.Fatal("a vault on PostgreSQL is not shared (vault.DB.Shared): its claims would be this process's alone")
	}
	return db
}

// fireLog records what one worker's fires did, by watch and round (the
// fire's due time: Event.Time minus Event.Lag).
type fireLog struct {
	mu        sync.Mutex
	ran       map[string]map[int64]int // EventRun
	elsewhere map[string]map[int64]int // EventClaimedElsewhere
	failed    []worker.Event           // EventRunFailed, or skipped for a claim the store did not answer
	stopping  bool                     // the test is stopping the worker
	cut       int                      // runs cut short by the stop (their context canceled)
	runAt     map[string][]time.Time   // EventRun start times
}

func newFireLog() *fireLog {
	return &fireLog{ran: map[string]map[int64]int{}, elsewhere: map[string]map[int64]int{}, runAt: map[string][]time.Time{}}
}

func (l *fireLog) observe(ev worker.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	round := ev.Time.Add(-ev.Lag).UnixNano()
	add := func(m map[string]map[int64]int) {
		if m[ev.WatchID] == nil {
			m[ev.WatchID] = map[int64]int{}
		}
		m[ev.WatchID][round]++
	}
	switch {
	case ev.Kind == worker.EventRun:
		add(l.ran)
		l.runAt[ev.WatchID] = append(l.runAt[ev.WatchID], ev.Time)
	case ev.Kind == worker.EventClaimedElsewhere:
		add(l.elsewhere)
	case ev.Kind == worker.EventRunFailed && l.stopping && errors.Is(ev.Err, context.Canceled):
		l.cut++ // in flight when the test stopped the worker: the stop's doing, not a fault
	case ev.Kind == worker.EventRunFailed || ev.Reason == worker.SkipNoClaim:
		l.failed = append(l.failed, ev)
	}
}

// claimingWorker is a worker on db that claims its runs under db's
// holder, with lease, reporting to log.
func (f *fix) claimingWorker(db *vault.DB, lease time.Duration, log *fireLog, failpoint func(string)) *worker.Worker {
	f.t.Helper()
	cfg := f.wcfg
	cfg.DB, cfg.Claims, cfg.Holder, cfg.Lease = db, db.Cluster(), db.Holder(), lease
	cfg.Observer, cfg.Failpoint = log.observe, failpoint
	w, err := worker.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// runWorker runs w until the returned stop is called, and waits for it.
func runWorker(t *testing.T, w *worker.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestClaimsEachRoundOnce: two workers, each on its own vault handle
// (two daemons, two holders) of one PostgreSQL database, schedule the
// same six watches every second. Each fires every watch on every round;
// the claims let exactly one of them run it: each (watch, round) runs
// once, the sandbox counts exactly one search per run, the other
// worker's fire of that round finds it claimed, and no round is left
// unrun.
func TestClaimsEachRoundOnce(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	f := newFix(t, fixOpts{realTime: true})
	dbA := f.pgVault(dsn)
	dbB := f.pgVault(dsn)
	if dbA.Holder() == dbB.Holder() {
		t.Fatalf("two vault handles share the holder %q", dbA.Holder())
	}
	f.db = dbA // the fixture's watches are stored through A; B reads them from the same database
	const n = 6
	watches := map[string]string{} // watch id -> sandbox user
	for i := range n {
		xid := fmt.Sprint(3001 + i)
		id, _ := f.addWatch(xid, vault.WatchSpec{Hashtags: []string{"claims"}, Schedule: "@every 1s"}, time.Time{})
		watches[id] = xid
	}
	f.post("42", "hello #claims")
	logA, logB := newFireLog(), newFireLog()
	wA := f.claimingWorker(dbA, 10*time.Second, logA, nil)
	wB := f.claimingWorker(dbB, 10*time.Second, logB, nil)
	start := time.Now()
	stopA, stopB := runWorker(t, wA), runWorker(t, wB)
	time.Sleep(6 * time.Second)
	end := time.Now()
	for _, l := range []*fireLog{logA, logB} {
		l.mu.Lock()
		l.stopping = true
		l.mu.Unlock()
	}
	stopA()
	stopB()

	for _, l := range []*fireLog{logA, logB} {
		for _, ev := range l.failed {
			t.Errorf("watch %s: %s %s %v, want runs and claims only", ev.WatchID, ev.Kind, ev.Reason, ev.Err)
		}
	}
	settled := end.Add(-2 * time.Second).UnixNano() // rounds the stop cannot have cut short
	for id, xid := range watches {
		runs, rounds := 0, 0
		for _, l := range []*fireLog{logA, logB} {
			for _, k := range l.ran[id] {
				runs += k
			}
		}
		both := map[int64]bool{}
		for r, k := range logA.ran[id] {
			if k+logB.ran[id][r] != 1 {
				t.Errorf("watch %s round %s ran %d times (A %d, B %d), want once", id, time.Unix(0, r).Format(time.StampMilli),
					k+logB.ran[id][r], k, logB.ran[id][r])
			}
			both[r] = true
		}
		for r := range logB.ran[id] {
			both[r] = true
		}
		rounds = len(both)
		if got := f.searches(xid); got != runs {
			t.Errorf("watch %s: the sandbox counted %d searches, the workers %d runs: want one search per run", id, got, runs)
		}
		if rounds < 4 {
			t.Errorf("watch %s ran in %d rounds in %s, want one a second", id, rounds, end.Sub(start).Round(time.Second))
		}
		// Each worker fired the watch: every round one of them did not
		// run, it found claimed by the other, which ran it.
		for name, pair := range map[string][2]*fireLog{"A": {logA, logB}, "B": {logB, logA}} {
			me, other := pair[0], pair[1]
			if len(me.ran[id])+len(me.elsewhere[id]) < 4 {
				t.Errorf("worker %s fired watch %s %d times, want every round", name, id, len(me.ran[id])+len(me.elsewhere[id]))
			}
			for r := range me.elsewhere[id] {
				if r < settled && other.ran[id][r] != 1 {
					t.Errorf("worker %s found watch %s round %s claimed, but the other ran it %d times", name, id,
						time.Unix(0, r).Format(time.StampMilli), other.ran[id][r])
				}
			}
		}
	}
	t.Logf("%d watches for %s: A ran %d rounds and found %d claimed; B ran %d and found %d claimed", n, end.Sub(start).Round(time.Millisecond),
		count(logA.ran), count(logA.elsewhere), count(logB.ran), count(logB.elsewhere))
	if count(logA.ran) == 0 || count(logB.ran) == 0 {
		t.Errorf("one worker ran everything (A %d, B %d): the claims were not contended", count(logA.ran), count(logB.ran))
	}
}

func count(m map[string]map[int64]int) int {
	n := 0
	for _, rs := range m {
		for _, k := range rs {
			n += k
		}
	}
	return n
}

// TestClaimsDeadHolder: worker A claims a round of a watch and dies in
// the middle of its run (after the search, before the commit: its
// goroutine ends and its daemon's context is cancelled, so the claim is
// neither released nor extended). Worker B, on another vault handle of
// the same PostgreSQL database, finds the round claimed while A's lease
// runs, and runs the watch at its first fire after the lease ended:
// within the watch's interval plus the lease of A's claim.
func TestClaimsDeadHolder(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	f := newFix(t, fixOpts{realTime: true})
	dbA := f.pgVault(dsn)
	dbB := f.pgVault(dsn)
	f.db = dbA
	const interval, lease = time.Second, 2 * time.Second
	id, _ := f.addWatch("4001", vault.WatchSpec{Hashtags: []string{"claims"}, Schedule: "@every 1s"}, time.Time{})

	logA, logB := newFireLog(), newFireLog()
	var (
		mu      sync.Mutex
		claimed time.Time // when A's claim was taken, at the latest
		died    = make(chan struct{})
		cancelA context.CancelFunc
	)
	wA := f.claimingWorker(dbA, lease, logA, func(name string) {
		if name != "after_search" {
			return
		}
		mu.Lock()
		first := claimed.IsZero()
		if first {
			claimed = time.Now()
		}
		mu.Unlock()
		if first {
			cancelA()
			close(died)
			runtime.Goexit() // the run's goroutine ends here: no commit, no release
		}
	})
	wB := f.claimingWorker(dbB, lease, logB, nil)

	ctxA, cA := context.WithCancel(context.Background())
	cancelA = cA
	doneA := make(chan error, 1)
	go func() { doneA <- wA.Run(ctxA) }()
	select {
	case <-died:
	case <-time.After(30 * time.Second):
		t.Fatal("worker A did not run the watch")
	}
	if err := <-doneA; err != nil {
		t.Fatalf("worker A's Run = %v", err)
	}
	// The claim's own end, as the database has it: claimed (taken after
	// the search) is later than the claim itself.
	var until time.Time
	{
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(context.Background(), "SELECT until FROM kv_claims WHERE kind = $1 AND id = $2", worker.ClaimKind, id).Scan(&until)
		conn.Close(context.Background())
		if err != nil {
			t.Fatalf("A's claim in kv_claims: %v", err)
		}
	}
	stopB := runWorker(t, wB)
	deadline := until.Add(interval)
	var firstRun time.Time
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		logB.mu.Lock()
		if ts := logB.runAt[id]; len(ts) > 0 {
			firstRun = ts[0]
		}
		logB.mu.Unlock()
		if !firstRun.IsZero() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopB()
	switch {
	case firstRun.IsZero():
		t.Fatalf("worker B never ran the watch after A died (A's claim at %s)", claimed.Format(time.StampMilli))
	case firstRun.After(deadline.Add(300 * time.Millisecond)):
		t.Errorf("worker B ran the watch %s after A's claim, want within the interval plus the lease, %s",
			firstRun.Sub(claimed).Round(time.Millisecond), interval+lease)
	}
	if firstRun.Before(until) {
		t.Errorf("worker B ran the watch at %s, before A's claim's lease (%s) ended at %s", firstRun.Format(time.StampMilli), lease, until.Format(time.StampMilli))
	}
	if len(logB.elsewhere[id]) == 0 {
		t.Errorf("worker B never found the watch claimed while A's lease ran (its fires: %v)", logB.ran[id])
	}
	if len(logA.ran[id]) != 0 {
		t.Errorf("worker A committed %d runs, want none (it died in its first)", len(logA.ran[id]))
	}
	if got := f.cursor(id); !got.Started || got.Runs < 1 {
		t.Errorf("cursor after B's run = %+v, want a run recorded", got)
	}
	t.Logf("A claimed at %s and died; B ran the watch %s later (interval %s, lease %s)", claimed.Format(time.StampMilli),
		firstRun.Sub(claimed).Round(time.Millisecond), interval, lease)
}
