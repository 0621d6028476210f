package vault

import (
	"errors"
	"sync/atomic"
)

// WatchRules decide what a valid watch is. The vault does not know the
// rules (they belong to the scheduler, the source and the notifier; see
// worker.Rules, which composes them); it applies the ones it is given in
// every method that creates or changes a watch or a link carrying one, so
// no door can skip them.
type WatchRules interface {
	// CheckWatch normalises spec in place (trimmed, # dropped, duplicates
	// removed, NFC) and returns nil, or an error naming the field that is
	// wrong and why, for a watch at the named provider. It must be safe
	// for concurrent use and must not panic on any input.
	CheckWatch(provider string, spec *WatchSpec) error
}

// errNoRules is returned by watch-changing methods of a DB opened without
// rules: a wiring mistake, never a user's.
var errNoRules = errors.New("vault: no watch rules set (Options.Rules)")

type rulesBox struct{ r WatchRules }

// rules holds the DB's WatchRules; SetRules swaps them atomically.
type rules struct{ p atomic.Pointer[rulesBox] }

func (r *rules) load() WatchRules {
	if b := r.p.Load(); b != nil {
		return b.r
	}
	return nil
}

// SetRules replaces the watch rules (a configuration reload). Watches
// already stored are not re-checked; CheckWatch and the methods that
// create or change watches use the new rules from the next call.
func (db *DB) SetRules(r WatchRules) { db.rules.p.Store(&rulesBox{r}) }

// CheckWatch applies the DB's rules to spec (normalising it in place),
// without storing anything. Errors are *InvalidError naming the watch.
func (db *DB) CheckWatch(provider string, spec *WatchSpec) error {
	r := db.rules.load()
	if r == nil {
		return errNoRules
	}
	if err := r.CheckWatch(provider, spec); err != nil {
		return &InvalidError{Object: "watch", Err: err}
	}
	return nil
}
