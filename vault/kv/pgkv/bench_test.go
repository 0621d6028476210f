package pgkv_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

var (
	benchOnce    sync.Once
	benchCluster *pgtest.Cluster
)

// benchDSN returns a fresh database on one cluster for the whole
// benchmark run (a cluster per benchmark would dominate the figures).
func benchDSN(b *testing.B) string {
	benchOnce.Do(func() { benchCluster = pgtest.Start(b) })
	return benchCluster.DSN(benchCluster.CreateDB(b))
}

// BenchmarkFencedCommit compares one fenced read-modify-write of a
// record, the shape of the refresh protocol's commit, through the engine
// (Update: SERIALIZABLE, Get then Put) against the same work as bare
// statements in a loop (BEGIN; SELECT ... FOR UPDATE; UPDATE ... WHERE
// version = $v; COMMIT), both on the same database in the same process:
// the ratio is the engine's cost.
func BenchmarkFencedCommit(b *testing.B) {
	ctx := context.Background()
	dsn := benchDSN(b)
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.Update(func(tx kv.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("grants"))
		if err != nil {
			return err
		}
		return bk.Put([]byte("g1"), make([]byte, 8))
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("engine", func(b *testing.B) {
		for b.Loop() {
			if err := e.Update(func(tx kv.Tx) error {
				bk := tx.Bucket([]byte("grants"))
				v := bk.Get([]byte("g1"))
				n := binary.BigEndian.Uint64(v) + 1
				return bk.Put([]byte("g1"), binary.BigEndian.AppendUint64(nil, n))
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS bare (id text PRIMARY KEY, version bigint NOT NULL); INSERT INTO bare VALUES ('g1', 0) ON CONFLICT DO NOTHING"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				var v int64
				if err := tx.QueryRow(ctx, "SELECT version FROM bare WHERE id = 'g1' FOR UPDATE").Scan(&v); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "UPDATE bare SET version = $1 WHERE id = 'g1' AND version = $2", v+1, v)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
