package vault_test

import (
	"path/filepath"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/kv/kvtest"
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
	// engine, when set, opens the file through vault.Options.Engine (the
	// bbolt engine wrapped: kvtest.RunTwice), again at each reopen.
	engine func() (kv.Engine, error)
}

func (b bboltBackend) Advance(d time.Duration) { b.clock.Advance(d) }

// Peer: a bbolt file is one process's (its lock admits no second one).
func (bboltBackend) Peer(*testing.T) (storetest.Peer, bool) { return nil, false }

func (b bboltBackend) Reopen(t *testing.T) storetest.Backend {
	t.Helper()
	if err := b.DB.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	where := vaulttest.Path(b.Path())
	if b.engine != nil {
		where = vaulttest.Engine(b.engine)
	}
	b.DB = vaulttest.Open(t, where, vaulttest.Master(b.master), vaulttest.Now(b.clock.Now))
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

// TestStoreContractRunTwice runs the whole contract suite on bbolt with
// every Update closure run twice (kvtest.RunTwice: run, rolled back, run
// again and committed), as PostgreSQL's engine runs one again after a
// serialization failure: a closure of the vault that keeps what a
// rolled-back run set outside the transaction (a slice appended to, a
// counter, a flag) fails a case here.
func TestStoreContractRunTwice(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		master, _ := vaulttest.NewMaster(t)
		clock := vaulttest.NewClock(vaulttest.T0)
		path := filepath.Join(t.TempDir(), "tagwatch.db")
		open := func() (kv.Engine, error) {
			e, err := boltkv.Open(path, boltkv.Options{Timeout: time.Second})
			if err != nil {
				return nil, err
			}
			return kvtest.RunTwice(e), nil
		}
		db := vaulttest.Open(t, vaulttest.Engine(open), vaulttest.Master(master), vaulttest.Now(clock.Now))
		return bboltBackend{DB: db, clock: clock, master: master, engine: open}
	})
}
