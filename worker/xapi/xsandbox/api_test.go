package xsandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUsersMe(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	st, h, body := e.get(EndpointUsersMe, a, nil)
	if st != 200 || body != `{"data":{"id":"101","name":"Alice A","username":"alice"}}` {
		t.Fatalf("users/me = %d %s", st, body)
	}
	if h.Get("x-rate-limit-limit") != "75" || h.Get("x-rate-limit-remaining") != "74" ||
		h.Get("x-rate-limit-reset") != strconv.FormatInt(t0.Add(15*time.Minute).Unix(), 10) {
		t.Fatalf("rate headers = %v", h)
	}
	noRead, _, err := e.s.Grant("101", []string{"tweet.read"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		params      url.Values
		status      int
		body        string
	}{
		{"no token", "", nil, 401, `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}`},
		{"bad token", "garbage", nil, 401, `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}`},
		{"missing scope", noRead, nil, 403, `{"title":"Forbidden","type":"about:blank","status":403,"detail":"Forbidden"}`},
		{"user.fields", a, url.Values{"user.fields": {"created_at,username"}}, 200, ""},
		{"unknown parameter", a, url.Values{"foo": {"1"}}, 400, ""},
		{"unknown field", a, url.Values{"user.fields": {"shoe_size"}}, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, h, body := e.get(EndpointUsersMe, tt.token, tt.params)
			if st != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("users/me = %d %s, want %d %s", st, body, tt.status, tt.body)
			}
			if h.Get("x-rate-limit-limit") == "" {
				t.Fatalf("no x-rate-limit headers on %d", st)
			}
		})
	}
	if n := e.s.Stats().Unauthorized; n != 2 {
		t.Fatalf("Unauthorized = %d, want 2", n)
	}
}

func TestExternalToken(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ExternalToken = func(_ context.Context, tok string) (string, []string, error) {
			switch tok {
			case "hydra-alice":
				return "101", []string{"tweet.read", "users.read"}, nil
			case "hydra-new":
				return "555", []string{"tweet.read", "users.read"}, nil
			}
			return "", nil, errors.New("inactive")
		}
	})
	for tok, want := range map[string]string{
		"hydra-alice": `{"data":{"id":"101","name":"Alice A","username":"alice"}}`,
		"hydra-new":   `{"data":{"id":"555","name":"User 555","username":"user555"}}`,
		"hydra-dead":  `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}`,
	} {
		if _, _, body := e.get(EndpointUsersMe, tok, nil); body != want {
			t.Errorf("users/me(%s) = %s, want %s", tok, body, want)
		}
	}
}

// corpus posts a fixed set and returns their ids in posting order.
func corpus(e *env) []string {
	posts := []Post{
		{AuthorID: "101", Text: "Learning #golang today"},
		{AuthorID: "102", Text: "#GoLang rocks #rust"},
		{AuthorID: "103", Text: "#golangx is not golang tag"},
		{AuthorID: "101", Text: "RT #golang news", IsRetweet: true},
		{AuthorID: "102", Text: "#golang en français", Lang: "fr"},
		{AuthorID: "103", Text: "#rust only"},
		{AuthorID: "101", Text: "#Zig and #rust"},
	}
	var ids []string
	for _, p := range posts {
		e.clock.Advance(time.Second)
		ids = append(ids, e.s.Post(p))
	}
	return ids
}

func TestSearchQueries(t *testing.T) {
	e := newEnv(t)
	ids := corpus(e)
	a, _ := e.grant("101")
	tests := []struct {
		query string
		want  []int // indexes into ids, newest first
	}{
		{"#golang", []int{4, 3, 1, 0}},
		{"#GOLANG", []int{4, 3, 1, 0}},
		{"#golang -is:retweet", []int{4, 1, 0}},
		{"#golang is:retweet", []int{3}},
		{"#golang lang:fr", []int{4}},
		{"#golang OR #rust", []int{6, 5, 4, 3, 1, 0}},
		{"#golang OR #rust is:retweet", []int{4, 3, 1, 0}},
		{"(#golang OR #rust) is:retweet", []int{3}},
		{"#rust -#golang", []int{6, 5}},
		{"(#golang OR #zig) -is:retweet lang:en", []int{6, 1, 0}},
		{"#rust #zig", []int{6}},
		{"golang", []int{4, 3, 2, 1, 0}},
		{`"not golang"`, []int{2}},
		{"#nothing", nil},
		{"#golang -(#rust OR lang:fr)", []int{3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := e.search(a, url.Values{"query": {tt.query}})
			var want []string
			for _, i := range tt.want {
				want = append(want, ids[i])
			}
			if got := r.ids(); !slices.Equal(got, want) || r.Meta.ResultCount != len(want) {
				t.Fatalf("search(%q) = %v (count %d), want %v", tt.query, got, r.Meta.ResultCount, want)
			}
			if len(want) > 0 && (r.Meta.NewestID != want[0] || r.Meta.OldestID != want[len(want)-1]) {
				t.Fatalf("meta = %+v", r.Meta)
			}
		})
	}
}

func TestSearchParameters(t *testing.T) {
	e := newEnv(t)
	ids := corpus(e)
	a, _ := e.grant("101")
	tests := []struct {
		name   string
		params url.Values
		status int
		want   []int
	}{
		{"since exclusive", url.Values{"query": {"#golang"}, "since_id": {ids[1]}}, 200, []int{4, 3}},
		{"until exclusive", url.Values{"query": {"#golang"}, "until_id": {ids[3]}}, 200, []int{1, 0}},
		{"since and until", url.Values{"query": {"#golang OR #rust"}, "since_id": {ids[0]}, "until_id": {ids[5]}}, 200, []int{4, 3, 1}},
		{"start_time", url.Values{"query": {"#golang"}, "start_time": {t0.Add(2 * time.Second).Format(time.RFC3339)}}, 200, []int{4, 3, 1}},
		{"end_time exclusive", url.Values{"query": {"#golang"}, "end_time": {t0.Add(4 * time.Second).Format(time.RFC3339)}}, 200, []int{1, 0}},
		{"max_results 10", url.Values{"query": {"#golang"}, "max_results": {"10"}}, 200, []int{4, 3, 1, 0}},
		{"max_results 100", url.Values{"query": {"#golang"}, "max_results": {"100"}}, 200, []int{4, 3, 1, 0}},
		{"relevancy", url.Values{"query": {"#golang"}, "sort_order": {"relevancy"}}, 200, []int{4, 3, 1, 0}},
		{"max_results 9", url.Values{"query": {"#golang"}, "max_results": {"9"}}, 400, nil},
		{"max_results 101", url.Values{"query": {"#golang"}, "max_results": {"101"}}, 400, nil},
		{"max_results text", url.Values{"query": {"#golang"}, "max_results": {"ten"}}, 400, nil},
		{"no query", url.Values{}, 400, nil},
		{"bad query", url.Values{"query": {"#golang OR"}}, 400, nil},
		{"long query", url.Values{"query": {strings.Repeat("#golang ", 64) + "x"}}, 400, nil},
		{"bad since_id", url.Values{"query": {"#golang"}, "since_id": {"12a"}}, 400, nil},
		{"20-digit id", url.Values{"query": {"#golang"}, "until_id": {"12345678901234567890"}}, 400, nil},
		{"bad next_token", url.Values{"query": {"#golang"}, "next_token": {"zzzz"}}, 400, nil},
		{"start_time too old", url.Values{"query": {"#golang"}, "start_time": {t0.Add(-8 * 24 * time.Hour).Format(time.RFC3339)}}, 400, nil},
		{"bad sort_order", url.Values{"query": {"#golang"}, "sort_order": {"oldest"}}, 400, nil},
		{"unknown parameter", url.Values{"query": {"#golang"}, "count": {"10"}}, 400, nil},
		{"unknown field", url.Values{"query": {"#golang"}, "tweet.fields": {"created_at,bogus"}}, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, h, body := e.get(EndpointSearch, a, tt.params)
			if st != tt.status {
				t.Fatalf("search = %d %s, want %d", st, body, tt.status)
			}
			if h.Get("x-rate-limit-remaining") == "" {
				t.Fatal("no rate-limit headers")
			}
			if st == 400 {
				var p struct {
					Errors []paramError `json:"errors"`
					Title  string       `json:"title"`
					Type   string       `json:"type"`
					Status int          `json:"status"`
				}
				if err := json.Unmarshal([]byte(body), &p); err != nil || p.Type != "https://api.x.com/2/problems/invalid-request" || p.Status != 400 || len(p.Errors) != 1 {
					t.Fatalf("400 body = %s", body)
				}
				return
			}
			var r searchResult
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range tt.want {
				want = append(want, ids[i])
			}
			if !slices.Equal(r.ids(), want) {
				t.Fatalf("ids = %v, want %v", r.ids(), want)
			}
		})
	}
}

func TestSearchFieldsAndExpansions(t *testing.T) {
	e := newEnv(t)
	e.clock.Advance(time.Second)
	id1 := e.s.Post(Post{AuthorID: "101", Text: "one #f", Lang: "de"})
	e.clock.Advance(time.Second)
	id2 := e.s.Post(Post{AuthorID: "999", Text: "two #f"}) // unknown author
	e.clock.Advance(time.Second)
	id3 := e.s.Post(Post{AuthorID: "101", Text: "three #f"})
	a, _ := e.grant("102")

	_, _, body := e.get(EndpointSearch, a, url.Values{"query": {"#f"}})
	want := `{"data":[{"id":"` + id3 + `","text":"three #f","edit_history_tweet_ids":["` + id3 + `"]},{"id":"` + id2 + `","text":"two #f","edit_history_tweet_ids":["` + id2 + `"]},{"id":"` + id1 + `","text":"one #f","edit_history_tweet_ids":["` + id1 + `"]}],"meta":{"newest_id":"` + id3 + `","oldest_id":"` + id1 + `","result_count":3}}`
	if body != want {
		t.Fatalf("plain search =\n%s\nwant\n%s", body, want)
	}
	for _, fieldsParam := range []string{"tweet.fields", "post.fields"} {
		r := e.search(a, url.Values{"query": {"#f"}, fieldsParam: {"created_at,author_id,lang"}, "expansions": {"author_id"}})
		d := r.Data[2]
		if d.AuthorID != "101" || d.Lang != "de" || d.CreatedAt != "2026-03-10T12:00:01.000Z" {
			t.Fatalf("%s: post = %+v", fieldsParam, d)
		}
		if len(r.Includes.Users) != 1 || r.Includes.Users[0] != (userJSON{"101", "Alice A", "alice"}) {
			t.Fatalf("includes = %+v", r.Includes)
		}
		if len(r.Errors) != 1 || r.Errors[0].ResourceID != "999" || r.Errors[0].Type != "https://api.x.com/2/problems/resource-not-found" {
			t.Fatalf("errors = %+v, want a not-found error for author 999", r.Errors)
		}
	}
	if st, _, body := e.get(EndpointSearch, a, url.Values{"query": {"#none"}}); st != 200 || body != `{"meta":{"result_count":0}}` {
		t.Fatalf("empty search = %d %s", st, body)
	}
	if got := e.s.Stats().PostsRead["102"]; got != 9 {
		t.Fatalf("PostsRead = %d, want 9", got)
	}
	if n1, _ := strconv.ParseUint(id1, 10, 64); n1>>22 != uint64(t0.Add(time.Second).UnixMilli()-twitterEpoch) {
		t.Fatalf("id %s is not a snowflake of its time", id1)
	}
}

func TestSearchSevenDays(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	old := e.s.Post(Post{AuthorID: "101", Text: "#week old", CreatedAt: t0.Add(-8 * 24 * time.Hour)})
	e.s.Post(Post{AuthorID: "101", Text: "#week now"})
	if r := e.search(a, url.Values{"query": {"#week"}}); len(r.Data) != 1 || r.Data[0].ID == old {
		t.Fatalf("ids = %v, want only the recent post", r.ids())
	}
	e.clock.Advance(7*24*time.Hour + time.Second)
	a, _ = e.grant("101") // the first token expired long ago
	if r := e.search(a, url.Values{"query": {"#week"}}); len(r.Data) != 0 {
		t.Fatalf("after 7 days: ids = %v, want none", r.ids())
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	var ids []string
	for i := range 25 {
		e.clock.Advance(time.Millisecond)
		ids = append(ids, e.s.Post(Post{AuthorID: "102", Text: "page #p " + strconv.Itoa(i)}))
	}
	first := e.search(a, url.Values{"query": {"#p"}})
	if first.Meta.NextToken == "" || len(first.Data) != 10 {
		t.Fatalf("first page = %+v", first.Meta)
	}
	p2 := e.search(a, url.Values{"query": {"#p"}, "next_token": {first.Meta.NextToken}})
	// New posts and time do not move the page a token names.
	e.s.Post(Post{AuthorID: "102", Text: "late #p"})
	e.clock.Advance(24 * time.Hour)
	a, _ = e.grant("101")
	again := e.search(a, url.Values{"query": {"#p"}, "pagination_token": {first.Meta.NextToken}})
	if !slices.Equal(p2.ids(), again.ids()) || p2.Meta.NextToken != again.Meta.NextToken {
		t.Fatalf("page 2 changed: %v then %v", p2.ids(), again.ids())
	}
	p3 := e.search(a, url.Values{"query": {"#p"}, "next_token": {p2.Meta.NextToken}})
	if p3.Meta.NextToken != "" || len(p3.Data) != 5 {
		t.Fatalf("last page = %+v", p3.Meta)
	}
	all := slices.Concat(first.ids(), p2.ids(), p3.ids())
	slices.Reverse(all)
	if !slices.Equal(all, ids) {
		t.Fatalf("pages = %v, want %v newest first", all, ids)
	}
	if st, _, _ := e.get(EndpointSearch, a, url.Values{"query": {"#q"}, "next_token": {first.Meta.NextToken}}); st != 400 {
		t.Fatalf("token of another query = %d, want 400", st)
	}
}

// TestPollingContract pages with a fixed since_id and resumes from the first
// page's newest_id while posts keep arriving between pages and polls.
func TestPollingContract(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	var posted []string
	postN := func(n int) {
		for range n {
			e.clock.Advance(time.Second)
			posted = append(posted, e.s.Post(Post{AuthorID: "103", Text: "#poll post " + strconv.Itoa(len(posted))}))
			e.s.Post(Post{AuthorID: "103", Text: "#other noise"})
		}
	}
	postN(23)
	seen := map[string]int{}
	since := ""
	for poll := range 6 {
		params := url.Values{"query": {"#poll"}, "max_results": {"10"}}
		if since != "" {
			params.Set("since_id", since)
		}
		newest := ""
		prev := ""
		for page := 0; ; page++ {
			r := e.search(a, params)
			for _, d := range r.Data {
				if prev != "" && cmpID(d.ID, prev) >= 0 {
					t.Fatalf("poll %d page %d: %s after %s, want newest first", poll, page, d.ID, prev)
				}
				prev = d.ID
				seen[d.ID]++
			}
			if page == 0 {
				newest = r.Meta.NewestID
			}
			postN(3) // arrivals between pages
			if r.Meta.NextToken == "" {
				break
			}
			params.Set("next_token", r.Meta.NextToken)
		}
		if newest != "" {
			since = newest
		}
		postN(poll * 4) // arrivals between polls
	}
	// Drain: the last arrivals fit one page.
	r := e.search(a, url.Values{"query": {"#poll"}, "since_id": {since}, "max_results": {"100"}})
	for _, d := range r.Data {
		seen[d.ID]++
	}
	if r.Meta.NextToken != "" {
		t.Fatal("drain needs one page")
	}
	for _, id := range posted {
		if seen[id] != 1 {
			t.Errorf("post %s seen %d times, want once", id, seen[id])
		}
	}
	if len(seen) != len(posted) {
		t.Errorf("saw %d posts, posted %d", len(seen), len(posted))
	}
	if got := e.s.Stats().PostsRead["101"]; got != len(posted) {
		t.Errorf("PostsRead = %d, want %d: each post read once", got, len(posted))
	}
}

func cmpID(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func TestRateLimits(t *testing.T) {
	const tooMany = `{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`
	e := newEnv(t)
	alice, _ := e.grant("101")
	bob, _ := e.grant("102")
	q := url.Values{"query": {"#x"}}
	_, h, _ := e.get(EndpointSearch, alice, q)
	if h.Get("x-rate-limit-limit") != "300" || h.Get("x-rate-limit-remaining") != "299" {
		t.Fatalf("default search limit headers = %v", h)
	}
	e.s.SetRateLimit(EndpointSearch, 3, 5, 15*time.Minute)
	reset := strconv.FormatInt(t0.Add(15*time.Minute).Unix(), 10)
	steps := []struct {
		token     string
		status    int
		limit     string
		remaining string
	}{
		{alice, 200, "3", "2"},
		{alice, 200, "3", "1"},
		{alice, 200, "3", "0"},
		{alice, 429, "3", "0"}, // user window spent
		{bob, 200, "5", "1"},   // app window: 4 of 5 used, tighter than bob's 2
		{bob, 200, "5", "0"},
		{bob, 429, "5", "0"}, // app window spent
	}
	for i, s := range steps {
		st, h, body := e.get(EndpointSearch, s.token, q)
		if st != s.status || h.Get("x-rate-limit-limit") != s.limit || h.Get("x-rate-limit-remaining") != s.remaining || h.Get("x-rate-limit-reset") != reset {
			t.Fatalf("step %d: %d limit=%s remaining=%s reset=%s, want %d %s %s %s", i, st,
				h.Get("x-rate-limit-limit"), h.Get("x-rate-limit-remaining"), h.Get("x-rate-limit-reset"), s.status, s.limit, s.remaining, reset)
		}
		if st == 429 && body != tooMany {
			t.Fatalf("429 body = %s", body)
		}
	}
	e.clock.Advance(15 * time.Minute)
	if st, h, _ := e.get(EndpointSearch, alice, q); st != 200 || h.Get("x-rate-limit-remaining") != "2" {
		t.Fatalf("after the window: %d remaining %s", st, h.Get("x-rate-limit-remaining"))
	}
	stats := e.s.Stats()
	if stats.RateLimited != 2 || stats.APICalls[EndpointSearch]["101"] != 6 || stats.APICalls[EndpointSearch]["102"] != 3 {
		t.Fatalf("stats = %+v", stats)
	}
	// users/me: 75 per user per 15 minutes by default.
	for i := range 76 {
		st, _, body := e.get(EndpointUsersMe, bob, nil)
		if (i < 75 && st != 200) || (i == 75 && (st != 429 || body != tooMany)) {
			t.Fatalf("users/me call %d = %d", i+1, st)
		}
	}
}

func TestUsageCap(t *testing.T) {
	const capped = `{"account_id":1,"product_name":"pay-per-use","title":"UsageCapExceeded","period":"Monthly","scope":"Product","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.x.com/2/problems/usage-capped","status":429}`
	e := newEnv(t)
	a, _ := e.grant("101")
	for range 25 {
		e.s.Post(Post{AuthorID: "102", Text: "#cap"})
	}
	e.s.SetMonthlyPostBudget(15)
	q := url.Values{"query": {"#cap"}}
	e.search(a, q)
	e.search(a, q) // starts at 10 < 15: served in full
	st, h, body := e.get(EndpointSearch, a, q)
	if st != 429 || body != capped || h.Get("x-rate-limit-limit") == "" {
		t.Fatalf("over budget = %d %s", st, body)
	}
	var p struct{ Type, Title, Period string }
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Type != "https://api.x.com/2/problems/usage-capped" || p.Title != "UsageCapExceeded" || p.Period != "Monthly" {
		t.Fatalf("usage-capped body = %s", body)
	}
	e.s.SetMonthlyPostBudget(30)
	e.search(a, q)
	if st, _, _ := e.get(EndpointSearch, a, q); st != 429 {
		t.Fatalf("at 30 of 30 = %d, want 429", st)
	}
	e.clock.Set(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	a, _ = e.grant("101")
	for range 10 {
		e.s.Post(Post{AuthorID: "102", Text: "#cap april"}) // March's posts are out of the 7 days
	}
	if r := e.search(a, q); len(r.Data) != 10 {
		t.Fatalf("new month: %d posts, want 10", len(r.Data))
	}
	stats := e.s.Stats()
	if stats.UsageCapped != 2 || stats.PostsRead["101"] != 40 || stats.PostsReadTotal != 40 {
		t.Fatalf("stats = %+v", stats)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t)
	a, r := e.grant("101")
	q := url.Values{"query": {"#f"}}
	e.s.Post(Post{AuthorID: "101", Text: "#f"})

	e.s.FailNext(EndpointSearch, 2, 502)
	for i := range 2 {
		st, _, body := e.get(EndpointSearch, a, q)
		if st != 502 || body != `{"title":"Bad Gateway","detail":"Bad Gateway","type":"https://api.x.com/2/problems/internal-error","status":502}` {
			t.Fatalf("failure %d = %d %s", i, st, body)
		}
	}
	if st, _, _ := e.get(EndpointSearch, a, q); st != 200 {
		t.Fatalf("after FailNext = %d", st)
	}

	e.s.FailFor(EndpointUsersMe, time.Minute, 0)
	for range 3 {
		if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 503 {
			t.Fatalf("inside FailFor window = %d, want 503", st)
		}
	}
	e.clock.Advance(time.Minute)
	if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 200 {
		t.Fatalf("after FailFor window = %d", st)
	}

	e.s.FailNext(EndpointToken, 1, 500)
	if st, _ := e.refresh(r); st != 500 {
		t.Fatalf("token failure = %d", st)
	}
	if st, _ := e.refresh(r); st != 200 { // a 5xx did not spend the token
		t.Fatalf("refresh after 500 = %d", st)
	}

	e.s.HangNext(EndpointUsersMe, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.s.URL()+string(EndpointUsersMe), nil)
	req.Header.Set("Authorization", "Bearer "+a)
	start := time.Now()
	if resp, err := e.c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hung request got %d", resp.StatusCode)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Fatal("hung request returned early")
	}
	if st, _, _ := e.get(EndpointUsersMe, a, nil); st != 200 {
		t.Fatalf("after the hang = %d", st)
	}

	e.s.MalformedNext(EndpointSearch, 1)
	st, _, body := e.get(EndpointSearch, a, q)
	var v any
	if st != 200 || json.Unmarshal([]byte(body), &v) == nil {
		t.Fatalf("malformed = %d %s, want 200 with invalid JSON", st, body)
	}

	e.s.PartialErrorsNext(1)
	res := e.search(a, q)
	if len(res.Data) != 1 || len(res.Errors) != 1 || res.Errors[0].Title != "Not Found Error" {
		t.Fatalf("partial = %+v", res)
	}
	if res := e.search(a, q); len(res.Errors) != 0 {
		t.Fatalf("partial errors did not stop: %+v", res.Errors)
	}

	stats := e.s.Stats()
	if stats.Faults[EndpointSearch] != 3 || stats.Faults[EndpointUsersMe] != 4 || stats.Faults[EndpointToken] != 1 || stats.PartialErrors != 1 {
		t.Fatalf("fault stats = %+v %d", stats.Faults, stats.PartialErrors)
	}
}

// TestHangReleasedByClose checks Close does not wait for hung requests.
func TestHangReleasedByClose(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	e.s.HangNext(EndpointSearch, 1)
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest("GET", e.s.URL()+string(EndpointSearch)+"?query=%23x", nil)
		req.Header.Set("Authorization", "Bearer "+a)
		resp, err := e.c.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for e.s.Stats().Faults[EndpointSearch] == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { e.s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked on a hung request")
	}
	<-done
}

func TestGenerator(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	if _, err := e.s.StartGenerator(context.Background(), Generator{Rate: 10}); err == nil {
		t.Fatal("generator without hashtags started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := e.s.StartGenerator(ctx, Generator{Rate: 500, Hashtags: []string{"#gen1", "gen2"}, TagsPerPost: 1, RetweetRatio: 0.5, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"query": {"#gen1 OR #gen2"}, "max_results": {"100"}, "tweet.fields": {"author_id"}}
	deadline := time.Now().Add(10 * time.Second)
	var r searchResult
	for time.Now().Before(deadline) {
		if r = e.search(a, q); len(r.Data) >= 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wait()
	if len(r.Data) < 50 {
		t.Fatalf("generator made %d posts in 10 s at 500/s", len(r.Data))
	}
	for _, d := range r.Data {
		if !strings.Contains(d.Text, "#gen") || !slices.ContainsFunc(testUsers, func(u User) bool { return u.ID == d.AuthorID }) {
			t.Fatalf("generated post %+v", d)
		}
	}
	rts := e.search(a, url.Values{"query": {"#gen1 is:retweet"}})
	if len(rts.Data) == 0 {
		t.Fatal("no reposts with RetweetRatio 0.5")
	}
	before := e.search(a, url.Values{"query": {"#gen1 OR #gen2"}, "max_results": {"10"}}).Meta.NewestID
	time.Sleep(50 * time.Millisecond)
	if after := e.search(a, url.Values{"query": {"#gen1 OR #gen2"}, "max_results": {"10"}}).Meta.NewestID; after != before {
		t.Fatal("generator still posting after cancel and wait")
	}
}

// TestConcurrentUse exercises switches, posting and searching at once (run
// with -race).
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	e.s.SetRateLimit(EndpointSearch, 0, 0, 0)
	a, r := e.grant("101")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := e.s.StartGenerator(ctx, Generator{Rate: 2000, Hashtags: []string{"c1", "c2", "c3"}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				st, _, body := e.get(EndpointSearch, a, url.Values{"query": {"#c1 OR (#c2 -is:retweet)"}, "expansions": {"author_id"}})
				if st != 200 && st != 503 {
					t.Errorf("worker %d call %d = %d %s", w, i, st, body)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			e.s.FailNext(EndpointSearch, 1, 503)
			e.s.Post(Post{AuthorID: "102", Text: "#c1 manual " + strconv.Itoa(i)})
			e.clock.Advance(time.Second)
			_ = e.s.Stats()
		}
	})
	wg.Go(func() {
		cur := r
		for range 20 {
			st, body := e.refresh(cur)
			if st != 200 {
				t.Errorf("refresh = %d %s", st, body)
				return
			}
			cur = decodeToken(t, body).RefreshToken
		}
	})
	wg.Wait()
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\ncr\r\x00\x1f", "é日本😀", "bad\xff\xfeutf8", "<&>\u2028"} {
		want, _ := json.Marshal(s)
		var fromStd, fromOurs string
		if err := json.Unmarshal(want, &fromStd); err != nil {
			t.Fatal(err)
		}
		got := appendJSONString(nil, s)
		if err := json.Unmarshal(got, &fromOurs); err != nil || fromOurs != fromStd {
			t.Errorf("appendJSONString(%q) = %s, decodes to %q (%v), want %q", s, got, fromOurs, err, fromStd)
		}
	}
}

func TestAppendTimeMillis(t *testing.T) {
	for _, tm := range []time.Time{t0, t0.Add(1234567 * time.Microsecond), time.Date(2030, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got, want := string(appendTimeMillis(nil, tm)), tm.Format("2006-01-02T15:04:05.000Z"); got != want {
			t.Errorf("appendTimeMillis(%v) = %s, want %s", tm, got, want)
		}
	}
}
