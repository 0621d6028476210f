package xapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// PollRequest is one poll of a watch: every post newer than the cursor.
type PollRequest struct {
	Query string
	// SinceID is the cursor; when empty, StartTime bounds the search, and
	// when both are empty the search reads the last 7 days (backfill).
	SinceID   string
	StartTime time.Time
	// SearchedAt, when set, is when an earlier search of the watch that
	// succeeded was sent: the posts before it were read then, so a Gap
	// never starts before it. Zero when unknown.
	SearchedAt time.Time
	// MaxPages bounds the pages read; default 5.
	MaxPages int
}

// PollResult is what a poll found.
type PollResult struct {
	// Posts are every post read, newest first, each once.
	Posts []Post
	// NewestID is the first page's newest_id: the next cursor. Empty when
	// nothing was found (the cursor stays).
	NewestID string
	// Pages is how many search requests were made, one X refused as too
	// old included.
	Pages int
	// Truncated is true when MaxPages were read and more remained.
	Truncated bool
	// PartialErrors counts errors[] entries in 200 answers.
	PartialErrors int
	// Gap, when set, says the cursor was older than recent search reaches
	// (or unreadable) and which posts may therefore be missed.
	Gap *Gap
}

// Poll reads every page of posts newer than the cursor, with a fixed
// since_id (or start_time), up to MaxPages. Any error fails the whole
// poll: the caller keeps its cursor and the next poll repeats it.
//
// X's recent search serves the last 7 days and refuses, with a 400, a
// since_id or start_time older than that. So a cursor that is older than
// now − SearchWindow + WindowMargin (a since_id by its snowflake time), or
// that is not a post id at all, is not sent: the poll searches from that
// point (start_time, no since_id) and reports the posts it cannot read as
// PollResult.Gap. When X still refuses the cursor as too old (its clock is
// ahead of ours), the poll asks once more from the oldest time X named,
// plus the margin. Posts at or below a readable since_id are never
// returned, and the next cursor is the first page's newest_id as always.
func (c *Client) Poll(ctx context.Context, ts TokenSource, user string, r PollRequest) (*PollResult, error) {
	if r.MaxPages <= 0 {
		r.MaxPages = 5
	}
	start := windowStart(c.now())
	req := SearchRequest{Query: r.Query}
	var since uint64
	var gap *Gap
	switch {
	case r.SinceID != "":
		n, ok := parseCursor(r.SinceID)
		switch {
		case !ok:
			gap = &Gap{Reason: GapUnreadable, SinceID: r.SinceID}
		case SnowflakeTime(n).Before(start):
			since = n
			gap = &Gap{From: SnowflakeTime(n), Reason: GapAged, SinceID: r.SinceID}
		default:
			since = n
			req.SinceID = strconv.FormatUint(n, 10)
		}
	case !r.StartTime.IsZero() && r.StartTime.Before(start):
		gap = &Gap{From: r.StartTime.UTC(), Reason: GapAged}
	default:
		req.StartTime = r.StartTime
	}
	if gap != nil {
		req.StartTime, gap.To = start, start
	}
	res, err := c.pollPages(ctx, ts, user, req, since, r.MaxPages)
	if err != nil {
		param, after, refused := refusedAsAged(err)
		if !refused || (param == "since_id") != (req.SinceID != "") {
			return nil, err
		}
		made := res.Pages + 1 // the refused request counts
		// X's clock is ahead of ours: its window starts later than ours.
		// It names the oldest time it serves to the minute.
		retry := start.Add(WindowMargin)
		if !after.IsZero() {
			retry = after.Add(time.Minute + WindowMargin).Truncate(time.Second)
		}
		if !req.StartTime.IsZero() && !retry.After(req.StartTime) {
			retry = req.StartTime.Add(WindowMargin)
		}
		if gap == nil {
			gap = &Gap{From: req.StartTime.UTC(), SinceID: req.SinceID}
			if req.SinceID != "" {
				gap.From = SnowflakeTime(since)
			}
		}
		gap.Reason, gap.To = GapRefused, retry
		c.log.Debug("xapi poll: cursor refused as older than the search window, searching again from the window's start",
			"param", param, "x_window_start", after, "start_time", retry)
		if res, err = c.pollPages(ctx, ts, user, SearchRequest{Query: r.Query, StartTime: retry}, since, r.MaxPages); err != nil {
			return nil, err
		}
		res.Pages += made
	}
	if gap != nil {
		if gap.From.Before(r.SearchedAt) {
			gap.From = r.SearchedAt.UTC()
		}
		if gap.From.IsZero() || gap.From.Before(gap.To) {
			res.Gap = gap
		}
	}
	return res, nil
}

// refusedAsAged reports whether err is X's 400 refusing since_id or
// start_time as older than its search window (see windowRefusal).
func refusedAsAged(err error) (param string, after time.Time, ok bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return "", time.Time{}, false
	}
	return windowRefusal(ae.Problem)
}

// pollPages reads the pages of one search, dropping posts at or below
// since and posts already read. On an error, the result it also returns
// counts the pages that were answered.
func (c *Client) pollPages(ctx context.Context, ts TokenSource, user string, req SearchRequest, since uint64, maxPages int) (*PollResult, error) {
	res := &PollResult{}
	seen := map[uint64]bool{}
	for {
		p, err := c.Search(ctx, ts, user, req)
		if err != nil {
			return res, fmt.Errorf("%w (page %d)", err, res.Pages+1)
		}
		res.Pages++
		res.PartialErrors += len(p.Errors)
		if res.Pages == 1 {
			res.NewestID = p.NewestID
		}
		for _, post := range p.Posts {
			if post.IDNum <= since || seen[post.IDNum] {
				continue
			}
			seen[post.IDNum] = true
			res.Posts = append(res.Posts, post)
		}
		if p.NextToken == "" {
			return res, nil
		}
		if res.Pages >= maxPages {
			res.Truncated = true
			return res, nil
		}
		req.NextToken = p.NextToken
	}
}
