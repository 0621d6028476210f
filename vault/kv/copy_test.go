package kv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// pair is one key/value of one bucket, as a test reads it.
type pair struct{ bucket, key, value string }

// store is a whole store read pair by pair, with each bucket's sequence,
// independently of Verify.
type store struct {
	pairs []pair
	seqs  map[string]uint64
}

func dump(t *testing.T, e kv.Engine) store {
	t.Helper()
	var s store
	err := e.View(func(tx kv.Tx) error {
		s = store{seqs: map[string]uint64{}}
		names, err := tx.(kv.BucketLister).Buckets()
		if err != nil {
			return err
		}
		for _, n := range names {
			b := tx.Bucket(n)
			s.seqs[string(n)] = b.(kv.Sequencer).Sequence()
			if err := b.ForEach(func(k, v []byte) error {
				s.pairs = append(s.pairs, pair{string(n), string(k), string(v)})
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return s
}

// secretValue is in every value of the fill: no message may show it.
const secretValue = "SEALED-SENTINEL"

// fill writes buckets that cover what a copy must carry: binary keys in
// bytewise order, empty and large values, more pairs than one page of
// pgkv's cursor, sequences (one on a bucket with no pair left), and an
// empty bucket.
func fill(t *testing.T, e kv.Engine) {
	t.Helper()
	err := e.Update(func(tx kv.Tx) error {
		audit, err := tx.CreateBucketIfNotExists([]byte("audit"))
		if err != nil {
			return err
		}
		for i := range 300 {
			seq, err := audit.NextSequence()
			if err != nil {
				return err
			}
			if i%7 == 3 {
				continue // pruned: the sequence runs ahead of the pairs
			}
			if err := audit.Put(binary.BigEndian.AppendUint64(nil, seq), fmt.Appendf(nil, `{"seq":%d,"s":%q}`, seq, secretValue)); err != nil {
				return err
			}
		}
		bin, err := tx.CreateBucketIfNotExists([]byte{0xff, 0x00, 'b'})
		if err != nil {
			return err
		}
		for _, k := range [][]byte{{0x00}, {0x00, 0x00}, {0x01}, {0x7f, 0xff}, {0x80}, {0xff}, {0xff, 0xff, 0xff}, []byte("a/b"), []byte("é")} {
			if err := bin.Put(k, append([]byte(secretValue), k...)); err != nil {
				return err
			}
		}
		if err := bin.Put([]byte("empty"), []byte{}); err != nil {
			return err
		}
		if err := bin.Put([]byte("large"), bytes.Repeat([]byte(secretValue), 40000)); err != nil {
			return err
		}
		gone, err := tx.CreateBucketIfNotExists([]byte("sequence only"))
		if err != nil {
			return err
		}
		for range 5 {
			if _, err := gone.NextSequence(); err != nil {
				return err
			}
		}
		_, err = tx.CreateBucketIfNotExists([]byte("empty"))
		return err
	})
	if err != nil {
		t.Fatalf("fill: %v", err)
	}
}

// opener opens a new empty store of one engine.
type opener struct {
	name string
	open func(t *testing.T) kv.Engine
}

func engines(t *testing.T) []opener {
	c := pgtest.Start(t)
	return []opener{
		{"bbolt", func(t *testing.T) kv.Engine {
			e, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), boltkv.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		}},
		{"postgres", func(t *testing.T) kv.Engine {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(c.CreateDB(t))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		}},
	}
}

// TestCopy: every pair and every sequence reaches the target, from each
// engine into each, and Verify finds the copy equal; a copy goes on
// numbering where its source stopped; and the refusals: a target that
// holds a bucket, a nested bucket, a sequence the target cannot hold, a
// store copied onto itself, an engine that cannot list its buckets. A
// refused or failed copy leaves the target as it was.
func TestCopy(t *testing.T) {
	es := engines(t)
	for _, from := range es {
		for _, to := range es {
			t.Run(from.name+" to "+to.name, func(t *testing.T) {
				src, dst := from.open(t), to.open(t)
				fill(t, src)
				want := dump(t, src)
				got, err := kv.Copy(dst, src)
				if err != nil {
					t.Fatalf("Copy() = %v", err)
				}
				names := []string{}
				for _, c := range got {
					names = append(names, fmt.Sprintf("%q:%d:%d", c.Name, c.Pairs, c.Sequence))
				}
				if s := strings.Join(names, " "); s != `"audit":257:300 "empty":0:0 "sequence only":0:5 "\xff\x00b":11:0` {
					t.Errorf("Copy() counted %s", s)
				}
				copied := dump(t, dst)
				if fmt.Sprint(copied.pairs) != fmt.Sprint(want.pairs) || fmt.Sprint(copied.seqs) != fmt.Sprint(want.seqs) {
					t.Errorf("the copy holds\n%v %v\nwant\n%v %v", len(copied.pairs), copied.seqs, len(want.pairs), want.seqs)
				}
				if v, err := kv.Verify(dst, src); err != nil || fmt.Sprint(v) != fmt.Sprint(got) {
					t.Errorf("Verify() = %v, %v; want %v", v, err, got)
				}
				census, err := kv.Census(dst)
				if err != nil || fmt.Sprint(census) != fmt.Sprint(got) {
					t.Errorf("Census(copy) = %v, %v; want %v", census, err, got)
				}
				// The copy numbers on from the source's sequence.
				if err := dst.Update(func(tx kv.Tx) error {
					n, err := tx.Bucket([]byte("audit")).NextSequence()
					if n != 301 {
						return fmt.Errorf("NextSequence() = %d, %v; want 301", n, err)
					}
					return err
				}); err != nil {
					t.Error(err)
				}
				// A second copy into the now full target is refused,
				// naming what it holds, and changes nothing.
				before := dump(t, dst)
				_, err = kv.Copy(dst, src)
				var ne *kv.NotEmptyError
				if !errors.Is(err, kv.ErrNotEmpty) || !errors.As(err, &ne) || len(ne.Found) != 4 ||
					!strings.Contains(err.Error(), "holds 4 buckets (audit: 257 records, empty: 0 records") {
					t.Errorf("Copy() into a full target = %v, want ErrNotEmpty naming its 4 buckets", err)
				}
				if after := dump(t, dst); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Error("a refused copy changed the target")
				}
			})
		}
	}

	for _, e := range es {
		t.Run("refusals on "+e.name, func(t *testing.T) {
			src := e.open(t)
			fill(t, src)
			// One empty bucket makes a target not empty.
			dst := e.open(t)
			if err := dst.Update(func(tx kv.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("x")); return err }); err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Copy(dst, src); !errors.Is(err, kv.ErrNotEmpty) || !strings.Contains(err.Error(), "holds 1 bucket (x: 0 records)") {
				t.Errorf("Copy() into a store with an empty bucket = %v, want ErrNotEmpty", err)
			}
			if _, err := kv.Copy(src, src); err == nil || !strings.Contains(err.Error(), "the same store") {
				t.Errorf("Copy(src, src) = %v, want a refusal", err)
			}
			if _, err := kv.Verify(src, src); err == nil || !strings.Contains(err.Error(), "the same store") {
				t.Errorf("Verify(src, src) = %v, want a refusal", err)
			}
			// Without BucketLister there is nothing to copy safely.
			if _, err := kv.Copy(e.open(t), unlisted{src}); err == nil || !strings.Contains(err.Error(), "cannot list its buckets") {
				t.Errorf("Copy() from an engine that cannot list its buckets = %v", err)
			}
		})
	}

	t.Run("differences", func(t *testing.T) {
		for _, from := range es {
			for _, to := range es {
				t.Run(from.name+" to "+to.name, func(t *testing.T) {
					src, dst := from.open(t), to.open(t)
					fill(t, src)
					if _, err := kv.Copy(dst, src); err != nil {
						t.Fatal(err)
					}
					// One of each difference, on the copy's side and the
					// source's.
					if err := dst.Update(func(tx kv.Tx) error {
						b := tx.Bucket([]byte{0xff, 0x00, 'b'})
						if err := b.Put([]byte{0x01}, []byte(secretValue+"changed")); err != nil {
							return err
						}
						if err := b.Delete([]byte("empty")); err != nil {
							return err
						}
						if err := b.Put([]byte("zz added"), []byte(secretValue)); err != nil {
							return err
						}
						if _, err := tx.CreateBucketIfNotExists([]byte("only copy")); err != nil {
							return err
						}
						_, err := tx.Bucket([]byte("sequence only")).NextSequence()
						return err
					}); err != nil {
						t.Fatal(err)
					}
					if err := src.Update(func(tx kv.Tx) error { return tx.DeleteBucket([]byte("empty")) }); err != nil {
						t.Fatal(err)
					}
					_, err := kv.Verify(dst, src)
					var me *kv.MismatchError
					if !errors.As(err, &me) || !errors.Is(err, kv.ErrMismatch) {
						t.Fatalf("Verify() = %v, want a *MismatchError", err)
					}
					want := []string{
						`bucket "empty": only in the copy`,
						`bucket "only copy": only in the copy`,
						`bucket "sequence only": sequence 5 in the source, 6 in the copy`,
						`bucket "\xff\x00b", key "\x01": the values differ (16 bytes in the source, 22 in the copy)`,
						`bucket "\xff\x00b", key "empty": only in the source`,
						`bucket "\xff\x00b", key "zz added": only in the copy`,
					}
					var got []string
					for _, d := range me.Found {
						got = append(got, d.String())
					}
					if me.Total != len(want) || strings.Join(got, "\n") != strings.Join(want, "\n") {
						t.Errorf("Verify() found %d:\n%s\nwant\n%s", me.Total, strings.Join(got, "\n"), strings.Join(want, "\n"))
					}
					if strings.Contains(err.Error(), secretValue) {
						t.Errorf("Verify()'s error shows a value: %v", err)
					}
				})
			}
		}
	})

	t.Run("many differences are cut", func(t *testing.T) {
		src, dst := es[0].open(t), es[1].open(t)
		fill(t, src)
		if err := dst.Update(func(tx kv.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("audit")); return err }); err != nil {
			t.Fatal(err)
		}
		_, err := kv.Verify(dst, src)
		var me *kv.MismatchError
		if !errors.As(err, &me) || me.Total != 257+3+1 || len(me.Found) != 20 || !strings.Contains(err.Error(), "... and 241 more") {
			t.Errorf("Verify() of an almost empty copy = %v", err)
		}
	})

	t.Run("nested bucket", func(t *testing.T) {
		src := es[0].open(t).(*boltkv.Engine)
		fill(t, src)
		// A bbolt file edited by hand: a bucket inside a bucket.
		if err := src.Bolt().Update(func(tx *bolt.Tx) error {
			_, err := tx.Bucket([]byte("audit")).CreateBucket([]byte("inner"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, to := range es {
			dst := to.open(t)
			if _, err := kv.Copy(dst, src); err == nil || !strings.Contains(err.Error(), `bucket "audit", key "inner" is a nested bucket`) {
				t.Errorf("Copy() of a nested bucket to %s = %v", to.name, err)
			}
			if c, err := kv.Census(dst); err != nil || len(c) != 0 {
				t.Errorf("%s after a failed copy = %v, %v; want empty", to.name, c, err)
			}
		}
	})

	t.Run("sequence beyond a bigint", func(t *testing.T) {
		src := es[0].open(t).(*boltkv.Engine)
		fill(t, src)
		if err := src.Update(func(tx kv.Tx) error {
			return tx.Bucket([]byte("sequence only")).(kv.Sequencer).SetSequence(math.MaxInt64 + 1)
		}); err != nil {
			t.Fatal(err)
		}
		dst := es[1].open(t)
		if _, err := kv.Copy(dst, src); err == nil || !strings.Contains(err.Error(), `bucket "sequence only": set its sequence: pgkv: sequence 9223372036854775808`) {
			t.Errorf("Copy() of a sequence above 2^63-1 to postgres = %v", err)
		}
		if c, err := kv.Census(dst); err != nil || len(c) != 0 {
			t.Errorf("postgres after a failed copy = %v, %v; want empty (one transaction)", c, err)
		}
	})
}

// unlisted hides BucketLister: an engine kv cannot enumerate.
type unlisted struct{ kv.Engine }

type unlistedTx struct{ kv.Tx }

func (u unlisted) View(fn func(kv.Tx) error) error {
	return u.Engine.View(func(tx kv.Tx) error { return fn(unlistedTx{tx}) })
}
