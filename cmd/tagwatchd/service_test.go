package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/worker/sched"
	"tagwatch/worker/xapi/xsandbox"
)

// tokenRecorder sits in front of the sandbox's token endpoint and keeps
// every token it hands out: the sentinels the logs, answers and files are
// searched for.
type tokenRecorder struct {
	mu     sync.Mutex
	tokens []string
}

func (r *tokenRecorder) add(ts ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range ts {
		if t != "" {
			r.tokens = append(r.tokens, t)
		}
	}
}

func (r *tokenRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// svc is a daemon run in-process by runService, with an X sandbox as its
// provider and a notify socket of the test's own.
type svc struct {
	t       *testing.T
	dir     string // the state directory
	config  string
	keyFile string
	socket  string
	public  string // http://127.0.0.1:port
	metrics string // 127.0.0.1:port
	// reserved hold the public and metrics ports, bound, until the daemon
	// first starts: the sandbox and the other servers the test starts
	// meanwhile cannot be given the same port (a port freed at once is
	// soon handed out again).
	reserved []net.Listener
	x        *xsandbox.Server
	tokens   *tokenRecorder
	secret   string // the client secret sentinel
	// rotated, when set, is a second client secret the token endpoint
	// accepts (X after a rotation); seen records the client secret of
	// every refresh request.
	rotated atomic.Pointer[string]
	seen    *tokenRecorder
	logs    *syncBuffer
	notify  *notifyRecorder
	op      *operator
	cancel  context.CancelFunc
	done    chan error
	answers syncBuffer // every tagwatchctl output
}

// reservePort binds a free loopback port and keeps it bound until the
// daemon first starts (svc.start), and returns its address.
func (s *svc) reservePort() string {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.reserved = append(s.reserved, ln)
	s.t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// notifyRecorder is the service manager's end of NOTIFY_SOCKET.
type notifyRecorder struct {
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T) (*notifyRecorder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &notifyRecorder{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, notifyMsg{time.Now(), string(buf[:n])})
			r.mu.Unlock()
		}
	}()
	return r, path
}

func (r *notifyRecorder) all() []notifyMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifyMsg(nil), r.msgs...)
}

// waitFor waits until a message containing s arrives and returns its time.
func (r *notifyRecorder) waitFor(t *testing.T, s string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, m := range r.all() {
			if strings.Contains(m.text, s) {
				return m.at
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q on the notify socket within %v; got %v", s, timeout, r.all())
	return time.Time{}
}

// newSvc writes a configuration and creates the vault; start runs it.
// httpExtra is added to the [http] table; with tls the public URL is https.
func newSvc(t *testing.T, httpExtra string, tls bool) *svc {
	t.Helper()
	return newSvcTTL(t, httpExtra, tls, 3*time.Second)
}

// newSvcTTL is newSvc with the sandbox's access-token lifetime.
func newSvcTTL(t *testing.T, httpExtra string, tls bool, ttl time.Duration) *svc {
	t.Helper()
	s := &svc{t: t, dir: t.TempDir(), tokens: &tokenRecorder{}, seen: &tokenRecorder{}, logs: &syncBuffer{},
		secret: "SENTINEL-client-secret-" + vault.NewID()}
	keyDir := t.TempDir()
	s.keyFile = filepath.Join(keyDir, "master.key")
	s.config = filepath.Join(keyDir, "tagwatch.toml")
	s.socket = filepath.Join(s.dir, "run", "status.sock")
	pub := s.reservePort()
	s.public = "http://" + pub
	if tls {
		s.public = "https://" + pub
	}
	s.metrics = s.reservePort()

	x, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch-x", ClientSecret: s.secret,
		RedirectURIs: []string{s.public + "/callback", s.public + "/account/callback"}, AccessTokenTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	if err := x.AddUser(xsandbox.User{ID: "1001", Username: "ada", Name: "Ada L"}); err != nil {
		t.Fatal(err)
	}
	s.x = x
	// The token endpoint, through a recorder of what it hands out.
	target, _ := url.Parse(x.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if id, sec, ok := r.BasicAuth(); ok {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			sec, _ = url.QueryUnescape(sec)
			if form, _ := url.ParseQuery(string(body)); form.Get("grant_type") == "refresh_token" {
				s.seen.add(sec)
			}
			if alt := s.rotated.Load(); alt != nil && sec == *alt {
				r.SetBasicAuth(id, url.QueryEscape(s.secret))
			}
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var tr struct {
			Access  string `json:"access_token"`
			Refresh string `json:"refresh_token"`
		}
		if json.Unmarshal(body, &tr) == nil {
			s.tokens.add(tr.Access, tr.Refresh)
		}
		return nil
	}
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: rp}
	go proxy.Serve(proxyLn)
	t.Cleanup(func() { proxy.Close() })

	hookSecret := filepath.Join(keyDir, "hook-secret")
	if err := os.WriteFile(hookSecret, []byte("whsec_"+strings.Repeat("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(keyDir, "x-client-secret")
	if err := os.WriteFile(secretFile, []byte(s.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[daemon]
state_dir = %q
log_level = "debug"
shutdown_timeout = "10s"

[keys]
master_key_file = %q

[http]
listen = %q
public_url = %q
%s

[status]
socket = %q
metrics_listen = %q

[scheduler]
min_interval = "1m"

[renewal]
skew = "2s"
# The sandbox answers at once; short enough for a 5 s storage.lease.
timeout = "3s"

[[provider]]
name = "x"
kind = "x"
client_id = "tagwatch-x"
client_secret_file = %q
auth_url = %q
token_url = %q
revoke_url = %q
api_url = %q

[[notify.webhook]]
url = "https://hooks.example.com/T0KEN/abc?sig=1"
secret_file = %q
`, s.dir, s.keyFile, pub, s.public, httpExtra, s.socket, s.metrics, secretFile,
		x.URL()+string(xsandbox.EndpointAuthorize), "http://"+proxyLn.Addr().String()+string(xsandbox.EndpointToken),
		x.URL()+string(xsandbox.EndpointRevoke), x.URL(), hookSecret)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := tagwatchd(t, "keys", "init", "-generate", "-config", s.config); code != 0 {
		t.Fatalf("keys init = %d %s", code, out)
	}
	return s
}

// start runs the daemon under a notify socket with the given watchdog
// interval (0: none) and waits for READY.
func (s *svc) start(watchdog time.Duration) {
	t := s.t
	t.Helper()
	rec, path := listenNotify(t)
	s.notify = rec
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	}
	for _, ln := range s.reserved {
		ln.Close() // the daemon binds these next
	}
	s.reserved = nil
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	bound := make(chan *operator, 1)
	go func() {
		// Console notifications go to the log buffer: the sentinel search
		// covers what users are sent too.
		s.done <- runService(ctx, s.config, s.logs, options{Console: s.logs}, func(op *operator) { bound <- op })
	}()
	t.Cleanup(func() { s.stop() })
	select {
	case s.op = <-bound:
	case err := <-s.done:
		t.Fatalf("runService = %v before binding\n%s", err, s.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon did not bind\n%s", s.logs)
	}
	rec.waitFor(t, "READY=1", 30*time.Second)
	// READY means every listener is bound: each must answer at once.
	pub := strings.TrimPrefix(strings.TrimPrefix(s.public, "http://"), "https://")
	for _, addr := range []struct{ network, addr string }{{"unix", s.socket}, {"tcp", pub}, {"tcp", s.metrics}} {
		c, err := net.DialTimeout(addr.network, addr.addr, time.Second)
		if err != nil {
			t.Fatalf("after READY=1, %s %s: %v", addr.network, addr.addr, err)
		}
		c.Close()
	}
}

// stop cancels the daemon and waits for it; it returns runService's error.
func (s *svc) stop() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.t.Errorf("daemon did not stop\n%s", s.logs)
		return errors.New("did not stop")
	}
}

var (
	ctlOnce sync.Once
	ctlBin  string
	ctlErr  error
)

// tagwatchctlBin builds tagwatchctl once.
func tagwatchctlBin(t *testing.T) string {
	t.Helper()
	ctlOnce.Do(func() {
		ctlBin = filepath.Join(filepath.Dir(binary), "tagwatchctl")
		out, err := exec.Command("go", "build", "-o", ctlBin, "../tagwatchctl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("build tagwatchctl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlBin
}

// ctl runs tagwatchctl against the daemon and returns its output and exit
// code; every output is kept for the sentinel search.
func (s *svc) ctl(args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(tagwatchctlBin(s.t), append([]string{"--socket", s.socket}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	s.answers.Write(out.Bytes())
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), code
}

// ctlJSON runs a command with --json, wants exit 0, and decodes its output.
func (s *svc) ctlJSON(v any, args ...string) {
	s.t.Helper()
	out, code := s.ctl(append(args, "--json")...)
	if code != 0 {
		s.t.Fatalf("tagwatchctl %q = %d: %s", args, code, out)
	}
	// The JSON comes first; a hint on stderr may follow it.
	if err := json.NewDecoder(strings.NewReader(out)).Decode(v); err != nil {
		s.t.Fatalf("tagwatchctl %q --json: %v\n%s", args, err, out)
	}
}

// browse is a user's browser: a cookie jar, no automatic redirects.
func browse(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func doReq(t *testing.T, c *http.Client, method, u string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, u, body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return continued(t, c, u, method, resp.StatusCode, resp.Header.Get("Location"))
}

// continued follows a POST's 303 to a continue page (the page a form's
// POST goes through on its way to a provider) as the browser does
// (followContinue), and returns a 303 to where its meta refresh leads;
// any other answer as it is.
func continued(t *testing.T, c *http.Client, u, method string, code int, loc string) (int, string) {
	t.Helper()
	if method != http.MethodPost || code != http.StatusSeeOther || !strings.Contains(loc, "/continue?state=") {
		return code, loc
	}
	target, h, err := followContinue(context.Background(), c, u, loc)
	if err != nil {
		t.Fatalf("continue page after POST %s: %v", u, err)
	}
	if h == nil || !strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self';") {
		t.Fatalf("continue page after POST %s: not same-origin or without form-action 'self': %v", u, h)
	}
	return http.StatusSeeOther, target
}

// enrollUser creates a link with tagwatchctl and consents as X user 1001.
func (s *svc) enrollUser(user string) statusapi.EnrollResponse {
	s.t.Helper()
	return s.enrollUserAt(user, "x")
}

// enrollUserAt is enrollUser at a provider of the sandbox.
func (s *svc) enrollUserAt(user, prov string) statusapi.EnrollResponse {
	t := s.t
	t.Helper()
	var er statusapi.EnrollResponse
	s.ctlJSON(&er, "enroll", "--user", user, "--provider", prov, "--hashtags", "golang,rust", "--schedule", "@every 1m",
		"--target", "console:", "--name", "Ada", "--expect", "@ada")
	b := browse(t)
	if code, _ := doReq(t, b, "GET", er.Link); code != 200 {
		t.Fatalf("landing page = %d", code)
	}
	code, loc := doReq(t, b, "POST", er.Link)
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, s.x.URL()) {
		t.Fatalf("POST landing = %d %q, want a redirect to X", code, loc)
	}
	s.x.SetAutoApprove("1001")
	defer s.x.SetAutoApprove("")
	code, loc = doReq(t, b, "GET", loc)
	if code != http.StatusFound || !strings.HasPrefix(loc, s.public+"/callback?") {
		t.Fatalf("authorize = %d %q, want a redirect to the callback", code, loc)
	}
	if code, loc = doReq(t, b, "GET", loc); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/enrolled/") {
		t.Fatalf("callback = %d %q, want the success page\n%s", code, loc, s.logs)
	}
	return er
}

// bboltCheck runs `bbolt check` on a database file. Without the command
// (CI builds it into .ci/bin), outside CI, bbolt's own check API runs
// instead; never nothing.
func bboltCheck(t *testing.T, path string) {
	t.Helper()
	bin := os.Getenv("TAGWATCH_BBOLT")
	if bin == "" {
		bin, _ = exec.LookPath("bbolt")
	}
	if bin != "" {
		out, err := exec.Command(bin, "check", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "OK") {
			t.Fatalf("bbolt check %s: %v\n%s", path, err, out)
		}
		return
	}
	if os.Getenv("CI_STRICT") == "1" {
		t.Fatal("bbolt command not found ($TAGWATCH_BBOLT); .ci/run's tools step builds it")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check %s: %v", path, err)
	}
}

// TestService drives a daemon through every tagwatchctl command, then
// searches everything it wrote for the tokens it handled.
func TestService(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(200 * time.Millisecond)
	op := s.op

	var st statusapi.Status
	s.ctlJSON(&st, "status")
	if !st.Ready || st.Version == "" {
		t.Errorf("status = %+v, want ready with a version", st)
	}

	er := s.enrollUser("ada")
	var grants []statusapi.Grant
	s.ctlJSON(&grants, "grants")
	if len(grants) != 1 || grants[0].State != "active" || grants[0].UserID != "ada" || grants[0].Username != "ada" {
		t.Fatalf("grants after enrollment = %+v", grants)
	}
	g := grants[0]

	// Refreshes: the sandbox's access tokens live 3 s; the 2 s skew is
	// capped at half that, so each token is due 1.5 s after it was issued.
	for i := 0; i < 3; i++ {
		time.Sleep(1600 * time.Millisecond)
		if _, err := op.d.renew.Source(g.ID).Token(context.Background()); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	s.ctlJSON(&grants, "grants")
	if grants[0].RefreshCount < 3 || grants[0].LastRefresh.IsZero() || grants[0].AccessExpiry.IsZero() {
		t.Errorf("grant after 3 refreshes = %+v", grants[0])
	}

	t.Run("users", func(t *testing.T) {
		var us []statusapi.User
		s.ctlJSON(&us, "users")
		if len(us) != 1 || us[0].ID != "ada" || us[0].Grants != 1 || us[0].Watches != 1 {
			t.Errorf("users = %+v", us)
		}
	})
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 || ws[0].State != "active" || ws[0].Schedule != "@every 1m" {
		t.Fatalf("watches = %+v", ws)
	}
	wid := ws[0].ID
	t.Run("watches", func(t *testing.T) {
		var w statusapi.Watch
		s.ctlJSON(&w, "watches", "pause", wid)
		if w.State != "paused" {
			t.Errorf("pause = %+v", w)
		}
		s.ctlJSON(&w, "watches", "resume", wid)
		if w.State != "active" {
			t.Errorf("resume = %+v", w)
		}
		s.ctlJSON(&w, "watches", "change", wid, "--schedule", "@every 5m", "--hashtags", "golang")
		if w.Schedule != "@every 5m" || len(w.Hashtags) != 1 {
			t.Errorf("change = %+v", w)
		}
		if out, code := s.ctl("watches", "change", wid, "--schedule", "every now and then"); code != exitUsageCode || !strings.Contains(out, "schedule") {
			t.Errorf("change to a bad schedule = %d %q, want exit 2 naming the schedule", code, out)
		}
		var added statusapi.Watch
		s.ctlJSON(&added, "watches", "add", "--user", "ada", "--provider", "x", "--hashtags", "#Go,Gophers", "--schedule", "*/10 * * * *",
			"--target", "https://hooks.example.com/T0KEN/abc?sig=1")
		if added.State != "active" || strings.Contains(strings.Join(added.Targets, " "), "T0KEN") {
			t.Errorf("add = %+v, want active with the webhook's path hidden", added)
		}
		var d statusapi.Done
		s.ctlJSON(&d, "watches", "delete", added.ID)
		if out, code := s.ctl("watches", "delete", added.ID); code != 5 {
			t.Errorf("delete twice = %d %q, want 5 (not found)", code, out)
		}
		if out, code := s.ctl("watches", "add", "--user", "nobody", "--provider", "x", "--hashtags", "a", "--schedule", "@hourly", "--target", "console:"); code != exitUsageCode {
			t.Errorf("add for a user without a grant = %d %q, want 2", code, out)
		}
		if out, code := s.ctl("watches", "run", wid); code != 0 {
			t.Errorf("watches run = %d %q", code, out)
		}
		// The run happens: its result shows in the watch.
		deadline := time.Now().Add(20 * time.Second)
		for {
			var ws []statusapi.Watch
			s.ctlJSON(&ws, "watches")
			if len(ws) > 0 && ws[0].ID == wid && !ws[0].LastRunAt.IsZero() {
				if ws[0].Runs < 1 || ws[0].NextRun.IsZero() {
					t.Errorf("watch after a run = %+v, want a run and a next run", ws[0])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watches run: no run recorded\n%s", s.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.ctlJSON(&ws, "watches")
		if len(ws) != 1 || ws[0].Schedule != "@every 5m" {
			t.Errorf("watches after changes = %+v", ws)
		}
	})
	t.Run("outbox", func(t *testing.T) {
		// A dead letter, as the delivery loop leaves one.
		err := op.d.db.Update(func(tx *vault.Tx) error {
			if _, err := tx.Enqueue(vault.OutboxRow{ID: "dead1", Kind: vault.NoticeMatch, UserID: "ada", Target: "console:", Payload: json.RawMessage(`{}`)}); err != nil {
				return err
			}
			r, err := tx.OutboxRow("dead1")
			if err != nil {
				return err
			}
			r.State, r.Attempts, r.LastError = vault.OutboxDead, 9, "410 gone"
			return tx.PutOutboxRow(r)
		})
		if err != nil {
			t.Fatal(err)
		}
		var o statusapi.Outbox
		s.ctlJSON(&o, "outbox", "list")
		if len(o.Rows) != 1 || o.Rows[0].ID != "dead1" || len(o.Targets) == 0 {
			t.Fatalf("outbox = %+v", o)
		}
		var r statusapi.OutboxRow
		s.ctlJSON(&r, "outbox", "replay", "dead1")
		if (r.State != "pending" && r.State != "delivered") || r.ID != "dead1" {
			t.Errorf("replay = %+v", r)
		}
		deadline := time.Now().Add(10 * time.Second)
		for s.ctlJSON(&o, "outbox", "list", "--state", "delivered"); !hasRow(o, "dead1"); s.ctlJSON(&o, "outbox", "list", "--state", "delivered") {
			if time.Now().After(deadline) {
				t.Fatalf("the replayed notification was not delivered: %+v", o)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out, code := s.ctl("outbox", "replay", "dead1"); code != 6 {
			t.Errorf("replay of a pending row = %d %q, want 6 (conflict)", code, out)
		}
	})
	t.Run("enrollments", func(t *testing.T) {
		var er2 statusapi.EnrollResponse
		s.ctlJSON(&er2, "enroll", "--user", "bob", "--provider", "x", "--hashtags", "a", "--schedule", "@hourly", "--target", "console:", "--ttl", "1h")
		var d statusapi.Done
		s.ctlJSON(&d, "enroll", "cancel", er2.Enrollment.ID)
		var ls []statusapi.Enrollment
		s.ctlJSON(&ls, "enroll", "list")
		states := map[string]string{}
		for _, l := range ls {
			states[l.ID] = l.State
		}
		if states[er.Enrollment.ID] != "used" || states[er2.Enrollment.ID] != "canceled" {
			t.Errorf("links = %v, want the first used and the second canceled", states)
		}
		if out, code := s.ctl("enroll", "--user", "x", "--provider", "nope", "--hashtags", "a", "--schedule", "@hourly", "--target", "console:"); code != exitUsageCode {
			t.Errorf("enroll at an unknown provider = %d %q, want 2", code, out)
		}
	})
	t.Run("keys", func(t *testing.T) {
		var k statusapi.Keys
		s.ctlJSON(&k, "keys", "status")
		var rr statusapi.RotateResult
		s.ctlJSON(&rr, "keys", "rotate")
		var k2 statusapi.Keys
		s.ctlJSON(&k2, "keys")
		if rr.Active != k.Active+1 || k2.Active != rr.Active || len(k2.DataKeys) != 1 || k2.DataKeys[0].Records == 0 {
			t.Errorf("keys %+v, rotate %+v, after %+v", k, rr, k2)
		}
		// The grant still works under the new key (a refresh: the token is
		// due 1.5 s after it was issued).
		time.Sleep(1600 * time.Millisecond)
		if _, err := op.d.renew.Source(g.ID).Token(context.Background()); err != nil {
			t.Errorf("token after rotation: %v", err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		out, code := s.ctl("metrics")
		for _, want := range []string{`tagwatch_refreshes_total{result="renewed"}`, `tagwatch_grants{state="active"} 1`,
			`tagwatch_outbox_depth{state="pending"}`, "tagwatch_outbox_oldest_age_seconds"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("metrics lack %q (exit %d)", want, code)
			}
		}
		resp, err := http.Get("http://" + s.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "tagwatch_refreshes_total") {
			t.Errorf("metrics_listen answer lacks the refreshes")
		}
	})
	t.Run("backup under load", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes atomic.Int64
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					err := op.d.db.Update(func(tx *vault.Tx) error {
						return tx.PutUser(vault.User{ID: fmt.Sprintf("load-%d-%d", i, n), Name: strings.Repeat("x", 2000), CreatedAt: time.Now()})
					})
					if err != nil {
						t.Error(err)
						return
					}
					writes.Add(1)
				}
			}()
		}
		file := filepath.Join(t.TempDir(), "backup.db")
		time.Sleep(200 * time.Millisecond)
		var res map[string]any
		s.ctlJSON(&res, "backup", file)
		close(stop)
		wg.Wait()
		if writes.Load() == 0 {
			t.Fatal("no writes ran during the backup")
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("backup file: %v mode %v", err, fi.Mode())
		}
		bboltCheck(t, file)
		if out, code := s.ctl("backup", file); code == 0 || !strings.Contains(out, "exists") {
			t.Errorf("backup over an existing file = %d %q, want a refusal", code, out)
		}
	})
	t.Run("audit", func(t *testing.T) {
		var evs []statusapi.AuditEvent
		s.ctlJSON(&evs, "audit", "--all")
		n := 0
		for _, e := range evs {
			if e.Kind == statusapi.AuditOperatorRequest {
				n++
				if e.Actor != "uid:"+strconv.Itoa(os.Geteuid()) {
					t.Errorf("operator request audited as %q", e.Actor)
				}
			}
		}
		if n < 10 {
			t.Errorf("%d operator_request entries, want one per change", n)
		}
		var page []statusapi.AuditEvent
		s.ctlJSON(&page, "audit", "--after", strconv.FormatUint(evs[0].Seq, 10), "--limit", "2")
		if len(page) != 2 || page[0].Seq != evs[1].Seq {
			t.Errorf("audit page = %+v", page)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		var res statusapi.RevokeResult
		s.ctlJSON(&res, "revoke", g.ID)
		// The sandbox answers RFC 7009: the revocation is confirmed, not queued.
		if !res.OK || !res.RevokedAtProvider || res.Queued || res.AlreadyRevoked {
			t.Errorf("revoke = %+v, want ok and revoked at the provider", res)
		}
		// The grant is revoked, and deleted once the provider confirmed.
		var after []statusapi.Grant
		s.ctlJSON(&after, "grants")
		if len(after) > 1 || len(after) == 1 && after[0].State != "revoked" {
			t.Errorf("grants after revoke = %+v", after)
		}
		var ws []statusapi.Watch
		s.ctlJSON(&ws, "watches")
		if len(ws) != 1 || ws[0].State != "suspended" {
			t.Errorf("watches after revoke = %+v, want suspended", ws)
		}
		if out, code := s.ctl("revoke", g.ID); len(after) == 0 && code != 5 {
			t.Errorf("revoke of a deleted grant = %d %q, want 5", code, out)
		}
	})
	t.Run("human tables", func(t *testing.T) {
		for _, args := range [][]string{{"status"}, {"users"}, {"grants"}, {"watches"}, {"outbox", "list", "--state", "all"},
			{"audit"}, {"enroll", "list"}, {"keys", "status"}} {
			if out, code := s.ctl(args...); code != 0 || out == "" {
				t.Errorf("tagwatchctl %q = %d %q", args, code, out)
			}
		}
	})

	// Watchdog: WATCHDOG=1 about every 100 ms (half of WATCHDOG_USEC).
	var pings []time.Time
	for _, m := range s.notify.all() {
		if strings.Contains(m.text, "WATCHDOG=1") {
			pings = append(pings, m.at)
		}
	}
	if len(pings) < 10 {
		t.Errorf("%d WATCHDOG=1 in the test's run, want one every 100 ms", len(pings))
	} else {
		gap := pings[len(pings)-1].Sub(pings[0]) / time.Duration(len(pings)-1)
		if gap < 50*time.Millisecond || gap > 200*time.Millisecond {
			t.Errorf("mean WATCHDOG=1 interval %v, want about 100 ms", gap)
		}
	}

	if err := s.stop(); err != nil {
		t.Fatalf("runService = %v\n%s", err, s.logs)
	}
	s.notify.waitFor(t, "STOPPING=1", 5*time.Second)
	bboltCheck(t, filepath.Join(s.dir, "tagwatch.db"))

	// The sentinel search.
	secrets := append(s.tokens.all(), s.secret)
	if len(secrets) < 1+2*4 {
		t.Fatalf("recorded %d tokens, want the enrollment's and 4 refreshes' pairs", len(secrets)-1)
	}
	key, _ := os.ReadFile(s.keyFile)
	secrets = append(secrets, strings.TrimSpace(string(key)))
	places := map[string][]byte{"logs": []byte(s.logs.String()), "socket answers": []byte(s.answers.String())}
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			places[p] = b
		}
		return nil
	})
	if len(places) < 3 {
		t.Fatalf("searched only %d places", len(places))
	}
	for where, b := range places {
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("a secret (%d bytes, %.6s…) is in %s", len(sec), sec, where)
			}
		}
	}
	// The search finds what it looks for.
	if !bytes.Contains([]byte("x"+secrets[0]+"x"), []byte(secrets[0])) || len(secrets[0]) < 16 {
		t.Error("the sentinel search cannot find a token")
	}
}

const exitUsageCode = 2

func ptr[T any](v T) *T { return &v }

func hasRow(o statusapi.Outbox, id string) bool {
	for _, r := range o.Rows {
		if r.ID == id {
			return true
		}
	}
	return false
}

// TestNotifyAndSignals checks READY after binding (in start), the watchdog
// stopping when the liveness check fails, SIGHUP reloading and SIGTERM
// under load leaving a vault that passes bbolt check.
func TestNotifyAndSignals(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(100 * time.Millisecond)
	op := s.op

	// Liveness: a failing scheduler check stops the watchdog.
	var failing atomic.Bool
	op.hooksMu.Lock()
	op.hooks.SchedulerAlive = func(context.Context) error {
		if failing.Load() {
			return errors.New("stuck")
		}
		return nil
	}
	op.hooksMu.Unlock()
	time.Sleep(300 * time.Millisecond)
	failing.Store(true)
	time.Sleep(150 * time.Millisecond)
	before := len(s.notify.all())
	time.Sleep(500 * time.Millisecond)
	for _, m := range s.notify.all()[before:] {
		if strings.Contains(m.text, "WATCHDOG=1") {
			t.Errorf("WATCHDOG=1 while the liveness check fails")
		}
	}
	if !strings.Contains(s.logs.String(), "liveness check failed") {
		t.Error("no log of the failing liveness check")
	}
	failing.Store(false)
	at := time.Now()
	s.notify.waitFor(t, "WATCHDOG=1", 2*time.Second)
	var st statusapi.Status
	s.ctlJSON(&st, "status")
	if len(st.LastErrors) == 0 || st.LastErrors[0].Message != "liveness check failed; not feeding the watchdog" {
		t.Errorf("status last errors = %+v", st.LastErrors)
	}
	_ = at

	// SIGHUP: the configuration is reread, each reload hook gets it, and
	// the scheduler rereads the watches: a schedule changed in the vault
	// behind the daemon's back takes effect.
	s.enrollUser("ada")
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches")
	// An operator's change through the socket reaches the scheduler at once.
	var w statusapi.Watch
	s.ctlJSON(&w, "watches", "pause", ws[0].ID)
	s.ctlJSON(&w, "watches", "resume", ws[0].ID)
	s.ctlJSON(&ws, "watches")
	if len(ws) != 1 || ws[0].NextRun.IsZero() || time.Until(ws[0].NextRun) > time.Minute {
		t.Fatalf("watch before the change = %+v, want a next run within its minute", ws)
	}
	err := op.d.db.Update(func(tx *vault.Tx) error {
		w, err := tx.Watch(ws[0].ID)
		if err != nil {
			return err
		}
		// Yearly: whatever the watch's phase (at most 5 minutes for a cron
		// expression), its next run is then more than a day away.
		w.Schedule = "0 0 1 1 *"
		return tx.PutWatch(w)
	})
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan string, 1)
	op.hooksMu.Lock()
	op.hooks.Reload = append(op.hooks.Reload, func(_ context.Context, cfg *config.Config) error {
		reloaded <- cfg.Scheduler.CatchUpWindow.String()
		return nil
	})
	op.hooksMu.Unlock()
	raw, _ := os.ReadFile(s.config)
	// The reload also raises scheduler.min_interval from 1m to 2m: the
	// rules every door applies change with it.
	raw = bytes.Replace(raw, []byte("[scheduler]\nmin_interval = \"1m\"\n"), []byte("[scheduler]\ncatch_up_window = \"7m\"\nmin_interval = \"2m\"\n"), 1)
	os.WriteFile(s.config, raw, 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case got := <-reloaded:
		if got != "7m0s" {
			t.Errorf("reload hook saw catch_up_window %s, want the new 7m", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("SIGHUP did not reload\n%s", s.logs)
	}
	s.notify.waitFor(t, "RELOADING=1", 5*time.Second)
	s.ctlJSON(&ws, "watches")
	yearly, _ := sched.Parser.Parse("0 0 1 1 *")
	due := yearly.Next(time.Now())
	if len(ws) != 1 || ws[0].Schedule != "0 0 1 1 *" || ws[0].NextRun.Before(due) || ws[0].NextRun.After(due.Add(5*time.Minute)) {
		t.Errorf("watch after SIGHUP = %+v, want the next run by the new yearly schedule (%v plus a phase of at most 5 min)", ws, due)
	}
	// The socket applies the reloaded rules: 90 s between runs was allowed
	// before, not any more.
	if _, err := statusapi.NewClient(s.socket).ChangeWatch(context.Background(), ws[0].ID, statusapi.ChangeWatch{Schedule: ptr("@every 90s")}); err == nil ||
		!strings.Contains(err.Error(), "the minimum between runs of one watch is 2m0s (scheduler.min_interval)") {
		t.Errorf("ChangeWatch to @every 90s after the reload = %v, want a refusal naming the new 2m floor", err)
	}

	// SIGTERM under load: clients changing things through the socket and
	// writers in the vault while the signal arrives.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	c := statusapi.NewClient(s.socket)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.PauseWatch(context.Background(), ws[0].ID); err != nil {
					return // the daemon is going
				}
				c.ResumeWatch(context.Background(), ws[0].ID)
				var buf bytes.Buffer
				c.Backup(context.Background(), &buf)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.cancel = nil
		if err != nil {
			t.Errorf("runService after SIGTERM = %v, want a clean exit\n%s", err, s.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20 s of SIGTERM\n%s", s.logs)
	}
	close(stop)
	wg.Wait()
	s.notify.waitFor(t, "STOPPING=1", time.Second)
	if !strings.Contains(s.logs.String(), "tagwatchd stopped") {
		t.Errorf("no clean stop in the log:\n%s", s.logs)
	}
	if _, err := os.Stat(s.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status socket left behind: %v", err)
	}
	bboltCheck(t, filepath.Join(s.dir, "tagwatch.db"))
}
