package worker_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
	"tagwatch/worker/xsource"
)

// checkRules are the rules as a door builds them from the configuration
// alone: X without a client, the default floor and hashtag count.
var checkRules = worker.Rules{Sources: map[string]worker.Source{"x": xsource.New(nil)}, Targets: testTargets{}}

func spec(schedule string, hashtags ...string) vault.WatchSpec {
	return vault.WatchSpec{Hashtags: hashtags, Schedule: schedule, Targets: []string{"console:"}}
}

func TestRulesCheckWatch(t *testing.T) {
	long := make([]string, 10)
	for i := range long {
		long[i] = strings.Repeat(string(rune('a'+i)), 60)
	}
	tests := []struct {
		name     string
		provider string
		in       vault.WatchSpec
		want     vault.WatchSpec // when err is ""
		err      string
	}{
		{"normalised", "x",
			vault.WatchSpec{Hashtags: []string{" #Go ", "golang", "GO", "#golang"}, Lang: " en ", Schedule: " @every 5m ",
				Targets: []string{" console: ", "console:", "mailto:a@example.com"}, Backfill: true},
			vault.WatchSpec{Hashtags: []string{"Go", "golang"}, Lang: "en", Schedule: "@every 5m",
				Targets: []string{"console:", "mailto:a@example.com"}, Backfill: true}, ""},
		// C04: X's grammar, with combining marks and joiners, in NFC.
		{"scripts", "x", spec("@hourly", "#भारत", "#தமிழ்", "#สวัสดี", "#می\u200cخواهم", "#cafe\u0301"),
			spec("@hourly", "भारत", "தமிழ்", "สวัสดี", "می\u200cخواهم", "caf\u00e9"), ""},
		{"NFC duplicates", "x", spec("@hourly", "cafe\u0301", "CAF\u00c9"), spec("@hourly", "caf\u00e9"), ""},
		{"digits only", "x", spec("@hourly", "#123"), vault.WatchSpec{}, `hashtag "#123" is digits only: X does not treat it as a hashtag`},
		{"other digits only", "x", spec("@hourly", "١٢٣"), vault.WatchSpec{}, `hashtag "#١٢٣" is digits only: X does not treat it as a hashtag`},
		{"hash alone", "x", spec("@hourly", "#"), vault.WatchSpec{}, `hashtag "#" is empty`},
		{"blank hashtag", "x", spec("@hourly", "go", " "), vault.WatchSpec{}, `hashtag "" is empty`},
		{"no hashtag", "x", spec("@hourly"), vault.WatchSpec{}, "at least one hashtag is required"},
		{"too many hashtags", "x", spec("@hourly", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"), vault.WatchSpec{},
			"11 hashtags, at most 10 (scheduler.max_hashtags)"},
		{"query too long", "x", spec("@hourly", long...), vault.WatchSpec{},
			"query too long: the hashtags and filters make a 660-character search query, X allows 512: remove hashtags or shorten them by 148 characters"},
		{"unknown provider", "nosuch", spec("@hourly", "go"), vault.WatchSpec{}, `provider "nosuch" is not configured`},
		{"lang not a tag", "x", vault.WatchSpec{Hashtags: []string{"go"}, Lang: "en us", Schedule: "@hourly", Targets: []string{"console:"}},
			vault.WatchSpec{}, `lang "en us" is not a language tag`},
		{"lang too long", "x", vault.WatchSpec{Hashtags: []string{"go"}, Lang: strings.Repeat("a", 36), Schedule: "@hourly", Targets: []string{"console:"}},
			vault.WatchSpec{}, `lang "` + strings.Repeat("a", 36) + `" is 36 characters long, at most 35`},
		{"lang control", "x", vault.WatchSpec{Hashtags: []string{"go"}, Lang: "e\x01n", Schedule: "@hourly", Targets: []string{"console:"}},
			vault.WatchSpec{}, `lang "e\x01n" contains a control character (U+0001)`},
		// C03.
		{"30 February", "x", spec("0 0 30 2 *", "go"), vault.WatchSpec{}, `schedule "0 0 30 2 *" never fires`},
		{"31 April", "x", spec("0 0 31 4 *", "go"), vault.WatchSpec{}, `schedule "0 0 31 4 *" never fires`},
		{"31 of short months", "x", spec("0 0 31 2,4,6,9,11 *", "go"), vault.WatchSpec{}, `schedule "0 0 31 2,4,6,9,11 *" never fires`},
		// C08.
		{"every 0s", "x", spec("@every 0s", "go"), vault.WatchSpec{},
			`schedule "@every 0s": the interval must be positive; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"every -5s", "x", spec("@every -5s", "go"), vault.WatchSpec{},
			`schedule "@every -5s": the interval must be positive; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"every 1ns", "x", spec("@every 1ns", "go"), vault.WatchSpec{},
			`schedule "@every 1ns": the scheduler counts whole seconds and would run it every 1s; write a whole number of seconds; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"every second", "x", spec("* * * * * *", "go"), vault.WatchSpec{},
			`schedule "* * * * * *" runs as often as every 1s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// C15: a control character is named as one.
		{"schedule control", "x", spec("@every\t5m", "go"), vault.WatchSpec{}, `schedule "@every\t5m" contains a control character (U+0009)`},
		{"schedule NUL", "x", spec("0 0\x00 * * *", "go"), vault.WatchSpec{}, `schedule "0 0\x00 * * *" contains a control character (U+0000)`},
		{"schedule invisible", "x", spec("@every\u00a05m", "go"), vault.WatchSpec{},
			`schedule "@every\u00a05m" contains a character that does not print (U+00A0)`},
		{"schedule TZ=", "x", spec("TZ=", "go"), vault.WatchSpec{}, `schedule "TZ=": a TZ= or CRON_TZ= prefix must be followed by a space and the schedule`},
		{"no schedule", "x", spec(" ", "go"), vault.WatchSpec{}, "a schedule is required"},
		{"long schedule", "x", spec("0 0 * * * "+strings.Repeat("1,", 100)+"2", "go"), vault.WatchSpec{},
			`schedule "0 0 * * * 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"... is 211 characters long, at most 200`},
		{"no target", "x", vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly"}, vault.WatchSpec{}, "at least one target is required"},
		{"blank target", "x", vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly", Targets: []string{"console:", " "}},
			vault.WatchSpec{}, "a target is empty"},
		{"bad target", "x", vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly", Targets: []string{"gopher://h"}},
			vault.WatchSpec{}, `target "gopher://h": no channel delivers to it`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.Hashtags, got.Targets = slices.Clone(tc.in.Hashtags), slices.Clone(tc.in.Targets)
			err := checkRules.CheckWatch(tc.provider, &got)
			switch {
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("CheckWatch(%q, %+v) = %v, want %q", tc.provider, tc.in, err, tc.err)
			case tc.err != "" && !equalSpec(got, tc.in):
				t.Errorf("CheckWatch(%+v) refused changed the spec to %+v", tc.in, got)
			case tc.err == "" && err != nil:
				t.Errorf("CheckWatch(%q, %+v) = %v, want nil", tc.provider, tc.in, err)
			case tc.err == "" && !equalSpec(got, tc.want):
				t.Errorf("CheckWatch(%+v) normalised to %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func equalSpec(a, b vault.WatchSpec) bool {
	return slices.Equal(a.Hashtags, b.Hashtags) && slices.Equal(a.Targets, b.Targets) && a.Schedule == b.Schedule &&
		a.Lang == b.Lang && a.IncludeRetweets == b.IncludeRetweets && a.Backfill == b.Backfill
}

// TestRulesLimits: the configured limits, and no target checker.
func TestRulesLimits(t *testing.T) {
	r := checkRules
	r.MaxHashtags, r.MinInterval = 2, time.Minute
	s := spec("@every 1m", "a", "b")
	if err := r.CheckWatch("x", &s); err != nil {
		t.Errorf("CheckWatch(%+v) at a 1m floor = %v, want nil", s, err)
	}
	s = spec("@every 30s", "a", "b", "c")
	if err := r.CheckWatch("x", &s); err == nil || err.Error() != "3 hashtags, at most 2 (scheduler.max_hashtags)" {
		t.Errorf("CheckWatch(3 hashtags) = %v, want at most 2", err)
	}
	s = spec("@every 30s", "a")
	want := `schedule "@every 30s" runs every 30s; the minimum between runs of one watch is 1m0s (scheduler.min_interval)`
	if err := r.CheckWatch("x", &s); err == nil || err.Error() != want {
		t.Errorf("CheckWatch(@every 30s) at a 1m floor = %v, want %q", err, want)
	}
	// At the lowest floor the configuration allows, an @every that is not a
	// positive whole number of seconds is still refused as such.
	r.MinInterval = time.Second
	for sched, want := range map[string]string{
		"@every 0s":    `schedule "@every 0s": the interval must be positive; the minimum between runs of one watch is 1s (scheduler.min_interval)`,
		"@every -5s":   `schedule "@every -5s": the interval must be positive; the minimum between runs of one watch is 1s (scheduler.min_interval)`,
		"@every 500ms": `schedule "@every 500ms": the scheduler counts whole seconds and would run it every 1s; write a whole number of seconds`,
		"@every 1ns":   `schedule "@every 1ns": the scheduler counts whole seconds and would run it every 1s; write a whole number of seconds`,
		"@every 1s":    "",
	} {
		s = spec(sched, "a")
		got := ""
		if err := r.CheckWatch("x", &s); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckWatch(%s) at a 1s floor = %q, want %q", sched, got, want)
		}
	}
	r.Targets = nil
	s = spec("@every 1m", "a")
	if err := r.CheckWatch("x", &s); err == nil || !strings.Contains(err.Error(), "no target checker") {
		t.Errorf("CheckWatch without a target checker = %v, want refused", err)
	}
}

// TestRulesAtTheVault: the vault applies the rules at its doors: C03 and
// C08 are refused by AddWatch with errors that name the watch and the
// rule.
func TestRulesAtTheVault(t *testing.T) {
	db := vaulttest.Open(t, vaulttest.Rules(checkRules))
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "grace", Subject: "1"})
	for _, tc := range []struct{ schedule, want string }{
		{"0 0 30 2 *", `watch: schedule "0 0 30 2 *" never fires`},
		{"@every 0s", `watch: schedule "@every 0s": the interval must be positive; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
	} {
		_, err := db.AddWatch(vault.NewWatch{UserID: "grace", Provider: "x", Spec: spec(tc.schedule, "x")}, "test")
		if !errors.Is(err, vault.ErrInvalid) || err.Error() != tc.want {
			t.Errorf("AddWatch(schedule %q) = %v, want %q", tc.schedule, err, tc.want)
		}
	}
	w, err := db.AddWatch(vault.NewWatch{UserID: "grace", Provider: "x", Spec: spec("@every 15m", "#Go", "go")}, "test")
	if err != nil || !slices.Equal(w.Hashtags, []string{"Go"}) {
		t.Errorf("AddWatch(#Go go) = %v %v, want hashtags [Go]", w.Hashtags, err)
	}
}

// FuzzRules: CheckWatch never panics; what it accepts it accepts again
// unchanged (normalising is idempotent), and what it refuses it leaves as
// it was.
func FuzzRules(f *testing.F) {
	f.Add("golang,#rust", "en", "@every 5m", "console:", "x")
	f.Add("#भारत,#தமிழ்,#สวัสดี,#می\u200cخواهم,#cafe\u0301", "", "@hourly", "mailto:a@example.com", "x")
	f.Add("#123,#,", "en us", "TZ=", "", "x")
	f.Add("go", "", "CRON_TZ=", "console:", "x")
	f.Add("go", "", "TZ=Europe/Paris 0 0 * * *", "console:", "x")
	f.Add("go", "", "CRON_TZ=bad * * * * *", "console:", "x")
	f.Add("go", "", "0 0 30 2 *", "console:", "x")
	f.Add("go", "", "@every 0s", "console:", "x")
	f.Add("go", "", "@every -5s", "console:", "x")
	f.Add("go", "", "@every 500ms", "console:", "x")
	f.Add("go", "", "TZ=UTC @every 1.5s", "console:", "x")
	f.Add("go", "", "* * * * * *", "console:", "x")
	f.Add("go", "", "@every\t5m", "console:", "nosuch")
	f.Add("\u200cgo,go\u200d,\ufe0f1", "\x00", "@yearly", " console: ", "x")
	f.Fuzz(func(t *testing.T, tags, lang, schedule, target, provider string) {
		in := vault.WatchSpec{Hashtags: strings.Split(tags, ","), Lang: lang, Schedule: schedule, Targets: []string{target}}
		got := in
		got.Hashtags, got.Targets = slices.Clone(in.Hashtags), slices.Clone(in.Targets)
		if err := checkRules.CheckWatch(provider, &got); err != nil {
			if !equalSpec(got, in) {
				t.Fatalf("CheckWatch refused %+v (%v) and changed it to %+v", in, err, got)
			}
			return
		}
		again := got
		again.Hashtags, again.Targets = slices.Clone(got.Hashtags), slices.Clone(got.Targets)
		if err := checkRules.CheckWatch(provider, &again); err != nil || !equalSpec(again, got) {
			t.Fatalf("CheckWatch(%+v) accepted it as %+v, then = %v, %+v", in, got, err, again)
		}
	})
}
