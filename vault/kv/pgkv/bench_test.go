package pgkv_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkClaim compares claims of work (a watch's run, an outbox
// row's delivery) through the engine (Engine.Claim) against the same
// statement (Claim's INSERT ... ON CONFLICT DO UPDATE ... WHERE <the
// rule> RETURNING) through the same pool in a bare loop: the ratio is
// the engine's cost. Operation i claims unit i mod 1000 at round
// i/1000+1 for one holder: the first 1000 insert the claims, the next
// 1000 take the second round of the same units (the holder's running
// claim, extended), and so on. "sequential" is one goroutine, "parallel"
// eight (b.SetParallelism(4) on 2 CPUs; the pool has 8 connections).
// claims/s is b.N over the elapsed time.
func BenchmarkClaim(b *testing.B) {
	ctx := context.Background()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: benchDSN(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const units = 1000
	lease := time.Minute
	claimers := []struct {
		name  string
		claim func(kind, id string, round int64) (bool, error)
	}{
		{"cluster", func(kind, id string, round int64) (bool, error) {
			return e.Claim(ctx, kv.Claim{Kind: kind, ID: id, Round: round, Holder: "d1", Lease: lease})
		}},
		{"bare", func(kind, id string, round int64) (bool, error) {
			var ok bool
			err := e.Pool().QueryRow(ctx, pgkv.ClaimSQL, kind, id, round, "d1", pgkv.Micros(lease)).Scan(&ok)
			return ok, err
		}},
	}
	var runs atomic.Int64 // a kind of its own for every run: no rows shared
	for _, c := range claimers {
		b.Run(c.name, func(b *testing.B) {
			// one claims operation op of the run's kind.
			one := func(kind string, op int64) error {
				ok, err := c.claim(kind, strconv.FormatInt(op%units, 10), op/units+1)
				if err == nil && !ok {
					err = fmt.Errorf("claim %d refused", op)
				}
				return err
			}
			b.Run("sequential", func(b *testing.B) {
				kind := fmt.Sprintf("%s-%d", c.name, runs.Add(1))
				var op int64
				for b.Loop() {
					if err := one(kind, op); err != nil {
						b.Fatal(err)
					}
					op++
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
			})
			b.Run("parallel", func(b *testing.B) {
				kind := fmt.Sprintf("%s-%d", c.name, runs.Add(1))
				var ops atomic.Int64
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := one(kind, ops.Add(1)-1); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
			})
		})
	}
}
