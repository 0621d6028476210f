package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
)

// TestCheckConfigStoredWatches: check-config is a door for what the vault
// holds. A watch stored under one configuration and refused by the next
// (a higher scheduler.min_interval) is reported, one line naming it and
// the rule, exit 1; a vault a running daemon holds is said to be not
// checked, exit 0; a master key that is not the vault's is a
// configuration error naming its key, exit 78.
func TestCheckConfigStoredWatches(t *testing.T) {
	e := watchesEnv(t)
	code, out, errOut := runCLI("check-config", "-config", e.config)
	if code != 0 || !strings.Contains(out, "0 stored watches and 0 pending consent links pass") {
		t.Fatalf("check-config on an empty vault = %d %q %q, want 0 and a pass", code, out, errOut)
	}
	if code, out, errOut := runCLI("watches", "add", "-config", e.config, "-user", "u1", "-provider", "x", "-hashtags", "golang",
		"-schedule", "@every 5m", "-target", "console:"); code != 0 {
		t.Fatalf("watches add = %d %q %q", code, out, errOut)
	}

	// The next configuration asks for 10 minutes between runs.
	raw, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(raw, "\n[scheduler]\nmin_interval = \"10m\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("check-config", "-config", e.config)
	line := regexp.MustCompile(`(?m)^watch \S+ of user u1: schedule "@every 5m" runs every 5m0s; the minimum between runs of one watch is 10m0s \(scheduler.min_interval\)$`)
	if code != 1 || !line.MatchString(out) || errOut != "tagwatchd: check-config: 1 of 1 stored watch or pending consent link is refused by "+e.config+"'s rules\n" {
		t.Errorf("check-config after raising min_interval = %d %q %q, want 1 and the watch's line", code, out, errOut)
	}

	// A running daemon holds the vault: not checked, not an error.
	master, err := seal.LoadMasterKey(seal.Source{File: e.key})
	if err != nil {
		t.Fatal(err)
	}
	db := vaulttest.Open(t, vaulttest.Path(e.db), vaulttest.Master(master))
	code, out, errOut = runCLI("check-config", "-config", e.config)
	db.Close()
	if code != 0 || !strings.Contains(out, "stored watches and consent links were not checked") {
		t.Errorf("check-config on a held vault = %d %q %q, want 0 saying the watches were not checked", code, out, errOut)
	}

	// Another master key: a configuration error (78) naming the key.
	other := filepath.Join(e.dir, "other.key")
	if code, out, errOut := runCLI("keys", "generate", other); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	raw, _ = os.ReadFile(e.config)
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(raw), e.key, other, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("check-config", "-config", e.config)
	if code != exitConfig || !strings.Contains(errOut, "keys.master_key_file") || !strings.Contains(errOut, "wrong master key") {
		t.Errorf("check-config with another master key = %d %q %q, want %d naming keys.master_key_file", code, out, errOut, exitConfig)
	}
}
