package notify

import (
	"encoding/json"
	"fmt"
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
	hook := newBenchHook(b, sec)
	payload := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	for range b.N {
		db := openDB(b, "", nil, nil)
		var n atomic.Int64
		done := make(chan struct{})
		s := deliveryService(b, db, hook.url(), sec, func(string) {
			if n.Add(1) == total {
				close(done)
			}
		})
		rows := make([]vault.OutboxRow, total)
		for i := range rows {
			rows[i] = vault.OutboxRow{ID: fmt.Sprintf("d%05d", i), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
				Target: hook.url(), Payload: payload}
		}
		t0 := time.Now()
		if _, err := db.Enqueue(rows...); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c0 := cpuTime()
		stop := startRun(s)
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
