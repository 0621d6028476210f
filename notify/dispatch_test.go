package notify

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// The vault is the notifier's store, through the consumer-side interface.
var _ Outbox = (*vault.DB)(nil)

// Every backend of the storage contract is an Outbox.
var _ Outbox = vault.Store(nil)

// stallOutbox is the vault with a gate on SettleOutbox, and a count of
// what each call records.
type stallOutbox struct {
	*vault.DB
	mu       sync.Mutex
	gate     chan struct{} // when set, SettleOutbox waits for it to close
	calls    int
	maxBatch int
	loaded   int // rows LoadOutbox returned
}

func (o *stallOutbox) LoadOutbox(ids []string) ([]vault.OutboxRow, error) {
	rows, err := o.DB.LoadOutbox(ids)
	o.mu.Lock()
	o.loaded += len(rows)
	o.mu.Unlock()
	return rows, err
}

func (o *stallOutbox) loadedRows() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.loaded
}

func (o *stallOutbox) SettleOutbox(outs []vault.OutboxOutcome) ([]vault.OutboxSettled, error) {
	o.mu.Lock()
	gate := o.gate
	o.calls++
	o.maxBatch = max(o.maxBatch, len(outs))
	o.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return o.DB.SettleOutbox(outs)
}

func (o *stallOutbox) stall() func() {
	o.mu.Lock()
	defer o.mu.Unlock()
	gate := make(chan struct{})
	o.gate = gate
	return func() {
		o.mu.Lock()
		o.gate = nil
		o.mu.Unlock()
		close(gate)
	}
}

// TestLoopLiveWhileCommitStalls: while the store takes its time to commit
// (a slow fsync), the loop keeps reading, dropping and sending: thousands
// of rows for a disabled target pile up as pending outcomes instead of
// filling a channel the loop blocks on (the old loop stopped there), and
// a row for another target is still sent. When the store answers, every outcome is recorded, many per
// transaction.
func TestLoopLiveWhileCommitStalls(t *testing.T) {
	sec, _ := whsec()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer srv.Close()
	gone := srv.URL + "/hook"
	so := &stallOutbox{DB: openDB(t, "", nil, nil)}
	var out logBuffer
	ev := newEvents()
	s, err := New(Config{Outbox: so, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Console: &out, Observer: ev.observe,
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: gone, Secret: secret.New(sec)}}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	enqueue(t, so.DB, "gone-0", gone, matchNotice("u1", "w1", 1))
	s.Kick()
	ev.wait(t, "gone-0", EventDisabled)

	release := so.stall()
	const total = 3000
	rows := make([]vault.OutboxRow, total)
	for i := range rows {
		rows[i] = vault.OutboxRow{ID: fmt.Sprintf("d-%04d", i), Kind: vault.NoticeMatch, UserID: "u1", Target: gone,
			Payload: []byte(mustJSON(matchNotice("u1", "w1", 1)))}
	}
	before := so.loadedRows()
	if _, err := so.Enqueue(rows...); err != nil {
		t.Fatal(err)
	}
	s.Kick()
	// Once the loop has read them all, their drops wait for the stalled
	// commit; only then comes a row for another target.
	for deadline := time.Now().Add(20 * time.Second); so.loadedRows() < before+total; {
		if time.Now().After(deadline) {
			release()
			t.Fatalf("the loop read %d of the %d rows while the commit stalled", so.loadedRows()-before, total)
		}
		time.Sleep(2 * time.Millisecond)
	}
	enqueue(t, so.DB, "c-1", "console:", matchNotice("u1", "w1", 1))
	s.Kick()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "notification c-1"); {
		if time.Now().After(deadline) {
			release()
			t.Fatal("the console row was not sent while the commit stalled: the loop is stuck")
		}
		time.Sleep(2 * time.Millisecond)
	}
	release()
	ev.wait(t, "c-1", EventDelivered)
	for i := range total {
		ev.wait(t, fmt.Sprintf("d-%04d", i), EventDropped)
	}
	so.mu.Lock()
	calls, maxBatch := so.calls, so.maxBatch
	so.mu.Unlock()
	if maxBatch < 2 || calls >= total {
		t.Errorf("%d commits for %d outcomes, at most %d in one; want many outcomes per commit", calls, total+2, maxBatch)
	}
	if r := getRow(t, so.DB, "d-2999"); r.State != vault.OutboxDropped || r.LastError != droppedDisabled {
		t.Errorf("d-2999 = %s %q, want dropped because its target is disabled", r.State, r.LastError)
	}
}

// TestShutdownKeepsRowsDue: a send cut short by shutdown is not recorded
// as a failure; its row stays due, with its attempt count, for the next
// run, which delivers it under the same id.
func TestShutdownKeepsRowsDue(t *testing.T) {
	sec, _ := whsec()
	block := make(chan struct{})
	var once sync.Once
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		select {
		case <-block:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer close(block)
	hook := srv.URL + "/hook"
	db := openDB(t, "", nil, nil)
	cfg := Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
		Channels: ChannelsConfig{AllowPrivateTargets: true, Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(sec)}}}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	enqueue(t, db, "r1", hook, matchNotice("u1", "w1", 1))
	s.Kick()
	<-arrived
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if r := getRow(t, db, "r1"); r.State != vault.OutboxPending || r.Attempts != 0 || r.LastError != "" {
		t.Errorf("row after a shutdown mid-send = %s after %d attempts (%q), want pending after 0", r.State, r.Attempts, r.LastError)
	}
}

// TestDispatchBacklogs: backlogs larger than their queues are delivered
// with each row read from the store once; a target whose receiver hangs
// holds PerTargetConcurrency sends and no more, and holds up no other
// target, not even one whose rows come after its backlog.
func TestDispatchBacklogs(t *testing.T) {
	const cc, budget, fast, stuck, late = 3, 300, 1000, 200, 20
	sec, _ := whsec()
	release := make(chan struct{})
	var mu sync.Mutex
	inflight, peak := map[string]int{}, map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight[r.URL.Path]++
		peak[r.URL.Path] = max(peak[r.URL.Path], inflight[r.URL.Path])
		mu.Unlock()
		if r.URL.Path == "/stuck" {
			<-release
		}
		mu.Lock()
		inflight[r.URL.Path]--
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	hook := func(path string) string { return srv.URL + path }
	so := &stallOutbox{DB: openDB(t, "", nil, nil)}
	delivered := map[string]int{} // by id prefix, under mu
	observe := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind != EventDelivered {
			t.Errorf("event %s for %s (%s), want deliveries only", ev.Kind, ev.ID, ev.Err)
		}
		prefix, _, _ := strings.Cut(ev.ID, "-")
		delivered[prefix]++
	}
	wait := func(prefix string, n int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := delivered[prefix]
			mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of the %d %s rows delivered within 20s", got, n, prefix)
			}
		}
	}
	var hooks []WebhookSecret
	for _, p := range []string{"/fast", "/stuck", "/late"} {
		hooks = append(hooks, WebhookSecret{URL: hook(p), Secret: secret.New(sec)})
	}
	s, err := New(Config{Outbox: so, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: observe,
		Channels:    ChannelsConfig{AllowPrivateTargets: true, PerTargetConcurrency: cc, Webhooks: hooks},
		queueBudget: budget}) // queues of 300 rows for one target, 128 for three
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(mustJSON(matchNotice("u1", "w1", 1)))
	rows := func(prefix, target string, n int) []vault.OutboxRow {
		out := make([]vault.OutboxRow, n)
		for i := range out {
			out[i] = vault.OutboxRow{ID: fmt.Sprintf("%s-%05d", prefix, i), Kind: vault.NoticeMatch, UserID: "u1",
				Target: target, Payload: payload}
		}
		return out
	}
	// The hanging target's rows come first in the due index.
	if _, err := so.Enqueue(rows("stuck", hook("/stuck"), stuck)...); err != nil {
		t.Fatal(err)
	}
	if _, err := so.Enqueue(rows("fast", hook("/fast"), fast)...); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	if _, err := so.Enqueue(rows("late", hook("/late"), late)...); err != nil {
		t.Fatal(err)
	}
	s.Kick()
	wait("fast", fast)
	wait("late", late)
	mu.Lock()
	stuckNow := inflight["/stuck"]
	mu.Unlock()
	if stuckNow != cc {
		t.Errorf("%d sends in flight to the hanging target, want %d (PerTargetConcurrency)", stuckNow, cc)
	}
	close(release)
	released = true
	wait("stuck", stuck)
	mu.Lock()
	defer mu.Unlock()
	for p, n := range peak {
		if n > cc {
			t.Errorf("%d sends in flight at once to %s, want at most %d", n, p, cc)
		}
	}
	if n, want := so.loadedRows(), fast+stuck+late; n != want {
		t.Errorf("the loop read %d rows from the store to deliver %d, want each once", n, want)
	}
}
