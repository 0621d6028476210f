package vault

import (
	"fmt"
	"testing"
)

// BenchmarkReadPaths reads through the Tx the way the daemon's hot paths
// do, over 1000 users, grants and watches: point reads by id (Grant,
// UserGrant, Watch) and ordered scans (Watches, UserWatches). No fsync
// is involved, so it shows what the storage layer under Tx costs per
// call.
func BenchmarkReadPaths(b *testing.B) {
	db, _, _ := openNew(b)
	const n = 1000
	ids := make([]string, n)
	err := db.Update(func(tx *Tx) error {
		for i := range n {
			u := fmt.Sprintf("u%04d", i)
			if err := tx.PutUser(User{ID: u}); err != nil {
				return err
			}
			ids[i] = NewID()
			if err := tx.PutGrant(Grant{ID: ids[i], UserID: u, Provider: "x", State: GrantActive}); err != nil {
				return err
			}
			if err := tx.PutWatch(Watch{ID: ids[i], UserID: u, Provider: "x", State: WatchActive}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("point", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			err := db.View(func(tx *Tx) error {
				id := ids[i%n]
				if _, err := tx.Grant(id); err != nil {
					return err
				}
				if _, err := tx.UserGrant(fmt.Sprintf("u%04d", i%n), "x"); err != nil {
					return err
				}
				_, err := tx.Watch(id)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			err := db.View(func(tx *Tx) error {
				seen := 0
				if err := tx.Watches(func(Watch) error { seen++; return nil }); err != nil {
					return err
				}
				if err := tx.UserWatches("u0500", func(Watch) error { seen++; return nil }); err != nil {
					return err
				}
				if seen != n+1 {
					return fmt.Errorf("saw %d watches, want %d", seen, n+1)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
