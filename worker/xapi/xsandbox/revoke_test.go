package xsandbox

import (
	"net/url"
	"testing"
)

// TestRevokeEndsAuthorization: X's revocation as reported (the default):
// revoking any one token of a user ends every token of every consent the
// user gave the app; other users keep theirs. Switched off, only the
// revoked token's own consent ends, and a second consent of the same user
// survives.
func TestRevokeEndsAuthorization(t *testing.T) {
	tests := []struct {
		name        string
		endsAll     bool
		which       string // the first consent's token presented: "access" or "refresh"
		wantSecond  int    // users/me with the second consent's access token
		wantSecondR int    // refresh with the second consent's refresh token
		wantFirstR  int    // refresh with the first consent's refresh token
	}{
		{"X: refresh token ends the whole authorization", true, "refresh", 401, 400, 400},
		{"X: access token ends the whole authorization", true, "access", 401, 400, 400},
		{"per family: refresh token ends its consent only", false, "refresh", 200, 200, 400},
		{"per family: access token ends itself only", false, "access", 200, 200, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if !tt.endsAll {
				e.s.SetRevokeEndsAuthorization(false)
			}
			a1, r1 := e.grant("101") // the first consent
			a2, r2 := e.grant("101") // the second: a re-consent of the same user
			other, otherR := e.grant("102")
			tok := map[string]string{"access": a1, "refresh": r1}[tt.which]
			if st, body := e.mustPost(EndpointRevoke, url.Values{"token": {tok}}, true); st != 200 || body != `{"revoked":true}` {
				t.Fatalf("revoke = %d %s", st, body)
			}
			if st, _, _ := e.get(EndpointUsersMe, a2, nil); st != tt.wantSecond {
				t.Errorf("users/me with the second consent's token = %d, want %d", st, tt.wantSecond)
			}
			if st, _ := e.refresh(r2); st != tt.wantSecondR {
				t.Errorf("refresh with the second consent's token = %d, want %d", st, tt.wantSecondR)
			}
			if st, _ := e.refresh(r1); st != tt.wantFirstR {
				t.Errorf("refresh with the first consent's token = %d, want %d", st, tt.wantFirstR)
			}
			if st, _, _ := e.get(EndpointUsersMe, other, nil); st != 200 {
				t.Errorf("another user's token = %d, want 200", st)
			}
			if st, _ := e.refresh(otherR); st != 200 {
				t.Errorf("another user's refresh = %d, want 200", st)
			}
		})
	}
}
