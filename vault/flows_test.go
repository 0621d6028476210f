package vault_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
	"tagwatch/vault/webpage"
)

var _ webpage.FlowBackend = (*vault.DB)(nil)

// checkFlowState drives DB.PutFlow and DB.TakeFlow: the value comes back
// once; what the cluster holds is sealed (the value is not in it, and
// it opens under its own key only); bad keys and values are refused,
// naming what is wrong.
func checkFlowState(t *testing.T, db *vault.DB) {
	ctx := context.Background()
	secretPart := "verifier-" + vault.NewLinkToken()
	value := []byte(`{"code_verifier":"` + secretPart + `"}`)
	key := strings.Repeat("ab", 32)
	now := time.Now()
	if err := db.PutFlow(ctx, key, value, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.TakeFlow(ctx, key)
	if err != nil || !ok || !bytes.Equal(got, value) {
		t.Fatalf("TakeFlow = %q, %v, %v; want the value put", got, ok, err)
	}
	if got, ok, err := db.TakeFlow(ctx, key); err != nil || ok || got != nil {
		t.Errorf("second TakeFlow = %q, %v, %v; want none", got, ok, err)
	}

	// What the cluster holds: sealed, bound to its key.
	if err := db.PutFlow(ctx, key, value, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw, ok, err := db.Cluster().TakeFlow(ctx, key)
	if err != nil || !ok {
		t.Fatalf("the cluster's TakeFlow = %v, %v", ok, err)
	}
	if bytes.Contains(raw, []byte(secretPart)) || len(raw) != len(value)+seal.Overhead {
		t.Errorf("the cluster holds %d bytes, with the value in the clear %v; want a sealed envelope of %d",
			len(raw), bytes.Contains(raw, []byte(secretPart)), len(value)+seal.Overhead)
	}
	moved := strings.Repeat("cd", 32)
	if err := db.Cluster().PutFlow(ctx, moved, raw, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.TakeFlow(ctx, moved); !errors.Is(err, vault.ErrFlowDamaged) || !errors.Is(err, seal.ErrOpen) || ok || got != nil {
		t.Errorf("TakeFlow of a value moved to another key = %q, %v, %v; want ErrFlowDamaged (seal.ErrOpen)", got, ok, err)
	}
	if got, ok, err := db.TakeFlow(ctx, moved); err != nil || ok || got != nil {
		t.Errorf("TakeFlow after a damaged one = %q, %v, %v; want none: it is spent", got, ok, err)
	}

	// Expired: never given.
	if err := db.PutFlow(ctx, key, value, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.TakeFlow(ctx, key); err != nil || ok || got != nil {
		t.Errorf("TakeFlow of an expired state = %q, %v, %v; want none", got, ok, err)
	}

	for _, c := range []struct {
		key   string
		value []byte
		want  string
	}{
		{"", value, "1 to 128 characters, not 0"},
		{strings.Repeat("a", vault.MaxFlowKey+1), value, "not 129"},
		{"a b", value, `character ' ' at 1`},
		{"a\x00", value, `character '\x00' at 1`},
		{key, make([]byte, vault.MaxFlowValue+1), "65537 bytes is longer than 65536"},
	} {
		err := db.PutFlow(ctx, c.key, c.value, now.Add(time.Hour))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PutFlow(%q, %d bytes) = %v, want %q", c.key, len(c.value), err, c.want)
		}
		if len(c.value) <= vault.MaxFlowValue {
			if _, _, err := db.TakeFlow(ctx, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("TakeFlow(%q) = %v, want %q", c.key, err, c.want)
			}
		}
	}
}

// TestFlowState: flow state on bbolt (the process's own cluster).
func TestFlowState(t *testing.T) {
	checkFlowState(t, vaulttest.Open(t))
}

// TestFlowStatePostgres: flow state on PostgreSQL, shared by two
// daemons' vaults on one database: put on one, taken on the other,
// exactly once when both take at once; kv_flows never holds the value in
// the clear.
func TestFlowStatePostgres(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	open := func() (kv.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	}
	master, _ := vaulttest.NewMaster(t)
	a := vaulttest.Open(t, vaulttest.Engine(open), vaulttest.Master(master))
	b := vaulttest.Open(t, vaulttest.Engine(open), vaulttest.Master(master))
	if !a.Shared() || !b.Shared() {
		t.Fatal("vaults on PostgreSQL are not shared")
	}
	checkFlowState(t, a)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for round := range 50 {
		secretPart := "verifier-" + vault.NewLinkToken()
		key := "k" + vault.NewID()
		if err := a.PutFlow(ctx, key, []byte(secretPart), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			var n int
			var all []byte
			if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(string_agg(key::bytea || value, ''::bytea), ''::bytea) FROM kv_flows`).Scan(&n, &all); err != nil {
				t.Fatal(err)
			}
			if n != 1 || len(all) == 0 || bytes.Contains(all, []byte(secretPart)) {
				t.Errorf("kv_flows: %d rows, value in the clear %v; want 1 row, sealed", n, bytes.Contains(all, []byte(secretPart)))
			}
		}
		var got atomic.Int32
		var wg sync.WaitGroup
		for i := range 6 {
			db := []*vault.DB{a, b}[i%2]
			wg.Go(func() {
				v, ok, err := db.TakeFlow(ctx, key)
				if err != nil {
					t.Error(err)
				}
				if ok {
					if string(v) != secretPart {
						t.Errorf("TakeFlow = %q, want the value put", v)
					}
					got.Add(1)
				}
			})
		}
		wg.Wait()
		if n := got.Load(); n != 1 {
			t.Fatalf("round %d: %d of 6 concurrent takers on two daemons got the state, want exactly 1", round, n)
		}
	}
}
