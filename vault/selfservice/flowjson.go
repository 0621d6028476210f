package selfservice

import (
	"encoding/json"
	"time"
)

// flowJSON is flow's stored form (the flow store keeps it as JSON, sealed
// by the vault): every field of flow, one for one.
type flowJSON struct {
	Kind     flowKind      `json:"kind"`
	Provider string        `json:"provider"`
	Issuer   string        `json:"issuer,omitempty"`
	Verifier string        `json:"code_verifier,omitempty"`
	Nonce    string        `json:"nonce,omitempty"`
	Prompt   string        `json:"prompt,omitempty"`
	MaxAge   time.Duration `json:"max_age_ns,omitempty"`
	ReturnTo string        `json:"return_to,omitempty"`
	Notice   string        `json:"notice,omitempty"`
	UserID   string        `json:"user_id,omitempty"`
	Next     string        `json:"next,omitempty"`
	Label    string        `json:"label,omitempty"`
}

// MarshalJSON gives the flow's stored form.
func (f flow) MarshalJSON() ([]byte, error) {
	return json.Marshal(flowJSON{Kind: f.kind, Provider: f.provider, Issuer: f.issuer, Verifier: f.verifier, Nonce: f.nonce,
		Prompt: f.prompt, MaxAge: f.maxAge, ReturnTo: f.returnTo, Notice: f.notice, UserID: f.userID, Next: f.next, Label: f.label})
}

// UnmarshalJSON reads the flow's stored form.
func (f *flow) UnmarshalJSON(b []byte) error {
	var j flowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = flow{kind: j.Kind, provider: j.Provider, issuer: j.Issuer, verifier: j.Verifier, nonce: j.Nonce, prompt: j.Prompt,
		maxAge: j.MaxAge, returnTo: j.ReturnTo, notice: j.Notice, userID: j.UserID, next: j.Next, label: j.Label}
	return nil
}
