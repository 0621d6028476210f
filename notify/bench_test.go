package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// BenchmarkDelivery queues 10,000 notifications for one loopback webhook
// and measures deliveries per second and the p99 time from enqueue to
// delivered, beside a bare loop of the same signed POSTs to the same
// receiver (sequential, and with PerTargetConcurrency workers), in the
// same run. Run it once: go test -run '^$' -bench Delivery -benchtime 1x ./notify/
func BenchmarkDelivery(b *testing.B) {
	const total = 10000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	target := srv.URL + "/hook"
	sec, _ := whsec()
	notice := matchNotice("u1", "w1", 3)
	for range b.N {
		b.StopTimer()
		db := openDB(b, "", nil, nil)
		var mu sync.Mutex
		var lat []time.Duration
		done := make(chan struct{})
		s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
			Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: target, Secret: secret.New(sec)}}},
			Observer: func(ev Event) {
				if ev.Kind != EventDelivered {
					return
				}
				mu.Lock()
				lat = append(lat, ev.Latency)
				if len(lat) == total {
					close(done)
				}
				mu.Unlock()
			}})
		if err != nil {
			b.Fatal(err)
		}
		payload := []byte(mustJSON(notice))
		b.StartTimer()
		start := time.Now()
		rows := make([]vault.OutboxRow, total)
		for i := range rows {
			rows[i] = vault.OutboxRow{ID: "b" + strconv.Itoa(i), Kind: "match", UserID: "u1", WatchID: "w1", Target: target, Payload: payload}
		}
		if _, err := db.Enqueue(rows...); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- s.Run(ctx) }()
		s.Kick()
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatal("deliveries did not finish within 5 minutes")
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		<-ran

		// Bare loops: the same signed request, no outbox.
		wh, _ := newWebhook([]WebhookSecret{{URL: target, Secret: secret.New(sec)}}, 20*time.Second, true, time.Now)
		m := &Message{ID: "bare", Target: target, Notice: notice}
		bare := func(workers int) float64 {
			var wg sync.WaitGroup
			t0 := time.Now()
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < total; i += workers {
						if err := wh.Send(context.Background(), m); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			return total / time.Since(t0).Seconds()
		}
		seq, par := bare(1), bare(s.set.Load().cc.PerTargetConcurrency)
		slices.Sort(lat)
		rate := total / elapsed.Seconds()
		b.ReportMetric(rate, "deliveries/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
		b.ReportMetric(seq, "bare-seq-posts/s")
		b.ReportMetric(par, "bare-par-posts/s")
		b.ReportMetric(rate/seq, "ratio-vs-seq")
		b.ReportMetric(rate/par, "ratio-vs-par")
		b.Logf("GOMAXPROCS %d, %s/%s; %d deliveries in %s", runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, total, elapsed)
		b.StartTimer()
	}
}

func mustJSON(n vault.Notice) string {
	p, _ := json.Marshal(n)
	return string(p)
}
