package storetest

import (
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

func refreshResult(rt string) vault.RefreshResult {
	return vault.RefreshResult{Access: secret.NewAccessToken("at-" + rt), Refresh: secret.NewRefreshToken(rt),
		Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// testRefreshMarker: BeginRefresh commits the marker before the request
// and hands out the stored refresh token.
func testRefreshMarker(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	tk, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil {
		t.Fatalf("BeginRefresh = %v", err)
	}
	if tk.Retry || tk.Refresh.Reveal() != "rt-zed" {
		t.Errorf("BeginRefresh = retry %v, refresh %q; want a first try with rt-zed", tk.Retry, tk.Refresh.Reveal())
	}
	if got := grantOf(t, s, g.ID); !got.RefreshInFlight.Equal(s.Now()) {
		t.Errorf("grant's marker = %v, want %v (committed by BeginRefresh)", got.RefreshInFlight, s.Now())
	}
	if _, err := s.CommitRefresh(tk, refreshResult("rt-2")); err != nil {
		t.Fatalf("CommitRefresh = %v", err)
	}
	got := grantOf(t, s, g.ID)
	if !got.RefreshInFlight.IsZero() || got.RefreshCount != 1 || refreshOf(t, s, g.ID) != "rt-2" ||
		!got.AccessExpiry.Equal(refreshResult("").Expiry) {
		t.Errorf("grant after CommitRefresh = marker %v, count %d, expiry %v; want cleared, 1, the new expiry",
			got.RefreshInFlight, got.RefreshCount, got.AccessExpiry)
	}
}

// testRefreshMarkerReopen: a marker found after a restart makes the next
// ticket a retry, counted once however often it is found.
func testRefreshMarkerReopen(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	if _, err := s.BeginRefresh(g.ID, "a daemon that dies"); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	if got := grantOf(t, s, g.ID); got.RefreshInFlight.IsZero() {
		t.Fatal("the in-flight marker did not survive a reopen")
	}
	if s.Shared() {
		// A reopened handle is another daemon: the marker's holder has
		// left, and this one must be steady for a lease before it takes
		// the marker over (testRefreshNotSteady).
		s.Advance(s.Lease())
	}
	for i := range 2 {
		tk, err := s.BeginRefresh(g.ID, "renewal")
		if err != nil || !tk.Retry {
			t.Fatalf("BeginRefresh #%d after a reopen = retry %v, %v; want a retry", i+1, tk.Retry, err)
		}
	}
	if got := grantOf(t, s, g.ID); got.LostRotations != 1 || !got.InFlightRetried {
		t.Errorf("grant = lost rotations %d, retried %v; want 1 (counted once), true", got.LostRotations, got.InFlightRetried)
	}
}

// testRefreshTwoTickets: two tickets for one refresh token; the later
// commits, the earlier is refused and stores nothing.
func testRefreshTwoTickets(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	t1, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil || !t2.Retry {
		t.Fatalf("second BeginRefresh = retry %v, %v; want a retry", t2.Retry, err)
	}
	if _, err := s.CommitRefresh(t2, refreshResult("rt-2")); err != nil {
		t.Fatalf("CommitRefresh(second) = %v", err)
	}
	_, err = s.CommitRefresh(t1, refreshResult("rt-stale"))
	wantErr(t, "CommitRefresh(stale ticket)", err, vault.ErrConflict)
	if _, ok := err.(*vault.TransitionError); !ok {
		t.Errorf("CommitRefresh(stale ticket) = %T, want *vault.TransitionError", err)
	}
	wantErr(t, "RecordRefreshFailure(stale ticket)", s.RecordRefreshFailure(t1, vault.RefreshFailure{Class: "transient"}), vault.ErrConflict)
	got := grantOf(t, s, g.ID)
	if rt := refreshOf(t, s, g.ID); rt != "rt-2" || got.RefreshCount != 1 || got.TransientErrors != 0 {
		t.Errorf("grant after a stale ticket = refresh %q, count %d, transient %d; want rt-2, 1, 0", rt, got.RefreshCount, got.TransientErrors)
	}
}

// testRefreshConcurrent: tickets issued for one refresh token, committed
// at once: exactly one wins.
func testRefreshConcurrent(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	const n = 8
	tickets := make([]vault.RefreshTicket, n)
	for i := range tickets {
		var err error
		if tickets[i], err = s.BeginRefresh(g.ID, "renewal"); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.CommitRefresh(tickets[i], refreshResult("rt-"+string(rune('a'+i))))
		}()
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("tickets %d and %d both committed", won, i)
		case err == nil:
			won = i
		default:
			wantErr(t, "CommitRefresh(losing ticket)", err, vault.ErrConflict)
		}
	}
	if won < 0 {
		t.Fatal("no ticket committed")
	}
	if rt, got := refreshOf(t, s, g.ID), grantOf(t, s, g.ID); rt != "rt-"+string(rune('a'+won)) || got.RefreshCount != 1 {
		t.Errorf("grant = refresh %q, count %d; want the winner's token and 1", rt, got.RefreshCount)
	}
}

// testRefreshFailure: a failure keeps or clears the marker as asked,
// counts, and leaves the grant active.
func testRefreshFailure(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	t1, _ := s.BeginRefresh(g.ID, "renewal")
	if err := s.RecordRefreshFailure(t1, vault.RefreshFailure{Class: "transient", KeepMarker: true}); err != nil {
		t.Fatalf("RecordRefreshFailure(keep) = %v", err)
	}
	got := grantOf(t, s, g.ID)
	if got.RefreshInFlight.IsZero() || got.TransientErrors != 1 || got.LastErrorClass != "transient" || got.State != vault.GrantActive {
		t.Errorf("grant after a failure that keeps the marker = %+v", got)
	}
	t2, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil || !t2.Retry {
		t.Fatalf("BeginRefresh after a kept marker = retry %v, %v; want a retry", t2.Retry, err)
	}
	if err := s.RecordRefreshFailure(t2, vault.RefreshFailure{Class: "transient"}); err != nil {
		t.Fatalf("RecordRefreshFailure(clear) = %v", err)
	}
	got = grantOf(t, s, g.ID)
	if !got.RefreshInFlight.IsZero() || got.TransientErrors != 2 || got.State != vault.GrantActive {
		t.Errorf("grant after a failure that clears the marker = marker %v, transient %d, %s", got.RefreshInFlight, got.TransientErrors, got.State)
	}
	// The marker is gone: the ticket can no longer commit.
	_, err = s.CommitRefresh(t2, refreshResult("rt-late"))
	wantErr(t, "CommitRefresh(ticket whose marker was cleared)", err, vault.ErrConflict)
	t3, _ := s.BeginRefresh(g.ID, "renewal")
	if _, err := s.CommitRefresh(t3, refreshResult("rt-3")); err != nil {
		t.Fatal(err)
	}
	if got := grantOf(t, s, g.ID); got.TransientErrors != 0 || got.LastErrorClass != "" {
		t.Errorf("grant after a success = transient %d class %q, want the counters reset", got.TransientErrors, got.LastErrorClass)
	}
}

// testRefreshEndedGrant: a re-consent or an unenroll during a refresh
// fences its ticket off; an ended grant gives no ticket.
func testRefreshEndedGrant(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1).Grant
	amy := enroll(t, s, "amy", spec2).Grant
	tz, _ := s.BeginRefresh(zed.ID, "renewal")
	ta, _ := s.BeginRefresh(amy.ID, "renewal")
	out, err := s.MarkNeedsReconsent(zed.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix, Actor: "renewal"})
	if err != nil || !out.Changed {
		t.Fatalf("MarkNeedsReconsent = %+v, %v", out, err)
	}
	if _, err := s.UnenrollGrant(amy.ID, vault.Unenroll{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	for name, tk := range map[string]vault.RefreshTicket{"needs_reconsent": tz, "revoked": ta} {
		_, err := s.CommitRefresh(tk, refreshResult("rt-late"))
		wantErr(t, "CommitRefresh(ticket of a grant now "+name+")", err, vault.ErrConflict)
		_, err = s.BeginRefresh(tk.Grant.ID, "renewal")
		wantErr(t, "BeginRefresh(grant now "+name+")", err, vault.ErrNeedsConsent)
	}
	if again, err := s.MarkNeedsReconsent(zed.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix}); err != nil || again.Changed {
		t.Errorf("MarkNeedsReconsent again = changed %v, %v; want unchanged", again.Changed, err)
	}
	if got := grantOf(t, s, zed.ID); got.State != vault.GrantNeedsReconsent || !got.RefreshInFlight.IsZero() {
		t.Errorf("grant = %s, marker %v; want needs_reconsent without a marker", got.State, got.RefreshInFlight)
	}
}
