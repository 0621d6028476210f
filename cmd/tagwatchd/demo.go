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
network: an in-process X (the sandbox) that the demo posts to, a temporary
vault with a generated master key, and the daemon itself (HTTP server,
status socket, scheduler, renewal, outbox and channels). Two demo users
enroll through the real consent flow over HTTP; their watches run, their
20-second access tokens expire and are renewed, matching posts arrive and
notifications go out. After the first renewals one user revokes tagwatch
at X; the daemon notices on its next refresh or run, suspends that user's
watch and sends a re-consent link, which the user follows; the watch
resumes from its cursor. At the end X stops posting, the last runs deliver
what is left, and a summary checks each step against what it needed,
including that every post X has for each user's hashtags was delivered
once. It exits 0 only if every step of the story happened. The story ends
within -duration (at least 40s): X stops posting 10s before its end, and
the summary comes once the last runs delivered. A line every few seconds
shows the counts when they change.

Ctrl-C (or SIGTERM) stops it early: X stops posting, the last runs deliver
what is left (at most 8s; a second Ctrl-C skips them), and the summary
marks "stopped" each step the stop came before, and counts the posts made
after the last run as not yet due, not missed. It then exits 130 (143 on
SIGTERM), or 1 if a step that had its time did not happen.

Without -keep the state directory (with the daemon's log) is removed at
the end. With -keep it stays, with the vault's master key and a
configuration beside it (mode 0600) for the offline subcommands; the demo
lists every file kept, with its mode.
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

// fewestRenewals is the least renewals of one demo user.
func (s *demoStats) fewestRenewals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	fewest := -1
	for _, u := range demoUsers {
		if n := s.renewalsBy[u.id]; fewest < 0 || n < fewest {
			fewest = n
		}
	}
	return fewest
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
	cBlue, cGreen, cYellow, cMagenta, cCyan, cRed, cBold, cDim = "34", "32", "33", "35", "36", "31", "1", "2"
)

// consoleLines turns the console channel's notification blocks into one
// line per matching post (and one per other notice), and gives each block
// to the ledger. A consent's "tagwatch is watching" notice waits in cn
// for the demo's line saying the consent happened.
type consoleLines struct {
	p   *printer
	led *ledger
	cn  *consentNotices
}

func (c consoleLines) Write(b []byte) (int, error) {
	c.led.noteConsole(string(b))
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
		say := func() { c.p.line(cMagenta, "notice", "%s", heading) }
		m := consoleHeader.FindStringSubmatch(lines[0])
		if user := watchingUser(heading); user != "" && m != nil && m[2] == vault.NoticeEnrolled {
			c.cn.notice(user, m[1], say)
		} else {
			say()
		}
	}
	return len(b), nil
}

// watchingUser is the demo user whose consent a "tagwatch is watching
// #a #b" notice (or "... again") follows, or "".
func watchingUser(heading string) string {
	for _, u := range demoUsers {
		watching := "tagwatch is watching #" + strings.Join(u.hashtags, " #")
		if heading == watching || heading == watching+" again" {
			return u.id
		}
	}
	return ""
}

// consentNotices keeps the console's "tagwatch is watching" notice of a
// consent, and the line of its delivery, until the demo has said the
// consent happened: the notifier prints the notice before the consent
// flow's last page is back. Its methods are safe for concurrent use; it
// prints under its lock, so the lines keep their order.
type consentNotices struct {
	mu     sync.Mutex
	said   map[string]int      // consents the demo has said, by user
	seen   map[string]int      // "watching" notices the console printed, by user
	held   map[string][]func() // lines held, by user
	heldID map[string]string   // the id of a held notice: its user
}

func newConsentNotices() *consentNotices {
	return &consentNotices{said: map[string]int{}, seen: map[string]int{}, held: map[string][]func(){}, heldID: map[string]string{}}
}

// notice prints the user's "watching" notice id, or holds it until the
// demo says the consent it follows.
func (c *consentNotices) notice(user, id string, say func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[user]++
	if c.seen[user] <= c.said[user] {
		say()
		return
	}
	c.held[user] = append(c.held[user], say)
	c.heldID[id] = user
}

// delivered prints the delivery line of notification id, or holds it
// behind its held notice.
func (c *consentNotices) delivered(id string, say func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if user, ok := c.heldID[id]; ok {
		c.held[user] = append(c.held[user], say)
		return
	}
	say()
}

// consented prints the demo's line saying the user consented, then the
// lines held for it.
func (c *consentNotices) consented(user string, say func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.said[user]++
	say()
	c.releaseLocked(user)
}

// flush prints every line still held (a consent the demo never said).
func (c *consentNotices) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range demoUsers {
		c.releaseLocked(u.id)
	}
}

func (c *consentNotices) releaseLocked(user string) {
	for _, say := range c.held[user] {
		say()
	}
	delete(c.held, user)
	for id, u := range c.heldID {
		if u == user {
			delete(c.heldID, id)
		}
	}
}

// demoTarget names a target on the demo's terminal: the label
// notify.TargetLabel gives (never a webhook's path, which may carry a
// secret), a webhook's written as words, not as a URL a terminal would
// make a link of (and run into the words after it).
func demoTarget(label string) string {
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(label, scheme); ok {
			host, fp, _ := strings.Cut(rest, "/…#")
			return "webhook at " + host + " (#" + fp + ")"
		}
	}
	return label
}

// refusalLog passes the daemon's log to its file (path; kept says it
// stays after the demo) and tells the demo's terminal about each refused
// consent (a sign-in as another account, say), which the browser shows but
// the terminal would not.
type refusalLog struct {
	w    io.Writer
	p    *printer
	path string
	kept bool
}

var (
	logReason = regexp.MustCompile(`\breason=(\S+)`)
	logUser   = regexp.MustCompile(`\buser=(\S+)`)
)

func (r refusalLog) Write(b []byte) (int, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.Contains(line, `msg="enrollment request refused"`) {
			continue
		}
		reason, user := "", "someone"
		if m := logReason.FindStringSubmatch(line); m != nil {
			reason = m[1]
		}
		if m := logUser.FindStringSubmatch(line); m != nil {
			user = m[1]
		}
		switch reason {
		case "wrong_account":
			r.p.line(cRed, "refused", "%s's consent: signed in at X with another account than the link is for; nothing was stored. "+
				"Open the link again and, on the sandbox's page, sign out and pick @%s", user, demoUsername(user))
		default:
			gone := ""
			if !r.kept {
				gone = "; removed at the end, unless -keep"
			}
			r.p.line(cRed, "refused", "a consent request of %s: %s (see the daemon's log, %s%s)", user, reason, r.path, gone)
		}
	}
	return r.w.Write(b)
}

func demoUsername(id string) string {
	for _, u := range demoUsers {
		if u.id == id {
			return u.username
		}
	}
	return id
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is one line (run prints it); -h prints the usage
	// A Func flag, not fs.Duration: a bad value says the format (fs.Duration
	// says "parse error"), and the help says the default once, with -manual's.
	duration, durationSet := 60*time.Second, false
	fs.Func("duration", fmt.Sprintf("end the story within this `duration`: default 60s (10m with -manual); at least %s",
		demoMinDuration), func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("want a Go duration such as 60s or 2m")
		}
		duration, durationSet = d, true
		return nil
	})
	manual := fs.Bool("manual", false, "print the consent links and wait for a person to open them in a browser")
	webhook := fs.String("webhook", "", "also send notifications to this webhook URL (Standard Webhooks; the secret is printed)")
	colorMode := fs.String("color", "auto", "colour the output: auto (on a terminal), always, never")
	keep := fs.Bool("keep", false, "keep the state directory (vault, its master key, a configuration, the log) afterwards")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlagsUsage(stdout, demoUsage, fs)
			return nil
		}
		return &exitError{exitUsage, fmt.Errorf("demo: %w (see tagwatchd demo -h)", err)}
	}
	if fs.NArg() > 0 {
		return &exitError{exitUsage, fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))}
	}
	if *manual && !durationSet {
		duration = 10 * time.Minute // a person opens the links
	}
	if duration < demoMinDuration {
		return &exitError{exitUsage, fmt.Errorf("demo: -duration %s is too short: the story needs at least %s "+
			"(the first renewals by the 15th second, a revocation noticed and consented again, the watch resumed, "+
			"and a last run for the posts)", duration, demoMinDuration)}
	}
	switch *colorMode {
	case "auto", "always", "never":
	default:
		return &exitError{exitUsage, fmt.Errorf("demo: invalid value %q for flag -color: want auto, always or never", *colorMode)}
	}
	// Ctrl-C stops the story, not the daemon: the last runs still deliver
	// (interrupts.watch). The daemon itself ignores the signals (NoSignals).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	p := &printer{w: stdout, start: time.Now(), color: useColor(*colorMode, stdout)}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	deadline, _ := ctx.Deadline()

	dir, err := os.MkdirTemp("", "tagwatch-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	public := "http://" + ln.Addr().String()

	// The in-process X, with the demo users and some authors. The demo
	// posts itself (ledger.generate), so it knows every post X has.
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
	master, encoded, err := seal.NewMasterKey()
	if err != nil {
		return err
	}
	if *keep {
		// A kept vault can be opened again: its master key and a
		// configuration naming it are kept beside it.
		if err := keepDemoState(dir, cfg, encoded); err != nil {
			return err
		}
		defer printKept(p, dir)
	}
	clear(encoded)
	logPath := filepath.Join(dir, "tagwatchd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()

	st := &demoStats{renewalsBy: map[string]int{}}
	led := newLedger()
	cn := newConsentNotices()
	defer cn.flush()
	sto := &story{storyFacts: storyFacts{victim: demoUsers[len(demoUsers)-1], stageAt: p.start}}
	opts := options{
		Master: master, CreateVault: true, HTTPListener: ln, Console: consoleLines{p, led, cn}, NoSignals: true,
		RenewObserver: func(ev renew.Event) {
			switch ev.Kind {
			case renew.EventRenewed:
				st.renewals.Add(1)
				n := st.renewed(ev.UserID)
				p.line(cYellow, "renewed", "%s's access token renewed (refresh #%d, this user's #%d), valid until %s",
					ev.UserID, ev.RefreshCount, n, ev.Expiry.Local().Format("15:04:05"))
			case renew.EventNeedsReconsent:
				if sto.during(ev.UserID) {
					sto.note(func(s *storyFacts) {
						s.revokeErrors++
						if s.noticedAt.IsZero() {
							s.noticedAt, s.noticedHow = time.Now(), "a refresh"
						}
					})
					p.line(cRed, "noticed", "%s's grant is dead at X (%s): watches suspended, re-consent link queued", ev.UserID, ev.Reason)
					return
				}
				st.failures.Add(1)
				p.line(cRed, "renewal", "%s: %s %s", ev.UserID, ev.Kind, ev.Reason)
			case renew.EventRefreshFailed, renew.EventOperatorAlert, renew.EventLostRotation:
				if sto.during(ev.UserID) {
					sto.note(func(s *storyFacts) { s.revokeErrors++ })
				} else {
					st.failures.Add(1)
				}
				p.line(cRed, "renewal", "%s: %s %s", ev.UserID, ev.Kind, ev.Reason)
			}
		},
		WorkerObserver: func(ev worker.Event) {
			switch ev.Kind {
			case worker.EventRun:
				st.runs.Add(1)
				st.postsRead.Add(int64(ev.PostsRead))
				st.matches.Add(int64(ev.Matches))
				led.ran(ev.UserID, ev.Time, ev.Time.Add(ev.Duration))
				sto.note(func(s *storyFacts) {
					if ev.UserID == s.victim.id && !s.consentedAt.IsZero() && s.ranAgainAt.IsZero() {
						s.ranAgainAt = time.Now()
					}
				})
				p.line(cBlue, "ran", "%s", runLine(ev))
			case worker.EventRunFailed, worker.EventUsageCapped:
				if sto.during(ev.UserID) {
					sto.note(func(s *storyFacts) {
						s.revokeErrors++
						if s.noticedAt.IsZero() {
							s.noticedAt, s.noticedHow = time.Now(), "a run"
						}
					})
				} else {
					st.failures.Add(1)
				}
				p.line(cRed, "failed", "%s's watch: %s: %v", ev.UserID, ev.Kind, ev.Err)
			}
		},
		NotifyObserver: func(ev notify.Event) {
			switch ev.Kind {
			case notify.EventDelivered:
				st.delivered.Add(1)
				cn.delivered(ev.ID, func() {
					p.line(cGreen, "delivered", "notification %s to %s in %s", short(ev.ID), demoTarget(ev.Target), ev.Latency.Round(time.Millisecond))
				})
			case notify.EventDead, notify.EventDisabled:
				st.failures.Add(1)
				p.line(cRed, "delivery", "%s to %s: %s", short(ev.ID), demoTarget(ev.Target), ev.Kind)
			}
		},
	}
	// The daemon runs as it does under systemd (serve): status socket,
	// metrics, watchdog and all; its log goes to the state directory. The
	// story runs in storyCtx, which the first Ctrl-C ends; the last runs
	// after it in lastCtx, which a second Ctrl-C ends.
	daemonCtx, stopDaemon := context.WithCancel(ctx)
	defer stopDaemon()
	storyCtx, stopStory := context.WithCancel(daemonCtx)
	defer stopStory()
	lastCtx, hurry := context.WithCancel(daemonCtx)
	defer hurry()
	intr := &interrupts{}
	intrDone := make(chan struct{})
	go func() { defer close(intrDone); intr.watch(daemonCtx, sigs, stopStory, hurry) }()
	bound := make(chan *operator, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(daemonCtx, cfg, refusalLog{w: logFile, p: p, path: logPath, kept: *keep}, opts, func(op *operator) { bound <- op })
	}()
	var d *daemon
	select {
	case op := <-bound:
		d = op.d
	case err := <-done:
		stopDaemon()
		<-intrDone
		return fmt.Errorf("demo: the daemon did not start: %w", err)
	}

	removed := " (removed at the end, with the daemon's log; -keep keeps it)"
	if *keep {
		removed = " (kept at the end)"
	}
	p.line(cBold, "demo", "tagwatch %s: X sandbox at %s, daemon at %s, state in %s%s", Version(), sb.URL(), public, dir, removed)
	p.line(cBold, "demo", "demo pace: watches run %s (scheduler.min_interval %s here; the default is %s)", strings.TrimPrefix(demoSchedule, "@"),
		demoMinInterval, config.DefaultMinInterval)
	p.line(cBold, "demo", "look inside while it runs: go run ./cmd/tagwatchctl --socket %s status", cfg.Status.Socket)
	p.line(cBold, "demo", "Ctrl-C stops it early: the last runs deliver what is left, then the summary")
	if webhookSecret != "" {
		p.line(cBold, "demo", "the %s gets signed deliveries; secret %s", demoTarget(notify.TargetLabel(*webhook)), webhookSecret)
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(daemonCtx, p, demoProgressEvery, func() progressFacts { return progressOf(st, led, d.db) })
	}()

	story := demoRun{ctx: storyCtx, p: p, st: st, led: led, sto: sto, cn: cn, d: d, sb: sb, public: public, manual: *manual,
		webhook: *webhook, authors: authors, drainAt: deadline.Add(-demoDrain)}
	storyDone := make(chan struct{})
	go func() {
		defer close(storyDone)
		story.run()
		if sig, at := intr.stopped(); sig != nil && sto.snapshot().stage != stageDone {
			story.stopEarly(lastCtx, signalName(sig), at)
		}
		stopDaemon()
	}()
	err = <-done
	stopDaemon()
	<-storyDone
	<-progressDone
	<-intrDone
	cn.flush()
	p.line(cBold, "demo", "stopping")
	o := outcomeOf(st, sto, led, time.Now())
	o.manual = *manual
	if sig, _ := intr.stopped(); sig != nil && o.story.stoppedBy != "" {
		o.exitCode = 128 + int(sig.(syscall.Signal))
	}
	return demoSummary(p, o, err)
}

// interrupts turns the first SIGINT or SIGTERM into an early stop of the
// story and a second into the end of the last runs; after that the
// signals have their default effect again. Safe for concurrent use.
type interrupts struct {
	mu  sync.Mutex
	sig os.Signal
	at  time.Time
}

// watch runs until ctx ends or a second signal came.
func (in *interrupts) watch(ctx context.Context, sigs chan os.Signal, stopStory, hurry func()) {
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			if n == 0 {
				in.mu.Lock()
				in.sig, in.at = s, time.Now()
				in.mu.Unlock()
				stopStory()
				continue
			}
			hurry()
			signal.Stop(sigs)
			return
		}
	}
}

// stopped returns the first signal and when it came, or nil.
func (in *interrupts) stopped() (os.Signal, time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig, in.at
}

// signalName names sig as a person sent it.
func signalName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "Ctrl-C"
}

// demoRun drives the story over a running daemon.
type demoRun struct {
	ctx             context.Context
	p               *printer
	st              *demoStats
	led             *ledger
	sto             *story
	cn              *consentNotices
	d               *daemon
	sb              *xsandbox.Server
	public, webhook string
	manual          bool
	authors         []string
	drainAt         time.Time
}

// run tells the story, one stage after the other (story.reach), until its
// end or the end of r.ctx.
func (r *demoRun) run() {
	ctx, p := r.ctx, r.p
	r.sto.reach(stageEnroll)
	if !r.enroll() {
		return
	}
	// X gets posts from now on; the demo keeps a ledger of them. X stops
	// posting when the story ends, whatever ends it.
	genCtx, stopPosting := context.WithCancel(ctx)
	genDone := make(chan struct{})
	go func() { defer close(genDone); r.led.generate(genCtx, r.sb, r.authors) }()
	defer func() { stopPosting(); <-genDone }()
	p.line(cBold, "demo", "X gets %d posts a second with #%s (a tenth of them reposts, which watches leave out)", demoPostRate, strings.Join(demoTags, " #"))

	// After every user's first renewal, the last user takes tagwatch's
	// access back at X, as in X's settings.
	v := r.sto.victim
	r.sto.reach(stageRenewals)
	if !waitUntil(ctx, 100*time.Millisecond, func() bool { return r.st.fewestRenewals() >= 1 }) {
		return
	}
	r.sb.RevokeUser(v.xID)
	r.sto.note(func(s *storyFacts) { s.revokedAt = time.Now() })
	r.sto.reach(stageNotice)
	p.line(cRed, "revoked", "%s revoked tagwatch's access at X (Settings → Connected apps → Revoke); the daemon finds out on the next refresh or run", v.name)

	var link string
	select {
	case link = <-r.led.links:
	case <-ctx.Done():
		return
	}
	sus, all := watchesSuspended(r.d.db, v.id)
	r.sto.note(func(s *storyFacts) {
		s.linkAt, s.suspended, s.watches = time.Now(), sus, all
		if s.noticedAt.IsZero() { // no event said how: the link says it noticed
			s.noticedAt, s.noticedHow = s.linkAt, "a refresh or run (its re-consent link came)"
		}
	})
	p.line(cCyan, "link", "%s's watches suspended (%d of %d); re-consent link sent to the console: %s", v.name, sus, all, link)
	// Posts for the suspended watch: they must arrive after the consent.
	for _, tag := range v.hashtags {
		r.led.post(r.sb, r.authors[0], tag, false)
	}
	p.line(cBold, "demo", "X gets a post for #%s while %s's watch is suspended", strings.Join(v.hashtags, " and #"), v.name)

	r.sto.reach(stageConsent)
	if r.manual {
		p.line(cCyan, "demo", "open %s's re-consent link above in the browser and pick @%s on the sandbox's page", v.name, v.username)
		revoked := r.sto.snapshot().revokedAt
		if !r.waitGrant(v.id, revoked) {
			return
		}
	} else {
		// The user reads the message, then follows its link.
		select {
		case <-time.After(demoReadPause):
		case <-ctx.Done():
			return
		}
		if err := walkConsent(ctx, link, r.public, r.sb.URL(), v.username); err != nil {
			if ctx.Err() == nil {
				p.line(cRed, "refused", "re-consent of %s: %v", v.name, err)
			}
			return
		}
	}
	r.sto.note(func(s *storyFacts) { s.consentedAt = time.Now() })
	r.sto.reach(stageResume)
	r.cn.consented(v.id, func() { p.line(cCyan, "consented", "%s", reconsentedLine(v, r.manual)) })
	select {
	case <-r.led.resumed:
	case <-ctx.Done():
		return
	}
	if !waitUntil(ctx, 100*time.Millisecond, func() bool { return !r.sto.snapshot().ranAgainAt.IsZero() }) {
		return
	}

	// The end: X stops posting, a last run of each watch reads what is
	// left, and the demo stops once every post was delivered.
	r.sto.reach(stageRunning)
	if soon := time.Now().Add(demoManualDrain); r.manual && soon.Before(r.drainAt) {
		r.drainAt = soon
	}
	select {
	case <-time.After(time.Until(r.drainAt)):
	case <-ctx.Done():
		return
	}
	stopPosting()
	<-genDone
	r.sto.reach(stageDrain)
	p.line(cBold, "demo", "X stops posting; waiting for the last runs to deliver what is left")
	if waitUntil(ctx, 100*time.Millisecond, r.led.complete) {
		r.sto.reach(stageDone)
	}
}

// stopEarly ends a story that a signal (named how, at) stopped: X no
// longer posts (run has returned), and the last runs deliver what is left
// until every post is delivered, demoStopDrain passes or ctx ends (a
// second Ctrl-C).
func (r *demoRun) stopEarly(ctx context.Context, how string, at time.Time) {
	f := r.sto.snapshot()
	r.sto.note(func(s *storyFacts) { s.stoppedBy, s.stoppedAt = how, at })
	r.p.line(cBold, "demo", "%s: stopped early %s; X stops posting; the last runs deliver what is left (at most %s; %s again skips them)",
		how, f.stage, demoStopDrain, how)
	ctx, cancel := context.WithTimeout(ctx, demoStopDrain)
	defer cancel()
	waitUntil(ctx, 100*time.Millisecond, r.led.complete)
}

// consentHow says how a consent was given.
func consentHow(manual bool) string {
	if manual {
		return "consented in the browser"
	}
	return "consented at X (landing page, POST, X consent, callback)"
}

// enrolledLine is the demo's line for a user's first consent.
func enrolledLine(u demoUser, manual bool) string {
	return fmt.Sprintf("%s %s; watching #%s %s", u.name, consentHow(manual), strings.Join(u.hashtags, " #"), strings.TrimPrefix(demoSchedule, "@"))
}

// reconsentedLine is the demo's line for the revoked user's new consent.
func reconsentedLine(v demoUser, manual bool) string {
	return fmt.Sprintf("%s allowed tagwatch again, %s; the watch resumes from its cursor", v.name, consentHow(manual))
}

// runLine is the demo's line for a watch's run.
func runLine(ev worker.Event) string {
	return fmt.Sprintf("%s's watch: read %s, %d new, %s, lag %s", ev.UserID, plural(ev.PostsRead, "post"), ev.Matches,
		plural(ev.Pages, "page"), ev.Lag.Round(time.Millisecond))
}

// plural is "1 post", "2 posts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// enroll sends each user's consent link and follows it (or waits for a
// person to, with -manual).
func (r *demoRun) enroll() bool {
	ctx, p := r.ctx, r.p
	for i, u := range demoUsers {
		targets := []string{"console:"}
		if r.webhook != "" {
			targets = append(targets, r.webhook)
		}
		link, _, err := r.d.enroll.CreateLink(ctx, vault.LinkRequest{UserID: u.id, UserName: u.name, Provider: "x", Expected: u.username,
			Watch: &vault.WatchSpec{Hashtags: u.hashtags, Schedule: demoSchedule, Targets: targets}, CreatedBy: "tagwatchd demo"})
		if err != nil {
			if ctx.Err() == nil {
				p.line(cRed, "link", "consent link for %s: %v", u.id, err)
			}
			return false
		}
		p.line(cCyan, "link", "one-time consent link for %s: %s", u.name, link)
		if r.manual {
			hint := ""
			if i > 0 {
				hint = fmt.Sprintf(" (if it says you are signed in as @%s, sign out first)", demoUsers[i-1].username)
			}
			p.line(cCyan, "demo", "open it in a browser and, on the sandbox's page, pick @%s%s", u.username, hint)
			if !r.waitGrant(u.id, time.Time{}) {
				return false
			}
		} else if err := walkConsent(ctx, link, r.public, r.sb.URL(), u.username); err != nil {
			if ctx.Err() == nil {
				p.line(cRed, "refused", "consent flow of %s: %v", u.id, err)
			}
			return false
		}
		r.st.enrolled.Add(1)
		r.cn.consented(u.id, func() { p.line(cCyan, "enrolled", "%s", enrolledLine(u, r.manual)) })
	}
	return true
}

// waitGrant waits for the user's grant to be active, since after.
func (r *demoRun) waitGrant(user string, after time.Time) bool {
	return waitUntil(r.ctx, 300*time.Millisecond, func() bool {
		grants, _ := r.d.db.ListGrants()
		for _, g := range grants {
			if g.UserID == user && g.State == vault.GrantActive && g.StateSince.After(after) {
				return true
			}
		}
		return false
	})
}

// keepDemoState writes the master key and a configuration naming it
// beside the vault, both 0600, so the kept vault opens again.
func keepDemoState(dir string, cfg *config.Config, encodedKey []byte) error {
	keyPath := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyPath, encodedKey, 0o600); err != nil {
		return fmt.Errorf("demo: keep the master key: %w", err)
	}
	pr := cfg.Providers[0]
	var b strings.Builder
	fmt.Fprintf(&b, "# The configuration of a tagwatchd demo, kept with -keep. Its X was the demo's\n")
	fmt.Fprintf(&b, "# in-process sandbox, which stopped with the demo: use it with the offline\n# subcommands (tagwatchd watches list -config THIS_FILE).\n\n")
	fmt.Fprintf(&b, "[daemon]\nstate_dir = %q\n\n[keys]\nmaster_key_file = %q\n\n", dir, keyPath)
	fmt.Fprintf(&b, "[http]\nlisten = %q\npublic_url = %q\n\n[status]\nsocket = %q\n\n", cfg.HTTP.Listen, cfg.HTTP.PublicURL, cfg.Status.Socket)
	fmt.Fprintf(&b, "[renewal]\nskew = %q\n\n[scheduler]\nmin_interval = %q\napp_requests_per_window = %d\n\n",
		cfg.Renewal.Skew.Duration.String(), cfg.Scheduler.MinInterval.Duration.String(), cfg.Scheduler.AppRequestsPerWindow)
	fmt.Fprintf(&b, "[notify]\nallow_private_targets = %t\n\n", cfg.Notify.AllowPrivateTargets)
	for _, h := range cfg.Notify.Webhooks {
		fmt.Fprintf(&b, "[[notify.webhook]]\nurl = %q\nsecret_file = %q\n\n", h.URL, h.SecretFile)
	}
	fmt.Fprintf(&b, "[[provider]]\nname = %q\nkind = %q\nclient_id = %q\nclient_auth = %q\nclient_secret_file = %q\n",
		pr.Name, pr.Kind, pr.ClientID, pr.ClientAuth, pr.ClientSecretFile)
	fmt.Fprintf(&b, "api_url = %q\nauth_url = %q\ntoken_url = %q\nrevoke_url = %q\n", pr.APIURL, pr.AuthURL, pr.TokenURL, pr.RevokeURL)
	if err := os.WriteFile(filepath.Join(dir, "tagwatch.toml"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("demo: keep the configuration: %w", err)
	}
	return nil
}

// keptFiles says what each file of a kept state directory is.
var keptFiles = map[string]string{
	"tagwatch.db":     "the vault",
	"master.key":      "the vault's master key: whoever reads it opens the vault",
	"tagwatch.toml":   "a configuration naming both, for the offline subcommands",
	"tagwatchd.log":   "the daemon's log",
	"x-client-secret": "the client secret of the demo's X (which stopped with the demo)",
	"webhook-secret":  "the -webhook's signing secret",
	"status.sock":     "the stopped daemon's status socket",
}

// printKept lists every file of the kept state directory dir, with its
// mode and what it is.
func printKept(p *printer, dir string) {
	p.line(cBold, "kept", "state kept in %s:", dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		p.line(cRed, "kept", "  cannot list it: %v", err)
	}
	for _, e := range entries {
		mode := "?"
		if fi, err := e.Info(); err == nil {
			mode = fmt.Sprintf("%04o", fi.Mode().Perm())
			if fi.Mode().Type() != 0 {
				mode = fi.Mode().Type().String()[:1] + mode // d, S, ...: not a plain file
			}
		}
		p.line(cBold, "kept", "  %-16s %-5s %s", e.Name(), mode, first(keptFiles[e.Name()], "written by the daemon"))
	}
	p.line(cBold, "kept", "open it again: go run ./cmd/tagwatchd watches list -config %s", filepath.Join(dir, "tagwatch.toml"))
	p.line(cBold, "kept", "remove it when done: rm -r %s", dir)
}

// progressFacts are the counts of a progress line.
type progressFacts struct {
	users, renewals, runs, matches, deliveries, suspended, missed, twice int64
}

// String is the progress line: missed and twice only when not zero (they
// are alarms; the summary counts them at the end).
func (f progressFacts) String() string {
	s := fmt.Sprintf("users %d · renewals %d · runs %d · matches %d · deliveries %d · watches suspended %d",
		f.users, f.renewals, f.runs, f.matches, f.deliveries, f.suspended)
	if f.missed > 0 {
		s += fmt.Sprintf(" · missed %d", f.missed)
	}
	if f.twice > 0 {
		s += fmt.Sprintf(" · twice %d", f.twice)
	}
	return s
}

// progressOf counts the progress line's facts now.
func progressOf(st *demoStats, led *ledger, db *vault.DB) progressFacts {
	f := progressFacts{users: st.enrolled.Load(), renewals: st.renewals.Load(), runs: st.runs.Load(), matches: st.matches.Load(),
		deliveries: st.delivered.Load()}
	now := time.Now()
	for _, u := range demoUsers {
		if ws, err := db.ListWatches(u.id); err == nil {
			for _, w := range ws {
				if w.State == vault.WatchSuspended {
					f.suspended++
				}
			}
		}
		a := led.account(u, time.Time{}, time.Time{}, now)
		f.missed += int64(a.missed)
		f.twice += int64(a.twice)
	}
	return f
}

// progress prints a line of facts() every so often, so the demo is seen
// working between events; a line the same as the last one is left out.
// It returns when ctx ends.
func progress(ctx context.Context, p *printer, every time.Duration, facts func() progressFacts) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		line := facts().String()
		if line == last || ctx.Err() != nil {
			continue
		}
		last = line
		p.line(cDim, "progress", "%s", line)
	}
}

const demoProgressEvery = 4 * time.Second

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
	// with a run every 5 s each user's token is renewed by the 15th
	// second whatever the watches' phases (demoMinStory counts on it).
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

// browser is a person's browser as the demo drives it over HTTP: a
// cookie jar, redirects not followed (each step checks its own status).
type browser struct{ c *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends one request (form, when not nil, as a urlencoded body) and
// reads up to 1 MiB of the answer; a status other than want is an error
// naming the method and the URL without its query (which may carry a
// link's token), returned with the answer.
func (b *browser) do(ctx context.Context, method, u string, form url.Values, want int) (*http.Response, string, error) {
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
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return resp, string(page), fmt.Errorf("%s %s: HTTP %d, want %d", method, strings.SplitN(u, "?", 2)[0], resp.StatusCode, want)
	}
	return resp, string(page), nil
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// walkConsent does what a person's browser does: open the link, press the
// button, approve at X as username, follow the callback to the success page.
func walkConsent(ctx context.Context, link, public, sandbox, username string) error {
	b := newBrowser()
	step := func(method, u string, form url.Values, want int) (*http.Response, string, error) {
		return b.do(ctx, method, u, form, want)
	}
	if _, _, err := step("GET", link, nil, http.StatusOK); err != nil {
		return err
	}
	resp, _, err := step("POST", link, url.Values{}, http.StatusSeeOther)
	if err != nil {
		return err
	}
	auth, _, err := followContinue(ctx, b.c, link, resp.Header.Get("Location"))
	if err != nil {
		return err
	}
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

var continueRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]*)">`)

// followContinue goes where a form's POST to from answered 303 with
// Location loc, as a browser does: loc is resolved against from; a
// same-origin target is the continue page (webpage.WriteContinuePage),
// which is fetched and whose meta refresh is followed once, to the
// absolute http(s) URL it names; any other target is returned as is.
// The header is the continue page's (nil for a target on another origin).
func followContinue(ctx context.Context, c *http.Client, from, loc string) (string, http.Header, error) {
	base, err := url.Parse(from)
	if err != nil {
		return "", nil, err
	}
	cu, err := base.Parse(loc)
	if err != nil {
		return "", nil, fmt.Errorf("the answer's Location %q: %w", loc, err)
	}
	if cu.Scheme != base.Scheme || cu.Host != base.Host {
		return cu.String(), nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cu.String(), nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	m := continueRefresh.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return "", resp.Header, fmt.Errorf("GET %s: HTTP %d, want 200 with a meta refresh", cu.Path, resp.StatusCode)
	}
	target, err := cu.Parse(html.UnescapeString(string(m[1])))
	if err != nil || (target.Scheme != "https" && target.Scheme != "http") || target.Host == "" {
		return "", resp.Header, fmt.Errorf("GET %s: the meta refresh leads to %q, not an absolute http(s) URL", cu.Path, m[1])
	}
	return target.String(), resp.Header, nil
}

// demoOutcome is what the summary checks: the counters, the story of the
// revoked user and the ledger's account of each user.
type demoOutcome struct {
	enrolled, renewals, runs, postsRead, matches, delivered, failures int64
	renewalsBy                                                        map[string]int
	story                                                             storyFacts
	accounts                                                          map[string]account
	// manual: the consents waited for a person (-manual).
	manual bool
	// exitCode is the status of a story stopped early by a signal
	// (128+signal) when no step that had its time failed.
	exitCode int
}

// outcomeOf gathers the outcome as of asOf (the ledger's accounts: a post
// no run could read by then is not yet due).
func outcomeOf(st *demoStats, sto *story, led *ledger, asOf time.Time) demoOutcome {
	o := demoOutcome{enrolled: st.enrolled.Load(), renewals: st.renewals.Load(), runs: st.runs.Load(), postsRead: st.postsRead.Load(),
		matches: st.matches.Load(), delivered: st.delivered.Load(), failures: st.failures.Load(), renewalsBy: map[string]int{},
		story: sto.snapshot(), accounts: map[string]account{}}
	st.mu.Lock()
	for k, v := range st.renewalsBy {
		o.renewalsBy[k] = v
	}
	st.mu.Unlock()
	for _, u := range demoUsers {
		from, to := time.Time{}, time.Time{}
		if u.id == o.story.victim.id {
			from, to = o.story.linkAt, o.story.consentedAt
			if to.IsZero() { // still suspended
				to = asOf
			}
		}
		o.accounts[u.id] = led.account(u, from, to, asOf)
	}
	return o
}

// demoCheck is one line of the summary: what happened, and what the
// story needed.
type demoCheck struct {
	ok           bool
	what, needed string
	// stage is where the story waits for the step: a stop before it
	// excuses it. stageDone: only due says whether it had its time.
	stage demoStage
	// due says the step had its time whatever the stop (a post a run read
	// and did not deliver).
	due bool
	// note: a line shown, not checked.
	note bool
	// never: the step's event did not happen at all, so what has no
	// details to show; the summary says "did not happen" instead (before
	// the stop, when the stop excuses it).
	never bool
}

// Marks of the summary's lines.
const (
	markOK      = "ok  "
	markMissing = "MISSING"
	markStopped = "stopped"
	markNote    = "note"
)

// mark says how the summary shows c: ok; MISSING when its step had its
// time and did not happen; stopped when an early stop came before its
// step, or while the story waited for it and before it was late.
func (o demoOutcome) mark(c demoCheck) string {
	s := o.story
	switch {
	case c.note:
		return markNote
	case c.ok:
		return markOK
	case s.stoppedBy == "" || c.due:
		return markMissing
	case c.stage > s.stage:
		return markStopped
	case c.stage == s.stage:
		if late, ok := s.stage.late(o.manual); !ok || s.stoppedAt.Sub(s.stageAt) <= late {
			return markStopped
		}
	}
	return markMissing
}

// at says when t was, from the start of the demo.
func at(t, start time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("at %.1fs", t.Sub(start).Seconds())
}

func demoChecks(o demoOutcome, start time.Time) []demoCheck {
	fewest := -1
	for _, u := range demoUsers {
		if n := o.renewalsBy[u.id]; fewest < 0 || n < fewest {
			fewest = n
		}
	}
	s := o.story
	v := s.victim
	checks := []demoCheck{
		{ok: o.enrolled == int64(len(demoUsers)), what: fmt.Sprintf("users enrolled: %d", o.enrolled), needed: fmt.Sprintf("%d", len(demoUsers)),
			stage: stageEnroll},
		{ok: fewest >= 1, what: fmt.Sprintf("renewals: %d, the fewest for one user %d", o.renewals, max(fewest, 0)), needed: "at least 1 per user",
			stage: stageRenewals},
		{ok: !s.revokedAt.IsZero(), what: fmt.Sprintf("revocation: %s revoked tagwatch at X %s", v.name, at(s.revokedAt, start)),
			needed: "after every user's first renewal", stage: stageRenewals, never: s.revokedAt.IsZero()},
		{ok: !s.noticedAt.IsZero(), what: fmt.Sprintf("noticed: on %s %s", s.noticedHow, at(s.noticedAt, start)),
			needed: "on the next refresh or run", stage: stageNotice, never: s.noticedAt.IsZero()},
		// Counted when the re-consent link came.
		{ok: s.watches > 0 && s.suspended == s.watches, what: fmt.Sprintf("watches suspended: %d of %s's %d", s.suspended, v.name, s.watches),
			needed: "all of them", stage: stageNotice, never: s.linkAt.IsZero()},
		{ok: !s.linkAt.IsZero(), what: fmt.Sprintf("re-consent link: sent to the console %s", at(s.linkAt, start)),
			needed: "one, to the watches' targets", stage: stageNotice, never: s.linkAt.IsZero()},
		{ok: !s.consentedAt.IsZero(), what: fmt.Sprintf("re-consent: %s followed the link and allowed tagwatch %s", v.name, at(s.consentedAt, start)),
			needed: "the real consent flow", stage: stageConsent, never: s.consentedAt.IsZero()},
		{ok: !s.ranAgainAt.IsZero(), what: fmt.Sprintf("resumed: %s's watch ran again %s", v.name, at(s.ranAgainAt, start)),
			needed: "a run after the re-consent", stage: stageResume, never: s.ranAgainAt.IsZero()},
	}
	if a, ok := o.accounts[v.id]; ok {
		checks = append(checks, demoCheck{ok: a.suspended > 0 && a.late == a.suspended,
			what:   fmt.Sprintf("posts while suspended: %d, %d of them delivered after the re-consent", a.suspended, a.late),
			needed: "at least 1, each delivered after the re-consent", stage: stageDone, due: a.suspendedMissed > 0,
			never: s.revokedAt.IsZero()})
	}
	for _, u := range demoUsers {
		a := o.accounts[u.id]
		what := fmt.Sprintf("posts for %s: %d of %d delivered, %d missed, %d twice", u.name, a.delivered, a.expected-a.notDue, a.missed, a.twice)
		if a.notDue > 0 {
			what += fmt.Sprintf("; %d not yet due (no run read them)", a.notDue)
		}
		if len(a.missedIDs) > 0 {
			what += " (missed: " + strings.Join(a.missedIDs[:min(len(a.missedIDs), 5)], " ") + ")"
		}
		checks = append(checks, demoCheck{ok: a.expected > 0 && a.notDue == 0 && a.missed == 0 && a.twice == 0, what: what,
			needed: "every post X has for the hashtags, none twice", stage: stageDone, due: a.missed > 0 || a.twice > 0})
	}
	checks = append(checks,
		demoCheck{ok: o.runs > 0, what: fmt.Sprintf("watch runs: %d", o.runs), needed: "at least 1", stage: stageRenewals},
		demoCheck{ok: o.postsRead > 0, what: fmt.Sprintf("posts read: %d", o.postsRead), needed: "at least 1", stage: stageRenewals},
		demoCheck{ok: o.matches > 0, what: fmt.Sprintf("matches: %d", o.matches), needed: "at least 1", stage: stageRenewals},
		demoCheck{ok: o.delivered > 0, what: fmt.Sprintf("notifications delivered: %d", o.delivered), needed: "at least 1", stage: stageRenewals},
		demoCheck{note: true, what: fmt.Sprintf("failures: %d besides the %d the revocation caused (shown, not checked)", o.failures, s.revokeErrors)},
	)
	return checks
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// demoSummary prints the checks and returns the demo's error: nil when
// every step happened; exit 1 when a step that had its time did not (or
// the daemon failed); else, for a story stopped early, o.exitCode.
func demoSummary(p *printer, o demoOutcome, runErr error) error {
	ok := runErr == nil
	var stopped []string
	p.line(cBold, "summary", "")
	for _, c := range demoChecks(o, p.start) {
		mark, color := o.mark(c), cBold
		if c.never && !c.ok {
			step, _, _ := strings.Cut(c.what, ":")
			c.what = step + ": did not happen"
			if mark == markStopped {
				c.what += " before the stop"
			}
		}
		switch mark {
		case markMissing:
			color, ok = cRed, false
		case markStopped:
			color = cYellow
			step, _, _ := strings.Cut(c.what, ":")
			stopped = append(stopped, step)
		}
		if c.note {
			p.line(color, "summary", "%s %s", mark, c.what)
			continue
		}
		p.line(color, "summary", "%s %s (needed %s)", mark, c.what, c.needed)
	}
	if runErr != nil {
		p.line(cRed, "summary", "daemon: %v", runErr)
	}
	s := o.story
	early := ""
	if s.stoppedBy != "" {
		early = fmt.Sprintf("stopped early by %s %s %s", s.stoppedBy, at(s.stoppedAt, p.start), s.stage)
	}
	switch {
	case !ok && early != "":
		return &exitError{exitFailure, fmt.Errorf("demo: %s, and a step that had its time did not happen (see the summary)", early)}
	case !ok:
		return &exitError{exitFailure, errors.New("demo: the story is incomplete (see the summary)")}
	case early != "" && len(stopped) > 0:
		p.line(cYellow, "summary", "%s: %s did not happen (%s); every step before the stop happened", early,
			plural(len(stopped), "step"), strings.Join(stopped, ", "))
	case early != "":
		p.line(cGreen, "summary", "%s: every step of the story happened before the stop", early)
	default:
		p.line(cGreen, "summary", "every step of the story happened")
		return nil
	}
	code := o.exitCode
	if code == 0 {
		code = 128 + int(syscall.SIGINT)
	}
	return &exitError{code, fmt.Errorf("demo: %s (see the summary)", early)}
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
