package xapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrMalformed means a response body could not be understood. A run that
// meets it fails and moves no cursor.
var ErrMalformed = errors.New("xapi: malformed response")

// Post is a post returned by search.
type Post struct {
	// ID is the post's decimal id; IDNum is the same as a number.
	ID    string
	IDNum uint64
	Text  string
	// AuthorID is set when the response carried author_id.
	AuthorID string
	// AuthorUsername is set when the author was expanded in includes.users.
	AuthorUsername string
	// CreatedAt is zero when the response did not carry created_at.
	CreatedAt time.Time
}

// PartialError is one entry of errors[] in a 200 response: part of the
// answer is missing (an author X cannot show), the rest is valid.
type PartialError struct {
	Title, Detail, Type, ResourceType, ResourceID string
}

// Page is one page of a recent search.
type Page struct {
	// Posts are newest first, as X returns them.
	Posts []Post
	// NewestID and OldestID are from meta (or, when meta lacks them, from
	// the posts); empty on an empty page.
	NewestID, OldestID string
	ResultCount        int
	// NextToken is set when another page follows.
	NextToken string
	Errors    []PartialError
}

type wirePost struct {
	ID        json.RawMessage `json:"id"`
	Text      string          `json:"text"`
	AuthorID  string          `json:"author_id"`
	CreatedAt string          `json:"created_at"`
}

type wireSearch struct {
	Data     json.RawMessage `json:"data"`
	Includes struct {
		Users []struct {
			ID       string `json:"id"`
			Username string `json:"username"`
		} `json:"users"`
	} `json:"includes"`
	Meta *struct {
		NewestID    json.RawMessage `json:"newest_id"`
		OldestID    json.RawMessage `json:"oldest_id"`
		ResultCount int             `json:"result_count"`
		NextToken   string          `json:"next_token"`
	} `json:"meta"`
	Errors []struct {
		Title        string `json:"title"`
		Detail       string `json:"detail"`
		Type         string `json:"type"`
		ResourceType string `json:"resource_type"`
		ResourceID   string `json:"resource_id"`
	} `json:"errors"`
}

// idString decodes an id that X sends as a JSON string (or, tolerated, a
// number) and checks it is 1 to 19 decimal digits.
func idString(raw json.RawMessage) (string, uint64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", 0, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", 0, err
		}
	}
	if len(s) == 0 || len(s) > 19 {
		return "", 0, fmt.Errorf("id %.40q is not 1 to 19 digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", 0, fmt.Errorf("id %.40q is not decimal", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("id %.40q: %v", s, err)
	}
	return strconv.FormatUint(n, 10), n, nil
}

// ParseSearch parses the body of a 200 from GET /2/tweets/search/recent.
// It tolerates what X varies: data left out when nothing matched, errors[]
// beside data, "post" as well as "tweet" field names (unknown fields are
// ignored), ids as strings or numbers. Anything else that does not fit,
// including an id that is not a decimal number, gives an error wrapping
// ErrMalformed.
func ParseSearch(body []byte) (*Page, error) {
	var w wireSearch
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: search: %v", ErrMalformed, err)
	}
	p := &Page{}
	for _, e := range w.Errors {
		p.Errors = append(p.Errors, PartialError{Title: e.Title, Detail: e.Detail, Type: e.Type, ResourceType: e.ResourceType, ResourceID: e.ResourceID})
	}
	var posts []wirePost
	if d := bytes.TrimSpace(w.Data); len(d) > 0 && string(d) != "null" {
		if err := json.Unmarshal(d, &posts); err != nil {
			return nil, fmt.Errorf("%w: search data: %v", ErrMalformed, err)
		}
	}
	if w.Meta == nil && len(posts) == 0 {
		if len(p.Errors) > 0 {
			return nil, fmt.Errorf("%w: search answered only errors[] (first: %.200q)", ErrMalformed, p.Errors[0].Title+": "+p.Errors[0].Detail)
		}
		return nil, fmt.Errorf("%w: search response has neither data nor meta", ErrMalformed)
	}
	users := map[string]string{}
	for _, u := range w.Includes.Users {
		users[u.ID] = u.Username
	}
	var newest, oldest uint64
	for i, wp := range posts {
		id, n, err := idString(wp.ID)
		if err == nil && n == 0 {
			err = errors.New("post ids are positive")
		}
		if err != nil || id == "" {
			return nil, fmt.Errorf("%w: search data[%d]: bad id: %v", ErrMalformed, i, err)
		}
		post := Post{ID: id, IDNum: n, Text: wp.Text, AuthorID: wp.AuthorID, AuthorUsername: users[wp.AuthorID]}
		if wp.CreatedAt != "" {
			if t, err := time.Parse(time.RFC3339Nano, wp.CreatedAt); err == nil {
				post.CreatedAt = t
			}
		}
		if newest == 0 || n > newest {
			newest = n
		}
		if oldest == 0 || n < oldest {
			oldest = n
		}
		p.Posts = append(p.Posts, post)
	}
	if w.Meta != nil {
		p.ResultCount = w.Meta.ResultCount
		p.NextToken = w.Meta.NextToken
		nid, nn, err := idString(w.Meta.NewestID)
		if err != nil {
			return nil, fmt.Errorf("%w: search meta.newest_id: %v", ErrMalformed, err)
		}
		oid, _, err := idString(w.Meta.OldestID)
		if err != nil {
			return nil, fmt.Errorf("%w: search meta.oldest_id: %v", ErrMalformed, err)
		}
		if nid != "" && nn < newest {
			return nil, fmt.Errorf("%w: search meta.newest_id %s is older than a post of the page", ErrMalformed, nid)
		}
		p.NewestID, p.OldestID = nid, oid
	}
	if p.NewestID == "" && newest != 0 {
		p.NewestID = strconv.FormatUint(newest, 10)
	}
	if p.OldestID == "" && oldest != 0 {
		p.OldestID = strconv.FormatUint(oldest, 10)
	}
	if len(p.NextToken) > 1024 {
		return nil, fmt.Errorf("%w: search meta.next_token is %d bytes long", ErrMalformed, len(p.NextToken))
	}
	return p, nil
}

// Problem is an error answer of the API (problem+JSON).
type Problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Type   string `json:"type"`
	Status int    `json:"status"`
	// Errors are the entries of an invalid-request problem: each names
	// the parameters it is about and says what is wrong.
	Errors []ProblemError `json:"errors"`
}

// ProblemError is one entry of a 400 invalid-request problem, e.g.
// {"parameters":{"since_id":["…"]},"message":"'since_id' must be …"}.
type ProblemError struct {
	Parameters map[string][]string `json:"parameters"`
	Message    string              `json:"message"`
}

// parseProblem reads a problem body; an unreadable one gives a zero
// Problem (a field of an unexpected type is left zero, the others kept).
func parseProblem(body []byte) Problem {
	var p Problem
	_ = json.Unmarshal(body, &p)
	return p
}

// isUsageCapped tells X's usage-cap 429 from a plain rate limit.
func (p Problem) isUsageCapped() bool {
	switch p.Type {
	case "https://api.x.com/2/problems/usage-capped", "https://api.twitter.com/2/problems/usage-capped":
		return true
	}
	return p.Title == "UsageCapExceeded"
}
