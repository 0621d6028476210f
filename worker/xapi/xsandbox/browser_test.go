package xsandbox

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestSandboxPagesInBrowser drives headless Chromium through the
// sandbox's own pages as a person does: the consent page's account
// picker (nothing chosen), a consent as the second account, the same
// browser's next consent (signed in, with sign out), signing out, and the
// control page revoking that account with its button (a same-origin form
// post the cross-origin protection lets through). Each page is saved at
// phone and desktop sizes.
func TestSandboxPagesInBrowser(t *testing.T) {
	e := newEnv(t)
	authorize := e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("st").Encode()
	bctx := browsertest.New(t, 2*time.Minute)
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
	browsertest.Shoot(t, bctx, "sandbox-1-consent-pick")
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
	browsertest.Shoot(t, bctx, "sandbox-2-consent-signed-in")
	do("sign out", chromedp.Click(`button[value="signout"]`), chromedp.WaitVisible(`#username`))
	if s := text(); strings.Contains(s, "Signed in as") {
		t.Errorf("after sign out the page still says signed in:\n%s", s)
	}

	do("open the control page", chromedp.Navigate(e.s.URL()+ControlPath), chromedp.WaitVisible(`form[action="/sandbox/revoke"] button`))
	browsertest.Shoot(t, bctx, "sandbox-3-control")
	do("revoke bob", chromedp.Click(`form[action="/sandbox/revoke"] button`), chromedp.WaitVisible(`p.ok`))
	if st := e.s.Stats(); st.UserRevocations != 1 {
		t.Errorf("user revocations = %d, want 1", st.UserRevocations)
	}
	if s := text(); !strings.Contains(s, "@bob revoked the app") || strings.Contains(s, "Revoke tagwatch") {
		t.Errorf("the control page after the revocation does not say it, or still offers it:\n%s", s)
	}
	browsertest.Shoot(t, bctx, "sandbox-4-control-revoked")
}
