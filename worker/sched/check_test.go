package sched

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/robfig/cron/v3"
)

const floor = 5 * time.Minute

// TestCheckScheduleNeverFires: C03. Valid syntax that names no existing
// time is refused with a message that says it never fires.
func TestCheckScheduleNeverFires(t *testing.T) {
	for _, spec := range []string{
		"0 0 30 2 *",          // 30 February
		"0 0 31 4 *",          // 31 April
		"0 0 31 2,4,6,9,11 *", // the 31st of months that have 30 days or fewer
		"0 0 0 30 2 *",        // with seconds
		"TZ=UTC 0 0 30 2 *",   // with a zone
		", * * * * *",         // an empty seconds field (robfig accepts it)
		"0 , * * * *",         // an empty minutes field
		"0 0 , * *",           // an empty day-of-month field
	} {
		_, err := CheckSchedule(spec, floor)
		want := `schedule "` + spec + `" never fires`
		if !errors.Is(err, ErrNeverFires) || err.Error() != want {
			t.Errorf("CheckSchedule(%q) = %v, want %q", spec, err, want)
		}
	}
}

// TestCheckScheduleFloor: C08. Schedules that run a watch more often than
// the minimum interval are refused with a message naming the floor; the
// gap reported is the one the engine would run.
func TestCheckScheduleFloor(t *testing.T) {
	tests := []struct {
		spec string
		min  time.Duration
		want string // "" for accepted
	}{
		{"@every 299s", floor, `schedule "@every 299s" runs every 4m59s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"@every 1s", floor, `schedule "@every 1s" runs every 1s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"* * * * * *", floor, `schedule "* * * * * *" runs as often as every 1s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"* * * * *", floor, `schedule "* * * * *" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"*/4 * * * *", floor, `schedule "*/4 * * * *" runs as often as every 4m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"0,30 * * * * *", floor, `schedule "0,30 * * * * *" runs as often as every 30s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// 00:00, 00:59, 23:00 and 23:59 every day: 23:59 to 00:00 is a minute.
		{"0,59 0,23 * * *", floor, `schedule "0,59 0,23 * * *" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// 12:58 and 13:02: the hours' wrap, 4 minutes.
		{"2,58 12,13 * * *", floor, `schedule "2,58 12,13 * * *" runs as often as every 4m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// 59 s past one minute to 1 s past the next: 2 s.
		{"1,59 * * * * *", floor, `schedule "1,59 * * * * *" runs as often as every 2s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// The same at a floor of a second passes.
		{"1,59 * * * * *", time.Second, ""},
		{"@every 5m", floor, ""},
		{"@every 1h", floor, ""},
		{"*/5 * * * *", floor, ""},
		{"0 */5 * * * *", floor, ""},
		{"0 9 * * 1-5", floor, ""},
		{"@hourly", floor, ""},
		{"@every 1s", 0, ""}, // no floor
		{"@every 1s", time.Second, ""},
		// 23:59 and 00:00, but never on consecutive days (the 1st and the
		// 15th): the wrap does not happen, the closest fires are 59 min
		// apart.
		{"0,59 0,23 1,15 * *", floor, ""},
		// Consecutive days only across a month's end: 31 January, 1 February.
		{"0,59 0,23 1,31 1,2 *", floor, `schedule "0,59 0,23 1,31 1,2 *" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// Mondays and Tuesdays are consecutive; Mondays and Wednesdays not.
		{"0,59 0,23 * * 1,2", floor, `schedule "0,59 0,23 * * 1,2" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		{"0,59 0,23 * * 1,3", floor, ""},
		// Saturday (6) and Sunday (0) wrap the week.
		{"0,59 0,23 * * 0,6", floor, `schedule "0,59 0,23 * * 0,6" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
		// 28 and 29 February are consecutive in leap years only: still.
		{"0,59 0,23 28,29 2 *", floor, `schedule "0,59 0,23 28,29 2 *" runs as often as every 1m0s; the minimum between runs of one watch is 5m0s (scheduler.min_interval)`},
	}
	for _, tc := range tests {
		_, err := CheckSchedule(tc.spec, tc.min)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("CheckSchedule(%q, %s) = %q, want %q", tc.spec, tc.min, got, tc.want)
		}
		if tc.want != "" && !errors.Is(err, ErrTooOften) {
			t.Errorf("CheckSchedule(%q, %s) = %v, want ErrTooOften", tc.spec, tc.min, err)
		}
	}
}

// TestCheckScheduleEvery: an @every interval that is zero or negative,
// under a second or not a whole number of seconds is refused as such,
// whatever the floor (robfig/cron would run it every 1s, or rounded
// down), and the message names the floor when the interval is under it
// (C08).
func TestCheckScheduleEvery(t *testing.T) {
	const (
		positive = "the interval must be positive"
		whole    = "the scheduler counts whole seconds and would run it every "
		floor5m  = "; the minimum between runs of one watch is 5m0s (scheduler.min_interval)"
		floor1s  = "; the minimum between runs of one watch is 1s (scheduler.min_interval)"
	)
	tests := []struct {
		spec string
		min  time.Duration
		want string // "" for accepted
		err  error
	}{
		{"@every 0s", floor, `schedule "@every 0s": ` + positive + floor5m, ErrNotPositive},
		{"@every -5s", floor, `schedule "@every -5s": ` + positive + floor5m, ErrNotPositive},
		{"@every 0s", time.Second, `schedule "@every 0s": ` + positive + floor1s, ErrNotPositive},
		{"@every -5s", time.Second, `schedule "@every -5s": ` + positive + floor1s, ErrNotPositive},
		{"@every -0s", time.Second, `schedule "@every -0s": ` + positive + floor1s, ErrNotPositive},
		{"@every -1h", 0, `schedule "@every -1h": ` + positive, ErrNotPositive},
		{"TZ=UTC @every -1s", time.Second, `schedule "TZ=UTC @every -1s": ` + positive + floor1s, ErrNotPositive},
		{"@every 1ns", floor, `schedule "@every 1ns": ` + whole + "1s; write a whole number of seconds" + floor5m, ErrWholeSeconds},
		{"@every 1ns", time.Second, `schedule "@every 1ns": ` + whole + "1s; write a whole number of seconds", ErrWholeSeconds},
		{"@every 500ms", time.Second, `schedule "@every 500ms": ` + whole + "1s; write a whole number of seconds", ErrWholeSeconds},
		{"@every 1.5s", time.Second, `schedule "@every 1.5s": ` + whole + "1s; write a whole number of seconds", ErrWholeSeconds},
		{"@every 999ms", 0, `schedule "@every 999ms": ` + whole + "1s; write a whole number of seconds", ErrWholeSeconds},
		{"@every 299.9s", floor, `schedule "@every 299.9s": ` + whole + "4m59s; write a whole number of seconds" + floor5m, ErrWholeSeconds},
		// Above the floor, only the fraction is wrong.
		{"@every 20m0.5s", floor, `schedule "@every 20m0.5s": ` + whole + "20m0s; write a whole number of seconds", ErrWholeSeconds},
		{"CRON_TZ=UTC @every 1500ms", time.Second, `schedule "CRON_TZ=UTC @every 1500ms": ` + whole + "1s; write a whole number of seconds", ErrWholeSeconds},
		{"@every 1s", time.Second, "", nil},
		{"@every 1000ms", time.Second, "", nil},
		{"@every 1m30s", time.Second, "", nil},
		{"TZ=UTC @every 5m", floor, "", nil},
		{"CRON_TZ=UTC  @every 5m", floor, "", nil},
	}
	for _, tc := range tests {
		_, err := CheckSchedule(tc.spec, tc.min)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("CheckSchedule(%q, %s) = %q, want %q", tc.spec, tc.min, got, tc.want)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("CheckSchedule(%q, %s) = %v, want errors.Is %v", tc.spec, tc.min, err, tc.err)
		}
	}
}

// TestCheckScheduleGapExact compares the gap computed from the fields
// with the fires robfig's Next gives over two days, for schedules whose
// closest fires are within a day.
func TestCheckScheduleGapExact(t *testing.T) {
	for _, spec := range []string{
		"* * * * * *", "*/7 * * * * *", "0,1 * * * *", "13 2-4 * * * *", "5,6 7 8,9 * * *",
		"0 0,12 * * *", "0 0 * * *", "0 0,23 * * *", "30 59 23 * * *", "0,59 0,23 * * *",
		"15 10,50 3,4 * * *", "0 0-23/5 * * *", "*/13 */17 */5 * * *",
	} {
		s, err := CheckSchedule(spec, 0)
		if err != nil {
			t.Fatalf("CheckSchedule(%q, 0) = %v", spec, err)
		}
		start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
		want := time.Duration(1<<63 - 1)
		prev := s.Next(start)
		for t := prev; t.Before(start.Add(48 * time.Hour)); {
			next := s.Next(t)
			want = min(want, next.Sub(t))
			t = next
		}
		if got := specGap(s.(*cron.SpecSchedule), 48*time.Hour); got != want {
			t.Errorf("specGap(%q) = %s, want %s (robfig's fires)", spec, got, want)
		}
	}
}

// TestCheckScheduleNoPanic: robfig's parser panics on a TZ= or CRON_TZ=
// prefix with no space after it; CheckSchedule refuses them.
func TestCheckScheduleNoPanic(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{"TZ=", `schedule "TZ=": a TZ= or CRON_TZ= prefix must be followed by a space and the schedule`},
		{"CRON_TZ=", `schedule "CRON_TZ=": a TZ= or CRON_TZ= prefix must be followed by a space and the schedule`},
		{"TZ=Europe/Paris", `schedule "TZ=Europe/Paris": a TZ= or CRON_TZ= prefix must be followed by a space and the schedule`},
		{"CRON_TZ=bad * * * * *", `schedule "CRON_TZ=bad * * * * *": provided bad location bad: unknown time zone bad`},
		{"TZ= ", `schedule "TZ= ": expected 5 to 6 fields, found 0: []`},
		{"", `schedule "": empty spec string`},
		{"@every", `schedule "@every": unrecognized descriptor: @every`},
		{"@every x", `schedule "@every x": failed to parse duration @every x: time: invalid duration "x"`},
	}
	for _, tc := range tests {
		_, err := CheckSchedule(tc.spec, floor)
		if err == nil || err.Error() != tc.want {
			t.Errorf("CheckSchedule(%q) = %v, want %q", tc.spec, err, tc.want)
		}
	}
	for _, spec := range []string{"TZ=Europe/Paris 0 0 * * *", "CRON_TZ=UTC 0 */10 * * *", "TZ=America/Sao_Paulo 0 0 * * *"} {
		if _, err := CheckSchedule(spec, floor); err != nil && !strings.Contains(err.Error(), "unknown time zone") {
			t.Errorf("CheckSchedule(%q) = %v, want accepted", spec, err)
		}
	}
}

// TestCheckScheduleDescriptors: every descriptor robfig knows is accepted
// at the default floor (@every at or above it).
func TestCheckScheduleDescriptors(t *testing.T) {
	for _, spec := range []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@every 5m", "@every 1h30m"} {
		if _, err := CheckSchedule(spec, floor); err != nil {
			t.Errorf("CheckSchedule(%q) = %v, want accepted", spec, err)
		}
	}
}

// TestEngineMinInterval: a stored schedule faster than the engine's floor
// runs at the floor's pace.
func TestEngineMinInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, MinInterval: time.Minute})
		mustUpsert(t, e, Entry{Key: "hog", User: "u", Provider: "x", Schedule: "@every 1s", LastRun: time.Now()})
		mustUpsert(t, e, Entry{Key: "slow", User: "v", Provider: "x", Schedule: "@every 2m", LastRun: time.Now()})
		stop := start(t, e)
		time.Sleep(10*time.Minute - time.Millisecond)
		stop()
		if n := r.count("hog"); n < 9 || n > 10 {
			t.Errorf("@every 1s under a 1m floor fired %d times in 10 minutes, want 9 or 10", n)
		}
		fs := r.fires["hog"]
		for i := 1; i < len(fs); i++ {
			if d := fs[i].Scheduled.Sub(fs[i-1].Scheduled); d < time.Minute {
				t.Errorf("fires %d and %d are %s apart, want at least 1m", i-1, i, d)
			}
		}
		if n := r.count("slow"); n != 5 {
			t.Errorf("@every 2m fired %d times in 10 minutes, want 5", n)
		}
	})
}

// TestEngineSetMinInterval: a floor raised while the engine runs (a
// reload) slows a stored fast schedule from its next fire on.
func TestEngineSetMinInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		e, _ := New(Config{Job: r.job, MinInterval: time.Second})
		mustUpsert(t, e, Entry{Key: "w", User: "u", Provider: "x", Schedule: "@every 1s", LastRun: time.Now()})
		stop := start(t, e)
		time.Sleep(10*time.Second - time.Millisecond)
		before := r.count("w")
		e.SetMinInterval(time.Minute)
		time.Sleep(10 * time.Minute)
		stop()
		if before < 9 {
			t.Fatalf("@every 1s under a 1s floor fired %d times in 10s, want at least 9", before)
		}
		if after := r.count("w") - before; after < 9 || after > 11 {
			t.Errorf("after SetMinInterval(1m), @every 1s fired %d times in 10 minutes, want about 10", after)
		}
	})
}

// FuzzCheckSchedule: no input panics or hangs, and an accepted schedule
// fires, at the floor or slower.
func FuzzCheckSchedule(f *testing.F) {
	for _, seed := range []string{
		"TZ=", "CRON_TZ=", "TZ= ", "CRON_TZ= ", "TZ=Europe/Paris 0 0 * * *", "CRON_TZ=bad * * * * *",
		"CRON_TZ=America/Sao_Paulo 0 0 * * *", "TZ=Local @every 5m", "TZ=UTC", "TZ=../../etc/passwd * * * * *",
		"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@every", "@every 5m",
		"@every 0s", "@every -5s", "@every 1ns", "@every 9999999h", "* * * * * *", "* * * * *",
		"0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 29 2 *", ", * * * * *", "*/0 * * * *",
		"1-0 * * * *", "0-59/99999999999999999999 * * * *", "? ? ? ? ? ?", "0,59 0,23 * * 0,6", "\x00", "",
	} {
		f.Add(seed, int64(floor))
	}
	// @every intervals that are not a positive whole number of seconds,
	// under the lowest floor the configuration allows (1s) and none.
	for _, seed := range []string{
		"@every 0s", "@every -5s", "@every -0s", "@every 500ms", "@every 1ns", "@every 1.5s", "@every 999ms",
		"@every 1s", "@every 1000ms", "TZ=UTC @every -1s", "CRON_TZ=UTC @every 1500ms", "@every 20m0.5s", "@every 1e3s",
	} {
		f.Add(seed, int64(time.Second))
		f.Add(seed, int64(0))
	}
	f.Fuzz(func(t *testing.T, spec string, min int64) {
		minInterval := time.Duration(min)
		s, err := CheckSchedule(spec, minInterval)
		if err != nil {
			var se *ScheduleError
			if !errors.As(err, &se) || se.Spec != spec {
				t.Fatalf("CheckSchedule(%q) = %v, want a *ScheduleError naming it", spec, err)
			}
			return
		}
		if cd, ok := s.(cron.ConstantDelaySchedule); ok {
			// Runs as written: a positive whole number of seconds.
			if d, ok := everyInterval(spec); !ok || d != cd.Delay || d < time.Second || d%time.Second != 0 {
				t.Fatalf("CheckSchedule(%q) accepted an @every the engine runs every %s, written %s", spec, cd.Delay, d)
			}
		}
		now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		a := s.Next(now)
		if a.IsZero() {
			t.Fatalf("CheckSchedule(%q) accepted a schedule that never fires", spec)
		}
		if minInterval > 0 {
			if b := s.Next(a); !b.IsZero() && b.Sub(a) < minInterval && !zoned(spec) {
				t.Fatalf("CheckSchedule(%q, %s) accepted fires %s apart (%s, %s)", spec, minInterval, b.Sub(a), a, b)
			}
		}
	})
}

// zoned reports whether a spec carries a time zone, whose daylight-saving
// changes can bring two fires closer once.
func zoned(spec string) bool {
	return strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")
}
