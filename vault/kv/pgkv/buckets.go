package pgkv

import (
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault/kv"
)

// The optional interfaces kv.Copy, kv.Verify and kv.Census use: the
// buckets are the rows of kv_buckets, each with its sequence.
var (
	_ kv.BucketLister = (*tx)(nil)
	_ kv.Sequencer    = (*bucket)(nil)
)

// Buckets names every bucket, in bytea (bytewise) order
// (kv.BucketLister).
func (t *tx) Buckets() ([][]byte, error) {
	if t.err != nil {
		return nil, t.err
	}
	rows, err := t.tx.Query(t.ctx, "SELECT name FROM kv_buckets ORDER BY name")
	if err != nil {
		t.fail(err)
		return nil, t.err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.fail(err)
		return nil, t.err
	}
	return names, nil
}

// Sequence reads the bucket's sequence from kv_buckets (kv.Sequencer); 0
// after a failed statement (the transaction's error then says why).
func (b *bucket) Sequence() uint64 {
	if b.t.err != nil {
		return 0
	}
	var seq int64
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT seq FROM kv_buckets WHERE name = $1", b.name).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		b.t.fail(err)
		return 0
	}
	return uint64(seq)
}

// SetSequence sets the bucket's sequence in kv_buckets (kv.Sequencer).
// Errors: kv.ErrTxNotWritable; n above 2^63-1 (the column is a bigint);
// the transaction's.
func (b *bucket) SetSequence(n uint64) error {
	switch {
	case !b.t.writable:
		return kv.ErrTxNotWritable
	case b.t.err != nil:
		return b.t.err
	case n > math.MaxInt64:
		return fmt.Errorf("pgkv: sequence %d of bucket %q is above %d, the most a bigint holds", n, b.name, int64(math.MaxInt64))
	}
	if _, err := b.t.tx.Exec(b.t.ctx, "UPDATE kv_buckets SET seq = $2 WHERE name = $1", b.name, int64(n)); err != nil {
		b.t.fail(err)
		return b.t.err
	}
	b.t.writes++
	return nil
}
