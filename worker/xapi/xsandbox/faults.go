package xsandbox

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// faultState holds the armed faults of one endpoint.
type faultState struct {
	failN      int
	failStatus int
	failUntil  time.Time
	failUStat  int
	hangN      int
	malformedN int
}

type faultKind uint8

const (
	faultNone faultKind = iota
	faultHang
	faultFail
	faultMalformed
)

func (s *Server) faultFor(ep Endpoint) *faultState {
	f := s.faults[ep]
	if f == nil {
		f = &faultState{}
		s.faults[ep] = f
	}
	return f
}

func checkEndpoint(ep Endpoint) {
	if !knownEndpoint(ep) {
		panic(fmt.Sprintf("xsandbox: unknown endpoint %q", ep))
	}
}

func failStatus(status int) int {
	if status < 100 || status > 599 {
		return http.StatusServiceUnavailable
	}
	return status
}

// FailNext makes the next n requests to ep fail with status (503 when
// status is not a valid HTTP status) and a problem body, without doing
// anything else. Calls add up. It panics on an unknown endpoint.
func (s *Server) FailNext(ep Endpoint, n int, status int) {
	checkEndpoint(ep)
	s.mu.Lock()
	f := s.faultFor(ep)
	f.failN += n
	f.failStatus = failStatus(status)
	s.mu.Unlock()
}

// FailFor makes every request to ep fail with status until d has passed on
// the sandbox clock ([Config.Now]); with a [Clock], advance it to end the
// window. d <= 0 ends a window early.
func (s *Server) FailFor(ep Endpoint, d time.Duration, status int) {
	checkEndpoint(ep)
	s.mu.Lock()
	f := s.faultFor(ep)
	f.failUntil = s.now().Add(d)
	f.failUStat = failStatus(status)
	s.mu.Unlock()
}

// HangNext makes the next n requests to ep hang without a response until
// the client gives up or the server is closed. Calls add up.
func (s *Server) HangNext(ep Endpoint, n int) {
	checkEndpoint(ep)
	s.mu.Lock()
	s.faultFor(ep).hangN += n
	s.mu.Unlock()
}

// MalformedNext makes the next n requests to ep get a 200 with a truncated,
// invalid JSON body, without doing anything else. Calls add up.
func (s *Server) MalformedNext(ep Endpoint, n int) {
	checkEndpoint(ep)
	s.mu.Lock()
	s.faultFor(ep).malformedN += n
	s.mu.Unlock()
}

// DropAfterRotateNext makes the next n successful refresh_token grants on
// /2/oauth2/token rotate the refresh token, store the rotation (the old
// refresh token is spent, the new tokens are live) and then close the TCP
// connection without a response: the lost-response case. Calls add up.
func (s *Server) DropAfterRotateNext(n int) {
	s.mu.Lock()
	s.dropAfterRotate += n
	s.mu.Unlock()
}

// PartialErrorsNext makes the next n successful searches carry a partial
// errors[] array (a resource-not-found error for an author) beside data in
// their 200 response. Calls add up.
func (s *Server) PartialErrorsNext(n int) {
	s.mu.Lock()
	s.partialErrors += n
	s.mu.Unlock()
}

// ClearFaults disarms every fault switch.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	clear(s.faults)
	s.dropAfterRotate = 0
	s.partialErrors = 0
	s.mu.Unlock()
}

// takeFault consumes the fault armed for ep, if any. Hangs come first, then
// failures, then malformed bodies.
func (s *Server) takeFault(ep Endpoint) (faultKind, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[ep]
	if f == nil {
		return faultNone, 0
	}
	switch {
	case f.hangN > 0:
		f.hangN--
		s.stats.Faults[ep]++
		return faultHang, 0
	case f.failN > 0:
		f.failN--
		s.stats.Faults[ep]++
		return faultFail, f.failStatus
	case !f.failUntil.IsZero() && s.now().Before(f.failUntil):
		s.stats.Faults[ep]++
		return faultFail, f.failUStat
	case f.malformedN > 0:
		f.malformedN--
		s.stats.Faults[ep]++
		return faultMalformed, 0
	}
	return faultNone, 0
}

// wrap applies the fault switches of ep in front of h.
func (s *Server) wrap(ep Endpoint, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, status := s.takeFault(ep)
		switch kind {
		case faultHang:
			s.log.Debug("fault: hang", "endpoint", string(ep))
			select {
			case <-r.Context().Done():
			case <-s.closing:
			}
			return
		case faultFail:
			s.log.Debug("fault: fail", "endpoint", string(ep), "status", status)
			writeFailure(w, ep, status)
			return
		case faultMalformed:
			s.log.Debug("fault: malformed", "endpoint", string(ep))
			writeRaw(w, http.StatusOK, contentJSON, `{"data":[{"id":"1","text":"trunc`)
			return
		}
		h(w, r)
	})
}

// writeFailure answers a failed request as X does. On the API endpoints
// (search, users/me): a 503 as X sends it when overloaded, a problem of
// type about:blank under application/json (the body as logged in
// akrherz/iembot issue 171, 2026; the content type as in the headers
// quoted in plhery/node-twitter-api-v2 issue 499 and
// elizaos-plugins/plugin-twitter issue 41); another 5xx as X's OpenAPI
// description defines a server error (an internal-error problem). On the
// OAuth endpoints, and for other statuses, a problem of type about:blank.
func writeFailure(w http.ResponseWriter, ep Endpoint, status int) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	typ, ct := "about:blank", contentProblem
	if ep == EndpointSearch || ep == EndpointUsersMe {
		switch {
		case status == http.StatusServiceUnavailable:
			ct = contentJSON
		case status >= 500:
			typ = "https://api.x.com/2/problems/internal-error"
		}
	}
	writeRaw(w, status, ct,
		`{"title":`+strconv.Quote(text)+`,"detail":`+strconv.Quote(text)+`,"type":`+strconv.Quote(typ)+`,"status":`+strconv.Itoa(status)+`}`)
}

// dropConn closes the connection under w without a response.
func (s *Server) dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("xsandbox: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		s.log.Warn("hijack", "err", err)
		return
	}
	if err := conn.Close(); err != nil {
		s.log.Debug("close hijacked connection", slog.Any("err", err))
	}
}

// Stats are counters of what the sandbox was asked. Maps are never nil in a
// value returned by [Server.Stats], which is a deep copy.
type Stats struct {
	// AuthorizeRequests counts GET /i/oauth2/authorize requests that passed
	// validation.
	AuthorizeRequests int
	// Consents counts approvals (consent page or auto-approve); Denials
	// counts Cancel presses.
	Consents, Denials int
	// TokenRequests counts /2/oauth2/token requests by grant_type ("" when
	// missing), failed ones included.
	TokenRequests map[string]int
	// TokenErrors counts 4xx responses of /2/oauth2/token.
	TokenErrors int
	// RefreshReuses counts presentations of an already spent refresh token.
	RefreshReuses int
	// FamilyRevocations counts token families killed by refresh-token reuse
	// (with [Server.SetReuseRevokesFamily] on).
	FamilyRevocations int
	// Revocations counts known tokens revoked through /2/oauth2/revoke.
	Revocations int
	// UserRevocations counts grants killed by [Server.RevokeUser].
	UserRevocations int
	// Drops counts connections dropped after a rotation.
	Drops int
	// APICalls counts authenticated API requests by endpoint and user id,
	// rate-limited ones included.
	APICalls map[Endpoint]map[string]int
	// Unauthorized counts API responses 401.
	Unauthorized int
	// PostsRead counts posts returned by search, by user id: the unit X
	// bills.
	PostsRead map[string]int
	// PostsReadTotal is the sum of PostsRead.
	PostsReadTotal int
	// RateLimited counts 429 Too Many Requests responses; UsageCapped
	// counts 429 usage-capped responses.
	RateLimited, UsageCapped int
	// Faults counts injected faults (fail, hang, malformed) by endpoint.
	Faults map[Endpoint]int
	// PartialErrors counts 200 search responses that carried errors[].
	PartialErrors int
}

func newStats() Stats {
	return Stats{
		TokenRequests: make(map[string]int),
		APICalls:      make(map[Endpoint]map[string]int),
		PostsRead:     make(map[string]int),
		Faults:        make(map[Endpoint]int),
	}
}

func (st Stats) clone() Stats {
	c := st
	c.TokenRequests = make(map[string]int, len(st.TokenRequests))
	for k, v := range st.TokenRequests {
		c.TokenRequests[k] = v
	}
	c.APICalls = make(map[Endpoint]map[string]int, len(st.APICalls))
	for ep, m := range st.APICalls {
		mm := make(map[string]int, len(m))
		for k, v := range m {
			mm[k] = v
		}
		c.APICalls[ep] = mm
	}
	c.PostsRead = make(map[string]int, len(st.PostsRead))
	for k, v := range st.PostsRead {
		c.PostsRead[k] = v
	}
	c.Faults = make(map[Endpoint]int, len(st.Faults))
	for k, v := range st.Faults {
		c.Faults[k] = v
	}
	return c
}
