package selfservice

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sync"
	"time"
)

// flowKind is why a flow was started.
type flowKind int

const (
	// flowSignIn: the sign-in button (interactive).
	flowSignIn flowKind = iota
	// flowRenew: a silent renewal (prompt=none) of an expired session.
	flowRenew
	// flowRecent: a recent sign-in for an action that needs one (max_age).
	flowRecent
	// flowLogout: a sign-out everywhere at a provider that has no end
	// session endpoint (X), on its way to the signed-out page, which says
	// so to this browser only; the state is all it has.
	flowLogout
	// flowEndSession: a sign-out everywhere at a provider's end session
	// endpoint, on its way there through the continue page; never
	// finished here (the provider does not come back with its state).
	flowEndSession
)

func (k flowKind) String() string {
	switch k {
	case flowRenew:
		return "renewal"
	case flowRecent:
		return "recent sign-in"
	case flowLogout, flowEndSession:
		return "sign-out"
	}
	return "sign-in"
}

// flow is an authorization request (or an RP-initiated logout) in
// progress: what the callback needs to finish it, kept server side under
// its state.
type flow struct {
	kind     flowKind
	provider string
	issuer   string // the provider's issuer when the flow started (RFC 9207)
	verifier string // PKCE
	nonce    string // OIDC
	prompt   string // as sent
	maxAge   time.Duration
	// returnTo is the page path the browser goes back to once signed in.
	returnTo string
	// notice is said on that page.
	notice string
	// userID is the user who must sign in (flowRecent), or who was
	// signed in when the flow started (for the log).
	userID string
	// next is where the continue page sends the browser: the
	// authorization request, or the end session request; label names
	// the provider there.
	next, label string

	binding [32]byte
	expires time.Time
	seq     uint64
}

var (
	errFlowsFull = errors.New("too many sign-ins in progress")
	errNoFlow    = errors.New("no such flow")
	errBinding   = errors.New("flow started in another browser")
)

// maxFlowsPerBrowser bounds the flows one browser (one flow cookie) may
// have in progress: starting another evicts its oldest.
const maxFlowsPerBrowser = 8

// flowStore holds flows in progress by the SHA-256 of their state. Safe
// for concurrent use.
type flowStore struct {
	mu         sync.Mutex
	byState    map[[32]byte]*flow
	perBinding map[[32]byte]int
	max        int
	maxBinding int
	seq        uint64
}

func newFlowStore(max, maxPerBinding int) *flowStore {
	return &flowStore{byState: map[[32]byte]*flow{}, perBinding: map[[32]byte]int{}, max: max, maxBinding: maxPerBinding}
}

// add stores f under state, first dropping expired flows and, when the
// browser has too many, its oldest. errFlowsFull when the store is full of
// live flows.
func (s *flowStore) add(state string, f *flow, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byState) >= s.max || s.perBinding[f.binding] >= s.maxBinding {
		var oldest [32]byte
		var oldestSeq uint64
		for k, g := range s.byState {
			if !now.Before(g.expires) {
				s.deleteLocked(k, g)
				continue
			}
			if g.binding == f.binding && (oldestSeq == 0 || g.seq < oldestSeq) {
				oldest, oldestSeq = k, g.seq
			}
		}
		if s.perBinding[f.binding] >= s.maxBinding && oldestSeq != 0 {
			s.deleteLocked(oldest, s.byState[oldest])
		}
		if len(s.byState) >= s.max {
			return errFlowsFull
		}
	}
	s.seq++
	f.seq = s.seq
	s.byState[sha256.Sum256([]byte(state))] = f
	s.perBinding[f.binding]++
	return nil
}

func (s *flowStore) deleteLocked(k [32]byte, f *flow) {
	delete(s.byState, k)
	if s.perBinding[f.binding]--; s.perBinding[f.binding] <= 0 {
		delete(s.perBinding, f.binding)
	}
}

// take returns the flow of state and removes it (single use), if binding
// (the browser's flow cookie) is the one it was started with. An unknown,
// used or expired state gives errNoFlow; a wrong or missing binding gives
// errBinding and leaves the flow in place, so a request without the
// cookie cannot spend the state of the browser that has it.
func (s *flowStore) take(state, binding string, now time.Time) (*flow, error) {
	k := sha256.Sum256([]byte(state))
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.byState[k]
	if f == nil {
		return nil, errNoFlow
	}
	if !now.Before(f.expires) {
		s.deleteLocked(k, f)
		return nil, errNoFlow
	}
	got := sha256.Sum256([]byte(binding))
	if binding == "" || subtle.ConstantTimeCompare(got[:], f.binding[:]) != 1 {
		return nil, errBinding
	}
	s.deleteLocked(k, f)
	return f, nil
}

// peek returns the flow of state without removing it, on the same terms
// as take: the continue page shows a URL the flow already has, as often
// as it is asked.
func (s *flowStore) peek(state, binding string, now time.Time) (*flow, error) {
	k := sha256.Sum256([]byte(state))
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.byState[k]
	if f == nil || !now.Before(f.expires) {
		return nil, errNoFlow
	}
	got := sha256.Sum256([]byte(binding))
	if binding == "" || subtle.ConstantTimeCompare(got[:], f.binding[:]) != 1 {
		return nil, errBinding
	}
	g := *f
	return &g, nil
}

// len returns the number of flows held.
func (s *flowStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byState)
}
