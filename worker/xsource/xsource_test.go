package xsource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/secret"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

type staticToken struct{ tok secret.AccessToken }

func (s staticToken) Token(context.Context) (secret.AccessToken, error) { return s.tok, nil }
func (s staticToken) Invalidate(context.Context, secret.AccessToken) (secret.AccessToken, error) {
	return secret.AccessToken{}, errors.New("refused")
}

func TestPostURL(t *testing.T) {
	for _, tc := range []struct{ id, user, want string }{
		{"1850000000000000001", "gopher", "https://x.com/gopher/status/1850000000000000001"},
		{"1850000000000000001", "", "https://x.com/i/web/status/1850000000000000001"},
	} {
		if got := PostURL(tc.id, tc.user); got != tc.want {
			t.Errorf("PostURL(%q, %q) = %q, want %q", tc.id, tc.user, got, tc.want)
		}
	}
}

// TestSearch: X's posts come back as worker.Posts with X's URLs and the
// first page's newest id; X's rate limit and usage cap come back as the
// errors the worker branches on.
func TestSearch(t *testing.T) {
	clock := xsandbox.NewClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := sb.AddUser(xsandbox.User{ID: "100", Username: "gopher"}); err != nil {
		t.Fatal(err)
	}
	at, _, err := sb.Grant("100", nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := staticToken{secret.NewAccessToken(at)}
	src := New(xapi.New(xapi.Config{BaseURL: sb.URL(), MaxResults: 10, ExpandAuthors: true, Retries: -1, Now: clock.Now}))
	old := sb.Post(xsandbox.Post{AuthorID: "100", Text: "old #café"})
	clock.Advance(time.Second)
	id := sb.Post(xsandbox.Post{AuthorID: "100", Text: "new #cafe\u0301"})
	sb.Post(xsandbox.Post{AuthorID: "100", Text: "#golang"})

	found, err := src.Search(context.Background(), ts, "g1", worker.SearchRequest{Query: worker.Query{Hashtags: []string{"café"}}, SinceID: old})
	if err != nil {
		t.Fatal(err)
	}
	if len(found.Posts) != 1 || found.NewestID != id || found.Pages != 1 {
		t.Fatalf("Search = %+v, want post %s only", found, id)
	}
	p := found.Posts[0]
	if p.ID != id || p.AuthorID != "100" || p.AuthorName != "gopher" || p.URL != "https://x.com/gopher/status/"+id || p.CreatedAt.IsZero() {
		t.Errorf("post = %+v, want X's fields and URL", p)
	}

	sb.SetRateLimit(xsandbox.EndpointSearch, 1, 0, 15*time.Minute)
	q := worker.SearchRequest{Query: worker.Query{Hashtags: []string{"golang"}}}
	if _, err := src.Search(context.Background(), ts, "g1", q); err != nil {
		t.Fatal(err)
	}
	var rl *worker.RateLimitError
	_, err = src.Search(context.Background(), ts, "g1", q)
	if !errors.As(err, &rl) || rl.NotBefore.IsZero() || !errors.Is(err, xapi.ErrRateLimited) {
		t.Errorf("Search over the rate limit = %v, want a *worker.RateLimitError", err)
	}
	sb.SetRateLimit(xsandbox.EndpointSearch, 0, 0, 0)
	sb.SetMonthlyPostBudget(1)
	_, err = src.Search(context.Background(), ts, "g2", q)
	if !errors.Is(err, worker.ErrUsageCapped) || !errors.Is(err, xapi.ErrUsageCapped) {
		t.Errorf("Search over the usage cap = %v, want worker.ErrUsageCapped", err)
	}
	if _, err := New(nil).Search(context.Background(), ts, "g1", q); err == nil {
		t.Errorf("Search of a rules-only source = nil error")
	}
}

func TestCheckQuery(t *testing.T) {
	src := New(nil)
	long := make([]string, 10)
	for i := range long {
		long[i] = strings.Repeat(string(rune('a'+i)), 60)
	}
	err := src.CheckQuery(worker.Query{Hashtags: long})
	if !errors.Is(err, xapi.ErrQueryTooLong) || !strings.HasPrefix(err.Error(), "query too long: ") {
		t.Errorf("CheckQuery(10 x 60 characters) = %v, want ErrQueryTooLong without the client's prefix", err)
	}
	if err := src.CheckQuery(worker.Query{Hashtags: []string{"go"}, Lang: "pt-BR"}); err != nil {
		t.Errorf("CheckQuery(#go lang:pt-BR) = %v", err)
	}
	if got, err := src.NormalizeHashtag("cafe\u0301"); err != nil || got != "caf\u00e9" {
		t.Errorf("NormalizeHashtag(cafe+U+0301) = %q, %v, want café", got, err)
	}
}
