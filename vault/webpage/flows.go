package webpage

import (
	"crypto/sha256"
	"crypto/subtle"
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

// FlowStore holds OAuth 2.0 authorization flows in progress (RFC 6749
// §4.1: from the authorization request to its callback, or a logout on
// its way), each a T: what the callback needs to finish it, kept server
// side under the SHA-256 of the request's state.
//
// Each flow is bound to the browser that started it (RFC 6749 §10.12,
// against cross-site request forgery): Add takes the binding, a random
// value the browser keeps in a cookie, and Take and Peek give the flow
// only to a request with the same binding, compared as SHA-256 sums in
// constant time. A request with another binding, or none, spends nothing.
//
// It is bounded: at most max flows in all, and at most maxPerGroup in one
// group (one browser, or one link: the caller says which), where a new
// flow evicts the group's oldest rather than being refused, so that one
// browser or link cannot fill the store. A flow expires at the time Add
// was given; it is never returned after, and is dropped when Take or
// Peek meets it or when the store is full or its group at its cap.
//
// A FlowStore is safe for concurrent use. The zero FlowStore holds
// nothing (every Add is ErrFlowsFull): make one with NewFlowStore.
type FlowStore[T any] struct {
	mu          sync.Mutex
	byState     map[[32]byte]*flowEntry[T]
	perGroup    map[[32]byte]int
	max         int
	maxPerGroup int
	seq         uint64
}

type flowEntry[T any] struct {
	v       T
	binding [32]byte // SHA-256 of the browser's binding
	group   [32]byte // SHA-256 of the group
	expires time.Time
	seq     uint64 // order of Add: the lowest is the oldest
}

// NewFlowStore returns an empty store of at most max flows in all
// (below 1: none, every Add is ErrFlowsFull) and maxPerGroup flows per
// group (below 1: 1).
func NewFlowStore[T any](max, maxPerGroup int) *FlowStore[T] {
	return &FlowStore[T]{byState: map[[32]byte]*flowEntry[T]{}, perGroup: map[[32]byte]int{},
		max: max, maxPerGroup: maxPerGroup}
}

// Add stores v under state (the authorization request's state parameter,
// RFC 6749 §4.1.1: unguessable, §10.10) until expires (it is live while
// the clock is before expires), bound to binding (the value of the
// browser's flow cookie) and counted in group; now is the time of the
// call. When the store is full or the group at its cap, it first drops
// expired flows and, for the cap, the group's oldest. ErrFlowsFull when
// the store is still full of live flows; v is then not stored.
func (s *FlowStore[T]) Add(state, binding, group string, v T, expires, now time.Time) error {
	e := &flowEntry[T]{v: v, binding: sha256.Sum256([]byte(binding)), group: sha256.Sum256([]byte(group)), expires: expires}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byState) >= s.max || s.perGroup[e.group] >= s.maxPerGroup {
		var oldest [32]byte
		var oldestSeq uint64
		for k, g := range s.byState {
			if !now.Before(g.expires) {
				s.deleteLocked(k, g)
				continue
			}
			if g.group == e.group && (oldestSeq == 0 || g.seq < oldestSeq) {
				oldest, oldestSeq = k, g.seq
			}
		}
		if s.perGroup[e.group] >= s.maxPerGroup && oldestSeq != 0 {
			s.deleteLocked(oldest, s.byState[oldest])
		}
		if len(s.byState) >= s.max {
			return ErrFlowsFull
		}
	}
	s.seq++
	e.seq = s.seq
	k := sha256.Sum256([]byte(state))
	if old := s.byState[k]; old != nil {
		s.deleteLocked(k, old) // the same state again (a caller's bug): the newer flow wins
	}
	s.byState[k] = e
	s.perGroup[e.group]++
	return nil
}

func (s *FlowStore[T]) deleteLocked(k [32]byte, e *flowEntry[T]) {
	delete(s.byState, k)
	if s.perGroup[e.group]--; s.perGroup[e.group] <= 0 {
		delete(s.perGroup, e.group)
	}
}

// Take returns the flow of state and removes it (single use), if binding
// is the one it was added with. ErrNoFlow for an unknown, taken or
// expired state (an expired flow is dropped); ErrFlowBinding for a wrong
// or empty binding, and the flow stays in place: a request without the
// cookie cannot spend the state of the browser that has it.
func (s *FlowStore[T]) Take(state, binding string, now time.Time) (T, error) {
	return s.get(state, binding, now, true)
}

// Peek returns the flow of state without removing it, on Take's terms:
// the continue page shows a URL the flow already has, as often as it is
// asked. What T points to is shared with the stored flow: read it only.
func (s *FlowStore[T]) Peek(state, binding string, now time.Time) (T, error) {
	return s.get(state, binding, now, false)
}

func (s *FlowStore[T]) get(state, binding string, now time.Time, take bool) (T, error) {
	var none T
	k := sha256.Sum256([]byte(state))
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byState[k]
	if e == nil {
		return none, ErrNoFlow
	}
	if !now.Before(e.expires) {
		s.deleteLocked(k, e)
		return none, ErrNoFlow
	}
	got := sha256.Sum256([]byte(binding))
	if binding == "" || subtle.ConstantTimeCompare(got[:], e.binding[:]) != 1 {
		return none, ErrFlowBinding
	}
	if take {
		s.deleteLocked(k, e)
	}
	return e.v, nil
}

// Len returns the number of flows held, expired ones not yet dropped
// included.
func (s *FlowStore[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byState)
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
