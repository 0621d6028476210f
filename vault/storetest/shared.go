package storetest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv"
)

// Daemon is what a store handle offers a daemon beyond the contract: the
// cluster it shares with the other daemons on the same store
// (*vault.DB's methods of the same names).
type Daemon interface {
	// Shared reports whether other processes share the store
	// (PostgreSQL) rather than this one owning it (bbolt).
	Shared() bool
	// Holder is this handle's daemon id; Lease the lease of its claims
	// and refresh markers.
	Holder() string
	Lease() time.Duration
	// Heartbeat records in the daemon registry that this daemon is
	// alive; SteadyFor says for how long its heartbeats have succeeded.
	Heartbeat(ctx context.Context, d kv.Daemon) error
	SteadyFor() time.Duration
	// Cluster is the store's kv.Cluster (notifications).
	Cluster() kv.Cluster
}

// Peer is a second daemon's handle on a backend's store.
type Peer interface {
	vault.Store
	Daemon
}

// heartbeat records that d is alive, failing the test when it cannot.
func heartbeat(t *testing.T, d Daemon) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Heartbeat(ctx, kv.Daemon{Host: "storetest", PID: 1, Version: "storetest"}); err != nil {
		t.Fatalf("Heartbeat(%s) = %v", d.Holder(), err)
	}
}

// leave takes d out of the registry of daemons, as a daemon stopping
// does: at once it is a holder that is not alive, as a daemon that died
// is once its heartbeats have been missing for a lease.
func leave(t *testing.T, d Daemon) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Cluster().Leave(ctx, d.Holder()); err != nil {
		t.Fatalf("Leave(%s) = %v", d.Holder(), err)
	}
}

// steady makes s a daemon whose heartbeats have been steady for a whole
// lease: one heartbeat, then the clock moved on by the lease.
func steady(t *testing.T, s Backend) {
	t.Helper()
	heartbeat(t, s)
	s.Advance(s.Lease())
	if got := s.SteadyFor(); got < s.Lease() {
		t.Fatalf("SteadyFor after a heartbeat and a lease = %s, want >= %s", got, s.Lease())
	}
}

// peerOf returns a second daemon on s's store when s is shared and its
// backend can open one; ok is false for a store one process owns.
func peerOf(t *testing.T, s Backend) (Peer, bool) {
	t.Helper()
	if !s.Shared() {
		return nil, false
	}
	p, ok := s.Peer(t)
	if !ok {
		t.Fatal("the store is shared, but its backend opens no second daemon on it (Backend.Peer)")
	}
	if p.Holder() == s.Holder() || p.Holder() == "" {
		t.Fatalf("peer's holder = %q beside %q, want another one", p.Holder(), s.Holder())
	}
	return p, true
}

// foreignMarker leaves an in-flight marker on g that is not s's: a peer's
// (shared store), which then stops unless peerAlive, or that of s's
// earlier life (a store one process owns: the reopened process is a new
// holder, with no heartbeat sent yet). It returns the store to go on
// with, the peer (nil without one), and the marker's ticket.
func foreignMarker(t *testing.T, s Backend, g vault.Grant, peerAlive bool) (Backend, Peer, vault.RefreshTicket) {
	t.Helper()
	p, shared := peerOf(t, s)
	if !shared {
		tk, err := s.BeginRefresh(g.ID, "a process that stops")
		if err != nil {
			t.Fatal(err)
		}
		before := s.Holder()
		s = s.Reopen(t)
		s.SetRules(Rules{})
		if s.Holder() == before {
			t.Fatalf("a reopened store keeps holder %q, want a new one (a restarted process)", before)
		}
		return s, nil, tk
	}
	heartbeat(t, p)
	tk, err := p.BeginRefresh(g.ID, "another daemon")
	if err != nil {
		t.Fatalf("peer's BeginRefresh = %v", err)
	}
	if !peerAlive {
		leave(t, p)
	}
	if got := grantOf(t, s, g.ID); got.RefreshHolder != p.Holder() || got.RefreshInFlight.IsZero() {
		t.Fatalf("grant after the peer's BeginRefresh = marker %v of %q, want set, of %q", got.RefreshInFlight, got.RefreshHolder, p.Holder())
	}
	return s, p, tk
}

// wantBusy fails unless err is a *vault.RefreshBusyError naming g and
// holder, with the registry's word alive.
func wantBusy(t *testing.T, err error, g vault.Grant, holder string, alive bool) {
	t.Helper()
	var be *vault.RefreshBusyError
	if !errors.As(err, &be) || !errors.Is(err, vault.ErrRefreshBusy) {
		t.Fatalf("BeginRefresh over another daemon's marker = %v, want a *vault.RefreshBusyError (ErrRefreshBusy)", err)
	}
	if be.GrantID != g.ID || be.Holder != holder || be.Alive != alive {
		t.Errorf("RefreshBusyError = %+v, want grant %s, holder %s, alive %v", be, g.ID, holder, alive)
	}
	for _, w := range []string{g.ID, holder} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// unchanged fails unless grant id and the audit trail after seq are as
// before.
func unchanged(t *testing.T, s Backend, before vault.Grant, seq uint64) {
	t.Helper()
	if got := grantOf(t, s, before.ID); !reflect.DeepEqual(got, before) {
		t.Errorf("a refused BeginRefresh changed the grant:\n got %+v\nwant %+v", got, before)
	}
	if evs := trail(t, s, seq); len(evs) != 0 {
		t.Errorf("a refused BeginRefresh appended %+v to the audit trail", evs)
	}
}

func lastSeq(t *testing.T, s Backend) uint64 {
	t.Helper()
	evs := trail(t, s, 0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// testRefreshLiveHolder: another daemon's marker, while that daemon sends
// heartbeats, is its refresh in flight: BeginRefresh says busy, names it,
// and changes nothing, however steady this daemon is; the holder's
// outcome then commits and the next refresh is a first try with the
// rotated token. On a store one process owns, a marker of another holder
// (the process before a restart) is in doubt at once.
func testRefreshLiveHolder(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	s, p, _ := foreignMarker(t, s, g, true)
	if p == nil {
		tk, err := s.BeginRefresh(g.ID, "renewal")
		if err != nil || !tk.Retry {
			t.Fatalf("BeginRefresh over a marker of an earlier process = retry %v, %v; want a retry at once", tk.Retry, err)
		}
		if got := grantOf(t, s, g.ID); got.RefreshHolder != s.Holder() || got.LostRotations != 1 {
			t.Errorf("grant = holder %q, lost rotations %d; want %q, 1", got.RefreshHolder, got.LostRotations, s.Holder())
		}
		return
	}
	steady(t, s)
	before, seq := grantOf(t, s, g.ID), lastSeq(t, s)
	for range 2 {
		_, err := s.BeginRefresh(g.ID, "renewal")
		wantBusy(t, err, g, p.Holder(), true)
	}
	unchanged(t, s, before, seq)
	// The holder's refresh commits; then a refresh is a first try.
	pt, err := p.BeginRefresh(g.ID, "another daemon")
	if err != nil || !pt.Retry {
		t.Fatalf("the holder's own BeginRefresh again = retry %v, %v; want its retry", pt.Retry, err)
	}
	if _, err := p.CommitRefresh(pt, refreshResult("rt-peer")); err != nil {
		t.Fatalf("the holder's CommitRefresh = %v", err)
	}
	tk, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil || tk.Retry || tk.Refresh.Reveal() != "rt-peer" {
		t.Fatalf("BeginRefresh after the holder committed = retry %v, %q, %v; want a first try with rt-peer", tk.Retry, tk.Refresh.Reveal(), err)
	}
}

// testRefreshDeadHolder: another daemon's marker whose daemon stopped (it
// left the registry; a daemon that died is not alive either once its
// heartbeats have been missing for a lease), found by a daemon steady for
// a whole lease, is
// in doubt: a retry, counted once, audited naming the holder; the marker
// becomes this daemon's; of its ticket and the dead holder's at most one
// commits.
func testRefreshDeadHolder(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	s, p, old := foreignMarker(t, s, g, false)
	if p != nil {
		steady(t, s)
	}
	seq := lastSeq(t, s)
	tk, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil || !tk.Retry || tk.Refresh.Reveal() != "rt-zed" {
		t.Fatalf("BeginRefresh over a dead holder's marker = retry %v, %q, %v; want a retry with rt-zed", tk.Retry, tk.Refresh.Reveal(), err)
	}
	got := grantOf(t, s, g.ID)
	if got.RefreshHolder != s.Holder() || got.LostRotations != 1 || !got.InFlightRetried || !got.RefreshInFlight.Equal(s.Now()) {
		t.Errorf("grant = holder %q, lost %d, retried %v, marker %v; want %q, 1, true, now", got.RefreshHolder, got.LostRotations,
			got.InFlightRetried, got.RefreshInFlight, s.Holder())
	}
	evs := trail(t, s, seq)
	if len(evs) != 1 || evs[0].Kind != vault.AuditLostRotation || evs[0].GrantID != g.ID {
		t.Fatalf("audit after taking over a marker = %+v, want one %s", evs, vault.AuditLostRotation)
	}
	if p != nil && !strings.Contains(evs[0].Detail, p.Holder()) {
		t.Errorf("audit detail %q does not name the dead holder %s", evs[0].Detail, p.Holder())
	}
	if _, err := s.CommitRefresh(tk, refreshResult("rt-2")); err != nil {
		t.Fatalf("CommitRefresh of the retry = %v", err)
	}
	if p != nil {
		_, err = p.CommitRefresh(old, refreshResult("rt-late"))
	} else {
		_, err = s.CommitRefresh(old, refreshResult("rt-late"))
	}
	wantErr(t, "CommitRefresh(the dead holder's ticket)", err, vault.ErrConflict)
	if rt := refreshOf(t, s, g.ID); rt != "rt-2" {
		t.Errorf("refresh token = %q, want rt-2", rt)
	}
}

// testRefreshNotSteady: a daemon that has not been steady for a whole
// lease (its first heartbeat just now) cannot tell a dead holder from a
// live one cut off with it: busy, nothing changed; once steady for the
// lease, the marker is in doubt. On a store one process owns, in doubt
// at once, before any heartbeat.
func testRefreshNotSteady(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	s, p, _ := foreignMarker(t, s, g, false)
	if p == nil {
		if tk, err := s.BeginRefresh(g.ID, "renewal"); err != nil || !tk.Retry {
			t.Fatalf("BeginRefresh before any heartbeat, on a store one process owns = retry %v, %v; want a retry at once", tk.Retry, err)
		}
		return
	}
	before, seq := grantOf(t, s, g.ID), lastSeq(t, s)
	_, err := s.BeginRefresh(g.ID, "renewal")
	wantBusy(t, err, g, p.Holder(), false)
	s.Advance(s.Lease() - time.Second)
	_, err = s.BeginRefresh(g.ID, "renewal")
	wantBusy(t, err, g, p.Holder(), false)
	unchanged(t, s, before, seq)
	s.Advance(time.Second)
	if tk, err := s.BeginRefresh(g.ID, "renewal"); err != nil || !tk.Retry {
		t.Fatalf("BeginRefresh once steady for a lease = retry %v, %v; want a retry", tk.Retry, err)
	}
}

// testRefreshOwnMarker: this daemon's own marker (a ticket whose outcome
// was never recorded) is in doubt at once, heartbeats or not; so is a
// marker another daemon handed over (RecordRefreshFailure with
// KeepMarker: no request in flight, outcome unknown), however alive it
// is.
func testRefreshOwnMarker(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	if _, err := s.BeginRefresh(g.ID, "renewal"); err != nil {
		t.Fatal(err)
	}
	tk, err := s.BeginRefresh(g.ID, "renewal")
	if err != nil || !tk.Retry {
		t.Fatalf("BeginRefresh over this daemon's own marker = retry %v, %v; want a retry at once", tk.Retry, err)
	}
	if err := s.RecordRefreshFailure(tk, vault.RefreshFailure{Class: "transient", KeepMarker: true}); err != nil {
		t.Fatal(err)
	}
	if got := grantOf(t, s, g.ID); got.RefreshInFlight.IsZero() || got.RefreshHolder != "" {
		t.Errorf("grant after a failure that keeps the marker = marker %v of %q; want kept, of no daemon", got.RefreshInFlight, got.RefreshHolder)
	}
	p, ok := peerOf(t, s)
	if !ok {
		return
	}
	// Handed over: any daemon makes the retry (counted once already).
	heartbeat(t, p)
	pt, err := p.BeginRefresh(g.ID, "another daemon")
	if err != nil || !pt.Retry {
		t.Fatalf("another daemon's BeginRefresh over a handed-over marker = retry %v, %v; want a retry at once", pt.Retry, err)
	}
	if got := grantOf(t, s, g.ID); got.LostRotations != 1 || got.RefreshHolder != p.Holder() {
		t.Errorf("grant = lost rotations %d, holder %q; want 1, %q", got.LostRotations, got.RefreshHolder, p.Holder())
	}
	_, err = s.BeginRefresh(g.ID, "renewal")
	wantBusy(t, err, g, p.Holder(), true)
}

// testRefreshNoHeartbeat: on a shared store a daemon whose heartbeat is
// not recorded yet begins no refresh (vault.ErrNoHeartbeat) and changes
// nothing; its first heartbeat lets it. On a store one process owns no
// heartbeat is needed.
func testRefreshNoHeartbeat(t *testing.T, s Backend) {
	g := enroll(t, s, "zed", spec1).Grant
	p, ok := peerOf(t, s)
	if !ok {
		s = s.Reopen(t)
		s.SetRules(Rules{})
		if _, err := s.BeginRefresh(g.ID, "renewal"); err != nil {
			t.Fatalf("BeginRefresh before any heartbeat, on a store one process owns = %v", err)
		}
		return
	}
	before, seq := grantOf(t, s, g.ID), lastSeq(t, s)
	_, err := p.BeginRefresh(g.ID, "another daemon")
	wantErr(t, "BeginRefresh of a daemon with no heartbeat", err, vault.ErrNoHeartbeat)
	if err != nil && (!strings.Contains(err.Error(), g.ID) || !strings.Contains(err.Error(), p.Holder())) {
		t.Errorf("error %q does not name the grant and the daemon", err)
	}
	unchanged(t, s, before, seq)
	heartbeat(t, p)
	if tk, err := p.BeginRefresh(g.ID, "another daemon"); err != nil || tk.Retry {
		t.Fatalf("BeginRefresh after the first heartbeat = retry %v, %v; want a first try", tk.Retry, err)
	}
}

// testTokensNotified: every committed change of a grant's tokens (a
// refresh, a consent renewing the grant, re-consent needed, an unenroll)
// publishes the grant's id on vault.GrantTokensChannel, once, after the
// commit; a refused refresh publishes nothing.
func testTokensNotified(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1).Grant
	amy := enroll(t, s, "amy", spec2).Grant
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 64)
	done := make(chan error, 1)
	go func() {
		done <- s.Cluster().Subscribe(ctx, vault.GrantTokensChannel, func(p string) { got <- p }, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe = %v, want context.Canceled", err)
		}
	})
	probe := func(name string) {
		t.Helper()
		if err := s.Cluster().Publish(context.Background(), vault.GrantTokensChannel, name); err != nil {
			t.Fatalf("Publish(%s) = %v", name, err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case p := <-got:
			return p
		case <-time.After(30 * time.Second):
			t.Fatal("no notification within 30 s")
			return ""
		}
	}
	// The subscription is up once a probe comes through.
	ready := time.After(30 * time.Second)
	for up := false; !up; {
		probe("ready")
		select {
		case p := <-got:
			up = p == "ready"
		case <-time.After(100 * time.Millisecond):
		case <-ready:
			t.Fatal("the subscription never received a probe")
		}
	}
	for len(got) > 0 {
		<-got
	}
	// expect checks that the notifications since the last check are
	// exactly want, in order, then a probe (nothing twice).
	expect := func(what string, want ...string) {
		t.Helper()
		probe("probe")
		var seen []string
		for p := next(); p != "probe"; p = next() {
			if p != "ready" {
				seen = append(seen, p)
			}
		}
		if !reflect.DeepEqual(seen, want) && !(len(seen) == 0 && len(want) == 0) {
			t.Errorf("notifications after %s = %q, want %q", what, seen, want)
		}
	}

	t1, err := s.BeginRefresh(zed.ID, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	expect("BeginRefresh")
	t2, err := s.BeginRefresh(zed.ID, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitRefresh(t2, refreshResult("rt-2")); err != nil {
		t.Fatal(err)
	}
	expect("CommitRefresh", zed.ID)
	_, err = s.CommitRefresh(t1, refreshResult("rt-stale"))
	wantErr(t, "CommitRefresh(stale ticket)", err, vault.ErrConflict)
	expect("a refused CommitRefresh")
	if _, err := s.CommitConsent(consentFor(s, link(t, s, "zed", spec2), "sub-zed", "rt-again")); err != nil {
		t.Fatal(err)
	}
	expect("a consent renewing the grant", zed.ID)
	if _, err := s.MarkNeedsReconsent(zed.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix, Actor: "renewal"}); err != nil {
		t.Fatal(err)
	}
	expect("MarkNeedsReconsent", zed.ID)
	if _, err := s.MarkNeedsReconsent(zed.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix, Actor: "renewal"}); err != nil {
		t.Fatal(err)
	}
	expect("MarkNeedsReconsent of a grant not active")
	if _, err := s.UnenrollGrant(amy.ID, vault.Unenroll{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	expect("UnenrollGrant", amy.ID)
}
