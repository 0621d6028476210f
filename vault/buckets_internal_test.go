package vault

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
)

// TestRequiredBucketsMatchMigrations: a store taken from nothing to each
// schema version by the migrations themselves holds exactly the buckets
// requiredBuckets says that version requires, so Open's refusal of a
// store missing one (and schemaTx) follows the schema as it is written.
func TestRequiredBucketsMatchMigrations(t *testing.T) {
	if len(migrationBuckets) != len(migrations) {
		t.Fatalf("migrationBuckets lists %d migrations, there are %d", len(migrationBuckets), len(migrations))
	}
	for v := 0; v <= SchemaVersion; v++ {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			e, err := boltkv.Open(filepath.Join(t.TempDir(), "m.db"), boltkv.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			err = e.Update(func(tx kv.Tx) error {
				if _, err := tx.CreateBucketIfNotExists(bucketMeta); err != nil {
					return err
				}
				for i := range v {
					if err := migrations[i](tx); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			err = e.Bolt().View(func(tx *bolt.Tx) error {
				return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
					got = append(got, string(name))
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range requiredBuckets(v) {
				want = append(want, string(b))
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("migrations to schema %d make buckets %q, requiredBuckets(%d) = %q", v, got, v, want)
			}
			if err := e.View(func(tx kv.Tx) error {
				if m := missingBuckets(tx, v); m != nil {
					t.Errorf("missingBuckets(schema %d) = %q, want none", v, m)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
