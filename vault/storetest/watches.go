package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"tagwatch/vault"
)

func wantState(t *testing.T, s Backend, step, id string, st vault.WatchState, r vault.SuspendReason) {
	t.Helper()
	w := watchOf(t, s, id)
	if w.State != st || w.SuspendReason != r {
		t.Errorf("%s: watch = %s, want %s", step, w.StateText(), vault.Watch{State: st, SuspendReason: r}.StateText())
	}
}

// testWatchTransitions: pause, resume, suspend and clear through the
// store, as vault.Watch's transitions say.
func testWatchTransitions(t *testing.T, s Backend) {
	id := enroll(t, s, "zed", spec1).Started[0].ID
	schedule := "@every 30m"
	for _, step := range []struct {
		name    string
		do      func() (bool, error)
		changed bool
		err     error
		state   vault.WatchState
		reason  vault.SuspendReason
	}{
		{"pause", func() (bool, error) { _, c, err := s.PauseWatch(id, "op"); return c, err }, true, nil, vault.WatchPaused, ""},
		{"pause again", func() (bool, error) { _, c, err := s.PauseWatch(id, "op"); return c, err }, false, nil, vault.WatchPaused, ""},
		{"change while paused", func() (bool, error) {
			w, err := s.ChangeWatch(id, vault.WatchChange{Schedule: &schedule}, "op")
			return w.Schedule == schedule, err
		}, true, nil, vault.WatchPaused, ""},
		{"resume", func() (bool, error) { _, c, err := s.ResumeWatch(id, "op"); return c, err }, true, nil, vault.WatchActive, ""},
		{"resume again", func() (bool, error) { _, c, err := s.ResumeWatch(id, "op"); return c, err }, false, nil, vault.WatchActive, ""},
		{"usage cap", func() (bool, error) {
			ids, err := s.SuspendProviderWatches("x", vault.SuspendUsageCapped)
			return slices.Equal(ids, []string{id}), err
		}, true, nil, vault.WatchSuspended, vault.SuspendUsageCapped},
		{"resume a capped watch by hand", func() (bool, error) { _, c, err := s.ResumeWatch(id, "op"); return c, err },
			false, vault.ErrConflict, vault.WatchSuspended, vault.SuspendUsageCapped},
		{"pause a capped watch", func() (bool, error) { _, c, err := s.PauseWatch(id, "op"); return c, err },
			true, nil, vault.WatchPaused, vault.SuspendUsageCapped},
		{"cap lifted while paused", func() (bool, error) {
			ids, err := s.ClearProviderWatches("x", vault.SuspendUsageCapped)
			return slices.Equal(ids, []string{id}), err
		}, true, nil, vault.WatchPaused, ""},
		{"resume", func() (bool, error) { _, c, err := s.ResumeWatch(id, "op"); return c, err }, true, nil, vault.WatchActive, ""},
		{"usage cap again", func() (bool, error) {
			ids, err := s.SuspendProviderWatches("x", vault.SuspendUsageCapped)
			return len(ids) == 1, err
		}, true, nil, vault.WatchSuspended, vault.SuspendUsageCapped},
		{"cap lifted", func() (bool, error) {
			ids, err := s.ClearProviderWatches("x", vault.SuspendUsageCapped)
			return len(ids) == 1, err
		}, true, nil, vault.WatchActive, ""},
		{"cap lifted again", func() (bool, error) {
			ids, err := s.ClearProviderWatches("x", vault.SuspendUsageCapped)
			return len(ids) == 1, err
		}, false, nil, vault.WatchActive, ""},
	} {
		changed, err := step.do()
		if !errors.Is(err, step.err) || changed != step.changed {
			t.Errorf("%s = changed %v, %v; want %v, %v", step.name, changed, err, step.changed, step.err)
		}
		wantState(t, s, step.name, id, step.state, step.reason)
	}
	if w, err := s.DeleteWatch(id, "op"); err != nil || w.ID != id {
		t.Fatalf("DeleteWatch = %v", err)
	}
	if ws, _ := s.ListWatches(""); len(ws) != 0 {
		t.Errorf("ListWatches after delete = %d watches, want 0", len(ws))
	}
}

// reconsentLink finds the re-consent link a NoticeReconsent row carries,
// sealed, and returns the link it names.
func reconsentLink(t *testing.T, s Backend, user string) vault.Enrollment {
	t.Helper()
	for _, r := range rows(t, s, vault.NoticeReconsent, "") {
		if r.UserID != user {
			continue
		}
		url, err := s.OpenOutboxSecret(r)
		if err != nil || !strings.HasPrefix(url.Reveal(), linkPrefix) {
			t.Fatalf("OpenOutboxSecret(re-consent notice) = %v, want a link under %s", err, linkPrefix)
		}
		e, err := s.Link(vault.HashLinkToken(strings.TrimPrefix(url.Reveal(), linkPrefix)))
		if err != nil {
			t.Fatalf("Link(the notice's token) = %v", err)
		}
		return e
	}
	t.Fatalf("no re-consent notice for %s", user)
	return vault.Enrollment{}
}

// testWatchDeadGrant: a watch paused and then resumed while its grant is
// dead goes back to suspended, never active; the re-consent makes it
// active.
func testWatchDeadGrant(t *testing.T, s Backend) {
	zed := enroll(t, s, "zed", spec1)
	w1 := zed.Started[0].ID
	w2, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: cloneSpec(spec2)}, "op")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PauseWatch(w2.ID, "user"); err != nil {
		t.Fatal(err)
	}
	out, err := s.MarkNeedsReconsent(zed.Grant.ID, vault.Reconsent{Reason: "dead_grant", LinkPrefix: linkPrefix, Actor: "renewal"})
	if err != nil || !out.Changed || out.Notices != len(spec1.Targets) {
		t.Fatalf("MarkNeedsReconsent = %+v, %v; want a notice per target", out, err)
	}
	wantState(t, s, "dead grant", w1, vault.WatchSuspended, vault.SuspendNeedsReconsent)
	wantState(t, s, "dead grant, paused", w2.ID, vault.WatchPaused, vault.SuspendNeedsReconsent)
	if _, c, err := s.ResumeWatch(w2.ID, "op"); err != nil || !c {
		t.Errorf("ResumeWatch(paused, dead grant) = %v, %v; want changed", c, err)
	}
	wantState(t, s, "paused then resumed with a dead grant", w2.ID, vault.WatchSuspended, vault.SuspendNeedsReconsent)
	// The one-click pause of a suspended watch, then an operator's resume.
	if _, _, err := s.PauseWatch(w1, "user link"); err != nil {
		t.Fatal(err)
	}
	wantState(t, s, "suspended then paused", w1, vault.WatchPaused, vault.SuspendNeedsReconsent)
	if _, _, err := s.ResumeWatch(w1, "op"); err != nil {
		t.Fatal(err)
	}
	wantState(t, s, "paused by link then resumed", w1, vault.WatchSuspended, vault.SuspendNeedsReconsent)
	_, _, err = s.ResumeWatch(w1, "op")
	wantErr(t, "ResumeWatch(suspended for a dead grant)", err, vault.ErrConflict)
	w3, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{"zig"}, Schedule: "@daily", Targets: []string{"console:"}}}, "op")
	if err != nil || w3.State != vault.WatchSuspended || w3.SuspendReason != vault.SuspendNeedsReconsent {
		t.Errorf("AddWatch with a dead grant = %s, %v; want suspended (needs_reconsent)", w3.StateText(), err)
	}
	w4, _ := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: vault.WatchSpec{Hashtags: []string{"odin"}, Schedule: "@daily", Targets: []string{"console:"}}}, "op")
	s.PauseWatch(w4.ID, "user")

	e := reconsentLink(t, s, "zed")
	if e.Purpose != vault.PurposeReconsent || e.GrantID != zed.Grant.ID {
		t.Fatalf("re-consent link = %+v, want one for grant %s", e, zed.Grant.ID)
	}
	res, err := s.CommitConsent(consentFor(s, e, "sub-zed", "rt-again"))
	if err != nil || res.Grant.ID != zed.Grant.ID || res.Replaced != vault.GrantNeedsReconsent {
		t.Fatalf("CommitConsent(re-consent) = %+v, %v; want grant %s renewed", res.Grant, err, zed.Grant.ID)
	}
	for _, id := range []string{w1, w2.ID, w3.ID} {
		wantState(t, s, "after the re-consent", id, vault.WatchActive, "")
		if !slices.ContainsFunc(res.Resumed, func(w vault.Watch) bool { return w.ID == id }) {
			t.Errorf("ConsentResult.Resumed lacks watch %s", id)
		}
	}
	wantState(t, s, "paused, after the re-consent", w4.ID, vault.WatchPaused, "")
	if g := grantOf(t, s, zed.Grant.ID); g.State != vault.GrantActive || refreshOf(t, s, g.ID) != "rt-again" {
		t.Errorf("grant after re-consent = %s, want active with the new token", g.State)
	}
}

// testWatchDuplicate: the same watch twice is refused, by AddWatch and by
// a second link.
func testWatchDuplicate(t *testing.T, s Backend) {
	w := enroll(t, s, "zed", spec1).Started[0]
	same := vault.WatchSpec{Hashtags: []string{"GoLang"}, Schedule: spec1.Schedule, Targets: []string{spec1.Targets[1], spec1.Targets[0]}}
	got, err := s.AddWatch(vault.NewWatch{UserID: "zed", Provider: "x", Spec: same}, "op")
	wantErr(t, "AddWatch(the same watch)", err, vault.ErrDuplicateWatch)
	wantErr(t, "AddWatch(the same watch)", err, vault.ErrExists)
	if got.ID != w.ID {
		t.Errorf("AddWatch(the same watch) returned %q, want the existing %s", got.ID, w.ID)
	}
	res, err := s.CommitConsent(consentFor(s, link(t, s, "zed", same), "sub-zed", "rt-2"))
	if err != nil || len(res.Started) != 0 || len(res.Kept) != 1 || res.Kept[0].ID != w.ID {
		t.Errorf("CommitConsent(second link, same watch) = started %d kept %v, %v; want the watch kept", len(res.Started), res.Kept, err)
	}
	if ws, _ := s.ListWatches("zed"); len(ws) != 1 {
		t.Errorf("zed has %d watches, want 1", len(ws))
	}
	_, err = s.AddWatch(vault.NewWatch{UserID: "nobody", Provider: "x", Spec: cloneSpec(spec2)}, "op")
	wantErr(t, "AddWatch(user without a grant)", err, vault.ErrInvalid)
}
