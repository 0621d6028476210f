package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// The public listener on a port of the kernel's choosing: a tagwatchd
	// a developer runs on the default 127.0.0.1:8080 must not fail the tests.
	cfg := fmt.Sprintf("[daemon]\nstate_dir = %q\n\n[keys]\nmaster_key_file = %q\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[status]\nsocket = %q\n", dir, e.key, filepath.Join(dir, "status.sock"))
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
		// Unedited, the example is refused, naming what to edit (C16).
		os.WriteFile(p, doc, 0o644)
		if out, code := tagwatchdEnv(t, environ("CREDENTIALS_DIRECTORY="+creds), "check-config", "-config", p); code != exitConfig ||
			!strings.Contains(out, "still holds the example's placeholder") {
			t.Errorf("check-config unedited %s = %d, want %d naming its placeholders: %s", file, code, exitConfig, out)
		}
		// Edited, it passes.
		os.WriteFile(p, fillPlaceholders(doc), 0o644)
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

// TestDemo runs the README's demo command, with a webhook and -keep, and
// checks every step of the story: enrollment, renewals, the revocation at
// X noticed, the watch suspended, the re-consent link followed and the
// watch resumed, with no post missed or delivered twice across them; the
// progress lines, without colour on a pipe; the webhook named without its
// path; the kept vault opened again with the key kept beside it.
func TestDemo(t *testing.T) {
	t.Parallel()
	var hooks atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	const hookPath = "/hooks/s3cr3t-path-token"
	out, code := tagwatchd(t, "demo", "-duration", "45s", "-webhook", hook.URL+hookPath, "-keep")
	kept := regexp.MustCompile(`state kept in (\S+):`).FindStringSubmatch(out)
	if kept != nil {
		t.Cleanup(func() { os.RemoveAll(kept[1]) })
	}
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{"enrolled  Ada Lovelace", "enrolled  Grace Hopper", "renewed", "ran ", "match ", "delivered",
		"revoked   Grace Hopper revoked tagwatch's access at X", "noticed   grace's grant is dead",
		"link      Grace Hopper's watches suspended (1 of 1); re-consent link sent", "consented Grace Hopper allowed tagwatch again",
		"notice    tagwatch is watching #bbolt #oauth again", "progress  users 2 · renewals ",
		"ok   users enrolled: 2 (needed 2)", "ok   renewals: ", "(needed at least 1 per user)", "ok   revocation: ",
		"ok   noticed: on a ", "ok   watches suspended: 1 of Grace Hopper's 1", "ok   re-consent link: ", "ok   re-consent: ",
		"ok   resumed: ", "ok   posts while suspended: ", "every step of the story happened"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Nothing missed, nothing twice, for each user, across the revocation.
	for _, name := range []string{"Ada Lovelace", "Grace Hopper"} {
		m := regexp.MustCompile(`ok   posts for ` + name + `: (\d+) of (\d+) delivered, 0 missed, 0 twice`).FindStringSubmatch(out)
		if m == nil || m[1] != m[2] || m[1] == "0" {
			t.Errorf("demo output lacks every post for %s delivered once:\n%s", name, out)
		}
	}
	if strings.Contains(out, "MISSING") || strings.Contains(out, "\x1b[") {
		t.Errorf("demo output has a MISSING check or colour codes (auto, on a pipe):\n%s", out)
	}
	// The webhook is named by its host and fingerprint: never its path, and
	// every delivery line ends with the delivery's latency.
	host := strings.TrimPrefix(hook.URL, "http://")
	if strings.Contains(out, hookPath) || hooks.Load() == 0 || !strings.Contains(out, "to webhook at "+host+" (#") {
		t.Errorf("demo output shows the webhook's path or no delivery to it (%d requests):\n%s", hooks.Load(), out)
	}
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, " delivered notification ") && !regexp.MustCompile(` in [0-9.]+(µs|ms|s)$`).MatchString(l) {
			t.Errorf("delivery line %q does not end with its latency", l)
		}
	}
	// -keep: the vault, its master key (0600) and a configuration stay; the
	// offline command the demo prints opens the vault again.
	if kept == nil {
		t.Fatalf("demo -keep did not say where the state is:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(kept[1], "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kept master key: %v, mode %v; want it beside the vault, 0600", err, fi)
	}
	cmdLine := regexp.MustCompile(`open it again: go run ./cmd/tagwatchd (.+)`).FindStringSubmatch(out)
	if cmdLine == nil {
		t.Fatalf("demo -keep printed no command to open the vault again:\n%s", out)
	}
	list, code := tagwatchd(t, strings.Fields(cmdLine[1])...)
	if code != 0 || !strings.Contains(list, "ada") || !strings.Contains(list, "grace") || strings.Count(list, " active ") != 2 {
		t.Errorf("tagwatchd %s = %d:\n%s\nwant both watches, active", cmdLine[1], code, list)
	}
}

// TestDemoManual plays the person -manual waits for, in one browser as
// a person would: after Ada's consent the sandbox's page is signed in as
// Ada, so pressing "Authorize" on Grace's link signs in as the wrong
// account (the terminal must say so, and which account to pick); then the
// person signs out and picks Grace, and follows the re-consent link after
// the revocation (C16: the page preselected the first user and had no way
// to sign out; the terminal said nothing of the refusal).
func TestDemoManual(t *testing.T) {
	t.Parallel()
	buf := &syncBuffer{}
	cmd := exec.Command(binary, "demo", "-manual", "-duration", "45s", "-keep")
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitLine := func(expr string) []string {
		t.Helper()
		re := regexp.MustCompile(expr)
		deadline := time.Now().Add(40 * time.Second)
		for {
			if m := re.FindStringSubmatch(buf.String()); m != nil {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo output has no line matching %q:\n%s", expr, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ctx := t.Context()
	browser := newPerson()
	at := waitLine(`X sandbox at (\S+), daemon at (\S+), state in`)
	sandbox, public := strings.TrimSuffix(at[1], ","), strings.TrimSuffix(at[2], ",")
	ada := waitLine(`one-time consent link for Ada Lovelace: (\S+)`)[1]
	waitLine(`open it in a browser and, on the sandbox's page, pick @ada`)
	if err := browser.consent(ctx, ada, public, sandbox, "ada"); err != nil {
		t.Fatalf("Ada's consent: %v", err)
	}
	waitLine(`enrolled  Ada Lovelace consented in the browser`)
	grace := waitLine(`one-time consent link for Grace Hopper: (\S+)`)[1]
	waitLine(`pick @grace \(if it says you are signed in as @ada, sign out first\)`)
	if err := browser.consent(ctx, grace, public, sandbox, ""); err == nil {
		t.Fatal("Grace's link answered as the signed-in Ada was accepted")
	}
	waitLine(`refused   grace's consent: signed in at X with another account .*pick @grace`)
	if err := browser.consent(ctx, grace, public, sandbox, "grace"); err != nil {
		t.Fatalf("Grace's consent after signing out: %v", err)
	}
	waitLine(`enrolled  Grace Hopper consented in the browser`)
	relink := waitLine(`re-consent link sent to the console: (\S+)`)[1]
	waitLine(`open Grace Hopper's re-consent link above in the browser and pick @grace`)
	if err := browser.consent(ctx, relink, public, sandbox, "grace"); err != nil {
		t.Fatalf("Grace's re-consent: %v", err)
	}
	err := cmd.Wait()
	out := buf.String()
	if err != nil || !strings.Contains(out, "every step of the story happened") || strings.Contains(out, "MISSING") {
		t.Errorf("demo -manual = %v:\n%s", err, out)
	}
	// The daemon's log names the refused request's method once and its
	// route (C16: path="GET GET /enroll/{token}").
	kept := regexp.MustCompile(`state kept in (\S+):`).FindStringSubmatch(out)
	if kept == nil {
		t.Fatalf("demo -keep did not say where the state is:\n%s", out)
	}
	t.Cleanup(func() { os.RemoveAll(kept[1]) })
	log, err := os.ReadFile(filepath.Join(kept[1], "tagwatchd.log"))
	if err != nil {
		t.Fatal(err)
	}
	refused := regexp.MustCompile(`(?m)^.*msg="enrollment request refused".*reason=wrong_account.*$`).Find(log)
	if refused == nil || !bytes.Contains(refused, []byte(" method=GET path=/callback ")) || bytes.Contains(log, []byte("GET GET")) {
		t.Errorf("the refusal's log line = %q, want method=GET path=/callback, the method once:\n%s", refused, log)
	}
}
