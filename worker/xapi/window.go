package xapi

import (
	"strconv"
	"strings"
	"time"
)

// SearchWindow is how far back recent search reaches: X serves the posts
// of the last 7 days, by its own clock.
const SearchWindow = 7 * 24 * time.Hour

// WindowMargin is kept between a search's start and the oldest time X
// still serves: a cursor older than now − SearchWindow + WindowMargin is
// aged, and a search that gives one up starts there. It covers a poll's
// pages (each page repeats the first page's since_id or start_time, and
// X checks it again) and a few minutes of difference between our clock
// and X's; a larger difference is caught by X's refusal (see Poll).
const WindowMargin = 5 * time.Minute

// snowflakeEpoch is the epoch of X's snowflake ids, in Unix milliseconds.
const snowflakeEpoch = 1288834974657

// SnowflakeTime returns when the post with id was created, to the
// millisecond: X's ids are snowflakes, (id >> 22) + 1288834974657 ms
// since the Unix epoch.
func SnowflakeTime(id uint64) time.Time {
	return time.UnixMilli(int64(id>>22) + snowflakeEpoch).UTC()
}

// Gap reasons.
const (
	// GapAged: the cursor (a since_id, or a start_time) was older than
	// recent search reaches by our clock; the poll did not send it.
	GapAged = "aged"
	// GapRefused: X refused the cursor as older than its window (its
	// clock is ahead of ours); the poll asked again from X's window.
	GapRefused = "refused"
	// GapUnreadable: the stored cursor is not a post id (not 1 to 19
	// digits, or zero); its time is unknown.
	GapUnreadable = "unreadable"
)

// Gap is a stretch of time whose posts a poll could not read: X's recent
// search no longer serves them, so the poll searched from To instead of
// from its cursor. Posts created in [From, To) that matched the query are
// missed; nothing is read twice because of it.
type Gap struct {
	// From is the oldest time posts may be missed from: the cursor's time,
	// or when an earlier search of the watch was sent, whichever is later.
	// Zero when unknown (an unreadable cursor and no earlier search).
	From time.Time
	// To is where the poll's search started (start_time).
	To time.Time
	// Reason is GapAged, GapRefused or GapUnreadable.
	Reason string
	// SinceID is the cursor given up, when it was a since_id.
	SinceID string
}

// windowStart is the start of the search window, by now, kept margin
// inside it.
func windowStart(now time.Time) time.Time {
	return now.Add(-SearchWindow + WindowMargin).Truncate(time.Second)
}

// parseCursor reads a stored since_id: 1 to 19 decimal digits, not zero.
func parseCursor(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

// xMinute is how X writes times in its window refusals: to the minute.
const xMinute = "2006-01-02T15:04Z07:00"

// windowRefusal reports whether a 400 answer refuses since_id or
// start_time as older than X's search window, and the oldest time X said
// it serves (zero when the message did not say it in a form we read).
//
// X's words, as clients quote them (its 400 invalid-request problem,
// errors[].parameters naming the parameter):
//   - since_id: "'since_id' must be a tweet id created after
//     2026-07-31T11:45Z. Please use a 'since_id' that is larger than
//     2083157183716917248" (quoted by X clients that recover from an aged
//     cursor; the id is the snowflake of that time);
//   - start_time: "Invalid 'start_time':'2006-01-01T00:00Z'. 'start_time'
//     must be on or after 2006-03-21T00:00Z" (medialab/minet issue 445,
//     the whole body; the same words for recent search's 7 days in other
//     clients' reports).
//
// Any other 400 (a malformed id, a bad query) is not a window refusal: a
// retry from the window's start could not fix it.
func windowRefusal(p Problem) (param string, after time.Time, ok bool) {
	for _, e := range p.Errors {
		var marker string
		switch {
		case len(e.Parameters["since_id"]) > 0 && strings.Contains(e.Message, "'since_id' must be a tweet id created after "):
			param, marker = "since_id", "created after "
		case len(e.Parameters["start_time"]) > 0 && strings.Contains(e.Message, "'start_time' must be on or after "):
			param, marker = "start_time", "on or after "
		default:
			continue
		}
		rest := e.Message[strings.Index(e.Message, marker)+len(marker):]
		if i := strings.IndexByte(rest, ' '); i >= 0 {
			rest = rest[:i]
		}
		rest = strings.TrimSuffix(rest, ".")
		for _, layout := range []string{xMinute, time.RFC3339Nano} {
			if t, err := time.Parse(layout, rest); err == nil {
				return param, t.UTC(), true
			}
		}
		return param, time.Time{}, true
	}
	return "", time.Time{}, false
}
