package boltkv

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault/kv"
)

// call is one Batch call waiting for its commit.
type call struct {
	fn func(kv.Tx) error
	// wake says, once each, that the caller leads the next commit (lead)
	// and that its call was answered; a buffer of one, as the caller
	// reads the first before the second can come.
	wake chan struct{}
	err  error
	// solo: fn failed (or panicked) in a batch; its caller runs it again
	// alone, as an Update, for its own error or panic.
	solo bool
	// lead: the caller commits the next batch itself (its call in it).
	lead bool
}

// errFnPanicked stands, inside a batch, for a closure that panicked: its
// caller runs it again alone, where the panic is its own.
var errFnPanicked = errors.New("boltkv: batched closure panicked")

// Batch runs fn in a read-write transaction shared with the other Batch
// calls waiting at the time, committed and fsynced once for all
// (kv.Engine). It is bbolt's DB.Batch without its timer: no call waits
// for others to arrive. A caller that finds no commit under way commits
// alone at once; the calls that arrive while a commit is under way wait
// for it to end, and then the first of them commits all of them in one
// transaction, in its own goroutine (so a memory fault reading the file
// is raised where its caller contains it, as with Update). A closure
// that fails or panics is taken out of the batch, the others run again
// without it, and its caller runs it again alone: so a closure may run
// more than once.
func (e *Engine) Batch(fn func(kv.Tx) error) error {
	c := &call{fn: fn, wake: make(chan struct{}, 1)}
	e.bmu.Lock()
	e.pending = append(e.pending, c)
	lead := !e.leading
	e.leading = true
	e.bmu.Unlock()
	if !lead {
		<-c.wake
		lead = c.lead
	}
	if lead {
		e.commitPending()
	}
	if c.solo {
		return e.Update(fn)
	}
	return c.err
}

// commitPending commits every pending call in one transaction (this
// caller's among them), answers them, and passes the lead to the first
// call that arrived meanwhile, if any.
func (e *Engine) commitPending() {
	e.bmu.Lock()
	calls := e.pending
	e.pending = nil
	e.bmu.Unlock()
	defer e.passLead()
	e.runBatch(calls)
}

// passLead hands the next commit to the first waiting call, or ends the
// leading.
func (e *Engine) passLead() {
	e.bmu.Lock()
	defer e.bmu.Unlock()
	if len(e.pending) == 0 {
		e.leading = false
		return
	}
	next := e.pending[0]
	next.lead = true
	next.wake <- struct{}{}
}

// runBatch commits calls in one transaction, taking out (solo) each
// closure that fails, until the rest commit or the commit fails.
func (e *Engine) runBatch(calls []*call) {
	defer func() {
		// A panic outside the closures (bbolt reading a damaged page while
		// committing) goes on in this caller; every other caller runs its
		// closure again alone, to meet it, or not, itself.
		if r := recover(); r != nil {
			for _, c := range calls {
				c.solo = true
				c.wake <- struct{}{}
			}
			panic(r)
		}
	}()
	for len(calls) > 0 {
		failed := -1
		err := e.db.Update(func(t *bolt.Tx) error {
			for i, c := range calls {
				if err := safely(c.fn, (*tx)(t)); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			c := calls[failed]
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			c.solo = true
			c.wake <- struct{}{}
			continue
		}
		if err == nil {
			e.commits.Add(1)
		}
		for _, c := range calls {
			c.err = mapErr(err)
			c.wake <- struct{}{}
		}
		calls = nil
	}
}

// safely runs fn, turning a panic into errFnPanicked.
func safely(fn func(kv.Tx) error, t kv.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errFnPanicked, r)
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	return nil
}
