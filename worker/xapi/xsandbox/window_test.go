package xsandbox

import (
	"net/url"
	"strconv"
	"testing"
	"time"
)

// TestSearchWindowRefusals: the sandbox answers a since_id or start_time
// older than recent search's 7 days the way X does (case C01), word for
// word (see window.go for where X's words come from), and refuses an id
// bound with a time bound as X's description of the endpoint says.
func TestSearchWindowRefusals(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	cutoff := t0.Add(-SearchWindow) // 2026-03-03T12:00:00Z
	least := snowflake(cutoff)
	leastS := strconv.FormatUint(least, 10)
	aged := strconv.FormatUint(snowflake(t0.Add(-8*24*time.Hour)), 10)
	const head = `{"errors":[{"parameters":{`
	const tail = `"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.x.com/2/problems/invalid-request","status":400}`
	tests := []struct {
		name   string
		params url.Values
		status int
		body   string
	}{
		{"since_id 8 days old", url.Values{"since_id": {aged}}, 400,
			head + `"since_id":["` + aged + `"]},"message":"'since_id' must be a tweet id created after 2026-03-03T12:00Z. Please use a 'since_id' that is larger than ` + leastS + `"}],` + tail},
		{"since_id at the cutoff's least id", url.Values{"since_id": {leastS}}, 400,
			head + `"since_id":["` + leastS + `"]},"message":"'since_id' must be a tweet id created after 2026-03-03T12:00Z. Please use a 'since_id' that is larger than ` + leastS + `"}],` + tail},
		{"since_id one above it", url.Values{"since_id": {strconv.FormatUint(least+1, 10)}}, 200, ""},
		{"since_id zero", url.Values{"since_id": {"0"}}, 400,
			head + `"since_id":["0"]},"message":"'since_id' must be a tweet id created after 2026-03-03T12:00Z. Please use a 'since_id' that is larger than ` + leastS + `"}],` + tail},
		{"start_time 8 days ago", url.Values{"start_time": {"2026-03-02T11:59:30Z"}}, 400,
			head + `"start_time":["2026-03-02T11:59Z"]},"message":"Invalid 'start_time':'2026-03-02T11:59Z'. 'start_time' must be on or after 2026-03-03T12:00Z"}],` + tail},
		{"start_time a second before the cutoff", url.Values{"start_time": {"2026-03-03T11:59:59Z"}}, 400,
			head + `"start_time":["2026-03-03T11:59Z"]},"message":"Invalid 'start_time':'2026-03-03T11:59Z'. 'start_time' must be on or after 2026-03-03T12:00Z"}],` + tail},
		{"start_time at the cutoff", url.Values{"start_time": {"2026-03-03T12:00:00Z"}}, 200, ""},
		{"since_id with start_time", url.Values{"since_id": {aged}, "start_time": {"2026-03-09T00:00:00Z"}}, 400,
			head + `"since_id":["` + aged + `"],"start_time":["2026-03-09T00:00:00Z"]},"message":"Invalid use of 'since_id' or 'until_id' in conjunction with 'start_time' or 'end_time'."}],` + tail},
		{"until_id with end_time", url.Values{"until_id": {aged}, "end_time": {"2026-03-09T00:00:00Z"}}, 400,
			head + `"end_time":["2026-03-09T00:00:00Z"],"until_id":["` + aged + `"]},"message":"Invalid use of 'since_id' or 'until_id' in conjunction with 'start_time' or 'end_time'."}],` + tail},
		{"since_id with end_time", url.Values{"since_id": {strconv.FormatUint(least+1, 10)}, "end_time": {"2026-03-09T00:00:00Z"}}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.params.Set("query", "#golang")
			st, h, body := e.get(EndpointSearch, a, tc.params)
			if st != tc.status || tc.body != "" && body != tc.body {
				t.Fatalf("search %v = %d\n%s\nwant %d\n%s", tc.params, st, body, tc.status, tc.body)
			}
			if st == 400 && h.Get("Content-Type") != contentProblem {
				t.Errorf("Content-Type = %q", h.Get("Content-Type"))
			}
		})
	}
	// The clock moves: a since_id inside the window ages with it.
	e.s.Post(Post{AuthorID: "101", Text: "#golang", CreatedAt: t0.Add(-6 * 24 * time.Hour)})
	r := e.search(a, url.Values{"query": {"#golang"}, "start_time": {cutoff.Format(time.RFC3339)}})
	if len(r.Data) != 1 {
		t.Fatalf("ids = %v, want the post of 6 days ago", r.ids())
	}
	e.clock.Advance(24*time.Hour + time.Second)
	a, _ = e.grant("101") // the first token has expired
	if st, _, body := e.get(EndpointSearch, a, url.Values{"query": {"#golang"}, "since_id": {r.Meta.NewestID}}); st != 400 {
		t.Fatalf("since_id 7 days and a second old = %d %s, want 400", st, body)
	}
}
