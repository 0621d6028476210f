package kv

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotEmpty means a copy's target holds a bucket already (Copy writes
// only into an empty store); the error is a *NotEmptyError naming them.
var ErrNotEmpty = errors.New("kv: the target is not empty")

// ErrMismatch means Verify found the two stores different; the error is
// a *MismatchError listing how.
var ErrMismatch = errors.New("kv: the copy differs from the source")

// BucketCount is one bucket as Census, Copy and Verify count it.
type BucketCount struct {
	// Name is the bucket's name.
	Name string
	// Pairs is how many key/value pairs it holds.
	Pairs int
	// Sequence is its sequence (Sequencer; 0 when the engine shows
	// none).
	Sequence uint64
}

// NotEmptyError is Copy's refusal of a target that holds buckets.
type NotEmptyError struct {
	// Found are the target's buckets, in name order.
	Found []BucketCount
}

func (e *NotEmptyError) Error() string { return "kv: the target is not empty: it holds " + e.Holds() }

// Holds says what the target holds: "2 buckets (meta: 2 records, audit:
// 1 record)".
func (e *NotEmptyError) Holds() string {
	var b strings.Builder
	b.WriteString(plural(len(e.Found), "bucket", "buckets"))
	for i, c := range e.Found {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", c.Name, plural(c.Pairs, "record", "records"))
	}
	if len(e.Found) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

func (e *NotEmptyError) Is(target error) bool { return target == ErrNotEmpty }

// Difference is one way in which a copy differs from its source.
type Difference struct {
	// Bucket names the bucket; Key the pair's key, nil for a
	// difference of the whole bucket (missing, or its sequence).
	Bucket string
	Key    []byte
	// Problem says what differs. It never holds a value: values may be
	// sealed secrets, and are compared only.
	Problem string
}

func (d Difference) String() string {
	if d.Key == nil {
		return fmt.Sprintf("bucket %s: %s", showKey([]byte(d.Bucket)), d.Problem)
	}
	return fmt.Sprintf("bucket %s, key %s: %s", showKey([]byte(d.Bucket)), showKey(d.Key), d.Problem)
}

// MismatchError is what Verify found.
type MismatchError struct {
	// Found are the first differences (at most maxDifferences), in
	// bucket and key order; Total counts them all.
	Found []Difference
	Total int
}

// maxDifferences bounds the differences a MismatchError lists.
const maxDifferences = 20

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kv: the copy differs from the source in %s:", plural(e.Total, "place", "places"))
	for _, d := range e.Found {
		b.WriteString("\n\t")
		b.WriteString(d.String())
	}
	if e.Total > len(e.Found) {
		fmt.Fprintf(&b, "\n\t... and %d more", e.Total-len(e.Found))
	}
	return b.String()
}

func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Census counts every bucket of e (its pairs and its sequence), in one
// read transaction, in name order. Errors: the engine's Tx cannot list
// its buckets (BucketLister); the engine's own.
func Census(e Engine) ([]BucketCount, error) {
	var out []BucketCount
	err := e.View(func(tx Tx) error {
		var err error
		out, err = census(tx, "the store")
		return err
	})
	return out, err
}

// census counts tx's buckets; side names the store in errors.
func census(tx Tx, side string) ([]BucketCount, error) {
	names, err := bucketNames(tx, side)
	if err != nil {
		return nil, err
	}
	out := []BucketCount{}
	for _, name := range names {
		b := tx.Bucket(name)
		if b == nil {
			return nil, fmt.Errorf("kv: %s lists bucket %s but has none by that name", side, showKey(name))
		}
		n := 0
		if err := b.ForEach(func(_, _ []byte) error { n++; return nil }); err != nil {
			return nil, err
		}
		out = append(out, BucketCount{Name: string(name), Pairs: n, Sequence: sequence(b)})
	}
	return out, nil
}

// Copy copies every bucket of src into dst, which must hold no bucket:
// each pair's bytes as they are (nothing is decoded, so sealed values stay
// sealed) and each bucket's sequence (Sequencer). It reads src in one
// read transaction and writes dst in one read-write transaction inside
// it, so dst gets one state of src, whole or not at all; an engine that
// runs an Update again (pgkv, after a serialization failure) copies the
// same state again. It returns the buckets copied, in name order.
//
// Errors: *NotEmptyError (ErrNotEmpty) when dst holds a bucket, checked
// in the writing transaction; dst and src the same engine; an engine
// whose Tx cannot list its buckets (BucketLister); a bucket with a
// sequence when dst's buckets cannot set one (Sequencer); a nested bucket
// in src (a bbolt file edited by hand: a key whose value reads as nil),
// which kv cannot write; the engines' own.
func Copy(dst, src Engine) ([]BucketCount, error) {
	if dst == src {
		return nil, errors.New("kv: copy: the source and the target are the same store")
	}
	var out []BucketCount
	err := src.View(func(stx Tx) error {
		names, err := bucketNames(stx, "the source")
		if err != nil {
			return err
		}
		return dst.Update(func(dtx Tx) error {
			out = nil // a run again starts over
			found, err := census(dtx, "the target")
			if err != nil {
				return err
			}
			if len(found) > 0 {
				return &NotEmptyError{Found: found}
			}
			for _, name := range names {
				c, err := copyBucket(dtx, stx, name)
				if err != nil {
					return err
				}
				out = append(out, c)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// copyBucket copies bucket name of stx into a new bucket of dtx.
func copyBucket(dtx, stx Tx, name []byte) (BucketCount, error) {
	c := BucketCount{Name: string(name)}
	sb := stx.Bucket(name)
	if sb == nil {
		return c, fmt.Errorf("kv: the source lists bucket %s but has none by that name", showKey(name))
	}
	db, err := dtx.CreateBucketIfNotExists(name)
	if err != nil {
		return c, fmt.Errorf("kv: create bucket %s: %w", showKey(name), err)
	}
	// The source's slices stay valid until its transaction ends, which
	// is after the target's commit: Put may keep them (bbolt does).
	err = sb.ForEach(func(k, v []byte) error {
		if v == nil {
			return fmt.Errorf("kv: bucket %s, key %s is a nested bucket, which kv cannot copy", showKey(name), showKey(k))
		}
		c.Pairs++
		if err := db.Put(k, v); err != nil {
			return fmt.Errorf("kv: bucket %s, key %s: %w", showKey(name), showKey(k), err)
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	if c.Sequence = sequence(sb); c.Sequence != 0 {
		ds, ok := db.(Sequencer)
		if !ok {
			return c, fmt.Errorf("kv: bucket %s has sequence %d, and the target cannot set a bucket's sequence", showKey(name), c.Sequence)
		}
		if err := ds.SetSequence(c.Sequence); err != nil {
			return c, fmt.Errorf("kv: bucket %s: set its sequence: %w", showKey(name), err)
		}
	}
	return c, nil
}

// Verify compares the copy dst with its source src, re-reading both (one
// read transaction each, the whole comparison inside them): the same
// buckets, in each the same keys with the same values byte for byte, and
// the same sequence (where both engines show one; a sequence only one
// side shows counts as a difference unless it is 0). It returns src's
// buckets counted, or a *MismatchError (ErrMismatch) listing the first
// differences; values are never shown. Other errors: dst and src the same
// engine; an engine whose Tx cannot list its buckets; the engines' own.
func Verify(dst, src Engine) ([]BucketCount, error) {
	if dst == src {
		return nil, errors.New("kv: verify: the source and the copy are the same store")
	}
	var out []BucketCount
	var m *MismatchError
	err := src.View(func(stx Tx) error {
		return dst.View(func(dtx Tx) error {
			var err error
			out, m, err = compare(dtx, stx)
			return err
		})
	})
	switch {
	case err != nil:
		return nil, err
	case m.Total > 0:
		return nil, m
	}
	return out, nil
}

// compare walks both stores' buckets and keys in order, side by side.
func compare(dtx, stx Tx) ([]BucketCount, *MismatchError, error) {
	m := &MismatchError{}
	add := func(bucket, key []byte, format string, args ...any) {
		m.Total++
		if len(m.Found) < maxDifferences {
			m.Found = append(m.Found, Difference{Bucket: string(bucket), Key: key, Problem: fmt.Sprintf(format, args...)})
		}
	}
	snames, err := bucketNames(stx, "the source")
	if err != nil {
		return nil, nil, err
	}
	dnames, err := bucketNames(dtx, "the copy")
	if err != nil {
		return nil, nil, err
	}
	var out []BucketCount
	for i, j := 0, 0; i < len(snames) || j < len(dnames); {
		switch c := cmpKeys(snames, i, dnames, j); {
		case c < 0:
			add(snames[i], nil, "only in the source")
			i++
		case c > 0:
			add(dnames[j], nil, "only in the copy")
			j++
		default:
			name := snames[i]
			sb, db := stx.Bucket(name), dtx.Bucket(name)
			if sb == nil || db == nil {
				return nil, nil, fmt.Errorf("kv: bucket %s is listed but cannot be read", showKey(name))
			}
			n := comparePairs(name, db, sb, add)
			seq := sequence(sb)
			_, sOK := sb.(Sequencer)
			_, dOK := db.(Sequencer)
			switch dseq := sequence(db); {
			case sOK && dOK && seq != dseq:
				add(name, nil, "sequence %d in the source, %d in the copy", seq, dseq)
			case sOK != dOK && seq+dseq != 0:
				add(name, nil, "sequence %d, which the other side cannot show", max(seq, dseq))
			}
			out = append(out, BucketCount{Name: string(name), Pairs: n, Sequence: seq})
			i++
			j++
		}
	}
	return out, m, nil
}

// comparePairs walks one bucket of each side in key order and returns the
// source's pairs counted.
func comparePairs(name []byte, db, sb Bucket, add func(bucket, key []byte, format string, args ...any)) int {
	n := 0
	sc, dc := sb.Cursor(), db.Cursor()
	sk, sv := sc.First()
	dk, dv := dc.First()
	for sk != nil || dk != nil {
		c := 0
		switch {
		case sk == nil:
			c = 1
		case dk == nil:
			c = -1
		default:
			c = bytes.Compare(sk, dk)
		}
		switch {
		case c < 0:
			add(name, clone(sk), "only in the source")
			n++
			sk, sv = sc.Next()
		case c > 0:
			add(name, clone(dk), "only in the copy")
			dk, dv = dc.Next()
		default:
			switch {
			case sv == nil || dv == nil:
				add(name, clone(sk), "a nested bucket on one side at least")
			case !bytes.Equal(sv, dv):
				add(name, clone(sk), "the values differ (%d bytes in the source, %d in the copy)", len(sv), len(dv))
			}
			n++
			sk, sv = sc.Next()
			dk, dv = dc.Next()
		}
	}
	return n
}

// cmpKeys orders a[i] against b[j], an index past the end last.
func cmpKeys(a [][]byte, i int, b [][]byte, j int) int {
	switch {
	case i >= len(a):
		return 1
	case j >= len(b):
		return -1
	}
	return bytes.Compare(a[i], b[j])
}

// bucketNames lists tx's buckets through BucketLister.
func bucketNames(tx Tx, side string) ([][]byte, error) {
	l, ok := tx.(BucketLister)
	if !ok {
		return nil, fmt.Errorf("kv: %s cannot list its buckets (its engine's Tx is no kv.BucketLister)", side)
	}
	names, err := l.Buckets()
	if err != nil {
		return nil, fmt.Errorf("kv: list the buckets of %s: %w", side, err)
	}
	return names, nil
}

// sequence is b's sequence, 0 when b shows none.
func sequence(b Bucket) uint64 {
	if s, ok := b.(Sequencer); ok {
		return s.Sequence()
	}
	return 0
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// showKey prints a key for people: quoted, with bytes that are not
// printable escaped, cut after 64 bytes. Keys are ids and indexes, never
// secrets.
func showKey(k []byte) string {
	const most = 64
	if len(k) > most {
		return strconv.Quote(string(k[:most])) + "..."
	}
	return strconv.Quote(string(k))
}

// plural is n with its noun in the right number.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
