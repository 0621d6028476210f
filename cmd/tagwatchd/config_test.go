package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/seal"
)

// checkFiles is a directory with every file a full configuration names,
// each valid: a master key, a client secret, an OIDC client's private key,
// a webhook secret, a link key and a TLS pair.
type checkFiles struct {
	dir, master, secret, privateKey, webhook, linkKey, cert, key string
}

func newCheckFiles(t *testing.T) checkFiles {
	t.Helper()
	dir := t.TempDir()
	f := checkFiles{dir: dir}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, enc, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	f.master = write("master.key", enc)
	f.secret = write("client-secret", []byte("s3cret\n"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	f.privateKey = write("client-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f.webhook = write("webhook-secret", []byte(strings.Repeat("w", 32)))
	f.linkKey = write("link-key", []byte(strings.Repeat("l", 32)))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ec.PublicKey, ec)
	if err != nil {
		t.Fatal(err)
	}
	f.cert = write("tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}))
	f.key = write("tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	return f
}

// config returns a full valid configuration, with old replaced by new in
// it (pairs), and writes it to a file.
func (f checkFiles) config(t *testing.T, name string, pairs ...string) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`[daemon]
state_dir = %[1]q
shutdown_timeout = "5s"

[keys]
master_key_file = %[2]q

[http]
listen = "127.0.0.1:0"
public_url = "https://tagwatch.example.org"
tls_cert_file = %[3]q
tls_key_file = %[4]q
link_key_file = %[5]q

[status]
socket = %[6]q
group = %[7]q

[enroll]
link_ttl = "72h"

[notify.smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "tagwatch@example.org"

[[notify.webhook]]
url = "https://hooks.example.org/tagwatch"
secret_file = %[8]q

[[provider]]
name = "x"
kind = "x"
client_id = "tagwatch"
client_secret_file = %[9]q

[[provider]]
name = "corp"
kind = "oidc"
issuer = "https://id.example.org"
api_url = "https://search.example.org"
client_id = "tagwatch"
client_auth = "private_key_jwt"
private_key_file = %[10]q
`, f.dir, f.master, f.cert, f.key, f.linkKey, filepath.Join(f.dir, "status.sock"), g.Name, f.webhook, f.secret, f.privateKey)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			t.Fatalf("config has no %q to replace", pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	p := filepath.Join(f.dir, name+".toml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tagwatchdEnv runs the binary with env instead of the test's environment
// and gives up after a minute (a daemon that starts is a failure here).
func tagwatchdEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// environ is the test's environment without $CREDENTIALS_DIRECTORY,
// plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CREDENTIALS_DIRECTORY=") {
			env = append(env, e)
		}
	}
	return append(env, extra...)
}

// TestCheckConfigRefusesWhatStartRefuses feeds one table of configurations
// to check-config and to the daemon's start (C14): each is refused by
// both, with the same "file:line: key: what" message and exit status 78,
// before the vault is created.
func TestCheckConfigRefusesWhatStartRefuses(t *testing.T) {
	f := newCheckFiles(t)
	bad := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := bad("open-master.key", mustRead(t, f.master), 0o644)
	empty := bad("empty-secret", nil, 0o600)
	short := bad("short-secret", []byte("short"), 0o600)
	garbage := bad("garbage.pem", []byte("not a key"), 0o600)
	missing := filepath.Join(f.dir, "missing")
	credDir := t.TempDir()
	cases := []struct {
		name  string
		pairs []string
		env   []string
		key   string
		msg   string
	}{
		{"public url with a query", []string{`"https://tagwatch.example.org"`, `"http://127.0.0.1:18181/tw?x=1"`}, nil,
			"http.public_url", "must not have a query"},
		// Trial 14: a loopback public_url on another port than listen.
		{"public url on another loopback port", []string{`listen = "127.0.0.1:0"` + "\npublic_url = \"https://tagwatch.example.org\"",
			`listen = "127.0.0.1:18180"` + "\npublic_url = \"https://127.0.0.1:18181\""}, nil,
			"http.public_url", `"https://127.0.0.1:18181" is port 18181 on loopback, but http.listen (line 9) is "127.0.0.1:18180"`},
		{"link ttl over the max", []string{`"72h"`, `"876000h"`}, nil, "enroll.link_ttl", "must be from 1m to 720h (30 days), got 876000h"},
		{"link ttl under the min", []string{`"72h"`, `"30s"`}, nil, "enroll.link_ttl", "must be from 1m to 720h (30 days), got 30s"},
		{"bare number duration", []string{`shutdown_timeout = "5s"`, `shutdown_timeout = 5`}, nil,
			"daemon.shutdown_timeout", "a bare number has no unit"},
		{"master key missing", []string{f.master, missing}, nil, "keys.master_key_file", "does not exist"},
		{"master key readable by others", []string{f.master, open}, nil, "keys.master_key_file", "readable by group or others"},
		// The neighbour: a credential outside systemd.
		{"credential without systemd", []string{fmt.Sprintf("master_key_file = %q", f.master), `master_key_credential = "master-key"`}, nil,
			"keys.master_key_credential", "$CREDENTIALS_DIRECTORY is not set"},
		{"credential missing", []string{fmt.Sprintf("master_key_file = %q", f.master), `master_key_credential = "master-key"`},
			[]string{"CREDENTIALS_DIRECTORY=" + credDir}, "keys.master_key_credential", "does not exist"},
		{"client secret missing", []string{f.secret, missing}, nil, "provider[0].client_secret_file", "no such file"},
		{"client secret empty", []string{f.secret, empty}, nil, "provider[0].client_secret_file", "is empty"},
		{"provider ca file missing", []string{`client_id = "tagwatch"`, fmt.Sprintf("client_id = \"tagwatch\"\nca_file = %q", missing)}, nil,
			"provider[0]", "ca file"},
		{"private key garbage", []string{f.privateKey, garbage}, nil, "provider[1].private_key_file", "no PEM block"},
		{"webhook secret too short", []string{f.webhook, short}, nil, "notify.webhook[0].secret_file", "at least 24"},
		{"link key too short", []string{f.linkKey, short}, nil, "http.link_key_file", "at least 32"},
		{"tls pair missing", []string{f.cert, missing}, nil, "http.tls_cert_file", "no such file"},
		{"operator group unknown", []string{"group = ", "group = \"no-such-group-tw\"\n#"}, nil, "status.group", "no-such-group-tw"},
		{"smtp none off loopback", []string{`host = "127.0.0.1"`, `host = "mail.example.org"`}, nil, "notify.smtp", "only on loopback"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := f.config(t, fmt.Sprintf("case%d", i), c.pairs...)
			want := regexp.MustCompile(`^tagwatchd: ` + regexp.QuoteMeta(cfg) + `:[1-9][0-9]*: ` + regexp.QuoteMeta(c.key) + `: .*` + regexp.QuoteMeta(c.msg))
			env := environ(c.env...)
			check, checkCode := tagwatchdEnv(t, env, "check-config", "-config", cfg)
			start, startCode := tagwatchdEnv(t, env, "-config", cfg)
			if checkCode != exitConfig || !want.MatchString(check) {
				t.Errorf("check-config = %d %q, want %d matching %s", checkCode, check, exitConfig, want)
			}
			if startCode != exitConfig || !want.MatchString(start) {
				t.Errorf("start = %d %q, want %d matching %s", startCode, start, exitConfig, want)
			}
			if strings.Count(check, missing) > 1 {
				t.Errorf("check-config said %q: the path twice", check)
			}
			if check != start {
				t.Errorf("check-config said %q, start said %q: want the same", check, start)
			}
			if _, err := os.Stat(filepath.Join(f.dir, "tagwatch.db")); err == nil {
				t.Error("a refused start created the vault")
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		// Everything above, valid: check-config passes without network
		// (the OIDC provider's discovery is left to the start).
		cfg := f.config(t, "valid")
		if out, code := tagwatchdEnv(t, environ(), "check-config", "-config", cfg); code != 0 || !strings.Contains(out, ": ok (2 providers") {
			t.Errorf("check-config(valid) = %d %q, want ok", code, out)
		}
		// The same file through credentials, as under systemd.
		for name, p := range map[string]string{"master-key": f.master, "x-secret": f.secret} {
			if err := os.WriteFile(filepath.Join(credDir, name), mustRead(t, p), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg = f.config(t, "creds", fmt.Sprintf("master_key_file = %q", f.master), `master_key_credential = "master-key"`,
			fmt.Sprintf("client_secret_file = %q", f.secret), `client_secret_credential = "x-secret"`)
		if out, code := tagwatchdEnv(t, environ("CREDENTIALS_DIRECTORY="+credDir), "check-config", "-config", cfg); code != 0 {
			t.Errorf("check-config(credentials) = %d %q, want ok", code, out)
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConfigVaultOpenErrorNamesPathOnce: the vault's path once in an
// error, not "vault: open P: open P: ..." (C15).
func TestConfigVaultOpenErrorNamesPathOnce(t *testing.T) {
	e := newEnv(t)
	if out, code := tagwatchd(t, "keys", "generate", e.key); code != 0 {
		t.Fatalf("keys generate = %d %q", code, out)
	}
	// A directory where the vault's file should be.
	if err := os.Mkdir(e.db, 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := tagwatchd(t, "keys", "status", "-config", e.config)
	if code != exitConfig || strings.Count(out, e.db) != 1 || !strings.Contains(out, "vault file "+e.db+" is a directory") {
		t.Errorf("keys status with a directory for a vault = %d %q, want one error naming %s once", code, out, e.db)
	}
}
