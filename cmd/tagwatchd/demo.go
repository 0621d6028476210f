package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/worker"
	"tagwatch/worker/xapi/xsandbox"
)

const demoUsage = `Usage: tagwatchd demo [-duration 60s] [-manual] [-webhook URL] [-color auto|always|never] [-keep]

Runs the whole tagwatch story in one process, with no accounts and no
network: an in-process X (the sandbox) with a post generator, a temporary
vault with a generated master key, and the daemon itself (HTTP server,
status socket, scheduler, renewal, outbox and channels). Two demo users
enroll through the real consent flow over HTTP; their watches run, their
20-second access tokens expire and are renewed, matching posts arrive and
notifications go out. At the end it prints a summary and exits 0 only if
every step of the story happened.
`

// demoUser is a person in the demo and the hashtags they watch.
type demoUser struct {
	id, xID, username, name string
	hashtags                []string
}

var demoUsers = []demoUser{
	{id: "ada", xID: "1001", username: "ada", name: "Ada Lovelace", hashtags: []string{"golang", "rust"}},
	{id: "grace", xID: "1002", username: "grace", name: "Grace Hopper", hashtags: []string{"bbolt", "oauth"}},
}

// demoStats counts what happened, from the components' own events.
type demoStats struct {
	enrolled, renewals, runs, postsRead, matches, delivered, failures atomic.Int64
	mu                                                                sync.Mutex
	renewalsBy                                                        map[string]int
}

func (s *demoStats) renewed(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewalsBy[user]++
	return s.renewalsBy[user]
}

// printer writes one line per event, coloured on a terminal.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	start time.Time
}

func (p *printer) line(color, kind, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := fmt.Sprintf("%6.1fs", time.Since(p.start).Seconds())
	label := fmt.Sprintf("%-9s", kind)
	if p.color {
		label = "\x1b[" + color + "m" + label + "\x1b[0m"
		ts = "\x1b[2m" + ts + "\x1b[0m"
	}
	fmt.Fprintf(p.w, "%s %s %s\n", ts, label, fmt.Sprintf(format, args...))
}

// Colours of the event kinds.
const (
	cBlue, cGreen, cYellow, cMagenta, cCyan, cRed, cBold = "34", "32", "33", "35", "36", "31", "1"
)

// consoleLines turns the console channel's notification blocks into one
// line per matching post (and one per other notice).
type consoleLines struct {
	p *printer
}

func (c consoleLines) Write(b []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimPrefix(sc.Text(), "│ "))
	}
	if len(lines) < 2 {
		return len(b), nil
	}
	heading := lines[1]
	posts := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "@") && i+1 < len(lines) {
			author, _, _ := strings.Cut(l, " ·")
			text := lines[i+1]
			if len(text) > 90 {
				text = text[:90] + "…"
			}
			c.p.line(cMagenta, "match", "%s: %s", author, text)
			posts++
		}
	}
	if posts == 0 {
		c.p.line(cMagenta, "notice", "%s", heading)
	}
	return len(b), nil
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage); fs.PrintDefaults() }
	duration := fs.Duration("duration", 60*time.Second, "stop by itself after this long")
	manual := fs.Bool("manual", false, "print the consent links and wait for a person to open them in a browser")
	webhook := fs.String("webhook", "", "also send notifications to this webhook URL (Standard Webhooks; the secret is printed)")
	colorMode := fs.String("color", "auto", "colour the output: auto (on a terminal), always, never")
	keep := fs.Bool("keep", false, "keep the temporary state directory (vault, log) afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))}
	}
	p := &printer{w: stdout, start: time.Now(), color: useColor(*colorMode, stdout)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	dir, err := os.MkdirTemp("", "tagwatch-demo-")
	if err != nil {
		return err
	}
	if *keep {
		defer p.line(cBold, "state", "kept in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	public := "http://" + ln.Addr().String()

	// The in-process X, with the demo users, some authors and a generator.
	clientSecret := randomSecret()
	if err := os.WriteFile(filepath.Join(dir, "x-client-secret"), []byte(clientSecret), 0o600); err != nil {
		return err
	}
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch-demo", ClientSecret: clientSecret,
		RedirectURIs: []string{public + "/callback"}, AccessTokenTTL: 20 * time.Second, AppName: "tagwatch (demo)"})
	if err != nil {
		return err
	}
	defer sb.Close()
	var authors []string
	for _, u := range demoUsers {
		if err := sb.AddUser(xsandbox.User{ID: u.xID, Username: u.username, Name: u.name}); err != nil {
			return err
		}
	}
	for i, name := range []string{"gopher", "ferris", "kelsey", "rob", "julia"} {
		id := fmt.Sprint(2001 + i)
		if err := sb.AddUser(xsandbox.User{ID: id, Username: name, Name: strings.ToUpper(name[:1]) + name[1:]}); err != nil {
			return err
		}
		authors = append(authors, id)
	}

	cfg := demoConfig(dir, ln.Addr().String(), public, sb.URL())
	var webhookSecret string
	if *webhook != "" {
		webhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte(randomSecret())[:24])
		if err := os.WriteFile(filepath.Join(dir, "webhook-secret"), []byte(webhookSecret), 0o600); err != nil {
			return err
		}
		cfg.Notify.Webhooks = []config.Hook{{URL: *webhook, SecretFile: filepath.Join(dir, "webhook-secret")}}
	}
	master, _, err := seal.NewMasterKey()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "tagwatchd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()

	st := &demoStats{renewalsBy: map[string]int{}}
	opts := options{
		Master: master, CreateVault: true, HTTPListener: ln, Console: consoleLines{p},
		RenewObserver: func(ev renew.Event) {
			switch ev.Kind {
			case renew.EventRenewed:
				st.renewals.Add(1)
				n := st.renewed(ev.UserID)
				p.line(cYellow, "renewed", "%s's access token renewed (refresh #%d, this user's #%d), valid until %s",
					ev.UserID, ev.RefreshCount, n, ev.Expiry.Local().Format("15:04:05"))
			case renew.EventRefreshFailed, renew.EventNeedsReconsent, renew.EventOperatorAlert, renew.EventLostRotation:
				st.failures.Add(1)
				p.line(cRed, "renewal", "%s: %s %s", ev.UserID, ev.Kind, ev.Reason)
			}
		},
		WorkerObserver: func(ev worker.Event) {
			switch ev.Kind {
			case worker.EventRun:
				st.runs.Add(1)
				st.postsRead.Add(int64(ev.PostsRead))
				st.matches.Add(int64(ev.Matches))
				p.line(cBlue, "ran", "%s's watch: read %d posts, %d new, %d pages, lag %s", ev.UserID, ev.PostsRead, ev.Matches, ev.Pages, ev.Lag.Round(time.Millisecond))
			case worker.EventRunFailed, worker.EventUsageCapped:
				st.failures.Add(1)
				p.line(cRed, "failed", "%s's watch: %s: %v", ev.UserID, ev.Kind, ev.Err)
			}
		},
		NotifyObserver: func(ev notify.Event) {
			switch ev.Kind {
			case notify.EventDelivered:
				st.delivered.Add(1)
				p.line(cGreen, "delivered", "notification %s to %s in %s", short(ev.ID), ev.Target, ev.Latency.Round(time.Millisecond))
			case notify.EventDead, notify.EventDisabled:
				st.failures.Add(1)
				p.line(cRed, "delivery", "%s to %s: %s", short(ev.ID), ev.Target, ev.Kind)
			}
		},
	}
	// The daemon runs as it does under systemd (serve): status socket,
	// metrics, watchdog and all; its log goes to the state directory.
	bound := make(chan *operator, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logFile, opts, func(op *operator) { bound <- op }) }()
	var d *daemon
	select {
	case op := <-bound:
		d = op.d
	case err := <-done:
		return fmt.Errorf("demo: the daemon did not start: %w", err)
	}

	p.line(cBold, "demo", "tagwatch %s: X sandbox at %s, daemon at %s, state in %s", Version(), sb.URL(), public, dir)
	p.line(cBold, "demo", "demo pace: watches run %s (scheduler.min_interval %s here; the default is %s)", strings.TrimPrefix(demoSchedule, "@"),
		demoMinInterval, config.DefaultMinInterval)
	p.line(cBold, "demo", "look inside while it runs: go run ./cmd/tagwatchctl --socket %s status", cfg.Status.Socket)
	if webhookSecret != "" {
		p.line(cBold, "demo", "webhook %s gets signed deliveries; secret %s", *webhook, webhookSecret)
	}
	genWait, err := sb.StartGenerator(ctx, xsandbox.Generator{Rate: 4, Hashtags: []string{"golang", "rust", "bbolt", "oauth", "sqlite", "kubernetes"},
		AuthorIDs: authors, RetweetRatio: 0.1})
	if err != nil {
		return err
	}
	defer genWait()
	p.line(cBold, "demo", "posting 4 posts a second with #golang #rust #bbolt #oauth #sqlite #kubernetes")

	for _, u := range demoUsers {
		targets := []string{"console:"}
		if *webhook != "" {
			targets = append(targets, *webhook)
		}
		link, _, err := d.enroll.CreateLink(ctx, vault.LinkRequest{UserID: u.id, UserName: u.name, Provider: "x", Expected: u.username,
			Watch: &vault.WatchSpec{Hashtags: u.hashtags, Schedule: demoSchedule, Targets: targets}, CreatedBy: "tagwatchd demo"})
		if err != nil {
			return fmt.Errorf("demo: consent link for %s: %w", u.id, err)
		}
		p.line(cCyan, "link", "one-time consent link for %s: %s", u.name, link)
		if *manual {
			continue
		}
		if err := walkConsent(ctx, link, public, sb.URL(), u.username); err != nil {
			return fmt.Errorf("demo: consent flow for %s: %w", u.id, err)
		}
		st.enrolled.Add(1)
		p.line(cCyan, "enrolled", "%s consented at X (landing page, POST, X consent, callback); watching #%s every 5s", u.name, strings.Join(u.hashtags, " #"))
	}
	if *manual {
		p.line(cBold, "demo", "open the links above in a browser; the sandbox asks which demo user you are")
		go waitForGrants(ctx, d.db, st, p)
	}

	err = <-done
	p.line(cBold, "demo", "stopping")
	genWait()
	return demoSummary(p, st, err)
}

// Demo pace. The demo is a demo: its watches run every 5 seconds so that
// the whole story fits in a minute, far faster than scheduler.min_interval
// allows anywhere else (X's quotas argue for minutes), and its in-process
// X has no app-wide window to share.
const (
	demoSchedule    = "@every 5s"
	demoMinInterval = 5 * time.Second
	// demoAppRequests is the app-wide budget of search requests per
	// config.XRateWindow (15 min): the two demo users' watches run 180
	// times each in it, each run reading up to scheduler.max_pages (5)
	// pages; twice that, for room.
	demoAppRequests = 2 * (2 * 180 * 5)
)

// demoConfig is the embedded configuration of the demo.
func demoConfig(dir, listen, public, sandbox string) *config.Config {
	cfg := config.Default()
	cfg.Path = "(demo)"
	cfg.Daemon.StateDir = dir
	cfg.HTTP.Listen = listen
	cfg.HTTP.PublicURL = public
	cfg.Status.Socket = filepath.Join(dir, "status.sock")
	// Renew an access token once it has less than half of its 20 s left:
	// with a run every 5 s each user's token is renewed by the 15th and
	// the 25th second, so -duration 40s shows two renewals per user
	// whatever the watches' phases.
	cfg.Renewal.Skew = config.Duration{Duration: 10 * time.Second}
	cfg.Notify.AllowPrivateTargets = true
	cfg.Scheduler.MinInterval = config.Duration{Duration: demoMinInterval}
	cfg.Scheduler.AppRequestsPerWindow = demoAppRequests
	cfg.Notify.PerTargetConcurrency = 2
	cfg.Providers = []config.Provider{{Name: "x", Kind: "x", ClientID: "tagwatch-demo", ClientAuth: "client_secret_basic",
		ClientSecretFile: filepath.Join(dir, "x-client-secret"),
		AuthURL:          sandbox + string(xsandbox.EndpointAuthorize), TokenURL: sandbox + string(xsandbox.EndpointToken),
		RevokeURL: sandbox + string(xsandbox.EndpointRevoke), APIURL: sandbox}}
	return &cfg
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// walkConsent does what a person's browser does: open the link, press the
// button, approve at X as username, follow the callback to the success page.
func walkConsent(ctx context.Context, link, public, sandbox, username string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	step := func(method, u string, form url.Values, want int) (*http.Response, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != want {
			return nil, "", fmt.Errorf("%s %s: HTTP %d, want %d", method, strings.SplitN(u, "?", 2)[0], resp.StatusCode, want)
		}
		return resp, string(b), nil
	}
	if _, _, err := step("GET", link, nil, http.StatusOK); err != nil {
		return err
	}
	resp, _, err := step("POST", link, url.Values{}, http.StatusSeeOther)
	if err != nil {
		return err
	}
	auth := resp.Header.Get("Location")
	_, page, err := step("GET", auth, nil, http.StatusOK)
	if err != nil {
		return err
	}
	m := requestField.FindStringSubmatch(page)
	if m == nil {
		return errors.New("the X consent page has no request field")
	}
	resp, _, err = step("POST", sandbox+string(xsandbox.EndpointAuthorize),
		url.Values{"request": {html.UnescapeString(m[1])}, "username": {username}, "action": {"authorize"}}, http.StatusFound)
	if err != nil {
		return err
	}
	resp, _, err = step("GET", resp.Header.Get("Location"), nil, http.StatusSeeOther)
	if err != nil {
		return err
	}
	_, _, err = step("GET", public+resp.Header.Get("Location"), nil, http.StatusOK)
	return err
}

// waitForGrants reports enrollments done by a person in -manual mode.
func waitForGrants(ctx context.Context, db *vault.DB, st *demoStats, p *printer) {
	seen := map[string]bool{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		grants, _ := db.ListGrants()
		for _, g := range grants {
			if !seen[g.UserID] && g.State == vault.GrantActive {
				seen[g.UserID] = true
				st.enrolled.Add(1)
				p.line(cCyan, "enrolled", "%s consented in the browser", g.UserID)
			}
		}
	}
}

func demoSummary(p *printer, st *demoStats, runErr error) error {
	st.mu.Lock()
	minRenewals := -1
	for _, u := range demoUsers {
		if n := st.renewalsBy[u.id]; minRenewals < 0 || n < minRenewals {
			minRenewals = n
		}
	}
	st.mu.Unlock()
	checks := []struct {
		ok   bool
		what string
	}{
		{st.enrolled.Load() == int64(len(demoUsers)), fmt.Sprintf("users enrolled: %d of %d", st.enrolled.Load(), len(demoUsers))},
		{minRenewals >= 2, fmt.Sprintf("renewals: %d (at least %d per user)", st.renewals.Load(), max(minRenewals, 0))},
		{st.runs.Load() > 0, fmt.Sprintf("watch runs: %d", st.runs.Load())},
		{st.postsRead.Load() > 0, fmt.Sprintf("posts read: %d", st.postsRead.Load())},
		{st.matches.Load() > 0, fmt.Sprintf("matches: %d", st.matches.Load())},
		{st.delivered.Load() > 0, fmt.Sprintf("notifications delivered: %d", st.delivered.Load())},
		{true, fmt.Sprintf("failures: %d", st.failures.Load())},
	}
	ok := runErr == nil
	p.line(cBold, "summary", "")
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark, ok = "MISSING", false
		}
		p.line(cBold, "summary", "%s %s", mark, c.what)
	}
	if runErr != nil {
		p.line(cRed, "summary", "daemon: %v", runErr)
	}
	if !ok {
		return &exitError{1, errors.New("demo: the story is incomplete (see the summary)")}
	}
	p.line(cGreen, "summary", "every step of the story happened")
	return nil
}

func useColor(mode string, w io.Writer) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func randomSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
