package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault/pgtest"
)

// TestConsentAcrossDaemonProcesses: two tagwatchd on one PostgreSQL
// database and one public URL (as behind a load balancer): daemon A in
// this process, daemon B a process of its own, each on its own listener.
// A consent link made on A is opened and its button pressed on A, its
// continue page loaded on B, and the provider's redirect (to the public
// callback) reaches B: B finishes it, and A's status socket shows the
// grant. The callback replayed on A or on B is refused.
func TestConsentAcrossDaemonProcesses(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	// Access tokens that outlive the test: neither daemon refreshes.
	a := newSvcTTL(t, "\n[storage]\nengine = \"postgres\"\ndsn = \""+dsn+"\"\n", false, 2*time.Hour)

	// B's configuration: A's, with its own listener (behind the public
	// URL's load balancer, a trusted proxy), state directory, status
	// socket and metrics port; the same public URL, master key, provider
	// and database.
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	bListen, bMetrics, bDir := free(), free(), t.TempDir()
	bSocket := filepath.Join(bDir, "run", "status.sock")
	pubA := strings.TrimPrefix(a.public, "http://")
	text := string(cfg)
	for old, repl := range map[string]string{
		// The load balancer is on loopback: B trusts it.
		"listen = \"" + pubA + "\"":              "listen = \"" + bListen + "\"\ntrusted_proxies = [\"127.0.0.1\"]",
		"state_dir = \"" + a.dir + "\"":          "state_dir = \"" + bDir + "\"",
		"socket = \"" + a.socket + "\"":          "socket = \"" + bSocket + "\"",
		"metrics_listen = \"" + a.metrics + "\"": "metrics_listen = \"" + bMetrics + "\"",
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("A's configuration has no %s:\n%s", old, text)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	bConfig := filepath.Join(filepath.Dir(a.config), "tagwatch-b.toml")
	if err := os.WriteFile(bConfig, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	a.start(0)
	bOut := &syncBuffer{}
	b := exec.Command(binary, "-config", bConfig)
	b.Stdout, b.Stderr = bOut, bOut
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Process.Kill(); b.Wait() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon B's output:\n%s\ndaemon A's log:\n%s", bOut, a.logs)
		}
	})
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(bOut.String(), "tagwatchd started"); {
		if time.Now().After(deadline) || b.ProcessState != nil {
			t.Fatalf("daemon B did not start:\n%s", bOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	urlB := "http://" + bListen
	onB := func(u string) string {
		t.Helper()
		if !strings.HasPrefix(u, a.public+"/") {
			t.Fatalf("%q is not on the public URL %s", u, a.public)
		}
		return urlB + strings.TrimPrefix(u, a.public)
	}

	var er statusapi.EnrollResponse
	a.ctlJSON(&er, "enroll", "--user", "ada", "--provider", "x", "--hashtags", "golang", "--schedule", "@every 1m",
		"--target", "console:", "--name", "Ada", "--expect", "@ada")
	br := browse(t)
	if code, _ := doReq(t, br, "GET", er.Link); code != http.StatusOK {
		t.Fatalf("landing page on A = %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, er.Link, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := br.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/continue?state=") {
		t.Fatalf("POST landing on A = %d %q, want a 303 to the continue page", resp.StatusCode, loc)
	}
	auth, _, err := followContinue(context.Background(), br, urlB+"/", loc)
	if err != nil || !strings.HasPrefix(auth, a.x.URL()) {
		t.Fatalf("continue page on B = %q, %v; want the way to X", auth, err)
	}
	a.x.SetAutoApprove("1001")
	code, callback := doReq(t, br, "GET", auth)
	a.x.SetAutoApprove("")
	if code != http.StatusFound || !strings.HasPrefix(callback, a.public+"/callback?") {
		t.Fatalf("authorize = %d %q, want a redirect to the public callback", code, callback)
	}
	if code, loc := doReq(t, br, "GET", onB(callback)); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/enrolled/") {
		t.Fatalf("callback on B = %d %q, want the success page", code, loc)
	}
	// B's log line reaches its output through a pipe, possibly after
	// the answer reached the browser.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(bOut.String(), "enrollment completed") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(bOut.String(), "enrollment completed") || strings.Contains(a.logs.String(), "enrollment completed") {
		t.Errorf("daemon B did not log the completion (or A did too)")
	}
	var grants []statusapi.Grant
	a.ctlJSON(&grants, "grants")
	if len(grants) != 1 || grants[0].State != "active" || grants[0].UserID != "ada" || grants[0].Username != "ada" {
		t.Fatalf("grants on A after the consent finished on B = %+v", grants)
	}
	for _, u := range []string{callback, onB(callback)} {
		if code, _ := doReq(t, br, "GET", u); code != http.StatusBadRequest {
			t.Errorf("callback replayed at %s = %d, want 400", u, code)
		}
	}
	a.ctlJSON(&grants, "grants")
	if len(grants) != 1 {
		t.Errorf("grants after the replays = %+v, want the one", grants)
	}

	b.Process.Signal(syscall.SIGTERM)
	if err := b.Wait(); err != nil {
		t.Errorf("daemon B on SIGTERM: %v", err)
	}
	if err := a.stop(); err != nil {
		t.Error(err)
	}
}
