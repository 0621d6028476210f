package main

import (
	"strings"
	"testing"

	"tagwatch/cmd/internal/statusapi"
)

// TestDoorsExitAlike feeds the same requests to tagwatchctl on a running
// daemon's socket and to tagwatchd's offline commands on the same vault
// once the daemon stopped: both exit with the same status (tagwatchctl's
// table: 0 ok, 2 invalid, 5 not found, 6 conflict) and say the same thing,
// the domain's own text naming the object, without the prefixes of the
// layers it went through.
func TestDoorsExitAlike(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada") // ada's watch: #golang #rust, @every 1m, console:
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 {
		t.Fatalf("after enrolling ada: watches %+v, want one", ws)
	}
	watch := ws[0].ID

	rows := []struct {
		name    string
		ctl     []string // tagwatchctl's arguments
		offline []string // tagwatchd's
		op      string   // the offline command's name in its message
		code    int
		says    string // a piece of the message both doors show
	}{
		{"duplicate watch",
			[]string{"watches", "add", "--user", "ada", "--provider", "x", "--hashtags", "rust,golang", "--schedule", "@every 1m", "--target", "console:"},
			[]string{"watches", "add", "-user", "ada", "-provider", "x", "-hashtags", "rust,golang", "-schedule", "@every 1m", "-target", "console:"},
			"watches add", exitConflict, `user "ada" already has this watch at "x": watch ` + watch},
		{"pause nosuch", []string{"watches", "pause", "nosuch"}, []string{"watches", "pause", "nosuch"}, "watches pause", exitNotFound,
			`watch "nosuch" does not exist`},
		{"pause -id nosuch", []string{"watches", "pause", "nosuch"}, []string{"watches", "pause", "-id", "nosuch"}, "watches pause", exitNotFound,
			`watch "nosuch" does not exist`},
		{"resume nosuch", []string{"watches", "resume", "nosuch"}, []string{"watches", "resume", "nosuch"}, "watches resume", exitNotFound,
			`watch "nosuch" does not exist`},
		{"delete nosuch", []string{"watches", "delete", "nosuch"}, []string{"watches", "delete", "nosuch"}, "watches delete", exitNotFound,
			`watch "nosuch" does not exist`},
		{"change nosuch", []string{"watches", "change", "nosuch", "--schedule", "@hourly"},
			[]string{"watches", "change", "nosuch", "-schedule", "@hourly"}, "watches change", exitNotFound, `watch "nosuch" does not exist`},
		{"unknown provider",
			[]string{"watches", "add", "--user", "ada", "--provider", "nosuch", "--hashtags", "go", "--schedule", "@hourly", "--target", "console:"},
			[]string{"watches", "add", "-user", "ada", "-provider", "nosuch", "-hashtags", "go", "-schedule", "@hourly", "-target", "console:"},
			"watches add", exitUsage, `provider "nosuch" is not configured`},
		{"enroll at an unknown provider",
			[]string{"enroll", "--user", "bo", "--provider", "nosuch", "--hashtags", "go", "--schedule", "@hourly", "--target", "console:", "--lang", "en", "--backfill"},
			[]string{"enroll", "-user", "bo", "-provider", "nosuch", "-hashtags", "go", "-schedule", "@hourly", "-target", "console:", "-lang", "en", "-backfill"},
			"enroll", exitUsage, `consent link: provider "nosuch" is not configured`},
		{"digits-only hashtag",
			[]string{"watches", "add", "--user", "ada", "--provider", "x", "--hashtags", "123", "--schedule", "@hourly", "--target", "console:"},
			[]string{"watches", "add", "-user", "ada", "-provider", "x", "-hashtags", "123", "-schedule", "@hourly", "-target", "console:"},
			"watches add", exitUsage, "digits only"},
		{"pause by id", []string{"watches", "pause", watch}, []string{"watches", "pause", "-id", watch}, "", 0, ""},
		{"resume by id", []string{"watches", "resume", watch}, []string{"watches", "resume", watch}, "", 0, ""},
	}
	ctlSaid := make([]string, len(rows))
	ctlCode := make([]int, len(rows))
	for i, r := range rows {
		ctlSaid[i], ctlCode[i] = s.ctl(r.ctl...)
	}
	// A grant that does not exist reads as the vault says it, whatever
	// layers (renewal, unenroll) the request went through.
	if out, code := s.ctl("revoke", "nosuch"); code != exitNotFound || out != "tagwatchctl: grant \"nosuch\" does not exist\n" {
		t.Errorf("tagwatchctl revoke nosuch = %d %q, want %d %q", code, out, exitNotFound, "tagwatchctl: grant \"nosuch\" does not exist\n")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	for i, r := range rows {
		code, out, errOut := runCLI(append(r.offline, "-config", s.config)...)
		if r.code == 0 {
			if ctlCode[i] != 0 || code != 0 {
				t.Errorf("%s: tagwatchctl %q = %d %q; tagwatchd %q = %d %q %q; want 0 at both", r.name, r.ctl, ctlCode[i], ctlSaid[i],
					r.offline, code, out, errOut)
			}
			continue
		}
		msg, ok := strings.CutPrefix(ctlSaid[i], "tagwatchctl: ")
		if ctlCode[i] != r.code || !ok || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, r.says) {
			t.Errorf("%s: tagwatchctl %q = %d %q, want %d and one line with %q", r.name, r.ctl, ctlCode[i], ctlSaid[i], r.code, r.says)
			continue
		}
		if want := "tagwatchd: " + r.op + ": " + msg; code != ctlCode[i] || errOut != want {
			t.Errorf("%s: tagwatchd %q = %d %q %q, want %d %q as tagwatchctl %q", r.name, r.offline, code, out, errOut, ctlCode[i], want, r.ctl)
		}
	}
}
