package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/worker/xapi/xsandbox"
)

// lockedBuffer is a stdout the test reads while the command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSandbox runs tagwatchd sandbox in-process with args and returns
// what it printed once it serves, and the running server.
func startSandbox(t *testing.T, args ...string) (string, *xsandbox.Server) {
	t.Helper()
	printed, sb, _ := startSandboxLogs(t, args...)
	return printed, sb
}

// startSandboxLogs is startSandbox that also returns the sandbox's
// stderr, its log.
func startSandboxLogs(t *testing.T, args ...string) (string, *xsandbox.Server, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := &lockedBuffer{}, &lockedBuffer{}
	ready := make(chan *xsandbox.Server, 1)
	done := make(chan error, 1)
	go func() { done <- runSandbox(ctx, args, out, logs, func(s *xsandbox.Server) { ready <- s }) }()
	var sb *xsandbox.Server
	select {
	case sb = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("tagwatchd sandbox %v = %v before serving; printed %q", args, err, out.String())
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tagwatchd sandbox stopped with %v", err)
		}
		if !strings.Contains(out.String(), "X sandbox stopped.") {
			t.Errorf("tagwatchd sandbox did not say it stopped: %q", out.String())
		}
	})
	return out.String(), sb, logs
}

// providerBlock cuts the [[provider]] table out of what the sandbox printed.
func providerBlock(t *testing.T, printed string) string {
	t.Helper()
	start := strings.Index(printed, "[[provider]]\n")
	if start < 0 {
		t.Fatalf("the sandbox printed no [[provider]] block:\n%s", printed)
	}
	block, _, _ := strings.Cut(printed[start:], "\n\n")
	return block + "\n"
}

// consentClient is a browser: a cookie jar, redirects not followed.
func consentClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func doForm(t *testing.T, c *http.Client, method, u string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	sandboxRequestRE  = regexp.MustCompile(`name="request" value="([^"]+)"`)
	sandboxSelectedRE = regexp.MustCompile(`<option value="([^"]*)"[^>]* selected`)
)

// TestSandboxService is tagwatchd sandbox as a newcomer uses it (C16, issue
// 13): the block it prints makes a configuration check-config accepts;
// its consent page lets the second account sign in in a browser where the
// first one did, after signing out; each control does to the API what X
// would.
func TestSandboxService(t *testing.T) {
	dir := t.TempDir()
	const callback = "http://127.0.0.1:1/callback" // never followed: the test reads the code from Location
	printed, sb, logs := startSandboxLogs(t, "-listen", "127.0.0.1:0", "-dir", filepath.Join(dir, "sandbox"), "-users", "ada,@bea",
		"-rate", "50", "-hashtags", "golang,rust", "-redirect", callback+",http://127.0.0.1:2/callback")
	base := sb.URL()
	for _, want := range []string{"@ada", "id 1001", "@bea", "id 1002", base + "/sandbox/", "#golang #rust", callback} {
		if !strings.Contains(printed, want) {
			t.Errorf("the sandbox's banner lacks %q:\n%s", want, printed)
		}
	}
	block := providerBlock(t, printed)

	// The block, pasted into a configuration, passes check-config; its
	// secret file is the sandbox's, mode 0600.
	key := filepath.Join(dir, "master.key")
	if code, out, errOut := runCLI("keys", "generate", key); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	cfgPath := filepath.Join(dir, "tagwatch.toml")
	doc := "[daemon]\nstate_dir = " + quote(filepath.Join(dir, "state")) + "\n\n[keys]\nmaster_key_file = " + quote(key) +
		"\n\n[status]\nsocket = " + quote(filepath.Join(dir, "status.sock")) + "\n\n" + block
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI("check-config", "-config", cfgPath); code != 0 {
		t.Fatalf("check-config with the sandbox's block = %d %q %q\n%s", code, out, errOut, doc)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Provider("x")
	if p.AuthURL != base+"/i/oauth2/authorize" || p.TokenURL != base+"/2/oauth2/token" || p.APIURL != base {
		t.Errorf("provider from the block = %+v, want the sandbox at %s", p, base)
	}
	if fi, err := os.Stat(p.ClientSecretFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client secret file %s: %v %v, want mode 0600", p.ClientSecretFile, fi, err)
	}
	secret := strings.TrimSpace(string(mustRead(t, p.ClientSecretFile)))

	// The consent page: nothing preselected; bea signs in.
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	authorize := p.AuthURL + "?" + url.Values{"response_type": {"code"}, "client_id": {p.ClientID}, "redirect_uri": {callback},
		"scope": {"tweet.read users.read offline.access"}, "state": {"st"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}}.Encode()
	browser := consentClient(t)
	openPage := func() (request, page string) {
		t.Helper()
		resp, page := doForm(t, browser, "GET", authorize, nil, nil)
		m := sandboxRequestRE.FindStringSubmatch(page)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("consent page = %d:\n%s", resp.StatusCode, page)
		}
		return html.UnescapeString(m[1]), page
	}
	submit := func(form url.Values) (*http.Response, string) {
		t.Helper()
		return doForm(t, browser, "POST", p.AuthURL, form, nil)
	}
	codeOf := func(resp *http.Response, body string) string {
		t.Helper()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), callback) {
			t.Fatalf("consent = %d to %q, want a code at the callback:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		return loc.Query().Get("code")
	}
	req, page := openPage()
	if m := sandboxSelectedRE.FindStringSubmatch(page); m != nil && m[1] != "" {
		t.Errorf("the consent page preselects @%s; nothing should be", m[1])
	}
	for _, want := range []string{"(@ada)", "(@bea)", "Sign in as"} {
		if !strings.Contains(page, want) {
			t.Errorf("the consent page lacks %q", want)
		}
	}
	if resp, body := submit(url.Values{"request": {req}, "action": {"authorize"}}); resp.StatusCode != 400 || !strings.Contains(body, "Choose the sandbox account") {
		t.Errorf("authorize with no account chosen = %d, want 400 asking to choose:\n%s", resp.StatusCode, body)
	}
	tokens := func(code string) (access, refresh string) {
		t.Helper()
		var tr struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		st, body := tokenCall(t, p.TokenURL, p.ClientID, secret, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {callback}, "code_verifier": {verifier}})
		if st != 200 || json.Unmarshal([]byte(body), &tr) != nil {
			t.Fatalf("code exchange = %d %s", st, body)
		}
		return tr.AccessToken, tr.RefreshToken
	}
	beaAccess, beaRefresh := tokens(codeOf(submit(url.Values{"request": {req}, "action": {"authorize"}, "username": {"bea"}})))
	if st, body := apiCall(t, base+"/2/users/me", beaAccess); st != 200 || !strings.Contains(body, `"username":"bea"`) {
		t.Errorf("users/me with bea's token = %d %s", st, body)
	}

	// The same browser again: signed in as bea, with a way out; signed
	// out, it picks ada.
	req, page = openPage()
	if !strings.Contains(page, "Signed in as <b>Bea</b> (@bea)") || !strings.Contains(page, `value="signout"`) {
		t.Fatalf("the second consent in the same browser does not say who is signed in or offer to sign out:\n%s", page)
	}
	if resp, body := submit(url.Values{"request": {req}, "action": {"signout"}}); resp.StatusCode != http.StatusSeeOther ||
		resp.Header.Get("Location") != authorize[len(base):] {
		t.Fatalf("sign out = %d to %q, want 303 back to the same authorization request:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	req, page = openPage()
	if strings.Contains(page, "Signed in as <b>") || !strings.Contains(page, "Sign in as") {
		t.Fatalf("after sign out the consent page is not the account picker:\n%s", page)
	}
	if m := sandboxSelectedRE.FindStringSubmatch(page); m != nil && m[1] != "" {
		t.Errorf("after sign out the consent page preselects @%s", m[1])
	}
	adaAccess, adaRefresh := tokens(codeOf(submit(url.Values{"request": {req}, "action": {"authorize"}, "username": {"ada"}})))
	if st, body := apiCall(t, base+"/2/users/me", adaAccess); st != 200 || !strings.Contains(body, `"username":"ada"`) {
		t.Errorf("users/me with ada's token = %d %s", st, body)
	}

	// The control page lists both accounts with one grant each.
	admin := consentClient(t)
	admin.CheckRedirect = nil // the control page answers a POST with a 303 to itself
	control := base + xsandbox.ControlPath
	if resp, page := doForm(t, admin, "GET", control, nil, nil); resp.StatusCode != 200 ||
		!strings.Contains(page, "@ada") || !strings.Contains(page, "@bea") || strings.Count(page, "Revoke tagwatch") != 2 {
		t.Fatalf("control page = %d:\n%s", resp.StatusCode, page)
	}
	refresh := func(rt string) (int, string) {
		return tokenCall(t, p.TokenURL, p.ClientID, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	press := func(path string, form url.Values) string {
		t.Helper()
		resp, page := doForm(t, admin, "POST", base+path, form, map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"})
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s %v = %d:\n%s", path, form, resp.StatusCode, page)
		}
		return page
	}

	// A page of another site cannot press the buttons.
	if resp, _ := doForm(t, admin, "POST", base+"/sandbox/revoke", url.Values{"user": {"1001"}},
		map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site revoke = %d, want 403", resp.StatusCode)
	}
	if st, body := apiCall(t, base+"/2/users/me", adaAccess); st != 200 {
		t.Fatalf("after a refused cross-site revoke ada's token = %d %s", st, body)
	}

	// Revoke: bea takes the permission back; her tokens are refused,
	// ada's are not.
	if page := press("/sandbox/revoke", url.Values{"user": {"1002"}}); !strings.Contains(page, "@bea revoked the app") {
		t.Errorf("revoke page:\n%s", page)
	}
	if st, body := refresh(beaRefresh); st != 400 || !strings.Contains(body, "Value passed for the token was invalid.") {
		t.Errorf("refresh of bea's token after the revocation = %d %s, want X's 400 invalid token", st, body)
	}
	if st, _ := apiCall(t, base+"/2/users/me", beaAccess); st != 401 {
		t.Errorf("bea's access token after the revocation = %d, want 401", st)
	}
	if st, body := refresh(adaRefresh); st != 200 {
		t.Fatalf("ada's refresh after bea's revocation = %d %s", st, body)
	} else {
		var tr struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		_ = json.Unmarshal([]byte(body), &tr)
		adaAccess, adaRefresh = tr.AccessToken, tr.RefreshToken
	}

	// Lose the next token answer: the refresh happens, its answer does
	// not arrive, and the refresh token it spent is refused after.
	press("/sandbox/drop-token", nil)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {adaRefresh}}
	r, _ := http.NewRequest("POST", p.TokenURL, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(p.ClientID, secret)
	if resp, err := http.DefaultClient.Do(r); err == nil {
		resp.Body.Close()
		t.Errorf("the refresh after drop-token got an answer (%d), want the connection closed", resp.StatusCode)
	}
	if st, _ := refresh(adaRefresh); st != 400 {
		t.Errorf("the refresh token spent by the lost answer = %d, want 400", st)
	}

	// Rate limit: every search is 429 with a reset; X's limits again lift it.
	search := base + "/2/tweets/search/recent?query=%23golang"
	if st, body := apiCall(t, search, adaAccess); st != 200 {
		t.Fatalf("search = %d %s", st, body)
	}
	press("/sandbox/rate-limit", url.Values{"seconds": {"60"}})
	if resp, body := apiGet(t, search, adaAccess); resp.StatusCode != 429 || resp.Header.Get("x-rate-limit-reset") == "" ||
		!strings.Contains(body, "Too Many Requests") {
		t.Errorf("search while rate-limited = %d %v %s, want 429 with x-rate-limit-reset", resp.StatusCode, resp.Header, body)
	}
	press("/sandbox/rate-limit", url.Values{"seconds": {"0"}})
	if st, body := apiCall(t, search, adaAccess); st != 200 {
		t.Errorf("search after the limit was lifted = %d %s", st, body)
	}

	// Usage cap: set, the next search is usage-capped; lifted, served.
	page = press("/sandbox/usage-cap", url.Values{"action": {"set"}})
	if !strings.Contains(page, "usage cap reached") {
		t.Errorf("usage-cap page:\n%s", page)
	}
	if st, body := apiCall(t, search, adaAccess); st != 429 || !strings.Contains(body, "UsageCapExceeded") {
		t.Errorf("search at the cap = %d %s, want X's usage-capped 429", st, body)
	}
	press("/sandbox/usage-cap", url.Values{"action": {"lift"}})
	if st, body := apiCall(t, search, adaAccess); st != 200 {
		t.Errorf("search after the cap was lifted = %d %s", st, body)
	}

	// Refused inputs name what was wrong and change nothing.
	for _, c := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/sandbox/revoke", url.Values{"user": {"999"}}, "no sandbox account with id"},
		{"/sandbox/rate-limit", url.Values{"seconds": {"-1"}}, "seconds must be"},
		{"/sandbox/usage-cap", url.Values{"action": {"maybe"}}, "action must be set or lift"},
	} {
		resp, page := doForm(t, admin, "POST", base+c.path, c.form, map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"})
		if resp.StatusCode != 400 || !strings.Contains(html.UnescapeString(page), c.want) {
			t.Errorf("POST %s %v = %d, want 400 saying %q", c.path, c.form, resp.StatusCode, c.want)
		}
	}

	// Each action pressed is one line on the sandbox's stderr, saying
	// what was done, and no token or secret is in the log.
	log := logs.String()
	for _, want := range []string{
		`msg="sandbox control" action=revoke done="@bea revoked the app`,
		`msg="sandbox control" action=drop-token done="the next refresh is done but its answer is lost`,
		`msg="sandbox control" action=rate-limit done="every search answers 429 Too Many Requests for 60 s`,
		`msg="sandbox control" action=rate-limit done="search limits are X's again`,
		`msg="sandbox control" action=usage-cap done="usage cap reached`,
		`msg="sandbox control" action=usage-cap done="usage cap lifted`,
		`msg="sandbox control refused" action=revoke err="there is no sandbox account with id \"999\""`,
	} {
		if n := strings.Count(log, want); n != 1 {
			t.Errorf("sandbox log has %d lines with %q, want 1:\n%s", n, want, log)
		}
	}
	if n := strings.Count(log, `msg="sandbox control"`); n != 6 {
		t.Errorf("sandbox log has %d control lines, want 6 (one a press):\n%s", n, log)
	}
	for _, v := range []string{secret, beaAccess, beaRefresh, adaAccess, adaRefresh} {
		if strings.Contains(log, v) {
			t.Errorf("sandbox log shows a secret or token:\n%s", log)
		}
	}
}

// TestSandboxBannerRate: the banner says the generator's rate in words
// that agree with it: "1 post a second", "2.5 posts a second".
func TestSandboxBannerRate(t *testing.T) {
	for rate, want := range map[string]string{"1": "Posting 1 post a second with #golang.", "2.5": "Posting 2.5 posts a second with #golang."} {
		printed, _ := startSandbox(t, "-listen", "127.0.0.1:0", "-dir", t.TempDir(), "-rate", rate, "-hashtags", "golang")
		if !strings.Contains(printed, want) {
			t.Errorf("sandbox -rate %s printed:\n%s\nwant %q", rate, printed, want)
		}
	}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func tokenCall(t *testing.T, tokenURL, id, secret string, form url.Values) (int, string) {
	t.Helper()
	r, err := http.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("token endpoint: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func apiGet(t *testing.T, u, access string) (*http.Response, string) {
	t.Helper()
	r, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func apiCall(t *testing.T, u, access string) (int, string) {
	t.Helper()
	resp, body := apiGet(t, u, access)
	return resp.StatusCode, body
}

// TestSandboxFlagsRefused: each flag's bad value is refused with exit 2
// naming the flag, before anything listens or is written.
func TestSandboxFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "0.0.0.0:8099"}, "-listen: xsandbox: listen address \"0.0.0.0:8099\" is not on loopback"},
		{[]string{"-listen", "192.168.1.5:8099"}, "is not on loopback"},
		{[]string{"-listen", "localhost:8099"}, "is not on loopback"},
		{[]string{"-listen", "8099"}, "is not host:port"},
		{[]string{"-users", "ada,ada"}, "-users: account @ada is named twice"},
		{[]string{"-users", "ada,no-dash"}, `-users: account 2: "no-dash" is not an X username`},
		{[]string{"-users", ""}, "-users: account 1"},
		{[]string{"-hashtags", "go,,rust"}, "-hashtags: an empty hashtag"},
		{[]string{"-hashtags", "go lang"}, "-hashtags: hashtag \"#go lang\""},
		{[]string{"-redirect", "/callback"}, `-redirect: "/callback" is not an absolute http(s) callback URL`},
		{[]string{"-rate", "-1"}, "-rate: must be from 0 to 1000"},
		{[]string{"-token-ttl", "1s"}, "-token-ttl: must be from 10s to 24h"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		dir := filepath.Join(t.TempDir(), "sb")
		code, out, errOut := runCLI(append([]string{"sandbox", "-dir", dir, "-listen", "127.0.0.1:0"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("sandbox %v = %d %q %q, want exit 2 saying %q", c.args, code, out, errOut, c.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("sandbox %v created its directory though refused", c.args)
		}
	}
}

// TestSandboxBinaryStopsOnSignal: the built binary serves, keeps its
// client secret across restarts (the printed block stays valid), and
// stops cleanly on SIGINT and SIGTERM.
func TestSandboxBinaryStopsOnSignal(t *testing.T) {
	dir := t.TempDir()
	var blocks []string
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(binary, "sandbox", "-listen", "127.0.0.1:0", "-dir", dir, "-rate", "0")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var printed strings.Builder
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Stop with Ctrl-C") {
				break
			}
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(stdout)
		if err := cmd.Wait(); err != nil || !strings.Contains(string(rest), "X sandbox stopped.") {
			t.Errorf("sandbox after %v: %v, printed %q then %q, stderr %q", sig, err, printed.String(), rest, stderr.String())
		}
		// The port differs (127.0.0.1:0); the secret file does not.
		block := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(providerBlock(t, printed.String()), "ADDR")
		blocks = append(blocks, block)
	}
	if blocks[0] != blocks[1] {
		t.Errorf("the block changed across restarts:\n%s\n%s", blocks[0], blocks[1])
	}
	if fi, err := os.Stat(filepath.Join(dir, sandboxSecretName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v %v, want mode 0600", fi, err)
	}
}

// FuzzSandboxFlags: the parsers of -users, -hashtags and -redirect
// accept or refuse, never panic; what they accept is what the sandbox
// can serve.
func FuzzSandboxFlags(f *testing.F) {
	for _, s := range []string{"ada,bea", "@ada, @bea", "", ",", "golang,#rust", "http://127.0.0.1:8080/callback,https://x.test/cb",
		"ada,ADA", "a\x00b", "#", "http://[::1]:8080/callback", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if users, err := parseSandboxUsers(s); err == nil {
			for _, u := range users {
				if !usernameRE.MatchString(u.Username) || u.ID == "" {
					t.Fatalf("parseSandboxUsers(%q) accepted %+v", s, u)
				}
			}
		}
		if tags, err := parseSandboxHashtags(s); err == nil {
			for _, tag := range tags {
				if tag == "" || strings.HasPrefix(tag, "#") {
					t.Fatalf("parseSandboxHashtags(%q) accepted %q", s, tag)
				}
			}
		}
		if urls, err := parseSandboxRedirects(s); err == nil {
			for _, u := range urls {
				if pu, err := url.Parse(u); err != nil || pu.Host == "" {
					t.Fatalf("parseSandboxRedirects(%q) accepted %q", s, u)
				}
			}
		}
	})
}

var placeholderLineRE = regexp.MustCompile(`(?m)^(\w+) = "<[^"\n]*>"$`)

// fillPlaceholders does what an operator does to an example
// configuration: writes a value of theirs for every placeholder (the
// same as cmd/internal/config's test helper).
func fillPlaceholders(doc []byte) []byte {
	values := map[string]string{"public_url": "https://tagwatch.example.org", "issuer": "https://id.example.org/",
		"api_url": "https://search.example.org", "client_id": "tagwatch"}
	return placeholderLineRE.ReplaceAllFunc(doc, func(line []byte) []byte {
		key := placeholderLineRE.FindSubmatch(line)[1]
		v, ok := values[string(key)]
		if !ok {
			v = "edited"
		}
		return []byte(string(key) + ` = "` + v + `"`)
	})
}

// TestSandboxDefaultRedirects: with no -redirect the sandbox accepts the
// default daemon's consent callback and its page's sign-in callback, so
// README's newcomer path signs in to the page with X as it is.
func TestSandboxDefaultRedirects(t *testing.T) {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	opts := sandboxFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	o, err := opts()
	if err != nil {
		t.Fatal(err)
	}
	public := config.Default().HTTP.PublicURL
	if want := []string{public + "/callback", public + "/account/callback"}; !slices.Equal(o.redirects, want) {
		t.Errorf("default redirects = %q, want %q", o.redirects, want)
	}
}
