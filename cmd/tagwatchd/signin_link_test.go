package main

import (
	"strings"
	"testing"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
)

// oidcKindOnly stands in for an OpenID Connect provider where only its
// kind is asked (creating a link); the flow itself is vault/enroll's
// TestHydraSignInLink.
type oidcKindOnly struct{ enroll.Provider }

func (oidcKindOnly) Kind() string { return provider.KindOIDC }

// TestSignInLinkThroughSocket: tagwatchctl enroll --sign-in reaches the
// consent door through the status socket: a sign-in link (no watch) for
// an existing user at an OpenID Connect provider; refused with a watch's
// flags, at X, and for a user that does not exist.
func TestSignInLinkThroughSocket(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada")

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--hashtags", "golang"}, 2, "do not go with it"},
		{[]string{"--target", "console:"}, 2, "do not go with it"},
		{[]string{"--provider", ""}, 2, "--user and --provider are required"},
		{nil, 2, "not an OpenID Connect provider"}, // x
	} {
		args := append([]string{"enroll", "--sign-in", "--user", "ada", "--provider", "x"}, tc.args...)
		out, code := s.ctl(args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("tagwatchctl %s = %d %q, want %d saying %q", strings.Join(args, " "), code, out, tc.code, tc.want)
		}
	}

	s.op.d.enroll.SetProviders(map[string]enroll.Provider{"corp": oidcKindOnly{}})
	var er statusapi.EnrollResponse
	s.ctlJSON(&er, "enroll", "--sign-in", "--user", "ada", "--provider", "corp", "--expect", "ada@example.com")
	if er.Enrollment.Purpose != string(vault.PurposeSignIn) || er.Enrollment.Watch != nil || er.Enrollment.Expected != "ada@example.com" ||
		!strings.HasPrefix(er.Link, s.public+"/enroll/") {
		t.Errorf("enroll --sign-in = %+v, want a sign-in link without a watch", er)
	}
	if e, err := s.op.d.db.LinkByID(er.Enrollment.ID); err != nil || e.Purpose != vault.PurposeSignIn || e.Watch != nil || e.UserID != "ada" {
		t.Errorf("stored link = %+v, %v; want ada's sign-in link", e, err)
	}
	out, code := s.ctl("enroll", "--sign-in", "--user", "ada", "--provider", "corp")
	if code != 0 || !strings.Contains(out, "sign-in link for user ada at corp") {
		t.Errorf("tagwatchctl enroll --sign-in = %d %q, want the sign-in link", code, out)
	}
	out, code = s.ctl("enroll", "--sign-in", "--user", "nobody", "--provider", "corp")
	if code != 5 || !strings.Contains(out, `user "nobody" does not exist`) {
		t.Errorf("tagwatchctl enroll --sign-in --user nobody = %d %q, want 5 naming the user", code, out)
	}
	if _, err := s.op.d.db.User("nobody"); err == nil {
		t.Error("a refused sign-in link made user nobody")
	}
}
