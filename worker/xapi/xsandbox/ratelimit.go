package xsandbox

import (
	"net/http"
	"strconv"
	"time"
)

// RateLimit is the rate limit of one endpoint: at most PerUser requests per
// user and PerApp requests for the whole app per Window. A zero PerUser or
// PerApp means no limit of that kind.
type RateLimit struct {
	PerUser, PerApp int
	Window          time.Duration
}

type winKey struct {
	ep   Endpoint
	user string
}

// window is a fixed rate-limit window that starts with its first request.
type window struct {
	start time.Time
	count int
}

func (w *window) roll(now time.Time, d time.Duration) {
	if w.start.IsZero() || now.Before(w.start) || now.Sub(w.start) >= d {
		w.start = now
		w.count = 0
	}
}

func (w *window) reset(d time.Duration) time.Time { return w.start.Add(d) }

// SetRateLimit sets the limits of ep and starts new windows for it. The
// defaults are X's: search 300 per user and 450 per app per 15 minutes,
// users/me 75 per user per 15 minutes; other endpoints are not limited. A
// window <= 0 means 15 minutes.
func (s *Server) SetRateLimit(ep Endpoint, perUser, perApp int, window time.Duration) {
	checkEndpoint(ep)
	if window <= 0 {
		window = 15 * time.Minute
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[ep] = RateLimit{PerUser: perUser, PerApp: perApp, Window: window}
	delete(s.appWin, ep)
	for k := range s.userWin {
		if k.ep == ep {
			delete(s.userWin, k)
		}
	}
}

// SetMonthlyPostBudget sets how many posts the app may read per calendar
// month (UTC, by the sandbox clock); n <= 0 means no cap. Once the posts
// read this month reach n, search answers X's usage-capped 429 until the
// month changes or the budget is raised. A search that starts under the
// budget is served in full, so the count may pass it, as on X.
func (s *Server) SetMonthlyPostBudget(n int64) {
	s.mu.Lock()
	s.budget = n
	s.capReached = false // see CapUsage
	s.mu.Unlock()
}

func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month())
}

// rollMonthLocked starts a new billing month when now is in another one.
func (s *Server) rollMonthLocked(now time.Time) {
	if mo := monthOf(now); mo != s.month {
		s.month, s.monthRead = mo, 0
	}
}

// admit counts an authenticated API request of user on ep, applies the
// usage cap and the rate limits, and sets the x-rate-limit headers and a
// Date header from the sandbox's clock (what a client reads the reset
// against). It
// writes the 429 and returns false when the request must stop here.
func (s *Server) admit(w http.ResponseWriter, ep Endpoint, user string) bool {
	s.mu.Lock()
	now := s.now()
	m := s.stats.APICalls[ep]
	if m == nil {
		m = make(map[string]int)
		s.stats.APICalls[ep] = m
	}
	m[user]++
	capped := false
	if ep == EndpointSearch && (s.budget > 0 || s.capReached) {
		s.rollMonthLocked(now)
		capped = s.capReached || s.monthRead >= s.budget
	}
	lim := s.limits[ep]
	var uw, aw *window
	if lim.PerUser > 0 {
		k := winKey{ep, user}
		uw = s.userWin[k]
		if uw == nil {
			uw = &window{}
			s.userWin[k] = uw
		}
		uw.roll(now, lim.Window)
	}
	if lim.PerApp > 0 {
		aw = s.appWin[ep]
		if aw == nil {
			aw = &window{}
			s.appWin[ep] = aw
		}
		aw.roll(now, lim.Window)
	}
	userOut := uw != nil && uw.count >= lim.PerUser
	appOut := aw != nil && aw.count >= lim.PerApp
	limited := userOut || appOut
	if !limited && !capped {
		if uw != nil {
			uw.count++
		}
		if aw != nil {
			aw.count++
		}
	}
	// Report the window that binds: the exhausted one, else the one with
	// fewer requests left (the user's on a tie).
	var rw *window
	var rl, remaining int
	var reset int64
	switch {
	case uw != nil && (userOut || aw == nil || (!appOut && lim.PerUser-uw.count <= lim.PerApp-aw.count)):
		rw, rl = uw, lim.PerUser
	case aw != nil:
		rw, rl = aw, lim.PerApp
	}
	switch {
	case capped:
		s.stats.UsageCapped++
	case limited:
		s.stats.RateLimited++
	}
	if rw != nil {
		remaining = max(0, rl-rw.count)
		reset = rw.reset(lim.Window).Unix()
	}
	s.mu.Unlock()

	// The answer's Date is the sandbox's clock, as X's is X's: a client
	// reads the reset against it (the two clocks may differ).
	w.Header()["Date"] = []string{now.UTC().Format(http.TimeFormat)}
	if rw != nil {
		h := w.Header()
		h["X-Rate-Limit-Limit"] = []string{strconv.Itoa(rl)}
		h["X-Rate-Limit-Remaining"] = []string{strconv.Itoa(remaining)}
		h["X-Rate-Limit-Reset"] = []string{strconv.FormatInt(reset, 10)}
	}
	switch {
	case capped:
		writeRaw(w, http.StatusTooManyRequests, contentProblem, bodyUsageCapped)
		return false
	case limited:
		writeRaw(w, http.StatusTooManyRequests, contentProblem, bodyTooManyRequests)
		return false
	}
	return true
}

// peekLimitHeaders sets x-rate-limit headers for a request that is refused
// before it counts (401): a full window of the endpoint's binding limit.
func (s *Server) peekLimitHeaders(w http.ResponseWriter, ep Endpoint) {
	s.mu.Lock()
	lim := s.limits[ep]
	now := s.now()
	s.mu.Unlock()
	l := lim.PerUser
	if l == 0 {
		l = lim.PerApp
	}
	if l == 0 {
		return
	}
	h := w.Header()
	h["Date"] = []string{now.UTC().Format(http.TimeFormat)}
	h["X-Rate-Limit-Limit"] = []string{strconv.Itoa(l)}
	h["X-Rate-Limit-Remaining"] = []string{strconv.Itoa(l)}
	h["X-Rate-Limit-Reset"] = []string{strconv.FormatInt(now.Add(lim.Window).Unix(), 10)}
}
