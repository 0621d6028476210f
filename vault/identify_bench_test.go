package vault

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkIdentify: what Open's identification of the file costs next to
// bbolt's own check of the same file (a read-only Open and Tx.Check, the
// baseline), on bbolt files of 1, 16 and 64 MiB of 512-byte records laid out as a
// vault (meta/keyring, a watches bucket).
// Report the ratio identify/bbolt-check of each size.
func BenchmarkIdentify(b *testing.B) {
	for _, mib := range []int{1, 16, 64} {
		path := filepath.Join(b.TempDir(), "v.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		val := make([]byte, 512)
		n := mib << 20 / len(val)
		for i := 0; i < n; i += 10000 {
			if err := db.Update(func(tx *bolt.Tx) error {
				meta, err := tx.CreateBucketIfNotExists(bucketMeta)
				if err != nil {
					return err
				}
				if err := meta.Put(keyKeyring, []byte("{}")); err != nil {
					return err
				}
				bk, err := tx.CreateBucketIfNotExists(bucketWatches)
				if err != nil {
					return err
				}
				for j := i; j < min(i+10000, n); j++ {
					var k [8]byte
					binary.BigEndian.PutUint64(k[:], uint64(j))
					if err := bk.Put(k[:], val); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		db.Close()
		b.Run(fmt.Sprintf("identify/%dMiB", mib), func(b *testing.B) {
			for b.Loop() {
				if _, err := identify(path, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("bbolt-check/%dMiB", mib), func(b *testing.B) {
			for b.Loop() {
				db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				if err := db.View(func(tx *bolt.Tx) error {
					for err := range tx.Check() {
						return err
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
	}
}
