package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tagwatch/vault"
	"tagwatch/vault/hydratest"
	"tagwatch/vault/seal"
	"tagwatch/worker/xapi/xsandbox/browsertest"
)

// TestAccountPageE2E is issue 14's done-when, end to end: a tagwatchd
// (runService: the configuration's checks, the listeners, every
// component) whose watch searches the X sandbox and whose self-service
// page signs people in at a real Ory Hydra. Bea enrolls at X (the
// consent in headless Chromium) and binds her Hydra identity with a
// sign-in link (on another browser: her phone). Then, in Chromium: she
// signs in at /account/ on Hydra's login page and sees her watch; pauses
// and resumes it; her page session expires (idle_timeout 5s) and the next
// click renews it with exactly one prompt=none authorization request and
// no login page (Hydra's counters); Hydra ends her provider session
// (EndSession: its back-channel logout ends the page session too) and the
// next renewal shows Hydra's login page; signed in again, a back-channel
// logout (EndSession of the new session) ends the page session while the
// watch keeps running (its cursor advances, a notification arrives) and
// the sealed grant is unchanged (sha256 before and after, read through
// the vault API: the daemon's own, then a read-only open after it stops).
func TestAccountPageE2E(t *testing.T) {
	browsertest.Chromium(t) // skip (or fail under CI_STRICT) before starting anything
	const (
		subject = "bea-corp" // Bea at Hydra
		idle    = 5 * time.Second
	)
	h := hydratest.Start(t, hydratest.Options{Subject: subject, Login: hydratest.LoginInteractive})
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := ln.Addr().String()
	public := "http://" + pub
	printed, _ := startSandbox(t, "-listen", "127.0.0.1:0", "-dir", filepath.Join(dir, "sandbox"), "-users", "ada,bea",
		"-rate", "1", "-hashtags", "golang", "-redirect", public+"/callback")

	// The page's URIs at the provider, as check-config and the README
	// say: /account/callback beside the consent pages' /callback, the
	// back-channel logout URI and the post-logout redirect URI.
	client := h.CreateClient(t, hydratest.Client{ID: "tagwatch", Secret: "corp-client-secret",
		RedirectURIs: []string{public + "/callback", public + "/account/callback"}, Scopes: []string{"openid", "offline_access"},
		BackChannelLogoutURI: public + "/account/backchannel-logout", PostLogoutRedirectURIs: []string{public + "/account/signed-out"}})
	secretFile := filepath.Join(dir, "corp.secret")
	if err := os.WriteFile(secretFile, []byte(client.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	key := filepath.Join(dir, "master.key")
	if code, out, errOut := runCLI("keys", "generate", key); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	socket := filepath.Join(dir, "status.sock")
	cfgPath := filepath.Join(dir, "tagwatch.toml")
	doc := "[daemon]\nstate_dir = " + quote(filepath.Join(dir, "state")) + "\n\n[keys]\nmaster_key_file = " + quote(key) +
		"\n\n[http]\nlisten = " + quote(pub) + "\npublic_url = " + quote(public) +
		"\n\n[status]\nsocket = " + quote(socket) + "\n\n[scheduler]\nmin_interval = \"1s\"\n\n" +
		"[account]\nsign_in = [\"corp\"]\nidle_timeout = " + quote(idle.String()) + "\n\n" +
		providerBlock(t, printed) + "\n[[provider]]\nname = \"corp\"\nkind = \"oidc\"\nissuer = " + quote(h.IssuerURL()) +
		"\nclient_id = " + quote(client.ID) + "\nclient_secret_file = " + quote(secretFile) +
		"\napi_url = " + quote(apiURLOf(t, printed)) + "\n"
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("check-config", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "account page: "+public+"/account/ (sign in with corp") ||
		!strings.Contains(out, "redirect URI "+public+"/account/callback, back-channel logout URI "+public+"/account/backchannel-logout") {
		t.Fatalf("check-config = %d %q %q, want ok showing the account page and its URIs", code, out, errOut)
	}
	if code, out, errOut := runCLI("keys", "init", "-config", cfgPath); code != 0 {
		t.Fatalf("keys init = %d %q %q", code, out, errOut)
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	bound := make(chan *operator, 1)
	go func() {
		done <- runService(ctx, cfgPath, logs, options{Console: logs, HTTPListener: ln}, func(op *operator) { bound <- op })
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	var op *operator
	select {
	case op = <-bound:
	case err := <-done:
		stopped = true
		t.Fatalf("daemon = %v before binding:\n%s", err, logs)
	}
	db := op.d.db
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tagwatchctlBin(t), append([]string{"--socket", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tagwatchctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s; the daemon's output:\n%s", what, tail(logs.String(), 60))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	linkRE := regexp.MustCompile(`(?m)^http://\S+/enroll/\S+$`)

	// Chromium: the browser Bea uses the page in, and her phone, where she
	// follows the sign-in link (its Hydra session is the phone's: the
	// browser has none when she first signs in at the page).
	browser := browsertest.New(t, 4*time.Minute)
	do := func(bctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			body, _ := chromedp.Run(bctx, chromedp.Text("body"))
			t.Fatalf("%s: %v\nthe browser is at %s, showing:\n%s\nthe daemon's output:\n%s", what, err, loc, body, tail(logs.String(), 40))
		}
	}
	at := func(bctx context.Context, what string, ok func(loc string) bool) string {
		t.Helper()
		var loc string
		eventually(what, func() bool {
			var err error
			loc, err = chromedp.Run(bctx, chromedp.Location())
			return err == nil && ok(loc)
		})
		return loc
	}
	// A browsing context's first action starts its target, which lives as
	// long as the context it ran in: not a step's timeout.
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	phone, closePhone := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer closePhone()
	if err := chromedp.Do(phone, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open the phone's browsing context: %v", err)
	}

	// Bea enrolls at X: the consent link, the sandbox's page where she
	// picks @bea.
	link := linkRE.FindString(ctl("enroll", "--user", "bea", "--provider", "x", "--hashtags", "golang", "--schedule", "@every 1s",
		"--target", "console:", "--expect", "@bea"))
	if link == "" {
		t.Fatal("tagwatchctl enroll printed no link")
	}
	do(phone, "open the consent link", chromedp.Navigate(link), chromedp.WaitVisible("form button"))
	do(phone, "continue to the sandbox", chromedp.Click("form button"), chromedp.WaitVisible(`#username`))
	do(phone, "pick @bea and authorize", chromedp.SetValue(`#username`, "bea"), chromedp.Click(`button[value="authorize"]`))
	at(phone, "the consent's success page", func(loc string) bool { return strings.HasPrefix(loc, public+"/enrolled/") })
	eventually("a notification of a #golang post", func() bool { return notifications(logs) > 0 })
	watches, err := db.ListWatches("bea")
	if err != nil || len(watches) != 1 {
		t.Fatalf("bea's watches = %v, %v; want one", watches, err)
	}
	watchID := watches[0].ID
	grant, err := db.UserGrant("bea", "x")
	if err != nil {
		t.Fatal(err)
	}

	// Bea binds her Hydra identity: a sign-in link, on her phone.
	link = linkRE.FindString(ctl("enroll", "--sign-in", "--user", "bea", "--provider", "corp"))
	if link == "" {
		t.Fatal("tagwatchctl enroll --sign-in printed no link")
	}
	do(phone, "open the sign-in link", chromedp.Navigate(link), chromedp.WaitVisible("form button"))
	do(phone, "continue to Hydra", chromedp.Click("form button"), chromedp.WaitVisible(hydratest.LoginButton))
	do(phone, "sign in at Hydra", chromedp.Click(hydratest.LoginButton))
	at(phone, "the sign-in link's success page", func(loc string) bool { return strings.HasPrefix(loc, public+"/enrolled/") })
	if u, err := db.User("bea"); err != nil || len(u.SignIns) != 1 || u.SignIns[0].Subject != subject {
		t.Fatalf("bea after the sign-in link = %+v, %v; want her Hydra identity bound", u, err)
	}
	closePhone()

	// 1. Sign in at the page: Hydra's login page, submitted; the page
	// shows the watch.
	h.ResetStats()
	watchSel := "#watch-" + watchID
	do(browser, "open the page", chromedp.Navigate(public+"/account/"), chromedp.WaitVisible(`form[action="/account/signin"] button`))
	do(browser, "sign in with corp", chromedp.Click(`form[action="/account/signin"] button`), chromedp.WaitVisible(hydratest.LoginButton))
	do(browser, "sign in at Hydra", chromedp.Click(hydratest.LoginButton), chromedp.WaitVisible(watchSel))
	text := textOf(t, browser, "main")
	if !strings.Contains(text, "#golang") || !strings.Contains(text, "Signed in as") {
		t.Errorf("the page after signing in says:\n%s\nwant bea's #golang watch", text)
	}
	if s := h.Stats(); s.Authorizations[""] != 1 || s.Authorizations["none"] != 0 || s.LoginPagesShown != 1 || s.LoginPagesSubmitted != 1 {
		t.Errorf("first sign-in: Hydra's Stats() = %+v, want one interactive authorization request and one login page", s)
	}
	firstSID := h.SessionID(subject)

	// 2. Pause and resume the watch on the page.
	do(browser, "pause", chromedp.Click(watchSel+` form[action$="/pause"] button`), chromedp.WaitVisible(watchSel+` .state.paused`))
	if w, _ := db.Watch(watchID); w.State != vault.WatchPaused {
		t.Errorf("after Pause on the page the watch is %s, want paused", w.State)
	}
	do(browser, "resume", chromedp.Click(watchSel+` form[action$="/resume"] button`), chromedp.WaitVisible(watchSel+` .state.active`))
	if w, _ := db.Watch(watchID); w.State != vault.WatchActive {
		t.Errorf("after Resume on the page the watch is %s, want active", w.State)
	}

	// 3. The page session expires; the next click renews it with exactly
	// one prompt=none request and no login page.
	time.Sleep(idle + time.Second)
	h.ResetStats()
	watchPage := public + "/account/watches/" + watchID
	do(browser, "open the watch after the session expired", chromedp.Click(watchSel+` a[href="/account/watches/`+watchID+`#change"]`))
	// The browser keeps the link's fragment through the redirects.
	at(browser, "the watch's page after a silent renewal", func(loc string) bool { return loc == watchPage+"#change" })
	do(browser, "the watch's page", chromedp.WaitVisible(`main h1 .tags`))
	s := h.Stats()
	if s.Authorizations["none"] != 1 || len(nonZero(s.Authorizations)) != 1 || s.LoginPagesShown != 0 ||
		s.LoginRequests[hydratest.LoginRequestKind{Prompt: "none", Skip: true}] != 1 {
		t.Errorf("silent renewal: Hydra's Stats() = %+v, want exactly one prompt=none authorization request, answered from Hydra's session, and no login page", s)
	}
	if sid := h.SessionID(subject); sid != firstSID {
		t.Errorf("the silent renewal opened a new Hydra session %q (was %q)", sid, firstSID)
	}

	// 4. Hydra ends Bea's provider session (its back-channel logout ends
	// the page session too): the next renewal shows Hydra's login page.
	logouts := strings.Count(logs.String(), "sessions_ended=1")
	h.EndSession(t, firstSID)
	eventually("the back-channel logout of the first session", func() bool { return strings.Count(logs.String(), "sessions_ended=1") > logouts })
	h.ResetStats()
	do(browser, "back to the page", chromedp.Navigate(public+"/account/"), chromedp.WaitVisible(hydratest.LoginButton))
	if s := h.Stats(); s.Authorizations["none"] != 1 || s.Authorizations[""] != 1 || s.LoginPagesShown != 1 {
		t.Errorf("renewal after the provider's session ended: Hydra's Stats() = %+v, want prompt=none answered login_required, then the login page", s)
	}
	do(browser, "sign in at Hydra again", chromedp.Click(hydratest.LoginButton), chromedp.WaitVisible(watchSel))
	secondSID := h.SessionID(subject)
	if secondSID == "" || secondSID == firstSID {
		t.Fatalf("Hydra's session after signing in again = %q, want a new one (first %q)", secondSID, firstSID)
	}

	// 5. A back-channel logout ends the page session, and only it: the
	// watch runs on, its grant sealed as it was.
	before := grantSum(t, db, grant.ID)
	c0 := cursorOf(t, db, watchID)
	n0 := notifications(logs)
	logouts = strings.Count(logs.String(), "sessions_ended=1")
	h.EndSession(t, secondSID)
	eventually("the back-channel logout of the second session", func() bool { return strings.Count(logs.String(), "sessions_ended=1") > logouts })
	h.ResetStats()
	do(browser, "the page after the back-channel logout", chromedp.Navigate(public+"/account/"), chromedp.WaitVisible(hydratest.LoginButton))
	if s := h.Stats(); s.Authorizations["none"] != 1 || s.LoginPagesShown != 1 {
		t.Errorf("after the back-channel logout: Hydra's Stats() = %+v, want the page to renew (prompt=none) and Hydra to ask for a login", s)
	}
	eventually("the watch running after the logout", func() bool {
		c := cursorOf(t, db, watchID)
		return c.Runs > c0.Runs && c.SinceID != c0.SinceID && notifications(logs) > n0
	})
	if w, _ := db.Watch(watchID); w.State != vault.WatchActive {
		t.Errorf("after the back-channel logout the watch is %s, want active", w.State)
	}
	if after := grantSum(t, db, grant.ID); after != before {
		t.Errorf("the back-channel logout changed the sealed grant: sha256 %x, was %x", after, before)
	}

	// The vault as the daemon left it, opened read-only: the same grant.
	stop()
	ro := openReadOnly(t, key, filepath.Join(dir, "state", "tagwatch.db"))
	if after := grantSum(t, ro, grant.ID); after != before {
		t.Errorf("the stored grant after the daemon stopped: sha256 %x, want %x", after, before)
	}
}

// grantSum is the SHA-256 of a grant's sealed fields (refresh and access
// token, as stored) and of the whole record as the vault returns it.
func grantSum(t *testing.T, db *vault.DB, id string) [sha256.Size]byte {
	t.Helper()
	g, err := db.Grant(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.SealedRefresh) == 0 || g.State != vault.GrantActive {
		t.Fatalf("grant %s is %s with %d sealed refresh bytes, want active and sealed", id, g.State, len(g.SealedRefresh))
	}
	rec, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d:%x|%d:%x|", len(g.SealedRefresh), g.SealedRefresh, len(g.SealedAccess), g.SealedAccess)
	h.Write(rec)
	return [sha256.Size]byte(h.Sum(nil))
}

func cursorOf(t *testing.T, db *vault.DB, watchID string) vault.Cursor {
	t.Helper()
	w, err := db.Watch(watchID)
	if err != nil {
		t.Fatal(err)
	}
	return w.Cursor
}

// openReadOnly opens a stopped daemon's vault read-only, as check-config
// does.
func openReadOnly(t *testing.T, keyFile, path string) *vault.DB {
	t.Helper()
	master, err := seal.LoadMasterKey(seal.Source{File: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	db, err := vault.Open(vault.Options{Path: path, Master: master, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var sandboxPostRE = regexp.MustCompile(`sandbox post \d+ #golang`)

// notifications counts the console notifications carrying a sandbox post.
func notifications(logs *syncBuffer) int { return len(sandboxPostRE.FindAllString(logs.String(), -1)) }

func textOf(t *testing.T, bctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(bctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func nonZero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// apiURLOf is the api_url of the [[provider]] block the sandbox printed.
func apiURLOf(t *testing.T, printed string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^api_url = "([^"]+)"$`).FindStringSubmatch(printed)
	if m == nil {
		t.Fatalf("the sandbox printed no api_url:\n%s", printed)
	}
	return m[1]
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
