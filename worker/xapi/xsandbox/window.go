package xsandbox

import (
	"net/http"
	"net/url"
	"time"
)

// How X refuses a search cursor, word for word as clients quote X's
// 400 invalid-request problem (errors[].parameters names the parameter):
//
//   - a since_id older than the 7-day window: "'since_id' must be a tweet
//     id created after 2026-07-31T11:45Z. Please use a 'since_id' that is
//     larger than 2083157183716917248": the time is X's cutoff (now − 7
//     days on X's clock) to the minute, the id the snowflake of the
//     cutoff's millisecond; the parameter is echoed as sent (quoted by X
//     clients that recover from an aged cursor, observed in 2026);
//   - a start_time before it: "Invalid 'start_time':'2006-01-01T00:00Z'.
//     'start_time' must be on or after 2006-03-21T00:00Z", with the
//     parameter echoed to the minute too (medialab/minet issue 445 quotes
//     the whole body; recent search answers the same for its 7 days);
//   - an id bound with a time bound: "Invalid use of 'since_id' or
//     'until_id' in conjunction with 'start_time' or 'end_time'."
//     (DocNow/twarc pull request 451, plhery/node-twitter-api-v2 issue
//     152); X's OpenAPI description of the endpoint says the same: "At
//     most one of `start_time`, `since_id` may be provided. At most one of
//     `end_time`, `until_id` may be provided."
const conflictMessage = "Invalid use of 'since_id' or 'until_id' in conjunction with 'start_time' or 'end_time'."

// xMinute is how X writes times in these messages.
const xMinute = "2006-01-02T15:04Z"

// checkWindow refuses, as X does, a since_id or start_time older than the
// search window by the sandbox clock, writing the 400 itself.
func checkWindow(w http.ResponseWriter, q url.Values, now time.Time, sinceID uint64, startTime time.Time) bool {
	cutoff := now.Add(-SearchWindow).UTC()
	if v := q.Get("since_id"); v != "" {
		if least := snowflake(cutoff); sinceID <= least {
			invalidRequest(w, "since_id", v, "'since_id' must be a tweet id created after "+cutoff.Format(xMinute)+
				". Please use a 'since_id' that is larger than "+formatID(least))
			return false
		}
	}
	if !startTime.IsZero() && startTime.Before(cutoff) {
		v := startTime.UTC().Format(xMinute)
		invalidRequest(w, "start_time", v, "Invalid 'start_time':'"+v+"'. 'start_time' must be on or after "+cutoff.Format(xMinute))
		return false
	}
	return true
}
