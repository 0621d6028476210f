package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/worker/xapi/xsandbox"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestSandboxServiceWithDaemon is issue 13's service path as the README
// tells it, without an X account: tagwatchd sandbox; a daemon configured
// with the block it prints (check-config ok); tagwatchctl enroll; the
// consent in headless Chromium, picking the second sandbox account; a
// notification; the user revoking tagwatch on the sandbox's control page;
// the daemon noticing, suspending the watch and sending the re-consent
// link.
func TestSandboxServiceWithDaemon(t *testing.T) {
	browsertest.Chromium(t) // skip (or fail under CI_STRICT) before starting anything
	dir := t.TempDir()
	// The daemon's public port, held until it starts.
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := hold.Addr().String()
	public := "http://" + pub
	printed, sb := startSandbox(t, "-listen", "127.0.0.1:0", "-dir", filepath.Join(dir, "sandbox"), "-users", "ada,bea",
		"-rate", "20", "-hashtags", "golang", "-redirect", public+"/callback", "-token-ttl", "20s")

	key := filepath.Join(dir, "master.key")
	if code, out, errOut := runCLI("keys", "generate", key); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	socket := filepath.Join(dir, "status.sock")
	cfgPath := filepath.Join(dir, "tagwatch.toml")
	doc := "[daemon]\nstate_dir = " + quote(filepath.Join(dir, "state")) + "\n\n[keys]\nmaster_key_file = " + quote(key) +
		"\n\n[http]\nlisten = " + quote(pub) + "\npublic_url = " + quote(public) +
		"\n\n[status]\nsocket = " + quote(socket) + "\n\n[scheduler]\nmin_interval = \"1s\"\n\n" + providerBlock(t, printed)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI("check-config", "-config", cfgPath); code != 0 || !strings.Contains(out+errOut, "ok") {
		t.Fatalf("check-config = %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runCLI("keys", "init", "-config", cfgPath); code != 0 {
		t.Fatalf("keys init = %d %q %q", code, out, errOut)
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	bound := make(chan *operator, 1)
	hold.Close()
	go func() {
		done <- runService(ctx, cfgPath, logs, options{Console: logs}, func(op *operator) { bound <- op })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	})
	select {
	case <-bound:
	case err := <-done:
		t.Fatalf("daemon = %v before binding:\n%s", err, logs)
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tagwatchctlBin(t), append([]string{"--socket", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tagwatchctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	waitLog := func(what string, re *regexp.Regexp) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if m := re.FindString(logs.String()); m != "" {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s in the daemon's output:\n%s", what, logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	out := ctl("enroll", "--user", "bea", "--provider", "x", "--hashtags", "golang", "--schedule", "@every 1s",
		"--target", "console:", "--expect", "@bea")
	link := regexp.MustCompile(`(?m)^http://\S+/enroll/\S+$`).FindString(out)
	if link == "" {
		t.Fatalf("tagwatchctl enroll printed no link:\n%s", out)
	}

	// The consent, in a browser: the landing page, the sandbox's page
	// where the person picks @bea, the success page.
	browser := browsertest.New(t, 2*time.Minute)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open the link", chromedp.Navigate(link), chromedp.WaitVisible("form button"))
	do("continue to the sandbox", chromedp.Click("form button"), chromedp.WaitVisible(`#username`))
	do("pick @bea and authorize", chromedp.SetValue(`#username`, "bea"), chromedp.Click(`button[value="authorize"]`))
	deadline := time.Now().Add(30 * time.Second)
	for {
		loc, err := chromedp.Run(browser, chromedp.Location())
		if err == nil && strings.HasPrefix(loc, public+"/enrolled/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser ended at %s (%v), want the success page:\n%s", loc, err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The watch runs and a notification carries a generated post.
	waitLog("notification of a #golang post", regexp.MustCompile(`sandbox post \d+ #golang`))
	if g := ctl("grants"); !strings.Contains(g, "@bea") || !strings.Contains(g, "active") {
		t.Errorf("grants after the consent:\n%s", g)
	}

	// Bea revokes tagwatch at the sandbox, on its control page.
	do("open the control page", chromedp.Navigate(sb.URL()+xsandbox.ControlPath), chromedp.WaitVisible(`form[action="/sandbox/revoke"] button`))
	do("revoke", chromedp.Click(`form[action="/sandbox/revoke"] button`), chromedp.WaitVisible(`p.ok`))
	if st := sb.Stats(); st.UserRevocations != 1 {
		t.Fatalf("sandbox user revocations = %d, want 1", st.UserRevocations)
	}

	// The daemon notices on its next run or refresh: the watch is
	// suspended and bea is sent a re-consent link.
	waitLog("re-consent notification", regexp.MustCompile(`(?s)needs your permission again.*?http://\S+/enroll/\S+`))
	deadline = time.Now().Add(30 * time.Second)
	for {
		w := ctl("watches", "list")
		if strings.Contains(w, "suspended (needs_reconsent)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch is not suspended after the revocation:\n%s", w)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
