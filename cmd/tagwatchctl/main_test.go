package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.sock")
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-version"}, exitOK, "tagwatchctl "},
		{[]string{"--version"}, exitOK, "tagwatchctl "},
		{nil, exitUsage, "no command given"},
		{[]string{"-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"watches", "frob"}, exitUsage, `unknown subcommand "frob"`},
		{[]string{"watches", "pause"}, exitUsage, "want exactly one watch id"},
		{[]string{"watches", "add", "--user", "u"}, exitUsage, "are required"},
		{[]string{"enroll", "--sign-in", "--user", "u", "--provider", "p", "--schedule", "@daily"}, exitUsage, "do not go with it"},
		{[]string{"enroll", "--sign-in", "--user", "u"}, exitUsage, "--user and --provider are required"},
		{[]string{"status", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"watches", "change", "w1"}, exitUsage, "nothing to change"},
		{[]string{"completion", "fish"}, exitUsage, "unknown shell"},
		{[]string{"help"}, exitOK, "Commands:"},
		{[]string{"help", "watches", "add"}, exitOK, "--schedule"},
		// A daemon that is down: one line that says so, exit 3.
		{[]string{"--socket", missing, "status"}, exitDown, "tagwatchd is not running (no socket at " + missing + ")\n"},
		{[]string{"grants", "--socket", missing, "--json"}, exitDown, "tagwatchd is not running"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if code := run(c.args, &out, &out); code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("run(%q) = %d %q, want %d containing %q", c.args, code, out.String(), c.code, c.out)
		}
	}
	var out bytes.Buffer
	run([]string{"--socket", missing, "users"}, &out, &out)
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("daemon down printed %d lines, want one: %q", n, out.String())
	}
}

// TestHelpEverywhere checks that every command and subcommand answers
// --help with its usage and exit 0.
func TestHelpEverywhere(t *testing.T) {
	for _, c := range commandTable() {
		paths := [][]string{{c.name}}
		for _, s := range c.subs {
			paths = append(paths, []string{c.name, s.name})
		}
		for _, p := range paths {
			for _, h := range []string{"--help", "-h"} {
				var out bytes.Buffer
				args := append(append([]string{}, p...), h)
				if code := run(args, &out, &out); code != exitOK || !strings.Contains(out.String(), "Usage: tagwatchctl "+strings.Join(p, " ")) {
					t.Errorf("run(%q) = %d %q, want 0 and the usage", args, code, out.String())
				}
			}
		}
	}
}

func TestCompletion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"completion", "bash"}, &out, &out); code != exitOK {
		t.Fatalf("completion bash = %d: %s", code, out.String())
	}
	script := out.String()
	for _, w := range []string{"complete -F _tagwatchctl tagwatchctl", "watches", "replay", "--schedule", "backup"} {
		if !strings.Contains(script, w) {
			t.Errorf("completion script lacks %q", w)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	// The script parses, and completes as a shell would.
	f := filepath.Join(t.TempDir(), "c.bash")
	os.WriteFile(f, out.Bytes(), 0o644)
	for _, c := range []struct{ line, want string }{
		{"tagwatchctl wat", "watches"},
		{"tagwatchctl watches pa", "pause"},
		{"tagwatchctl watches add --sch", "--schedule"},
		{"tagwatchctl keys ro", "rotate"},
	} {
		words := strings.Fields(c.line)
		script := `source ` + f + `; COMP_WORDS=(` + strings.Join(words, " ") + `); COMP_CWORD=` +
			string(rune('0'+len(words)-1)) + `; _tagwatchctl; printf '%s\n' "${COMPREPLY[@]}"`
		got, err := exec.Command(bash, "-c", script).CombinedOutput()
		if err != nil || !strings.Contains(string(got), c.want) {
			t.Errorf("completing %q = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
}

// TestImports enforces that tagwatchctl never links the vault, bbolt or
// anything else that could open the database.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %d packages, want the real list: %q", len(deps), deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "tagwatch/vault") || strings.HasPrefix(d, "tagwatch/worker") || strings.HasPrefix(d, "tagwatch/notify") ||
			strings.HasPrefix(d, "go.etcd.io/bbolt") {
			t.Errorf("tagwatchctl depends on %s: it must talk only to the socket", d)
		}
	}
	found := false
	for _, d := range deps {
		found = found || d == "tagwatch/cmd/internal/statusapi"
	}
	if !found {
		t.Error("tagwatchctl does not use the status client")
	}
}
