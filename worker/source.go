package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tagwatch/vault/secret"
)

// Source is a place posts are searched for a watch: X today (package
// worker/xsource), others later. The worker speaks to sources only
// through it. Implementations must be safe for concurrent use.
type Source interface {
	// Search returns the posts matching q newer than its cursor, with the
	// token source of the user's grant. user is a key of the worker's
	// choice (the grant id) that names the token's owner, for the source's
	// per-user limits. Errors the worker branches on: errors matching
	// vault.ErrNeedsConsent (from ts), ErrUsageCapped, and
	// *RateLimitError. Any error fails the whole search: the cursor stays
	// and the next run repeats it.
	Search(ctx context.Context, ts TokenSource, user string, q SearchRequest) (*Found, error)
	// NormalizeHashtag returns tag (without '#', NFC) as the source
	// matches it, or an error naming the hashtag and saying why it is not
	// one at this source.
	NormalizeHashtag(tag string) (string, error)
	// CheckQuery returns an error, naming what is wrong, when a watch's
	// query is beyond the source's limits (its length, its language
	// filter).
	CheckQuery(q Query) error
}

// TokenSource hands out the access token of a user's grant.
// vault/renew's *Source satisfies it.
type TokenSource interface {
	// Token returns a valid access token, refreshing it when due. An error
	// matching vault.ErrNeedsConsent means the grant is dead until the
	// user consents again.
	Token(ctx context.Context) (secret.AccessToken, error)
	// Invalidate reports that the source refused stale (HTTP 401) and
	// returns a freshly refreshed token; it is called at most once per
	// request.
	Invalidate(ctx context.Context, stale secret.AccessToken) (secret.AccessToken, error)
}

// Query is what a watch asks a source for.
type Query struct {
	// Hashtags are matched with OR; normalised, without '#'.
	Hashtags []string
	// Lang, when set, keeps only posts in that language (a BCP 47 tag).
	Lang string
	// IncludeRetweets keeps reposts; by default they are left out.
	IncludeRetweets bool
}

// SearchRequest is one search of a watch: its query from its cursor.
type SearchRequest struct {
	Query
	// SinceID is the cursor: only posts with a larger id are returned.
	// When empty, StartTime bounds the search; when both are empty the
	// search reaches as far back as the source allows (a backfill). A
	// cursor older than the source still serves (X: 7 days) is the
	// source's to handle: it searches from as far back as it can and
	// reports the rest as Found.Gap.
	SinceID   string
	StartTime time.Time
	// SearchedAt is when the last search of the watch that succeeded was
	// sent (zero when unknown): the posts before it were read then, so a
	// Found.Gap never starts before it.
	SearchedAt time.Time
	// MaxPages bounds the requests (pages) the search makes; default 5.
	MaxPages int
}

// Post is a post a search found.
type Post struct {
	// ID is the source's post id (decimal, growing with time).
	ID string
	// AuthorID is the source's id of the author; AuthorName their handle,
	// when the source gave it.
	AuthorID, AuthorName string
	Text                 string
	// URL is where the post can be read.
	URL       string
	CreatedAt time.Time
}

// Found is what a search found.
type Found struct {
	// Posts are every post read, newest first, each once.
	Posts []Post
	// NewestID is the next cursor: the newest id the source reported for
	// the search. Empty when nothing was found (the cursor stays).
	NewestID string
	// Pages is how many requests the search made.
	Pages int
	// Truncated is true when MaxPages were read and more remained.
	Truncated bool
	// Gap, when set, says the search could not start from the cursor:
	// the source no longer serves the posts in it, so they may be missed.
	Gap *Gap
}

// Gap is a stretch of time whose posts a search could not read because
// the source no longer serves them (X's recent search keeps 7 days).
type Gap struct {
	// From is the oldest time posts may be missed from (the cursor's
	// time, or the last successful search, whichever is later); zero when
	// unknown. To is where the search started instead.
	From, To time.Time
	// Reason is the source's word for why: for X, "aged" (the cursor was
	// older than the window by our clock), "refused" (X refused it as
	// older than its window: its clock is ahead), "unreadable" (the
	// stored cursor is not a post id).
	Reason string
}

// String says what the gap is, for the run record and logs: "posts from
// 2026-11-19T10:00:00Z to 2026-11-19T12:05:00Z were not read (aged): the
// search could not start from the cursor".
func (g *Gap) String() string {
	from := "an unknown time"
	if !g.From.IsZero() {
		from = g.From.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("posts from %s to %s were not read (%s): the search could not start from the cursor", from, g.To.UTC().Format(time.RFC3339), g.Reason)
}

// ErrUsageCapped means a source's app-wide usage cap is reached: no
// request of any user will succeed until the billing period or the budget
// changes. Sources return errors matching it (errors.Is).
var ErrUsageCapped = errors.New("worker: the source's usage cap is reached")

// RateLimitError says that a source may not be asked for a user before
// NotBefore. Local is true when the source refused without a request
// (an earlier answer said the window was spent).
type RateLimitError struct {
	NotBefore time.Time
	Local     bool
	// Endpoint is the provider's endpoint whose window is spent, when the
	// source names it (X: /2/tweets/search/recent).
	Endpoint string
	// Err is the source's own error.
	Err error
}

func (e *RateLimitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("rate limited until %s", e.NotBefore.UTC().Format(time.RFC3339))
}

// Unwrap returns the source's error.
func (e *RateLimitError) Unwrap() error { return e.Err }
