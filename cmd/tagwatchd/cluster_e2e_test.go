package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
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

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault/pgtest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestClusterDaemons is issue 15's multi-daemon test: several tagwatchd
// processes (3) on one PostgreSQL database, the X sandbox with family
// revocation on refresh-token reuse, many users (200) each with a grant
// whose access tokens live 10 s and a watch every few seconds (3 s), a
// steady stream of matching posts, and for the load's length (3 min) one
// daemon killed with SIGKILL every 30 s and started again; PostgreSQL
// itself is crashed and restarted once in the middle (at 1:45). After a
// quiet drain:
//   - the sandbox saw no refresh-token reuse and revoked no token family;
//   - every grant is active;
//   - every matching post was notified at least once (duplicates are
//     counted and reported, not refused: delivery is at least once);
//   - no watch went without a search for longer than its interval plus
//     the lease plus a scheduling margin (plus the database's outage for
//     the gap that spans it: a run needs the database to be claimed);
//   - the daemons kept running through the database's restart, and
//     `tagwatchctl daemons` shows every live one.
//
// Every part is real: the daemons are tagwatchd processes (built without
// -race, see below), PostgreSQL is pgtest's cluster (fsync off: the
// test crashes processes, never the machine, and PostgreSQL's WAL reaches
// the kernel before a commit returns, so an immediate stop loses no
// acknowledged commit; fsync would only add disk waits on a shared CI
// machine), the consents are walked over HTTP as a browser does, the
// webhook receiver verifies every Standard Webhooks signature. The
// figures come from clusterKnobsFromEnv (TAGWATCH_CLUSTER_*).
func TestClusterDaemons(t *testing.T) {
	k := clusterKnobsFromEnv(t)
	rng := mrand.New(mrand.NewPCG(k.seed, 15))
	var rngMu sync.Mutex
	randN := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
	t.Logf("cluster: %d daemons, %d users, watches @every %s, lease %s, access tokens %s, load %s, SIGKILL every %s, PostgreSQL restart at %s, %.1f posts/s, race-built daemons %v, seed %d",
		k.daemons, k.users, k.interval, k.lease, k.tokenTTL, k.duration, k.killEvery, k.pgRestart, k.postRate, k.race, k.seed)

	pg := pgtest.Start(t)
	dbName := pg.CreateDB(t)
	dir := t.TempDir()
	logDir := k.logDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}

	// The daemons' addresses, and the sandbox that accepts each one's
	// callback.
	// The daemons are tagwatchd built without -race: three race-built
	// daemons need more than the two cores of the machines this runs on
	// (their runs then start seconds late, and the gaps measure the race
	// detector, not the daemons). The test itself, the sandbox and the
	// receiver run under -race; TAGWATCH_CLUSTER_RACE=1 runs the
	// race-built daemons of TestMain instead.
	bin := binary
	if !k.race {
		bin = filepath.Join(t.TempDir(), "tagwatchd")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("build tagwatchd without -race: %v\n%s", err, out)
		}
	}
	daemons := make([]*clusterDaemon, k.daemons)
	var redirects []string
	for i := range daemons {
		addr := freeClusterPort(t, rng)
		d := &clusterDaemon{binary: bin, idx: i, public: "http://" + addr, logDir: logDir,
			socket: filepath.Join(dir, fmt.Sprintf("d%d", i), "status.sock"), config: filepath.Join(dir, fmt.Sprintf("d%d", i), "tagwatch.toml")}
		daemons[i] = d
		redirects = append(redirects, d.public+"/callback")
	}
	searches := &searchLog{byTag: map[string][]time.Time{}, owner: map[string]string{}}
	sbLog := &syncBuffer{}
	clientSecret := randomText(32)
	reuses := &reuseLog{}
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: sandboxClientID, ClientSecret: clientSecret, RedirectURIs: redirects,
		AccessTokenTTL: k.tokenTTL, AppName: "tagwatch", OnSearch: searches.seen, OnReuse: reuses.seen,
		Logger: slog.New(slog.NewTextHandler(sbLog, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	sb.SetReuseRevokesFamily(true)
	// X's search limits (300 a user, 450 for the app per 15 minutes) are
	// not what this test is about, and 200 watches every 3 s are far
	// beyond the app's: no limits at the sandbox, no app budget in the
	// daemons.
	sb.SetRateLimit(xsandbox.EndpointSearch, 0, 0, 0)
	const authorID = "99"
	if err := sb.AddUser(xsandbox.User{ID: authorID, Username: "poster", Name: "Poster"}); err != nil {
		t.Fatal(err)
	}
	tags := make([]string, k.users)
	tagOf := map[string]string{} // X user id -> the tagwatch user (and hashtag)
	for i := range k.users {
		tags[i] = fmt.Sprintf("cw%03d", i)
		id := fmt.Sprint(100000 + i)
		tagOf[id] = tags[i]
		if err := sb.AddUser(xsandbox.User{ID: id, Username: tags[i], Name: "User " + tags[i]}); err != nil {
			t.Fatal(err)
		}
		searches.mu.Lock()
		searches.owner[tags[i]] = id
		searches.mu.Unlock()
	}
	secretFile := filepath.Join(dir, "x-client-secret")
	hookSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(randomText(32))[:32])
	hookFile := filepath.Join(dir, "webhook-secret")
	key := filepath.Join(dir, "master.key")
	for f, v := range map[string]string{secretFile: clientSecret + "\n", hookFile: hookSecret + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := tagwatchd(t, "keys", "generate", key); code != 0 {
		t.Fatalf("keys generate = %d: %s", code, out)
	}
	rc := newClusterHooks(t, hookSecret)

	// One configuration each: the same database, key, provider and
	// webhook; its own state directory, socket and port. The token
	// request's timeout is below two thirds of the lease, as the daemon
	// asks (a refresh cut off by a lost database must end before another
	// daemon may take its marker over).
	for _, d := range daemons {
		ddir := filepath.Dir(d.config)
		if err := os.MkdirAll(filepath.Join(ddir, "state"), 0o700); err != nil {
			t.Fatal(err)
		}
		doc := "[daemon]\nstate_dir = " + quote(filepath.Join(ddir, "state")) + "\nlog_level = " + quote(k.logLevel) +
			"\n\n[keys]\nmaster_key_file = " + quote(key) +
			"\n\n[http]\nlisten = " + quote(strings.TrimPrefix(d.public, "http://")) +
			"\n\n[status]\nsocket = " + quote(d.socket) +
			"\n\n[renewal]\ntimeout = " + quote((k.lease * 3 / 5).String()) +
			"\n\n[scheduler]\nmin_interval = \"1s\"\napp_requests_per_window = 0" +
			"\n\n[storage]\nengine = \"postgres\"\ndsn = " + quote(pg.DSN(dbName)) + "\nlease = " + quote(k.lease.String()) +
			"\n\n[notify]\nallow_private_targets = true\n\n[[notify.webhook]]\nurl = " + quote(rc.url()) + "\nsecret_file = " + quote(hookFile) +
			"\n\n" + sandboxProviderBlock(sb.URL(), secretFile)
		if err := os.WriteFile(d.config, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stopping := false
	t.Cleanup(func() {
		if !stopping {
			for _, d := range daemons {
				_ = d.signal(syscall.SIGKILL, 10*time.Second)
			}
		}
	})
	showLogs := func(re *regexp.Regexp, max int) {
		t.Helper()
		for _, d := range daemons {
			lines := slices.DeleteFunc(d.logLines(re), func(l string) bool { return strings.Contains(l, "plain http on loopback") })
			if len(lines) > max {
				lines = append(lines[:max/2], append([]string{fmt.Sprintf("... %d lines ...", len(lines)-max)}, lines[len(lines)-max/2:]...)...)
			}
			t.Logf("daemon %d, lines matching %s:\n%s", d.idx, re, strings.Join(lines, "\n"))
		}
	}
	problems := regexp.MustCompile(`level=(ERROR|WARN)`)

	// All start at once: the first start creates the vault's schema and
	// keyring (one, whichever daemon wins).
	for _, d := range daemons {
		if err := d.start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range daemons {
		if _, err := d.waitReady(90 * time.Second); err != nil {
			showLogs(regexp.MustCompile(`.`), 60)
			t.Fatal(err)
		}
	}

	// Enrollment: each user's consent link from one daemon, walked over
	// HTTP as a browser does (landing page, the sandbox's consent as the
	// user, the callback), several at once.
	enrollStart := time.Now()
	schedule := "@every " + k.interval.String()
	// A consent the daemon refuses (an HTTP 500) is walked again with a
	// new link, as a person would ask for one, at most four times: each
	// refusal is counted and fails the test at the end, the rest of the
	// run still gives its figures.
	var enrollErrs, refusedConsents []string
	var enrollMu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range k.enrollers {
		wg.Go(func() {
			for i := range jobs {
				d := daemons[i%len(daemons)]
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					er, err := d.client().Enroll(ctx, statusapi.EnrollRequest{UserID: tags[i], Provider: "x", Expected: tags[i],
						Watch: &statusapi.WatchSpec{Hashtags: []string{tags[i]}, Schedule: schedule, Targets: []string{rc.url()}}})
					if err == nil {
						err = walkConsent(ctx, er.Link, d.public, sb.URL(), tags[i])
					}
					cancel()
					if err == nil {
						break
					}
					enrollMu.Lock()
					if attempt < 5 && strings.Contains(err.Error(), "HTTP 500") {
						refusedConsents = append(refusedConsents, fmt.Sprintf("%s at daemon %d: %v", tags[i], d.idx, err))
						enrollMu.Unlock()
						continue
					}
					enrollErrs = append(enrollErrs, fmt.Sprintf("%s at daemon %d (attempt %d): %v", tags[i], d.idx, attempt, err))
					enrollMu.Unlock()
					break
				}
			}
		})
	}
	for i := range k.users {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(enrollErrs) > 0 {
		showLogs(problems, 40)
		t.Fatalf("%d of %d consents failed; first: %s", len(enrollErrs), k.users, strings.Join(enrollErrs[:min(5, len(enrollErrs))], "; "))
	}
	grants := func() ([]statusapi.Grant, error) {
		for _, d := range daemons {
			if !d.alive() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			g, err := d.client().Grants(ctx)
			cancel()
			if err == nil {
				return g, nil
			}
		}
		return nil, fmt.Errorf("no daemon answered")
	}
	gs, err := grants()
	if err != nil || len(gs) != k.users {
		t.Fatalf("after the consents: %d grants (%v), want %d", len(gs), err, k.users)
	}
	enrollTook := time.Since(enrollStart)
	// Every watch has asked once before the load starts.
	deadline := time.Now().Add(30*time.Second + 3*k.interval)
	for {
		searches.mu.Lock()
		missing := 0
		for _, tag := range tags {
			if len(searches.byTag[tag]) == 0 {
				missing++
			}
		}
		searches.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			showLogs(problems, 40)
			t.Fatalf("%d of %d watches never searched within %s of the last consent", missing, k.users, 30*time.Second+3*k.interval)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("cluster: %d consents in %s; every watch searched", k.users, enrollTook.Round(time.Millisecond))
	sbBefore := sb.Stats()

	// The load: posts, kills and the database's restart.
	loadStart := time.Now()
	loadEnd := loadStart.Add(k.duration)
	var posts []clusterPost
	var postsMu sync.Mutex
	ctx, cancel := context.WithDeadline(context.Background(), loadEnd)
	defer cancel()
	var load sync.WaitGroup
	load.Go(func() {
		every := time.Duration(float64(time.Second) / k.postRate)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tag := tags[randN(len(tags))]
			at := time.Now()
			id := sb.Post(xsandbox.Post{AuthorID: authorID, Text: fmt.Sprintf("cluster post %d #%s", n, tag)})
			postsMu.Lock()
			posts = append(posts, clusterPost{id: id, tag: tag, at: at})
			postsMu.Unlock()
		}
	})
	type kill struct {
		daemon     int
		wall       time.Time // when SIGKILL was sent
		at         time.Duration
		ready      time.Duration
		readyError error
	}
	var kills []kill
	var killsMu sync.Mutex
	starting := map[int]bool{}
	if k.killEvery > 0 {
		// A kill every killEvery from the load's start, the last at its
		// end at the latest; each killed daemon is started again at once
		// and its readiness waited for on the side, so a slow start does
		// not delay the next kill.
		load.Go(func() {
			var ready sync.WaitGroup
			defer ready.Wait()
			for n := 1; ; n++ {
				next := loadStart.Add(time.Duration(n) * k.killEvery)
				if next.After(loadEnd) {
					return
				}
				time.Sleep(time.Until(next))
				// A daemon still starting after its own kill is not
				// chosen (its start would be reported as failed).
				killsMu.Lock()
				var up []*clusterDaemon
				for _, d := range daemons {
					if !starting[d.idx] {
						up = append(up, d)
					}
				}
				killsMu.Unlock()
				if len(up) == 0 {
					t.Logf("cluster: no kill at %s: every daemon is still starting", time.Since(loadStart).Round(time.Second))
					continue
				}
				d := up[randN(len(up))]
				wall := time.Now()
				_ = d.signal(syscall.SIGKILL, 10*time.Second)
				at := time.Since(loadStart)
				startErr := d.start()
				killsMu.Lock()
				starting[d.idx] = startErr == nil
				if startErr != nil {
					kills = append(kills, kill{daemon: d.idx, wall: wall, at: at, readyError: startErr})
				}
				killsMu.Unlock()
				if startErr != nil {
					continue
				}
				ready.Go(func() {
					took, err := d.waitReady(90 * time.Second)
					killsMu.Lock()
					starting[d.idx] = false
					kills = append(kills, kill{daemon: d.idx, wall: wall, at: at, ready: took, readyError: err})
					killsMu.Unlock()
				})
			}
		})
	}
	var downFrom, downTo time.Time
	var pgErr error
	if k.pgRestart > 0 && k.pgRestart < k.duration {
		load.Go(func() {
			time.Sleep(time.Until(loadStart.Add(k.pgRestart)))
			downFrom = time.Now()
			if pgErr = pg.Stop(); pgErr == nil {
				pgErr = pg.Start()
			}
			downTo = time.Now()
		})
	}
	load.Wait()
	if pgErr != nil {
		t.Fatalf("PostgreSQL restart: %v", pgErr)
	}

	// The drain: no kills, no posts; at least k.drain, until every post
	// is notified (or a minute more). A post for a user whose grant
	// ended (it needs a new consent) cannot be: it is not waited for.
	drainEnd := loadEnd.Add(k.drain)
	endedNow := map[string]bool{}
	var endedAt time.Time
	for {
		if time.Since(endedAt) > 5*time.Second {
			endedAt = time.Now()
			if gs, err := grants(); err == nil {
				for _, g := range gs {
					if g.State != "active" {
						endedNow[g.UserID] = true
					}
				}
			}
		}
		postsMu.Lock()
		var waitFor []clusterPost
		for _, p := range posts {
			if !endedNow[p.tag] {
				waitFor = append(waitFor, p)
			}
		}
		done := rc.notified(waitFor) == len(waitFor)
		postsMu.Unlock()
		if time.Now().After(drainEnd) && (done || time.Now().After(drainEnd.Add(time.Minute))) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	checkAt := time.Now()

	// The figures.
	var failures []string
	fail := func(format string, args ...any) {
		t.Helper()
		failures = append(failures, fmt.Sprintf(format, args...))
		t.Errorf(format, args...)
	}
	for _, d := range daemons {
		d.mu.Lock()
		for _, u := range d.unexpected {
			fail("%s", u)
		}
		d.mu.Unlock()
	}
	if len(refusedConsents) > 0 {
		fail("%d consents were refused (HTTP 500) and had to be walked again with a new link; first: %s", len(refusedConsents),
			strings.Join(refusedConsents[:min(3, len(refusedConsents))], "; "))
	}
	for _, kl := range kills {
		if kl.readyError != nil {
			fail("after the kill at %s: %v", kl.at.Round(time.Second), kl.readyError)
		}
	}
	searches.mu.Lock()
	if len(searches.wrong) > 0 || searches.other > 0 {
		fail("%d searches were made with another user's token, %d for no watch of the test; first: %v", len(searches.wrong), searches.other,
			searches.wrong[:min(3, len(searches.wrong))])
	}
	searches.mu.Unlock()
	st := sb.Stats()
	// Refresh-token reuse. X answers a spent refresh token presented
	// again by revoking the whole token family, and no client can close
	// the window from the provider's rotation to the answer's being
	// stored (X_API.md: "a crash between receiving a new refresh token
	// and storing it [costs] the user a new consent"): a SIGKILL inside
	// it loses the only copy of the new token, and the next daemon's one
	// retry with the stored token is a reuse. tagwatch narrows the window
	// to the answer's transit and one statement (the rotation journal).
	// A reuse whose token was spent less than killWindow before a SIGKILL
	// is that window, and is reported; every other reuse (two daemons
	// refreshing one grant, a live holder's marker taken over, a lost
	// commit) fails the test.
	const killWindow = 250 * time.Millisecond
	explained := map[string]bool{} // users whose reuse a kill explains
	// When each such user's token was spent: the grant is lost from the
	// kill on (its family revoked at the next daemon's retry), so its
	// posts from a run before that on cannot be notified, and its watch
	// searches no more, until the user consents again.
	lostAt := map[string]time.Time{}
	var unexplained []string
	reuses.mu.Lock()
	for _, r := range reuses.all {
		if slices.ContainsFunc(kills, func(kl kill) bool { return !kl.wall.Before(r.rotated) && kl.wall.Sub(r.rotated) <= killWindow }) {
			explained[tagOf[r.user]] = true
			lostAt[tagOf[r.user]] = r.rotated
			continue
		}
		unexplained = append(unexplained, fmt.Sprintf("%s (spent %s, presented again %s)", tagOf[r.user], r.rotated.Format(time.StampMilli), r.reused.Format(time.StampMilli)))
	}
	nReuses := len(reuses.all)
	reuses.mu.Unlock()
	if nReuses != st.RefreshReuses {
		fail("the sandbox counted %d refresh-token reuses, its hook saw %d", st.RefreshReuses, nReuses)
	}
	if len(unexplained) > 0 {
		fail("%d refresh-token reuses that no SIGKILL within %s of the token's rotation explains, want none: %v", len(unexplained), killWindow, unexplained)
	}
	gs, err = grants()
	active, refreshes := 0, 0
	var notActive []string
	ended := map[string]bool{} // users (= hashtags) whose grant is not active
	for _, g := range gs {
		refreshes += g.RefreshCount
		if g.State == "active" {
			active++
		} else {
			ended[g.UserID] = true
			notActive = append(notActive, fmt.Sprintf("%s %s (%s, last error %s)", g.UserID, g.State, g.ID, g.LastErrorClass))
		}
	}
	if err != nil || len(gs) != k.users || active+len(explained) < k.users {
		fail("at the end %d of %d grants are active (%d listed, %v), %d ended by a kill inside a rotation's window; not active: %v",
			active, k.users, len(gs), err, len(explained), notActive)
	}
	for u := range ended {
		if !explained[u] {
			fail("grant of %s is not active and no kill inside a rotation's window explains it; not active: %v", u, notActive)
		}
	}

	// Posts: each notified at least once; duplicates are posts delivered
	// in more than one delivery (a retried delivery id, or two runs
	// that both found the post).
	postsMu.Lock()
	posts = slices.Clone(posts)
	postsMu.Unlock()
	rc.mu.Lock()
	var missing []string
	missingEnded, missingLost := 0, 0
	// lost says whether a post or a gap of tag's watch from at on is owed
	// to its grant's loss in a killed rotation's window (a run's worth
	// before the loss on: a post made then may not have been searched).
	lost := func(tag string, at time.Time) bool {
		t0, ok := lostAt[tag]
		return ok && ended[tag] && !at.Before(t0.Add(-(k.interval + k.lease + k.margin)))
	}
	dupPosts, extraCarries, redelivered, deliveries := 0, 0, 0, 0
	var latencies []time.Duration
	for _, p := range posts {
		in := rc.postIn[p.id]
		if len(in) == 0 {
			if lost(p.tag, p.at) {
				missingLost++
				continue
			}
			missing = append(missing, p.id+" #"+p.tag)
			if ended[p.tag] {
				missingEnded++
			}
			continue
		}
		latencies = append(latencies, rc.firstSeen[p.id].Sub(p.at))
		if len(in) > 1 {
			dupPosts++
			extraCarries += len(in) - 1
		}
	}
	for _, n := range rc.byID {
		deliveries += n
		redelivered += n - 1
	}
	types := fmt.Sprint(rc.types)
	bad := slices.Clone(rc.bad)
	rc.mu.Unlock()
	if len(bad) > 0 {
		fail("the receiver refused %d deliveries; first: %s", len(bad), bad[0])
	}
	if len(posts) == 0 || len(missing) > 0 {
		fail("%d of %d matching posts were never notified (%d of them for a watch whose grant ended); first: %v",
			len(missing), len(posts), missingEnded, missing[:min(10, len(missing))])
	}
	// The database's restart loses nothing: the posts made around it
	// (from a lease before it went down to a lease after it was back).
	nearOutage, nearOutageNotified := 0, 0
	if !downFrom.IsZero() {
		rc.mu.Lock()
		for _, p := range posts {
			if p.at.After(downFrom.Add(-k.lease)) && p.at.Before(downTo.Add(k.lease)) {
				nearOutage++
				if len(rc.postIn[p.id]) > 0 {
					nearOutageNotified++
				}
			}
		}
		rc.mu.Unlock()
	}
	perMille := 0.0
	if len(posts) > 0 {
		perMille = 1000 * float64(dupPosts) / float64(len(posts))
	}

	// Gaps: the margin on interval + lease covers the scheduler's fire
	// (whole seconds), the claim's round trip to the database and the
	// run's own start under the race detector on a busy machine; a gap
	// that spans the database's outage may be that much longer (no run
	// can be claimed meanwhile).
	bound := k.interval + k.lease + k.margin
	gaps := searches.largestGaps(tags, loadStart, checkAt, downFrom, downTo)
	over, overEnded, overLost := 0, 0, 0
	var overList []string
	var sizes []time.Duration
	for _, g := range gaps {
		sizes = append(sizes, g.size)
		if g.size > bound+g.overlapsDown && lost(g.tag, g.start) {
			overLost++
			continue
		}
		if g.size > bound+g.overlapsDown {
			over++
			if ended[g.tag] {
				overEnded++
			}
			if len(overList) < 10 {
				overList = append(overList, fmt.Sprintf("#%s %s from %s to %s (%d searches; spans the outage: %s; grant ended: %v)", g.tag,
					g.size.Round(time.Millisecond), g.start.Sub(loadStart).Round(time.Millisecond), g.end.Sub(loadStart).Round(time.Millisecond),
					g.searches, g.overlapsDown.Round(time.Millisecond), ended[g.tag]))
			}
		}
	}
	// Every gap over the bound, by what it spans: a kill (the watch's
	// claim may have been the killed daemon's), the database's outage,
	// neither (the daemons did not keep up).
	var atKill, atOutage, atNeither, ofEnded int
	for _, g := range searches.gapsOver(tags, loadStart, checkAt, bound) {
		switch {
		case ended[g.tag]:
			ofEnded++
		case !downFrom.IsZero() && g.start.Before(downTo) && g.end.After(downFrom):
			atOutage++
		case slices.ContainsFunc(kills, func(kl kill) bool { at := loadStart.Add(kl.at); return !at.Before(g.start) && !at.After(g.end) }):
			atKill++
		default:
			atNeither++
		}
	}
	if k.logDir != "" {
		if err := searches.dump(filepath.Join(k.logDir, "searches.tsv"), loadStart); err != nil {
			t.Log(err)
		}
		var ev strings.Builder
		for _, kl := range kills {
			fmt.Fprintf(&ev, "kill\td%d\t%.3f\n", kl.daemon, kl.at.Seconds())
		}
		if !downFrom.IsZero() {
			fmt.Fprintf(&ev, "pg_down\t-\t%.3f\npg_up\t-\t%.3f\n", downFrom.Sub(loadStart).Seconds(), downTo.Sub(loadStart).Seconds())
		}
		fmt.Fprintf(&ev, "load_end\t-\t%.3f\ncheck\t-\t%.3f\n", loadEnd.Sub(loadStart).Seconds(), checkAt.Sub(loadStart).Seconds())
		if err := os.WriteFile(filepath.Join(k.logDir, "events.tsv"), []byte(ev.String()), 0o600); err != nil {
			t.Log(err)
		}
	}
	if over > 0 {
		fail("%d of %d watches (%d of them with an ended grant) went longer than interval %s + lease %s + margin %s = %s without a search (times from the load's start): %s",
			over, len(gaps), overEnded, k.interval, k.lease, k.margin, bound, strings.Join(overList, "; "))
	}

	// The outbox is empty and nothing is dead.
	ctxEnd, cancelEnd := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelEnd()
	var ob statusapi.Outbox
	for _, d := range daemons {
		if ob, err = d.client().Outbox(ctxEnd, "", 0); err == nil {
			break
		}
	}
	waiting, dead := 0, 0
	for _, tg := range ob.Targets {
		waiting += tg.Pending + tg.Retrying
		dead += tg.Dead
	}
	if err != nil || waiting > 0 || dead > 0 {
		fail("outbox at the end: %d waiting, %d dead (%v): %+v", waiting, dead, err, ob.Targets)
	}

	// tagwatchctl daemons: every live daemon, each with a fresh heartbeat.
	live, entries := 0, 0
	out, err := exec.Command(tagwatchctlBin(t), "--socket", daemons[0].socket, "daemons", "--json").CombinedOutput()
	if err != nil {
		fail("tagwatchctl daemons --json: %v\n%s", err, out)
	} else {
		var ds []statusapi.Daemon
		if err := json.NewDecoder(bytes.NewReader(out)).Decode(&ds); err != nil {
			fail("tagwatchctl daemons --json: %v\n%s", err, out)
		}
		entries = len(ds)
		pids := map[int]bool{}
		for _, d := range daemons {
			pids[d.pid()] = true
		}
		for _, e := range ds {
			if e.Alive && pids[e.PID] {
				live++
			}
		}
		// Alive is the daemon's own reading of the heartbeats; a dead
		// daemon's entry stays in the registry, not alive.
		if live != k.daemons || countAlive(ds, true) != live {
			fail("tagwatchctl daemons shows %d live daemons of the %d running (pids %v), want all:\n%s", live, k.daemons, pids, out)
		}
	}
	if out, err := exec.Command(tagwatchctlBin(t), "--socket", daemons[0].socket, "daemons").CombinedOutput(); err == nil {
		t.Logf("tagwatchctl daemons:\n%s", out)
	}

	// Each daemon's last life's own counters (from its start): runs by
	// result, how late runs started, refreshes, CPU.
	for _, d := range daemons {
		m, err := d.client().Metrics(ctxEnd)
		if err != nil {
			t.Logf("daemon %d metrics: %v", d.idx, err)
			continue
		}
		var keep []string
		for l := range strings.Lines(m) {
			for _, p := range []string{"tagwatch_watch_runs_total", "tagwatch_fire_lag_seconds_bucket", "tagwatch_fire_lag_seconds_count",
				"tagwatch_refreshes_total", "tagwatch_deliveries_total", "process_cpu_seconds_total"} {
				if strings.HasPrefix(l, p) {
					keep = append(keep, strings.TrimSpace(l))
				}
			}
		}
		d.mu.Lock()
		life := d.life
		d.mu.Unlock()
		t.Logf("daemon %d (life %d) metrics: %s", d.idx, life, strings.Join(keep, "; "))
	}

	// What the daemons' logs say, counted (figures for the report, not
	// checks: the messages are the daemons' to word).
	count := func(re *regexp.Regexp) int {
		n := 0
		for _, d := range daemons {
			n += len(d.logLines(re))
		}
		return n
	}
	problemLines := 0
	for _, d := range daemons {
		problemLines += len(slices.DeleteFunc(d.logLines(problems), func(l string) bool { return strings.Contains(l, "plain http on loopback") }))
	}
	inDoubt := count(regexp.MustCompile(`retrying a refresh whose outcome was lost`))
	gaveUp := count(regexp.MustCompile(`gave up after \d+ serialization failures`))
	outage := "none"
	if !downFrom.IsZero() {
		outage = fmt.Sprintf("%s at %s", downTo.Sub(downFrom).Round(time.Millisecond), downFrom.Sub(loadStart).Round(time.Second))
	}
	slices.SortFunc(kills, func(a, b kill) int { return int(a.at - b.at) })
	killsText := make([]string, len(kills))
	for i, kl := range kills {
		killsText[i] = fmt.Sprintf("d%d@%s(ready %s)", kl.daemon, kl.at.Round(time.Second), kl.ready.Round(100*time.Millisecond))
	}
	largest := gap{}
	if len(gaps) > 0 {
		largest = gaps[0]
	}
	searchesLoad := sumCalls(st.APICalls[xsandbox.EndpointSearch]) - sumCalls(sbBefore.APICalls[xsandbox.EndpointSearch])
	t.Logf("cluster summary: daemons=%d users=%d interval=%s lease=%s token_ttl=%s load=%s kills=%d [%s] pg_outage=%s (posts made around it %d, notified %d); "+
		"sandbox: searches during load+drain=%d (%.1f/s; %d watches at one per %s would be %.1f/s) refresh_requests=%d refresh_reuses=%d (in a killed rotation's window %d) family_revocations=%d unauthorized=%d token_errors=%d; "+
		"grants: active=%d/%d refreshes_committed=%d; posts=%d notified=%d missing=%d (for ended grants %d) lost_with_a_grant_in_a_killed_rotation=%d duplicate_posts=%d (%.1f per 1000, %d extra deliveries) "+
		"redelivered_ids=%d deliveries=%d by_type=%s latency p50=%s p99=%s max=%s; "+
		"largest gap per watch: p50=%s p90=%s max=%s (#%s, from %s into the load) bound=%s (+outage where spanned) over_bound=%d (ended grants %d; after a grant lost in a killed rotation, not counted: %d); "+
		"gaps over %s: spanning a kill %d, the outage %d, neither %d, of ended grants %d; "+
		"outbox waiting=%d dead=%d; tagwatchctl daemons live=%d entries=%d; "+
		"daemon logs: warn/error lines=%d in-doubt refresh retries=%d gave-up-after-serialization-failures=%d; wall: consents=%s (refused and walked again: %d) drain=%s",
		k.daemons, k.users, k.interval, k.lease, k.tokenTTL, k.duration, len(kills), strings.Join(killsText, " "), outage, nearOutage, nearOutageNotified,
		searchesLoad, float64(searchesLoad)/checkAt.Sub(loadStart).Seconds(), k.users, k.interval, float64(k.users)/k.interval.Seconds(),
		st.TokenRequests["refresh_token"], st.RefreshReuses, len(explained), st.FamilyRevocations, st.Unauthorized, st.TokenErrors,
		active, k.users, refreshes, len(posts), len(posts)-len(missing)-missingLost, len(missing), missingEnded, missingLost, dupPosts, perMille, extraCarries,
		redelivered, deliveries, types, percentile(latencies, 50).Round(time.Millisecond), percentile(latencies, 99).Round(time.Millisecond),
		percentile(latencies, 100).Round(time.Millisecond),
		percentile(sizes, 50).Round(time.Millisecond), percentile(sizes, 90).Round(time.Millisecond),
		largest.size.Round(time.Millisecond), largest.tag, largest.start.Sub(loadStart).Round(100*time.Millisecond), bound, over, overEnded, overLost,
		bound, atKill, atOutage, atNeither, ofEnded,
		waiting, dead, live, entries, problemLines, inDoubt, gaveUp, enrollTook.Round(time.Second), len(refusedConsents), checkAt.Sub(loadEnd).Round(time.Second))
	if len(failures) > 0 {
		showLogs(problems, 60)
		if s := sbLog.String(); s != "" {
			t.Logf("sandbox log:\n%s", s)
		}
		t.Logf("the daemons' logs: %s", logDir)
	}

	// A clean stop of each.
	stopping = true
	for _, d := range daemons {
		if err := d.signal(syscall.SIGTERM, 40*time.Second); err != nil {
			t.Errorf("daemon %d on SIGTERM: %v", d.idx, err)
		}
	}
}

// countAlive counts the entries whose Alive is alive.
func countAlive(ds []statusapi.Daemon, alive bool) int {
	n := 0
	for _, d := range ds {
		if d.Alive == alive {
			n++
		}
	}
	return n
}

// sumCalls adds up the sandbox's API calls by user.
func sumCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// randomText is n random bytes as base64url text.
func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
