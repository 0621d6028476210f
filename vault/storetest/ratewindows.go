package storetest

import (
	"testing"
	"time"

	"tagwatch/vault"
)

// testRateWindows: what providers said about their windows survives a
// reopen; a window saved again replaces the stored one; a window saved
// over deletes it, and windows that ran out are not read and are pruned;
// a bad window is ErrInvalid and nothing of the batch is saved.
func testRateWindows(t *testing.T, s Backend) {
	now := s.Now()
	read := func(s Backend) []vault.RateWindow {
		t.Helper()
		ws, err := s.RateWindows()
		if err != nil {
			t.Fatalf("RateWindows = %v", err)
		}
		return ws
	}
	if ws := read(s); len(ws) != 0 {
		t.Fatalf("RateWindows of a new store = %+v, want none", ws)
	}
	search := "/2/tweets/search/recent"
	held := vault.RateWindow{Provider: "x", Kind: vault.WindowRateLimit, Endpoint: search, Key: "g1", UserID: "zed",
		Limit: 3, Remaining: 0, Reset: now.Add(20 * time.Second), NotBefore: now.Add(21 * time.Second), Observed: now}
	short := vault.RateWindow{Provider: "x", Kind: vault.WindowRateLimit, Endpoint: search, Key: "g2", Limit: 3, Remaining: 0,
		NotBefore: now.Add(5 * time.Second), Observed: now}
	capped := vault.RateWindow{Provider: "x", Kind: vault.WindowUsageCap, Limit: -1, Remaining: -1, NotBefore: now.Add(time.Hour), Observed: now}
	if err := s.SaveRateWindows(held, short, capped); err != nil {
		t.Fatalf("SaveRateWindows = %v", err)
	}
	s = reopen(t, s)
	got := read(s)
	if len(got) != 3 || !same(got[0], held) || !same(got[1], short) || !same(got[2], capped) {
		t.Fatalf("RateWindows after a reopen = %+v, want the three saved, by key", got)
	}

	// Saved again: replaced, not added.
	later := held
	later.NotBefore, later.Observed = now.Add(40*time.Second), now.Add(time.Second)
	if err := s.SaveRateWindows(later); err != nil {
		t.Fatal(err)
	}
	if got := read(s); len(got) != 3 || !got[0].NotBefore.Equal(later.NotBefore) {
		t.Errorf("after saving g1's window again: %+v, want it replaced", got)
	}

	// Over: a lifted cap saved without a hold is deleted; g2's hold runs out.
	lifted := capped
	lifted.NotBefore = time.Time{}
	if err := s.SaveRateWindows(lifted); err != nil {
		t.Fatal(err)
	}
	s.Advance(10 * time.Second)
	if got := read(s); len(got) != 1 || got[0].Key != "g1" {
		t.Errorf("after the cap lifted and g2's hold ran out: %+v, want only g1's", got)
	}

	// A bad window in a batch: nothing of it is saved.
	for _, bad := range []vault.RateWindow{
		{Kind: vault.WindowRateLimit, Endpoint: search, Key: "g3", NotBefore: now.Add(time.Hour)},
		{Provider: "x", Kind: "weekly", NotBefore: now.Add(time.Hour)},
		{Provider: "x", Kind: vault.WindowRateLimit, Key: "g3", NotBefore: now.Add(time.Hour)},
		{Provider: "x", Kind: vault.WindowUsageCap, Key: "g3", NotBefore: now.Add(time.Hour)},
		{Provider: "x", Kind: vault.WindowRateLimit, Endpoint: search, Key: "g\x003", NotBefore: now.Add(time.Hour)},
	} {
		ok := short
		ok.Key, ok.NotBefore = "g4", now.Add(time.Hour)
		wantErr(t, "SaveRateWindows(bad)", s.SaveRateWindows(ok, bad), vault.ErrInvalid)
	}
	if got := read(s); len(got) != 1 {
		t.Errorf("after refused batches: %+v, want only g1's", got)
	}
}

// same compares windows by value, times by instant.
func same(a, b vault.RateWindow) bool {
	return a.Provider == b.Provider && a.Kind == b.Kind && a.Endpoint == b.Endpoint && a.Key == b.Key && a.UserID == b.UserID &&
		a.Limit == b.Limit && a.Remaining == b.Remaining && a.Reset.Equal(b.Reset) && a.NotBefore.Equal(b.NotBefore) &&
		a.Observed.Equal(b.Observed)
}
