package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// TestTargetSecretNeverShown (C17): for webhook targets whose URL path is
// the credential, Slack-style, nothing the notifier writes (log lines,
// events, errors, console notices, the operator's view, pages) carries
// any part of the path, through delivery, failure, dead letter, 410,
// disabled drops, replay, backlog caps and target checks.
func TestTargetSecretNeverShown(t *testing.T) {
	sec, _ := whsec()
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch id := r.Header.Get("webhook-id"); {
		case strings.HasPrefix(id, "fail-"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(id, "gone-"):
			w.WriteHeader(http.StatusGone)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	hook := srv.URL + "/services/T0000SECRET/B0000SECRET/XXXXXXXXXXXXSECRET"
	gone := srv.URL + "/services/T0000SECRET/B0000SECRET/GONESECRET"
	var logs, out logBuffer
	ev := newEvents()
	cc := ChannelsConfig{AllowPrivateTargets: true, RetrySpan: time.Minute, BaseDelay: time.Minute, MaxDelay: time.Minute, MaxBacklog: 2,
		Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(sec)}, {URL: gone, Secret: secret.New(sec)}}}
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Channels: cc,
		Logger: logs.logger(), Console: &out, Observer: ev.observe, Now: clk.Now, Jitter: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	putWatch(t, db, vault.Watch{ID: "w1", UserID: "u1", Provider: "x", State: vault.WatchActive,
		WatchSpec: vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 15m", Targets: []string{hook, gone, "console:"}}})
	run(t, s)

	// Delivered, failed, and gone (which disables its target and tells the
	// user on the other two).
	enqueue(t, db, "ok-1", hook, matchNotice("u1", "w1", 1))
	enqueue(t, db, "fail-1", hook, matchNotice("u1", "w1", 1))
	enqueue(t, db, "gone-1", gone, matchNotice("u1", "w1", 1))
	s.Kick()
	ev.wait(t, "ok-1", EventDelivered)
	ev.wait(t, "fail-1", EventFailed)
	ev.wait(t, "gone-1", EventDisabled)
	told, err := db.ListOutbox("", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range told {
		if r.Kind == vault.NoticeTargetDisabled {
			ev.wait(t, r.ID, EventDelivered)
			n++
		}
	}
	if n != 2 || !strings.Contains(out.String(), "Notifications to "+TargetLabel(gone)) {
		t.Errorf("target_disabled notices = %d, console shows %q; want 2, naming the target by its label", n, out.String())
	}

	// The failure becomes a dead letter; a row for the disabled target is
	// dropped; a replay sends the gone row again, and it is gone again.
	clk.Set(getRow(t, db, "fail-1").NextAttempt)
	s.Kick()
	ev.wait(t, "fail-1", EventDead)
	enqueue(t, db, "gone-2", gone, matchNotice("u1", "w1", 1))
	s.Kick()
	ev.wait(t, "gone-2", EventDropped)
	var errs []error
	if _, err := s.Replay("gone-1", "ada"); err != nil {
		errs = append(errs, err)
	}
	ev.wait(t, "gone-1", EventDisabled)
	_, err = s.Replay("ok-1", "ada") // delivered: refused
	errs = append(errs, err)

	// A backlog over the cap.
	later := clk.Now().Add(24 * time.Hour)
	for i := range 3 {
		if _, err := db.Enqueue(vault.OutboxRow{ID: fmt.Sprintf("later-%d", i), Kind: vault.NoticeMatch, UserID: "u1", Target: hook,
			Payload: []byte(mustJSON(matchNotice("u1", "w1", 1))), NextAttempt: later}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Maintain(); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, "", EventBacklog)

	// Target checks: an unconfigured path, a private address not allowed.
	strict, err := NewTargetChecker(ChannelsConfig{Webhooks: cc.Webhooks})
	if err != nil {
		t.Fatal(err)
	}
	errs = append(errs, s.CheckTarget(srv.URL+"/services/T0000SECRET/B0000SECRET/OTHERSECRET"),
		strict.CheckTarget(strings.Replace(hook, "127.0.0.1", "10.0.0.1", 1)))
	_, err = NewTargetChecker(ChannelsConfig{Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New("short")}}})
	errs = append(errs, err)

	view, err := s.Outbox("all", 0)
	if err != nil {
		t.Fatal(err)
	}
	viewJSON, _ := json.Marshal(view)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, strings.TrimPrefix(s.PauseURL("u1", "w1"), "https://tagwatch.example"), nil))

	var b strings.Builder
	b.WriteString(logs.String())
	b.WriteString(out.String())
	b.Write(viewJSON)
	b.WriteString(rec.Body.String())
	ev.mu.Lock()
	for _, e := range ev.all {
		fmt.Fprintf(&b, "%+v\n", e)
	}
	ev.mu.Unlock()
	for _, err := range errs {
		if err == nil {
			t.Errorf("an expected error did not come: %v", errs)
			continue
		}
		b.WriteString(err.Error() + "\n")
	}
	all := b.String()
	for _, want := range []string{"notification attempt failed", "notification is a dead letter", "notification target disabled",
		"notification replayed", "backlog over max_backlog", TargetLabel(hook), TargetLabel(gone)} {
		if !strings.Contains(all, want) {
			t.Errorf("the output has no %q: the test does not see what it checks", want)
		}
	}
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, "SECRET") || strings.Contains(line, "/services/") {
			t.Errorf("shows a target's path: %s", line)
		}
	}
}
