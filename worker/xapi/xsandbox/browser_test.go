package xsandbox

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's Chromium: $TAGWATCH_CHROMIUM, else
// /usr/bin/chromium. Under CI_STRICT=1 a missing browser fails the test;
// otherwise the test is skipped with a message (as vault/enroll's).
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("TAGWATCH_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(bin); err != nil {
		if os.Getenv("CI_STRICT") == "1" {
			t.Fatalf("chromium not found at %s (.ci/run installs Debian's chromium): %v", bin, err)
		}
		t.Skipf("chromium not found at %s: apt-get install chromium chromium-driver, or run .ci/run", bin)
	}
	return bin
}

// screenshotDir is $TAGWATCH_ARTIFACTS/screenshots, else
// artifacts/screenshots at the repository root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TAGWATCH_ARTIFACTS")
	if dir == "" {
		root, err := filepath.Abs("../../..")
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSandboxPagesInBrowser drives headless Chromium through the
// sandbox's own pages as a person does: the consent page's account
// picker (nothing chosen), a consent as the second account, the same
// browser's next consent (signed in, with sign out), signing out, and the
// control page revoking that account with its button (a same-origin form
// post the cross-origin protection lets through). Each page is saved at
// phone and desktop sizes.
func TestSandboxPagesInBrowser(t *testing.T) {
	bin := chromium(t)
	dir := screenshotDir(t)
	e := newEnv(t)
	authorize := e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("st").Encode()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	shoot := func(name string) {
		t.Helper()
		for _, size := range []struct {
			suffix string
			w, h   int64
			scale  float64
		}{{"phone", 390, 844, 2}, {"desktop", 1280, 900, 1}} {
			if err := chromedp.Do(bctx, chromedp.EmulateViewport(size.w, size.h, chromedp.EmulateScale(size.scale))); err != nil {
				t.Fatalf("viewport %s: %v", size.suffix, err)
			}
			png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
			if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
				t.Fatalf("screenshot %s-%s: %v (%d bytes)", name, size.suffix, err, len(png))
			}
			path := filepath.Join(dir, name+"-"+size.suffix+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot %s", path)
		}
	}
	text := func() string {
		t.Helper()
		// A read begun while a form post navigates can wait on the
		// old document for ever: each try has its own deadline.
		for try := 0; ; try++ {
			tctx, cancel := context.WithTimeout(bctx, 3*time.Second)
			s, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			cancel()
			if err == nil {
				return s
			}
			if try == 5 {
				t.Fatalf("page text: %v", err)
			}
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v; page:\n%s", what, err, text())
		}
	}

	do("open the consent page", chromedp.Navigate(authorize), chromedp.WaitVisible(`#username`))
	if v, err := chromedp.Run(bctx, chromedp.Value(`#username`)); err != nil || v != "" {
		t.Errorf("the account picker starts at %q (%v), want nothing chosen", v, err)
	}
	shoot("sandbox-1-consent-pick")
	do("approve as bob", chromedp.SetValue(`#username`, "bob"), chromedp.Click(`button[value="authorize"]`),
		chromedp.WaitVisible(`body`))
	// The callback's query (the browser may also ask it for a favicon).
	code := func() string {
		e.cb.mu.Lock()
		defer e.cb.mu.Unlock()
		for _, q := range e.cb.got {
			if q.Get("code") != "" {
				return q.Get("code")
			}
		}
		return ""
	}
	deadline := time.Now().Add(20 * time.Second)
	for code() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no callback with a code; page:\n%s", text())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The app redeems the code: bob has a grant.
	if st, body := e.mustPost(EndpointToken, url.Values{"grant_type": {"authorization_code"}, "code": {code()},
		"redirect_uri": {e.redirectURI()}, "code_verifier": {verifier}}, true); st != 200 {
		t.Fatalf("code exchange = %d %s", st, body)
	}

	do("open the consent page again", chromedp.Navigate(authorize), chromedp.WaitVisible(`button[value="signout"]`))
	if s := text(); !strings.Contains(s, "Signed in as Bob B (@bob)") {
		t.Errorf("the second consent page does not say who is signed in:\n%s", s)
	}
	shoot("sandbox-2-consent-signed-in")
	do("sign out", chromedp.Click(`button[value="signout"]`), chromedp.WaitVisible(`#username`))
	if s := text(); strings.Contains(s, "Signed in as") {
		t.Errorf("after sign out the page still says signed in:\n%s", s)
	}

	do("open the control page", chromedp.Navigate(e.s.URL()+ControlPath), chromedp.WaitVisible(`form[action="/sandbox/revoke"] button`))
	shoot("sandbox-3-control")
	do("revoke bob", chromedp.Click(`form[action="/sandbox/revoke"] button`), chromedp.WaitVisible(`p.ok`))
	if st := e.s.Stats(); st.UserRevocations != 1 {
		t.Errorf("user revocations = %d, want 1", st.UserRevocations)
	}
	if s := text(); !strings.Contains(s, "@bob revoked the app") || strings.Contains(s, "Revoke tagwatch") {
		t.Errorf("the control page after the revocation does not say it, or still offers it:\n%s", s)
	}
	shoot("sandbox-4-control-revoked")
}
