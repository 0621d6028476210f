package xsandbox

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestConsentPickerAndSignOut: C16. The consent page preselects no
// account, so the second person's link in a browser is answered as the
// account they pick; after a consent the browser is signed in as that
// account (as at X), and can sign out and pick another.
func TestConsentPickerAndSignOut(t *testing.T) {
	e := newEnv(t)
	b := browser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	open := func() (string, string) {
		t.Helper()
		resp, err := b.Get(e.s.URL() + string(EndpointAuthorize) + "?" + e.authorizeParams("st").Encode())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := reqFieldRE.FindSubmatch(page)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("consent page = %d:\n%s", resp.StatusCode, page)
		}
		return html.UnescapeString(string(m[1])), string(page)
	}
	post := func(form url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := b.PostForm(e.s.URL()+string(EndpointAuthorize), form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	approvedAs := func(resp *http.Response, body, want string) {
		t.Helper()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("consent = %d %q, want a code:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		e.s.mu.Lock()
		c := e.s.codes[loc.Query().Get("code")]
		e.s.mu.Unlock()
		if c == nil || c.userID != want {
			t.Fatalf("the code is for %+v, want user %s", c, want)
		}
	}

	req, page := open()
	if sel := selectedRE.FindStringSubmatch(page); sel != nil {
		t.Fatalf("the consent page preselects %q", sel[1])
	}
	if resp, body := post(url.Values{"request": {req}, "action": {"authorize"}}); resp.StatusCode != 400 || !strings.Contains(body, "Choose the sandbox account") {
		t.Fatalf("authorize without an account = %d, want 400 asking to choose:\n%s", resp.StatusCode, body)
	}
	resp, body := post(url.Values{"request": {req}, "action": {"authorize"}, "username": {"bob"}})
	approvedAs(resp, body, "102")

	req, page = open()
	if !strings.Contains(page, "Signed in as <b>Bob B</b> (@bob)") || !strings.Contains(page, `value="signout"`) {
		t.Fatalf("a signed-in browser's consent page does not say who or offer to sign out:\n%s", page)
	}
	resp, body = post(url.Values{"request": {req}, "action": {"signout"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), string(EndpointAuthorize)+"?") {
		t.Fatalf("sign out = %d to %q, want 303 back to the authorization request:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if resp, body := post(url.Values{"request": {req}, "action": {"authorize"}, "username": {"carol"}}); resp.StatusCode != 400 {
		t.Fatalf("the request signed out of answered again = %d, want 400:\n%s", resp.StatusCode, body)
	}
	req, page = open()
	if strings.Contains(page, "Signed in as <b>") || !strings.Contains(page, "(@carol)") {
		t.Fatalf("after sign out the consent page is not the picker:\n%s", page)
	}
	resp, body = post(url.Values{"request": {req}, "action": {"authorize"}, "username": {"carol"}})
	approvedAs(resp, body, "103")
	// Another browser is not signed in.
	b = browser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if _, page := open(); strings.Contains(page, "Signed in as") {
		t.Error("a new browser is signed in")
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8099", true}, {"127.0.0.1:0", true}, {"127.3.4.5:1", true}, {"[::1]:8099", true},
		{"[::ffff:127.0.0.1]:8099", true},
		{"0.0.0.0:8099", false}, {":8099", false}, {"[::]:8099", false}, {"localhost:8099", false},
		{"192.168.1.2:8099", false}, {"127.0.0.1", false}, {"127.0.0.1:65536", false}, {"127.0.0.1:x", false},
		{"[fe80::1%lo]:8099", false}, {"[::1%lo]:1", false},
	} {
		if err := CheckLoopback(c.addr); (err == nil) != c.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok %v", c.addr, err, c.ok)
		}
	}
	if _, err := Start(Config{Addr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "not on loopback") {
		t.Errorf("Start on 0.0.0.0 = %v, want refused", err)
	}
}

func FuzzCheckLoopback(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8099", "[::1]:0", "0.0.0.0:1", "localhost:1", "", ":", "[::ffff:7f00:1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if CheckLoopback(addr) != nil {
			return
		}
		// What it accepts is an IP literal on loopback.
		if !strings.HasPrefix(addr, "127.") && !strings.HasPrefix(addr, "[::1]") && !strings.HasPrefix(addr, "[::ffff:") &&
			!strings.HasPrefix(addr, "[0:0:0:0:0:0:0:1]") && !strings.HasPrefix(addr, "[0:") && !strings.HasPrefix(addr, "[::") {
			t.Fatalf("CheckLoopback accepted %q", addr)
		}
	})
}

// TestControlPageCountsInWords: the control page's counts and what a
// revocation says read as English for one and for many ("1 consent",
// "1 answer lost", "1 grant ended, its tokens"), not "1 consents".
func TestControlPageCountsInWords(t *testing.T) {
	e := newEnv(t)
	b := browser(t)
	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return html.UnescapeString(string(body))
	}
	e.consent(b, "st", "authorize", "alice")
	a, r := e.grant("101")
	e.search(a, url.Values{"query": {"#golang"}})
	e.s.DropAfterRotateNext(1)
	_, _, _ = e.post(EndpointToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r}}, true) // its answer is lost
	got := page(b.PostForm(e.s.URL()+controlRevoke, url.Values{"user": {"101"}}))
	for _, want := range []string{"@alice revoked the app: 1 grant ended, its tokens refused from now on",
		"1 consent, 1 refresh, 1 revocation, 1 search, 0 posts read, 0 rate-limited, 0 usage-capped, 1 answer lost."} {
		if !strings.Contains(got, want) {
			t.Errorf("control page does not say %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "tagwatchctl watches run WATCH probes now"); n != 1 {
		t.Errorf("control page says how to probe now %d times, want once:\n%s", n, got)
	}
	e.grant("102")
	e.grant("102")
	got = page(b.PostForm(e.s.URL()+controlRevoke, url.Values{"user": {"102"}}))
	if want := "@bob revoked the app: 2 grants ended, their tokens refused from now on"; !strings.Contains(got, want) {
		t.Errorf("control page does not say %q:\n%s", want, got)
	}
}
