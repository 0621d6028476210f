package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// flow is an authorization request in progress: what the callback needs to
// finish it, kept server side.
type flow struct {
	linkHash     string // the enrollment's key
	enrollmentID string
	userID       string
	provider     string
	issuer       string // the provider's issuer when the flow started (RFC 9207)
	verifier     string // PKCE
	nonce        string // OIDC
	// authURL is the authorization request the continue page sends the
	// browser to, and label the provider's name as people know it.
	authURL, label string
	binding        [32]byte
	expires        time.Time
	seq            uint64
}

var (
	errFlowsFull = errors.New("too many sign-ins in progress")
	errNoFlow    = errors.New("no such flow")
	errBinding   = errors.New("flow started in another browser")
)

// flowStore holds flows in progress by the hash of their state. Safe for
// concurrent use.
type flowStore struct {
	mu      sync.Mutex
	byState map[[32]byte]*flow
	perLink map[string]int
	max     int
	maxLink int
	seq     uint64
}

func newFlowStore(max, maxPerLink int) *flowStore {
	return &flowStore{byState: map[[32]byte]*flow{}, perLink: map[string]int{}, max: max, maxLink: maxPerLink}
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("enroll: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// add stores f under state, first dropping expired flows and, when the
// link has too many, its oldest.
func (s *flowStore) add(state string, f *flow, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byState) >= s.max || s.perLink[f.linkHash] >= s.maxLink {
		var oldest [32]byte
		var oldestSeq uint64
		for k, g := range s.byState {
			if !now.Before(g.expires) {
				s.deleteLocked(k, g)
				continue
			}
			if g.linkHash == f.linkHash && (oldestSeq == 0 || g.seq < oldestSeq) {
				oldest, oldestSeq = k, g.seq
			}
		}
		if s.perLink[f.linkHash] >= s.maxLink && oldestSeq != 0 {
			s.deleteLocked(oldest, s.byState[oldest])
		}
		if len(s.byState) >= s.max {
			return errFlowsFull
		}
	}
	s.seq++
	f.seq = s.seq
	s.byState[sha256.Sum256([]byte(state))] = f
	s.perLink[f.linkHash]++
	return nil
}

func (s *flowStore) deleteLocked(k [32]byte, f *flow) {
	delete(s.byState, k)
	if s.perLink[f.linkHash]--; s.perLink[f.linkHash] <= 0 {
		delete(s.perLink, f.linkHash)
	}
}

// take returns the flow of state and removes it, if binding (the value of
// the browser's cookie) is the one it was started with. An unknown or
// expired state gives errNoFlow; a wrong or missing binding gives
// errBinding and leaves the flow in place, so a request without the cookie
// cannot spend the state of the browser that has it.
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

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
