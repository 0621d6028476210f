package worker

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestFairShareHoldsTheHog: ten users share a window of 450 requests per
// 15 minutes (45 each). One asks every second, the others every five
// minutes: the hog gets its 45 and is held for the rest of the window
// (told once), every other request goes through, and the next window
// starts afresh.
func TestFairShareHoldsTheHog(t *testing.T) {
	c := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newFairShare(450, 15*time.Minute, c.now)
	for i := 0; i < 10; i++ {
		f.track(fmt.Sprintf("w%d", i), fmt.Sprintf("u%d", i), "x")
	}
	start := c.t
	for window := 0; window < 2; window++ {
		hogOK, hogHeld, told, othersOK := 0, 0, 0, 0
		var reset time.Time
		for s := 0; s < 15*60; s++ {
			ok, r, first := f.admit("x", "u0")
			if ok {
				hogOK++
			} else {
				hogHeld++
				reset = r
			}
			if first {
				told++
			}
			if s%300 == 0 {
				for u := 1; u < 10; u++ {
					if ok, _, _ := f.admit("x", fmt.Sprintf("u%d", u)); ok {
						othersOK++
					} else {
						t.Errorf("window %d, second %d: user u%d held, want admitted (the hog must not starve it)", window, s, u)
					}
				}
			}
			c.advance(time.Second)
		}
		if hogOK != 45 || hogHeld != 900-45 || told != 1 {
			t.Errorf("window %d: hog admitted %d, held %d, told %d times; want 45, %d, 1", window, hogOK, hogHeld, told, 900-45)
		}
		if othersOK != 27 {
			t.Errorf("window %d: other users admitted %d times, want 27 (9 users x 3)", window, othersOK)
		}
		if want := start.Add(time.Duration(window) * 15 * time.Minute).Add(15 * time.Minute); !reset.Equal(want) {
			t.Errorf("window %d: held until %s, want the window's end %s", window, reset, want)
		}
	}
}

// TestFairShareAccounting: shares follow the users with scheduled
// watches; a run is charged its pages and refunded when it made no
// request; the window as a whole is never overspent, and every user gets
// at least one request.
func TestFairShareAccounting(t *testing.T) {
	c := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newFairShare(10, 15*time.Minute, c.now)
	f.track("a1", "a", "x")
	f.track("a2", "a", "x") // two watches, one user
	f.track("b1", "b", "x")
	f.track("c1", "c", "y") // another provider
	if _, share, _ := f.usage("x", "a"); share != 5 {
		t.Errorf("share with 2 users of 10 = %d, want 5", share)
	}
	f.untrack("b1")
	if _, share, _ := f.usage("x", "a"); share != 10 {
		t.Errorf("share after the other user left = %d, want 10", share)
	}
	f.track("b1", "b", "x")

	ok, reset, _ := f.admit("x", "a")
	if !ok {
		t.Fatal("first request held")
	}
	f.charge("x", "a", reset, 3-1) // a run of three pages
	if used, _, total := f.usage("x", "a"); used != 3 || total != 3 {
		t.Errorf("after a 3-page run: used %d, total %d; want 3 and 3", used, total)
	}
	ok, reset, _ = f.admit("x", "a")
	f.charge("x", "a", reset, -1) // made no request
	if used, _, _ := f.usage("x", "a"); !ok || used != 3 {
		t.Errorf("after a refunded run: used %d, want 3", used)
	}
	for i := 0; i < 2; i++ {
		if ok, _, _ := f.admit("x", "a"); !ok {
			t.Errorf("request %d of a's share of 5 held", 4+i)
		}
	}
	if ok, _, _ := f.admit("x", "a"); ok {
		t.Errorf("a's 6th request admitted, want held at its share of 5")
	}
	if ok, _, _ := f.admit("y", "c"); !ok {
		t.Errorf("another provider's window held")
	}

	// 20 users on a window of 10: a share of one each, and the window's 10
	// are never exceeded.
	g := newFairShare(10, 15*time.Minute, c.now)
	for i := 0; i < 20; i++ {
		g.track(fmt.Sprint(i), fmt.Sprint(i), "x")
	}
	admitted := 0
	for i := 0; i < 20; i++ {
		for j := 0; j < 3; j++ {
			if ok, _, _ := g.admit("x", fmt.Sprint(i)); ok {
				admitted++
			}
		}
	}
	if _, share, total := g.usage("x", "0"); share != 1 || admitted != 10 || total != 10 {
		t.Errorf("20 users, window 10: share %d, admitted %d, total %d; want 1, 10, 10", share, admitted, total)
	}

	// No limit: everything goes.
	h := newFairShare(-1, 15*time.Minute, c.now)
	for i := 0; i < 1000; i++ {
		if ok, _, _ := h.admit("x", "a"); !ok {
			t.Fatal("held without a limit")
		}
	}
}

// TestFairShareTrack: the table of scheduled watches counts each user's
// watches at each provider as watches are tracked, moved to another user
// or provider, tracked again unchanged and untracked, and forgets a
// (user, provider) once no watch names it, reusing its slot.
func TestFairShareTrack(t *testing.T) {
	f := newFairShare(450, 15*time.Minute, time.Now)
	f.track("w1", "u1", "x")
	f.track("w2", "u1", "x")
	f.track("w3", "u2", "x")
	f.track("w3", "u2", "x") // unchanged
	f.track("w4", "u1", "mastodon")
	check := func(when string, want map[string]map[string]int, refs int) {
		t.Helper()
		for prov, users := range want {
			if got := f.prov(prov).users; fmt.Sprint(got) != fmt.Sprint(users) {
				t.Errorf("%s: users at %s = %v, want %v", when, prov, got, users)
			}
		}
		if got := len(f.refIdx); got != refs {
			t.Errorf("%s: %d (user, provider) pairs kept, want %d", when, got, refs)
		}
	}
	check("tracked", map[string]map[string]int{"x": {"u1": 2, "u2": 1}, "mastodon": {"u1": 1}}, 3)
	if got := f.scheduledAt("x"); fmt.Sprint(got) != "map[w1:u1 w2:u1 w3:u2]" {
		t.Errorf("scheduledAt(x) = %v, want w1, w2 of u1 and w3 of u2", got)
	}
	f.track("w3", "u3", "x") // moved to another user
	check("w3 moved", map[string]map[string]int{"x": {"u1": 2, "u3": 1}}, 3)
	f.untrack("w4")
	f.untrack("w4") // twice: nothing
	check("w4 gone", map[string]map[string]int{"x": {"u1": 2, "u3": 1}, "mastodon": {}}, 2)
	f.track("w5", "u5", "x") // reuses a freed slot
	if len(f.refs) != 3 || len(f.free) != 0 {
		t.Errorf("after w5: %d slots, %d free; want 3 slots, none free (one reused)", len(f.refs), len(f.free))
	}
	for _, id := range []string{"w1", "w2", "w3", "w5"} {
		f.untrack(id)
	}
	check("all gone", map[string]map[string]int{"x": {}}, 0)
	if len(f.watches) != 0 {
		t.Errorf("watches left: %v", f.watches)
	}
}
