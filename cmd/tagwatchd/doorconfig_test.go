package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"tagwatch/vault/vaulttest/testfiles"
)

// TestOfflineDoorsRefuseWhatStartRefuses: a secret file (the master key,
// a provider's client secret or private key, a provider's CA file) that
// is missing, a FIFO, a directory or readable by others stops every door
// that takes -config alike: the start, check-config and each offline
// subcommand exit 78 with the same "file:line: key: what" line (they load
// the configuration with one function, loadConfig). Before, the offline
// subcommands exited 1 without "file:line: key", or went on.
func TestOfflineDoorsRefuseWhatStartRefuses(t *testing.T) {
	f := newCheckFiles(t)
	valid := f.config(t, "valid")
	if out, code := tagwatchdEnv(t, environ(), "keys", "init", "-config", valid); code != 0 {
		t.Fatalf("keys init = %d %q", code, out)
	}
	fifo, dir := filepath.Join(f.dir, "fifo"), filepath.Join(f.dir, "a-directory")
	testfiles.Make(t, testfiles.FIFO, fifo)
	testfiles.Make(t, testfiles.Directory, dir)
	open := func(name string, from string) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, mustRead(t, from), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	openMaster, openSecret := open("open-master.key", f.master), open("open-secret", f.secret)
	missing := filepath.Join(f.dir, "missing")
	caFile := func(p string) []string {
		return []string{`client_id = "tagwatch"`, fmt.Sprintf("client_id = \"tagwatch\"\nca_file = %q", p)}
	}
	cases := []struct {
		name  string
		pairs []string
		key   string
	}{
		{"master key missing", []string{f.master, missing}, "keys.master_key_file"},
		{"master key a FIFO", []string{f.master, fifo}, "keys.master_key_file"},
		{"master key a directory", []string{f.master, dir}, "keys.master_key_file"},
		{"master key readable by others", []string{f.master, openMaster}, "keys.master_key_file"},
		{"client secret missing", []string{f.secret, missing}, "provider[0].client_secret_file"},
		{"client secret a FIFO", []string{f.secret, fifo}, "provider[0].client_secret_file"},
		{"client secret a directory", []string{f.secret, dir}, "provider[0].client_secret_file"},
		{"client secret readable by others", []string{f.secret, openSecret}, "provider[0].client_secret_file"},
		{"private key a FIFO", []string{f.privateKey, fifo}, "provider[1].private_key_file"},
		{"CA file missing", caFile(missing), "provider[0]"},
		{"CA file a directory", caFile(dir), "provider[0]"},
		{"CA file a FIFO", caFile(fifo), "provider[0]"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := f.config(t, fmt.Sprintf("door%d", i), c.pairs...)
			want := regexp.MustCompile(`^tagwatchd: ` + regexp.QuoteMeta(cfg) + `:[1-9][0-9]*: ` + regexp.QuoteMeta(c.key) + `: `)
			check, code := tagwatchdEnv(t, environ(), "check-config", "-config", cfg)
			if code != exitConfig || !want.MatchString(check) {
				t.Fatalf("check-config = %d %q, want %d matching %s", code, check, exitConfig, want)
			}
			for _, door := range [][]string{
				{}, // the daemon
				{"keys", "status"},
				{"keys", "rotate"},
				{"keys", "rotate-master", "-new-key", f.master},
				{"damaged", "list"},
				{"damaged", "delete", "watch", "w1"},
				{"damaged", "reset", "g1"},
				{"watches", "list"},
				{"watches", "pause", "w1"},
				{"enroll", "-user", "u1", "-provider", "x", "-hashtags", "golang", "-schedule", "@hourly", "-target", "console:"},
			} {
				out, code := tagwatchdEnv(t, environ(), append(door, "-config", cfg)...)
				if code != exitConfig || out != check {
					t.Errorf("tagwatchd %s = %d %q, want %d and what check-config says: %q", strings.Join(door, " "), code, out, exitConfig, check)
				}
			}
		})
	}
}

// TestDamagedListReadsOnly: tagwatchd damaged list (and its default,
// tagwatchd damaged) lists a damaged record without changing the vault
// file, as do the other doors that only read (keys status, check-config).
// Before, the list recorded the record's first sighting and audited it:
// a listing wrote to the file.
func TestDamagedListReadsOnly(t *testing.T) {
	e, cli, id := offlineDamagedWatch(t) // damaged_test.go
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"damaged", "list"}, 0, "watch  " + id},
		{[]string{"damaged"}, 0, "watch  " + id},
		{[]string{"keys", "status"}, 0, "active data key"},
		{[]string{"check-config"}, 1, `watch "` + id + `" is damaged`},
	} {
		before := sum(t, e.db)
		code, out, errOut := cli(c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("tagwatchd %s = %d %q %q, want %d and %q", strings.Join(c.args, " "), code, out, errOut, c.code, c.out)
		}
		if sum(t, e.db) != before {
			t.Errorf("tagwatchd %s changed the vault file", strings.Join(c.args, " "))
		}
	}
	if code, out, errOut := cli("damaged", "delete", "watch", id); code != 0 {
		t.Fatalf("damaged delete = %d %q %q", code, out, errOut)
	}
}

// TestCheckConfigSaysOKOnlyWhenAllPassed: check-config's "ok" line comes
// last and only when everything passed, the stored records included; its
// counts are in the right number.
func TestCheckConfigSaysOKOnlyWhenAllPassed(t *testing.T) {
	e := watchesEnv(t)
	cli := func(args ...string) (int, string, string) { return runCLI(append(args, "-config", e.config)...) }
	code, out, errOut := cli("check-config")
	wantOK := e.config + ": ok (1 provider, vault " + e.db + ")\n"
	if code != 0 || !strings.HasSuffix(out, wantOK) || !strings.Contains(out, e.db+": 0 stored watches and 0 pending consent links pass\n") {
		t.Errorf("check-config on a sound vault = %d %q %q, want 0 ending with %q", code, out, errOut, wantOK)
	}
	var ids []string
	for _, tag := range []string{"golang", "rust"} {
		code, out, errOut := cli("watches", "add", "-user", "u1", "-provider", "x", "-hashtags", tag, "-schedule", "@every 15m", "-target", "console:")
		if code != 0 {
			t.Fatalf("watches add = %d %q %q", code, out, errOut)
		}
		ids = append(ids, strings.Fields(out)[1])
		if len(ids) == 1 {
			code, out, _ := cli("check-config")
			if want := e.db + ": 1 stored watch and 0 pending consent links pass\n"; code != 0 || !strings.Contains(out, want) {
				t.Errorf("check-config with one watch = %d %q, want %q", code, out, want)
			}
		}
	}
	for i, want := range []string{"tagwatchd: check-config: 1 stored record is damaged\n", "tagwatchd: check-config: 2 stored records are damaged\n"} {
		damageWatch(t, e.db, ids[i])
		code, out, errOut := cli("check-config")
		if code != 1 || errOut != want || strings.Contains(out, ": ok (") {
			t.Errorf("check-config with %d damaged = %d %q %q, want 1, %q and no \"ok\"", i+1, code, out, errOut, want)
		}
	}
	for _, id := range ids {
		if code, out, errOut := cli("damaged", "delete", "watch", id); code != 0 {
			t.Fatalf("damaged delete = %d %q %q", code, out, errOut)
		}
	}
	// A vault file that is not a vault: 78, and no "ok" before it.
	sound := mustRead(t, e.db)
	if err := os.WriteFile(e.db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cli("check-config")
	if code != exitConfig || out != "" || !strings.Contains(errOut, "vault file "+e.db+" is empty") {
		t.Errorf("check-config with an empty vault file = %d %q %q, want %d, nothing on stdout", code, out, errOut, exitConfig)
	}
	if err := os.WriteFile(e.db, sound, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUsageListsEveryCommandAndFlag: tagwatchd -h lists every subcommand
// (commands, and each one's own subcommands) with every flag it
// registers, and no flag it does not: usage cannot drift from the flag
// sets. Before, demo's -keep, -webhook and -color and damaged reset were
// missing.
func TestUsageListsEveryCommandAndFlag(t *testing.T) {
	code, help, _ := runCLI("-h")
	if code != 0 || help != usage {
		t.Fatalf("tagwatchd -h = %d %q, want the usage", code, help)
	}
	// The entries: "  tagwatchd WORDS ..." with their continuation lines.
	entries := map[string]string{}
	var cur string
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  tagwatchd"):
			// The command is what comes before the description (two
			// spaces or more), up to the first flag or argument.
			head, _, _ := strings.Cut(strings.TrimSpace(line), "  ")
			var words []string
			for _, w := range strings.Fields(head)[1:] {
				if !regexp.MustCompile(`^[a-z][a-z|-]*$`).MatchString(w) {
					break
				}
				words = append(words, w)
			}
			paths := []string{""}
			for _, w := range words {
				var next []string
				for _, p := range paths {
					for _, alt := range strings.Split(w, "|") {
						next = append(next, strings.TrimSpace(p+" "+alt))
					}
				}
				paths = next
			}
			cur = strings.Join(paths, "\n")
			for _, p := range paths {
				entries[p] += line + "\n"
			}
		case strings.HasPrefix(line, "   ") && cur != "":
			for _, p := range strings.Split(cur, "\n") {
				entries[p] += line + "\n"
			}
		default:
			cur = ""
		}
	}
	mentioned := func(entry string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`(?:^|[\s\[|])-([a-z][a-z-]*)`).FindAllStringSubmatch(entry, -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
		slices.Sort(out)
		return out
	}
	// What each command registers, as its -h prints it (flag.PrintDefaults).
	registered := func(args ...string) []string {
		code, out, errOut := runCLI(append(args, "-h")...)
		if code != 0 {
			t.Fatalf("tagwatchd %s -h = %d %q %q", strings.Join(args, " "), code, out, errOut)
		}
		var names []string
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(out+errOut, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
		slices.Sort(names)
		return names
	}
	// Every command, and each one's subcommands as its code lists them.
	subcommands := func(args ...string) []string {
		_, _, errOut := runCLI(args...)
		_, list, ok := strings.Cut(strings.TrimSpace(errOut), "want a subcommand: ")
		if !ok {
			t.Fatalf("tagwatchd %s said %q, want its subcommands", strings.Join(args, " "), errOut)
		}
		return strings.Split(list, ", ")
	}
	want := map[string][]string{}
	fs := flag.NewFlagSet("tagwatchd", flag.ContinueOnError)
	daemonFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { want[""] = append(want[""], f.Name) })
	slices.Sort(want[""])
	for name := range commands {
		var subs []string
		switch name {
		case "keys", "watches", "storage":
			subs = subcommands(name)
		case "damaged":
			subs = damagedCommands
		default:
			want[name] = registered(name)
			continue
		}
		for _, sub := range subs {
			want[name+" "+sub] = registered(name, sub)
		}
	}
	if len(want) < 18 {
		t.Fatalf("found %d commands to check: %v", len(want), want)
	}
	for path, flags := range want {
		entry, ok := entries[path]
		if !ok {
			t.Errorf("usage does not list tagwatchd %s", path)
			continue
		}
		if got := mentioned(entry); !slices.Equal(got, flags) {
			t.Errorf("usage lists tagwatchd %s with flags %v; it takes %v:\n%s", path, got, flags, entry)
		}
	}
	for path := range entries {
		if _, ok := want[path]; !ok {
			t.Errorf("usage lists tagwatchd %s, which does not exist", path)
		}
	}
}

// TestOfflineDoorsWrongMasterKeyExits78: a master key that is not the
// vault's is a configuration error from every door, as at start: exit 78
// (before, the offline subcommands exited 1), the vault unchanged.
func TestOfflineDoorsWrongMasterKeyExits78(t *testing.T) {
	e := watchesEnv(t)
	other := filepath.Join(e.dir, "other.key")
	if code, out, errOut := runCLI("keys", "generate", other); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	cfg := filepath.Join(e.dir, "other.toml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(mustRead(t, e.config)), e.key, other, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := sum(t, e.db)
	for _, door := range [][]string{
		{"check-config"},
		{"keys", "status"},
		{"keys", "rotate"},
		{"damaged", "list"},
		{"damaged", "delete", "watch", "w1"},
		{"watches", "list"},
		{"enroll", "-user", "u1", "-provider", "x", "-hashtags", "golang", "-schedule", "@hourly", "-target", "console:"},
	} {
		code, out, errOut := runCLI(append(door, "-config", cfg)...)
		if code != exitConfig || !strings.Contains(errOut, "wrong master key") {
			t.Errorf("tagwatchd %s with another master key = %d %q %q, want %d saying so", strings.Join(door, " "), code, out, errOut, exitConfig)
		}
	}
	if sum(t, e.db) != before {
		t.Error("a refused door changed the vault file")
	}
}
