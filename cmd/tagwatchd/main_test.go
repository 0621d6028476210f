package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tagwatchd-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tagwatchd")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tagwatchd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a state directory with a config naming a master key file.
type env struct {
	dir, config, key, db string
}

func newEnv(t *testing.T) env {
	t.Helper()
	dir := t.TempDir()
	e := env{dir: dir, config: filepath.Join(dir, "tagwatch.toml"), key: filepath.Join(dir, "master.key"), db: filepath.Join(dir, "tagwatch.db")}
	cfg := fmt.Sprintf("[daemon]\nstate_dir = %q\n\n[keys]\nmaster_key_file = %q\n\n[status]\nsocket = %q\n", dir, e.key, filepath.Join(dir, "status.sock"))
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func tagwatchd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestVersion(t *testing.T) {
	out, code := tagwatchd(t, "-version")
	if code != 0 || !strings.HasPrefix(out, "tagwatchd ") {
		t.Errorf("tagwatchd -version = %q, %d", out, code)
	}
}

// TestCheckConfig runs check-config on the example configurations, with
// the credentials they name in $CREDENTIALS_DIRECTORY as the unit gives
// them, and on a file with an unknown key.
func TestCheckConfig(t *testing.T) {
	f := newCheckFiles(t)
	creds := t.TempDir()
	for name, p := range map[string]string{"master-key": f.master, "x-client-secret": f.secret, "corp-client-key": f.privateKey} {
		if err := os.WriteFile(filepath.Join(creds, name), mustRead(t, p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../configs/*.toml")
	for _, file := range files {
		// The operator group the examples name is this machine's group.
		doc := regexp.MustCompile(`(?m)^group = ".*"$`).ReplaceAll(mustRead(t, file), []byte(fmt.Sprintf("group = %q", g.Name)))
		p := filepath.Join(t.TempDir(), filepath.Base(file))
		os.WriteFile(p, doc, 0o644)
		if out, code := tagwatchdEnv(t, environ("CREDENTIALS_DIRECTORY="+creds), "check-config", "-config", p); code != 0 {
			t.Errorf("check-config %s = %d: %s", file, code, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[daemon]\nstate_dir = \"/x\"\nlog_levle = \"info\"\n"), 0o644)
	out, code := tagwatchd(t, "check-config", "-config", bad)
	if code != exitConfig || !strings.Contains(out, bad+":3: daemon.log_levle: unknown key") {
		t.Errorf("check-config(bad) = %d %q, want exit %d naming file:3 and the key", code, out, exitConfig)
	}
}

func TestKeysLifecycle(t *testing.T) {
	e := newEnv(t)
	if out, code := tagwatchd(t, "keys", "init", "-config", e.config); code == 0 || !strings.Contains(out, "no master key") {
		t.Errorf("keys init without key = %d %q, want a refusal naming the missing key", code, out)
	}
	if _, err := os.Stat(e.db); err == nil {
		t.Fatal("keys init without a key created the vault")
	}
	out, code := tagwatchd(t, "keys", "init", "-generate", "-config", e.config)
	if code != 0 || !strings.Contains(out, "created vault") {
		t.Fatalf("keys init -generate = %d %q", code, out)
	}
	if fi, _ := os.Stat(e.key); fi.Mode().Perm() != 0o600 {
		t.Errorf("generated key mode = %04o", fi.Mode().Perm())
	}
	if out, code := tagwatchd(t, "keys", "init", "-config", e.config); code == 0 || !strings.Contains(out, "already exists") {
		t.Errorf("second keys init = %d %q, want refusal", code, out)
	}
	out, code = tagwatchd(t, "keys", "rotate", "-config", e.config)
	if code != 0 || !strings.Contains(out, "data key 2 is active") {
		t.Errorf("keys rotate = %d %q", code, out)
	}
	newKey := filepath.Join(e.dir, "next.key")
	if out, code := tagwatchd(t, "keys", "generate", newKey); code != 0 {
		t.Fatalf("keys generate = %d %q", code, out)
	}
	if out, code := tagwatchd(t, "keys", "rotate-master", "-new-key", newKey, "-config", e.config); code != 0 || !strings.Contains(out, "Replace") {
		t.Fatalf("keys rotate-master = %d %q", code, out)
	}
	// The old key no longer opens the vault, and the refusal changes nothing.
	before := sum(t, e.db)
	out, code = tagwatchd(t, "keys", "status", "-config", e.config)
	if code == 0 || !strings.Contains(out, "wrong master key") || !strings.Contains(out, "was not changed") {
		t.Errorf("keys status with old key = %d %q, want wrong master key", code, out)
	}
	if sum(t, e.db) != before {
		t.Error("vault changed after a refused open")
	}
	os.Rename(newKey, e.key)
	out, code = tagwatchd(t, "keys", "status", "-config", e.config)
	if code != 0 || !strings.Contains(out, "active data key 2") {
		t.Errorf("keys status with new key = %d %q", code, out)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startDaemon(t *testing.T, e env) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	cmd := exec.Command(binary, "-config", e.config)
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, buf
}

func TestDaemonRefusals(t *testing.T) {
	e := newEnv(t)
	if out, code := tagwatchd(t, "keys", "init", "-generate", "-config", e.config); code != 0 {
		t.Fatalf("keys init = %d %q", code, out)
	}
	first, firstOut := startDaemon(t, e)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(firstOut.String(), "tagwatchd started") {
		if time.Now().After(deadline) {
			t.Fatalf("first daemon did not start: %s", firstOut)
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("second daemon", func(t *testing.T) {
		start := time.Now()
		out, code := tagwatchd(t, "-config", e.config)
		took := time.Since(start)
		if code == 0 || !strings.Contains(out, "database is locked by another process") {
			t.Errorf("second daemon = %d %q, want the lock error", code, out)
		}
		if took > 4*time.Second {
			t.Errorf("second daemon took %v to give up, want about 1 s (lock timeout) plus start-up", took)
		}
		if first.ProcessState != nil {
			t.Error("first daemon exited")
		}
	})

	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Fatalf("first daemon exit on SIGTERM: %v\n%s", err, firstOut)
	}

	t.Run("wrong master key", func(t *testing.T) {
		before := sum(t, e.db)
		wrong := filepath.Join(e.dir, "wrong.key")
		tagwatchd(t, "keys", "generate", wrong)
		cfg, _ := os.ReadFile(e.config)
		os.WriteFile(e.config, bytes.Replace(cfg, []byte(e.key), []byte(wrong), 1), 0o644)
		defer os.WriteFile(e.config, cfg, 0o644)
		out, code := tagwatchd(t, "-config", e.config)
		if code == 0 || !strings.Contains(out, "wrong master key") {
			t.Errorf("daemon with wrong key = %d %q, want refusal", code, out)
		}
		if sum(t, e.db) != before {
			t.Error("sha256 of the vault changed after a wrong-key start")
		}
	})

	t.Run("key readable by others", func(t *testing.T) {
		os.Chmod(e.key, 0o644)
		defer os.Chmod(e.key, 0o600)
		out, code := tagwatchd(t, "-config", e.config)
		if code == 0 || !strings.Contains(out, "readable by group or others") {
			t.Errorf("daemon with 0644 key = %d %q, want refusal", code, out)
		}
	})
}

// TestDemo runs the README's demo command for long enough to see two
// renewals per user, and checks that every step of the story happened.
func TestDemo(t *testing.T) {
	t.Parallel()
	out, code := tagwatchd(t, "demo", "-duration", "45s", "-color", "never")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{"enrolled  Ada Lovelace", "enrolled  Grace Hopper", "renewed", "ran ", "match ", "delivered",
		"ok   users enrolled: 2 of 2", "every step of the story happened"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("demo output has colour codes with -color never")
	}
}
