package worker_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

// countingStore counts the worker's writes of rate-limit windows.
type countingStore struct {
	*vault.DB
	saves atomic.Int32
}

func (c *countingStore) SaveRateWindows(ws ...vault.RateWindow) error {
	c.saves.Add(1)
	return c.DB.SaveRateWindows(ws...)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) lines(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestLocalHoldsVisibleC09: runs the local limiter holds without a
// request are visible: Holds and HoldOf name the provider, the user, the
// endpoint, which window (the provider's per-user window, or the user's
// fair share of the app's) and until when; the log says it once per
// window, not once per held run; and a held run writes nothing to the
// store (the provider's window is saved once, when it becomes spent).
func TestLocalHoldsVisibleC09(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perUser  int // X's per-user limit of search per 15 min
		appShare int // Config.AppRequestsPerWindow
		window   string
		logLine  string
		saves    int32 // per spent window
		kind     string
	}{
		{"X's per-user window spent", 2, -1, worker.HoldPerUser, "provider's rate-limit window spent", 1, worker.EventRateLimited},
		{"the user's fair share of the app's window used", 300, 2, worker.HoldFairShare, "user has used their share", 0, worker.EventSkipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cs *countingStore
			logs := &lockedBuffer{}
			f := newFix(t, fixOpts{wcfg: func(c *worker.Config) {
				cs = &countingStore{DB: c.DB.(*vault.DB)}
				c.DB, c.AppRequestsPerWindow = cs, tc.appShare
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			}})
			f.sb.SetRateLimit(xsandbox.EndpointSearch, tc.perUser, 0, 15*time.Minute)
			id, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1s"}, time.Time{})
			start := f.clock.Now()
			for window := 1; window <= 2; window++ {
				for i := 0; i < 2; i++ {
					f.mustRun(id)
					f.clock.Advance(time.Second)
				}
				for i := 0; i < 10; i++ {
					ev := f.run(id)
					if ev.Kind != tc.kind || ev.NotBefore.IsZero() {
						t.Fatalf("window %d, held run %d = %s %s %v, want %s with a reset", window, i, ev.Kind, ev.Reason, ev.Err, tc.kind)
					}
					f.clock.Advance(time.Second)
				}
				hs := f.w.Holds()
				// X's window: from its first request, one second past the reset.
				// The fair share's: AppWindow from its first request.
				until := start.Add(15*time.Minute + time.Second)
				if tc.window == worker.HoldFairShare {
					until = start.Add(15 * time.Minute)
				}
				want := worker.Hold{Provider: "x", UserID: "u100", Endpoint: xapi.EndpointSearch, Window: tc.window, Until: until}
				if len(hs) != 1 || hs[0] != want {
					t.Fatalf("window %d: Holds = %+v, want %+v", window, hs, want)
				}
				if h, ok := f.w.HoldOf("u100", "x"); !ok || h != want {
					t.Errorf("HoldOf(u100, x) = %+v, %v; want %+v", h, ok, want)
				}
				if _, ok := f.w.HoldOf("u200", "x"); ok {
					t.Errorf("another user is held")
				}
				if n := logs.lines(tc.logLine, "user=u100", "provider=x"); n != window {
					t.Errorf("window %d: %d log lines %q, want %d (one per window)\n%s", window, n, tc.logLine, window, logs.b.String())
				}
				if n := cs.saves.Load(); n != tc.saves*int32(window) {
					t.Errorf("window %d: %d writes of rate windows, want %d (one per spent window, none per held run)", window, n, tc.saves*int32(window))
				}
				f.clock.Set(until)
				start = until
			}
			if st := f.sb.Stats(); st.RateLimited != 0 {
				t.Errorf("X answered %d 429s, want none", st.RateLimited)
			}
			if hs := f.w.Holds(); len(hs) != 0 {
				t.Errorf("Holds after the window = %+v, want none", hs)
			}
		})
	}
}

// TestRemoteHoldRecorded: a 429 the provider answers (the local limiter
// did not know the window was spent: another program used the user's
// token) is recorded on the watch as rate_limited, enters the hold table
// and the store, and the next runs are held locally until the reset.
func TestRemoteHoldRecorded(t *testing.T) {
	var cs *countingStore
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) {
		cs = &countingStore{DB: c.DB.(*vault.DB)}
		c.DB = cs
	}})
	id, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	f.sb.FailNext(xsandbox.EndpointSearch, 1, 429)
	ev := f.run(id)
	if ev.Kind != worker.EventRateLimited || ev.NotBefore.IsZero() {
		t.Fatalf("run answered 429 = %s %v, want rate_limited with a hold", ev.Kind, ev.Err)
	}
	if c := f.cursor(id); c.LastResult != "rate_limited" {
		t.Errorf("cursor result = %q, want rate_limited", c.LastResult)
	}
	if h, ok := f.w.HoldOf("u100", "x"); !ok || h.Window != worker.HoldPerUser || !h.Until.Equal(ev.NotBefore) {
		t.Errorf("HoldOf = %+v, %v; want the per-user hold until %s", h, ok, ev.NotBefore)
	}
	if n := cs.saves.Load(); n != 1 {
		t.Errorf("%d writes of rate windows after a 429, want 1", n)
	}
	ws, err := f.db.RateWindows()
	if err != nil || len(ws) != 1 || ws[0].Key == "" || ws[0].UserID != "u100" || !ws[0].NotBefore.Equal(ev.NotBefore) {
		t.Errorf("stored windows = %+v, %v; want u100's hold", ws, err)
	}
	calls := f.searches("100")
	if ev := f.run(id); ev.Kind != worker.EventRateLimited || f.searches("100") != calls {
		t.Errorf("run while held = %s, %d requests; want held locally", ev.Kind, f.searches("100")-calls)
	}
	f.clock.Set(ev.NotBefore)
	f.mustRun(id)
	if _, ok := f.w.HoldOf("u100", "x"); ok {
		t.Errorf("a hold is shown after a run got through")
	}
}
