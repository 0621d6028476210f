// Package xsource puts X's recent search behind worker.Source: it builds
// X's query from a watch (worker/xapi's BuildQuery and NormalizeHashtag),
// polls through an *xapi.Client with the user's token source, turns X's
// posts into worker.Posts with X's post URLs, and X's errors into the ones
// the worker branches on (worker.ErrUsageCapped, *worker.RateLimitError).
//
// A Source is safe for concurrent use; it starts no goroutines.
package xsource

import (
	"context"
	"errors"
	"strings"

	"tagwatch/worker"
	"tagwatch/worker/xapi"
)

// Source is X as a worker.Source.
type Source struct {
	c *xapi.Client
}

var _ worker.Source = (*Source)(nil)

// New returns the Source that searches through c. A Source for the watch
// rules alone (an offline check of the configuration) may have a nil c;
// its Search then fails.
func New(c *xapi.Client) *Source { return &Source{c: c} }

// Client returns the X API client, nil for a rules-only Source.
func (s *Source) Client() *xapi.Client { return s.c }

// Search polls recent search for q's hashtags and filters from its cursor
// (xapi.Client.Poll: a fixed since_id across pages, the next cursor is
// the first page's newest_id; a cursor older than X's 7-day window is
// searched from the window's start and reported as Found.Gap). Errors: X's usage cap matches
// worker.ErrUsageCapped; a rate limit is a *worker.RateLimitError; token
// source errors come back wrapped (vault.ErrNeedsConsent still matches).
func (s *Source) Search(ctx context.Context, ts worker.TokenSource, user string, q worker.SearchRequest) (*worker.Found, error) {
	if s.c == nil {
		return nil, errors.New("xsource: no X API client (a rules-only source)")
	}
	query, err := xapi.BuildQuery(spec(q.Query))
	if err != nil {
		return nil, err
	}
	res, err := s.c.Poll(ctx, ts, user, xapi.PollRequest{Query: query, SinceID: q.SinceID, StartTime: q.StartTime,
		SearchedAt: q.SearchedAt, MaxPages: q.MaxPages})
	if err != nil {
		var rl *xapi.RateLimitError
		switch {
		case errors.Is(err, xapi.ErrUsageCapped):
			return nil, capped{err}
		case errors.As(err, &rl):
			return nil, &worker.RateLimitError{NotBefore: rl.NotBefore, Local: rl.Local, Endpoint: rl.Endpoint, Err: err}
		}
		return nil, err
	}
	out := &worker.Found{NewestID: res.NewestID, Pages: res.Pages, Truncated: res.Truncated, Posts: make([]worker.Post, len(res.Posts))}
	if g := res.Gap; g != nil {
		out.Gap = &worker.Gap{From: g.From, To: g.To, Reason: g.Reason}
	}
	for i, p := range res.Posts {
		out.Posts[i] = worker.Post{ID: p.ID, AuthorID: p.AuthorID, AuthorName: p.AuthorUsername, Text: p.Text,
			URL: PostURL(p.ID, p.AuthorUsername), CreatedAt: p.CreatedAt}
	}
	return out, nil
}

// PostURL is where a post can be read on X: under its author's handle
// when known, else X's handle-free form.
func PostURL(id, username string) string {
	if username == "" {
		return "https://x.com/i/web/status/" + id
	}
	return "https://x.com/" + username + "/status/" + id
}

// NormalizeHashtag is xapi.NormalizeHashtag: X's hashtag grammar, NFC,
// without '#'. Its error (*xapi.HashtagError) names the hashtag.
func (s *Source) NormalizeHashtag(tag string) (string, error) { return xapi.NormalizeHashtag(tag) }

// CheckQuery builds X's query for q and returns why it cannot be sent: a
// language filter that is not a language tag, or more than
// xapi.MaxQueryLen characters (wrapping xapi.ErrQueryTooLong).
func (s *Source) CheckQuery(q worker.Query) error {
	if _, err := xapi.BuildQuery(spec(q)); err != nil {
		return ruleError{err}
	}
	return nil
}

func spec(q worker.Query) xapi.QuerySpec {
	return xapi.QuerySpec{Hashtags: q.Hashtags, Lang: q.Lang, IncludeRetweets: q.IncludeRetweets}
}

// capped marks X's usage-cap answer as worker.ErrUsageCapped.
type capped struct{ error }

func (c capped) Is(target error) bool { return target == worker.ErrUsageCapped }
func (c capped) Unwrap() error        { return c.error }

// ruleError is a query error as a rule reads it: the watch's field and
// what is wrong, without the client package's prefix (the error is a
// property of the watch, not a failed call).
type ruleError struct{ err error }

func (e ruleError) Error() string { return strings.TrimPrefix(e.err.Error(), "xapi: ") }
func (e ruleError) Unwrap() error { return e.err }
