package main

import (
	"bytes"
	bin "encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
	"tagwatch/vault/vaulttest/testfiles"
)

// damagedEnv is a stopped daemon's state directory whose master key
// opens a vault of about 1 MiB (users with grants and watches, then audit
// events); good is that vault's file, outside the configured path.
func damagedEnv(t *testing.T) (env, []byte) {
	t.Helper()
	e := newEnv(t)
	var out, errb bytes.Buffer
	if err := cmdKeys([]string{"generate", e.key}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	master, err := seal.LoadMasterKey(seal.Source{File: e.key})
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "good.db")
	db, err := vault.Open(vault.Options{Path: good, Master: master, Create: true, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		vaulttest.Enroll(t, db, vaulttest.Enrollment{User: fmt.Sprintf("u%d", i)})
	}
	for {
		img, _ := os.ReadFile(good)
		if len(img) > 0 && used(img) >= 1<<20 {
			break
		}
		if err := db.RecordAudit(vault.AuditEvent{Kind: "test_padding", Actor: "test", Detail: strings.Repeat("p", 8<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	return e, img
}

// used is page size × high-water mark of the header page bbolt uses.
func used(img []byte) int {
	ps := int(bin.NativeEndian.Uint32(img[16+8:]))
	m := 16
	if len(img) >= ps+80 && bin.NativeEndian.Uint64(img[ps+16+48:]) > bin.NativeEndian.Uint64(img[16+48:]) {
		m = ps + 16
	}
	return ps * int(bin.NativeEndian.Uint64(img[m+40:]))
}

// TestDamagedVaultExits78 (C05) runs the real binary, the daemon and
// every offline door that opens the vault, on each kind of thing that is
// not a usable vault file at the vault path: each exits 78 (the unit's
// RestartPreventExitStatus=) with one message naming the path, what was
// found and a hint, and leaves what is there unchanged. Today: a Go panic
// inside bbolt or "fatal error: fault", exit 2, or a hang.
func TestDamagedVaultExits78(t *testing.T) {
	e, img := damagedEnv(t)
	ps := int(bin.NativeEndian.Uint32(img[16+8:]))
	size := used(img)
	doors := [][]string{
		{"-config", e.config},
		{"keys", "status", "-config", e.config},
		{"keys", "rotate", "-config", e.config},
		{"check-config", "-config", e.config},
		{"watches", "list", "-config", e.config},
		{"damaged", "list", "-config", e.config},
		{"keys", "init", "-config", e.config},
	}
	type badCase struct {
		name string
		make func(path string)
		want string
	}
	write := func(b []byte) func(string) {
		return func(p string) {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cut := func(n int) badCase {
		return badCase{fmt.Sprintf("cut to %d", n), write(img[:n]), fmt.Sprintf("is cut short: %d bytes, its header says ", n)}
	}
	metas := bytes.Clone(img)
	metas[16+60]++
	metas[ps+16+60]++
	cases := []badCase{
		cut(size / 2), cut(2 * ps), cut(3 * ps), cut(2*ps + ps/2), cut(ps - 1), cut(ps), cut(size - 1),
		{"one byte", write(img[:1]), "is cut short: 1 byte, too few to hold a vault's header"},
		{"empty", write(nil), "is empty (0 bytes)"},
		{"random", write(bytes.Repeat([]byte{0x5a, 0x13, 0xc7, 0x88}, 4096)), "is not a vault: 16384 bytes of unrecognised content"},
		{"sqlite", write(append([]byte("SQLite format 3\x00"), make([]byte, 8176)...)), "is not a vault: an SQLite database"},
		{"both header pages", write(metas), "has both header pages damaged"},
		{"another program's bbolt", func(p string) {
			b, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("sessions")); return err })
			b.Close()
		}, `is a bbolt database without a tagwatch keyring, of another program (its buckets: "sessions")`},
	}
	// Things that are not regular files; a dangling link is something
	// there too: never "no vault yet" (check-config said so and exited 0;
	// the start warned it would create one).
	for _, nf := range vaulttest.NotFiles {
		cases = append(cases, badCase{string(nf.Kind), func(p string) { testfiles.Make(t, nf.Kind, p) }, nf.Says})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.RemoveAll(e.db)
			c.make(e.db)
			t.Cleanup(func() { os.RemoveAll(e.db) })
			before := testfiles.State(t, e.db)
			for _, args := range doors {
				out, code := tagwatchdEnv(t, environ(), args...)
				door := strings.Join(args[:len(args)-2], " ")
				if door == "" {
					door = "(the daemon)"
				}
				if code != exitConfig {
					t.Errorf("tagwatchd %s = exit %d, want %d:\n%s", door, code, exitConfig, out)
				}
				if !strings.Contains(out, "vault file "+e.db+" "+c.want) || !strings.Contains(out, "tagwatchd has") ||
					strings.Contains(out, "panic") || strings.Contains(out, "goroutine") || strings.Contains(out, "no vault yet") {
					t.Errorf("tagwatchd %s said:\n%s\nwant the path, %q and a hint", door, out, c.want)
				}
				if after := testfiles.State(t, e.db); after != before {
					t.Fatalf("tagwatchd %s changed %s: %s -> %s", door, e.db, before, after)
				}
			}
		})
	}
}

// TestSecretPathNotAFileExits78: a secret path (the master key, a client
// secret, a private key, the link key) that is not a regular file stops
// check-config and the start at once with 78, naming the setting, the
// path and what is there. Today: a FIFO there blocks both for ever.
func TestSecretPathNotAFileExits78(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	testfiles.Make(t, testfiles.FIFO, fifo)
	key := filepath.Join(dir, "master.key")
	var out, errb bytes.Buffer
	if err := cmdKeys([]string{"generate", key}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "x.secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	base := fmt.Sprintf("[daemon]\nstate_dir = %q\n\n[status]\nsocket = %q\n\n", dir, filepath.Join(dir, "status.sock"))
	provider := func(auth, key, path string) string {
		return fmt.Sprintf("[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_auth = %q\n%s = %q\n", auth, key, path)
	}
	for _, c := range []struct {
		name, cfg, key string
	}{
		{"master key", fmt.Sprintf("[keys]\nmaster_key_file = %q\n", fifo), "keys.master_key_file"},
		{"master key directory", fmt.Sprintf("[keys]\nmaster_key_file = %q\n", dir), "keys.master_key_file"},
		{"client secret", fmt.Sprintf("[keys]\nmaster_key_file = %q\n\n", key) + provider("client_secret_basic", "client_secret_file", fifo), "provider[0].client_secret_file"},
		{"link key", fmt.Sprintf("[keys]\nmaster_key_file = %q\n\n[http]\nlink_key_file = %q\n\n", key, fifo) + provider("client_secret_basic", "client_secret_file", secret), "http.link_key_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "tagwatch.toml")
			os.WriteFile(cfg, []byte(base+c.cfg), 0o644)
			for _, args := range [][]string{{"check-config", "-config", cfg}, {"-config", cfg}} {
				out, code := tagwatchdEnv(t, environ(), args...)
				if code != exitConfig || !strings.Contains(out, ": "+c.key+": read secret file ") || !strings.Contains(out, ", not a regular file") {
					t.Errorf("tagwatchd %s = %d:\n%s\nwant %d naming %s and what is there", args[0], code, out, exitConfig, c.key)
				}
			}
		})
	}
}
