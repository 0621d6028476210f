package xapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/worker/xapi/xsandbox"
)

// sentSearch is what one search request asked for.
type sentSearch struct{ sinceID, startTime string }

// recorder is a RoundTripper that records the cursor parameters of every
// search request.
type recorder struct {
	mu   sync.Mutex
	sent []sentSearch
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == EndpointSearch {
		q := req.URL.Query()
		r.mu.Lock()
		r.sent = append(r.sent, sentSearch{q.Get("since_id"), q.Get("start_time")})
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) list() []sentSearch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// c01Now is the daemon's clock in TestPollAgedCursor: on a minute, so
// X's minute-rounded cutoffs are exact.
var c01Now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

const week = 7 * 24 * time.Hour

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// TestPollAgedCursor is case C01 (../shared/cases/C01-aged-cursor.md) and
// its neighbours at the X client, against the X sandbox, which refuses an
// aged since_id or start_time as X does. A cursor older than recent
// search's 7 days (a quiet hashtag, a watch paused 8 days, a grant that
// waited 8 days for re-consent: all leave a since_id that old) is noticed
// before asking, from the snowflake's time, and the poll searches from the
// window's start (now − 7 d + WindowMargin) without since_id; when X's
// clock is ahead and X still refuses, the poll asks once more from the
// time X named. The posts the poll cannot read are reported as a Gap.
func TestPollAgedCursor(t *testing.T) {
	start := c01Now.Add(-week + WindowMargin) // our window's start
	// The posts, oldest first (the sandbox gives ids in time order).
	times := map[string]time.Time{
		"8 days":    c01Now.Add(-8 * 24 * time.Hour),
		"gap":       c01Now.Add(-week - 30*time.Minute), // X no longer serves it
		"in margin": c01Now.Add(-week + 3*time.Minute),  // X serves it; we start after it
		"inside":    c01Now.Add(-week + 6*time.Minute),
		"6 days":    c01Now.Add(-6 * 24 * time.Hour),
		"1 hour":    c01Now.Add(-time.Hour),
	}
	order := []string{"8 days", "gap", "in margin", "inside", "6 days", "1 hour"}
	tests := []struct {
		name string
		skew time.Duration // the sandbox's clock minus ours
		// cursor is a post's name ("#" + literal for a raw cursor).
		cursor     string
		startTime  time.Time
		searchedAt time.Time
		badQuery   bool

		sent    []sentSearch // "#name" in sinceID means that post's id
		want    []string
		gap     *Gap // From "#name": that post's time
		gapFrom string
		wantErr bool
	}{
		{name: "C01: since_id 8 days old", cursor: "8 days",
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{To: start, Reason: GapAged, SinceID: "#8 days"}, gapFrom: "8 days"},
		{name: "aged since_id, last searched 7 days and an hour ago (paused 7 days)", cursor: "8 days", searchedAt: c01Now.Add(-week - time.Hour),
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{From: c01Now.Add(-week - time.Hour), To: start, Reason: GapAged, SinceID: "#8 days"}},
		{name: "quiet hashtag: aged since_id, searched a minute ago, no gap", cursor: "8 days", searchedAt: c01Now.Add(-time.Minute),
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"}},
		{name: "cursor just inside the window", cursor: "inside",
			sent: []sentSearch{{"#inside", ""}}, want: []string{"1 hour", "6 days"}},
		{name: "cursor inside X's window but within the margin", cursor: "in margin",
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{To: start, Reason: GapAged, SinceID: "#in margin"}, gapFrom: "in margin"},
		{name: "aged start_time (first run of a watch created 8 days ago)", startTime: c01Now.Add(-8 * 24 * time.Hour),
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{From: c01Now.Add(-8 * 24 * time.Hour), To: start, Reason: GapAged}},
		{name: "start_time inside the window", startTime: c01Now.Add(-24 * time.Hour),
			sent: []sentSearch{{"", rfc(c01Now.Add(-24 * time.Hour))}}, want: []string{"1 hour"}},
		{name: "cursor not a number", cursor: "#abc",
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{To: start, Reason: GapUnreadable, SinceID: "#abc"}},
		{name: "cursor zero", cursor: "#0",
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{To: start, Reason: GapUnreadable, SinceID: "#0"}},
		{name: "cursor of 20 digits", cursor: "#12345678901234567890", searchedAt: c01Now.Add(-week - time.Hour),
			sent: []sentSearch{{"", rfc(start)}}, want: []string{"1 hour", "6 days", "inside"},
			gap: &Gap{From: c01Now.Add(-week - time.Hour), To: start, Reason: GapUnreadable, SinceID: "#12345678901234567890"}},
		{name: "first run with no cursor (backfill): X's whole window",
			sent: []sentSearch{{"", ""}}, want: []string{"1 hour", "6 days", "inside", "in margin"}},
		{name: "X's clock 3 minutes ahead: inside the margin", skew: 3 * time.Minute, cursor: "inside",
			sent: []sentSearch{{"#inside", ""}}, want: []string{"1 hour", "6 days"}},
		{name: "X's clock 10 minutes ahead refuses a since_id we think inside: asked again from X's window", skew: 10 * time.Minute, cursor: "inside",
			sent: []sentSearch{{"#inside", ""}, {"", rfc(c01Now.Add(-week + 16*time.Minute))}}, want: []string{"1 hour", "6 days"},
			gap: &Gap{To: c01Now.Add(-week + 16*time.Minute), Reason: GapRefused, SinceID: "#inside"}, gapFrom: "inside"},
		{name: "X's clock 10 minutes ahead refuses our window's start: asked again", skew: 10 * time.Minute, cursor: "8 days",
			sent: []sentSearch{{"", rfc(start)}, {"", rfc(c01Now.Add(-week + 16*time.Minute))}}, want: []string{"1 hour", "6 days"},
			gap: &Gap{To: c01Now.Add(-week + 16*time.Minute), Reason: GapRefused, SinceID: "#8 days"}, gapFrom: "8 days"},
		{name: "X's clock 10 minutes ahead refuses a start_time", skew: 10 * time.Minute, startTime: c01Now.Add(-week + 7*time.Minute),
			sent: []sentSearch{{"", rfc(c01Now.Add(-week + 7*time.Minute))}, {"", rfc(c01Now.Add(-week + 16*time.Minute))}}, want: []string{"1 hour", "6 days"},
			gap: &Gap{From: c01Now.Add(-week + 7*time.Minute), To: c01Now.Add(-week + 16*time.Minute), Reason: GapRefused}},
		{name: "X's clock a day ahead", skew: 24 * time.Hour, cursor: "6 days",
			sent: []sentSearch{{"#6 days", ""}, {"", rfc(c01Now.Add(-6*24*time.Hour + 6*time.Minute))}}, want: []string{"1 hour"},
			gap: &Gap{To: c01Now.Add(-6*24*time.Hour + 6*time.Minute), Reason: GapRefused, SinceID: "#6 days"}, gapFrom: "6 days"},
		{name: "another 400 is not retried", cursor: "8 days", badQuery: true,
			sent: []sentSearch{{"", rfc(start)}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := xsandbox.NewClock(c01Now.Add(tc.skew))
			sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sb.Close)
			if err := sb.AddUser(xsandbox.User{ID: "101", Username: "alice"}); err != nil {
				t.Fatal(err)
			}
			at, _, err := sb.Grant("101", nil)
			if err != nil {
				t.Fatal(err)
			}
			ids, names := map[string]string{}, map[string]string{}
			for _, n := range order {
				ids[n] = sb.Post(xsandbox.Post{AuthorID: "101", Text: "#c01 " + n, CreatedAt: times[n]})
				names[ids[n]] = n
			}
			ref := func(s string) string {
				if s == "" {
					return ""
				}
				if raw, ok := strings.CutPrefix(s, "#"); ok {
					if id, ok := ids[raw]; ok {
						return id
					}
					return raw
				}
				return ids[s]
			}
			rec := &recorder{}
			c := New(Config{BaseURL: sb.URL(), HTTPClient: &http.Client{Transport: rec}, Retries: -1,
				Now: func() time.Time { return c01Now }})
			query := "#c01"
			if tc.badQuery {
				query = "#c01 OR"
			}
			res, err := c.Poll(context.Background(), staticToken(at), "101",
				PollRequest{Query: query, SinceID: ref(tc.cursor), StartTime: tc.startTime, SearchedAt: tc.searchedAt})

			var want []sentSearch
			for _, s := range tc.sent {
				want = append(want, sentSearch{ref(s.sinceID), s.startTime})
			}
			if got := rec.list(); !slices.Equal(got, want) {
				t.Errorf("requests = %v, want %v", got, want)
			}
			if tc.wantErr {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
					t.Fatalf("Poll = %+v, %v; want X's 400", res, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			var got []string
			for _, p := range res.Posts {
				got = append(got, names[p.ID])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("posts = %v, want %v", got, tc.want)
			}
			if len(res.Posts) > 0 && res.NewestID != res.Posts[0].ID {
				t.Errorf("NewestID = %s, want the newest post %s", res.NewestID, res.Posts[0].ID)
			}
			if res.Pages != len(want) {
				t.Errorf("Pages = %d, want %d (every request counts)", res.Pages, len(want))
			}
			var wantGap *Gap
			if tc.gap != nil {
				g := *tc.gap
				g.SinceID = ref(g.SinceID)
				if tc.gapFrom != "" {
					g.From = times[tc.gapFrom].Truncate(time.Millisecond)
				}
				wantGap = &g
			}
			switch {
			case (res.Gap == nil) != (wantGap == nil):
				t.Errorf("Gap = %+v, want %+v", res.Gap, wantGap)
			case res.Gap != nil && (!res.Gap.From.Equal(wantGap.From) || !res.Gap.To.Equal(wantGap.To) ||
				res.Gap.Reason != wantGap.Reason || res.Gap.SinceID != wantGap.SinceID):
				t.Errorf("Gap = %+v, want %+v", *res.Gap, *wantGap)
			}
		})
	}
}

// TestSnowflakeTime: X's ids carry their time; the sandbox mints them the
// same way, and a real pair of X's (an aged cursor and the least id X
// named in its refusal) reads as X said.
func TestSnowflakeTime(t *testing.T) {
	tests := []struct {
		id   uint64
		want string
	}{
		{2083157183716917248, "2026-07-31T11:45:50.444Z"}, // "created after 2026-07-31T11:45Z ... larger than 2083157183716917248"
		{2075200933194039668, "2026-07-09T12:50:32.499Z"},
		{0, "2010-11-04T01:42:54.657Z"},
	}
	for _, tc := range tests {
		if got := SnowflakeTime(tc.id).Format("2006-01-02T15:04:05.000Z"); got != tc.want {
			t.Errorf("SnowflakeTime(%d) = %s, want %s", tc.id, got, tc.want)
		}
	}
}

// TestWindowRefusal: only X's refusals of an aged since_id or start_time
// are retried, read from what the body says, not from the status alone.
func TestWindowRefusal(t *testing.T) {
	tests := []struct {
		name, body string
		param      string
		after      string // RFC 3339; "" for zero
	}{
		{"since_id, X's words", `{"errors":[{"parameters":{"since_id":["2075200933194039668"]},"message":"'since_id' must be a tweet id created after 2026-07-31T11:45Z. Please use a 'since_id' that is larger than 2083157183716917248"}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}`,
			"since_id", "2026-07-31T11:45:00Z"},
		{"start_time, X's words (medialab/minet#445)", `{"errors":[{"parameters":{"start_time":["2006-01-01T00:00Z"]},"message":"Invalid 'start_time':'2006-01-01T00:00Z'. 'start_time' must be on or after 2006-03-21T00:00Z"}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}`,
			"start_time", "2006-03-21T00:00:00Z"},
		{"start_time with seconds", `{"errors":[{"parameters":{"start_time":["x"]},"message":"Invalid 'start_time':'x'. 'start_time' must be on or after 2026-03-03T12:00:07Z."}]}`,
			"start_time", "2026-03-03T12:00:07Z"},
		{"since_id, time unreadable", `{"errors":[{"parameters":{"since_id":["5"]},"message":"'since_id' must be a tweet id created after yesterday"}]}`,
			"since_id", ""},
		{"malformed since_id", `{"errors":[{"parameters":{"since_id":["12a"]},"message":"The ` + "`since_id`" + ` query parameter value [12a] does not match ^[0-9]{1,19}$"}],"title":"Invalid Request"}`, "", ""},
		{"words without the parameter", `{"errors":[{"parameters":{"query":["x"]},"message":"'since_id' must be a tweet id created after 2026-07-31T11:45Z."}]}`, "", ""},
		{"bad query", `{"errors":[{"parameters":{"query":["#a OR"]},"message":"There were errors processing your request"}],"title":"Invalid Request"}`, "", ""},
		{"no errors", `{"title":"Invalid Request","detail":"One or more parameters to your request was invalid."}`, "", ""},
		{"not JSON", `<html>Bad Request</html>`, "", ""},
		{"parameters of the wrong type", `{"errors":[{"parameters":"since_id","message":"'since_id' must be a tweet id created after 2026-07-31T11:45Z"}]}`, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			param, after, ok := windowRefusal(parseProblem([]byte(tc.body)))
			if ok != (tc.param != "") || param != tc.param {
				t.Fatalf("windowRefusal = %q, %v, %v; want %q", param, after, ok, tc.param)
			}
			var want time.Time
			if tc.after != "" {
				want, _ = time.Parse(time.RFC3339, tc.after)
			}
			if !after.Equal(want) {
				t.Errorf("after = %v, want %v", after, want)
			}
		})
	}
}

// FuzzWindowRefusal: any 400 body is read without a panic; a refusal names
// since_id or start_time, and a time it reads is in UTC.
func FuzzWindowRefusal(f *testing.F) {
	for _, s := range []string{
		`{"errors":[{"parameters":{"since_id":["2075200933194039668"]},"message":"'since_id' must be a tweet id created after 2026-07-31T11:45Z. Please use a 'since_id' that is larger than 2083157183716917248"}],"title":"Invalid Request"}`,
		`{"errors":[{"parameters":{"start_time":["2006-01-01T00:00Z"]},"message":"Invalid 'start_time':'2006-01-01T00:00Z'. 'start_time' must be on or after 2006-03-21T00:00Z"}]}`,
		`{"errors":[{"parameters":{"since_id":["1"]},"message":"'since_id' must be a tweet id created after "}]}`,
		`{"errors":[{"parameters":{"start_time":[]},"message":"'start_time' must be on or after 9999-99-99T99:99Z"}]}`,
		`{"errors":[null,{"parameters":null}]}`, `{}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		param, after, ok := windowRefusal(parseProblem(body))
		if !ok {
			if param != "" || !after.IsZero() {
				t.Fatalf("no refusal, but %q %v", param, after)
			}
			return
		}
		if param != "since_id" && param != "start_time" {
			t.Fatalf("refusal names %q", param)
		}
		if !after.IsZero() && after.Location() != time.UTC {
			t.Fatalf("time %v not in UTC", after)
		}
	})
}
