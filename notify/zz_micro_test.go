package notify

import (
	"encoding/json"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/vault"
)

func BenchmarkZZRowDecode(b *testing.B) {
	p := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	r := vault.OutboxRow{ID: "d00001", Kind: "match", UserID: "u1", WatchID: "w1", Target: "http://127.0.0.1:1234/hook", Payload: p, State: vault.OutboxPending, CreatedAt: time.Now(), NextAttempt: time.Now()}
	raw, _ := json.Marshal(r)
	b.Logf("row %d bytes payload %d", len(raw), len(p))
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var x vault.OutboxRow
			_ = json.Unmarshal(raw, &x)
		}
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(r)
		}
	})
	b.Run("notice", func(b *testing.B) {
		for b.Loop() {
			var n vault.Notice
			_ = json.Unmarshal(p, &n)
		}
	})
}

func BenchmarkZZOutboxOnly(b *testing.B) {
	const total = 10000
	sec, _ := whsec()
	hook := newBenchHook(b, sec, 0)
	payload := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	for range b.N {
		db := openDB(b, "", nil, nil)
		var n atomic.Int64
		done := make(chan struct{})
		s := deliveryService(b, db, hook.url(), sec, time.Hour, func(string) {
			if n.Add(1) == total {
				close(done)
			}
		})
		rows := make([]vault.OutboxRow, total)
		for i := range rows {
			rows[i] = vault.OutboxRow{ID: fmt.Sprintf("d%05d", i), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
				Target: hook.url(), Payload: payload}
		}
		stop := startRun(s)
		time.Sleep(100 * time.Millisecond)
		t0 := time.Now()
		if _, err := db.Enqueue(rows...); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c0 := cpuTime()
		s.Kick()
		<-done
		el := time.Since(t1)
		c := cpuTime() - c0
		stop()
		b.ReportMetric(float64(total)/el.Seconds(), "deliveries/s")
		b.ReportMetric(float64(c.Microseconds())/total, "cpu-µs/delivery")
		b.ReportMetric(float64(t1.Sub(t0).Milliseconds()), "enqueue-ms")
	}
}

func BenchmarkZZRowDecodeV2(b *testing.B) {
	p := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	r := vault.OutboxRow{ID: "d00001", Kind: "match", UserID: "u1", WatchID: "w1", Target: "http://127.0.0.1:1234/hook", Payload: p, State: vault.OutboxPending, CreatedAt: time.Now(), NextAttempt: time.Now()}
	raw, _ := json.Marshal(r)
	b.Run("v2", func(b *testing.B) {
		for b.Loop() {
			var x vault.OutboxRow
			if err := jsonv2.Unmarshal(raw, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v1compat", func(b *testing.B) {
		for b.Loop() {
			var x vault.OutboxRow
			if err := jsonv1.Unmarshal(raw, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v2-notice", func(b *testing.B) {
		for b.Loop() {
			var n vault.Notice
			_ = jsonv2.Unmarshal(p, &n)
		}
	})
	b.Run("v2-encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = jsonv2.Marshal(r)
		}
	})
	b.Run("v1compat-encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = jsonv1.Marshal(r)
		}
	})
}

func BenchmarkZZAge(b *testing.B) {
	type age struct {
		ID          string            `json:"id"`
		State       vault.OutboxState `json:"state"`
		CreatedAt   time.Time         `json:"created_at"`
		DeliveredAt time.Time         `json:"delivered_at"`
	}
	p := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	r := vault.OutboxRow{ID: "d00001", Kind: "match", UserID: "u1", WatchID: "w1", Target: "http://127.0.0.1:1234/hook", Payload: p, State: vault.OutboxDelivered, CreatedAt: time.Now(), NextAttempt: time.Now(), DeliveredAt: time.Now()}
	raw, _ := json.Marshal(r)
	b.Run("std", func(b *testing.B) {
		for b.Loop() {
			var x age
			_ = json.Unmarshal(raw, &x)
		}
	})
	b.Run("v1compat", func(b *testing.B) {
		for b.Loop() {
			var x age
			_ = jsonv1.Unmarshal(raw, &x)
		}
	})
	b.Run("v2", func(b *testing.B) {
		for b.Loop() {
			var x age
			_ = jsonv2.Unmarshal(raw, &x)
		}
	})
}

func BenchmarkZZNotice(b *testing.B) {
	p := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	b.Run("v1compat", func(b *testing.B) {
		for b.Loop() {
			var n vault.Notice
			_ = jsonv1.Unmarshal(p, &n)
		}
	})
	b.Run("v2", func(b *testing.B) {
		for b.Loop() {
			var n vault.Notice
			_ = jsonv2.Unmarshal(p, &n)
		}
	})
	b.Run("std", func(b *testing.B) {
		for b.Loop() {
			var n vault.Notice
			_ = json.Unmarshal(p, &n)
		}
	})
}
