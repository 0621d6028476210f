// Package kvtest is the contract of vault/kv as tests: every storage
// engine under the vault runs Run and passes it, so that the vault's
// domain code, written against bbolt's rules, cannot tell the engines
// apart. It checks what the vault relies on (byte order, Seek, deleting
// while iterating, sequences, rollback, read-only transactions, one
// snapshot per read transaction), nothing an engine may choose.
package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// Run runs the contract against engines from open, one new engine per
// subtest. open returns an empty engine (no buckets) for t; Run closes
// it, once, at the end of the subtest (and may close it earlier, to
// check a closed engine's answer).
func Run(t *testing.T, open func(t *testing.T) kv.Engine) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e kv.Engine)
	}{
		{"buckets", testBuckets},
		{"get put delete", testGetPutDelete},
		{"empty value", testEmptyValue},
		{"order", testOrder},
		{"seek", testSeek},
		{"prev and next at the ends", testEnds},
		{"delete while iterating", testDeleteWhileIterating},
		{"many keys", testManyKeys},
		{"next sequence", testNextSequence},
		{"rollback on error", testRollback},
		{"rollback on panic", testPanic},
		{"batch", testBatch},
		{"read-only transaction", testReadOnly},
		{"own writes visible", testOwnWrites},
		{"read snapshot", testSnapshot},
		{"closed engine", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &closeOnce{Engine: open(t)}
			t.Cleanup(func() {
				if err := e.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
			})
			tc.fn(t, e)
		})
	}
}

// closeOnce closes its engine on the first Close only: a subtest may
// close the engine itself before Run's cleanup does.
type closeOnce struct {
	kv.Engine
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Engine.Close() })
	return c.err
}

var bucketA, bucketB = []byte("a"), []byte("b")

// update runs fn in a read-write transaction and fails t on its error.
func update(t *testing.T, e kv.Engine, fn func(tx kv.Tx) error) {
	t.Helper()
	if err := e.Update(fn); err != nil {
		t.Fatalf("Update() = %v", err)
	}
}

// view runs fn in a read transaction and fails t on its error.
func view(t *testing.T, e kv.Engine, fn func(tx kv.Tx) error) {
	t.Helper()
	if err := e.View(fn); err != nil {
		t.Fatalf("View() = %v", err)
	}
}

// fill creates bucket name holding keys, each with the value "v"+key.
func fill(t *testing.T, e kv.Engine, name []byte, keys ...string) {
	t.Helper()
	update(t, e, func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Put([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// keys returns the bucket's keys in cursor order, copied.
func keys(b kv.Bucket) []string {
	var out []string
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		out = append(out, string(k))
	}
	return out
}

// contents returns the keys of bucket name in a new read transaction.
func contents(t *testing.T, e kv.Engine, name []byte) []string {
	t.Helper()
	var out []string
	view(t, e, func(tx kv.Tx) error {
		if b := tx.Bucket(name); b != nil {
			out = keys(b)
		}
		return nil
	})
	return out
}

func testBuckets(t *testing.T, e kv.Engine) {
	view(t, e, func(tx kv.Tx) error {
		if b := tx.Bucket(bucketA); b != nil {
			t.Errorf("Bucket(a) of an empty engine = %v, want nil", b)
		}
		return nil
	})
	update(t, e, func(tx kv.Tx) error {
		if !tx.Writable() {
			t.Error("Writable() in Update = false, want true")
		}
		b, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil || b == nil {
			t.Fatalf("CreateBucketIfNotExists(a) = %v, %v", b, err)
		}
		if err := b.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		again, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil || string(again.Get([]byte("k"))) != "v" {
			t.Errorf("CreateBucketIfNotExists(a) again = %v; want the same bucket, holding k", err)
		}
		if _, err := tx.CreateBucketIfNotExists(nil); !errors.Is(err, kv.ErrBucketNameRequired) {
			t.Errorf("CreateBucketIfNotExists(nil) = %v, want ErrBucketNameRequired", err)
		}
		if err := tx.DeleteBucket(bucketB); !errors.Is(err, kv.ErrBucketNotFound) {
			t.Errorf("DeleteBucket(b) of a missing bucket = %v, want ErrBucketNotFound", err)
		}
		_, err = tx.CreateBucketIfNotExists(bucketB)
		return err
	})
	view(t, e, func(tx kv.Tx) error {
		if tx.Writable() {
			t.Error("Writable() in View = true, want false")
		}
		if b := tx.Bucket(bucketA); b == nil || string(b.Get([]byte("k"))) != "v" {
			t.Error("bucket a after commit: missing or without k")
		}
		if tx.Bucket(bucketB) == nil {
			t.Error("bucket b after commit: missing")
		}
		return nil
	})
	update(t, e, func(tx kv.Tx) error {
		if err := tx.DeleteBucket(bucketA); err != nil {
			t.Fatalf("DeleteBucket(a) = %v", err)
		}
		if b := tx.Bucket(bucketA); b != nil {
			t.Error("Bucket(a) after DeleteBucket in the same transaction is not nil")
		}
		b, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil {
			return err
		}
		if got := keys(b); len(got) != 0 {
			t.Errorf("bucket a deleted and created again holds %q, want nothing", got)
		}
		return nil
	})
	if got := contents(t, e, bucketA); len(got) != 0 {
		t.Errorf("bucket a deleted and created again holds %q after commit, want nothing", got)
	}
}

func testGetPutDelete(t *testing.T, e kv.Engine) {
	val := []byte("value one")
	update(t, e, func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil {
			return err
		}
		if v := b.Get([]byte("k")); v != nil {
			t.Errorf("Get(k) of an empty bucket = %q, want nil", v)
		}
		if err := b.Put([]byte("k"), val); err != nil {
			return err
		}
		if err := b.Put([]byte("gone"), []byte("x")); err != nil {
			return err
		}
		if err := b.Put(nil, []byte("x")); !errors.Is(err, kv.ErrKeyRequired) {
			t.Errorf("Put(nil key) = %v, want ErrKeyRequired", err)
		}
		if err := b.Put([]byte{}, []byte("x")); !errors.Is(err, kv.ErrKeyRequired) {
			t.Errorf("Put(empty key) = %v, want ErrKeyRequired", err)
		}
		return nil
	})
	// The engine keeps its own copy once the transaction is over.
	copy(val, "XXXXX")
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		if got := b.Get([]byte("k")); string(got) != "value one" {
			t.Errorf("Get(k) = %q, want %q", got, "value one")
		}
		if got := b.Get([]byte("k\x00")); got != nil {
			t.Errorf("Get(k\\x00) = %q, want nil", got)
		}
		if got := b.Get([]byte("gone")); string(got) != "x" {
			t.Errorf("Get(gone) = %q, want x", got)
		}
		return nil
	})
	update(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		if err := b.Put([]byte("k"), []byte("value two")); err != nil {
			return err
		}
		if err := b.Delete([]byte("gone")); err != nil {
			return err
		}
		if err := b.Delete([]byte("never there")); err != nil {
			t.Errorf("Delete(absent key) = %v, want nil", err)
		}
		if got := b.Get([]byte("gone")); got != nil {
			t.Errorf("Get(gone) after Delete in the same transaction = %q, want nil", got)
		}
		return nil
	})
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		if got := b.Get([]byte("k")); string(got) != "value two" {
			t.Errorf("Get(k) after overwrite = %q, want %q", got, "value two")
		}
		if got := b.Get([]byte("gone")); got != nil {
			t.Errorf("Get(gone) after Delete = %q, want nil", got)
		}
		return nil
	})
}

// testEmptyValue: an empty value is stored, and its key is found by a
// cursor (Get may say nil, as bbolt's does in the writing transaction).
func testEmptyValue(t *testing.T, e kv.Engine) {
	check := func(tx kv.Tx, when string) {
		k, v := tx.Bucket(bucketA).Cursor().Seek([]byte("e"))
		if string(k) != "e" || len(v) != 0 {
			t.Errorf("%s: Seek(e) = %q, %q; want e with an empty value", when, k, v)
		}
		if v := tx.Bucket(bucketA).Get([]byte("e")); len(v) != 0 {
			t.Errorf("%s: Get(e) = %q, want nil or empty", when, v)
		}
	}
	update(t, e, func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("e"), nil); err != nil {
			return err
		}
		check(tx, "in the writing transaction")
		return nil
	})
	view(t, e, func(tx kv.Tx) error { check(tx, "after commit"); return nil })
}

// orderKeys are in bytewise order: a prefix before its extensions, 0x00
// first and 0xff last among the bytes that follow.
var orderKeys = []string{"\x00", "\x00\x00", "\x01", "a", "a\x00", "a\x00b", "ab", "b", "ba", "\x7f", "\x80", "\xff", "\xff\xff"}

func testOrder(t *testing.T, e kv.Engine) {
	shuffled := slices.Clone(orderKeys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	fill(t, e, bucketA, shuffled...)
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		if got := keys(b); !slices.Equal(got, orderKeys) {
			t.Errorf("First/Next order = %q, want %q", got, orderKeys)
		}
		var back []string
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if string(v) != "v"+string(k) {
				t.Errorf("Last/Prev at %q: value %q, want %q", k, v, "v"+string(k))
			}
			back = append(back, string(k))
		}
		slices.Reverse(back)
		if !slices.Equal(back, orderKeys) {
			t.Errorf("Last/Prev order (reversed) = %q, want %q", back, orderKeys)
		}
		var each []string
		err := b.ForEach(func(k, v []byte) error {
			if string(v) != "v"+string(k) {
				t.Errorf("ForEach at %q: value %q, want %q", k, v, "v"+string(k))
			}
			each = append(each, string(k))
			return nil
		})
		if err != nil || !slices.Equal(each, orderKeys) {
			t.Errorf("ForEach = %q, %v; want %q", each, err, orderKeys)
		}
		stop := errors.New("stop")
		n := 0
		if err := b.ForEach(func(k, v []byte) error { n++; return stop }); err != stop || n != 1 {
			t.Errorf("ForEach with fn failing at once = %v after %d calls, want its error as is after 1", err, n)
		}
		return nil
	})
}

func testSeek(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "b", "d", "d\x00", "f")
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		for _, tc := range []struct{ seek, want string }{
			{"", "b"}, {"a", "b"}, {"b", "b"}, {"b\x00", "d"}, {"c", "d"}, {"d", "d"},
			{"d\x00", "d\x00"}, {"d\x00\x00", "f"}, {"e", "f"}, {"f", "f"},
		} {
			k, v := b.Cursor().Seek([]byte(tc.seek))
			if string(k) != tc.want || string(v) != "v"+tc.want {
				t.Errorf("Seek(%q) = %q, %q; want %q, %q", tc.seek, k, v, tc.want, "v"+tc.want)
			}
		}
		for _, past := range []string{"f\x00", "g", "\xff"} {
			c := b.Cursor()
			if k, v := c.Seek([]byte(past)); k != nil || v != nil {
				t.Errorf("Seek(%q) past the end = %q, %q; want nil, nil", past, k, v)
			}
			if k, _ := c.Prev(); string(k) != "f" {
				t.Errorf("Prev() after Seek(%q) past the end = %q, want the last key f", past, k)
			}
		}
		// The prefix scan the vault does everywhere.
		var got []string
		c := b.Cursor()
		for k, _ := c.Seek([]byte("d")); k != nil && bytes.HasPrefix(k, []byte("d")); k, _ = c.Next() {
			got = append(got, string(k))
		}
		if want := []string{"d", "d\x00"}; !slices.Equal(got, want) {
			t.Errorf("prefix scan of d = %q, want %q", got, want)
		}
		return nil
	})
	update(t, e, func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketB)
		return err
	})
	view(t, e, func(tx kv.Tx) error {
		c := tx.Bucket(bucketB).Cursor()
		for name, k := range map[string][]byte{"First": first(c), "Last": last(c), "Seek": seek(c, "a")} {
			if k != nil {
				t.Errorf("%s() of an empty bucket = %q, want nil", name, k)
			}
		}
		return nil
	})
}

func first(c kv.Cursor) []byte          { k, _ := c.First(); return k }
func last(c kv.Cursor) []byte           { k, _ := c.Last(); return k }
func seek(c kv.Cursor, s string) []byte { k, _ := c.Seek([]byte(s)); return k }

func testEnds(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "a", "b", "c")
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		c := b.Cursor()
		steps := []struct {
			name string
			move func() ([]byte, []byte)
			want string // "" for nil
		}{
			{"Last", c.Last, "c"},
			{"Prev", c.Prev, "b"},
			{"Prev", c.Prev, "a"},
			{"Prev", c.Prev, ""},
			{"First", c.First, "a"},
			{"Next", c.Next, "b"},
			{"Next", c.Next, "c"},
			{"Next", c.Next, ""},
			{"Seek(b)", func() ([]byte, []byte) { return c.Seek([]byte("b")) }, "b"},
			{"Prev", c.Prev, "a"},
			{"Next", c.Next, "b"},
		}
		for i, s := range steps {
			k, v := s.move()
			if string(k) != s.want || (k == nil) != (s.want == "") || (k != nil && string(v) != "v"+s.want) {
				t.Errorf("step %d, %s() = %q, %q; want %q", i, s.name, k, v, s.want)
			}
		}
		return nil
	})
}

func testDeleteWhileIterating(t *testing.T, e kv.Engine) {
	var all []string
	for i := range 300 {
		all = append(all, fmt.Sprintf("k%04d", i))
	}
	fill(t, e, bucketA, all...)
	// Cursor.Delete, then Next: the key after the deleted one (every
	// other key goes, across pages).
	update(t, e, func(tx kv.Tx) error {
		c := tx.Bucket(bucketA).Cursor()
		i := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if string(k) != all[i] {
				t.Fatalf("delete while iterating: at %q, want %q (a key skipped or repeated)", k, all[i])
			}
			if i%2 == 0 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			i++
		}
		if i != len(all) {
			t.Errorf("delete while iterating visited %d keys, want %d", i, len(all))
		}
		return nil
	})
	var odd []string
	for i, k := range all {
		if i%2 == 1 {
			odd = append(odd, k)
		}
	}
	if got := contents(t, e, bucketA); !slices.Equal(got, odd) {
		t.Errorf("after deleting every other key: %d keys %q..., want the %d odd ones", len(got), got[:min(3, len(got))], len(odd))
	}
	// Delete, then Seek the prefix again (vault's pruneSeen, DeleteSeen):
	// the range goes, the keys around it stay.
	update(t, e, func(tx kv.Tx) error {
		c := tx.Bucket(bucketA).Cursor()
		prefix := []byte("k01")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	var want []string
	for _, k := range odd {
		if k[:3] != "k01" {
			want = append(want, k)
		}
	}
	if got := contents(t, e, bucketA); !slices.Equal(got, want) {
		t.Errorf("after deleting the range k01: %d keys, want %d", len(got), len(want))
	}
	// Bucket.Delete of keys collected by a cursor (vault's stale-index
	// deletes) in the same transaction.
	update(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		var stale [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if k[len(k)-1] == '1' {
				stale = append(stale, bytes.Clone(k))
			}
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	for _, k := range contents(t, e, bucketA) {
		if k[len(k)-1] == '1' {
			t.Errorf("key %q survived its Delete", k)
		}
	}
}

// testManyKeys: enough keys, and large enough values, to span many pages
// (bbolt) or batches (an engine that pages its cursors).
func testManyKeys(t *testing.T, e kv.Engine) {
	const n = 5000
	val := bytes.Repeat([]byte("x"), 300)
	perm := rand.Perm(n)
	for start := 0; start < n; start += 1000 {
		update(t, e, func(tx kv.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketA)
			if err != nil {
				return err
			}
			for _, i := range perm[start : start+1000] {
				if err := b.Put(fmt.Appendf(nil, "%08d", i), val); err != nil {
					return err
				}
			}
			return nil
		})
	}
	view(t, e, func(tx kv.Tx) error {
		b := tx.Bucket(bucketA)
		c := b.Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if want := fmt.Sprintf("%08d", i); string(k) != want || len(v) != len(val) {
				t.Fatalf("key %d = %q (%d bytes), want %q (%d bytes)", i, k, len(v), want, len(val))
			}
			i++
		}
		if i != n {
			t.Errorf("cursor saw %d keys, want %d", i, n)
		}
		i = n - 1
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if want := fmt.Sprintf("%08d", i); string(k) != want {
				t.Fatalf("backwards, key %d = %q, want %q", i, k, want)
			}
			i--
		}
		for range 200 {
			i := rand.IntN(n)
			k, _ := c.Seek(fmt.Appendf(nil, "%08d", i))
			if want := fmt.Sprintf("%08d", i); string(k) != want {
				t.Fatalf("Seek(%s) = %q", want, k)
			}
			k, _ = c.Next()
			if want := fmt.Sprintf("%08d", i+1); (i+1 < n && string(k) != want) || (i+1 == n && k != nil) {
				t.Fatalf("Next() after Seek(%08d) = %q, want %s", i, k, want)
			}
		}
		return nil
	})
}

func testNextSequence(t *testing.T, e kv.Engine) {
	seqs := func(b kv.Bucket, n int) []uint64 {
		var out []uint64
		for range n {
			s, err := b.NextSequence()
			if err != nil {
				t.Fatalf("NextSequence() = %v", err)
			}
			out = append(out, s)
		}
		return out
	}
	update(t, e, func(tx kv.Tx) error {
		a, err := tx.CreateBucketIfNotExists(bucketA)
		if err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketB)
		if err != nil {
			return err
		}
		if got := seqs(a, 3); !slices.Equal(got, []uint64{1, 2, 3}) {
			t.Errorf("NextSequence() of a new bucket, 3 times = %v, want [1 2 3]", got)
		}
		if got := seqs(b, 1); got[0] != 1 {
			t.Errorf("NextSequence() of another new bucket = %d, want 1 (each bucket has its own)", got[0])
		}
		return nil
	})
	rollback := errors.New("rollback")
	err := e.Update(func(tx kv.Tx) error {
		if got := seqs(tx.Bucket(bucketA), 2); !slices.Equal(got, []uint64{4, 5}) {
			t.Errorf("NextSequence() after commit = %v, want [4 5]", got)
		}
		return rollback
	})
	if err != rollback {
		t.Fatalf("Update() = %v, want fn's error", err)
	}
	update(t, e, func(tx kv.Tx) error {
		if got := seqs(tx.Bucket(bucketA), 1); got[0] != 4 {
			t.Errorf("NextSequence() after a rolled back transaction = %d, want 4 (its numbers roll back)", got[0])
		}
		return nil
	})
}

func testRollback(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "keep", "doomed")
	fail := errors.New("fn failed")
	err := e.Update(func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		if err := a.Put([]byte("new"), []byte("x")); err != nil {
			return err
		}
		if err := a.Put([]byte("keep"), []byte("changed")); err != nil {
			return err
		}
		if err := a.Delete([]byte("doomed")); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketB); err != nil {
			return err
		}
		// A closure inside the transaction fails; the error comes back
		// wrapped, as the vault's domain code passes it up.
		inner := func() error { return fail }
		if err := inner(); err != nil {
			return fmt.Errorf("step: %w", err)
		}
		return nil
	})
	if !errors.Is(err, fail) || err.Error() != "step: fn failed" {
		t.Fatalf("Update() = %v, want fn's error as fn returned it", err)
	}
	view(t, e, func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		if got := keys(a); !slices.Equal(got, []string{"doomed", "keep"}) {
			t.Errorf("after rollback bucket a holds %q, want [doomed keep]", got)
		}
		if v := a.Get([]byte("keep")); string(v) != "vkeep" {
			t.Errorf("after rollback keep = %q, want vkeep", v)
		}
		if tx.Bucket(bucketB) != nil {
			t.Error("after rollback bucket b exists")
		}
		return nil
	})
	// A rolled back DeleteBucket leaves the bucket.
	err = e.Update(func(tx kv.Tx) error {
		if err := tx.DeleteBucket(bucketA); err != nil {
			return err
		}
		return fail
	})
	if err != fail {
		t.Fatalf("Update() = %v, want fn's error", err)
	}
	if got := contents(t, e, bucketA); len(got) != 2 {
		t.Errorf("after a rolled back DeleteBucket bucket a holds %q, want its 2 keys", got)
	}
}

func testPanic(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "keep")
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recover() = %v, want fn's panic to go on", r)
			}
		}()
		_ = e.Update(func(tx kv.Tx) error {
			if err := tx.Bucket(bucketA).Put([]byte("new"), []byte("x")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if got := contents(t, e, bucketA); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after a panic bucket a holds %q, want [keep]", got)
	}
	// The engine works on: the panicking transaction released it.
	fill(t, e, bucketA, "after")
	if got := contents(t, e, bucketA); !slices.Equal(got, []string{"after", "keep"}) {
		t.Errorf("after the next Update bucket a holds %q, want [after keep]", got)
	}
}

func testReadOnly(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "k")
	view(t, e, func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		c := a.Cursor()
		c.First()
		_, seqErr := a.NextSequence()
		_, createErr := tx.CreateBucketIfNotExists(bucketB)
		for name, err := range map[string]error{
			"Put":                     a.Put([]byte("x"), []byte("y")),
			"Delete":                  a.Delete([]byte("k")),
			"Cursor.Delete":           c.Delete(),
			"NextSequence":            seqErr,
			"CreateBucketIfNotExists": createErr,
			"DeleteBucket":            tx.DeleteBucket(bucketA),
		} {
			if !errors.Is(err, kv.ErrTxNotWritable) {
				t.Errorf("%s in a read-only transaction = %v, want ErrTxNotWritable", name, err)
			}
		}
		return nil
	})
	if got := contents(t, e, bucketA); !slices.Equal(got, []string{"k"}) {
		t.Errorf("after refused writes bucket a holds %q, want [k]", got)
	}
	fail := errors.New("view failed")
	if err := e.View(func(kv.Tx) error { return fail }); err != fail {
		t.Errorf("View() = %v, want fn's error as is", err)
	}
}

func testOwnWrites(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "b", "d")
	update(t, e, func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		if err := a.Put([]byte("c"), []byte("vc")); err != nil {
			return err
		}
		if err := a.Delete([]byte("d")); err != nil {
			return err
		}
		if err := a.Put([]byte("b"), []byte("new")); err != nil {
			return err
		}
		if got := keys(a); !slices.Equal(got, []string{"b", "c"}) {
			t.Errorf("cursor in the writing transaction = %q, want [b c]", got)
		}
		if v := a.Get([]byte("b")); string(v) != "new" {
			t.Errorf("Get(b) in the writing transaction = %q, want new", v)
		}
		if k, _ := a.Cursor().Seek([]byte("c")); string(k) != "c" {
			t.Errorf("Seek(c) in the writing transaction = %q, want c", k)
		}
		return nil
	})
}

// testSnapshot: a read transaction sees one state, the last commit
// before it began, while a writer commits meanwhile.
//
// A bbolt writer that must grow the file waits for the readers to end
// (it remaps the file): the test first frees pages for the writer to
// reuse, and a reader that waits long for the commit ends anyway (the
// writer then commits after it, and the test proves less).
func testSnapshot(t *testing.T, e kv.Engine) {
	var filler []string
	for i := range 200 {
		filler = append(filler, fmt.Sprintf("f%03d", i))
	}
	fill(t, e, bucketA, filler...)
	update(t, e, func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		for _, k := range filler {
			if err := a.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return a.Put([]byte("k"), []byte("before"))
	})
	read, wrote, done := make(chan struct{}), make(chan error, 1), make(chan error, 1)
	go func() {
		done <- e.View(func(tx kv.Tx) error {
			a := tx.Bucket(bucketA)
			before := string(a.Get([]byte("k")))
			close(read)
			select {
			case <-wrote:
			case <-time.After(2 * time.Second):
				t.Log("the writer waited for the reader to end: the snapshot is not checked against a concurrent commit")
			}
			if after := string(a.Get([]byte("k"))); after != before {
				return fmt.Errorf("a read transaction saw k change from %q to %q", before, after)
			}
			if k, _ := a.Cursor().Seek([]byte("new")); k != nil {
				return fmt.Errorf("a read transaction saw key %q committed after it began", k)
			}
			return nil
		})
	}()
	<-read
	wrote <- e.Update(func(tx kv.Tx) error {
		a := tx.Bucket(bucketA)
		if err := a.Put([]byte("k"), []byte("changed")); err != nil {
			return err
		}
		return a.Put([]byte("new"), []byte("x"))
	})
	if err := <-done; err != nil {
		t.Error(err)
	}
	view(t, e, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketA).Get([]byte("k")); string(v) != "changed" {
			t.Errorf("a read transaction begun after the commit sees k = %q, want changed", v)
		}
		return nil
	})
}

func testClosed(t *testing.T, e kv.Engine) {
	if err := e.(*closeOnce).Engine.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	called := false
	if err := e.View(func(kv.Tx) error { called = true; return nil }); !errors.Is(err, kv.ErrClosed) || called {
		t.Errorf("View() of a closed engine = %v (fn called: %v), want ErrClosed", err, called)
	}
	if err := e.Update(func(kv.Tx) error { called = true; return nil }); !errors.Is(err, kv.ErrClosed) || called {
		t.Errorf("Update() of a closed engine = %v (fn called: %v), want ErrClosed", err, called)
	}
	if err := e.Batch(func(kv.Tx) error { called = true; return nil }); !errors.Is(err, kv.ErrClosed) || called {
		t.Errorf("Batch() of a closed engine = %v (fn called: %v), want ErrClosed", err, called)
	}
}

// testBatch: concurrent Batch calls each commit their own writes; one
// that fails or panics keeps nothing and gets its own error or panic,
// the others commit all the same; each closure reads its own writes and
// what the calls before it committed. Closures may run more than once
// (kv.Engine.Batch), so each sets its outputs from inside.
func testBatch(t *testing.T, e kv.Engine) {
	fill(t, e, bucketA, "base")
	fail := errors.New("fn failed")
	const n = 48
	errs := make([]error, n)
	panics := make([]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			k := []byte(fmt.Sprintf("k%02d", i))
			errs[i] = e.Batch(func(tx kv.Tx) error {
				a := tx.Bucket(bucketA)
				if err := a.Put(k, []byte("v")); err != nil {
					return err
				}
				if got := a.Get(k); string(got) != "v" {
					return fmt.Errorf("own write reads %q", got)
				}
				if a.Get([]byte("base")) == nil {
					return errors.New("the committed key base is not seen")
				}
				switch i % 16 {
				case 5:
					return fmt.Errorf("step: %w", fail)
				case 9:
					panic(fmt.Sprintf("boom %d", i))
				}
				return nil
			})
		})
	}
	wg.Wait()
	want := []string{"base"}
	for i := range n {
		switch i % 16 {
		case 5:
			if !errors.Is(errs[i], fail) || errs[i].Error() != "step: fn failed" || panics[i] != nil {
				t.Errorf("Batch() %d = %v (panic %v), want fn's error as fn returned it", i, errs[i], panics[i])
			}
		case 9:
			if want := fmt.Sprintf("boom %d", i); panics[i] != want {
				t.Errorf("Batch() %d panicked with %v, want fn's panic %q to go on", i, panics[i], want)
			}
		default:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("Batch() %d = %v (panic %v), want nil", i, errs[i], panics[i])
			}
			want = append(want, fmt.Sprintf("k%02d", i))
		}
	}
	slices.Sort(want)
	if got := contents(t, e, bucketA); !slices.Equal(got, want) {
		t.Errorf("after the batches bucket a holds %q, want %q", got, want)
	}
}
