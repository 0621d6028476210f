package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tagwatch/worker"
)

// TestDemoRenewalCheck: the summary's renewal line says what the check
// needs, and the check holds exactly when that is met (C16: "MISSING\n// renewals: 2 (at least 1 per user)" needed 2 per user).
func TestDemoRenewalCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		by   map[string]int
		ok   bool
	}{
		{"one each", map[string]int{"ada": 1, "grace": 1}, true},
		{"two each", map[string]int{"ada": 2, "grace": 2}, true},
		{"one user none", map[string]int{"ada": 3}, false},
		{"none", map[string]int{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			total := int64(0)
			for _, n := range c.by {
				total += int64(n)
			}
			o := demoOutcome{renewals: total, renewalsBy: c.by}
			demoSummary(&printer{w: &out, start: time.Now()}, o, nil)
			var line string
			for l := range strings.SplitSeq(out.String(), "\n") {
				if strings.Contains(l, "renewals:") {
					line = l
				}
			}
			want := "ok   renewals:"
			if !c.ok {
				want = "MISSING renewals:"
			}
			if !strings.Contains(line, want) || !strings.Contains(line, "(needed at least 1 per user)") {
				t.Errorf("renewal line = %q, want %q and what it needed", line, want)
			}
		})
	}
}

// TestDemoDuration: a -duration shorter than the story needs is refused
// at once, saying the shortest that works (C16: -duration 25s ran and
// failed).
func TestDemoDuration(t *testing.T) {
	for _, d := range []string{"25s", "1s", "39s"} {
		var out, errOut bytes.Buffer
		start := time.Now()
		err := cmdDemo([]string{"-duration", d, "-color", "never"}, &out, &errOut)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), "at least "+demoMinDuration.String()) {
			t.Errorf("demo -duration %s = %v, want exit %d naming the least duration %s", d, err, exitUsage, demoMinDuration)
		}
		if time.Since(start) > 5*time.Second || out.Len() > 0 {
			t.Errorf("demo -duration %s ran (%s, output %q), want a refusal up front", d, time.Since(start), out.String())
		}
	}
}

// TestDemoTargetLabel: the demo's terminal names a webhook in words, with
// its host and fingerprint: not a URL a terminal makes a link of (and runs
// into the words after it), never its path (C16: delivery lines ended in
// %20).
func TestDemoTargetLabel(t *testing.T) {
	for _, c := range []struct{ label, want string }{
		{"http://127.0.0.1:9000/…#9d22a0b2", "webhook at 127.0.0.1:9000 (#9d22a0b2)"},
		{"https://hooks.example.com/…#0011aabb", "webhook at hooks.example.com (#0011aabb)"},
		{"console:", "console:"},
		{"mailto:a***@example.com", "mailto:a***@example.com"},
	} {
		if got := demoTarget(c.label); got != c.want {
			t.Errorf("demoTarget(%q) = %q, want %q", c.label, got, c.want)
		}
	}
}

// TestDemoRefusalShown: a consent the pages refuse (a sign-in as another
// account) is said on the demo's terminal, with what to do (C16: -manual
// said nothing).
func TestDemoRefusalShown(t *testing.T) {
	var term, file bytes.Buffer
	r := refusalLog{w: &file, p: &printer{w: &term, start: time.Now()}, path: "/tmp/tagwatch-demo-1/tagwatchd.log"}
	line := `time=2026-11-30T09:00:00Z level=WARN msg="enrollment request refused" reason=wrong_account status=403 method=GET path=/callback user=grace provider=x enrollment=e1 err="subject \"1001\" is not the expected \"grace\""` + "\n"
	r.Write([]byte(`time=2026-11-30T09:00:00Z level=INFO msg="consent flow started" user=grace` + "\n"))
	r.Write([]byte(line))
	if !strings.Contains(file.String(), line) {
		t.Errorf("log file = %q, want every line kept", file.String())
	}
	if got := term.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "refused") || !strings.Contains(got, "pick @grace") {
		t.Errorf("terminal = %q, want one line saying the refusal and which account to pick", got)
	}
	// Another refusal sends the reader to the daemon's log: by its path,
	// saying it goes at the end without -keep (trial 13: "see the daemon's\n	// log" did not say where it is).
	term.Reset()
	r.Write([]byte(`level=WARN msg="enrollment request refused" reason=link_used status=410 user=ada` + "\n"))
	if got := term.String(); !strings.Contains(got, "link_used") || !strings.Contains(got, "/tmp/tagwatch-demo-1/tagwatchd.log") ||
		!strings.Contains(got, "removed at the end, unless -keep") {
		t.Errorf("terminal = %q, want the reason, the log's path and that it is removed at the end", got)
	}
	term.Reset()
	r.kept = true
	r.Write([]byte(`level=WARN msg="enrollment request refused" reason=link_used status=410 user=ada` + "\n"))
	if got := term.String(); !strings.Contains(got, "/tmp/tagwatch-demo-1/tagwatchd.log") || strings.Contains(got, "removed") {
		t.Errorf("terminal with -keep = %q, want the log's path, not that it is removed", got)
	}
}

// TestDemoLedger: the ledger's account of a user: every post X has for
// the user's hashtags (reposts left out) delivered once; a post missed or
// delivered twice is counted; posts made while suspended are counted late
// only when delivered after the re-consent.
func TestDemoLedger(t *testing.T) {
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	u := demoUser{id: "grace", hashtags: []string{"bbolt", "oauth"}}
	l := newLedger()
	l.posts = []ledgerPost{
		{id: "1", tag: "bbolt", at: at(1)},
		{id: "2", tag: "oauth", at: at(2)},
		{id: "3", tag: "golang", at: at(3)},               // not the user's
		{id: "4", tag: "oauth", retweet: true, at: at(4)}, // a repost
		{id: "5", tag: "bbolt", at: at(11)},               // while suspended
		{id: "6", tag: "oauth", at: at(12)},               // while suspended, missed
		{id: "7", tag: "bbolt", at: at(21)},
	}
	l.delivered = map[string][]time.Time{"1": {at(2)}, "2": {at(3), at(8)}, "3": {at(4)}, "5": {at(25)}, "7": {at(25)}}
	l.ran("grace", at(5), at(5))
	l.ran("grace", at(24), at(24))
	l.ran("ada", at(30), at(30)) // another user's watch reads nothing of grace's
	got := l.account(u, at(10), at(20), at(30))
	want := account{expected: 5, delivered: 4, missed: 1, twice: 1, suspended: 2, late: 1, suspendedMissed: 1, missedIDs: []string{"6"}}
	if got.expected != want.expected || got.delivered != want.delivered || got.missed != want.missed || got.twice != want.twice ||
		got.suspended != want.suspended || got.late != want.late || got.suspendedMissed != want.suspendedMissed ||
		got.notDue != 0 || strings.Join(got.missedIDs, ",") != "6" {
		t.Errorf("account = %+v, want %+v", got, want)
	}
}

// TestDemoLedgerNotYetDue: a post no run of the user's watch could have
// read (posted after the last run started, or read by a run that ended
// too lately for its delivery) is not yet due: neither delivered nor
// missed (trial 13: Ctrl-C counted the posts made after the last run as
// missed).
func TestDemoLedgerNotYetDue(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	u := demoUser{id: "ada", hashtags: []string{"golang"}}
	l := newLedger()
	l.posts = []ledgerPost{
		{id: "1", tag: "golang", at: at(1)}, // read at 5, delivered
		{id: "2", tag: "golang", at: at(2)}, // read at 5, not delivered: missed
		{id: "3", tag: "golang", at: at(6)}, // read at 10, which ended less than demoDeliverGrace before asOf
		{id: "4", tag: "golang", at: at(11)},
	}
	l.delivered = map[string][]time.Time{"1": {at(5)}}
	l.ran("ada", at(5), at(5.1))
	l.ran("ada", at(10), at(10.5))
	got := l.account(u, time.Time{}, time.Time{}, at(11.5))
	if got.expected != 4 || got.delivered != 1 || got.missed != 1 || got.notDue != 2 || strings.Join(got.missedIDs, ",") != "2" {
		t.Errorf("account as of 11.5s = %+v, want 4 expected: 1 delivered, 1 missed (2), 2 not yet due", got)
	}
	if got := l.account(u, time.Time{}, time.Time{}, at(13)); got.missed != 2 || got.notDue != 1 {
		t.Errorf("account as of 13s = %+v, want 2 missed (read by the run at 10s), 1 not yet due", got)
	}
}

// TestDemoSummaryStopped: a story stopped early by a signal marks
// "stopped", not MISSING, each step the stop came before (or came while
// the story waited for it, before it was late), counts posts no run read
// as not yet due, says it was stopped and which steps did not happen, and
// exits 128+signal; a step that had its time and did not happen is
// MISSING and exits 1 (trial 13: Ctrl-C after the whole story reported
// "MISSING posts ... 4 missed" and "the story is incomplete"). A step
// that never happened says so plainly (trial 14: "revocation: Grace
// Hopper revoked tagwatch at X never", "noticed: on nothing never",
// "watches suspended: 0 of Grace Hopper's 0").
func TestDemoSummaryStopped(t *testing.T) {
	start := time.Now()
	sec := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	grace := demoUsers[1]
	told := storyFacts{victim: grace, revokedAt: sec(14), noticedAt: sec(18), noticedHow: "a run", suspended: 1, watches: 1,
		linkAt: sec(19), consentedAt: sec(21), ranAgainAt: sec(24), revokeErrors: 1}
	full := demoOutcome{enrolled: 2, renewals: 2, runs: 9, postsRead: 40, matches: 30, delivered: 12, renewalsBy: map[string]int{"ada": 1, "grace": 1},
		accounts: map[string]account{
			"ada":   {expected: 20, delivered: 18, notDue: 2},
			"grace": {expected: 12, delivered: 12, suspended: 2, late: 2},
		}}
	stopped := func(f storyFacts, stage demoStage, stageAt, at time.Time) storyFacts {
		f.stage, f.stageAt, f.stoppedBy, f.stoppedAt = stage, stageAt, "Ctrl-C", at
		return f
	}
	for _, c := range []struct {
		name        string
		o           func() demoOutcome
		code        int
		marks       map[string]string // check (its words before ':'): mark
		last        string            // in the last summary line or the error
		notInOutput string
		says        []string // summary lines, after the mark
	}{
		{"after the story", func() demoOutcome {
			o := full
			o.story, o.exitCode = stopped(told, stageRunning, sec(24), sec(30)), 130
			return o
		}, 130, map[string]string{"resumed": markOK, "posts for Ada Lovelace": markStopped, "posts for Grace Hopper": markOK},
			"1 step did not happen (posts for Ada Lovelace)", "MISSING", nil},
		{"waiting for the re-consent", func() demoOutcome {
			o := full
			f := told
			f.consentedAt, f.ranAgainAt = time.Time{}, time.Time{}
			o.story, o.exitCode = stopped(f, stageConsent, sec(19), sec(20)), 143
			o.accounts = map[string]account{"ada": {expected: 10, delivered: 10}, "grace": {expected: 8, delivered: 6, notDue: 2, suspended: 2}}
			return o
		}, 143, map[string]string{"noticed": markOK, "re-consent": markStopped, "resumed": markStopped, "posts while suspended": markStopped,
			"posts for Grace Hopper": markStopped, "posts for Ada Lovelace": markOK},
			"stopped early by Ctrl-C at 20.0s while waiting for the re-consent: 4 steps did not happen", "MISSING",
			[]string{"re-consent: did not happen before the stop (needed the real consent flow)",
				"resumed: did not happen before the stop (needed a run after the re-consent)",
				"noticed: on a run at 18.0s (needed"}},
		{"while enrolling", func() demoOutcome {
			o := demoOutcome{renewalsBy: map[string]int{}, accounts: map[string]account{}, exitCode: 130, manual: true}
			o.story = stopped(storyFacts{victim: grace}, stageEnroll, sec(0), sec(300))
			return o
		}, 130, map[string]string{"users enrolled": markStopped, "renewals": markStopped, "watch runs": markStopped,
			"posts for Ada Lovelace": markStopped}, "every step before the stop happened", "MISSING",
			[]string{"revocation: did not happen before the stop (needed after every user's first renewal)",
				"noticed: did not happen before the stop (needed on the next refresh or run)",
				"watches suspended: did not happen before the stop (needed all of them)",
				"re-consent link: did not happen before the stop (needed"}},
		{"a notice that was late", func() demoOutcome {
			o := full
			f := told
			f.noticedAt, f.linkAt, f.consentedAt, f.ranAgainAt, f.suspended = time.Time{}, time.Time{}, time.Time{}, time.Time{}, 0
			o.story, o.exitCode = stopped(f, stageNotice, sec(14), sec(40)), 130
			return o
		}, exitFailure, map[string]string{"noticed": markMissing, "re-consent": markStopped},
			"a step that had its time did not happen", "",
			[]string{"MISSING noticed: did not happen (needed", "stopped re-consent: did not happen before the stop (needed",
				"revocation: Grace Hopper revoked tagwatch at X at 14.0s (needed"}},
		{"a post read and not delivered", func() demoOutcome {
			o := full
			o.story, o.exitCode = stopped(told, stageRunning, sec(24), sec(30)), 130
			o.accounts = map[string]account{"ada": {expected: 20, delivered: 19, missed: 1, missedIDs: []string{"77"}}, "grace": full.accounts["grace"]}
			return o
		}, exitFailure, map[string]string{"posts for Ada Lovelace": markMissing}, "a step that had its time did not happen", "", nil},
		{"not stopped: posts no run read", func() demoOutcome {
			o := full
			o.story = told
			return o
		}, exitFailure, map[string]string{"posts for Ada Lovelace": markMissing}, "the story is incomplete", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := demoSummary(&printer{w: &out, start: start}, c.o(), nil)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != c.code {
				t.Fatalf("demoSummary = %v, want exit %d:\n%s", err, c.code, out.String())
			}
			for check, mark := range c.marks {
				if !regexp.MustCompile(`summary   ` + regexp.QuoteMeta(mark) + ` ` + regexp.QuoteMeta(check) + `:`).MatchString(out.String()) {
					t.Errorf("summary lacks %q marked %q:\n%s", check, mark, out.String())
				}
			}
			if all := out.String() + err.Error(); !strings.Contains(all, c.last) || (c.notInOutput != "" && strings.Contains(all, c.notInOutput)) {
				t.Errorf("summary and error lack %q or have %q:\n%s%v", c.last, c.notInOutput, out.String(), err)
			}
			for _, line := range c.says {
				if !strings.Contains(out.String(), line) {
					t.Errorf("summary lacks %q:\n%s", line, out.String())
				}
			}
			if bad := regexp.MustCompile(`(?m)^.*( never \(|on nothing|'s 0 \().*$`).FindString(out.String()); bad != "" {
				t.Errorf("summary line %q says a step that did not happen in its details, want \"did not happen\"", bad)
			}
		})
	}
}

// TestDemoSummaryWording: the failures line is a note that does not claim
// to need what it does not check (trial 13: "(needed none besides the\n// revocation's; shown, not checked)").
func TestDemoSummaryWording(t *testing.T) {
	var out bytes.Buffer
	demoSummary(&printer{w: &out, start: time.Now()}, demoOutcome{failures: 0, story: storyFacts{revokeErrors: 1}}, nil)
	line := regexp.MustCompile(`(?m)^.*failures:.*$`).FindString(out.String())
	if line == "" || strings.Contains(line, "needed") || !strings.Contains(line, "note failures: 0 besides the 1 the revocation caused (shown, not checked)") {
		t.Errorf("failures line = %q, want a note, with nothing needed", line)
	}
}

// TestDemoPlurals: one post, one page (trial 13: "read 1 posts, 1 new,\n// 1 pages").
func TestDemoPlurals(t *testing.T) {
	for _, c := range []struct {
		ev   worker.Event
		want string
	}{
		{worker.Event{UserID: "ada", PostsRead: 1, Matches: 1, Pages: 1}, "ada's watch: read 1 post, 1 new, 1 page, lag 0s"},
		{worker.Event{UserID: "ada", PostsRead: 0, Matches: 0, Pages: 1}, "ada's watch: read 0 posts, 0 new, 1 page, lag 0s"},
		{worker.Event{UserID: "ada", PostsRead: 12, Matches: 3, Pages: 2, Lag: time.Millisecond}, "ada's watch: read 12 posts, 3 new, 2 pages, lag 1ms"},
	} {
		if got := runLine(c.ev); got != c.want {
			t.Errorf("runLine(%+v) = %q, want %q", c.ev, got, c.want)
		}
	}
}

// TestDemoConsentWording: with -manual, the enrollment and the re-consent
// both say "consented in the browser" (trial 13: the re-consent said
// "(landing page, POST, X consent, callback)", which the demo walks only
// without -manual).
func TestDemoConsentWording(t *testing.T) {
	for _, manual := range []bool{true, false} {
		want := map[bool]string{true: "consented in the browser", false: "consented at X (landing page, POST, X consent, callback)"}[manual]
		for _, line := range []string{enrolledLine(demoUsers[0], manual), reconsentedLine(demoUsers[1], manual)} {
			if !strings.Contains(line, want) || (manual && strings.Contains(line, "POST")) {
				t.Errorf("manual=%t: %q, want %q", manual, line, want)
			}
		}
	}
}

// TestDemoConsentOrder: the console's "tagwatch is watching" notice of a
// consent, and its delivery line, come after the demo's line saying the
// consent happened, whichever is printed first (trial 13: the notice came
// before its "enrolled" line at 0.0 s).
func TestDemoConsentOrder(t *testing.T) {
	var out bytes.Buffer
	p := &printer{w: &out, start: time.Now()}
	cn := newConsentNotices()
	console := consoleLines{p: p, led: newLedger(), cn: cn}
	block := func(id, heading string) string {
		return "── tagwatch notification " + id + " (enrolled, attempt 1) ──\n│ " + heading + "\n│ \n│ tagwatch now watches.\n"
	}
	say := func(id string) func() { return func() { p.line(cGreen, "delivered", "notification %s", id) } }
	console.Write([]byte(block("n1", "tagwatch is watching #golang #rust")))
	cn.delivered("n1", say("n1"))
	cn.consented("ada", func() { p.line(cCyan, "enrolled", "Ada consented") })
	cn.consented("grace", func() { p.line(cCyan, "enrolled", "Grace consented") })
	console.Write([]byte(block("n2", "tagwatch is watching #bbolt #oauth"))) // after its line: at once
	cn.delivered("n2", say("n2"))
	console.Write([]byte(block("n3", "tagwatch is watching #bbolt #oauth again")))
	cn.delivered("n3", say("n3"))
	cn.consented("grace", func() { p.line(cCyan, "consented", "Grace again") })
	console.Write([]byte(block("n4", "tagwatch is watching #golang #rust again"))) // never said: flushed at the end
	cn.flush()
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		got = append(got, strings.Join(strings.Fields(l)[1:], " "))
	}
	want := []string{"enrolled Ada consented", "notice tagwatch is watching #golang #rust", "delivered notification n1",
		"enrolled Grace consented", "notice tagwatch is watching #bbolt #oauth", "delivered notification n2",
		"consented Grace again", "notice tagwatch is watching #bbolt #oauth again", "delivered notification n3",
		"notice tagwatch is watching #golang #rust again"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDemoProgress: the progress line shows the suspended watches, and
// missed or twice only when not zero; a line the same as the last one is
// left out (trial 13: identical lines at 12.0 s and 16.0 s, and no sign of
// the suspension).
func TestDemoProgress(t *testing.T) {
	f := progressFacts{users: 2, renewals: 2, runs: 6, matches: 26, deliveries: 8, suspended: 1}
	if got, want := f.String(), "users 2 · renewals 2 · runs 6 · matches 26 · deliveries 8 · watches suspended 1"; got != want {
		t.Errorf("progress line = %q, want %q", got, want)
	}
	f.missed, f.twice = 3, 1
	if got := f.String(); !strings.HasSuffix(got, " · missed 3 · twice 1") {
		t.Errorf("progress line = %q, want missed and twice at the end", got)
	}
	var out syncBuffer
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		progress(ctx, &printer{w: &out, start: time.Now()}, time.Millisecond, func() progressFacts {
			n := calls.Add(1)
			return progressFacts{runs: min(n/20, 2)} // 0, then 1, then 2 for good
		})
	}()
	for calls.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if lines := strings.Count(out.String(), "\n"); lines != 3 {
		t.Errorf("progress printed %d lines over %d ticks, want 3 (one per change):\n%s", lines, calls.Load(), out.String())
	}
}

// TestDemoFlags: a bad flag or value is refused with exit 2 and one line
// naming the flag and the value, as -duration 20s is (trial 13: -duration
// abc and -bogus exited 1, after the whole usage); a bad -duration says
// the format (trial 14: "parse error"). -h prints the usage, with
// -duration's default and least said once each (trial 14: "at least 40s;
// 10m with -manual) (default 1m0s)").
func TestDemoFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-duration", "abc"}, []string{"-duration", `"abc"`, "a Go duration such as 60s or 2m"}},
		{[]string{"-bogus"}, []string{"-bogus"}},
		{[]string{"-color", "purple"}, []string{"-color", `"purple"`}},
		{[]string{"-duration", "20s"}, []string{"-duration 20s is too short"}},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"demo"}, c.args...), &out, &errOut)
		msg := errOut.String()
		ok := code == exitUsage && out.Len() == 0 && strings.Count(msg, "\n") == 1 && strings.HasPrefix(msg, "tagwatchd: demo: ")
		for _, w := range c.want {
			ok = ok && strings.Contains(msg, w)
		}
		if !ok {
			t.Errorf("tagwatchd demo %s = %d, stdout %q, stderr %q; want %d and one line naming %q", strings.Join(c.args, " "), code,
				out.String(), msg, exitUsage, c.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"demo", "-h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Ctrl-C") ||
		!strings.Contains(out.String(), "-duration") {
		t.Errorf("tagwatchd demo -h = %d, stdout %q, stderr %q; want 0 and the usage with its flags", code, out.String(), errOut.String())
	}
	if help := out.String(); !strings.Contains(help, "default 60s (10m with -manual); at least 40s") || strings.Contains(help, "1m0s") {
		t.Errorf("tagwatchd demo -h = %q, want -duration's help to say \"default 60s (10m with -manual); at least 40s\" and no other default", help)
	}
}

// TestDemoKept: -keep lists every file of the state directory with its
// mode (trial 13: x-client-secret was kept, not listed).
func TestDemoKept(t *testing.T) {
	dir := t.TempDir()
	files := map[string]os.FileMode{"tagwatch.db": 0o600, "master.key": 0o600, "tagwatch.toml": 0o600, "tagwatchd.log": 0o600,
		"x-client-secret": 0o600, "webhook-secret": 0o600, "other": 0o640}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(dir, name), nil, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, name), mode)
	}
	var out bytes.Buffer
	printKept(&printer{w: &out, start: time.Now()}, dir)
	for name, mode := range files {
		if !regexp.MustCompile(`kept\s+` + regexp.QuoteMeta(name) + fmt.Sprintf(`\s+%04o\s+\S`, mode)).MatchString(out.String()) {
			t.Errorf("kept list lacks %s with mode %04o and what it is:\n%s", name, mode, out.String())
		}
	}
	if !strings.Contains(out.String(), "state kept in "+dir+":") || !strings.Contains(out.String(), "rm -r "+dir) {
		t.Errorf("kept list does not name the directory:\n%s", out.String())
	}
}

// TestDemoInterrupt stops the demo with a signal at several points: after
// the story (the trial's case), while it waits for the first renewals,
// twice (the second skips the last runs), and with -manual while it waits
// for a person. Each time the demo lets the last runs deliver, marks the
// steps the stop came before "stopped", never MISSING, says it was
// stopped early, and exits 128+signal (trial 13: Ctrl-C after the whole
// story reported missed posts and "the story is incomplete", exit 1).
func TestDemoInterrupt(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		after   string // the signal is sent once a line matches
		sig     syscall.Signal
		twice   bool
		code    int
		want    []string
		wantNot []string
	}{
		{"after the story", []string{"-duration", "60s"}, `consented Grace Hopper(.*\n)*.*ran       grace's watch`, syscall.SIGINT, false, 130,
			[]string{"Ctrl-C: stopped early after the story, before X stopped posting; X stops posting; the last runs deliver",
				"ok   resumed: ", "ok   posts while suspended: ", "every step of the story happened before the stop"},
			[]string{"MISSING", " missed 1", "stopped posts"}},
		{"before the revocation", []string{"-duration", "60s"}, `ran       ada's watch`, syscall.SIGINT, false, 130,
			[]string{"stopped revocation: ", "stopped re-consent: ", "stopped posts while suspended: ", "ok   users enrolled: 2",
				"stopped early by Ctrl-C at ", "steps did not happen (", "every step before the stop happened"},
			[]string{"MISSING"}},
		{"twice", []string{"-duration", "60s"}, `revoked   Grace Hopper`, syscall.SIGINT, true, 130,
			[]string{"stopped early by Ctrl-C at "}, []string{"MISSING"}},
		{"manual, waiting for a person", []string{"-manual"}, `open it in a browser`, syscall.SIGTERM, false, 143,
			[]string{"SIGTERM: stopped early while the users enrolled", "stopped users enrolled: 0", "stopped posts for Ada Lovelace: 0 of 0 delivered"},
			[]string{"MISSING", "refused", "context canceled"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			buf := &syncBuffer{}
			cmd := exec.Command(binary, append([]string{"demo", "-color", "never"}, c.args...)...)
			cmd.Stdout, cmd.Stderr = buf, buf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			waitOutput(t, buf, c.after, 45*time.Second)
			time.Sleep(time.Second) // the story sees what the line says
			cmd.Process.Signal(c.sig)
			if c.twice {
				waitOutput(t, buf, `stopped early`, 5*time.Second)
				cmd.Process.Signal(c.sig)
			}
			start := time.Now()
			err := cmd.Wait()
			out := buf.String()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != c.code {
				t.Errorf("demo stopped by %v = %v, want exit %d:\n%s", c.sig, err, c.code, out)
			}
			if limit := demoStopDrain + 5*time.Second; time.Since(start) > limit || (c.twice && time.Since(start) > 4*time.Second) {
				t.Errorf("demo took %s to stop after the signal, want less than %s (4s after a second one)", time.Since(start), limit)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("demo output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("demo output has %q:\n%s", w, out)
				}
			}
			// The consent's notice follows the demo's line for it.
			if e, n := strings.Index(out, "enrolled  Ada Lovelace"), strings.Index(out, "notice    tagwatch is watching #golang #rust"); n >= 0 && n < e {
				t.Errorf("the notice of Ada's consent comes before the demo says she enrolled:\n%s", out)
			}
		})
	}
}

// waitOutput waits for buf to match expr.
func waitOutput(t *testing.T, buf *syncBuffer, expr string, limit time.Duration) {
	t.Helper()
	re := regexp.MustCompile(expr)
	deadline := time.Now().Add(limit)
	for !re.MatchString(buf.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("demo output has no line matching %q:\n%s", expr, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDemoConsoleBlocks: the ledger reads the console channel's blocks as
// the notify package prints them.
func TestDemoConsoleBlocks(t *testing.T) {
	l := newLedger()
	l.noteConsole("── tagwatch notification abc (match, attempt 1) ──\n│ New posts for #bbolt\n│ \n│ tagwatch found these while you were away.\n│ \n│ @rob · 2026-11-30 09:00 UTC\n│ demo post 1 #bbolt\n│ https://x.com/rob/status/1866\n│ \n│ --\n│ Notification abc\n")
	l.noteConsole("── tagwatch notification def (reconsent_needed, attempt 1) ──\n│ tagwatch needs your permission again\n│ \n│ Allow tagwatch again (this link works once):\n│ http://127.0.0.1:1/enroll/TOKEN\n│ \n│ --\n")
	l.noteConsole("── tagwatch notification ghi (enrolled, attempt 1) ──\n│ tagwatch is watching #bbolt #oauth again\n")
	if d := l.delivered["1866"]; len(d) != 1 {
		t.Errorf("delivered = %v, want post 1866 once", l.delivered)
	}
	select {
	case link := <-l.links:
		if link != "http://127.0.0.1:1/enroll/TOKEN" {
			t.Errorf("re-consent link = %q", link)
		}
	default:
		t.Error("no re-consent link read")
	}
	select {
	case <-l.resumed:
	default:
		t.Error("the resumed watch was not seen")
	}
}

// FuzzDemoConsole: the ledger reads any console block (posts carry text
// from X) without a panic, and counts only post links it was shown.
func FuzzDemoConsole(f *testing.F) {
	f.Add("── tagwatch notification abc (match, attempt 1) ──\n│ New posts for #bbolt\n│ @rob · x\n│ demo post 1\n│ https://x.com/rob/status/1866\n")
	f.Add("── tagwatch notification def (reconsent_needed, attempt 1) ──\n│ Allow tagwatch again (this link works once):\n")
	f.Add("── tagwatch notification ghi (enrolled, attempt 1) ──\n│ tagwatch is watching #a again\n")
	f.Fuzz(func(t *testing.T, block string) {
		l := newLedger()
		l.noteConsole(block)
		for id, times := range l.delivered {
			if !strings.Contains(block, "/status/"+id) || len(times) == 0 {
				t.Fatalf("post %q counted as delivered from %q", id, block)
			}
		}
	})
}

// FuzzDemoLog: every byte of the daemon's log reaches its file, whatever
// the terminal is told.
func FuzzDemoLog(f *testing.F) {
	f.Add(`level=WARN msg="enrollment request refused" reason=wrong_account user=grace` + "\n")
	f.Add(`msg="enrollment request refused" reason= user=` + "\n\n")
	f.Fuzz(func(t *testing.T, line string) {
		var term, file bytes.Buffer
		n, err := refusalLog{w: &file, p: &printer{w: &term, start: time.Now()}}.Write([]byte(line))
		if err != nil || n != len(line) || file.String() != line {
			t.Fatalf("Write(%q) = %d, %v; file got %q", line, n, err, file.String())
		}
	})
}
