package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
)

// The parts of the multi-daemon test (cluster_e2e_test.go): its knobs, a
// daemon process that can be killed and started again, the webhook
// receiver and the sandbox's log of searches.

// clusterKnobs are the multi-daemon test's figures. The defaults are
// issue 15's; each can be changed by an environment variable (to debug
// the harness with one daemon and no kills, or to run it longer).
type clusterKnobs struct {
	daemons   int           // TAGWATCH_CLUSTER_DAEMONS: tagwatchd processes on the one database
	users     int           // TAGWATCH_CLUSTER_USERS: users, each with a grant and one watch
	duration  time.Duration // TAGWATCH_CLUSTER_DURATION: the load (posts, kills), after enrollment
	interval  time.Duration // TAGWATCH_CLUSTER_INTERVAL: each watch's schedule, @every
	lease     time.Duration // TAGWATCH_CLUSTER_LEASE: storage.lease
	tokenTTL  time.Duration // TAGWATCH_CLUSTER_TOKEN_TTL: the sandbox's access-token lifetime
	killEvery time.Duration // TAGWATCH_CLUSTER_KILL_EVERY: SIGKILL one daemon this often; 0 never
	pgRestart time.Duration // TAGWATCH_CLUSTER_PG_RESTART_AT: crash-restart PostgreSQL this far into the load; 0 never
	postRate  float64       // TAGWATCH_CLUSTER_POSTS: matching posts a second at the sandbox
	margin    time.Duration // TAGWATCH_CLUSTER_MARGIN: scheduling margin on interval + lease
	drain     time.Duration // TAGWATCH_CLUSTER_DRAIN: quiet time after the load (no kills, no posts)
	enrollers int           // TAGWATCH_CLUSTER_ENROLLERS: consents walked at once
	seed      uint64        // TAGWATCH_CLUSTER_SEED: which daemons die, which users get posts
	logDir    string        // TAGWATCH_CLUSTER_LOGS: keep the daemons' logs there (else a temp dir)
	logLevel  string        // TAGWATCH_CLUSTER_LOG_LEVEL: the daemons' daemon.log_level (debug shows every claim)
	race      bool          // TAGWATCH_CLUSTER_RACE: 1 runs the daemons built with -race (default 0: see TestClusterDaemons)
}

// clusterKnobsFromEnv reads the knobs; a value that does not parse fails
// t naming the variable.
func clusterKnobsFromEnv(t *testing.T) clusterKnobs {
	t.Helper()
	k := clusterKnobs{daemons: 3, users: 200, duration: 3 * time.Minute, interval: 3 * time.Second, lease: 5 * time.Second,
		tokenTTL: 10 * time.Second, killEvery: 30 * time.Second, pgRestart: 105 * time.Second, postRate: 5,
		margin: 2 * time.Second, drain: 20 * time.Second, enrollers: 12, seed: uint64(time.Now().UnixNano())}
	dur := func(name string, p *time.Duration, least time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < least {
				t.Fatalf("%s=%q: want a Go duration of at least %s", name, v, least)
			}
			*p = d
		}
	}
	num := func(name string, p *int, least int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < least {
				t.Fatalf("%s=%q: want a whole number of at least %d", name, v, least)
			}
			*p = n
		}
	}
	num("TAGWATCH_CLUSTER_DAEMONS", &k.daemons, 1)
	num("TAGWATCH_CLUSTER_USERS", &k.users, 1)
	num("TAGWATCH_CLUSTER_ENROLLERS", &k.enrollers, 1)
	dur("TAGWATCH_CLUSTER_DURATION", &k.duration, time.Second)
	dur("TAGWATCH_CLUSTER_INTERVAL", &k.interval, time.Second)
	dur("TAGWATCH_CLUSTER_LEASE", &k.lease, 5*time.Second)
	dur("TAGWATCH_CLUSTER_TOKEN_TTL", &k.tokenTTL, 10*time.Second)
	dur("TAGWATCH_CLUSTER_KILL_EVERY", &k.killEvery, 0)
	dur("TAGWATCH_CLUSTER_PG_RESTART_AT", &k.pgRestart, 0)
	dur("TAGWATCH_CLUSTER_MARGIN", &k.margin, 0)
	dur("TAGWATCH_CLUSTER_DRAIN", &k.drain, 0)
	if v := os.Getenv("TAGWATCH_CLUSTER_POSTS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1000) {
			t.Fatalf("TAGWATCH_CLUSTER_POSTS=%q: want posts a second, more than 0 and at most 1000", v)
		}
		k.postRate = f
	}
	if v := os.Getenv("TAGWATCH_CLUSTER_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TAGWATCH_CLUSTER_SEED=%q: want a whole number", v)
		}
		k.seed = n
	}
	switch v := os.Getenv("TAGWATCH_CLUSTER_RACE"); v {
	case "", "0":
	case "1":
		k.race = true
	default:
		t.Fatalf("TAGWATCH_CLUSTER_RACE=%q: want 0 (the daemons built without -race, the default) or 1", v)
	}
	k.logDir = os.Getenv("TAGWATCH_CLUSTER_LOGS")
	k.logLevel = "info"
	if v := os.Getenv("TAGWATCH_CLUSTER_LOG_LEVEL"); v != "" {
		if v != "debug" && v != "info" && v != "warn" && v != "error" {
			t.Fatalf("TAGWATCH_CLUSTER_LOG_LEVEL=%q: want debug, info, warn or error", v)
		}
		k.logLevel = v
	}
	return k
}

// freeClusterPort returns a free loopback TCP address below the kernel's
// ephemeral range (32768 and up on Linux), so that a port a killed daemon
// gives up is not taken meanwhile by one of the test's own outgoing
// connections before the daemon starts again on it; never one of the
// ports people run tagwatchd and its sandbox on.
func freeClusterPort(t *testing.T, rng *rand.Rand) string {
	t.Helper()
	avoid := map[int]bool{8080: true, 8099: true, 18080: true, 18099: true, 28080: true, 28099: true}
	for range 200 {
		p := 20000 + rng.IntN(12000)
		if avoid[p] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port from 20000 to 31999 in 200 tries")
	return ""
}

// clusterDaemon is one tagwatchd process of the test, started again
// (same configuration, a new process) after each kill. Each life's
// output goes to a file of its own.
type clusterDaemon struct {
	binary string // the tagwatchd executable
	idx    int
	config string // its configuration file
	socket string // its status socket
	public string // its http.public_url
	logDir string

	mu         sync.Mutex
	cmd        *exec.Cmd
	life       int           // lives started
	logs       []string      // each life's output file
	done       chan struct{} // closed when the current life's process ended
	expected   bool          // the current life's end is the test's doing
	unexpected []string      // lives that ended without the test ending them
	exitErr    error         // the last life's exit
}

// start starts a new life of the daemon (safe from any goroutine: it
// returns its error, it does not fail the test).
func (d *clusterDaemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.life++
	path := filepath.Join(d.logDir, fmt.Sprintf("d%d-life%d.log", d.idx, d.life))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.binary, "-config", d.config)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start daemon %d: %w", d.idx, err)
	}
	d.cmd, d.expected, d.done = cmd, false, make(chan struct{})
	d.logs = append(d.logs, path)
	done, life := d.done, d.life
	go func() {
		err := cmd.Wait()
		f.Close()
		d.mu.Lock()
		d.exitErr = err
		if !d.expected {
			d.unexpected = append(d.unexpected, fmt.Sprintf("daemon %d life %d (pid %d) ended by itself: %v", d.idx, life, cmd.Process.Pid, err))
		}
		d.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig to the current life and waits up to wait for it to
// end; it returns the life's exit (nil: status 0).
func (d *clusterDaemon) signal(sig syscall.Signal, wait time.Duration) error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.expected = true
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not stop within %s after %v; killed", wait, sig)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exitErr
}

// pid is the current life's process id.
func (d *clusterDaemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// alive reports whether the current life is running.
func (d *clusterDaemon) alive() bool {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// client is a client of the daemon's status socket.
func (d *clusterDaemon) client() *statusapi.Client {
	c := statusapi.NewClient(d.socket)
	c.Timeout = 30 * time.Second
	return c
}

// waitReady waits until the current life says it is ready on its status
// socket, and returns how long that took.
func (d *clusterDaemon) waitReady(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	c := d.client()
	var last error
	for time.Since(start) < limit {
		if !d.alive() {
			return 0, fmt.Errorf("daemon %d ended before it was ready", d.idx)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && st.Ready {
			return time.Since(start), nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("daemon %d not ready within %s (last answer: %v)", d.idx, limit, last)
}

// logLines returns the lines of every life's output matching re, each
// prefixed with the daemon and life.
func (d *clusterDaemon) logLines(re *regexp.Regexp) []string {
	d.mu.Lock()
	logs := slices.Clone(d.logs)
	d.mu.Unlock()
	var out []string
	for i, p := range logs {
		b, _ := os.ReadFile(p)
		for l := range strings.Lines(string(b)) {
			if re.MatchString(l) {
				out = append(out, fmt.Sprintf("d%d/%d: %s", d.idx, i+1, strings.TrimRight(l, "\n")))
			}
		}
	}
	return out
}

// clusterHooks is the webhook target of every watch: it verifies each
// delivery's Standard Webhooks signature and counts deliveries by
// webhook-id, and the posts they carry by post id.
type clusterHooks struct {
	t    *testing.T
	hook *standardwebhooks.Webhook
	srv  *httptest.Server

	mu        sync.Mutex
	byID      map[string]int       // webhook-id -> deliveries received
	postIn    map[string][]string  // post id -> webhook-ids of the deliveries carrying it, each delivery once
	firstSeen map[string]time.Time // post id -> its first delivery
	types     map[string]int       // body type -> deliveries
	bad       []string             // deliveries refused: signature, body
}

func newClusterHooks(t *testing.T, secret string) *clusterHooks {
	t.Helper()
	h, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("webhook secret: %v", err)
	}
	rc := &clusterHooks{t: t, hook: h, byID: map[string]int{}, postIn: map[string][]string{},
		firstSeen: map[string]time.Time{}, types: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *clusterHooks) url() string { return rc.srv.URL + "/hook" }

func (rc *clusterHooks) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	now := time.Now()
	if err != nil || r.URL.Path != "/hook" || r.Method != http.MethodPost {
		rc.refuse(w, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
		return
	}
	if err := rc.hook.Verify(body, r.Header); err != nil {
		rc.refuse(w, fmt.Sprintf("delivery %q: signature: %v", r.Header.Get("webhook-id"), err))
		return
	}
	var wb notify.WebhookBody
	if err := json.Unmarshal(body, &wb); err != nil {
		rc.refuse(w, fmt.Sprintf("delivery %q: body: %v", r.Header.Get("webhook-id"), err))
		return
	}
	id := r.Header.Get("webhook-id")
	if id == "" || id != wb.Data.ID {
		rc.refuse(w, fmt.Sprintf("delivery: webhook-id %q, data.id %q", id, wb.Data.ID))
		return
	}
	rc.mu.Lock()
	rc.byID[id]++
	rc.types[wb.Type]++
	if wb.Type == "match" {
		seen := map[string]bool{}
		for _, p := range wb.Data.Posts {
			seen[p.ID] = true
			// Each user watches the hashtag named after them: a post
			// of another's hashtag in their notification is a leak.
			if m := searchTagRE.FindStringSubmatch(p.Text); m == nil || !strings.EqualFold(m[1], wb.Data.UserID) {
				rc.bad = append(rc.bad, fmt.Sprintf("delivery %q to user %q carries post %s: %q", id, wb.Data.UserID, p.ID, p.Text))
			}
		}
		for _, p := range wb.Data.PostIDs {
			seen[p] = true
		}
		for p := range seen {
			rc.postIn[p] = append(rc.postIn[p], id)
			if _, ok := rc.firstSeen[p]; !ok {
				rc.firstSeen[p] = now
			}
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *clusterHooks) refuse(w http.ResponseWriter, what string) {
	rc.mu.Lock()
	rc.bad = append(rc.bad, what)
	rc.mu.Unlock()
	http.Error(w, "refused", http.StatusBadRequest)
}

// notified reports how many of posts were delivered at least once.
func (rc *clusterHooks) notified(posts []clusterPost) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, p := range posts {
		if len(rc.postIn[p.id]) > 0 {
			n++
		}
	}
	return n
}

// clusterPost is a post the test made at the sandbox, for one watch's
// hashtag.
type clusterPost struct {
	id, tag string
	at      time.Time
}

// searchLog is the sandbox's log of searches (xsandbox.Config.OnSearch),
// by the hashtag each searched: every watch has a hashtag of its own.
type searchLog struct {
	mu    sync.Mutex
	byTag map[string][]time.Time
	owner map[string]string // hashtag -> the X user id of the watch's grant
	wrong []string          // searches of a hashtag with another user's token
	other int               // searches naming no hashtag of the test
}

var searchTagRE = regexp.MustCompile(`#(\w+)`)

func (l *searchLog) seen(user, query string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := searchTagRE.FindAllStringSubmatch(query, -1)
	if len(ms) == 0 {
		l.other++
	}
	for _, m := range ms {
		tag := strings.ToLower(m[1])
		l.byTag[tag] = append(l.byTag[tag], at)
		if o, ok := l.owner[tag]; !ok || o != user {
			l.wrong = append(l.wrong, fmt.Sprintf("%q by user %s", query, user))
		}
	}
}

// gap is the largest time one watch went without a search in [from, to]:
// between consecutive searches, from the last search at or before from
// (from itself when there was none), and from the last search to to.
// overlap is the PostgreSQL outage the largest gap spans (0 for none).
type gap struct {
	tag          string
	size         time.Duration
	start, end   time.Time
	searches     int
	overlapsDown time.Duration
}

func (l *searchLog) largestGaps(tags []string, from, to time.Time, downFrom, downTo time.Time) []gap {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []gap
	for _, tag := range tags {
		times := slices.Clone(l.byTag[tag])
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		prev := from
		g := gap{tag: tag}
		consider := func(a, b time.Time) {
			if b.Sub(a) > g.size {
				g.size, g.start, g.end = b.Sub(a), a, b
			}
		}
		for _, at := range times {
			if at.After(to) {
				break
			}
			if !at.After(from) {
				prev = at
				continue
			}
			g.searches++
			consider(prev, at)
			prev = at
		}
		consider(prev, to)
		if !downFrom.IsZero() && g.start.Before(downTo) && g.end.After(downFrom) {
			g.overlapsDown = downTo.Sub(downFrom)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b gap) int { return int(b.size - a.size) })
	return out
}

// gapsOver returns every gap longer than over of the watches with tags
// in [from, to], as largestGaps measures them (overlapsDown unset).
func (l *searchLog) gapsOver(tags []string, from, to time.Time, over time.Duration) []gap {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []gap
	for _, tag := range tags {
		times := slices.Clone(l.byTag[tag])
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		prev := from
		for _, at := range append(times, to) {
			if at.After(to) {
				at = to
			}
			if !at.After(from) {
				prev = at
				continue
			}
			if at.Sub(prev) > over {
				out = append(out, gap{tag: tag, size: at.Sub(prev), start: prev, end: at})
			}
			prev = at
			if !at.Before(to) {
				break
			}
		}
	}
	return out
}

// dump writes the log as tab-separated lines: hashtag, seconds since
// origin.
func (l *searchLog) dump(path string, origin time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for tag, times := range l.byTag {
		for _, at := range times {
			fmt.Fprintf(&b, "%s\t%.3f\n", tag, at.Sub(origin).Seconds())
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// percentile returns the p-th percentile (0..100) of ds, sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// reuseLog keeps every refresh-token reuse the sandbox saw
// (xsandbox.Config.OnReuse).
type reuseLog struct {
	mu  sync.Mutex
	all []reuse
}

type reuse struct {
	user            string
	rotated, reused time.Time
}

func (l *reuseLog) seen(user string, rotated, reused time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, reuse{user, rotated, reused})
}
