package enroll_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestPagesFitPhone: at a phone's width nothing of a page is cut off on
// the right, even when a value shown on it is one long word (a user
// named by an email address, a long hashtag).
func TestPagesFitPhone(t *testing.T) {
	xe := newXEnv(t)
	w := testWatch
	w.Hashtags = []string{"golang", strings.Repeat("averylonghashtag", 4)}
	long := "ada.lovelace.countess.of.lovelace.and.analytical.engine@example-newsroom.example.org"
	link, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "longword", UserName: long,
		Provider: "x", Expected: "@" + strings.Repeat("a", 15), Watch: &w, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	bctx := browsertest.New(t, 2*time.Minute)
	if err := browsertest.Use(bctx, browsertest.Phone); err != nil {
		t.Fatal(err)
	}
	for _, page := range []struct{ name, url string }{
		{"landing", link},
		{"unknown link", xe.url + "/enroll/" + strings.Repeat("x", 43)},
	} {
		if err := chromedp.Do(bctx, chromedp.Navigate(page.url), chromedp.WaitReady("body")); err != nil {
			t.Fatalf("open the %s page: %v", page.name, err)
		}
		if page.name == "landing" {
			if body, err := chromedp.Run(bctx, chromedp.Text("body")); err != nil || !strings.Contains(strings.ReplaceAll(body, "\n", ""), long) {
				t.Errorf("landing page does not show the user's name %q (%v):\n%s", long, err, body)
			}
		}
		browsertest.FitsWidth(t, bctx, "the "+page.name+" page at 390 px")
	}
}

// TestConsentPagesInBrowser drives headless Chromium through a real
// enrollment: the landing page, the X sandbox's consent page, the success
// page, and a second visit that says the link was used. Screenshots of each
// page, at phone and desktop sizes, are saved as test artifacts.
func TestConsentPagesInBrowser(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("ada", "x", "")
	bctx := browsertest.New(t, 2*time.Minute)
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
	for _, want := range []string{"Example Newsroom", "#golang", "#bbolt", "every 15 minutes", notify.TargetLabel("mailto:ada@example.com"),
		"tweet.read", "offline.access"} {
		if !strings.Contains(body, want) {
			t.Errorf("landing page lacks %q:\n%s", want, body)
		}
	}
	browsertest.Shoot(t, bctx, "1-landing")

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
	browsertest.Shoot(t, bctx, "2-consent")

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
	browsertest.Shoot(t, bctx, "3-success")
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
	browsertest.Shoot(t, bctx, "4-used")

	// Renewal finds the grant dead: the re-consent link it sends is bound
	// to the account's id, and its page names the account as @name (C16).
	if _, err := xe.db.MarkNeedsReconsent(g.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: xe.url + "/enroll/", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	relink, _, err := xe.svc.CreateLink(bctx, vault.LinkRequest{UserID: "ada", Provider: "x", Purpose: vault.PurposeReconsent,
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
	browsertest.Shoot(t, bctx, "5-reconsent")
}
