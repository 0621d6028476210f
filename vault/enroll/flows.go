package enroll

import (
	"tagwatch/vault/webpage"
)

// flow is an authorization request in progress: what the callback needs to
// finish it, kept server side (flowStore).
type flow struct {
	linkHash     string // the enrollment's key; the flow store's group
	enrollmentID string
	userID       string
	provider     string
	issuer       string // the provider's issuer when the flow started (RFC 9207)
	verifier     string // PKCE
	nonce        string // OIDC
	// authURL is the authorization request the continue page sends the
	// browser to, and label the provider's name as people know it.
	authURL, label string
}

// flowStore holds flows in progress under their state, bound to the
// browser's flow cookie, grouped by link (at most maxFlowsPerLink each:
// pressing the button again evicts the link's oldest).
type flowStore = webpage.FlowStore[flow]

func newFlowStore(max, maxPerLink int) *flowStore {
	return webpage.NewFlowStore[flow](max, maxPerLink)
}
