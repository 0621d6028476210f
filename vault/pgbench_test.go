package vault

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// benchGrants is how many grants the refresh benchmarks rotate: enough
// that parallel goroutines rarely pick the same one at once.
const benchGrants = 256

// BenchmarkRefreshCommitPostgres measures the refresh protocol's two
// fenced commits (BeginRefresh: the in-flight marker; CommitRefresh: the
// rotated tokens, sealed, compared with the ticket's fence) through
// *vault.DB on PostgreSQL, against the same two transactions written as
// bare statements through one pgx pool (SELECT ... FOR UPDATE, then
// UPDATE ... WHERE version = $v, for the marker and for the tokens of the
// same size), on the same database in the same process, sequential and
// parallel. The metric is refreshes/s (each is two commits); "vault"
// over "bare" is tagwatch's cost (SERIALIZABLE, sealing, records, audit).
func BenchmarkRefreshCommitPostgres(b *testing.B) {
	ctx := context.Background()
	c := pgtest.Start(b)
	dsn := c.DSN(c.CreateDB(b))
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn, MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	m, _, err := seal.NewMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	db, err := Open(Options{Engine: e, Master: m, Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Heartbeat(ctx, kv.Daemon{Host: "bench"}); err != nil { // BeginRefresh needs it on a shared store (ErrNoHeartbeat)
		b.Fatal(err)
	}
	ids := make([]string, benchGrants)
	for i := range ids {
		ids[i] = putGrant(b, db, fmt.Sprintf("u%d", i), strings.Repeat("r", 90), strings.Repeat("a", 90)).ID
	}
	refresh := func(id string, n int64) error {
		t, err := db.BeginRefresh(id, "bench")
		if err != nil {
			return err
		}
		tok := fmt.Sprintf("%090d", n)
		_, err = db.CommitRefresh(t, RefreshResult{Access: secret.NewAccessToken("a" + tok), Refresh: secret.NewRefreshToken("r" + tok),
			Expiry: time.Now().Add(2 * time.Hour)})
		return err
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE bare_grants (id text PRIMARY KEY, version bigint NOT NULL,
		in_flight timestamptz, refresh bytea NOT NULL, access bytea NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		if _, err := pool.Exec(ctx, "INSERT INTO bare_grants VALUES ($1, 0, NULL, $2, $2)", id, make([]byte, 160)); err != nil {
			b.Fatal(err)
		}
	}
	fenced := func(id string, set string, args ...any) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var v int64
			if err := tx.QueryRow(ctx, "SELECT version FROM bare_grants WHERE id = $1 FOR UPDATE", id).Scan(&v); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "UPDATE bare_grants SET version = version + 1, "+set+" WHERE id = $1 AND version = $2", append([]any{id, v}, args...)...)
			if err == nil && tag.RowsAffected() != 1 {
				err = fmt.Errorf("grant %s moved", id)
			}
			return err
		})
	}
	bare := func(id string, n int64) error {
		if err := fenced(id, "in_flight = now()"); err != nil {
			return err
		}
		tok := make([]byte, 160)
		tok[0] = byte(n)
		return fenced(id, "in_flight = NULL, refresh = $3, access = $3", tok)
	}

	var next atomic.Int64
	for _, bc := range []struct {
		name string
		fn   func(string, int64) error
	}{{"vault", refresh}, {"bare", bare}} {
		b.Run(bc.name+"/seq", func(b *testing.B) {
			for b.Loop() {
				n := next.Add(1)
				if err := bc.fn(ids[n%benchGrants], n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			// Each goroutine rotates grants of its own (at most 8
			// goroutines of 32 grants), as one daemon's renewals never
			// race themselves for one grant.
			b.SetParallelism(4)
			var slots atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				base := (slots.Add(1) - 1) % 8 * 32
				for pb.Next() {
					n := next.Add(1)
					if err := bc.fn(ids[base+n%32], n); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
		})
	}
}
