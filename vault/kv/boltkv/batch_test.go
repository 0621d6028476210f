package boltkv

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// TestBatchGroupCommit: Batch calls that arrive while a commit is under
// way are committed together, in one transaction, by the first of them;
// a closure that fails there is taken out, the others run again and
// commit, and the failed one runs again alone for its caller's error.
func TestBatchGroupCommit(t *testing.T) {
	e, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	put := func(k string, runs *atomic.Int32, fail error) func(kv.Tx) error {
		return func(tx kv.Tx) error {
			runs.Add(1)
			b, err := tx.CreateBucketIfNotExists([]byte("a"))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), []byte("v")); err != nil {
				return err
			}
			return fail
		}
	}
	// A's closure holds the commit under way until B, C and D wait.
	release := make(chan struct{})
	var aRuns, bRuns, cRuns, dRuns atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Go(func() {
		errs[0] = e.Batch(func(tx kv.Tx) error {
			<-release
			return put("a", &aRuns, nil)(tx)
		})
	})
	waitPending := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			e.bmu.Lock()
			got, leading := len(e.pending), e.leading
			e.bmu.Unlock()
			if leading && got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pending calls = %d (leading %v), want %d", got, leading, n)
			}
		}
	}
	waitPending(0) // A leads, its call taken
	failC := errors.New("C fails")
	for i, c := range []struct {
		k    string
		runs *atomic.Int32
		fail error
	}{{"b", &bRuns, nil}, {"c", &cRuns, failC}, {"d", &dRuns, nil}} {
		wg.Go(func() { errs[i+1] = e.Batch(put(c.k, c.runs, c.fail)) })
		waitPending(i + 1) // in this order
	}
	close(release)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || errs[3] != nil || !errors.Is(errs[2], failC) {
		t.Fatalf("Batch() errors = %v, want nil, nil, C's, nil", errs)
	}
	// A alone, then B and D together (after a first try with C).
	if got := e.commits.Load(); got != 2 {
		t.Errorf("commits = %d, want 2 (A, then B and D in one)", got)
	}
	for name, c := range map[string]struct {
		runs *atomic.Int32
		want int32
	}{"A": {&aRuns, 1}, "B": {&bRuns, 2}, "C": {&cRuns, 2}, "D": {&dRuns, 1}} {
		if got := c.runs.Load(); got != c.want {
			t.Errorf("%s's closure ran %d times, want %d", name, got, c.want)
		}
	}
	err = e.View(func(tx kv.Tx) error {
		var got []string
		_ = tx.Bucket([]byte("a")).ForEach(func(k, _ []byte) error { got = append(got, string(k)); return nil })
		if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "d" {
			t.Errorf("keys = %q, want [a b d]", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.bmu.Lock()
	defer e.bmu.Unlock()
	if e.leading || len(e.pending) != 0 {
		t.Errorf("after the batches: leading %v, %d pending; want neither", e.leading, len(e.pending))
	}
}
