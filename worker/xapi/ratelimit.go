package xapi

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rate-limit headers are data from another clock: x-rate-limit-reset is a
// moment on X's clock, in Unix seconds, and the daemon's clock may be
// minutes ahead of it or behind it. The client therefore never compares a
// reset with its own clock when it can help it: how long a window still
// runs is the reset minus the response's own Date header (the server's
// clock at the answer), and that length is applied to the client's clock.
// Whatever the headers say (a reset in the past, in the far future,
// missing, non-numeric, negative, a Date missing or garbled), a hold is
// positive and bounded: at least MinHold, at most the endpoint's window
// plus holdSlack, never zero or negative.

// DefaultRateWindow is the length of X's rate-limit windows (15 minutes
// for every endpoint tagwatch uses).
const DefaultRateWindow = 15 * time.Minute

// MinHold is the shortest hold a spent window or a 429 gives.
const MinHold = time.Second

// holdSlack is how far past its window a hold may reach: X rounds resets
// down to the second, and a Date header has a resolution of a second.
const holdSlack = time.Minute

// maxResetDigits bounds the integer part of a reset (Unix seconds): 12
// digits reach the year 33658, so the arithmetic below cannot overflow.
const maxResetDigits = 12

// rateHeaders are the x-rate-limit-* and Date headers of one response, as
// far as they could be read.
type rateHeaders struct {
	// limit and remaining are -1 when absent or not a count.
	limit, remaining int
	// reset is the window's end on the server's clock, in Unix seconds
	// (a fraction rounded up); resetOK is false when it is absent or not
	// a positive number.
	reset   int64
	resetOK bool
	// date is the server's clock at the answer; dateOK is false when the
	// header is absent or garbled.
	date   time.Time
	dateOK bool
}

// parseCount reads a header holding a count: digits only (surrounding
// spaces allowed), else -1.
func parseCount(v string) int {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 9 {
		return -1
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// parseReset reads x-rate-limit-reset: Unix seconds as digits, with an
// optional fraction (rounded up). No sign, no exponent, at most
// maxResetDigits digits before the point; zero is not a reset.
func parseReset(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	whole, frac, hasFrac := strings.Cut(v, ".")
	if whole == "" || len(whole) > maxResetDigits || (hasFrac && frac == "") {
		return 0, false
	}
	var n int64
	for i := 0; i < len(whole); i++ {
		c := whole[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	up := false
	for i := 0; i < len(frac); i++ {
		c := frac[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		up = up || c != '0'
	}
	if up {
		n++
	}
	return n, n > 0
}

func parseRateHeaders(h http.Header) rateHeaders {
	rh := rateHeaders{limit: parseCount(h.Get("X-Rate-Limit-Limit")), remaining: parseCount(h.Get("X-Rate-Limit-Remaining"))}
	rh.reset, rh.resetOK = parseReset(h.Get("X-Rate-Limit-Reset"))
	if d := h.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			rh.date, rh.dateOK = t, true
		}
	}
	return rh
}

// rateHold is what one response says about its endpoint's window, on the
// client's clock.
type rateHold struct {
	// reset is when the window ends, on the client's clock; zero when the
	// response gave no usable reset.
	reset time.Time
	// hold is how long the endpoint must not be called from now; 0: it
	// may be. Otherwise within [MinHold, window+holdSlack].
	hold time.Duration
}

// holdOf decides what a response's headers mean at now (the client's
// clock), for an endpoint whose window is window long. limited is true
// for a 429.
//
//   - The window still runs for reset − Date (the server's own clock at
//     the answer), plus a second because X rounds the reset down; without
//     a usable Date, reset − now on the client's clock. That length is
//     applied to now, and bounded by window+holdSlack.
//   - A reset that is absent, not a positive number, or already past on
//     the server's clock is not usable.
//   - A 429 always holds: until the usable reset (at least MinHold), else
//     for the whole window. So does a spent window (remaining 0).
//   - Otherwise nothing is held.
func holdOf(rh rateHeaders, limited bool, now time.Time, window time.Duration) rateHold {
	maxHold := window + holdSlack
	var out rateHold
	var wait time.Duration
	usable := false
	if rh.resetOK {
		server := now
		if rh.dateOK {
			server = rh.date
		}
		secs := rh.reset - server.Unix() // both bounded: no overflow
		switch {
		case secs < 0: // past on the server's clock: not usable
		case secs >= int64(maxHold/time.Second):
			wait, usable = maxHold, true
		default:
			wait, usable = min(time.Duration(secs+1)*time.Second, maxHold), true
		}
	}
	if usable {
		out.reset = now.Add(wait)
	}
	if !limited && rh.remaining != 0 {
		return out
	}
	if usable {
		out.hold = max(wait, MinHold)
	} else {
		out.hold = window
	}
	return out
}

// RateWindow is what the API last said about one endpoint's rate-limit window
// for one user, on the client's clock. Windows are what a caller keeps
// across restarts (ChangedRateWindows, RestoreRateWindows), so a restarted daemon
// does not ask before a reset it was told of.
type RateWindow struct {
	// User is the caller's key of the token's owner; Endpoint the API
	// path (EndpointSearch, EndpointUsersMe).
	User, Endpoint string
	// Limit and Remaining are as last reported; -1 when not said.
	Limit, Remaining int
	// Reset is when the window ends; zero when no usable reset was given.
	Reset time.Time
	// NotBefore is when the endpoint may next be called for User; zero or
	// past when it may be now.
	NotBefore time.Time
	// Observed is when the client last read the window's headers.
	Observed time.Time
}

type limitKey struct{ user, endpoint string }

// limitState is one window as the client keeps it.
type limitState struct {
	limit, remaining int
	reset, notBefore time.Time
	observed         time.Time
}

func (s *limitState) window(k limitKey) RateWindow {
	return RateWindow{User: k.user, Endpoint: k.endpoint, Limit: s.limit, Remaining: s.remaining, Reset: s.reset,
		NotBefore: s.notBefore, Observed: s.observed}
}

// NotBefore returns when endpoint may next be called for user (the zero
// time when it may be called now).
func (c *Client) NotBefore(user, endpoint string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.limits[limitKey{user, endpoint}]
	if s == nil || !s.notBefore.After(c.now()) {
		return time.Time{}
	}
	return s.notBefore
}

// minSweep is the fewest windows kept before observe drops those that
// are over.
const minSweep = 4096

// observe records the rate-limit headers of a response of endpoint for
// user; limited is true for a 429. A 429 or a spent window holds the
// endpoint for the user as holdOf says. A hold that begins, or moves
// later, marks the window changed (ChangedRateWindows); other answers only
// update what is known of the window.
func (c *Client) observe(user, endpoint string, h http.Header, limited bool) {
	rh := parseRateHeaders(h)
	if rh.remaining >= 0 && c.cfg.OnRateLimit != nil {
		c.cfg.OnRateLimit(endpoint, rh.remaining)
	}
	now := c.now()
	rd := holdOf(rh, limited, now, c.cfg.RateWindow)
	c.mu.Lock()
	defer c.mu.Unlock()
	k := limitKey{user, endpoint}
	s := c.limits[k]
	if s == nil {
		if rd.hold == 0 && rh.remaining < 0 && rd.reset.IsZero() {
			return // nothing said, nothing held
		}
		s = &limitState{limit: -1, remaining: -1}
		c.limits[k] = s
	}
	s.observed = now
	if rh.limit >= 0 {
		s.limit = rh.limit
	}
	if rh.remaining >= 0 {
		s.remaining = rh.remaining
	} else if limited {
		s.remaining = 0
	}
	if !rd.reset.IsZero() {
		s.reset = rd.reset
	}
	if rd.hold > 0 {
		nb := now.Add(rd.hold)
		if nb.Sub(s.notBefore) >= time.Second { // begins, or moves later
			s.notBefore = nb
			c.changed[k] = true
		}
	}
	if len(c.limits) > max(c.sweepAt, minSweep) { // drop windows that are over
		for k, s := range c.limits {
			if !s.notBefore.After(now) && !s.reset.After(now) && !c.changed[k] {
				delete(c.limits, k)
			}
		}
		// With every window live (100,000 users in their 15 minutes), a
		// sweep at each request would read them all each time.
		c.sweepAt = 2 * len(c.limits)
	}
}

// ChangedRateWindows returns the windows whose hold began or moved later since
// the last call (by user, then endpoint), for a caller that keeps them
// across restarts: it changes when a window becomes spent or a 429
// arrives, not on every request.
func (c *Client) ChangedRateWindows() []RateWindow {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.changed) == 0 {
		return nil
	}
	out := make([]RateWindow, 0, len(c.changed))
	for k := range c.changed {
		if s := c.limits[k]; s != nil {
			out = append(out, s.window(k))
		}
	}
	clear(c.changed)
	sortWindows(out)
	return out
}

// RateWindows returns every window the client knows of that is not over (a
// hold or a reset still ahead), by user, then endpoint.
func (c *Client) RateWindows() []RateWindow {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var out []RateWindow
	for k, s := range c.limits {
		if s.notBefore.After(now) || s.reset.After(now) {
			out = append(out, s.window(k))
		}
	}
	sortWindows(out)
	return out
}

// RestoreRateWindows gives the client windows kept before a restart. A hold
// still ahead is kept, bounded by the endpoint's window plus a minute
// from now (a stored time cannot hold an endpoint for longer than the API
// could); a hold the client already has that ends later stays. Windows
// that are over, or without a user or endpoint, are ignored. Restored
// windows are not reported by ChangedRateWindows.
func (c *Client) RestoreRateWindows(ws []RateWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	maxNB := now.Add(c.cfg.RateWindow + holdSlack)
	for _, w := range ws {
		if w.User == "" || w.Endpoint == "" || !w.NotBefore.After(now) {
			continue
		}
		nb := w.NotBefore
		if nb.After(maxNB) {
			nb = maxNB
		}
		k := limitKey{w.User, w.Endpoint}
		s := c.limits[k]
		if s == nil {
			s = &limitState{limit: w.Limit, remaining: w.Remaining, reset: w.Reset, observed: w.Observed}
			c.limits[k] = s
		}
		if nb.After(s.notBefore) {
			s.notBefore = nb
		}
	}
}

func sortWindows(ws []RateWindow) {
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].User != ws[j].User {
			return ws[i].User < ws[j].User
		}
		return ws[i].Endpoint < ws[j].Endpoint
	})
}
