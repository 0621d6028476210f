package kvtest

import (
	"errors"

	"tagwatch/vault/kv"
)

// RunTwice wraps e so that every Update and Batch runs its closure twice,
// as an engine that retries after a serialization failure does (pgkv):
// fn runs in a transaction that is then rolled back, and again in a new
// one, which is committed when fn returns nil. A closure that sets
// something outside the transaction without resetting it first (appends
// to a slice, counts, sets a flag in one branch) shows it: the caller
// gets what two runs left. An error or a panic of the first run is
// returned, or goes on, as is, with nothing kept (pgkv does not retry
// them). View runs fn once, as every engine does. The name, backups and
// checks of e are not passed on: the wrapper is not a file.
func RunTwice(e kv.Engine) kv.Engine { return &runTwice{e} }

type runTwice struct{ kv.Engine }

// errAgain rolls back the first run.
var errAgain = errors.New("kvtest: rolled back, to run again")

func (r *runTwice) Update(fn func(kv.Tx) error) error {
	err := r.Engine.Update(func(tx kv.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errAgain
	})
	if err != errAgain {
		return err
	}
	return r.Engine.Update(fn)
}

// Batch runs fn twice, as Update does: the first run in a transaction
// rolled back, the second in e's Batch.
func (r *runTwice) Batch(fn func(kv.Tx) error) error {
	err := r.Engine.Update(func(tx kv.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errAgain
	})
	if err != errAgain {
		return err
	}
	return r.Engine.Batch(fn)
}

// Name names the wrapper in messages (kv.Named).
func (r *runTwice) Name() string { return "an engine running every update twice" }
