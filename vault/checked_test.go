package vault

import (
	"errors"
	"testing"

	"tagwatch/vault/kv"
)

// checkAtCleanup runs db's consistency check when the test ends, before
// the cleanup that closes db (register it after that one): this
// package's own tests cannot import vault/vaulttest (it imports vault),
// so they get its check this way. A test that closed db is not checked.
func checkAtCleanup(t testing.TB, db *DB) {
	t.Cleanup(func() {
		if err := db.CheckConsistency(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("after %s: %v", t.Name(), err)
		}
	})
}
