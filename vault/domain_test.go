package vault

import (
	"errors"
	"testing"
	"time"
)

func TestWatchTransitions(t *testing.T) {
	type st struct {
		state  WatchState
		reason SuspendReason
	}
	active, paused := st{WatchActive, ""}, st{WatchPaused, ""}
	susp := func(r SuspendReason) st { return st{WatchSuspended, r} }
	pausedHeld := func(r SuspendReason) st { return st{WatchPaused, r} }
	tests := []struct {
		name    string
		from    st
		do      func(w *Watch) (bool, error)
		want    st
		changed bool
		wantErr error
	}{
		{"pause active", active, func(w *Watch) (bool, error) { return w.Pause(), nil }, paused, true, nil},
		{"pause paused", paused, func(w *Watch) (bool, error) { return w.Pause(), nil }, paused, false, nil},
		{"pause suspended keeps the cause pending", susp(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Pause(), nil }, pausedHeld(SuspendNeedsReconsent), true, nil},
		// The fault of the old code: pause by link, resume by an operator
		// gave active + needs_reconsent.
		{"resume paused with a pending cause goes back to suspended", pausedHeld(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Resume(GrantNeedsReconsent) }, susp(SuspendNeedsReconsent), true, nil},
		{"resume paused, grant consented meanwhile", pausedHeld(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Resume(GrantActive) }, active, true, nil},
		{"resume paused, grant active", paused, func(w *Watch) (bool, error) { return w.Resume(GrantActive) }, active, true, nil},
		{"resume paused, grant dead", paused, func(w *Watch) (bool, error) { return w.Resume(GrantNeedsReconsent) },
			susp(SuspendNeedsReconsent), true, nil},
		{"resume paused, no grant", paused, func(w *Watch) (bool, error) { return w.Resume("") }, susp(SuspendRevoked), true, nil},
		{"resume suspended while the grant is dead", susp(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Resume(GrantNeedsReconsent) }, susp(SuspendNeedsReconsent), false, ErrConflict},
		{"resume revoked once the grant is active", susp(SuspendRevoked),
			func(w *Watch) (bool, error) { return w.Resume(GrantActive) }, active, true, nil},
		{"resume usage capped by hand", susp(SuspendUsageCapped),
			func(w *Watch) (bool, error) { return w.Resume(GrantActive) }, susp(SuspendUsageCapped), false, ErrConflict},
		{"resume active", active, func(w *Watch) (bool, error) { return w.Resume(GrantActive) }, active, false, nil},
		{"suspend active", active, func(w *Watch) (bool, error) { return w.Suspend(SuspendUsageCapped), nil }, susp(SuspendUsageCapped), true, nil},
		{"suspend paused keeps it paused", paused, func(w *Watch) (bool, error) { return w.Suspend(SuspendRevoked), nil },
			pausedHeld(SuspendRevoked), true, nil},
		{"a dead grant outranks a cap", susp(SuspendUsageCapped),
			func(w *Watch) (bool, error) { return w.Suspend(SuspendNeedsReconsent), nil }, susp(SuspendNeedsReconsent), true, nil},
		{"a cap does not hide a dead grant", susp(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Suspend(SuspendUsageCapped), nil }, susp(SuspendNeedsReconsent), false, nil},
		{"clear the cause", susp(SuspendUsageCapped), func(w *Watch) (bool, error) { return w.Clear(SuspendUsageCapped), nil }, active, true, nil},
		{"clear another cause", susp(SuspendUsageCapped),
			func(w *Watch) (bool, error) { return w.Clear(SuspendNeedsReconsent), nil }, susp(SuspendUsageCapped), false, nil},
		{"a consent clears a revocation", susp(SuspendRevoked),
			func(w *Watch) (bool, error) { return w.Clear(SuspendNeedsReconsent), nil }, active, true, nil},
		{"clear a paused watch's pending cause", pausedHeld(SuspendNeedsReconsent),
			func(w *Watch) (bool, error) { return w.Clear(SuspendNeedsReconsent), nil }, paused, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Watch{ID: "w1", State: tt.from.state, SuspendReason: tt.from.reason}
			changed, err := tt.do(&w)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := (st{w.State, w.SuspendReason}); got != tt.want || changed != tt.changed {
				t.Errorf("from %v: got %v changed=%v, want %v changed=%v", tt.from, got, changed, tt.want, tt.changed)
			}
			if err != nil && err.Error() == "" {
				t.Errorf("empty error")
			}
		})
	}
}

func TestGrantTransitions(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		from, to GrantState
		ok       bool
	}{
		{GrantActive, GrantNeedsReconsent, true},
		{GrantActive, GrantRevoked, true},
		{GrantNeedsReconsent, GrantActive, true},
		{GrantNeedsReconsent, GrantRevoked, true},
		{GrantRevoked, GrantActive, false},
		{GrantRevoked, GrantNeedsReconsent, false},
	}
	for _, tt := range tests {
		g := Grant{ID: "g1", State: tt.from}
		changed, err := g.SetState(tt.to, now)
		if tt.ok != (err == nil) || changed != tt.ok {
			t.Errorf("SetState(%s -> %s) = %v, %v; want ok=%v", tt.from, tt.to, changed, err, tt.ok)
		}
		if tt.ok && (g.State != tt.to || !g.StateSince.Equal(now)) {
			t.Errorf("SetState(%s -> %s) left %s since %v", tt.from, tt.to, g.State, g.StateSince)
		}
		if !tt.ok && !errors.Is(err, ErrConflict) {
			t.Errorf("SetState(%s -> %s) error %v is not ErrConflict", tt.from, tt.to, err)
		}
	}
}

func TestLinkState(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	exp := now.Add(time.Hour)
	tests := []struct {
		e    Enrollment
		want LinkState
	}{
		{Enrollment{ExpiresAt: exp}, LinkPending},
		{Enrollment{ExpiresAt: now}, LinkExpired},
		{Enrollment{ExpiresAt: now.Add(-time.Hour), UsedAt: now.Add(-2 * time.Hour)}, LinkUsed},
		{Enrollment{ExpiresAt: now.Add(-time.Hour), Canceled: true}, LinkCanceled},
		{Enrollment{ExpiresAt: exp, Canceled: true}, LinkCanceled},
	}
	for _, tt := range tests {
		if got := tt.e.State(now); got != tt.want {
			t.Errorf("State(%+v) = %s, want %s", tt.e, got, tt.want)
		}
		if err := tt.e.Usable(now); (err == nil) != (tt.want == LinkPending) {
			t.Errorf("Usable(%+v) = %v", tt.e, err)
		}
	}
}

func TestWatchSpecSame(t *testing.T) {
	a := WatchSpec{Hashtags: []string{"Go", "rust"}, Schedule: "@every 15m", Targets: []string{"console:", "mailto:a@example.com"}}
	b := WatchSpec{Hashtags: []string{"rust", "go"}, Schedule: "@every 15m", Targets: []string{"mailto:a@example.com", "console:"}}
	if !a.Same(b) {
		t.Errorf("Same(%v, %v) = false, want true", a, b)
	}
	c := b
	c.Schedule = "@every 30m"
	if a.Same(c) {
		t.Errorf("Same with another schedule = true")
	}
	d := b
	d.Targets = []string{"console:"}
	if a.Same(d) {
		t.Errorf("Same with fewer targets = true")
	}
}

func TestNotFoundNamesTheObject(t *testing.T) {
	err := notFound("watch", "nosuch")
	if got, want := err.Error(), `watch "nosuch" does not exist`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is(ErrNotFound) = false")
	}
}
