package selfservice

import (
	"context"
	"time"

	"tagwatch/vault/webpage"
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
}

// maxFlowsPerBrowser bounds the flows one browser (one flow cookie) may
// have in progress: starting another evicts its oldest.
const maxFlowsPerBrowser = 8

// flowStore holds flows in progress under their state, bound to the
// browser's flow cookie and grouped by it (at most maxFlowsPerBrowser
// each), in the vault's flow state (vault.DB.PutFlow: sealed, shared by
// every daemon on the same store; flowjson.go is a flow's stored form).
type flowStore = webpage.FlowStore[flow]

func newFlowStore(b webpage.FlowBackend, max, maxPerBrowser int) *flowStore {
	return webpage.NewFlowStore[flow](b, "account", max, maxPerBrowser)
}

// addFlow stores f under state for the browser of binding (its flow
// cookie), until FlowTTL from now.
func (s *Service) addFlow(ctx context.Context, state, binding string, f *flow, now time.Time) error {
	return s.flows.Add(ctx, state, binding, binding, *f, now.Add(s.cfg.FlowTTL), now)
}
