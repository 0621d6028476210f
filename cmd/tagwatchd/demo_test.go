package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDemoRenewalCheck: the summary's renewal line says what the check
// needs, and the check holds exactly when that is met (C16: "MISSING
// renewals: 2 (at least 1 per user)" needed 2 per user).
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
	r := refusalLog{w: &file, p: &printer{w: &term, start: time.Now()}}
	line := `time=2026-11-30T09:00:00Z level=WARN msg="enrollment request refused" reason=wrong_account status=403 method=GET path=/callback user=grace provider=x enrollment=e1 err="subject \"1001\" is not the expected \"grace\""` + "\n"
	r.Write([]byte(`time=2026-11-30T09:00:00Z level=INFO msg="consent flow started" user=grace` + "\n"))
	r.Write([]byte(line))
	if !strings.Contains(file.String(), line) {
		t.Errorf("log file = %q, want every line kept", file.String())
	}
	if got := term.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "refused") || !strings.Contains(got, "pick @grace") {
		t.Errorf("terminal = %q, want one line saying the refusal and which account to pick", got)
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
	got := l.account(u, at(10), at(20))
	want := account{expected: 5, delivered: 4, missed: 1, twice: 1, suspended: 2, late: 1, missedIDs: []string{"6"}}
	if got.expected != want.expected || got.delivered != want.delivered || got.missed != want.missed || got.twice != want.twice ||
		got.suspended != want.suspended || got.late != want.late || strings.Join(got.missedIDs, ",") != "6" {
		t.Errorf("account = %+v, want %+v", got, want)
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
