package xapi

import (
	"errors"
	"strings"
	"testing"
)

func TestBuildQuery(t *testing.T) {
	long := make([]string, 40)
	for i := range long {
		long[i] = strings.Repeat("a", 12) + string(rune('a'+i%26)) + strings.Repeat("b", i/26)
	}
	tests := []struct {
		name    string
		in      QuerySpec
		want    string
		wantErr error
	}{
		{"one tag", QuerySpec{Hashtags: []string{"golang"}}, "#golang -is:retweet", nil},
		{"two tags and lang", QuerySpec{Hashtags: []string{"#golang", "rust"}, Lang: "en"}, "(#golang OR #rust) -is:retweet lang:en", nil},
		{"retweets kept", QuerySpec{Hashtags: []string{"go_lang"}, IncludeRetweets: true}, "#go_lang", nil},
		{"unicode tag", QuerySpec{Hashtags: []string{"café"}}, "#café -is:retweet", nil},
		{"too long", QuerySpec{Hashtags: long}, "", ErrQueryTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildQuery(tc.in)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("BuildQuery(%v) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
	for _, bad := range []QuerySpec{{}, {Hashtags: []string{"a b"}}, {Hashtags: []string{"x) OR (#y"}}, {Hashtags: []string{"ok"}, Lang: "en lang:fr"}} {
		if q, err := BuildQuery(bad); err == nil {
			t.Errorf("BuildQuery(%v) = %q, want an error", bad, q)
		}
	}
	_, err := BuildQuery(QuerySpec{Hashtags: long})
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("too-long error %q should say the limit", err)
	}
}

func TestParseSearch(t *testing.T) {
	tests := []struct {
		name, body string
		posts      int
		newest     string
		next       string
		errs       int
		bad        bool
	}{
		{"empty: data absent", `{"meta":{"result_count":0}}`, 0, "", "", 0, false},
		{"page", `{"data":[{"id":"12","text":"#a","edit_history_tweet_ids":["12"],"author_id":"7","created_at":"2026-01-01T00:00:00.000Z"},{"id":"11","text":"b"}],"meta":{"newest_id":"12","oldest_id":"11","result_count":2,"next_token":"abc"}}`, 2, "12", "abc", 0, false},
		{"post field names", `{"data":[{"id":"5","text":"x","edit_history_post_ids":["5"]}],"meta":{"newest_id":"5","result_count":1}}`, 1, "5", "", 0, false},
		{"partial errors", `{"data":[{"id":"5","text":"x","author_id":"9"}],"errors":[{"title":"Not Found Error","resource_type":"user","resource_id":"9"}],"meta":{"newest_id":"5","result_count":1}}`, 1, "5", "", 1, false},
		{"numeric id, no meta", `{"data":[{"id":8,"text":"x"}]}`, 1, "8", "", 0, false},
		{"truncated", `{"data":[{"id":"5","te`, 0, "", "", 0, true},
		{"not json", `<html>`, 0, "", "", 0, true},
		{"nothing", `{}`, 0, "", "", 0, true},
		{"only errors", `{"errors":[{"title":"x"}]}`, 0, "", "", 0, true},
		{"bad id", `{"data":[{"id":"12a","text":"x"}],"meta":{"result_count":1}}`, 0, "", "", 0, true},
		{"newest older than data", `{"data":[{"id":"12","text":"x"}],"meta":{"newest_id":"3","result_count":1}}`, 0, "", "", 0, true},
		{"data not a list", `{"data":{"id":"1"},"meta":{"result_count":1}}`, 0, "", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseSearch([]byte(tc.body))
			if tc.bad {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseSearch = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Posts) != tc.posts || p.NewestID != tc.newest || p.NextToken != tc.next || len(p.Errors) != tc.errs {
				t.Errorf("ParseSearch = %+v; want %d posts, newest %q, next %q, %d errors", p, tc.posts, tc.newest, tc.next, tc.errs)
			}
		})
	}
}

func TestProblemClassification(t *testing.T) {
	capped := &APIError{Status: 429, Problem: parseProblem([]byte(`{"title":"UsageCapExceeded","type":"https://api.twitter.com/2/problems/usage-capped","status":429}`))}
	plain := &APIError{Status: 429, Problem: parseProblem([]byte(`{"title":"Too Many Requests","type":"about:blank","status":429}`))}
	if !errors.Is(capped, ErrUsageCapped) || errors.Is(plain, ErrUsageCapped) {
		t.Errorf("usage-cap classification wrong: capped %v, plain %v", errors.Is(capped, ErrUsageCapped), errors.Is(plain, ErrUsageCapped))
	}
	if !errors.Is(&RateLimitError{}, ErrRateLimited) {
		t.Error("RateLimitError is not ErrRateLimited")
	}
}

// FuzzParseSearch: any body gives a page or ErrMalformed, never a panic,
// and a page's posts have decimal ids no newer than its newest_id.
func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{`{"meta":{"result_count":0}}`,
		`{"data":[{"id":"12","text":"#a","author_id":"7","created_at":"2026-01-01T00:00:00.000Z"}],"includes":{"users":[{"id":"7","username":"u"}]},"meta":{"newest_id":"12","oldest_id":"12","result_count":1,"next_token":"t"}}`,
		`{"data":[{"id":8}],"errors":[{"title":"x"}]}`, `{"data":null,"meta":null}`, `[]`, `{"data":[{"id":"99999999999999999999"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseSearch(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		var newest uint64
		for _, post := range p.Posts {
			if post.ID == "" || post.IDNum == 0 && post.ID != "0" {
				t.Fatalf("post with bad id %q", post.ID)
			}
			newest = max(newest, post.IDNum)
		}
		if len(p.Posts) > 0 && !newerOrEqual(p.NewestID, newest) {
			t.Fatalf("newest_id %s older than post %d", p.NewestID, newest)
		}
	})
}

func newerOrEqual(id string, n uint64) bool {
	_, v, err := idString([]byte(`"` + id + `"`))
	return err == nil && v >= n
}
