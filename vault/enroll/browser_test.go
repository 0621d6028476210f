package enroll_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/vault"
)

// chromium returns Debian's Chromium: $TAGWATCH_CHROMIUM, else
// /usr/bin/chromium. Under CI_STRICT=1 (set by .ci/run) a missing browser
// fails the test; otherwise the test is skipped with a message.
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

// artifactDir is where screenshots go: $TAGWATCH_ARTIFACTS, else
// artifacts/screenshots at the repository root.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TAGWATCH_ARTIFACTS")
	if dir == "" {
		root, err := filepath.Abs("../..")
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

// TestConsentPagesInBrowser drives headless Chromium through a real
// enrollment: the landing page, the X sandbox's consent page, the success
// page, and a second visit that says the link was used. Screenshots of each
// page, at phone and desktop sizes, are saved as test artifacts.
func TestConsentPagesInBrowser(t *testing.T) {
	bin := chromium(t)
	dir := artifactDir(t)
	xe := newXEnv(t)
	link, rec := xe.link("ada", "x", "")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
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
			if err != nil {
				t.Fatalf("screenshot %s: %v", name, err)
			}
			if len(png) < 1000 || string(png[1:4]) != "PNG" {
				t.Fatalf("screenshot %s-%s is not a PNG (%d bytes)", name, size.suffix, len(png))
			}
			path := filepath.Join(dir, name+"-"+size.suffix+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot %s", path)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		u, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	// The landing page: who asks, what, where, which scopes; one button.
	if err := chromedp.Do(bctx, chromedp.Navigate(link), chromedp.WaitVisible("form button")); err != nil {
		t.Fatalf("open the consent link: %v", err)
	}
	body := text("body")
	for _, want := range []string{"Example Newsroom", "#golang", "#bbolt", "every 15 minutes", "ada@example.com", "tweet.read", "offline.access"} {
		if !strings.Contains(body, want) {
			t.Errorf("landing page lacks %q:\n%s", want, body)
		}
	}
	shoot("1-landing")

	// Continue: the sandbox's consent page, where the user approves.
	if err := chromedp.Do(bctx, chromedp.Click("form button"), chromedp.WaitVisible(`button[value="authorize"]`)); err != nil {
		t.Fatalf("continue to the provider: %v", err)
	}
	if loc := location(); !strings.HasPrefix(loc, xe.x.URL()+"/i/oauth2/authorize") {
		t.Errorf("after the button the browser is at %s, want the sandbox's authorize page", loc)
	}
	if c := text("body"); !strings.Contains(c, "Authorize") {
		t.Errorf("consent page text:\n%s", c)
	}
	shoot("2-consent")

	// The sandbox preselects no account (C16): the user picks theirs.
	if err := chromedp.Do(bctx, chromedp.SetValue("#username", "ada"), chromedp.Click(`button[value="authorize"]`)); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(location(), xe.url+"/enrolled/") {
		if time.Now().After(deadline) {
			t.Fatalf("browser ended at %s, want the success page; page:\n%s", location(), text("body"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := text("body"); !strings.Contains(strings.ToLower(s), "all set") {
		t.Errorf("success page text:\n%s", s)
	}
	shoot("3-success")
	g := xe.expectEnrolled("ada", rec, "1001")

	// A second visit says the link was used.
	resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(link))
	if err != nil {
		t.Fatalf("second visit: %v", err)
	}
	if resp.Status != 410 {
		t.Errorf("second visit status = %d, want 410", resp.Status)
	}
	if s := text("body"); !strings.Contains(strings.ToLower(s), "already used") {
		t.Errorf("second visit text:\n%s", s)
	}
	shoot("4-used")

	// Renewal finds the grant dead: the re-consent link it sends is bound
	// to the account's id, and its page names the account as @name (C16).
	if _, err := xe.db.MarkNeedsReconsent(g.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: xe.url + "/enroll/", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	relink, _, err := xe.svc.CreateLink(ctx, vault.LinkRequest{UserID: "ada", Provider: "x", Purpose: vault.PurposeReconsent,
		GrantID: g.ID, Expected: g.Subject, CreatedBy: "renewal"})
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(relink), chromedp.WaitVisible("form button")); err != nil {
		t.Fatalf("open the re-consent link: %v", err)
	}
	if s := text("body"); !strings.Contains(s, "sign in as @ada") || strings.Contains(s, "1001") || !strings.Contains(s, "#golang") {
		t.Errorf("re-consent page text, want @ada (not the id 1001) and the suspended watch's hashtags:\n%s", s)
	}
	shoot("5-reconsent")
}
