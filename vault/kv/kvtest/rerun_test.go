package kvtest_test

import (
	"errors"
	"path/filepath"
	"testing"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/kv/kvtest"
)

// TestRunTwice: the wrapper runs an update's closure twice, keeps only
// the second run, and so shows a closure that keeps what a rolled-back
// run set outside the transaction; a closure that resets it first passes.
func TestRunTwice(t *testing.T) {
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := kvtest.RunTwice(b)
	defer e.Close()

	var bad, good []uint64
	runs := 0
	err = e.Update(func(tx kv.Tx) error {
		runs++
		good = nil
		bk, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		n, err := bk.NextSequence()
		bad = append(bad, n) // no reset: what the vault's closures must not do
		good = append(good, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 || len(bad) != 2 || len(good) != 1 || good[0] != 1 {
		t.Errorf("runs %d, without reset %v, with reset %v; want 2 runs, [1 1], [1]", runs, bad, good)
	}
	// Only the second run was committed: the sequence moved once.
	if err := e.View(func(tx kv.Tx) error {
		if v := tx.Bucket([]byte("b")); v == nil {
			return errors.New("bucket b missing")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Update(func(tx kv.Tx) error {
		n, err := tx.Bucket([]byte("b")).NextSequence()
		if err == nil && n != 2 {
			t.Errorf("sequence after one committed update = %d, want 2", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// An error of the first run is returned as is, with no second run.
	fail := errors.New("refused")
	runs = 0
	if err := e.Update(func(kv.Tx) error { runs++; return fail }); err != fail || runs != 1 {
		t.Errorf("Update of a failing closure = %v after %d runs, want it after 1", err, runs)
	}
	// View runs once.
	runs = 0
	if err := e.View(func(kv.Tx) error { runs++; return nil }); err != nil || runs != 1 {
		t.Errorf("View = %v after %d runs, want 1", err, runs)
	}
}
