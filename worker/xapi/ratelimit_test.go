package xapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

type fixedToken struct{}

func (fixedToken) Token(context.Context) (secret.AccessToken, error) {
	return secret.NewAccessToken("tok"), nil
}
func (fixedToken) Invalidate(context.Context, secret.AccessToken) (secret.AccessToken, error) {
	return secret.AccessToken{}, errors.New("refused")
}

// ours is the daemon's clock in these tests.
var ours = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// TestRateLimitHold: every answer X can give about its windows leads to a
// sane hold on the daemon's clock: none while the window has requests
// left, else positive and at most the window plus a minute, computed as
// reset − the answer's Date, never zero or negative. Each row is a real
// HTTP answer with those headers; a held endpoint is then refused without
// a request.
func TestRateLimitHold(t *testing.T) {
	const window = 15 * time.Minute
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	date := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
	ahead5, behind5 := ours.Add(-5*time.Minute), ours.Add(5*time.Minute) // the server's clock when ours is ahead, behind
	type hdr map[string]string
	for _, tc := range []struct {
		name   string
		status int
		h      hdr // "Date" absent: no Date header at all
		hold   time.Duration
	}{
		// The window has requests left: nothing is held, whatever the reset.
		{"200 with requests left", 200, hdr{"Date": date(ours), "X-Rate-Limit-Limit": "300", "X-Rate-Limit-Remaining": "5", "X-Rate-Limit-Reset": unix(ours.Add(10 * time.Minute))}, 0},
		{"200 without headers", 200, hdr{"Date": date(ours)}, 0},
		{"200, remaining missing", 200, hdr{"Date": date(ours), "X-Rate-Limit-Reset": unix(ours.Add(time.Minute))}, 0},
		{"200, remaining not a count", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "-1", "X-Rate-Limit-Reset": unix(ours.Add(time.Minute))}, 0},
		{"200, reset in the past, requests left", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "3", "X-Rate-Limit-Reset": unix(ours.Add(-time.Hour))}, 0},

		// A spent window holds until its reset, by the server's clock.
		{"200 spent, reset in 10m", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(10 * time.Minute))}, 10*time.Minute + time.Second},
		{"200 spent, remaining with spaces", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": " 0 ", "X-Rate-Limit-Reset": unix(ours.Add(time.Minute))}, time.Minute + time.Second},
		{"200 spent, reset missing", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0"}, window},
		{"200 spent, reset non-numeric", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "soon"}, window},
		{"200 spent, reset in the past", 200, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(-time.Minute))}, window},
		{"503 spent, reset in 1m", 503, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(time.Minute))}, time.Minute + time.Second},

		// A 429 always holds: until a usable reset, else the whole window.
		{"429, reset in 10m", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(10 * time.Minute))}, 10*time.Minute + time.Second},
		{"429, reset now", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours)}, time.Second},
		{"429, reset in the past", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(-10 * time.Minute))}, window},
		{"429, reset in the far future", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "32503680000"}, window + time.Minute},
		{"429, reset past the year 33658", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "99999999999999999999"}, window},
		{"429, reset missing", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "0"}, window},
		{"429, reset non-numeric", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": "tomorrow"}, window},
		{"429, reset negative", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": "-" + unix(ours.Add(time.Minute))}, window},
		{"429, reset zero", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": "0"}, window},
		{"429, reset an exponent", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": "1.8e9"}, window},
		{"429, reset a float", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": unix(ours.Add(time.Minute)) + ".25"}, time.Minute + 2*time.Second},
		{"429, reset a whole float", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": unix(ours.Add(time.Minute)) + ".000"}, time.Minute + time.Second},
		{"429, remaining missing", 429, hdr{"Date": date(ours), "X-Rate-Limit-Reset": unix(ours.Add(2 * time.Minute))}, 2*time.Minute + time.Second},
		{"429, remaining left (the app's window)", 429, hdr{"Date": date(ours), "X-Rate-Limit-Remaining": "12", "X-Rate-Limit-Reset": unix(ours.Add(2 * time.Minute))}, 2*time.Minute + time.Second},
		{"429 without headers", 429, hdr{}, window},
		{"429 without any header, Date too", 429, nil, window},

		// Clock skew: the reset is read against the answer's own Date.
		{"daemon 5m ahead, Date given", 429, hdr{"Date": date(ahead5), "X-Rate-Limit-Reset": unix(ahead5.Add(10 * time.Minute))}, 10*time.Minute + time.Second},
		{"daemon 5m behind, Date given", 429, hdr{"Date": date(behind5), "X-Rate-Limit-Reset": unix(behind5.Add(10 * time.Minute))}, 10*time.Minute + time.Second},
		{"daemon 1h behind, Date given", 429, hdr{"Date": date(ours.Add(time.Hour)), "X-Rate-Limit-Reset": unix(ours.Add(time.Hour + 3*time.Minute))}, 3*time.Minute + time.Second},
		{"daemon 1h ahead, spent, Date given", 200, hdr{"Date": date(ours.Add(-time.Hour)), "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": unix(ours.Add(-time.Hour + 3*time.Minute))}, 3*time.Minute + time.Second},
		{"daemon 5m ahead, no Date", 429, hdr{"Date": "", "X-Rate-Limit-Reset": unix(ahead5.Add(10 * time.Minute))}, 5*time.Minute + time.Second},
		{"daemon 5m behind, no Date", 429, hdr{"Date": "", "X-Rate-Limit-Reset": unix(behind5.Add(10 * time.Minute))}, 15*time.Minute + time.Second},
		{"daemon 20m behind, no Date: bounded", 429, hdr{"Date": "", "X-Rate-Limit-Reset": unix(ours.Add(30 * time.Minute))}, window + time.Minute},
		{"daemon 20m ahead, no Date: reset past, whole window", 429, hdr{"Date": "", "X-Rate-Limit-Reset": unix(ours.Add(-10 * time.Minute))}, window},
		{"Date garbled: our clock", 429, hdr{"Date": "yesterday", "X-Rate-Limit-Reset": unix(ours.Add(4 * time.Minute))}, 4*time.Minute + time.Second},
		{"Date in RFC 850", 429, hdr{"Date": behind5.Format(time.RFC850), "X-Rate-Limit-Reset": unix(behind5.Add(time.Minute))}, time.Minute + time.Second},
		{"Date in ANSI C", 429, hdr{"Date": behind5.Format(time.ANSIC), "X-Rate-Limit-Reset": unix(behind5.Add(time.Minute))}, time.Minute + time.Second},
		{"Date in 1970", 429, hdr{"Date": date(time.Unix(0, 0)), "X-Rate-Limit-Reset": unix(ours)}, window + time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				h := w.Header()
				if tc.h == nil {
					h["Date"] = nil // suppresses the server's own
				}
				for k, v := range tc.h {
					if v == "" {
						h[k] = nil
						continue
					}
					h.Set(k, v)
				}
				switch tc.status {
				case 200:
					w.Write([]byte(`{"data":{"id":"7","name":"n","username":"u"}}`))
				case 429:
					w.WriteHeader(429)
					w.Write([]byte(`{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`))
				default:
					w.WriteHeader(tc.status)
				}
			}))
			defer srv.Close()
			c := New(Config{BaseURL: srv.URL, Retries: -1, Now: func() time.Time { return ours }})
			_, err := c.UsersMe(context.Background(), fixedToken{}, "g1")
			var rl *RateLimitError
			if tc.status == 429 && (!errors.As(err, &rl) || rl.Local || !rl.NotBefore.Equal(ours.Add(tc.hold))) {
				t.Fatalf("UsersMe = %v, want a *RateLimitError until %s", err, ours.Add(tc.hold))
			}
			nb := c.NotBefore("g1", EndpointUsersMe)
			if tc.hold == 0 {
				if !nb.IsZero() {
					t.Fatalf("NotBefore = %s, want no hold", nb)
				}
				return
			}
			if got := nb.Sub(ours); got != tc.hold {
				t.Fatalf("hold = %s, want %s", got, tc.hold)
			}
			if _, err := c.UsersMe(context.Background(), fixedToken{}, "g1"); !errors.As(err, &rl) || !rl.Local || requests.Load() != 1 {
				t.Errorf("a call while held = %v after %d requests, want a local *RateLimitError and 1 request", err, requests.Load())
			}
			if nb := c.NotBefore("g2", EndpointUsersMe); !nb.IsZero() {
				t.Errorf("another user is held until %s, want not held", nb)
			}
		})
	}
}

// TestRateLimitSkewedSandbox: the X sandbox's clock is minutes ahead of,
// or behind, the daemon's; its answers carry its own Date. A spent window
// holds exactly as long as the sandbox says it still runs, on the
// daemon's clock, and a request after the hold gets through.
func TestRateLimitSkewedSandbox(t *testing.T) {
	for _, skew := range []time.Duration{-7 * time.Minute, 0, 7 * time.Minute, 3 * time.Hour} {
		t.Run("server "+skew.String(), func(t *testing.T) {
			sbClock := xsandbox.NewClock(ours.Add(skew))
			sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, Now: sbClock.Now})
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
			sb.SetRateLimit(xsandbox.EndpointUsersMe, 2, 0, 20*time.Second)
			clock := xsandbox.NewClock(ours)
			c := New(Config{BaseURL: sb.URL(), Retries: -1, Now: clock.Now})
			ts := staticTS{secret.NewAccessToken(at)}
			for i := 0; i < 2; i++ {
				if _, err := c.UsersMe(context.Background(), ts, "g1"); err != nil {
					t.Fatal(err)
				}
			}
			// Spent: the window runs 20 s from the first request, on the
			// sandbox's clock.
			if got := c.NotBefore("g1", EndpointUsersMe).Sub(clock.Now()); got != 21*time.Second {
				t.Fatalf("hold after the window was spent = %s, want 21s (20 s left + 1 s)", got)
			}
			for _, d := range []time.Duration{20 * time.Second, time.Second} {
				clock.Advance(d)
				sbClock.Advance(d)
				_, err := c.UsersMe(context.Background(), ts, "g1")
				if d == 20*time.Second && !errors.Is(err, ErrRateLimited) {
					t.Errorf("call 1 s before the reset = %v, want refused locally", err)
				}
				if d == time.Second && err != nil {
					t.Errorf("call after the reset = %v", err)
				}
			}
			if st := sb.Stats(); st.RateLimited != 0 {
				t.Errorf("the sandbox answered %d 429s, want none", st.RateLimited)
			}
		})
	}
}

type staticTS struct{ tok secret.AccessToken }

func (s staticTS) Token(context.Context) (secret.AccessToken, error) { return s.tok, nil }
func (s staticTS) Invalidate(context.Context, secret.AccessToken) (secret.AccessToken, error) {
	return secret.AccessToken{}, errors.New("refused")
}

// TestRateWindowsKept: a window's hold is reported for keeping when it
// begins or moves, not on every request; restored windows hold a fresh
// client, bounded by the window plus a minute, and windows that are over
// are ignored.
func TestRateWindowsKept(t *testing.T) {
	clock := xsandbox.NewClock(ours)
	var remaining atomic.Int32
	remaining.Store(3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Date", clock.Now().Format(http.TimeFormat))
		h.Set("X-Rate-Limit-Limit", "3")
		h.Set("X-Rate-Limit-Remaining", strconv.Itoa(int(remaining.Add(-1))))
		h.Set("X-Rate-Limit-Reset", strconv.FormatInt(ours.Add(time.Minute).Unix(), 10))
		w.Write([]byte(`{"data":{"id":"7","name":"n","username":"u"}}`))
	}))
	defer srv.Close()
	c := New(Config{BaseURL: srv.URL, Retries: -1, Now: clock.Now})
	for i := 0; i < 2; i++ {
		if _, err := c.UsersMe(context.Background(), fixedToken{}, "g1"); err != nil {
			t.Fatal(err)
		}
		if ws := c.ChangedRateWindows(); len(ws) != 0 {
			t.Fatalf("request %d with requests left changed %+v, want nothing to keep", i+1, ws)
		}
	}
	if _, err := c.UsersMe(context.Background(), fixedToken{}, "g1"); err != nil {
		t.Fatal(err)
	}
	ws := c.ChangedRateWindows()
	want := RateWindow{User: "g1", Endpoint: EndpointUsersMe, Limit: 3, Remaining: 0, Reset: ours.Add(61 * time.Second),
		NotBefore: ours.Add(61 * time.Second), Observed: ours}
	if len(ws) != 1 || ws[0] != want {
		t.Fatalf("ChangedRateWindows after the window was spent = %+v, want %+v", ws, want)
	}
	if ws := c.ChangedRateWindows(); len(ws) != 0 {
		t.Errorf("ChangedRateWindows twice = %+v, want nothing the second time", ws)
	}
	if got := c.RateWindows(); len(got) != 1 || got[0] != want {
		t.Errorf("RateWindows = %+v, want %+v", got, want)
	}

	fresh := New(Config{BaseURL: srv.URL, Retries: -1, Now: clock.Now})
	far := RateWindow{User: "g2", Endpoint: EndpointSearch, Limit: -1, Remaining: 0, NotBefore: ours.Add(24 * time.Hour)}
	over := RateWindow{User: "g3", Endpoint: EndpointSearch, NotBefore: ours.Add(-time.Second)}
	fresh.RestoreRateWindows([]RateWindow{want, far, over, {Endpoint: EndpointSearch, NotBefore: ours.Add(time.Minute)}})
	if nb := fresh.NotBefore("g1", EndpointUsersMe); !nb.Equal(want.NotBefore) {
		t.Errorf("restored hold = %s, want %s", nb, want.NotBefore)
	}
	if nb := fresh.NotBefore("g2", EndpointSearch); !nb.Equal(ours.Add(16 * time.Minute)) {
		t.Errorf("restored far-future hold = %s, want bounded to %s", nb, ours.Add(16*time.Minute))
	}
	if nb := fresh.NotBefore("g3", EndpointSearch); !nb.IsZero() {
		t.Errorf("restored hold that is over = %s, want none", nb)
	}
	if _, err := fresh.UsersMe(context.Background(), fixedToken{}, "g1"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("a restored client asked before the known reset: %v", err)
	}
	if ws := fresh.ChangedRateWindows(); len(ws) != 0 {
		t.Errorf("restored windows reported as changed: %+v", ws)
	}
}

// FuzzRateLimitHeaders: whatever the x-rate-limit-* and Date headers say,
// and however far the daemon's clock is from the server's, a hold is
// zero only while the window has requests left (never after a 429 or on
// a spent window), and otherwise between MinHold and the window plus a
// minute; a reset, when one is kept, is ahead and as bounded.
func FuzzRateLimitHeaders(f *testing.F) {
	base := strconv.FormatInt(ours.Unix(), 10)
	for _, s := range [][4]string{
		{"300", "0", base, ours.Format(http.TimeFormat)},
		{"300", "12", "1764158400", ""},
		{"", "", "", ""},
		{"x", "-1", "-1764158400", "garbage"},
		{"1", "0", "99999999999999999999", "Thu, 01 Jan 1970 00:00:00 GMT"},
		{"1", " 0", base + ".5", "Monday, 02-Jan-06 15:04:05 MST"},
		{"1", "0", "1e9", "Mon Jan  2 15:04:05 2006"},
	} {
		f.Add(s[0], s[1], s[2], s[3], true, int64(0))
		f.Add(s[0], s[1], s[2], s[3], false, int64(-3600))
	}
	f.Fuzz(func(t *testing.T, limit, remaining, reset, date string, limited bool, skew int64) {
		h := http.Header{}
		h.Set("X-Rate-Limit-Limit", limit)
		h.Set("X-Rate-Limit-Remaining", remaining)
		h.Set("X-Rate-Limit-Reset", reset)
		h.Set("Date", date)
		now := ours.Add(time.Duration(skew%(400*24*3600)) * time.Second)
		for _, window := range []time.Duration{DefaultRateWindow, 20 * time.Second} {
			rh := parseRateHeaders(h)
			got := holdOf(rh, limited, now, window)
			maxHold := window + holdSlack
			spent := limited || rh.remaining == 0
			switch {
			case spent && (got.hold < MinHold || got.hold > maxHold):
				t.Fatalf("hold %s for a spent window (limited %v, remaining %q, reset %q, date %q), want within [%s, %s]",
					got.hold, limited, remaining, reset, date, MinHold, maxHold)
			case !spent && got.hold != 0:
				t.Fatalf("hold %s with requests left (remaining %q)", got.hold, remaining)
			case !got.reset.IsZero() && (!got.reset.After(now) || got.reset.Sub(now) > maxHold):
				t.Fatalf("reset %s is not within (now, now+%s]", got.reset.Sub(now), maxHold)
			}
		}
	})
}

// TestObserveDropsWindowsOver: the windows the client keeps, one per user
// and endpoint, are dropped once they are over, and only then: with
// 3×minSweep users inside their windows every window is kept (a run
// still needs it); after those windows end, the next sweep drops them
// all and keeps the live ones. A sweep happens when the table has doubled
// since the last one, so its cost is spread over the requests (with
// 100,000 users inside their windows, each request read every window).
func TestObserveDropsWindowsOver(t *testing.T) {
	now := ours
	c := New(Config{Now: func() time.Time { return now }})
	h := func(reset time.Time) http.Header {
		return http.Header{"X-Rate-Limit-Limit": {"300"}, "X-Rate-Limit-Remaining": {"200"},
			"X-Rate-Limit-Reset": {strconv.FormatInt(reset.Unix(), 10)}, "Date": {now.UTC().Format(http.TimeFormat)}}
	}
	const ep = "/2/tweets/search/recent"
	n := 3 * minSweep
	for i := range n {
		c.observe("user"+strconv.Itoa(i), ep, h(now.Add(10*time.Minute)), false)
	}
	if got := len(c.limits); got != n {
		t.Fatalf("windows kept while live = %d, want %d", got, n)
	}
	now = now.Add(11 * time.Minute) // every window so far is over
	late := 0
	for prev := len(c.limits); ; prev = len(c.limits) {
		c.observe("late"+strconv.Itoa(late), ep, h(now.Add(10*time.Minute)), false)
		late++
		if len(c.limits) < prev {
			break // swept
		}
		if late > 4*n {
			t.Fatalf("no sweep after %d more windows (sweepAt %d)", late, c.sweepAt)
		}
	}
	if got := len(c.limits); got != late {
		t.Errorf("windows kept after a sweep = %d, want the %d live ones", got, late)
	}
	for k := range c.limits {
		if !strings.HasPrefix(k.user, "late") {
			t.Errorf("window of %s kept after it ended", k.user)
			break
		}
	}
	if got := c.sweepAt; got != 2*late {
		t.Errorf("sweepAt after a sweep that kept %d windows = %d, want %d", late, got, 2*late)
	}
}
