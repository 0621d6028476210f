package vault_test

import (
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/storetest"
	"tagwatch/vault/vaulttest"
)

// bboltBackend is *vault.DB as the contract suite drives it: a real bbolt
// file in t.TempDir(), on a clock the suite moves, reopened on the same
// file and master key. vaulttest checks the file after each subtest.
type bboltBackend struct {
	*vault.DB
	clock  *vaulttest.Clock
	master *seal.MasterKey
}

func (b bboltBackend) Advance(d time.Duration) { b.clock.Advance(d) }

func (b bboltBackend) Reopen(t *testing.T) storetest.Backend {
	t.Helper()
	if err := b.DB.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	b.DB = vaulttest.Open(t, vaulttest.Path(b.Path()), vaulttest.Master(b.master), vaulttest.Now(b.clock.Now))
	return b
}

// TestStoreContract runs the storage contract suite (vault/storetest)
// against the bbolt backend.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		master, _ := vaulttest.NewMaster(t)
		clock := vaulttest.NewClock(vaulttest.T0)
		db := vaulttest.Open(t, vaulttest.Master(master), vaulttest.Now(clock.Now))
		return bboltBackend{DB: db, clock: clock, master: master}
	})
}
