package notify

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

var _ Channel = (*webhook)(nil)
var _ Channel = (*email)(nil)
var _ Channel = (*shoutrrrChannel)(nil)
var _ Channel = (*console)(nil)

// TestWebhookSignedDelivery: a receiver using the Standard Webhooks
// reference library verifies every delivery, under the current and (during
// a rotation) the previous secret, and the body follows the schema.
func TestWebhookSignedDelivery(t *testing.T) {
	cur, _ := whsec()
	prev, _ := whsec()
	db := openDB(t, "", nil, nil)
	rc := newReceiver(t, cur, prev) // both must verify: two signatures
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: ev.observe,
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New(cur), Previous: secret.New(prev)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTarget(rc.url()); err != nil {
		t.Fatalf("CheckTarget(%s) = %v, want nil", rc.url(), err)
	}
	if err := s.CheckTarget(rc.srv.URL + "/other"); err == nil {
		t.Fatalf("CheckTarget(url without secret) = nil, want error")
	}
	run(t, s)
	for _, id := range []string{"a1", "a2", "a3"} {
		enqueue(t, db, id, rc.url(), matchNotice("u1", "w1", 3))
	}
	s.Kick()
	for range 3 {
		ev.wait(t, "", EventDelivered)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		if n := rc.count(id); n != 1 {
			t.Errorf("receiver got %s %d times, want 1", id, n)
		}
		if r := getRow(t, db, id); r.State != vault.OutboxDelivered || r.Attempts != 1 {
			t.Errorf("row %s = %s after %d attempts, want delivered after 1", id, r.State, r.Attempts)
		}
	}
	if rc.bad != 0 {
		t.Errorf("receiver refused %d deliveries", rc.bad)
	}
	b := rc.bodies["a1"]
	if b.Type != "match" || b.Data.UserID != "u1" || b.Data.WatchID != "w1" || len(b.Data.Posts) != 3 || len(b.Data.PostIDs) != 3 ||
		b.Data.Posts[0].AuthorUsername != "gopher" || b.Data.Posts[0].URL == "" || b.Data.Posts[0].CreatedAt.IsZero() ||
		!strings.HasPrefix(b.Data.PauseURL, "https://tagwatch.example/n/pause/") || !strings.HasPrefix(b.Data.RevokeURL, "https://tagwatch.example/n/revoke/") ||
		b.Timestamp.IsZero() {
		t.Errorf("body = %+v, want the documented schema filled in", b)
	}

	// A receiver that knows only an unrelated secret refuses: the check can fail.
	other, _ := whsec()
	rc2 := newReceiver(t, other)
	wh, _ := newWebhook([]WebhookSecret{{URL: rc2.url(), Secret: secret.New(cur)}}, 5*time.Second, true, time.Now)
	err = wh.Send(t.Context(), &Message{ID: "x1", Target: rc2.url(), Notice: matchNotice("u", "w", 1)})
	var se *SendError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || rc2.bad != 1 {
		t.Errorf("send with a wrong secret = %v (bad %d), want 401 from the verifier", err, rc2.bad)
	}
}

func TestWebhookSecretLength(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"short-secret", false}, {"whsec_c2hvcnQ=", false}, {"whsec_!!", false},
		{strings.Repeat("k", 24), true}, {"whsec_" + strings.Repeat("QUFB", 8), true}} {
		_, err := newWebhook([]WebhookSecret{{URL: "https://h.example/", Secret: secret.New(tc.in)}}, 20*time.Second, false, time.Now)
		if (err == nil) != tc.ok {
			t.Errorf("newWebhook(secret %q) = %v, want ok %v", tc.in, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.in) {
			t.Errorf("error %q repeats the secret", err)
		}
	}
}

// TestStatusClasses drives each answer class with a controlled clock.
func TestStatusClasses(t *testing.T) {
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	sec, _ := whsec()
	rc := newReceiver(t, sec)
	rc.tol = false // the controlled clock is not the receiver's
	answers := map[string]func(w http.ResponseWriter, r *http.Request){
		"ok":       func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) },
		"redirect": func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) },
		"gone":     func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) },
		"limited": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		},
		"broken": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
		"slow":   func(w http.ResponseWriter, r *http.Request) { time.Sleep(1500 * time.Millisecond) },
	}
	var healed atomic.Bool
	rc.respond = func(w http.ResponseWriter, r *http.Request, id string) {
		name, _, _ := strings.Cut(id, "-")
		if healed.Load() {
			name = "ok"
		}
		answers[name](w, r)
	}
	// "gone" has its own URL: 410 disables only that target.
	goneURL := rc.srv.URL + "/hook?t=gone"
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
		Now: clk.Now, Jitter: func() float64 { return 0.5 }, Observer: ev.observe,
		Channels: ChannelsConfig{AllowPrivateTargets: true, Timeout: 300 * time.Millisecond,
			Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New(sec)}, {URL: goneURL, Secret: secret.New(sec)}}}})
	if err != nil {
		t.Fatal(err)
	}
	// The user's watch names the gone target and a console target, which
	// is told about the disabled one.
	putWatch(t, db, vault.Watch{ID: "w1", UserID: "u1", Provider: "x", State: vault.WatchActive,
		WatchSpec: vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 15m", Targets: []string{goneURL, "console:"}}})
	t0 := clk.Now()
	// gone-2 is due later: still undelivered when the target goes, dropped with it.
	payload, _ := json.Marshal(matchNotice("u1", "w1", 1))
	if _, err := db.Enqueue(vault.OutboxRow{ID: "gone-2", Kind: "match", UserID: "u1", WatchID: "w1", Target: goneURL,
		Payload: payload, NextAttempt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	for _, id := range []string{"ok-1", "redirect-1", "gone-1", "limited-1", "broken-1", "slow-1"} {
		target := rc.url()
		if strings.HasPrefix(id, "gone") {
			target = goneURL
		}
		enqueue(t, db, id, target, matchNotice("u1", "w1", 1))
	}
	s.Kick()
	got := map[string]Event{}
	for len(got) < 6 {
		e := ev.wait(t, "", EventDelivered, EventFailed, EventDisabled)
		if e.ID != "gone-2" {
			got[e.ID] = e
		}
	}
	base := 30 * time.Second
	check := func(id string, state vault.OutboxState, next time.Time, errPart string) {
		t.Helper()
		r := getRow(t, db, id)
		if r.State != state || (!next.IsZero() && !r.NextAttempt.Equal(next)) || !strings.Contains(r.LastError, errPart) {
			t.Errorf("%s: row = %s next %s err %q, want %s next %s err ~%q", id, r.State, r.NextAttempt.Sub(t0), r.LastError, state, next.Sub(t0), errPart)
		}
	}
	check("ok-1", vault.OutboxDelivered, time.Time{}, "")
	check("redirect-1", vault.OutboxRetrying, t0.Add(base), "302")
	check("limited-1", vault.OutboxRetrying, t0.Add(time.Hour), "429")
	check("broken-1", vault.OutboxRetrying, t0.Add(base), "503")
	check("slow-1", vault.OutboxRetrying, t0.Add(base), "timeout")
	check("gone-1", vault.OutboxDropped, time.Time{}, "410")
	check("gone-2", vault.OutboxDropped, time.Time{}, "disabled")
	if n := rc.count("redirect-followed"); n != 0 {
		t.Errorf("redirect was followed %d times, want 0", n)
	}
	if got["gone-1"].Kind != EventDisabled || got["gone-1"].Count != 2 {
		t.Errorf("gone-1 event = %+v, want disabled with 2 rows", got["gone-1"])
	}
	var told int
	all, err := db.ListOutbox("", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Kind == vault.NoticeTargetDisabled && r.Target == "console:" && r.UserID == "u1" {
			told++
		}
	}
	if told != 1 {
		t.Errorf("target_disabled notices to the other target = %d, want 1", told)
	}
	// A later row for the disabled target is dropped without a request.
	enqueue(t, db, "gone-3", goneURL, matchNotice("u1", "w1", 1))
	s.Kick()
	ev.wait(t, "gone-3", EventDropped)
	if n := rc.count("gone-3"); n != 0 {
		t.Errorf("disabled target received gone-3 %d times", n)
	}

	// broken-1 keeps failing: follow its schedule to the dead letter. The
	// other retrying rows share its schedule; take them out so that only
	// broken-1 is due as the clock jumps.
	deleteRows(t, db, "redirect-1", "limited-1", "slow-1")
	sched := s.Schedule()
	attempts := 1
	for {
		r := getRow(t, db, "broken-1")
		if r.State == vault.OutboxDead {
			break
		}
		clk.Set(r.NextAttempt)
		s.Kick()
		ev.wait(t, "broken-1", EventFailed, EventDead)
		attempts++
		if attempts > 100 {
			t.Fatal("broken-1 never became a dead letter")
		}
	}
	span := clk.Now().Sub(t0)
	if attempts != len(sched)+1 || span < 72*time.Hour || span > 72*time.Hour+12*time.Hour {
		t.Errorf("dead after %d attempts over %s, want %d attempts over about 72h (schedule %v)", attempts, span, len(sched)+1, sched)
	}
	v, err := s.Outbox("", 0)
	if err != nil || len(v.Rows) != 1 || v.Rows[0].ID != "broken-1" || v.Rows[0].Attempts != attempts {
		t.Errorf("Outbox(dead letters) = %+v, %v; want broken-1 after %d attempts", v.Rows, err, attempts)
	}
	var dead, dropped int
	for _, x := range v.Targets {
		dead += x.Dead
		dropped += x.Dropped
	}
	if dead != 1 || dropped != 3 {
		t.Errorf("Outbox counts = %+v, want 1 dead and 3 dropped", v.Targets)
	}
	// Replay: the same id, delivered once the receiver heals.
	before := rc.count("broken-1")
	healed.Store(true)
	var te *vault.TransitionError
	if _, err := s.Replay("ok-1", "test"); !errors.As(err, &te) {
		t.Errorf("Replay(delivered) = %v, want a *vault.TransitionError", err)
	}
	if _, err := s.Replay("broken-1", "test"); err != nil {
		t.Fatalf("Replay = %v", err)
	}
	ev.wait(t, "broken-1", EventDelivered)
	if rc.count("broken-1") != before+1 || getRow(t, db, "broken-1").State != vault.OutboxDelivered {
		t.Errorf("replayed broken-1: receiver count %d -> %d, row %s; want one more delivery under the same id",
			before, rc.count("broken-1"), getRow(t, db, "broken-1").State)
	}
}

// TestPrivateAddressGuard: webhooks to loopback are refused at connect
// time unless allowed, also when a name resolves to loopback.
func TestPrivateAddressGuard(t *testing.T) {
	sec, _ := whsec()
	rc := newReceiver(t, sec)
	port := rc.srv.URL[strings.LastIndexByte(rc.srv.URL, ':'):]
	byIP := rc.url()
	byName := "http://localhost" + port + "/hook"
	for _, allow := range []bool{false, true} {
		db := openDB(t, "", nil, nil)
		ev := newEvents()
		s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: ev.observe,
			Channels: ChannelsConfig{AllowPrivateTargets: allow,
				Webhooks: []WebhookSecret{{URL: byIP, Secret: secret.New(sec)}, {URL: byName, Secret: secret.New(sec)}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckTarget(byIP); (err == nil) != allow {
			t.Errorf("allow=%v: CheckTarget(%s) = %v", allow, byIP, err)
		}
		// The name passes validation; only the connect-time check can stop it.
		if err := s.CheckTarget(byName); err != nil {
			t.Errorf("allow=%v: CheckTarget(%s) = %v, want nil", allow, byName, err)
		}
		run(t, s)
		idIP, idName := "ip-"+map[bool]string{false: "deny", true: "allow"}[allow], "name-"+map[bool]string{false: "deny", true: "allow"}[allow]
		enqueue(t, db, idIP, byIP, matchNotice("u", "w", 1))
		enqueue(t, db, idName, byName, matchNotice("u", "w", 1))
		s.Kick()
		for _, id := range []string{idIP, idName} {
			e := ev.wait(t, id, EventDelivered, EventFailed)
			if allow {
				if e.Kind != EventDelivered || rc.count(id) != 1 {
					t.Errorf("allowed %s: %s, receiver count %d; want delivered once", id, e.Kind, rc.count(id))
				}
			} else if e.Kind != EventFailed || !strings.Contains(e.Err, "not public") || rc.count(id) != 0 {
				t.Errorf("denied %s: %+v, receiver count %d; want refused before connecting", id, e, rc.count(id))
			}
		}
	}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "0.0.0.0"} {
		if err := guardControl("tcp", netJoin(a), nil); !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("guardControl(%s) = %v, want ErrPrivateAddress", a, err)
		}
	}
	for _, a := range []string{"1.1.1.1", "2606:4700:4700::1111"} {
		if err := guardControl("tcp", netJoin(a), nil); err != nil {
			t.Errorf("guardControl(%s) = %v, want nil", a, err)
		}
	}
}

func netJoin(a string) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]:443"
	}
	return a + ":443"
}
