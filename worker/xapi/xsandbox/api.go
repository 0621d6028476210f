package xsandbox

import (
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	contentJSON    = "application/json; charset=utf-8"
	contentProblem = "application/problem+json"

	bodyUnauthorized    = `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}`
	bodyForbidden       = `{"title":"Forbidden","type":"about:blank","status":403,"detail":"Forbidden"}`
	bodyTooManyRequests = `{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`
	bodyUsageCapped     = `{"account_id":1,"product_name":"pay-per-use","title":"UsageCapExceeded","period":"Monthly","scope":"Product","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.x.com/2/problems/usage-capped","status":429}`
)

func writeRaw(w http.ResponseWriter, status int, contentType, body string) {
	h := w.Header()
	h["Content-Type"] = []string{contentType}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only sandbox-built values get here
		panic("xsandbox: marshal response: " + err.Error())
	}
	h := w.Header()
	h["Content-Type"] = []string{contentJSON}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func formatID(id uint64) string { return strconv.FormatUint(id, 10) }

// paramError is one entry of an invalid-request problem.
type paramError struct {
	Parameters map[string][]string `json:"parameters"`
	Message    string              `json:"message"`
}

// invalidRequest writes X's 400 invalid-request problem about one parameter.
func invalidRequest(w http.ResponseWriter, param, value, msg string) {
	invalidParams(w, map[string][]string{param: {value}}, msg)
}

// invalidParams writes X's 400 invalid-request problem about the given
// parameters (name -> values as X echoes them).
func invalidParams(w http.ResponseWriter, params map[string][]string, msg string) {
	writeJSON400(w, struct {
		Errors []paramError `json:"errors"`
		Title  string       `json:"title"`
		Detail string       `json:"detail"`
		Type   string       `json:"type"`
		Status int          `json:"status"`
	}{
		Errors: []paramError{{Parameters: params, Message: msg}},
		Title:  "Invalid Request",
		Detail: "One or more parameters to your request was invalid.",
		Type:   "https://api.x.com/2/problems/invalid-request",
		Status: http.StatusBadRequest,
	})
}

func writeJSON400(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	writeRaw(w, http.StatusBadRequest, contentProblem, string(b))
}

// authenticate resolves the bearer token of r to a user with the needed
// scopes, writing the 401 or 403 itself when it cannot.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, ep Endpoint) (User, bool) {
	h := r.Header.Get("Authorization")
	tok := ""
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		tok = strings.TrimSpace(h[7:])
	}
	var userID string
	var scopes []string
	found, ok := false, false
	if tok != "" {
		now := s.now()
		s.mu.Lock()
		if a := s.access[tok]; a != nil {
			found = true
			if !a.revoked && !a.grant.revoked && now.Before(a.expires) {
				ok = true
				userID, scopes = a.grant.userID, a.grant.scopes
			}
		}
		s.mu.Unlock()
		if !found && s.cfg.ExternalToken != nil {
			id, sc, err := s.cfg.ExternalToken(r.Context(), tok)
			if err == nil && validID(id) {
				ok, userID, scopes = true, id, sc
			} else if err != nil {
				s.log.Debug("external token refused", "err", err)
			}
		}
	}
	if !ok {
		s.mu.Lock()
		s.stats.Unauthorized++
		s.mu.Unlock()
		s.peekLimitHeaders(w, ep)
		writeRaw(w, http.StatusUnauthorized, contentProblem, bodyUnauthorized)
		return User{}, false
	}
	if !hasScope(scopes, "tweet.read") || !hasScope(scopes, "users.read") {
		s.peekLimitHeaders(w, ep)
		writeRaw(w, http.StatusForbidden, contentProblem, bodyForbidden)
		return User{}, false
	}
	u, known := s.store.user(userID)
	if !known {
		u = User{ID: userID, Username: "user" + userID, Name: "User " + userID}
	}
	return u, true
}

func hasScope(scopes []string, want string) bool {
	for _, s := range scopes {
		if s == want {
			return true
		}
	}
	return false
}

var (
	usersMeParams = set("expansions", "tweet.fields", "user.fields")
	searchParams  = set("query", "start_time", "end_time", "since_id", "until_id", "max_results",
		"next_token", "pagination_token", "sort_order", "expansions", "tweet.fields", "post.fields",
		"user.fields", "media.fields", "place.fields", "poll.fields")
	tweetFields = set("article", "attachments", "author_id", "card_uri", "community_id", "context_annotations",
		"conversation_id", "created_at", "display_text_range", "edit_controls", "edit_history_tweet_ids",
		"edit_history_post_ids", "entities", "geo", "id", "in_reply_to_user_id", "lang", "media_metadata",
		"non_public_metrics", "note_tweet", "organic_metrics", "possibly_sensitive", "promoted_metrics",
		"public_metrics", "referenced_tweets", "reply_settings", "scopes", "source", "text", "withheld")
	userFields = set("affiliation", "connection_status", "created_at", "description", "entities", "id",
		"location", "most_recent_tweet_id", "name", "pinned_tweet_id", "profile_banner_url",
		"profile_image_url", "protected", "public_metrics", "receives_your_dm", "subscription_type", "url",
		"username", "verified", "verified_type", "withheld")
	searchExpansions = set("attachments.poll_ids", "attachments.media_keys", "author_id",
		"edit_history_tweet_ids", "entities.mentions.username", "geo.place_id", "in_reply_to_user_id",
		"referenced_tweets.id", "referenced_tweets.id.author_id", "article.cover_media", "article.media_entities")
	usersMeExpansions = set("pinned_tweet_id", "affiliation.user_id", "most_recent_tweet_id")
	searchFieldLists  = map[string]map[string]bool{
		"expansions": searchExpansions, "tweet.fields": tweetFields, "post.fields": tweetFields, "user.fields": userFields,
	}
	usersMeFieldLists = map[string]map[string]bool{
		"expansions": usersMeExpansions, "tweet.fields": tweetFields, "user.fields": userFields,
	}
)

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// checkParams refuses unknown query parameters and unknown values of the
// comma-separated field lists, as X does.
func checkParams(w http.ResponseWriter, q url.Values, allowed map[string]bool, lists map[string]map[string]bool) bool {
	for k, vs := range q {
		if !allowed[k] {
			invalidRequest(w, k, strings.Join(vs, ","), "The query parameter ["+k+"] is not one of the parameters this endpoint accepts")
			return false
		}
		valid := lists[k]
		if valid == nil {
			continue
		}
		for _, v := range vs {
			for f := range strings.SplitSeq(v, ",") {
				if !valid[f] {
					invalidRequest(w, k, f, "The `"+k+"` query parameter value ["+f+"] is not one of the values this parameter accepts")
					return false
				}
			}
		}
	}
	return true
}

type userJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Username string `json:"username"`
}

func (s *Server) handleUsersMe(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r, EndpointUsersMe)
	if !ok || !s.admit(w, EndpointUsersMe, u.ID) {
		return
	}
	if !checkParams(w, r.URL.Query(), usersMeParams, usersMeFieldLists) {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Data userJSON `json:"data"`
	}{userJSON{u.ID, u.Name, u.Username}})
}

type metaJSON struct {
	NewestID    string `json:"newest_id,omitempty"`
	OldestID    string `json:"oldest_id,omitempty"`
	ResultCount int    `json:"result_count"`
	NextToken   string `json:"next_token,omitempty"`
}

type partialError struct {
	Value        string `json:"value"`
	Detail       string `json:"detail"`
	Title        string `json:"title"`
	ResourceType string `json:"resource_type"`
	Parameter    string `json:"parameter"`
	ResourceID   string `json:"resource_id"`
	Type         string `json:"type"`
}

func authorNotFound(id string) partialError {
	return partialError{
		Value:        id,
		Detail:       "Could not find user with author_id: [" + id + "].",
		Title:        "Not Found Error",
		ResourceType: "user",
		Parameter:    "author_id",
		ResourceID:   id,
		Type:         "https://api.x.com/2/problems/resource-not-found",
	}
}

// pageTokenEnc is lower-case base32 without padding: opaque, URL-safe.
var pageTokenEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func queryHash(q string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(q))
	return h.Sum32()
}

// encodePageToken makes a next_token: the exclusive upper bound of the next
// page and a hash of the query it belongs to. It never expires, and new
// posts (which get larger ids) cannot shift the page it names.
func encodePageToken(bound uint64, q string) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], bound)
	binary.BigEndian.PutUint32(b[8:], queryHash(q))
	return pageTokenEnc.EncodeToString(b[:])
}

func decodePageToken(tok, q string) (uint64, bool) {
	b, err := pageTokenEnc.DecodeString(tok)
	if err != nil || len(b) != 12 || binary.BigEndian.Uint32(b[8:]) != queryHash(q) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:8]), true
}

func parseIDParam(w http.ResponseWriter, q url.Values, name string) (uint64, bool, bool) {
	v := q.Get(name)
	if v == "" {
		return 0, false, true
	}
	if !validID(v) {
		invalidRequest(w, name, v, "The `"+name+"` query parameter value ["+v+"] does not match ^[0-9]{1,19}$")
		return 0, false, false
	}
	id, _ := strconv.ParseUint(v, 10, 64)
	return id, true, true
}

func parseTimeParam(w http.ResponseWriter, q url.Values, name string) (time.Time, bool) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		invalidRequest(w, name, v, "Invalid '"+name+"':'"+v+"'. '"+name+"' must be a valid RFC 3339 date-time.")
		return time.Time{}, false
	}
	return t, true
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r, EndpointSearch)
	if !ok {
		return
	}
	if s.cfg.OnSearch != nil {
		s.cfg.OnSearch(u.ID, r.URL.Query().Get("query"), s.now())
	}
	if !s.admit(w, EndpointSearch, u.ID) {
		return
	}
	q := r.URL.Query()
	if !checkParams(w, q, searchParams, searchFieldLists) {
		return
	}
	now := s.now()
	query := q.Get("query")
	if query == "" {
		invalidRequest(w, "query", "", "The `query` query parameter can not be empty")
		return
	}
	root, err := parseQuery(query)
	if err != nil {
		invalidRequest(w, "query", query, "There were errors processing your request: "+err.Error())
		return
	}
	maxResults := 10
	if v := q.Get("max_results"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 || n > 100 {
			invalidRequest(w, "max_results", v, "The `max_results` query parameter value ["+v+"] is not between 10 and 100")
			return
		}
		maxResults = n
	}
	sinceID, _, ok := parseIDParam(w, q, "since_id")
	if !ok {
		return
	}
	untilID, hasUntil, ok := parseIDParam(w, q, "until_id")
	if !ok {
		return
	}
	startTime, ok := parseTimeParam(w, q, "start_time")
	if !ok {
		return
	}
	endTime, ok := parseTimeParam(w, q, "end_time")
	if !ok {
		return
	}
	if q.Has("since_id") && q.Has("start_time") || q.Has("until_id") && q.Has("end_time") {
		params := map[string][]string{}
		for _, k := range []string{"since_id", "until_id", "start_time", "end_time"} {
			if q.Has(k) {
				params[k] = []string{q.Get(k)}
			}
		}
		invalidParams(w, params, conflictMessage)
		return
	}
	if !checkWindow(w, q, now, sinceID, startTime) {
		return
	}
	cutoff := now.Add(-SearchWindow)
	if !startTime.IsZero() && !endTime.IsZero() && !startTime.Before(endTime) {
		invalidRequest(w, "end_time", q.Get("end_time"), "Invalid 'end_time':'"+q.Get("end_time")+"'. 'end_time' must be after 'start_time'")
		return
	}
	if so := q.Get("sort_order"); so != "" && so != "recency" && so != "relevancy" {
		invalidRequest(w, "sort_order", so, "The `sort_order` query parameter value ["+so+"] is not one of [recency,relevancy]")
		return
	}
	tokName, tok := "next_token", q.Get("next_token")
	if tok == "" {
		tokName, tok = "pagination_token", q.Get("pagination_token")
	}
	if tok != "" {
		bound, ok := decodePageToken(tok, query)
		if !ok {
			invalidRequest(w, tokName, tok, "The `"+tokName+"` query parameter value ["+tok+"] is not valid for this query")
			return
		}
		if !hasUntil || bound < untilID {
			untilID, hasUntil = bound, true
		}
	}
	var fAuthor, fCreated, fLang, fConv, expandAuthor bool
	for _, k := range []string{"tweet.fields", "post.fields"} {
		for _, v := range q[k] {
			for f := range strings.SplitSeq(v, ",") {
				switch f {
				case "author_id":
					fAuthor = true
				case "created_at":
					fCreated = true
				case "lang":
					fLang = true
				case "conversation_id":
					fConv = true
				}
			}
		}
	}
	for _, v := range q["expansions"] {
		for f := range strings.SplitSeq(v, ",") {
			expandAuthor = expandAuthor || f == "author_id"
		}
	}

	// Bounds: ids are >= the snowflake of their time, so nothing below the
	// snowflake of the cutoff (or start_time) can be visible.
	lowID := max(sinceID+1, snowflake(cutoff))
	if !startTime.IsZero() {
		lowID = max(lowID, snowflake(startTime))
	}
	notBefore := cutoff.UnixNano()
	if !startTime.IsZero() {
		notBefore = max(notBefore, startTime.UnixNano())
	}
	notAfter := int64(1<<63 - 1)
	if !endTime.IsZero() {
		notAfter = endTime.UnixNano() - 1 // end_time is exclusive
	}

	st := s.store
	st.mu.RLock()
	sn := st.snapshotLocked()
	root.resolve(st)
	st.mu.RUnlock()

	lo := int32(sn.posFrom(lowID))
	hi := int32(len(sn.posts))
	if hasUntil {
		hi = int32(sn.posFrom(untilID))
	}
	var cur cursor
	if c, _, ok := root.plan(lo, hi); ok {
		cur = c
	} else {
		cur = &rangeCursor{cur: hi - 1, lo: lo}
	}
	var found [101]int32
	hits := found[:0]
	for pos := cur.next(); pos >= 0; pos = cur.next() {
		p := &sn.posts[pos]
		if p.created < notBefore || p.created > notAfter || !root.match(&sn, p) {
			continue
		}
		hits = append(hits, pos)
		if len(hits) > maxResults {
			break
		}
	}

	page := hits[:min(len(hits), maxResults)]
	var users []User
	var errs []partialError
	if expandAuthor && len(page) > 0 {
		var seenBuf [101]uint32
		seen := seenBuf[:0]
		st.mu.RLock()
		for _, pos := range page {
			a := sn.posts[pos].author
			if slices.Contains(seen, a) {
				continue
			}
			seen = append(seen, a)
			if int(a) < len(st.profiles) && st.profiles[a] != nil {
				users = append(users, *st.profiles[a])
			} else {
				errs = append(errs, authorNotFound(sn.names[a]))
			}
		}
		st.mu.RUnlock()
	}

	s.mu.Lock()
	s.rollMonthLocked(now)
	s.stats.PostsRead[u.ID] += len(page)
	s.stats.PostsReadTotal += len(page)
	s.monthRead += int64(len(page))
	injectPartial := s.partialErrors > 0
	if injectPartial {
		s.partialErrors--
	}
	if injectPartial || len(errs) > 0 {
		s.stats.PartialErrors++
	}
	s.mu.Unlock()
	if injectPartial {
		a := "0"
		if len(page) > 0 {
			a = sn.names[sn.posts[page[0]].author]
		}
		errs = append(errs, authorNotFound(a))
	}

	// Written by hand: encoding/json's reflection was a third of the
	// handler's time.
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], '{')
	if len(page) > 0 {
		b = append(b, `"data":[`...)
		for i, pos := range page {
			p := &sn.posts[pos]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":"`...)
			b = strconv.AppendUint(b, p.id, 10)
			b = append(b, `","text":`...)
			b = appendJSONString(b, p.text)
			b = append(b, `,"edit_history_tweet_ids":["`...)
			b = strconv.AppendUint(b, p.id, 10)
			b = append(b, `"]`...)
			if fAuthor {
				b = append(b, `,"author_id":`...)
				b = appendJSONString(b, sn.names[p.author])
			}
			if fCreated {
				b = append(b, `,"created_at":"`...)
				b = appendTimeMillis(b, time.Unix(0, p.created).UTC())
				b = append(b, '"')
			}
			if fLang {
				b = append(b, `,"lang":`...)
				b = appendJSONString(b, sn.names[p.lang])
			}
			if fConv {
				b = append(b, `,"conversation_id":"`...)
				b = strconv.AppendUint(b, p.id, 10)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, "],"...)
	}
	if len(users) > 0 {
		b = append(b, `"includes":{"users":[`...)
		for i, u := range users {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, u.ID)
			b = append(b, `,"name":`...)
			b = appendJSONString(b, u.Name)
			b = append(b, `,"username":`...)
			b = appendJSONString(b, u.Username)
			b = append(b, '}')
		}
		b = append(b, "]},"...)
	}
	if len(errs) > 0 {
		eb, _ := json.Marshal(errs) // plain strings: cannot fail
		b = append(b, `"errors":`...)
		b = append(b, eb...)
		b = append(b, ',')
	}
	b = append(b, `"meta":{`...)
	if len(page) > 0 {
		b = append(b, `"newest_id":"`...)
		b = strconv.AppendUint(b, sn.posts[page[0]].id, 10)
		b = append(b, `","oldest_id":"`...)
		b = strconv.AppendUint(b, sn.posts[page[len(page)-1]].id, 10)
		b = append(b, `",`...)
	}
	b = append(b, `"result_count":`...)
	b = strconv.AppendInt(b, int64(len(page)), 10)
	if len(hits) > maxResults {
		b = append(b, `,"next_token":"`...)
		b = append(b, encodePageToken(sn.posts[page[len(page)-1]].id, query)...)
		b = append(b, '"')
	}
	b = append(b, "}}"...)
	h := w.Header()
	h["Content-Type"] = []string{contentJSON}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		bufPool.Put(bp)
	}
}

// appendTimeMillis appends t (in UTC) as 2006-01-02T15:04:05.000Z, without
// the cost of a layout.
func appendTimeMillis(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	ms := t.Nanosecond() / 1e6
	pad := func(b []byte, v, n int) []byte {
		var tmp [4]byte
		for i := n - 1; i >= 0; i-- {
			tmp[i] = byte('0' + v%10)
			v /= 10
		}
		return append(b, tmp[:n]...)
	}
	b = pad(b, y, 4)
	b = append(b, '-')
	b = pad(b, int(mo), 2)
	b = append(b, '-')
	b = pad(b, d, 2)
	b = append(b, 'T')
	b = pad(b, h, 2)
	b = append(b, ':')
	b = pad(b, mi, 2)
	b = append(b, ':')
	b = pad(b, s, 2)
	b = append(b, '.')
	b = pad(b, ms, 3)
	return append(b, 'Z')
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
