// Package xapi is a thin client of the X API v2 endpoints tagwatch uses:
// GET /2/tweets/search/recent and GET /2/users/me, with the bearer token of
// a user's grant.
//
// The client keeps X's rules so callers do not have to: it reads the
// x-rate-limit-* headers of every response (the reset against the
// response's own Date: ratelimit.go) and refuses, without a request, to
// call an endpoint for a user whose window is spent until its reset, a
// hold that is always positive and bounded; its windows can be kept across
// restarts (ChangedRateWindows, RestoreRateWindows); it
// retries 5xx answers and timeouts with backoff; it asks the token source
// for one forced refresh after a 401; and it tells a usage-capped 429
// (ErrUsageCapped) from a plain rate limit (*RateLimitError). Poll follows
// the polling contract of recent search: pages with a fixed since_id, the
// next cursor is the first page's newest_id.
//
// A Client is safe for concurrent use. It starts no goroutines.
package xapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"tagwatch/vault/secret"
)

// TokenSource hands out a user's access token. *renew.Source satisfies it.
type TokenSource interface {
	// Token returns a valid access token, refreshing it when due.
	Token(ctx context.Context) (secret.AccessToken, error)
	// Invalidate reports that the API refused stale (401) and returns a
	// freshly refreshed token; it is called at most once per request.
	Invalidate(ctx context.Context, stale secret.AccessToken) (secret.AccessToken, error)
}

// Endpoints of the API, as they appear in errors and rate-limit keys.
const (
	EndpointSearch  = "/2/tweets/search/recent"
	EndpointUsersMe = "/2/users/me"
)

var (
	// ErrUsageCapped means the app's usage cap is reached: no request of
	// any user will succeed until the billing period or the budget changes.
	ErrUsageCapped = errors.New("xapi: usage cap exceeded")
	// ErrUnauthorized means the API refused the token even after one forced
	// refresh.
	ErrUnauthorized = errors.New("xapi: unauthorized")
	// ErrRateLimited is matched by every *RateLimitError.
	ErrRateLimited = errors.New("xapi: rate limited")
)

// RateLimitError says that an endpoint may not be called for a user before
// NotBefore. Local is true when the client refused without a request
// because an earlier response said the window was spent.
type RateLimitError struct {
	Endpoint  string
	NotBefore time.Time
	Local     bool
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("xapi: %s rate limited until %s", e.Endpoint, e.NotBefore.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// APIError is an error answer of the API after the client's retries.
type APIError struct {
	Endpoint string
	Status   int
	Problem  Problem
	// Attempts is how many requests were made.
	Attempts int
}

func (e *APIError) Error() string {
	msg := e.Problem.Title
	if e.Problem.Detail != "" && e.Problem.Detail != e.Problem.Title {
		msg += ": " + e.Problem.Detail
	}
	if len(e.Problem.Errors) > 0 && e.Problem.Errors[0].Message != "" {
		msg += ": " + e.Problem.Errors[0].Message // which parameter, and why
	}
	return fmt.Sprintf("xapi: %s: HTTP %d %.200q after %d attempts", e.Endpoint, e.Status, msg, e.Attempts)
}

// Is makes errors.Is(err, ErrUsageCapped) true for X's usage-cap 429.
func (e *APIError) Is(target error) bool {
	return target == ErrUsageCapped && e.Status == http.StatusTooManyRequests && e.Problem.isUsageCapped()
}

// Temporary reports whether a later run may succeed as is (5xx).
func (e *APIError) Temporary() bool { return e.Status >= 500 }

// Config configures a Client. The zero value of each field is its
// default.
type Config struct {
	// BaseURL is the API's base URL (the provider's APIURL); default
	// https://api.x.com.
	BaseURL string
	// HTTPClient makes the requests; default a client with its own
	// transport keeping up to 64 idle connections to the API.
	HTTPClient *http.Client
	// Timeout bounds one request, body included; default 15 s.
	Timeout time.Duration
	// Retries is how many times a 5xx, a timeout or a network error is
	// retried within a call; default 3 (negative: none).
	Retries int
	// MinBackoff and MaxBackoff bound the wait between retries, doubled on
	// each and jittered; defaults 1 s and 15 s.
	MinBackoff, MaxBackoff time.Duration
	// MaxResults is the page size of search, 10 to 100; default 100.
	MaxResults int
	// ExpandAuthors asks search for the authors' usernames
	// (expansions=author_id). X bills each user read, so it is off by
	// default.
	ExpandAuthors bool
	// MaxBody bounds a response body; default 4 MiB.
	MaxBody int64
	// OnRateLimit, when set, is told what every response said is left of
	// an endpoint's window (x-rate-limit-remaining), for metrics. It must
	// be quick.
	OnRateLimit func(endpoint string, remaining int)
	Logger      *slog.Logger
	// Now is the clock for rate-limit windows; default time.Now.
	Now func() time.Time
	// RateWindow is the length of the API's rate-limit windows; default
	// DefaultRateWindow (X's 15 minutes). A 429 or a spent window without
	// a usable reset holds its endpoint this long, and no hold is longer
	// than it plus a minute (see ratelimit.go).
	RateWindow time.Duration
}

// Client calls the API. Safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	hc   *http.Client
	log  *slog.Logger
	now  func() time.Time

	// mu guards the rate-limit windows (ratelimit.go): limits by user and
	// endpoint, and which of them changed since ChangedRateWindows.
	mu      sync.Mutex
	limits  map[limitKey]*limitState
	changed map[limitKey]bool
	// sweepAt is the size of limits at which the windows that are over
	// are dropped: twice what a sweep left, so a sweep's cost (every
	// window) is spread over as many requests (ratelimit.go: observe).
	sweepAt int
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.x.com"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.MaxResults < 10 || cfg.MaxResults > 100 {
		cfg.MaxResults = 100
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = DefaultRateWindow
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 64, 64
		hc = &http.Client{Transport: tr}
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), hc: hc, log: cfg.Logger, now: cfg.Now,
		limits: map[limitKey]*limitState{}, changed: map[limitKey]bool{}}
}

// get makes one API call for user (a key of the caller's choice that
// identifies the token's owner, for rate limits) with retries, and returns
// the body of a 200.
func (c *Client) get(ctx context.Context, ts TokenSource, user, endpoint string, q url.Values) ([]byte, error) {
	u := c.base + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var tok secret.AccessToken
	invalidated := false
	attempts := 0
	backoff := c.cfg.MinBackoff
	var lastErr error
	for {
		if nb := c.NotBefore(user, endpoint); !nb.IsZero() {
			return nil, &RateLimitError{Endpoint: endpoint, NotBefore: nb, Local: true}
		}
		if tok.IsZero() {
			var err error
			if tok, err = ts.Token(ctx); err != nil {
				return nil, fmt.Errorf("xapi: %s: token: %w", endpoint, err)
			}
		}
		attempts++
		status, h, body, err := c.send(ctx, tok, u)
		retry := false
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("xapi: %s: %w", endpoint, ctx.Err())
			}
			lastErr = fmt.Errorf("xapi: %s: %w (after %d attempts)", endpoint, err, attempts)
			retry = true
		case status == http.StatusOK:
			c.observe(user, endpoint, h, false)
			return body, nil
		case status == http.StatusUnauthorized:
			if invalidated {
				return nil, fmt.Errorf("%w: %s refused a freshly refreshed token", ErrUnauthorized, endpoint)
			}
			invalidated = true
			attempts--
			if tok, err = ts.Invalidate(ctx, tok); err != nil {
				return nil, fmt.Errorf("xapi: %s: refresh after 401: %w", endpoint, err)
			}
			continue
		case status == http.StatusTooManyRequests:
			ae := &APIError{Endpoint: endpoint, Status: status, Problem: parseProblem(body), Attempts: attempts}
			if ae.Problem.isUsageCapped() {
				return nil, ae
			}
			c.observe(user, endpoint, h, true)
			return nil, &RateLimitError{Endpoint: endpoint, NotBefore: c.NotBefore(user, endpoint)}
		case status >= 500:
			c.observe(user, endpoint, h, false)
			lastErr = &APIError{Endpoint: endpoint, Status: status, Problem: parseProblem(body), Attempts: attempts}
			retry = true
		default:
			c.observe(user, endpoint, h, false)
			return nil, &APIError{Endpoint: endpoint, Status: status, Problem: parseProblem(body), Attempts: attempts}
		}
		if !retry || attempts > c.cfg.Retries {
			return nil, lastErr
		}
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, c.cfg.MaxBackoff)
		c.log.Debug("xapi retry", "endpoint", endpoint, "attempt", attempts, "wait", d, "err", lastErr)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("xapi: %s: %w (last: %v)", endpoint, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

func (c *Client) send(ctx context.Context, tok secret.AccessToken, u string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	req.Header.Set("User-Agent", "tagwatch")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is not secret, but keep errors short
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, nil, nil, fmt.Errorf("timeout after %s", c.cfg.Timeout)
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > c.cfg.MaxBody {
		return 0, nil, nil, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, c.cfg.MaxBody)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// User is the account a token acts for.
type User struct {
	ID, Name, Username string
}

// UsersMe returns the account the token source's tokens act for.
func (c *Client) UsersMe(ctx context.Context, ts TokenSource, user string) (User, error) {
	body, err := c.get(ctx, ts, user, EndpointUsersMe, nil)
	if err != nil {
		return User{}, err
	}
	var w struct {
		Data *struct {
			ID       json.RawMessage `json:"id"`
			Name     string          `json:"name"`
			Username string          `json:"username"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &w); err != nil || w.Data == nil {
		return User{}, fmt.Errorf("%w: users/me: %v", ErrMalformed, err)
	}
	id, _, err := idString(w.Data.ID)
	if err != nil || id == "" {
		return User{}, fmt.Errorf("%w: users/me: bad id: %v", ErrMalformed, err)
	}
	return User{ID: id, Name: w.Data.Name, Username: w.Data.Username}, nil
}

// SearchRequest is one page of recent search.
type SearchRequest struct {
	Query string
	// SinceID, when set, returns only posts with larger ids.
	SinceID string
	// StartTime, when set (and SinceID is not), returns only posts created
	// at or after it.
	StartTime time.Time
	NextToken string
}

// Search fetches one page of recent search for user.
func (c *Client) Search(ctx context.Context, ts TokenSource, user string, r SearchRequest) (*Page, error) {
	q := url.Values{}
	q.Set("query", r.Query)
	q.Set("max_results", strconv.Itoa(c.cfg.MaxResults))
	q.Set("tweet.fields", "author_id,created_at")
	if c.cfg.ExpandAuthors {
		q.Set("expansions", "author_id")
		q.Set("user.fields", "username")
	}
	if r.SinceID != "" {
		q.Set("since_id", r.SinceID)
	} else if !r.StartTime.IsZero() {
		q.Set("start_time", r.StartTime.UTC().Format(time.RFC3339))
	}
	if r.NextToken != "" {
		q.Set("next_token", r.NextToken)
	}
	body, err := c.get(ctx, ts, user, EndpointSearch, q)
	if err != nil {
		return nil, err
	}
	return ParseSearch(body)
}
