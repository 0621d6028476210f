package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
)

// testLinkOnce: one link committed by many goroutines at once is consumed
// exactly once.
func testLinkOnce(t *testing.T, s Backend) {
	e := link(t, s, "zed", spec1)
	const n = 12
	errs := make([]error, n)
	results := make([]vault.ConsentResult, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = s.CommitConsent(consentFor(s, e, "sub-zed", fmt.Sprintf("rt-%d", i)))
		}()
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("commits %d and %d of one link both succeeded", won, i)
		case err == nil:
			won = i
		default:
			wantErr(t, "CommitConsent(used link)", err, vault.ErrConflict)
			if _, ok := err.(*vault.TransitionError); !ok {
				t.Errorf("CommitConsent(used link) = %T, want *vault.TransitionError", err)
			}
		}
	}
	if won < 0 {
		t.Fatal("no commit of the link succeeded")
	}
	g, err := s.UserGrant("zed", "x")
	if err != nil || g.ID != results[won].Grant.ID || refreshOf(t, s, g.ID) != fmt.Sprintf("rt-%d", won) {
		t.Errorf("zed's grant = %s, %v; want the winner's grant %s with its token", g.ID, err, results[won].Grant.ID)
	}
	ws, err := s.ListWatches("zed")
	if err != nil || len(ws) != 1 {
		t.Errorf("zed's watches = %d, %v; want 1", len(ws), err)
	}
	if got := rows(t, s, vault.NoticeEnrolled, ""); len(got) != len(spec1.Targets) {
		t.Errorf("enrolled notices = %d, want one per target (%d)", len(got), len(spec1.Targets))
	}
	if l, err := s.LinkByID(e.ID); err != nil || l.State(s.Now()) != vault.LinkUsed || l.GrantID != g.ID {
		t.Errorf("link = %+v, %v; want used for the grant", l, err)
	}
}

// testLinkStates: expired, canceled and used links are refused; canceling
// is idempotent; links are listed without their hashes.
func testLinkStates(t *testing.T, s Backend) {
	used := link(t, s, "zed", spec1)
	if _, err := s.CommitConsent(consentFor(s, used, "sub-zed", "rt-zed")); err != nil {
		t.Fatal(err)
	}
	canceled := link(t, s, "amy", spec2)
	for range 2 {
		if err := s.CancelLink(canceled.ID, "op"); err != nil {
			t.Errorf("CancelLink = %v, want nil (twice)", err)
		}
	}
	wantErr(t, "CancelLink(used)", s.CancelLink(used.ID, "op"), vault.ErrConflict)
	expired := link(t, s, "bob", spec2)
	pending := link(t, s, "cy", spec2)
	// Pending until its lifetime ends; then expired, like "expired".
	if got, err := s.Link(pending.Hash); err != nil || got.State(s.Now()) != vault.LinkPending {
		t.Errorf("Link(pending) = %+v, %v; want pending", got, err)
	}
	s.Advance(vault.DefaultLinkTTL + time.Second)
	for name, e := range map[string]vault.Enrollment{"canceled": canceled, "expired": expired} {
		_, err := s.CommitConsent(consentFor(s, e, "sub", "rt"))
		wantErr(t, "CommitConsent("+name+" link)", err, vault.ErrConflict)
	}
	views, err := s.ListLinks(s.Now())
	if err != nil || len(views) != 4 {
		t.Fatalf("ListLinks = %d links, %v; want 4", len(views), err)
	}
	want := map[string]vault.LinkState{used.ID: vault.LinkUsed, canceled.ID: vault.LinkCanceled, expired.ID: vault.LinkExpired, pending.ID: vault.LinkExpired}
	for _, v := range views {
		if v.State != want[v.ID] || v.Hash != "" {
			t.Errorf("ListLinks: link %s = %s with hash %q, want %s without its hash", v.ID, v.State, v.Hash, want[v.ID])
		}
	}
	if u, err := s.User("amy"); err != nil || u.ID != "amy" {
		t.Errorf("User(amy) = %+v, %v; want the user CreateLink made", u, err)
	}
}
