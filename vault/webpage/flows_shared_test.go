package webpage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// spyBackend is a FlowBackend in front of a kv.LocalCluster that keeps
// every key and value put, and fails Put or Take when told to (a lost
// connection).
type spyBackend struct {
	kv.Cluster
	mu       sync.Mutex
	puts     []string // "key=value"
	failPut  atomic.Bool
	failTake atomic.Bool
}

var errLost = errors.New("connection lost")

func (b *spyBackend) PutFlow(ctx context.Context, key string, value []byte, expires time.Time) error {
	if b.failPut.Load() {
		return errLost
	}
	b.mu.Lock()
	b.puts = append(b.puts, key+"="+string(value))
	b.mu.Unlock()
	return b.Cluster.PutFlow(ctx, key, value, expires)
}

func (b *spyBackend) TakeFlow(ctx context.Context, key string) ([]byte, bool, error) {
	if b.failTake.Load() {
		return nil, false, errLost
	}
	return b.Cluster.TakeFlow(ctx, key)
}

type sharedFlow struct {
	Verifier string `json:"verifier"`
	N        int    `json:"n"`
}

// TestFlowStoreShared: two stores on one backend, as two daemons on one
// database: a flow started on one is finished on the other, once; the
// binding holds across them; the backend never sees a state or a
// binding; a store's name keeps its flows from another store's.
func TestFlowStoreShared(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	be := &spyBackend{Cluster: kv.NewLocalCluster(nil)}
	a := NewFlowStore[sharedFlow](be, "consent", 100, 8)
	b := NewFlowStore[sharedFlow](be, "consent", 100, 8)
	other := NewFlowStore[sharedFlow](be, "account", 100, 8)
	state, binding := RandomString(32), RandomString(32)
	want := sharedFlow{Verifier: "verifier-" + RandomString(32), N: 7}
	if err := a.Add(ctx, state, binding, "link", want, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}

	if _, err := other.Take(ctx, state, binding, now); err != ErrNoFlow {
		t.Errorf("another store's Take = %v, want ErrNoFlow", err)
	}
	for _, wrong := range []string{"", RandomString(32)} {
		if _, err := b.Take(ctx, state, wrong, now); err != ErrFlowBinding {
			t.Errorf("Take on B with binding %q = %v, want ErrFlowBinding", wrong, err)
		}
		if _, err := b.Peek(ctx, state, wrong, now); err != ErrFlowBinding {
			t.Errorf("Peek on B with binding %q = %v, want ErrFlowBinding", wrong, err)
		}
	}
	if got, err := b.Peek(ctx, state, binding, now); err != nil || got != want {
		t.Fatalf("Peek on B = %+v, %v; want %+v", got, err, want)
	}
	if got, err := b.Take(ctx, state, binding, now); err != nil || got != want {
		t.Fatalf("Take on B = %+v, %v; want %+v", got, err, want)
	}
	for name, s := range map[string]*FlowStore[sharedFlow]{"A": a, "B": b} {
		if _, err := s.Take(ctx, state, binding, now); err != ErrNoFlow {
			t.Errorf("Take on %s after B took it = %v, want ErrNoFlow", name, err)
		}
		if _, err := s.Take(ctx, state, "another", now); err != ErrNoFlow {
			t.Errorf("Take on %s with another binding after B took it = %v, want ErrNoFlow (the state is spent)", name, err)
		}
	}
	// A counts the flow it started until it expires: B took it.
	if a.Len() != 1 || b.Len() != 0 {
		t.Errorf("Len A %d, B %d; want 1 (A started it; taken elsewhere) and 0", a.Len(), b.Len())
	}
	be.mu.Lock()
	puts := strings.Join(be.puts, "\n")
	be.mu.Unlock()
	if !strings.Contains(puts, want.Verifier) {
		t.Fatalf("the backend never got the flow: %s", puts)
	}
	if strings.Contains(puts, state) || strings.Contains(puts, binding) {
		t.Errorf("the backend saw the state or the binding:\n%s", puts)
	}
}

// TestFlowStoreSharedOnce: callbacks with one state at once on several
// stores of one backend: exactly one gets the flow, every time.
func TestFlowStoreSharedOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	be := kv.NewLocalCluster(nil)
	stores := make([]*FlowStore[sharedFlow], 4)
	for i := range stores {
		stores[i] = NewFlowStore[sharedFlow](be, "consent", 1000, 8)
	}
	for round := range 100 {
		state := fmt.Sprintf("state-%d", round)
		if err := stores[round%4].Add(ctx, state, "b", state, sharedFlow{N: round}, now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
		var got atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				s := stores[i%4]
				if i%3 == 0 {
					if _, err := s.Peek(ctx, state, "b", now); err != nil && err != ErrNoFlow {
						t.Error(err)
					}
				}
				f, err := s.Take(ctx, state, "b", now)
				switch {
				case err == nil && f.N == round:
					got.Add(1)
				case err != ErrNoFlow:
					t.Errorf("round %d: Take = %+v, %v", round, f, err)
				}
			})
		}
		wg.Wait()
		if n := got.Load(); n != 1 {
			t.Fatalf("round %d: %d takers got the flow, want exactly 1", round, n)
		}
	}
}

// TestFlowStoreBackendErrors: a backend that fails is an error of its
// own (an internal failure, not "busy", not "unknown state"), nothing is
// counted for a flow not stored, and the flow is there once the backend
// is back.
func TestFlowStoreBackendErrors(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	be := &spyBackend{Cluster: kv.NewLocalCluster(nil)}
	fs := NewFlowStore[sharedFlow](be, "consent", 10, 8)

	be.failPut.Store(true)
	err := fs.Add(ctx, "s1", "b", "g", sharedFlow{N: 1}, now.Add(time.Hour), now)
	if !errors.Is(err, errLost) || AddFlowReason(err, "busy", "internal") != "internal" || fs.Len() != 0 {
		t.Errorf("Add with Put failing = %v (reason %s, Len %d), want the backend's error, internal, nothing counted",
			err, AddFlowReason(err, "busy", "internal"), fs.Len())
	}
	be.failPut.Store(false)
	if err := fs.Add(ctx, "s1", "b", "g", sharedFlow{N: 1}, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	be.failTake.Store(true)
	for _, op := range []func() error{
		func() error { _, err := fs.Take(ctx, "s1", "b", now); return err },
		func() error { _, err := fs.Peek(ctx, "s1", "b", now); return err },
		func() error { _, err := fs.Take(ctx, "s1", "", now); return err },
	} {
		if err := op(); !errors.Is(err, errLost) || FlowReason(err, "unknown", "browser", "internal") != "internal" {
			t.Errorf("with Take failing: %v, want the backend's error (internal)", err)
		}
	}
	be.failTake.Store(false)
	if f, err := fs.Take(ctx, "s1", "b", now); err != nil || f.N != 1 {
		t.Errorf("Take once the backend is back = %+v, %v; want the flow", f, err)
	}
	if AddFlowReason(ErrFlowsFull, "busy", "internal") != "busy" || AddFlowReason(fmt.Errorf("x: %w", ErrFlowsFull), "busy", "internal") != "busy" {
		t.Error("AddFlowReason(ErrFlowsFull) is not busy")
	}
}

// TestFlowStoreDamaged: a stored flow that does not decode is an error
// (internal), and it is gone: it is never handed out.
func TestFlowStoreDamaged(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	be := &spyBackend{Cluster: kv.NewLocalCluster(nil)}
	fs := NewFlowStore[sharedFlow](be, "consent", 10, 8)
	if err := fs.Add(ctx, "s1", "b", "g", sharedFlow{N: 1}, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	key, _, _ := strings.Cut(be.puts[0], "=")
	be.mu.Unlock()
	if err := be.Cluster.PutFlow(ctx, key, []byte(`{"expires":"x"`), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err := fs.Take(ctx, "s1", "b", now)
	if err == nil || FlowReason(err, "unknown", "browser", "internal") != "internal" || !strings.Contains(err.Error(), "does not decode") {
		t.Errorf("Take of a damaged flow = %v, want an internal error saying it does not decode", err)
	}
	if _, err := fs.Take(ctx, "s1", "b", now); err != ErrNoFlow || fs.Len() != 0 {
		t.Errorf("Take after = %v (Len %d), want ErrNoFlow and nothing held", err, fs.Len())
	}
}
