package sched

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Parser parses watch schedules: robfig/cron/v3 with an optional seconds
// field, the five standard fields and descriptors (@hourly, @every 5m,
// ...), and an optional TZ= or CRON_TZ= prefix. It is the parser of
// CheckSchedule and the engine's default; it may panic on some input (see
// CheckSchedule), so parse outside input with CheckSchedule only.
var Parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var (
	// ErrNeverFires means a schedule parses but names no time that exists
	// (30 February, 31 April, an empty field).
	ErrNeverFires = errors.New("never fires")
	// ErrTooOften means a schedule can run a watch sooner after its
	// previous run than the minimum interval allows.
	ErrTooOften = errors.New("runs too often")
	// ErrNotPositive means an `@every` interval is zero or negative.
	ErrNotPositive = errors.New("the interval must be positive")
	// ErrWholeSeconds means an `@every` interval is under a second or not
	// a whole number of seconds: robfig/cron counts whole seconds (it runs
	// `@every 500ms` every 1s and `@every 1.5s` every 1s), so the schedule
	// would not run as written.
	ErrWholeSeconds = errors.New("the scheduler counts whole seconds")
)

// ScheduleError says why a schedule is refused. Its message names the
// schedule; errors.Is matches ErrNeverFires, ErrTooOften, ErrNotPositive
// and ErrWholeSeconds for those causes.
type ScheduleError struct {
	Spec string
	// Err is the cause: ErrNeverFires, ErrTooOften, ErrNotPositive,
	// ErrWholeSeconds, or the parser's error.
	Err error
	// Gap is, for ErrTooOften, the shortest time between two fires, and
	// for ErrWholeSeconds the interval robfig/cron would run instead. Min
	// is the minimum interval; the message names it when the schedule
	// breaks it (ErrTooOften always, ErrNotPositive and ErrWholeSeconds
	// when the interval is under it).
	Gap, Min time.Duration
	// Every is true when the schedule is an @every one (a fixed gap).
	Every bool
}

func (e *ScheduleError) Error() string {
	switch {
	case e.Err == ErrNeverFires:
		return fmt.Sprintf("schedule %q never fires", e.Spec)
	case e.Err == ErrTooOften:
		how := "runs every"
		if !e.Every {
			how = "runs as often as every"
		}
		return fmt.Sprintf("schedule %q %s %s; %s", e.Spec, how, e.Gap, floorText(e.Min))
	case e.Err == ErrNotPositive && e.Min > 0:
		return fmt.Sprintf("schedule %q: %v; %s", e.Spec, e.Err, floorText(e.Min))
	case e.Err == ErrWholeSeconds:
		msg := fmt.Sprintf("schedule %q: %v and would run it every %s; write a whole number of seconds", e.Spec, e.Err, e.Gap)
		if e.Gap < e.Min {
			msg += "; " + floorText(e.Min)
		}
		return msg
	}
	return fmt.Sprintf("schedule %q: %v", e.Spec, e.Err)
}

func floorText(min time.Duration) string {
	return fmt.Sprintf("the minimum between runs of one watch is %s (scheduler.min_interval)", min)
}

// Unwrap returns the cause.
func (e *ScheduleError) Unwrap() error { return e.Err }

// CheckSchedule parses spec with Parser and checks that it is fit to run a
// watch: it must fire at some time (ErrNeverFires; robfig's Next finds no
// time within five years), and, when minInterval > 0, no two fires may be
// closer than minInterval (ErrTooOften). An `@every d` must have d
// positive (ErrNotPositive) and a whole number of seconds, at least one
// (ErrWholeSeconds: robfig/cron rounds d up to 1 s and truncates the
// fraction, so the schedule would not run as written), whatever
// minInterval is; its gap is then d. For a cron expression
// it is computed exactly from the fields: the closest two times of day
// (hours x minutes x seconds) and, when two consecutive days can both
// fire, the wrap from the last time of one day to the first of the next.
// The gap is wall-clock time: a daylight-saving change can bring two fires
// of a zoned schedule closer once, which the engine's own floor
// (Config.MinInterval) still holds apart.
//
// It never panics (robfig's parser does on a TZ= or CRON_TZ= prefix
// without a following space; those are refused here) and returns the
// parsed schedule, or a *ScheduleError naming spec. Safe for concurrent
// use.
func CheckSchedule(spec string, minInterval time.Duration) (s cron.Schedule, err error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, &ScheduleError{Spec: spec, Err: errors.New("a TZ= or CRON_TZ= prefix must be followed by a space and the schedule")}
	}
	defer func() {
		// Another parser panic, should a robfig release have one: an input
		// is refused, never the process.
		if r := recover(); r != nil {
			s, err = nil, &ScheduleError{Spec: spec, Err: fmt.Errorf("cannot be parsed (%v)", r)}
		}
	}()
	s, err = Parser.Parse(spec)
	if err != nil {
		return nil, &ScheduleError{Spec: spec, Err: err}
	}
	switch s := s.(type) {
	case cron.ConstantDelaySchedule:
		d, ok := everyInterval(spec)
		switch {
		case !ok:
			return nil, &ScheduleError{Spec: spec, Err: fmt.Errorf("cannot read the interval of %q", spec)}
		case d <= 0:
			return nil, &ScheduleError{Spec: spec, Err: ErrNotPositive, Min: minInterval, Every: true}
		case d%time.Second != 0: // under 1s, or a fraction of one
			return nil, &ScheduleError{Spec: spec, Err: ErrWholeSeconds, Gap: s.Delay, Min: minInterval, Every: true}
		}
		if minInterval > 0 && s.Delay < minInterval {
			return nil, &ScheduleError{Spec: spec, Err: ErrTooOften, Gap: s.Delay, Min: minInterval, Every: true}
		}
		return s, nil
	case *cron.SpecSchedule:
		if !mayFire(s) || s.Next(time.Now()).IsZero() {
			return nil, &ScheduleError{Spec: spec, Err: ErrNeverFires}
		}
		if minInterval > 0 {
			if gap := specGap(s, minInterval); gap < minInterval {
				return nil, &ScheduleError{Spec: spec, Err: ErrTooOften, Gap: gap, Min: minInterval}
			}
		}
		return s, nil
	}
	return nil, &ScheduleError{Spec: spec, Err: fmt.Errorf("unknown schedule type %T", s)}
}

// everyInterval returns the duration an `@every` schedule is written
// with, before robfig's Every rounds it: the text after "@every " (and
// after a TZ= or CRON_TZ= prefix, as robfig's Parse strips it), read by
// time.ParseDuration as robfig reads it. ok is false when it does not
// read (robfig's Parse would have refused it).
func everyInterval(spec string) (d time.Duration, ok bool) {
	body := spec
	if strings.HasPrefix(body, "TZ=") || strings.HasPrefix(body, "CRON_TZ=") {
		i := strings.Index(body, " ")
		if i < 0 {
			return 0, false
		}
		body = strings.TrimSpace(body[i:])
	}
	rest, found := strings.CutPrefix(body, "@every ")
	if !found {
		return 0, false
	}
	d, err := time.ParseDuration(rest)
	return d, err == nil
}

// starBit is robfig's mark of a field written as * or ?.
const starBit = 1 << 63

// mayFire reports whether every field of s has a value, so that s.Next
// can be asked (an empty seconds field would make Next step through five
// years second by second before giving up).
func mayFire(s *cron.SpecSchedule) bool {
	const (
		secs  = 1<<60 - 1        // 0-59, also minutes
		hours = 1<<24 - 1        // 0-23
		doms  = (1<<32 - 1) &^ 1 // 1-31
		mons  = (1<<13 - 1) &^ 1 // 1-12
		dows  = 1<<7 - 1         // 0-6
	)
	if s.Second&secs == 0 || s.Minute&secs == 0 || s.Hour&hours == 0 || s.Month&mons == 0 {
		return false
	}
	dom, dow := s.Dom&doms != 0, s.Dow&dows != 0
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow // both must match (robfig's dayMatches)
	}
	return dom || dow
}

// specGap returns the shortest time between two fires of s, or a value
// ≥ limit when it is at least limit (the exact figure is not needed then).
func specGap(s *cron.SpecSchedule, limit time.Duration) time.Duration {
	sec := fieldSpan(s.Second, 60)
	min := fieldSpan(s.Minute, 60)
	hr := fieldSpan(s.Hour, 24)
	// Within one minute, between the set minutes of one hour, between the
	// set hours of one day: the closest neighbours at each level, less the
	// span of the levels below (from the last second of one minute to the
	// first second of the next set minute).
	const none = time.Duration(1<<63 - 1)
	gap := none
	if sec.gap > 0 {
		gap = time.Duration(sec.gap) * time.Second
	}
	if min.gap > 0 {
		gap = min2(gap, time.Duration(min.gap*60-sec.span)*time.Second)
	}
	firstOfHour := min.first*60 + sec.first
	lastOfHour := min.last*60 + sec.last
	if hr.gap > 0 {
		gap = min2(gap, time.Duration(hr.gap*3600-(lastOfHour-firstOfHour))*time.Second)
	}
	// From the last fire of a day to the first of the next day, when two
	// consecutive days can both fire.
	dayFirst := hr.first*3600 + firstOfHour
	dayLast := hr.last*3600 + lastOfHour
	wrap := time.Duration(86400-(dayLast-dayFirst)) * time.Second
	if wrap < gap && wrap < limit && consecutiveDays(s) {
		gap = wrap
	}
	return gap
}

func min2(a, b time.Duration) time.Duration {
	if b < a {
		return b
	}
	return a
}

// span describes the set values of a field of period n (which must have
// one): the first and last, their distance, and the smallest distance
// between neighbours (0 when only one value is set).
type span struct{ first, last, span, gap int }

func fieldSpan(field uint64, n int) span {
	field &= 1<<uint(n) - 1 // drops the star bit too
	sp := span{first: bits.TrailingZeros64(field), last: 63 - bits.LeadingZeros64(field)}
	sp.span = sp.last - sp.first
	prev := -1
	for f := field; f != 0; f &= f - 1 {
		v := bits.TrailingZeros64(f)
		if prev >= 0 && (sp.gap == 0 || v-prev < sp.gap) {
			sp.gap = v - prev
		}
		prev = v
	}
	return sp
}

// consecutiveDays reports whether s fires on two consecutive calendar days
// at some time: it walks one whole Gregorian cycle (400 years, after which
// dates and weekdays repeat) with robfig's day rule, in integer arithmetic.
func consecutiveDays(s *cron.SpecSchedule) bool {
	domStar, dowStar := s.Dom&starBit != 0, s.Dow&starBit != 0
	matches := func(month, day, weekday int) bool {
		if s.Month&(1<<uint(month)) == 0 {
			return false
		}
		dom, dow := s.Dom&(1<<uint(day)) != 0, s.Dow&(1<<uint(weekday)) != 0
		if domStar || dowStar {
			return dom && dow
		}
		return dom || dow
	}
	weekday := 6 // 2000-01-01 was a Saturday
	prev := false
	for y := 2000; y < 2400; y++ {
		leap := y%4 == 0 && (y%100 != 0 || y%400 == 0)
		for m := 1; m <= 12; m++ {
			n := monthDays[m]
			if m == 2 && leap {
				n = 29
			}
			if s.Month&(1<<uint(m)) == 0 {
				prev = false
				weekday = (weekday + n) % 7
				continue
			}
			for d := 1; d <= n; d++ {
				cur := matches(m, d, weekday)
				if cur && prev {
					return true
				}
				prev = cur
				weekday = (weekday + 1) % 7
			}
		}
	}
	return false
}

var monthDays = [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
