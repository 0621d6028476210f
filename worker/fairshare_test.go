package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi/xsandbox"
)

// TestFairShareC08: one user's watch runs every second beside five users
// whose watches run every five minutes, on a provider whose app-wide
// window (60 searches per 15 minutes here, X's 450 scaled down) every
// user shares. The hog gets its share (10) and is then held, with a
// visible reason and the window's reset, without a request; the other
// users' runs all go through (no 429), window after window.
func TestFairShareC08(t *testing.T) {
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.AppRequestsPerWindow = 60 }})
	f.sb.SetRateLimit(xsandbox.EndpointSearch, 300, 60, 15*time.Minute)
	hog, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1s"}, time.Time{})
	var others []string
	for i := 0; i < 5; i++ {
		id, _ := f.addWatch(fmt.Sprint(200+i), vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@every 5m"}, time.Time{})
		others = append(others, id)
	}
	if err := f.w.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := f.clock.Now()
	for window := 0; window < 2; window++ {
		hogRuns, hogHeld := 0, 0
		for s := 0; s < 15*60; s++ {
			switch ev := f.run(hog); {
			case ev.Kind == worker.EventRun:
				hogRuns++
			case ev.Kind == worker.EventSkipped && ev.Reason == worker.SkipFairShare:
				hogHeld++
				if want := start.Add(time.Duration(window+1) * 15 * time.Minute); !ev.NotBefore.Equal(want) {
					t.Fatalf("hog held until %s, want the window's end %s", ev.NotBefore, want)
				}
			default:
				t.Fatalf("hog run at %s = %s %s %v", f.clock.Now(), ev.Kind, ev.Reason, ev.Err)
			}
			if s%300 == 150 {
				for _, id := range others {
					if ev := f.run(id); ev.Kind != worker.EventRun {
						t.Errorf("window %d, second %d: run of another user's watch = %s %s %v, want a run", window, s, ev.Kind, ev.Reason, ev.Err)
					}
				}
			}
			f.clock.Advance(time.Second)
		}
		if hogRuns != 10 || hogHeld != 900-10 {
			t.Errorf("window %d: hog ran %d times and was held %d; want 10 and %d", window, hogRuns, hogHeld, 900-10)
		}
	}
	if st := f.sb.Stats(); st.RateLimited != 0 {
		t.Errorf("X answered %d 429s, want none (the window was never spent)", st.RateLimited)
	}
	if n := f.searches("100"); n != 20 {
		t.Errorf("X saw %d searches of the hog, want 20 (its share, twice)", n)
	}
}
