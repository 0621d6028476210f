package webpage

import (
	"crypto/rand"
	"encoding/base64"
)

// RandomString returns n random bytes (crypto/rand) in unpadded base64url:
// OAuth state, PKCE verifiers (RFC 7636 §4.1: 32 bytes give the 43
// characters it asks for at least), nonces, flow bindings and session
// ids. crypto/rand never fails: on a broken system it ends the program.
func RandomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// WellFormed reports whether v looks like RandomString(32): 43 base64url
// characters. A cookie or link token that does not is refused before any
// lookup.
func WellFormed(v string) bool {
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
