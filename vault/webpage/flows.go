package webpage

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"
)

// The refusals of a FlowStore.
var (
	// ErrFlowsFull: Add found the store full of live flows.
	ErrFlowsFull = errors.New("too many sign-ins in progress")
	// ErrNoFlow: no flow has this state: unknown, expired, or already
	// taken.
	ErrNoFlow = errors.New("unknown, expired or used state")
	// ErrFlowBinding: the state's flow was started by another browser (or
	// the request has no binding); the flow stays in place.
	ErrFlowBinding = errors.New("state without its browser's cookie")
)

// FlowReason chooses the reason a request is refused for when a FlowStore
// refused its state: unknown for ErrNoFlow (the flow expired, was
// finished, or never was), browser for ErrFlowBinding (another browser's
// flow), internal for any other error.
func FlowReason[R any](err error, unknown, browser, internal R) R {
	switch {
	case errors.Is(err, ErrNoFlow):
		return unknown
	case errors.Is(err, ErrFlowBinding):
		return browser
	}
	return internal
}

// AddFlowReason chooses the reason a request is refused for when a
// FlowStore did not add its flow: busy for ErrFlowsFull (too many flows
// in progress), internal for any other error (the backend's).
func AddFlowReason[R any](err error, busy, internal R) R {
	if errors.Is(err, ErrFlowsFull) {
		return busy
	}
	return internal
}

// FlowBackend is where a FlowStore keeps its flows: a store shared by
// every daemon that serves the pages, so that a flow started on one
// daemon finishes on another (the provider's redirect may reach any).
// *vault.DB implements it (each value sealed with the vault's keyring,
// bound to its key, in the store's kv.Cluster); kv.LocalCluster
// implements it in memory, unsealed.
type FlowBackend interface {
	// PutFlow stores value under key until expires (a key already there
	// is replaced).
	PutFlow(ctx context.Context, key string, value []byte, expires time.Time) error
	// TakeFlow returns the value under key and deletes it in the same
	// atomic step: of several takers of one key, exactly one gets it. ok
	// is false for a key never put, taken, or expired.
	TakeFlow(ctx context.Context, key string) (value []byte, ok bool, err error)
}

// FlowStore holds OAuth 2.0 authorization flows in progress (RFC 6749
// §4.1: from the authorization request to its callback, or a logout on
// its way), each a T: what the callback needs to finish it, kept server
// side in a FlowBackend, as JSON (T's encoding/json form: what T does
// not marshal is lost on the way). Single use: Take takes a flow out of
// the backend in one atomic step, so of two callbacks with one state,
// on one daemon or two, exactly one gets it.
//
// Each flow is bound to the browser that started it (RFC 6749 §10.12,
// against cross-site request forgery): Add takes the binding, a random
// value the browser keeps in a cookie, and Take and Peek give the flow
// only to a request with the same binding. The backend never sees a
// state or a binding: a flow is stored under the SHA-256 of the store's
// name, its state and its binding, so a request with another binding, or
// none, cannot reach it (it spends nothing); a second record, under the
// SHA-256 of the name and the state alone, says that the state has a flow
// and holds the SHA-256 of its binding (until the flow is taken or
// expires), so that such a request is told ErrFlowBinding rather than
// ErrNoFlow (compared in constant time).
//
// It is bounded, per store (per process): at most max flows started here
// in all, and at most maxPerGroup in one group (one browser, or one link:
// the caller says which), where a new flow evicts the group's oldest
// (taken out of the backend) rather than being refused, so that one
// browser or link cannot fill the backend. A flow counts until it is
// taken here or expires: one taken by another process's store still
// counts here until its expiry. A flow expires at the time Add was given
// (the caller's clock; the backend's clock should agree within the
// flow's lifetime): it is never returned after, and is dropped when Take
// or Peek meets it or when the store is full or its group at its cap.
//
// A FlowStore is safe for concurrent use. The zero FlowStore holds
// nothing (every Add is ErrFlowsFull): make one with NewFlowStore.
type FlowStore[T any] struct {
	backend     FlowBackend
	name        string
	mu          sync.Mutex
	started     map[[32]byte]*flowEntry // the flows Add stored, by SHA-256 of name and state
	perGroup    map[[32]byte]int
	max         int
	maxPerGroup int
	seq         uint64
}

// flowEntry is what a store keeps in memory of a flow it started: enough
// to count it and to take it out of the backend.
type flowEntry struct {
	key, stateKey string   // the backend's keys of the flow and of its state
	group         [32]byte // SHA-256 of the group
	expires       time.Time
	seq           uint64 // order of Add: the lowest is the oldest
}

// flowRecord is a flow as the backend holds it; stateRecord says that a
// state has a flow (under another binding, perhaps).
type flowRecord[T any] struct {
	Expires time.Time `json:"expires"`
	Flow    T         `json:"flow"`
}

type stateRecord struct {
	Expires time.Time `json:"expires"`
	// Binding is the SHA-256 of the flow's binding, so that a request of
	// the same browser that finds no flow (taken, or being peeked at that
	// instant) is told ErrNoFlow, not ErrFlowBinding.
	Binding []byte `json:"binding"`
}

// errNoBackend: a store made without a backend.
var errNoBackend = errors.New("webpage: the flow store has no backend")

// NewFlowStore returns an empty store of at most max flows in all
// (below 1: none, every Add is ErrFlowsFull) and maxPerGroup flows per
// group (below 1: 1), kept in backend. name tells this store's flows
// from another's in one backend (each door its own: "consent",
// "account"). A nil backend makes every Add fail.
func NewFlowStore[T any](backend FlowBackend, name string, max, maxPerGroup int) *FlowStore[T] {
	return &FlowStore[T]{backend: backend, name: name, started: map[[32]byte]*flowEntry{}, perGroup: map[[32]byte]int{},
		max: max, maxPerGroup: maxPerGroup}
}

// keys returns the local key of a state's flow (SHA-256 of name and
// state), the backend's key of the flow of state and binding, and the
// backend's key of the state: SHA-256 sums in hex, of length-prefixed
// parts, each domain-separated.
func (s *FlowStore[T]) keys(state, binding string) (local [32]byte, key, stateKey string) {
	sum := func(parts ...string) [32]byte {
		var b []byte
		for _, p := range parts {
			b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
			b = append(b, p...)
		}
		return sha256.Sum256(b)
	}
	local = sum("tagwatch flow state", s.name, state)
	f, st := sum("tagwatch flow", s.name, state, binding), sum("tagwatch flow state", s.name, state)
	return local, hex.EncodeToString(f[:]), hex.EncodeToString(st[:])
}

// Add stores v under state (the authorization request's state parameter,
// RFC 6749 §4.1.1: unguessable, §10.10) until expires (it is live while
// the clock is before expires), bound to binding (the value of the
// browser's flow cookie) and counted in group; now is the time of the
// call. When the store is full or the group at its cap, it first drops
// expired flows and, for the cap, the group's oldest. ErrFlowsFull when
// the store is still full of live flows; v is then not stored. Errors
// of the backend, or of T's JSON encoding, are returned wrapped; v is
// then not stored.
func (s *FlowStore[T]) Add(ctx context.Context, state, binding, group string, v T, expires, now time.Time) error {
	if s.max < 1 {
		return ErrFlowsFull
	}
	if s.backend == nil {
		return errNoBackend
	}
	raw, err := json.Marshal(flowRecord[T]{Expires: expires, Flow: v})
	if err != nil {
		return fmt.Errorf("webpage: encode a flow: %w", err)
	}
	bsum := sha256.Sum256([]byte(binding))
	stateRaw, _ := json.Marshal(stateRecord{Expires: expires, Binding: bsum[:]})
	local, key, stateKey := s.keys(state, binding)
	e := &flowEntry{key: key, stateKey: stateKey, group: sha256.Sum256([]byte(group)), expires: expires}

	var drop []*flowEntry // flows to take out of the backend
	s.mu.Lock()
	if old := s.started[local]; old != nil {
		// The same state again (a caller's bug): the newer flow wins.
		s.forgetLocked(local, old)
		if old.key != key {
			drop = append(drop, &flowEntry{key: old.key})
		}
	}
	if len(s.started) >= s.max || s.perGroup[e.group] >= s.maxPerGroup {
		var oldest [32]byte
		var oldestSeq uint64
		for k, g := range s.started {
			if !now.Before(g.expires) {
				s.forgetLocked(k, g)
				drop = append(drop, g)
				continue
			}
			if g.group == e.group && (oldestSeq == 0 || g.seq < oldestSeq) {
				oldest, oldestSeq = k, g.seq
			}
		}
		if s.perGroup[e.group] >= s.maxPerGroup && oldestSeq != 0 {
			drop = append(drop, s.started[oldest])
			s.forgetLocked(oldest, s.started[oldest])
		}
		if len(s.started) >= s.max {
			s.mu.Unlock()
			if err := s.drop(ctx, drop); err != nil {
				return err
			}
			return ErrFlowsFull
		}
	}
	s.seq++
	e.seq = s.seq
	s.started[local] = e
	s.perGroup[e.group]++
	s.mu.Unlock()

	err = s.drop(ctx, drop)
	if err == nil {
		err = s.backend.PutFlow(ctx, key, raw, expires)
		if err == nil {
			if err = s.backend.PutFlow(ctx, stateKey, stateRaw, expires); err != nil {
				_, _, _ = s.backend.TakeFlow(context.WithoutCancel(ctx), key)
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		if s.started[local] == e {
			s.forgetLocked(local, e)
		}
		s.mu.Unlock()
		return fmt.Errorf("webpage: store a flow: %w", err)
	}
	return nil
}

// drop takes the flows of es (and their states' records) out of the
// backend: evicted, expired or replaced, they must not be taken after.
func (s *FlowStore[T]) drop(ctx context.Context, es []*flowEntry) error {
	ctx = context.WithoutCancel(ctx)
	for _, e := range es {
		for _, k := range []string{e.key, e.stateKey} {
			if k == "" {
				continue
			}
			if _, _, err := s.backend.TakeFlow(ctx, k); err != nil {
				return fmt.Errorf("webpage: drop a flow: %w", err)
			}
		}
	}
	return nil
}

func (s *FlowStore[T]) forgetLocked(k [32]byte, e *flowEntry) {
	delete(s.started, k)
	if s.perGroup[e.group]--; s.perGroup[e.group] <= 0 {
		delete(s.perGroup, e.group)
	}
}

// forget drops the local entry of a state's flow, if this store started
// it, and returns it.
func (s *FlowStore[T]) forget(local [32]byte) *flowEntry {
	return s.forgetIf(local, func(*flowEntry) bool { return true })
}

// forgetIf is forget when cond holds for the entry.
func (s *FlowStore[T]) forgetIf(local [32]byte, cond func(*flowEntry) bool) *flowEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.started[local]
	if e == nil || !cond(e) {
		return nil
	}
	s.forgetLocked(local, e)
	return e
}

// Take returns the flow of state and removes it (single use), if binding
// is the one it was added with. ErrNoFlow for an unknown, taken or
// expired state (an expired flow is dropped); ErrFlowBinding for a wrong
// or empty binding, and the flow stays in place: a request without the
// cookie cannot spend the state of the browser that has it. Errors of
// the backend, and a stored flow that does not decode (dropped), are
// returned wrapped: neither ErrNoFlow nor ErrFlowBinding.
func (s *FlowStore[T]) Take(ctx context.Context, state, binding string, now time.Time) (T, error) {
	return s.get(ctx, state, binding, now, true)
}

// Peek returns the flow of state without spending it, on Take's terms:
// the continue page shows a URL the flow already has, as often as it is
// asked. It takes the flow out of the backend and puts it back, so a
// Take of the same flow (the same browser's callback) at the same
// instant may find none; never are both given it for a Take.
func (s *FlowStore[T]) Peek(ctx context.Context, state, binding string, now time.Time) (T, error) {
	return s.get(ctx, state, binding, now, false)
}

func (s *FlowStore[T]) get(ctx context.Context, state, binding string, now time.Time, take bool) (T, error) {
	var none T
	if s.backend == nil {
		return none, ErrNoFlow
	}
	local, key, stateKey := s.keys(state, binding)
	if binding != "" {
		raw, ok, err := s.backend.TakeFlow(ctx, key)
		if err != nil {
			return none, fmt.Errorf("webpage: take a flow: %w", err)
		}
		if ok {
			var rec flowRecord[T]
			if err := json.Unmarshal(raw, &rec); err != nil {
				s.forget(local)
				_ = s.drop(ctx, []*flowEntry{{stateKey: stateKey}})
				return none, fmt.Errorf("webpage: a stored flow does not decode: %w", err)
			}
			if !now.Before(rec.Expires) {
				s.forget(local)
				if err := s.drop(ctx, []*flowEntry{{stateKey: stateKey}}); err != nil {
					return none, err
				}
				return none, ErrNoFlow
			}
			if !take {
				if err := s.backend.PutFlow(context.WithoutCancel(ctx), key, raw, rec.Expires); err != nil {
					s.forget(local)
					_ = s.drop(ctx, []*flowEntry{{stateKey: stateKey}})
					return none, fmt.Errorf("webpage: put a flow back: %w", err)
				}
				return rec.Flow, nil
			}
			s.forget(local)
			// The state's record goes too, so that the state is unknown
			// from now on; should that fail, it says "another browser"
			// until it expires, and the flow is spent all the same.
			_ = s.drop(ctx, []*flowEntry{{stateKey: stateKey}})
			return rec.Flow, nil
		}
	}
	// No flow of this state for this binding: another browser's, or none.
	raw, ok, err := s.backend.TakeFlow(ctx, stateKey)
	if err != nil {
		return none, fmt.Errorf("webpage: take a flow's state: %w", err)
	}
	var rec stateRecord
	if ok && json.Unmarshal(raw, &rec) == nil && now.Before(rec.Expires) {
		if err := s.backend.PutFlow(context.WithoutCancel(ctx), stateKey, raw, rec.Expires); err != nil {
			return none, fmt.Errorf("webpage: put a flow's state back: %w", err)
		}
		// The same browser finds no flow: another request of its own
		// took it (the record is the one that request took out, put
		// back), or holds it for Peek this instant.
		got := sha256.Sum256([]byte(binding))
		if binding != "" && subtle.ConstantTimeCompare(got[:], rec.Binding) == 1 {
			return none, ErrNoFlow
		}
		return none, ErrFlowBinding
	}
	// Expired (the backend may have dropped it already), damaged, taken
	// or never here. A flow this store started goes once it has expired,
	// or once its state's record is found expired or damaged; one taken
	// elsewhere counts here until it expires.
	if e := s.forgetIf(local, func(e *flowEntry) bool { return ok || !now.Before(e.expires) }); e != nil {
		if err := s.drop(ctx, []*flowEntry{{key: e.key}}); err != nil {
			return none, err
		}
	}
	return none, ErrNoFlow
}

// Len returns the number of flows this store started and still counts
// (not taken here, not dropped), expired ones not yet dropped included.
func (s *FlowStore[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started)
}

// callbackParams are the authorization response's parameters (RFC 6749
// §4.1.2 and §4.1.2.1; iss: RFC 9207).
var callbackParams = []string{"state", "code", "iss", "error", "error_description", "error_uri"}

// CallbackState returns the state of an authorization response's query
// q, once none of its parameters (state, code, iss, error,
// error_description, error_uri) appears more than once (RFC 6749 §3.1:
// they "MUST NOT be included more than once"). The error names the first
// repeated parameter ("parameter code repeated"), or says "no state".
func CallbackState(q url.Values) (string, error) {
	for _, k := range callbackParams {
		if len(q[k]) > 1 {
			return "", fmt.Errorf("parameter %s repeated", k)
		}
	}
	state := q.Get("state")
	if state == "" {
		return "", errors.New("no state")
	}
	return state, nil
}
