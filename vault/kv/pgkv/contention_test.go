package pgkv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// The buckets of the contention mix, shaped like the vault's: per-watch
// cursors, outbox rows with their due index, grants, the audit trail
// (numbered by its bucket's sequence), and one hot counter.
var (
	cCursors = []byte("cursors")
	cOutbox  = []byte("outbox")
	cDue     = []byte("outbox_due")
	cGrants  = []byte("grants")
	cAudit   = []byte("audit")
	cHot     = []byte("hot")
	cSeen    = []byte("watch_seen")
)

const (
	cWatches = 24
	cGrantsN = 16
	// pending and settled are an outbox row's states (its first byte).
	pending, settled = 'p', 's'
)

// openEngines opens n engines on one new database: n daemons.
func openEngines(t *testing.T, n int) []*pgkv.Engine {
	t.Helper()
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var es []*pgkv.Engine
	for range n {
		e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		es = append(es, e)
	}
	if err := es[0].Update(func(tx kv.Tx) error {
		for _, b := range [][]byte{cCursors, cSeen, cOutbox, cDue, cGrants, cAudit, cHot} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

func u64(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func put64(b kv.Bucket, key []byte, n uint64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, n))
}

// audit appends an event numbered by the audit bucket's sequence, as the
// vault's appendAudit does.
func audit(tx kv.Tx, what string) error {
	b := tx.Bucket(cAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), fmt.Appendf(nil, `{"seq":%d,"kind":%q}`, seq, what))
}

// sumStats adds the engines' counts.
func sumStats(es []*pgkv.Engine) pgkv.Stats {
	var s pgkv.Stats
	for _, e := range es {
		x := e.Stats()
		s.Updates += x.Updates
		s.Attempts += x.Attempts
		s.Retries += x.Retries
		s.Escalated += x.Escalated
		s.GaveUp += x.GaveUp
		s.MostAttempts = max(s.MostAttempts, x.MostAttempts)
	}
	return s
}

func minus(a, b pgkv.Stats) pgkv.Stats {
	return pgkv.Stats{Updates: a.Updates - b.Updates, Attempts: a.Attempts - b.Attempts, Retries: a.Retries - b.Retries,
		Escalated: a.Escalated - b.Escalated, GaveUp: a.GaveUp - b.GaveUp, MostAttempts: a.MostAttempts}
}

// report logs what Update did in a phase (s, in wall time took, each
// Update's time in sorted), and fails t when an Update gave up.
func report(t *testing.T, phase string, s pgkv.Stats, took time.Duration, sorted []time.Duration) {
	t.Helper()
	at := func(p float64) time.Duration {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Round(100 * time.Microsecond)
	}
	t.Logf("%s: %d updates in %s (%.0f/s; each p50 %s p99 %s max %s), %d attempts, %d retries (%.2f per update), %d escalated attempts, most attempts of one update %d (since Open), gave up %d",
		phase, s.Updates, took.Round(time.Millisecond), float64(s.Updates)/took.Seconds(), at(0.5), at(0.99), at(1), s.Attempts, s.Retries,
		float64(s.Retries)/float64(max(s.Updates, 1)), s.Escalated, s.MostAttempts, s.GaveUp)
	if s.GaveUp != 0 {
		t.Errorf("%s: %d updates gave up after %d serialization failures, want none (the gate drains every storm)", phase, s.GaveUp, pgkv.MaxAttempts)
	}
}

// TestContention: three engines on one database (three daemons), four
// goroutines each, run a mix shaped like the vault's writes for a few
// seconds: watch runs (CommitRun: a watch's cursor read and
// incremented, two posts added to its seen index and the index pruned by
// a scan, an outbox row and its due entry written, one in four audited),
// deliveries (DueOutboxIDs in a View, then SettleOutbox of this
// goroutine's share of the due rows: each read, marked settled,
// unindexed), refreshes (a grant's counter read and incremented, one in
// eight audited) and operator requests (audit only). Then every
// goroutine increments one counter (a storm: every pair of transactions
// conflicts). No Update may give up, and nothing committed may be lost
// or applied twice: each counter equals the commits that incremented
// it, each row was settled by one commit, the due index holds exactly
// the pending rows, and the audit trail is numbered 1..n without a gap,
// n the audited commits. Retries per update are logged for the note.
func TestContention(t *testing.T) {
	es := openEngines(t, 3)
	mixFor, stormFor := 2*time.Second, time.Second
	if testing.Short() {
		mixFor, stormFor = time.Second, 500*time.Millisecond
	}
	const perEngine = 4

	// What committed, counted after each Update returned nil.
	var mu sync.Mutex
	runs := make([]uint64, cWatches)
	refreshes := make([]uint64, cGrantsN)
	var created, settledRows, audited uint64
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, err)
		}
	}

	run := func(e *pgkv.Engine, name string) error {
		w := rand.IntN(cWatches)
		audited1 := rand.IntN(4) == 0
		err := e.Update(func(tx kv.Tx) error {
			cur, seen, due, ob := tx.Bucket(cCursors), tx.Bucket(cSeen), tx.Bucket(cDue), tx.Bucket(cOutbox)
			key := fmt.Appendf(nil, "w%02d", w)
			n := u64(cur.Get(key))
			// Two posts seen (as CommitRun's watch_seen), then the
			// watch's seen index pruned to its newest 20: a scan of a
			// small index.
			for p := range uint64(2) {
				if err := seen.Put(binary.BigEndian.AppendUint64(bytes.Clone(key), 2*n+p), []byte{1}); err != nil {
					return err
				}
			}
			var keys [][]byte
			c := seen.Cursor()
			for k, _ := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, _ = c.Next() {
				keys = append(keys, k)
			}
			for _, k := range keys[:max(len(keys)-20, 0)] {
				if err := seen.Delete(k); err != nil {
					return err
				}
			}
			if err := put64(cur, key, n+1); err != nil {
				return err
			}
			// One outbox row, due now, and its due entry.
			at := time.Now()
			id := fmt.Appendf(nil, "%s-%d", name, at.UnixNano())
			if err := ob.Put(id, append([]byte{pending}, make([]byte, 200)...)); err != nil {
				return err
			}
			if err := due.Put(append(binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())), id...), id); err != nil {
				return err
			}
			if audited1 {
				return audit(tx, "run")
			}
			return nil
		})
		if err == nil {
			mu.Lock()
			runs[w]++
			created++
			if audited1 {
				audited++
			}
			mu.Unlock()
		}
		return err
	}
	// settle delivers due rows, as a daemon's delivery loop: the due rows
	// read in a View (DueOutboxIDs), those of this goroutine's share
	// taken (as its claims would give it them: slot of slots), and
	// settled in one Update (SettleOutbox: each row read, marked settled,
	// unindexed). A row found settled already was settled twice.
	settle := func(e *pgkv.Engine, slot, slots int) error {
		type dueRow struct{ key, id []byte }
		var mine []dueRow
		if err := e.View(func(tx kv.Tx) error {
			c := tx.Bucket(cDue).Cursor()
			for k, v := c.First(); k != nil && len(mine) < 5; k, v = c.Next() {
				if int(crc32.ChecksumIEEE(v))%slots == slot {
					mine = append(mine, dueRow{bytes.Clone(k), bytes.Clone(v)})
				}
			}
			return nil
		}); err != nil || len(mine) == 0 {
			return err
		}
		var n uint64
		err := e.Update(func(tx kv.Tx) error {
			n = 0
			due, ob := tx.Bucket(cDue), tx.Bucket(cOutbox)
			for _, r := range mine {
				row := ob.Get(r.id)
				if len(row) == 0 || row[0] != pending {
					return fmt.Errorf("due row %s is %q, want pending (settled twice?)", r.id, row[:min(len(row), 1)])
				}
				if err := ob.Put(r.id, append([]byte{settled}, row[1:]...)); err != nil {
					return err
				}
				if err := due.Delete(r.key); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err == nil {
			mu.Lock()
			settledRows += n
			mu.Unlock()
		}
		return err
	}
	refresh := func(e *pgkv.Engine) error {
		g := rand.IntN(cGrantsN)
		audited1 := rand.IntN(8) == 0
		err := e.Update(func(tx kv.Tx) error {
			b := tx.Bucket(cGrants)
			key := fmt.Appendf(nil, "g%02d", g)
			if err := put64(b, key, u64(b.Get(key))+1); err != nil {
				return err
			}
			if audited1 {
				return audit(tx, "refresh")
			}
			return nil
		})
		if err == nil {
			mu.Lock()
			refreshes[g]++
			if audited1 {
				audited++
			}
			mu.Unlock()
		}
		return err
	}
	request := func(e *pgkv.Engine) error {
		err := e.Update(func(tx kv.Tx) error { return audit(tx, "request") })
		if err == nil {
			mu.Lock()
			audited++
			mu.Unlock()
		}
		return err
	}

	// hammer runs op in perEngine goroutines per engine until d passed,
	// and returns how long each op took, in order.
	hammer := func(d time.Duration, op func(e *pgkv.Engine, name string, slot int) error) []time.Duration {
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		var took []time.Duration
		var tmu sync.Mutex
		for i, e := range es {
			for g := range perEngine {
				name, slot := fmt.Sprintf("d%d.%d", i, g), i*perEngine+g
				wg.Go(func() {
					for time.Now().Before(end) {
						t0 := time.Now()
						err := op(e, name, slot)
						tmu.Lock()
						took = append(took, time.Since(t0))
						tmu.Unlock()
						if err != nil {
							fail(fmt.Errorf("%s: %w", name, err))
							return
						}
					}
				})
			}
		}
		wg.Wait()
		slices.Sort(took)
		return took
	}

	before, start := sumStats(es), time.Now()
	took := hammer(mixFor, func(e *pgkv.Engine, name string, slot int) error {
		switch p := rand.IntN(10); {
		case p < 4:
			return run(e, name)
		case p < 7:
			return settle(e, slot, len(es)*perEngine)
		case p < 9:
			return refresh(e)
		default:
			return request(e)
		}
	})
	report(t, "mix", minus(sumStats(es), before), time.Since(start), took)

	var stormCommits atomic.Uint64
	before, start = sumStats(es), time.Now()
	took = hammer(stormFor, func(e *pgkv.Engine, _ string, _ int) error {
		err := e.Update(func(tx kv.Tx) error {
			b := tx.Bucket(cHot)
			return put64(b, []byte("n"), u64(b.Get([]byte("n")))+1)
		})
		if err == nil {
			stormCommits.Add(1)
		}
		return err
	})
	report(t, "storm (one counter)", minus(sumStats(es), before), time.Since(start), took)

	for _, err := range errs {
		t.Errorf("Update = %v", err)
	}
	if created == 0 || settledRows == 0 || audited == 0 || stormCommits.Load() == 0 {
		t.Fatalf("committed: %d runs, %d settled rows, %d audited, %d storm increments; want some of each", created, settledRows, audited, stormCommits.Load())
	}

	if err := es[1].View(func(tx kv.Tx) error {
		for w, want := range runs {
			if got := u64(tx.Bucket(cCursors).Get(fmt.Appendf(nil, "w%02d", w))); got != want {
				t.Errorf("watch %d's cursor counted %d runs, %d committed (lost or doubled)", w, got, want)
			}
		}
		for g, want := range refreshes {
			if got := u64(tx.Bucket(cGrants).Get(fmt.Appendf(nil, "g%02d", g))); got != want {
				t.Errorf("grant %d counted %d refreshes, %d committed (lost or doubled)", g, got, want)
			}
		}
		var rows, nSettled, nDue uint64
		pendingIDs := map[string]bool{}
		if err := tx.Bucket(cOutbox).ForEach(func(k, v []byte) error {
			rows++
			if v[0] == settled {
				nSettled++
			} else {
				pendingIDs[string(k)] = true
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(cDue).ForEach(func(k, v []byte) error {
			nDue++
			if !pendingIDs[string(v)] {
				t.Errorf("due entry %x names %s, not a pending row", k, v)
			}
			return nil
		}); err != nil {
			return err
		}
		if rows != created || nSettled != settledRows || nDue != uint64(len(pendingIDs)) {
			t.Errorf("outbox: %d rows (%d runs committed), %d settled (%d settled by committed settles), %d due entries for %d pending rows",
				rows, created, nSettled, settledRows, nDue, len(pendingIDs))
		}
		var seq uint64
		if err := tx.Bucket(cAudit).ForEach(func(k, v []byte) error {
			seq++
			if u64(k) != seq {
				return fmt.Errorf("audit event %d is numbered %d: a gap or a disorder", seq, u64(k))
			}
			return nil
		}); err != nil {
			return err
		}
		if s := tx.Bucket(cAudit).(kv.Sequencer).Sequence(); seq != audited || s != audited {
			t.Errorf("audit trail: %d events, sequence %d; %d audited commits", seq, s, audited)
		}
		if got := u64(tx.Bucket(cHot).Get([]byte("n"))); got != stormCommits.Load() {
			t.Errorf("the storm's counter = %d, %d increments committed", got, stormCommits.Load())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestEscalation: an Update that keeps losing to other daemons' commits
// runs, after pgkv.EscalateAfter failed attempts, holding the gate alone:
// each of its first attempts reads a counter, lets another engine's
// Update increment it (which commits at once, so the attempt's write
// fails: 40001); in the escalated attempt that other Update waits for
// the gate until the escalated one committed, while a View of the other
// engine is not held up. Every increment is kept.
func TestEscalation(t *testing.T) {
	es := openEngines(t, 2)
	key := []byte("n")
	incr := func(tx kv.Tx) error {
		b := tx.Bucket(cHot)
		return put64(b, key, u64(b.Get(key))+1)
	}
	attempt := 0
	// others are the other engine's Updates begun during the attempts;
	// waiting, those still to be received.
	var others, waiting []chan error
	before := es[0].Stats()
	err := es[0].Update(func(tx kv.Tx) error {
		attempt++
		b := tx.Bucket(cHot)
		n := u64(b.Get(key)) // the snapshot is taken here
		other := make(chan error, 1)
		others = append(others, other)
		go func() { other <- es[1].Update(incr) }()
		if attempt <= pgkv.EscalateAfter {
			// (received here: it cannot wait for this attempt, which
			// holds the gate shared)
			select {
			case err := <-other:
				if err != nil {
					return fmt.Errorf("the other engine's Update during attempt %d = %w", attempt, err)
				}
			case <-time.After(time.Minute):
				return fmt.Errorf("attempt %d (optimistic): the other engine's Update still waits after a minute", attempt)
			}
		} else {
			select {
			case err := <-other:
				return fmt.Errorf("attempt %d (escalated): the other engine's Update ended (%v) while the escalated one runs, want it held at the gate", attempt, err)
			case <-time.After(300 * time.Millisecond):
				waiting = append(waiting, other)
			}
			if err := es[1].View(func(tx kv.Tx) error {
				if tx.Bucket(cHot) == nil {
					return errors.New("no bucket")
				}
				return nil
			}); err != nil {
				return fmt.Errorf("View during the escalated attempt = %w", err)
			}
		}
		return put64(b, key, n+1)
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	if attempt != pgkv.EscalateAfter+1 {
		t.Errorf("Update ran fn %d times, want %d (escalated after %d failures)", attempt, pgkv.EscalateAfter+1, pgkv.EscalateAfter)
	}
	for i, o := range waiting {
		select {
		case err := <-o:
			if err != nil {
				t.Errorf("the other engine's Update #%d = %v", i+1, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the other engine's Update #%d still waits a minute after the escalated one committed", i+1)
		}
	}
	s := es[0].Stats()
	if d := minus(s, before); d.Updates != 1 || d.Attempts != uint64(attempt) || d.Retries != uint64(attempt-1) || d.Escalated != 1 || d.GaveUp != 0 {
		t.Errorf("Stats after the escalated Update = %+v, want 1 update, %d attempts, %d retries, 1 escalated", d, attempt, attempt-1)
	}
	if err := es[0].View(func(tx kv.Tx) error {
		if got, want := u64(tx.Bucket(cHot).Get(key)), uint64(len(others)+1); got != want {
			t.Errorf("counter = %d after %d increments, want %d (none lost)", got, want, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
