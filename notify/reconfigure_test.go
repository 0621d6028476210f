package notify

import (
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// TestReconfigure: a delivery signed with a secret the receiver no longer
// accepts fails and is scheduled again; a reconfiguration that does not
// build changes nothing; one with the new secret keeps the row's id,
// attempts and next attempt, and the retry is signed with the new secret.
func TestReconfigure(t *testing.T) {
	oldSec, _ := whsec()
	newSec, _ := whsec()
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	rc := newReceiver(t, newSec)
	rc.tol = false // the clock is not the receiver's
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New(oldSec)}}},
		Observer: ev.observe, Now: clk.Now, Jitter: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	enqueue(t, db, "r1", rc.url(), matchNotice("u1", "w1", 1))
	s.Kick()
	if e := ev.wait(t, "r1", EventFailed, EventDelivered); e.Kind != EventFailed || e.Status != 401 {
		t.Fatalf("delivery with the old secret = %+v, want failed with 401", e)
	}
	before := getRow(t, db, "r1")
	if before.State != vault.OutboxRetrying || before.Attempts != 1 || !before.NextAttempt.After(clk.Now()) {
		t.Fatalf("row after the failure = %+v, want retrying after 1 attempt", before)
	}
	schedule := s.Schedule()

	// A secret too short does not build: the old channels stay.
	bad := ChannelsConfig{AllowPrivateTargets: true, RetrySpan: time.Hour, Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New("short")}}}
	if err := s.Reconfigure(bad); err == nil || !strings.Contains(err.Error(), "at least 24") {
		t.Errorf("Reconfigure(short secret) = %v, want an error naming the length", err)
	}
	if err := s.CheckTarget(rc.url()); err != nil {
		t.Errorf("CheckTarget after a failed Reconfigure = %v, want the old secret still there", err)
	}
	if got := s.Schedule(); len(got) != len(schedule) {
		t.Errorf("Schedule() after a failed Reconfigure has %d steps, want the old %d", len(got), len(schedule))
	}

	// The new secret and a shorter retry span.
	good := ChannelsConfig{AllowPrivateTargets: true, RetrySpan: time.Hour, Webhooks: []WebhookSecret{{URL: rc.url(), Secret: secret.New(newSec)}}}
	if err := s.Reconfigure(good); err != nil {
		t.Fatalf("Reconfigure(new secret) = %v", err)
	}
	if got := s.Schedule(); len(got) >= len(schedule) {
		t.Errorf("Schedule() after Reconfigure(retry span 1h) has %d steps, want fewer than the 72h span's %d", len(got), len(schedule))
	}
	if after := getRow(t, db, "r1"); after.ID != before.ID || after.Attempts != before.Attempts ||
		!after.NextAttempt.Equal(before.NextAttempt) || after.State != vault.OutboxRetrying {
		t.Errorf("row after Reconfigure = %+v, want it as before %+v", after, before)
	}
	clk.Set(before.NextAttempt.Add(time.Second))
	s.Kick()
	if e := ev.wait(t, "r1", EventFailed, EventDelivered); e.Kind != EventDelivered {
		t.Fatalf("retry after Reconfigure = %+v, want delivered (signed with the new secret)", e)
	}
	if r := getRow(t, db, "r1"); r.State != vault.OutboxDelivered || r.Attempts != 2 {
		t.Errorf("row = %s after %d attempts, want delivered after 2", r.State, r.Attempts)
	}
	if rc.count("r1") != 1 {
		t.Errorf("receiver accepted r1 %d times, want 1", rc.count("r1"))
	}

	// Channels come and go with the configuration.
	if err := s.CheckTarget("mailto:ada@example.com"); err == nil {
		t.Error("CheckTarget(mailto) without SMTP = nil, want an error")
	}
	mail := ChannelsConfig{SMTP: SMTPConfig{Host: "smtp.example.com", From: "tagwatch@example.com"}}
	if err := s.Reconfigure(mail); err != nil {
		t.Fatalf("Reconfigure(smtp) = %v", err)
	}
	if err := s.CheckTarget("mailto:ada@example.com"); err != nil {
		t.Errorf("CheckTarget(mailto) with SMTP = %v, want nil", err)
	}
	if err := s.CheckTarget(rc.url()); err == nil {
		t.Error("CheckTarget(webhook) after its secret was removed = nil, want an error")
	}
}

// TestReconfigureConcurrent races Reconfigure with deliveries (run with
// -race): every row is delivered once, signed with a secret the receiver
// accepts, whichever configuration sent it.
func TestReconfigureConcurrent(t *testing.T) {
	a, _ := whsec()
	b, _ := whsec()
	db := openDB(t, "", nil, nil)
	// The receiver knows a; every configuration signs with a and b (as
	// current or previous), so each delivery verifies.
	rcA := newReceiver(t, a)
	ev := newEvents()
	cfg := func(cur, prev string) ChannelsConfig {
		return ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: rcA.url(), Secret: secret.New(cur), Previous: secret.New(prev)}}}
	}
	c0 := cfg(a, b)
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Channels: c0, Observer: ev.observe})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			c := cfg(a, b)
			if i%2 == 1 {
				c = cfg(b, a)
			}
			if err := s.Reconfigure(c); err != nil {
				t.Errorf("Reconfigure = %v", err)
			}
		}
	}()
	ids := make([]string, 30)
	for i := range ids {
		ids[i] = vault.NewID()
		enqueue(t, db, ids[i], rcA.url(), matchNotice("u1", "w1", 1))
		s.Kick()
	}
	wg.Wait()
	for _, id := range ids {
		ev.wait(t, id, EventDelivered)
		if n := rcA.count(id); n != 1 {
			t.Errorf("receiver got %s %d times, want 1", id, n)
		}
	}
}
