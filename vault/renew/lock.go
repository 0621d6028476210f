package renew

import (
	"context"
	"sync"
)

// Locker serialises refreshes of one grant. The local implementation is
// in-process; a clustered backend supplies a distributed one.
type Locker interface {
	// Lock blocks until the caller holds the lock for key or ctx ends.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// LocalLocker is a Locker for one process. Safe for concurrent use; its
// zero value is ready.
type LocalLocker struct {
	mu    sync.Mutex
	locks map[string]*localLock
}

type localLock struct {
	ch   chan struct{}
	refs int
}

var _ Locker = (*LocalLocker)(nil)

// Lock implements Locker.
func (l *LocalLocker) Lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*localLock{}
	}
	ll := l.locks[key]
	if ll == nil {
		ll = &localLock{ch: make(chan struct{}, 1)}
		l.locks[key] = ll
	}
	ll.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		ll.refs--
		if ll.refs == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
	select {
	case ll.ch <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-ll.ch
				release()
			})
		}, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
