package enroll

import (
	"encoding/json"

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

// flowJSON is flow's stored form (the flow store keeps it as JSON, sealed
// by the vault): every field of flow, one for one.
type flowJSON struct {
	LinkHash     string `json:"link_hash"`
	EnrollmentID string `json:"enrollment_id"`
	UserID       string `json:"user_id"`
	Provider     string `json:"provider"`
	Issuer       string `json:"issuer,omitempty"`
	Verifier     string `json:"code_verifier"`
	Nonce        string `json:"nonce,omitempty"`
	AuthURL      string `json:"auth_url"`
	Label        string `json:"label"`
}

// MarshalJSON gives the flow's stored form.
func (f flow) MarshalJSON() ([]byte, error) {
	return json.Marshal(flowJSON{LinkHash: f.linkHash, EnrollmentID: f.enrollmentID, UserID: f.userID, Provider: f.provider,
		Issuer: f.issuer, Verifier: f.verifier, Nonce: f.nonce, AuthURL: f.authURL, Label: f.label})
}

// UnmarshalJSON reads the flow's stored form.
func (f *flow) UnmarshalJSON(b []byte) error {
	var j flowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = flow{linkHash: j.LinkHash, enrollmentID: j.EnrollmentID, userID: j.UserID, provider: j.Provider,
		issuer: j.Issuer, verifier: j.Verifier, nonce: j.Nonce, authURL: j.AuthURL, label: j.Label}
	return nil
}

// flowStore holds flows in progress under their state, bound to the
// browser's flow cookie, grouped by link (at most maxFlowsPerLink each:
// pressing the button again evicts the link's oldest), in the vault's
// flow state (vault.DB.PutFlow: sealed, shared by every daemon on the
// same store), so that the provider's redirect may reach any daemon.
type flowStore = webpage.FlowStore[flow]

func newFlowStore(b webpage.FlowBackend, max, maxPerLink int) *flowStore {
	return webpage.NewFlowStore[flow](b, "consent", max, maxPerLink)
}
