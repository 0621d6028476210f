package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"tagwatch/vault"
	"tagwatch/worker/xapi/xsandbox"
)

// The demo's story after enrollment: the first renewals, then one user
// revokes tagwatch at X (the sandbox's revoke switch, as in X's settings),
// the daemon notices on its next refresh or run, suspends that user's
// watches and sends the re-consent link; the user follows it and the
// watch resumes from its cursor. The demo posts to X itself and keeps a
// ledger of every post and of every notification the console printed, so
// the summary can say whether any post was missed or delivered twice.

// Demo timing. The story needs the first renewal of every user (an access
// token lives 20 s and is renewed once less than 10 s is left, so by the
// 15th second with a run every 5 s), a revocation noticed on the next run
// or refresh (5 s), the user reading the re-consent message (demoReadPause),
// a run after the re-consent (5 s) and, at the end, a last run and its
// delivery for the posts made before X stops posting (demoDrain).
const (
	demoPostRate  = 4 // posts a second
	demoReadPause = 2 * time.Second
	demoDrain     = 10 * time.Second
	demoMinStory  = 15*time.Second + 5*time.Second + demoReadPause + 5*time.Second
	// demoMinDuration is the shortest -duration the story fits in: 40 s
	// (the story, the drain and 3 s to spare).
	demoMinDuration = demoMinStory + demoDrain + 3*time.Second
	// demoManualDrain: with -manual, X stops posting this long after the
	// watch resumed, not at the end of a -duration long enough for a person.
	demoManualDrain = 15 * time.Second
	// demoStopDrain bounds the last runs after an early stop (Ctrl-C): one
	// run of each watch (every 5 s) and its delivery.
	demoStopDrain = 8 * time.Second
	// demoDeliverGrace is how long after a run the demo allows for the
	// delivery of what it read before a post it read counts as missed.
	demoDeliverGrace = 2 * time.Second
)

var demoTags = []string{"golang", "rust", "bbolt", "oauth", "sqlite", "kubernetes"}

// ledgerPost is a post the demo made at X.
type ledgerPost struct {
	id, tag string
	retweet bool
	at      time.Time
}

// ledger is what was posted at X, what the watches read and what the
// console delivered.
type ledger struct {
	mu        sync.Mutex
	posts     []ledgerPost
	delivered map[string][]time.Time // post id: when each match notification carrying it was printed
	runs      map[string][]runSpan   // user id: the successful runs of the user's watch
	n         int                    // posts made
	links     chan string            // re-consent links the console printed
	resumed   chan string            // hashtags of "watching again" notices
}

// runSpan is when one successful run of a watch started and ended.
type runSpan struct{ start, end time.Time }

func newLedger() *ledger {
	return &ledger{delivered: map[string][]time.Time{}, runs: map[string][]runSpan{}, links: make(chan string, 8),
		resumed: make(chan string, 8)}
}

// ran records a successful run of the user's watch: it read every post
// made before start.
func (l *ledger) ran(user string, start, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[user] = append(l.runs[user], runSpan{start, end})
}

// post makes one post at X and records it.
func (l *ledger) post(sb *xsandbox.Server, author, tag string, retweet bool) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	id := sb.Post(xsandbox.Post{AuthorID: author, Text: fmt.Sprintf("demo post %d #%s", n, tag), IsRetweet: retweet})
	l.mu.Lock()
	l.posts = append(l.posts, ledgerPost{id: id, tag: tag, retweet: retweet, at: time.Now()})
	l.mu.Unlock()
}

// generate posts demoPostRate posts a second, one hashtag each, a tenth
// of them reposts (which watches leave out), until ctx ends.
func (l *ledger) generate(ctx context.Context, sb *xsandbox.Server, authors []string) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t := time.NewTicker(time.Second / demoPostRate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.post(sb, authors[rng.IntN(len(authors))], demoTags[rng.IntN(len(demoTags))], rng.Float64() < 0.1)
	}
}

var (
	consoleHeader = regexp.MustCompile(`── tagwatch notification (\S+) \(([a-z_]+), attempt \d+\) ──`)
	postLink      = regexp.MustCompile(`/status/(\d+)$`)
)

// noteConsole records one console block: the posts of a match notice, the
// link of a re-consent notice, a resumed watch.
func (l *ledger) noteConsole(block string) {
	m := consoleHeader.FindStringSubmatch(block)
	if m == nil {
		return
	}
	kind := m[2]
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(strings.TrimPrefix(sc.Text(), "│")))
	}
	now := time.Now()
	switch kind {
	case vault.NoticeMatch:
		l.mu.Lock()
		for _, line := range lines {
			if pm := postLink.FindStringSubmatch(line); pm != nil {
				l.delivered[pm[1]] = append(l.delivered[pm[1]], now)
			}
		}
		l.mu.Unlock()
	case vault.NoticeReconsent:
		for i, line := range lines {
			if strings.HasPrefix(line, "Allow tagwatch again") && i+1 < len(lines) {
				select {
				case l.links <- lines[i+1]:
				default:
				}
			}
		}
	case vault.NoticeEnrolled:
		if len(lines) > 1 && strings.HasSuffix(lines[1], " again") {
			select {
			case l.resumed <- lines[1]:
			default:
			}
		}
	}
}

// account is what the ledger says of one user's watch. Every post X has
// for the user's hashtags (expected) is delivered, missed (a run of the
// watch read it, and its delivery did not come) or not yet due (no run
// of the watch started after it was posted: an early stop came first).
type account struct {
	expected, delivered, missed, notDue, twice int
	// suspended are the posts made while the user's watch was suspended;
	// late are those of them delivered after the re-consent, and
	// suspendedMissed those of them missed.
	suspended, late, suspendedMissed int
	missedIDs                        []string
}

// account compares the posts X has for the user's hashtags (reposts left
// out) with the match notifications the console printed, as of asOf: a
// post counts as missed only if a run of the user's watch started after
// it was posted and ended demoDeliverGrace before asOf. from and to bound
// the suspension (zero: none).
func (l *ledger) account(u demoUser, from, to, asOf time.Time) account {
	l.mu.Lock()
	defer l.mu.Unlock()
	var read time.Time // the start of the latest run that had its delivery's time
	for _, r := range l.runs[u.id] {
		if !r.end.After(asOf.Add(-demoDeliverGrace)) && r.start.After(read) {
			read = r.start
		}
	}
	var a account
	for _, p := range l.posts {
		if p.retweet || !slices.Contains(u.hashtags, p.tag) {
			continue
		}
		a.expected++
		d := l.delivered[p.id]
		while := !from.IsZero() && !p.at.Before(from) && p.at.Before(to)
		switch {
		case len(d) > 0:
			a.delivered++
			if len(d) > 1 {
				a.twice++
			}
		case p.at.Before(read):
			a.missed++
			a.missedIDs = append(a.missedIDs, p.id)
			if while {
				a.suspendedMissed++
			}
		default:
			a.notDue++
		}
		if while {
			a.suspended++
			if len(d) > 0 && d[0].After(to) {
				a.late++
			}
		}
	}
	return a
}

// complete reports whether every post for every user was delivered.
func (l *ledger) complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.posts {
		if p.retweet || len(l.delivered[p.id]) > 0 {
			continue
		}
		for _, u := range demoUsers {
			if slices.Contains(u.hashtags, p.tag) {
				return false
			}
		}
	}
	return true
}

// demoStage is where the story is: the step it waits for.
type demoStage int

const (
	stageEnroll   demoStage = iota // the users consent
	stageRenewals                  // every user's first renewal, then the revocation
	stageNotice                    // the daemon notices the revocation and sends the link
	stageConsent                   // the revoked user consents again
	stageResume                    // the resumed watch runs
	stageRunning                   // the story told, X posts until the end
	stageDrain                     // X stopped posting: the last runs
	stageDone                      // every post delivered
)

// String says what the story was doing at the stage.
func (s demoStage) String() string {
	return [...]string{"while the users enrolled", "while waiting for the first renewals",
		"before the daemon noticed the revocation", "while waiting for the re-consent",
		"while waiting for the resumed watch's first run", "after the story, before X stopped posting",
		"during the last runs", "after the last runs"}[s]
}

// late is how long the story may wait at the stage before the step it
// waits for is late: false for a step that waits for a person (-manual)
// or that no check waits for.
func (s demoStage) late(manual bool) (time.Duration, bool) {
	switch s {
	case stageEnroll, stageConsent:
		// A consent walked over HTTP by the demo; with -manual, a person.
		return demoReadPause + 20*time.Second, !manual
	case stageRenewals:
		return 15*time.Second + 5*time.Second, true // the 15th second, and a run
	case stageNotice, stageResume:
		return 2 * 5 * time.Second, true // the next run or refresh (every 5 s), and one more
	}
	return 0, false
}

// storyFacts is what happened to the revoked user, with the times seen,
// and where the story was.
type storyFacts struct {
	stage   demoStage
	stageAt time.Time // the story reached stage
	// stoppedBy is the signal that stopped the story early ("" if none),
	// at stoppedAt.
	stoppedBy string
	stoppedAt time.Time

	victim       demoUser
	revokedAt    time.Time // revoked at X
	noticedAt    time.Time // the daemon found the grant dead
	noticedHow   string    // "a refresh", "a run"
	suspended    int       // the user's watches suspended when the link came
	watches      int       // the user's watches then
	linkAt       time.Time // the re-consent link was printed
	consentedAt  time.Time // consent given again
	ranAgainAt   time.Time // first successful run after the consent
	revokeErrors int       // failures the revocation caused (expected)
}

// story is storyFacts as the observers and the demo fill them in.
type story struct {
	mu sync.Mutex
	storyFacts
}

func (s *story) note(f func(s *storyFacts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.storyFacts)
}

// reach records that the story reached stage.
func (s *story) reach(stage demoStage) {
	s.note(func(f *storyFacts) { f.stage, f.stageAt = stage, time.Now() })
}

func (s *story) snapshot() storyFacts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storyFacts
}

// during reports whether user is the revoked one and its grant is dead:
// failures then are the revocation's.
func (s *story) during(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return user == s.victim.id && !s.revokedAt.IsZero() && s.ranAgainAt.IsZero()
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, every time.Duration, cond func() bool) bool {
	t := time.NewTicker(every)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// watchesSuspended counts the user's watches and those suspended because
// the grant needs consent.
func watchesSuspended(db *vault.DB, user string) (suspended, all int) {
	ws, err := db.ListWatches(user)
	if err != nil {
		return 0, 0
	}
	for _, w := range ws {
		if w.State == vault.WatchSuspended && w.SuspendReason == vault.SuspendNeedsReconsent {
			suspended++
		}
	}
	return suspended, len(ws)
}
