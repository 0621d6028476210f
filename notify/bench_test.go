package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// The delivery benchmarks. Run each once, alone on the machine:
//
//	go test -run '^$' -bench 'Delivery$' -benchtime 1x ./notify/
//	go test -run '^$' -bench 'DeliverySteady$' -benchtime 1x ./notify/
//
// Both send to a loopback webhook in the same process (benchHook): it
// verifies every signature with the Standard Webhooks reference library
// and answers 204, so the receiver's cost is the same in every phase.

// benchHook is a loopback webhook receiver for the benchmarks: it checks
// each request's signature (Standard Webhooks, the reference library),
// answers 204 (at once, or after a set time, as a receiver across a
// network would), and counts requests, bad ones and the most in flight
// at once. reset starts a new phase.
type benchHook struct {
	srv      *httptest.Server
	verify   *standardwebhooks.Webhook
	n        atomic.Int64 // requests answered 204
	bad      atomic.Int64 // requests whose signature did not verify
	inflight atomic.Int64
	peak     atomic.Int64 // most requests in flight at once
	bodyLen  atomic.Int64 // total body bytes of the requests answered 204
}

func newBenchHook(b *testing.B, sec string, rtt time.Duration) *benchHook {
	v, err := standardwebhooks.NewWebhook(sec)
	if err != nil {
		b.Fatal(err)
	}
	h := &benchHook{verify: v}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := h.inflight.Add(1)
		defer h.inflight.Add(-1)
		for p := h.peak.Load(); in > p && !h.peak.CompareAndSwap(p, in); p = h.peak.Load() {
		}
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(body, r.Header); err != nil {
			h.bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if rtt > 0 {
			time.Sleep(rtt)
		}
		h.bodyLen.Add(int64(len(body)))
		h.n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(h.srv.Close)
	return h
}

func (h *benchHook) url() string { return h.srv.URL + "/hook" }

func (h *benchHook) reset() {
	h.n.Store(0)
	h.bad.Store(0)
	h.peak.Store(0)
	h.bodyLen.Store(0)
}

// check fails the benchmark unless the phase just run had exactly want
// requests, all verified, at most peak in flight at once. It returns the
// mean body size.
func (h *benchHook) check(b *testing.B, phase string, want int, peak int) float64 {
	b.Helper()
	n, bad, p := h.n.Load(), h.bad.Load(), h.peak.Load()
	if n != int64(want) || bad != 0 {
		b.Fatalf("%s: the receiver verified %d requests and refused %d; want %d and 0", phase, n, bad, want)
	}
	if p > int64(peak) {
		b.Fatalf("%s: %d requests were in flight at once; want at most %d", phase, p, peak)
	}
	return float64(h.bodyLen.Load()) / float64(n)
}

// bareLoop sends total signed POSTs of m (webhook-id ids[i]) with the
// channel wh from exactly workers goroutines, each sending one request at
// a time, and returns the posts per second and the most sends that were
// in flight at once. It is the baseline a delivery is compared with: the
// same request (Standard Webhooks body and signature, built per request
// as the channel does), the same client settings, no outbox.
func bareLoop(b *testing.B, wh *webhook, m *Message, ids []string, workers int) (rate float64, peak int64) {
	b.Helper()
	if workers <= 0 {
		b.Fatalf("bare loop with %d workers: want at least 1", workers)
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	var inflight, top atomic.Int64
	t0 := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ids) && !failed.Load(); i += workers {
				mm := *m
				mm.ID = ids[i]
				in := inflight.Add(1)
				for p := top.Load(); in > p && !top.CompareAndSwap(p, in); p = top.Load() {
				}
				err := wh.Send(context.Background(), &mm)
				inflight.Add(-1)
				if err != nil {
					b.Errorf("bare loop: %v", err)
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		b.FailNow()
	}
	return float64(len(ids)) / time.Since(t0).Seconds(), top.Load()
}

// countingOutbox is the vault, counting the transactions that record
// outcomes.
type countingOutbox struct {
	*vault.DB
	settles atomic.Int64
}

func (o *countingOutbox) SettleOutbox(outs []vault.OutboxOutcome) ([]vault.OutboxSettled, error) {
	o.settles.Add(1)
	return o.DB.SettleOutbox(outs)
}

// deliveryService builds a Service delivering db's outbox to the hook,
// polling every poll, calling delivered with each delivered row's id
// (from the loop's goroutines).
func deliveryService(b *testing.B, db Outbox, hook, sec string, poll time.Duration, delivered func(id string)) *Service {
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), PollInterval: poll,
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(sec)}}},
		Observer: func(ev Event) {
			if ev.Kind == EventDelivered {
				delivered(ev.ID)
			} else if ev.Kind != EventReplayed {
				b.Errorf("event %s for %s: %s; want only deliveries", ev.Kind, ev.ID, ev.Err)
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// startRun runs s until the returned stop is called; stop waits for Run.
func startRun(s *Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	return func() {
		cancel()
		<-ran
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkDelivery measures how fast the loop drains a burst: 10,000
// notifications for one loopback webhook committed in one transaction
// while the loop runs idle, then Kick. deliveries/s counts from the Kick
// to the last row recorded delivered (the enqueue, the producer's cost,
// is enqueue-ms); p99-ms is the time from the Kick to a row being
// recorded delivered. Beside it, in the same run, two bare loops of the
// same signed POSTs to the same receiver with no outbox: sequential (1
// worker) and parallel (exactly the notifier's PerTargetConcurrency
// workers, the most sends it has in flight to one target). ratio-vs-seq
// and ratio-vs-par are deliveries/s over each baseline's posts/s. The
// CPU figures are the process's (receiver included) per delivery or post.
//
// receiver=0ms answers at once: every phase is bound by the CPU (the
// receiver's included, on the same cores), so the ratios measure what
// the outbox costs per row. receiver=2ms answers after 2 ms, as a
// receiver across a network does (2,000 notifications): the ratios
// measure what the loop adds to the time a send takes.
func BenchmarkDelivery(b *testing.B) {
	b.Run("receiver=0ms", func(b *testing.B) { benchDelivery(b, 10000, 0) })
	b.Run("receiver=2ms", func(b *testing.B) { benchDelivery(b, 2000, 2*time.Millisecond) })
}

func benchDelivery(b *testing.B, total int, rtt time.Duration) {
	sec, _ := whsec()
	hook := newBenchHook(b, sec, rtt)
	notice := matchNotice("u1", "w1", 3)
	payload := []byte(mustJSON(notice))
	for range b.N {
		b.StopTimer()
		db := openDB(b, "", nil, nil)
		var mu sync.Mutex
		var lat []time.Duration
		var start time.Time // the Kick
		done := make(chan struct{})
		ob := &countingOutbox{DB: db}
		s := deliveryService(b, ob, hook.url(), sec, time.Hour, func(string) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, now.Sub(start))
			if len(lat) == total {
				close(done)
			}
		})
		cc := s.set.Load().cc.PerTargetConcurrency
		if cc <= 0 {
			b.Fatalf("PerTargetConcurrency = %d, want > 0", cc)
		}
		rows := make([]vault.OutboxRow, total)
		for i := range rows {
			rows[i] = vault.OutboxRow{ID: fmt.Sprintf("d%05d", i), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
				Target: hook.url(), Payload: payload}
		}
		hook.reset()
		// The loop runs, idle: its first scan and maintenance found an
		// empty outbox, and it polls once an hour, so only the Kick
		// starts the deliveries.
		stop := startRun(s)
		time.Sleep(100 * time.Millisecond)
		t0 := time.Now()
		if n, err := db.Enqueue(rows...); err != nil || n != total {
			b.Fatalf("Enqueue = %d, %v; want %d", n, err, total)
		}
		enqueued := time.Since(t0)
		if n := hook.n.Load(); n != 0 {
			b.Fatalf("%d deliveries before the Kick", n)
		}
		cpu0 := cpuTime()
		b.StartTimer()
		mu.Lock()
		start = time.Now()
		mu.Unlock()
		s.Kick()
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatal("deliveries did not finish within 5 minutes")
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cpu := cpuTime() - cpu0
		stop()
		outSize := hook.check(b, "outbox", total, cc)

		// The bare loops: the same signed request as the loop sends, built
		// from the same row by the same code (links included), through a
		// channel with the same settings, ids of the same length.
		m, err := s.message(vault.OutboxRow{ID: "x00000", Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
			Target: hook.url(), Payload: payload})
		if err != nil {
			b.Fatal(err)
		}
		wh, err := newWebhook([]WebhookSecret{{URL: hook.url(), Secret: secret.New(sec)}}, s.set.Load().cc.Timeout, true, time.Now)
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, total)
		for i := range ids {
			ids[i] = fmt.Sprintf("x%05d", i)
		}
		hook.reset()
		cpu0 = cpuTime()
		seq, seqPeak := bareLoop(b, wh, m, ids, 1)
		cpuSeq := cpuTime() - cpu0
		seqSize := hook.check(b, "bare sequential", total, 1)
		hook.reset()
		cpu0 = cpuTime()
		par, parPeak := bareLoop(b, wh, m, ids, cc)
		cpuPar := cpuTime() - cpu0
		parSize := hook.check(b, "bare parallel", total, cc)
		if seqPeak != 1 || parPeak != int64(cc) {
			b.Fatalf("bare loops had %d and %d sends in flight at once; want 1 and %d", seqPeak, parPeak, cc)
		}
		if outSize != seqSize || outSize != parSize {
			b.Fatalf("mean body: outbox %.1f bytes, bare %.1f and %.1f; want the same request", outSize, seqSize, parSize)
		}

		slices.Sort(lat)
		rate := float64(total) / elapsed.Seconds()
		b.ReportMetric(rate, "deliveries/s")
		b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")
		b.ReportMetric(seq, "bare-seq-posts/s")
		b.ReportMetric(par, "bare-par-posts/s")
		b.ReportMetric(rate/seq, "ratio-vs-seq")
		b.ReportMetric(rate/par, "ratio-vs-par")
		b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/delivery")
		b.ReportMetric(float64(cpuPar.Microseconds())/float64(total), "cpu-µs/bare-par-post")
		b.ReportMetric(ms(enqueued), "enqueue-ms")
		b.ReportMetric(float64(total)/float64(ob.settles.Load()), "rows/commit")
		took := func(rate float64) time.Duration {
			return time.Duration(float64(time.Second) * float64(total) / rate).Round(time.Millisecond)
		}
		b.Logf("GOMAXPROCS %d, %s/%s; receiver answers after %s; %d deliveries in %s (CPU %s), concurrency %d; "+
			"bare: sequential %s (CPU %s), parallel %s (CPU %s); body %.0f bytes",
			runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, rtt, total, elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), cc,
			took(seq), cpuSeq.Round(time.Millisecond), took(par), cpuPar.Round(time.Millisecond), outSize)
		b.StartTimer()
	}
}

// BenchmarkDeliverySteady enqueues a steady stream of 1,000 notifications
// a second for 5 seconds the way the worker does, in small transactions
// (5 rows every 5 ms, each transaction followed by Kick), and measures the
// time from each Enqueue call to its row being recorded delivered: p50,
// p99 and max. The goal is a p99 under 50 ms. It reports the pace the
// enqueuer kept (notifications/s enqueued) and its transactions' own p99,
// which the latencies include.
func BenchmarkDeliverySteady(b *testing.B) {
	const (
		rate     = 1000 // notifications per second
		perTx    = 5
		duration = 5 * time.Second
		total    = int(rate * duration / time.Second)
		every    = time.Second * perTx / rate
	)
	sec, _ := whsec()
	hook := newBenchHook(b, sec, 0)
	payload := []byte(mustJSON(matchNotice("u1", "w1", 3)))
	for range b.N {
		b.StopTimer()
		db := openDB(b, "", nil, nil)
		enq := make([]time.Time, total)   // when the Enqueue of row i began
		deliv := make([]time.Time, total) // when row i was recorded delivered
		var delivered atomic.Int64
		done := make(chan struct{})
		ob := &countingOutbox{DB: db}
		s := deliveryService(b, ob, hook.url(), sec, 0, func(id string) {
			var i int
			if _, err := fmt.Sscanf(id, "s%06d", &i); err != nil || i >= total {
				b.Errorf("delivered unknown id %q", id)
				return
			}
			deliv[i] = time.Now()
			if delivered.Add(1) == int64(total) {
				close(done)
			}
		})
		hook.reset()
		stop := startRun(s)
		b.StartTimer()
		cpu0 := cpuTime()
		var txTimes []time.Duration
		t0 := time.Now()
		for k := 0; k*perTx < total; k++ {
			if d := time.Until(t0.Add(time.Duration(k) * every)); d > 0 {
				time.Sleep(d)
			}
			rows := make([]vault.OutboxRow, perTx)
			for j := range rows {
				rows[j] = vault.OutboxRow{ID: fmt.Sprintf("s%06d", k*perTx+j), Kind: vault.NoticeMatch, UserID: "u1", WatchID: "w1",
					Target: hook.url(), Payload: payload}
			}
			at := time.Now()
			for j := range rows {
				enq[k*perTx+j] = at
			}
			if n, err := db.Enqueue(rows...); err != nil || n != perTx {
				b.Fatalf("Enqueue = %d, %v; want %d", n, err, perTx)
			}
			txTimes = append(txTimes, time.Since(at))
			s.Kick()
		}
		paced := float64(total) / time.Since(t0).Seconds()
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("%d of %d deliveries within a minute of the last enqueue", delivered.Load(), total)
		}
		cpu := cpuTime() - cpu0
		b.StopTimer()
		stop()
		hook.check(b, "steady stream", total, s.set.Load().cc.PerTargetConcurrency)
		lat := make([]time.Duration, total)
		for i := range lat {
			lat[i] = deliv[i].Sub(enq[i])
		}
		slices.Sort(lat)
		slices.Sort(txTimes)
		b.ReportMetric(paced, "enqueued/s")
		b.ReportMetric(ms(pct(lat, 0.50)), "p50-ms")
		b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		b.ReportMetric(ms(pct(txTimes, 0.99)), "enqueue-tx-p99-ms")
		b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/delivery")
		b.ReportMetric(float64(total)/float64(ob.settles.Load()), "rows/commit")
		b.Logf("GOMAXPROCS %d, %s/%s; %d notifications at %.0f/s in transactions of %d; enqueue to delivered: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, total, paced, perTx, ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(lat[len(lat)-1]))
		b.StartTimer()
	}
}

func mustJSON(n vault.Notice) string {
	p, _ := json.Marshal(n)
	return string(p)
}
