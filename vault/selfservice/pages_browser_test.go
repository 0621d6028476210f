package selfservice

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/vault"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestAccountPagesInBrowser drives headless Chromium through the page: the
// sign-in page, a sign-in at the provider, the page, a watch's page, a
// change the rules refuse, the add form, the three confirmation pages,
// another user's watch, the deletion and where it ends. Each page is
// saved at the phone's and the desktop's width as
// artifacts/screenshots/account-*-{phone,desktop}.png, and fails the test
// if anything on it sticks out of the width.
func TestAccountPagesInBrowser(t *testing.T) {
	pe := newPagesEnv(t)
	long := strings.Repeat("verylonghashtag", 5)
	if _, err := pe.db.AddWatch(vault.NewWatch{UserID: "ada", Provider: "corp", Spec: vault.WatchSpec{Hashtags: []string{"sqlite", long},
		Schedule: "0 8 * * 1-5", Targets: []string{adaHook}}}, "test"); err != nil {
		t.Fatal(err)
	}
	bctx := browsertest.New(t, 3*time.Minute)
	// The first action starts the browser, which lives as long as the
	// context of that action: bctx, not a step's shorter one.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	text := func() string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text("body"))
		if err != nil {
			t.Fatalf("text of the page: %v", err)
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
	open := func(path, wait string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(pe.url+path)); err != nil {
			t.Fatalf("navigate %s: %v", path, err)
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(wait))); err != nil {
			t.Fatalf("open %s: %v; the browser is at %s:\n%s", path, err, location(), text())
		}
	}
	want := func(what string, texts ...string) {
		t.Helper()
		body := strings.ToLower(text())
		for _, s := range texts {
			if !strings.Contains(body, strings.ToLower(s)) {
				t.Errorf("%s lacks %q:\n%s", what, s, body)
			}
		}
	}

	open(Prefix+"/", "form button")
	want("the sign-in page", "Sign in with corp")
	browsertest.Shoot(t, bctx, "account-0-signin")

	// The button goes to the provider, which answers at once, and back.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("form button")), chromedp.WaitVisible(chromedp.CSS("article.item"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if loc := location(); loc != pe.url+Prefix+"/" {
		t.Errorf("signed in, the browser is at %s, want the page", loc)
	}
	want("the page", "Signed in as alice", "#golang", "every 15 minutes", "bbolt 1.4 is out", "Needs renewing", "#"+long)
	browsertest.Shoot(t, bctx, "account-1-page")

	// A button: the first watch paused, the page says so.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`article.item form[action$="/pause"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".notice.ok"))); err != nil {
		t.Fatalf("pause: %v", err)
	}
	want("the page after a pause", "Watch paused", "Resume")
	if w := pe.watch(t, pe.adaWatch); w.State != vault.WatchPaused {
		t.Errorf("the watch paused in the browser is %s", w.State)
	}
	browsertest.Shoot(t, bctx, "account-1-page-paused")

	open(Prefix+"/watches/"+pe.adaWatch, "form.edit")
	want("the watch's page", "Recent matches", "Change it", "What's new in #golang")
	browsertest.Shoot(t, bctx, "account-2-watch")

	// A schedule below the minimum: refused next to the form.
	if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#schedule"), "@every 5m"), chromedp.Click(chromedp.CSS(`form.edit button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#change-error"))); err != nil {
		t.Fatalf("submit a refused change: %v", err)
	}
	want("the refused change", "Not saved: "+rulesMessage)
	browsertest.Shoot(t, bctx, "account-3-watch-refused")

	open(Prefix+"/watches/new?provider=corp", "form.edit")
	want("the add form", "Add a watch on corp", "How often to search")
	browsertest.Shoot(t, bctx, "account-4-new")

	open(Prefix+"/watches/"+pe.adaPause+"/delete", "form button")
	want("the delete confirmation", "Delete this watch?", "#rustlang")
	browsertest.Shoot(t, bctx, "account-5-delete-watch")

	open(Prefix+"/grants/corp/revoke", "form button")
	want("the revoke confirmation", "Revoke tagwatch's access to corp?", "Your 3 watches on corp stop")
	browsertest.Shoot(t, bctx, "account-6-revoke")

	open(Prefix+"/watches/"+pe.bobWatch, "h1")
	want("another user's watch", "Page not found")
	browsertest.Shoot(t, bctx, "account-7-not-found")

	// Ada revoked tagwatch's access at X meanwhile, and X confirmed it
	// (the grant deleted): the page offers to give access again.
	out, err := pe.db.UnenrollGrant(pe.adaX.ID, vault.Unenroll{Actor: "test", Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pe.db.SettleRevocation(out.RevocationID, "test"); err != nil {
		t.Fatal(err)
	}
	open(Prefix+"/#access", "h1")
	want("the page after a revocation", "No access", "Give access again")
	browsertest.Shoot(t, bctx, "account-7-no-access")

	open(Prefix+"/delete", "form button")
	want("the delete-all confirmation", "Delete all your data?", "Your 4 watches")
	browsertest.Shoot(t, bctx, "account-8-delete")

	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("form button")), chromedp.WaitVisible(chromedp.CSS(".badge.ok"))); err != nil {
		t.Fatalf("delete all data: %v", err)
	}
	want("the deleted page", "Your data was deleted")
	if loc := location(); loc != pe.url+Prefix+"/deleted" {
		t.Errorf("after the deletion the browser is at %s", loc)
	}
	browsertest.Shoot(t, bctx, "account-9-deleted")
	if _, err := pe.db.User("ada"); err == nil {
		t.Errorf("ada still exists after the deletion")
	}
}
