package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// outboxSamples are rows as the outbox holds them, with what could trip a
// decoder or the target peek: escapes and HTML characters in strings, a
// target the payload names too, a target key inside a string, times in
// other zones, a sealed secret, a partial progress.
func outboxSamples() []OutboxRow {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	paris := time.FixedZone("", 3600)
	notice, _ := json.Marshal(Notice{Type: NoticeTargetDisabled, UserID: "u1", Target: "hooks.example.com/…",
		Message: `a "quoted" ,"target":"https://evil.example/" <b>&`, Time: at,
		Posts: []Post{{ID: "1", Text: "line\nline\t\u2028 é 🎉 \x01", CreatedAt: at.In(paris)}}})
	base := OutboxRow{ID: "9f2c0a", Kind: NoticeMatch, UserID: "u1", WatchID: "w1", Target: "https://hooks.example.com/h",
		Payload: notice, State: OutboxPending, CreatedAt: at, NextAttempt: at}
	rows := []OutboxRow{base}
	add := func(f func(r *OutboxRow)) {
		r := base
		r.ID = fmt.Sprintf("%s-%d", base.ID, len(rows))
		f(&r)
		rows = append(rows, r)
	}
	add(func(r *OutboxRow) { r.Target = "https://hooks.example.com/h?a=1&b=<2>" })
	add(func(r *OutboxRow) { r.Target = `https://hooks.example.com/"quoted"\back` })
	add(func(r *OutboxRow) { r.Target = "https://例え.jp/フック?q=é" })
	add(func(r *OutboxRow) { r.Target = "mailto:ada@example.com"; r.ID = `odd "id",` })
	add(func(r *OutboxRow) { r.WatchID = ""; r.Payload = json.RawMessage(`{"type":"enrolled","user_id":"u1"}`) })
	add(func(r *OutboxRow) {
		r.State, r.Attempts, r.NextAttempt = OutboxRetrying, 7, at.In(paris).Add(time.Hour)
		r.LastError = "status 503: \"busy\" <html>"
		r.Progress = OutboxProgress{Parts: 1, Total: 3, Posts: 4}
	})
	add(func(r *OutboxRow) {
		r.State, r.DeliveredAt, r.CreatedAt = OutboxDelivered, at.Add(time.Second), at.Local()
		r.SealedSecret = []byte{0, 1, 2, 0xfe, 0xff, '"', '\\'}
	})
	return rows
}

// TestOutboxFastDecode: the delivery loop's decoder gives what
// decodeOutbox gives, row for row and damage for damage, and the target
// peek gives each row's target.
func TestOutboxFastDecode(t *testing.T) {
	for _, r := range outboxSamples() {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeOutbox([]byte(r.ID), raw)
		if err != nil {
			t.Fatalf("decodeOutbox(%s) = %v", raw, err)
		}
		got, err := decodeOutboxFast([]byte(r.ID), raw)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("decodeOutboxFast(%s) =\n%+v, %v\nwant\n%+v", raw, got, err, want)
		}
		if p := peekTarget(raw); p != r.Target {
			t.Errorf("peekTarget(%s) = %q, want %q", raw, p, r.Target)
		}
	}
	good, _ := json.Marshal(outboxSamples()[0])
	for _, c := range []struct {
		name     string
		key, raw string
	}{
		{"not JSON", "9f2c0a", `{"id":"9f2c0a",`},
		{"another key", "other", string(good)},
		{"no target", "9f2c0a", `{"id":"9f2c0a","kind":"match"}`},
		{"bad time", "9f2c0a", `{"id":"9f2c0a","target":"x","created_at":"yesterday"}`},
	} {
		_, want := decodeOutbox([]byte(c.key), []byte(c.raw))
		_, got := decodeOutboxFast([]byte(c.key), []byte(c.raw))
		var de *DamagedError
		if !errors.As(want, &de) || got == nil || got.Error() != want.Error() {
			t.Errorf("%s: decodeOutboxFast = %v, want %v (a *DamagedError)", c.name, got, want)
		}
	}
}

// FuzzOutboxFastDecode: for any stored bytes, the delivery loop's decoder
// accepts what decodeOutbox accepts, gives the same row, and refuses the
// rest with the same error; the peek finds the target of every record
// encoding/json writes.
func FuzzOutboxFastDecode(f *testing.F) {
	for _, r := range outboxSamples() {
		raw, _ := json.Marshal(r)
		f.Add(r.ID, raw)
	}
	f.Add("x", []byte(`{"id":"x","target":"t","target":"u","ID":"x"}`))
	f.Add("x", []byte(`{"id":"x","target":"t","payload":{"a":[1,2,{"b":null}]},"attempts":1e2}`))
	f.Fuzz(func(t *testing.T, key string, raw []byte) {
		want, werr := decodeOutbox([]byte(key), raw)
		got, gerr := decodeOutboxFast([]byte(key), raw)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("decodeOutboxFast(%q) error = %v, want %v", raw, gerr, werr)
		}
		if werr != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeOutboxFast(%q) =\n%+v\nwant\n%+v", raw, got, want)
		}
		again, err := json.Marshal(want)
		if err != nil {
			return // a time beyond year 9999, say: not a record the store writes
		}
		if p := peekTarget(again); p != want.Target {
			t.Fatalf("peekTarget(%s) = %q, want %q", again, p, want.Target)
		}
	})
}

// TestOutboxTargets: the targets of stored rows, "" for ids without one.
func TestOutboxTargets(t *testing.T) {
	db, _ := openOutboxDB(t)
	var ids, want []string
	for _, r := range outboxSamples()[:5] {
		if _, err := db.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		ids, want = append(ids, r.ID), append(want, r.Target)
	}
	ids, want = append(ids, "missing"), append(want, "")
	got, err := db.OutboxTargets(ids)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("OutboxTargets(%q) = %q, %v; want %q", ids, got, err, want)
	}
}
