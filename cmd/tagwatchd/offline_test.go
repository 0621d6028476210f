package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
)

// openEnvVault opens watchesEnv's vault for a test's own reads and writes
// (the offline commands are not running then).
func openEnvVault(t *testing.T, e env) *vault.DB {
	t.Helper()
	master, err := seal.LoadMasterKey(seal.Source{File: e.key})
	if err != nil {
		t.Fatal(err)
	}
	db := vaulttest.Open(t, vaulttest.Path(e.db), vaulttest.Master(master))
	return db
}

// TestOfflineCommandsAsTagwatchctl: tagwatchd watches and tagwatchd
// enroll exit with tagwatchctl's status for the same refusal (2 invalid,
// 5 not found, 6 conflict), say it in the domain's words, take the watch
// id as an argument, answer -h on stdout with 0, take -lang and -backfill
// on enroll, and list hashtags as tagwatchctl does.
func TestOfflineCommandsAsTagwatchctl(t *testing.T) {
	e := watchesEnv(t)
	cli := func(args ...string) (int, string, string) { return runCLI(append(args, "-config", e.config)...) }
	code, out, errOut := cli("watches", "add", "-user", "u1", "-provider", "x", "-hashtags", "golang,rust", "-schedule", "@every 15m", "-target", "console:")
	if code != 0 {
		t.Fatalf("watches add = %d %q %q", code, out, errOut)
	}
	id := strings.Fields(out)[1]
	add := []string{"watches", "add", "-user", "u1", "-provider", "x", "-schedule", "@every 15m", "-target", "console:"}
	enrollArgs := []string{"enroll", "-user", "u2", "-hashtags", "golang", "-schedule", "@every 15m", "-target", "console:"}

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // a piece of stdout
		stderr string // all of stderr, or with a trailing "…" its start; "": not checked
	}{
		{"duplicate", append(add, "-hashtags", "rust,golang"), exitConflict, "",
			fmt.Sprintf("tagwatchd: watches add: user \"u1\" already has this watch at \"x\": watch %s\n", id)},
		{"pause nosuch", []string{"watches", "pause", "nosuch"}, exitNotFound, "", "tagwatchd: watches pause: watch \"nosuch\" does not exist\n"},
		{"pause -id nosuch", []string{"watches", "pause", "-id", "nosuch"}, exitNotFound, "", "tagwatchd: watches pause: watch \"nosuch\" does not exist\n"},
		{"resume nosuch", []string{"watches", "resume", "nosuch"}, exitNotFound, "", "tagwatchd: watches resume: watch \"nosuch\" does not exist\n"},
		{"delete nosuch", []string{"watches", "delete", "nosuch"}, exitNotFound, "", "tagwatchd: watches delete: watch \"nosuch\" does not exist\n"},
		{"change nosuch", []string{"watches", "change", "nosuch", "-schedule", "@hourly"}, exitNotFound, "", "tagwatchd: watches change: watch \"nosuch\" does not exist\n"},
		{"unknown provider", []string{"watches", "add", "-user", "u1", "-provider", "nosuch", "-hashtags", "go", "-schedule", "@hourly", "-target", "console:"},
			exitUsage, "", "tagwatchd: watches add: watch: provider \"nosuch\" is not configured\n"},
		{"bad schedule", append(add[:len(add):len(add)], "-hashtags", "go", "-schedule", "every day"), exitUsage, "", "tagwatchd: watches add: …"},
		{"unknown flag", []string{"watches", "pause", "-bogus", id}, exitUsage, "", "tagwatchd: watches pause: flag provided but not defined: -bogus…"},
		{"two ids", []string{"watches", "pause", id, "-id", "other"}, exitUsage, "", "tagwatchd: watches pause: name the watch once…"},
		{"extra argument", []string{"watches", "pause", id, "more"}, exitUsage, "", "tagwatchd: watches pause: unexpected argument \"more\"\n"},
		{"no id", []string{"watches", "resume"}, exitUsage, "", "tagwatchd: watches resume: the watch id is required…"},
		{"watches -h", []string{"watches", "-h"}, 0, "Usage: tagwatchd watches", ""},
		{"watches --help", []string{"watches", "--help"}, 0, "Usage: tagwatchd watches", ""},
		{"watches help", []string{"watches", "help"}, 0, "Usage: tagwatchd watches", ""},
		{"watches pause -h", []string{"watches", "pause", "-h"}, 0, "-id string", ""},
		{"enroll -h", []string{"enroll", "-h"}, 0, "-backfill", ""},
		{"enroll --help", []string{"enroll", "--help"}, 0, "-lang string", ""},
		{"enroll unknown provider", append(enrollArgs, "-provider", "nosuch"), exitUsage, "",
			"tagwatchd: enroll: consent link: provider \"nosuch\" is not configured\n"},
		{"enroll unknown flag", append(enrollArgs, "-provider", "x", "-bogus"), exitUsage, "", "tagwatchd: enroll: flag provided but not defined: -bogus…"},
		{"pause by argument, flag after it", []string{"watches", "pause", id}, 0, "watch " + id + " paused", ""},
		{"pause again", []string{"watches", "pause", "-id", id}, 0, "watch " + id + " unchanged", ""},
		{"resume by argument", []string{"watches", "resume", id}, 0, "watch " + id + " resumed", ""},
		{"list", []string{"watches", "list"}, 0, "#golang #rust", ""},
		{"enroll with -lang and -backfill", append(enrollArgs, "-provider", "x", "-lang", "en", "-backfill"), 0, "consent link for user u2", ""},
	}
	for _, c := range cases {
		code, out, errOut := cli(c.args...)
		want, prefix := strings.CutSuffix(c.stderr, "…")
		okErr := c.stderr == "" || errOut == want || prefix && strings.HasPrefix(errOut, want)
		if code != c.code || !strings.Contains(out, c.stdout) || !okErr {
			t.Errorf("%s: tagwatchd %q = %d, stdout %q, stderr %q; want %d, stdout with %q, stderr %q", c.name, c.args, code, out, errOut,
				c.code, c.stdout, c.stderr)
		}
	}

	db := openEnvVault(t, e)
	links, err := db.ListLinks(time.Now())
	if err != nil || len(links) != 1 || links[0].Watch == nil || links[0].Watch.Lang != "en" || !links[0].Watch.Backfill {
		t.Errorf("after tagwatchd enroll -lang en -backfill, links = %+v (%v), want one whose watch has lang en and backfill", links, err)
	}
	// A watch whose state does not allow the change: a conflict, 6.
	if _, err := db.SuspendProviderWatches("x", vault.SuspendUsageCapped); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, errOut = cli("watches", "resume", id)
	if want := "tagwatchd: watches resume: cannot resume watch " + id + ": it is suspended (usage_capped)"; code != exitConflict || !strings.HasPrefix(errOut, want) {
		t.Errorf("tagwatchd watches resume (usage capped) = %d %q %q, want %d and %q", code, out, errOut, exitConflict, want)
	}
}

// TestAPIErrShowsTheDomainsText: the status API's answer for a domain
// refusal is the domain error's own text, whatever layers wrapped it, with
// the status of its kind.
func TestAPIErrShowsTheDomainsText(t *testing.T) {
	nf := &vault.NotFoundError{Kind: "grant", ID: "nosuch"}
	tr := &vault.TransitionError{Kind: "watch", ID: "w1", Action: "resume", State: "suspended (usage_capped)"}
	inv := &vault.InvalidError{Object: "consent link", Err: errors.New(`provider "nosuch" is not configured`)}
	for _, c := range []struct {
		name     string
		in       error
		sentinel error
		want     string
	}{
		{"not found under layers", fmt.Errorf("renew: unenroll: %w", nf), statusapi.ErrNotFound, `grant "nosuch" does not exist`},
		{"not found", nf, statusapi.ErrNotFound, `grant "nosuch" does not exist`},
		{"transition under layers", fmt.Errorf("vault: resume watch: %w", tr), statusapi.ErrConflict, tr.Error()},
		{"invalid under layers", fmt.Errorf("create consent link: %w", inv), statusapi.ErrInvalid, `consent link: provider "nosuch" is not configured`},
		{"duplicate", fmt.Errorf("%w (watch w1)", vault.ErrDuplicateWatch), statusapi.ErrConflict, vault.ErrDuplicateWatch.Error() + " (watch w1)"},
		{"unknown provider", &vault.InvalidError{Object: "consent link", Err: fmt.Errorf("%w", enroll.ErrUnknownProvider)}, statusapi.ErrInvalid,
			"consent link: " + enroll.ErrUnknownProvider.Error()},
	} {
		got := apiErr(c.in)
		if !errors.Is(got, c.sentinel) || got.Error() != c.sentinel.Error()+": "+c.want {
			t.Errorf("%s: apiErr(%q) = %q, want %q under %v", c.name, c.in, got, c.want, c.sentinel)
		}
	}
	if got := apiErr(nil); got != nil {
		t.Errorf("apiErr(nil) = %v, want nil", got)
	}
	other := errors.New("disk full")
	if got := apiErr(other); got != other {
		t.Errorf("apiErr(%v) = %v, want it unchanged", other, got)
	}
}
