package main

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"tagwatch/vault"
)

// TestAccountNotMounted: without [account] the daemon serves no page at
// /account/, and check-config says nothing of one.
func TestAccountNotMounted(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	if code, _ := doReq(t, browse(t), "GET", s.public+"/account/"); code != http.StatusNotFound {
		t.Errorf("GET /account/ without [account] = %d, want 404", code)
	}
	if code, out, errOut := runCLI("check-config", "-config", s.config); strings.Contains(out+errOut, "account page") {
		t.Errorf("check-config without [account] = %d %q, want no account page", code, out)
	}
}

// TestAccountWiring: with [account] (sign-in with X, the sandbox), the
// daemon mounts the page beside the consent pages and wires it: a person
// who consented at X signs in there with X (the redirect URI
// /account/callback), sees their watch with its schedule in words and
// its target redacted, pauses it (the scheduler drops it: audited as the
// user page) and resumes it (scheduled again), and deletes their data
// (the daemon's deleteUser: the user gone, the watch unscheduled, a
// confirmation queued). check-config shows the page and the URI to
// register at X (no logout URIs: X has no OpenID Connect).
func TestAccountWiring(t *testing.T) {
	s := newSvc(t, "\n[account]\nsign_in = [\"x\"]\n", false)
	code, out, errOut := runCLI("check-config", "-config", s.config)
	if code != 0 || !strings.Contains(out, "account page: "+s.public+"/account/ (sign in with x; sessions end after 15m0s unused or 8h0m0s, recent sign-in 5m0s)") ||
		!strings.Contains(out, "register at x: callback URI "+s.public+"/account/callback\n") || strings.Contains(out, "logout") {
		t.Errorf("check-config = %d %q %q, want the account page and X's callback URI to register (X has no logout URIs)", code, out, errOut)
	}
	s.start(0)
	if want := "account_page=" + s.public + "/account/"; !strings.Contains(s.logs.String(), want) {
		t.Errorf("the start's log line lacks %q:\n%s", want, s.logs)
	}
	s.enrollUser("ada")
	ws, err := s.op.d.db.ListWatches("ada")
	if err != nil || len(ws) != 1 {
		t.Fatalf("ada's watches = %v, %v", ws, err)
	}
	w := ws[0]
	if st, _ := s.op.d.worker.Status(w.ID); !st.Scheduled {
		t.Fatalf("ada's watch is not scheduled after the consent")
	}

	b := browse(t)
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := b.Get(s.public + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.public+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", s.public)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return continued(t, b, s.public+path, "POST", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The page's sign-in page, on the public listener, with its headers;
	// the consent pages and /healthz are still there.
	code, body, h := get("/account/")
	if code != 200 || !strings.Contains(body, `action="/account/signin"`) || !strings.Contains(body, "Sign in with X") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("GET /account/ = %d %v\n%s", code, h, body)
	}
	if code, _, _ := get("/healthz"); code != 200 {
		t.Errorf("GET /healthz = %d beside the page", code)
	}
	if code, loc := doReq(t, b, "GET", s.public+"/account"); (code != http.StatusMovedPermanently && code != http.StatusTemporaryRedirect) || loc != "/account/" {
		t.Errorf("GET /account = %d %q, want a redirect to /account/", code, loc)
	}

	// Sign in with X: the sandbox's consent, as user 1001 (@ada), back
	// to /account/callback.
	code, loc := post("/account/signin", url.Values{"provider": {"x"}})
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, s.x.URL()) ||
		mustParse(t, loc).Query().Get("redirect_uri") != s.public+"/account/callback" {
		t.Fatalf("POST /account/signin = %d %q, want a redirect to X with the page's redirect URI", code, loc)
	}
	s.x.SetAutoApprove("1001")
	code, loc = doReq(t, b, "GET", loc)
	s.x.SetAutoApprove("")
	if code != http.StatusFound || !strings.HasPrefix(loc, s.public+"/account/callback?") {
		t.Fatalf("X's authorize = %d %q, want the page's callback", code, loc)
	}
	if code, loc = doReq(t, b, "GET", loc); code != http.StatusSeeOther || loc != "/account/" {
		t.Fatalf("callback = %d %q, want 303 to /account/\n%s", code, loc, tail(s.logs.String(), 30))
	}
	code, body, _ = get("/account/")
	for _, want := range []string{"#golang", "#rust", `id="watch-` + w.ID + `"`, "every minute"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("the page after signing in = %d, does not show %q:\n%s", code, want, body)
		}
	}
	for _, leak := range append(s.tokens.all(), "SENTINEL") {
		if leak != "" && strings.Contains(body, leak) {
			t.Errorf("the page shows a token or secret %q", leak)
		}
	}

	// Pause and resume: the vault, the scheduler and the audit trail.
	if code, loc := post("/account/watches/"+w.ID+"/pause", nil); code != http.StatusSeeOther {
		t.Fatalf("pause = %d %q", code, loc)
	}
	if got, _ := s.op.d.db.Watch(w.ID); got.State != vault.WatchPaused {
		t.Errorf("after pause the watch is %s", got.State)
	}
	if st, _ := s.op.d.worker.Status(w.ID); st.Scheduled {
		t.Errorf("a watch paused on the page is still scheduled: the page's Scheduler is not wired")
	}
	if code, loc := post("/account/watches/"+w.ID+"/resume", nil); code != http.StatusSeeOther {
		t.Fatalf("resume = %d %q", code, loc)
	}
	if st, _ := s.op.d.worker.Status(w.ID); st.Watch.State != vault.WatchActive || !st.Scheduled {
		t.Errorf("after resume on the page the watch is %s, scheduled %v; want active and scheduled", st.Watch.State, st.Scheduled)
	}
	actors := map[string]int{}
	if err := s.op.d.db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if ev.UserID == "ada" {
			actors[ev.Actor]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if actors[actorUserPage] < 2 {
		t.Errorf("audit actors of ada's events = %v, want the pause and resume by %q", actors, actorUserPage)
	}

	// Delete my data: the daemon's deleteUser through the page.
	if code, loc := post("/account/delete", nil); code != http.StatusSeeOther || !strings.HasSuffix(loc, "/account/deleted") {
		t.Fatalf("POST /account/delete = %d %q, want 303 to /account/deleted\n%s", code, loc, tail(s.logs.String(), 20))
	}
	if _, err := s.op.d.db.User("ada"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("after deleting her data, User(ada) = %v, want not found", err)
	}
	if _, err := s.op.d.worker.Status(w.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("after deleting her data, the watch's status = %v, want not found", err)
	}
	if code, loc := doReq(t, b, "GET", s.public+"/account/"); code != http.StatusOK {
		t.Errorf("the page after deleting = %d %q, want the sign-in page", code, loc)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAccountProvidersReload: a sign-in provider SIGHUP rebuilt is the
// one the page signs in with from then on. The test rotates X's client
// secret file to a value the sandbox does not know and reloads: the
// page's next sign-in reaches X's token endpoint with the new secret and
// is refused there (the old provider would have been accepted).
func TestAccountProvidersReload(t *testing.T) {
	s := newSvc(t, "\n[account]\nsign_in = [\"x\"]\n", false)
	s.start(0)
	s.enrollUser("ada")
	cfgText, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`client_secret_file = "([^"]+)"`).FindSubmatch(cfgText)
	if m == nil {
		t.Fatalf("no client_secret_file in %s", cfgText)
	}
	if err := os.WriteFile(string(m[1]), []byte("rotated-but-not-at-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the provider reloaded", func() bool { return strings.Contains(s.logs.String(), "provider reloaded") })
	if strings.Contains(s.logs.String(), "account page providers not reloaded") {
		t.Fatalf("the account page kept its providers:\n%s", tail(s.logs.String(), 20))
	}

	b := browse(t)
	req, _ := http.NewRequest("POST", s.public+"/account/signin", strings.NewReader(url.Values{"provider": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.public)
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, loc := continued(t, b, s.public+"/account/signin", "POST", resp.StatusCode, resp.Header.Get("Location"))
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, s.x.URL()) {
		t.Fatalf("POST /account/signin = %d %q", code, loc)
	}
	s.x.SetAutoApprove("1001")
	code, loc = doReq(t, b, "GET", loc)
	s.x.SetAutoApprove("")
	if code != http.StatusFound {
		t.Fatalf("X's authorize = %d %q", code, loc)
	}
	code, _ = doReq(t, b, "GET", loc)
	if code == http.StatusSeeOther || !strings.Contains(s.logs.String(), "code exchange: client (HTTP 401") {
		t.Errorf("callback with the rotated secret = %d, want the code exchange refused at X for its client secret (the reloaded provider's):\n%s", code, tail(s.logs.String(), 20))
	}
}
