package vault_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/vaulttest"
)

// TestWatchesAnnounced: on a shared store, every committed change of a
// watch (put, delete) reaches every daemon's subscriber on
// vault.WatchesChannel, once per transaction, ids in payloads small
// enough for NOTIFY; a transaction rolled back announces nothing.
func TestWatchesAnnounced(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	master, _ := vaulttest.NewMaster(t)
	open := func() *vault.DB {
		e, err := pgkv.Open(context.Background(), pgkv.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		db, err := vault.Open(vault.Options{Engine: e, Master: master, Create: true, Logger: vaulttest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	if !a.Shared() || !b.Shared() {
		t.Fatal("a vault on PostgreSQL is not Shared")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 100)
	ready := make(chan struct{})
	go b.Cluster().Subscribe(ctx, vault.WatchesChannel, func(p string) { got <- p }, nil)
	// Subscribe has no "listening" signal: announce until one arrives.
	go func() {
		for {
			select {
			case <-ready:
				return
			case <-time.After(50 * time.Millisecond):
				_ = a.Cluster().Publish(ctx, vault.WatchesChannel, "probe")
			}
		}
	}()
	for p := range got {
		if p == "probe" {
			close(ready)
			break
		}
	}
	drain := func() []string {
		var ids []string
		deadline := time.After(2 * time.Second)
		for {
			select {
			case p := <-got:
				if p != "probe" {
					ids = append(ids, vault.ChangedWatchIDs(p)...)
				}
			case <-deadline:
				return ids
			}
		}
	}
	drain()

	var want []string
	err := a.Update(func(tx *vault.Tx) error {
		want = want[:0]
		if err := tx.PutUser(vault.User{ID: "u1"}); err != nil {
			return err
		}
		for i := range 600 { // more than one payload's worth
			id := "w" + strings.Repeat("x", 20) + string(rune('a'+i%26)) + strings.Repeat("0", i%7) + strconv.Itoa(i)
			want = append(want, id)
			if err := tx.PutWatch(vault.Watch{ID: id, UserID: "u1", Provider: "x", State: vault.WatchPaused,
				WatchSpec: vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@every 1m", Targets: []string{"console:"}}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := drain()
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("announced %d ids, want the %d watches put", len(ids), len(want))
	}
	// A closure that fails announces nothing.
	_ = a.Update(func(tx *vault.Tx) error {
		if err := tx.PutWatch(vault.Watch{ID: "rolled-back", UserID: "u1", Provider: "x", State: vault.WatchPaused,
			WatchSpec: vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@every 1m", Targets: []string{"console:"}}}); err != nil {
			return err
		}
		return context.Canceled
	})
	if err := a.Update(func(tx *vault.Tx) error { return tx.DeleteWatch(want[0]) }); err != nil {
		t.Fatal(err)
	}
	if ids := drain(); !slices.Equal(ids, []string{want[0]}) {
		t.Fatalf("after a rolled-back put and a delete: announced %q, want only the deleted %q", ids, want[0])
	}
}
