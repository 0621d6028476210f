package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
)

// watchesEnv is a config with one provider and an initialised vault
// holding user u1 with a grant at x.
func watchesEnv(t *testing.T) env {
	t.Helper()
	e := newEnv(t)
	secretFile := filepath.Join(e.dir, "x.secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = " +
		`"` + secretFile + `"` + "\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := cmdKeys([]string{"init", "-generate", "-config", e.config}, &out, &errb); err != nil {
		t.Fatalf("keys init: %v\n%s", err, errb.String())
	}
	master, err := seal.LoadMasterKey(seal.Source{File: e.key})
	if err != nil {
		t.Fatal(err)
	}
	db := vaulttest.Open(t, vaulttest.Path(e.db), vaulttest.Master(master))
	defer db.Close()
	err = db.Update(func(tx *vault.Tx) error {
		if err := tx.PutUser(vault.User{ID: "u1"}); err != nil {
			return err
		}
		return tx.PutGrant(vault.Grant{ID: "g1", UserID: "u1", Provider: "x", Subject: "42", State: vault.GrantActive})
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func watchesCmd(t *testing.T, e env, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := cmdWatches(append(args, "-config", e.config), &out, &errb)
	return out.String() + errb.String(), err
}

func TestWatchesCommand(t *testing.T) {
	e := watchesEnv(t)
	out, err := watchesCmd(t, e, "add", "-user", "u1", "-provider", "x", "-hashtags", "golang,#rust", "-schedule", "@every 5m", "-target", "console:")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	id := strings.Fields(out)[1]
	steps := []struct {
		args []string
		want string // in the list afterwards
	}{
		// The schedule as tagwatchctl shows it: not quoted.
		{[]string{"change", "-id", id, "-schedule", "0 9 * * *", "-lang", "en"}, "  0 9 * * *  "},
		{[]string{"pause", "-id", id}, "paused"},
		{[]string{"resume", "-id", id}, "active"},
	}
	for _, s := range steps {
		if out, err := watchesCmd(t, e, append(s.args, "")[:len(s.args)]...); err != nil {
			t.Fatalf("%v: %v\n%s", s.args, err, out)
		}
		list, err := watchesCmd(t, e, "list", "-user", "u1")
		if err != nil || !strings.Contains(list, id) || !strings.Contains(list, s.want) || strings.Contains(list, `"`) {
			t.Errorf("after %v, list = %q (%v), want %q and no quotes", s.args, list, err, s.want)
		}
	}
	refused := [][]string{
		{"add", "-user", "u1", "-provider", "x", "-hashtags", "go lang", "-schedule", "@hourly", "-target", "console:"},
		{"add", "-user", "u1", "-provider", "x", "-hashtags", "golang", "-schedule", "every day", "-target", "console:"},
		{"add", "-user", "nobody", "-provider", "x", "-hashtags", "golang", "-schedule", "@hourly", "-target", "console:"},
		{"add", "-user", "u1", "-provider", "mastodon", "-hashtags", "golang", "-schedule", "@hourly", "-target", "console:"},
		{"change", "-id", id, "-hashtags", "t0,t1,t2,t3,t4,t5,t6,t7,t8,t9,t10"}, // over max_hashtags
		{"change", "-id", id, "-hashtags", strings.Repeat("a", 100) + "," + strings.Repeat("b", 100) + "," + strings.Repeat("c", 100) + "," +
			strings.Repeat("d", 100) + "," + strings.Repeat("e", 100)}, // a query over 512 characters
		{"pause", "-id", "nope"},
		{"frobnicate"},
	}
	for _, args := range refused {
		if out, err := watchesCmd(t, e, args...); err == nil {
			t.Errorf("watches %v = ok (%s), want an error", args, out)
		}
	}
	_, err = watchesCmd(t, e, "add", "-user", "u1", "-provider", "x", "-schedule", "@hourly", "-target", "console:",
		"-hashtags", strings.Repeat("a", 100)+","+strings.Repeat("b", 100)+","+strings.Repeat("c", 100)+","+strings.Repeat("d", 100)+","+strings.Repeat("e", 100))
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("add with a too-long query = %v, want a message naming the 512-character limit", err)
	}
	if out, err := watchesCmd(t, e, "delete", "-id", id); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if list, _ := watchesCmd(t, e, "list"); strings.Contains(list, id) {
		t.Errorf("deleted watch still listed:\n%s", list)
	}
}
