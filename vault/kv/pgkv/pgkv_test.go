package pgkv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/kvtest"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
)

// TestContract: the PostgreSQL engine passes the engine contract that
// bbolt passes, each case on a fresh database of one real cluster.
func TestContract(t *testing.T) {
	c := pgtest.Start(t)
	kvtest.Run(t, func(t *testing.T) kv.Engine {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(c.CreateDB(t))})
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

// TestConcurrentDaemons: three engines on one database (three daemons)
// each read a counter and write it back plus one, many times at once:
// SERIALIZABLE with Update's retries loses no increment, which is what
// fences a read-then-write rule of the vault across daemons.
func TestConcurrentDaemons(t *testing.T) {
	c := pgtest.Start(t)
	db := c.CreateDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var engines []*pgkv.Engine
	for range 3 {
		e, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(db)})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		engines = append(engines, e)
	}
	if err := engines[0].Update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("c"))
		if err != nil {
			return err
		}
		return b.Put([]byte("n"), []byte{0, 0})
	}); err != nil {
		t.Fatal(err)
	}
	const each = 40
	var wg sync.WaitGroup
	errs := make(chan error, 3*each)
	for _, e := range engines {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each / 2 {
					errs <- e.Update(func(tx kv.Tx) error {
						b := tx.Bucket([]byte("c"))
						v := b.Get([]byte("n"))
						n := int(v[0])<<8 | int(v[1])
						n++
						return b.Put([]byte("n"), []byte{byte(n >> 8), byte(n)})
					})
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Update = %v", err)
		}
	}
	var n int
	if err := engines[2].View(func(tx kv.Tx) error {
		v := tx.Bucket([]byte("c")).Get([]byte("n"))
		n = int(v[0])<<8 | int(v[1])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 3*each {
		t.Errorf("counter = %d after %d increments by three engines, want %d (an increment was lost)", n, 3*each, 3*each)
	}
}

// TestSchemaFromTheFuture: a database whose schema a newer tagwatch wrote
// is refused at Open, naming both versions.
func TestSchemaFromTheFuture(t *testing.T) {
	c := pgtest.Start(t)
	db := c.CreateDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pool().Exec(ctx, "UPDATE kv_schema SET version = 99"); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := pgkv.Open(ctx, pgkv.Options{DSN: c.DSN(db)}); err == nil || !strings.Contains(err.Error(), "version 99, newer than this tagwatch's 3") {
		t.Errorf("Open(schema 99) = %v, want it refused naming the versions", err)
	}
}

// TestPasswordOnlyFromOptions: the engine's password is Options.Password
// alone: PGPASSWORD and a ~/.pgpass file, which pgx would read, are not
// tagwatch's configuration and are ignored.
func TestPasswordOnlyFromOptions(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte("*:*:*:*:from-pgpass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("PGPASSWORD", "from-environment")
	for _, want := range []string{"", "from-options"} {
		e, err := pgkv.Open(context.Background(), pgkv.Options{DSN: dsn, Password: want})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Pool().Config().ConnConfig.Password; got != want {
			t.Errorf("Open with Options.Password %q: the connection's password is %q", want, got)
		}
		e.Close()
	}
}
