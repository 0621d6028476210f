package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		crashChild()
		return
	}
	os.Exit(m.Run())
}

// clock is a controlled clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// openDB opens a vault with vaulttest (checked after the test): at path
// ("" for a new file), with master (nil for a new key) and the clock now
// (nil for time.Now).
func openDB(t testing.TB, path string, master *seal.MasterKey, now func() time.Time) *vault.DB {
	t.Helper()
	var opts []vaulttest.Option
	if path != "" {
		opts = append(opts, vaulttest.Path(path))
	}
	if master != nil {
		opts = append(opts, vaulttest.Master(master))
	}
	if now != nil {
		opts = append(opts, vaulttest.Now(now))
	}
	return vaulttest.Open(t, opts...)
}

func matchNotice(user, watch string, posts int) vault.Notice {
	n := vault.Notice{Type: vault.NoticeMatch, UserID: user, WatchID: watch, Provider: "x", Hashtags: []string{"golang"},
		Time: time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC)}
	for i := range posts {
		id := "18690000000000000" + string(rune('0'+i%10))
		n.Posts = append(n.Posts, vault.Post{ID: id, Text: "Go 1.26 is out! #golang\nsecond line", AuthorID: "42",
			AuthorUsername: "gopher", CreatedAt: time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC),
			URL: "https://x.com/gopher/status/" + id})
	}
	return n
}

func enqueue(t testing.TB, db *vault.DB, id, target string, n vault.Notice) {
	t.Helper()
	payload, _ := json.Marshal(n)
	if _, err := db.Enqueue(vault.OutboxRow{ID: id, Kind: n.Type, UserID: n.UserID, WatchID: n.WatchID, Target: target, Payload: payload}); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
}

func getRow(t testing.TB, db *vault.DB, id string) vault.OutboxRow {
	t.Helper()
	r, err := db.OutboxRow(id)
	if err != nil {
		t.Fatalf("OutboxRow(%s): %v", id, err)
	}
	return r
}

// The fixtures below write records the notifier never writes (watches,
// sealed rows, deletions); they are the tests' only transactions.

// putWatch stores a watch as it is, without the rules the doors apply,
// and an active grant for its user at its provider when the user has
// none (the store keeps one for every watch that runs).
func putWatch(t testing.TB, db *vault.DB, w vault.Watch) {
	t.Helper()
	err := db.Update(func(tx *vault.Tx) error {
		if _, err := tx.UserGrant(w.UserID, w.Provider); errors.Is(err, vault.ErrNotFound) {
			g := vault.Grant{ID: vault.NewID(), UserID: w.UserID, Provider: w.Provider, Subject: "sub-" + w.UserID, State: vault.GrantActive}
			if err := tx.PutGrant(g); err != nil {
				return err
			}
		}
		return tx.PutWatch(w)
	})
	if err != nil {
		t.Fatalf("PutWatch(%s): %v", w.ID, err)
	}
}

// enqueueSealed enqueues a row carrying a sealed secret.
func enqueueSealed(t testing.TB, db *vault.DB, r vault.OutboxRow, v secret.Value) {
	t.Helper()
	if err := db.Update(func(tx *vault.Tx) error {
		if err := tx.SealOutboxSecret(&r, v); err != nil {
			return err
		}
		_, err := tx.Enqueue(r)
		return err
	}); err != nil {
		t.Fatalf("enqueue sealed %s: %v", r.ID, err)
	}
}

// auditTrail returns the vault's audit events (a fixture: the notifier
// itself never reads them).
func auditTrail(t testing.TB, db *vault.DB) []vault.AuditEvent {
	t.Helper()
	var out []vault.AuditEvent
	if err := db.AuditTrail(0, func(ev vault.AuditEvent) error { out = append(out, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// deleteRows deletes outbox rows.
func deleteRows(t testing.TB, db *vault.DB, ids ...string) {
	t.Helper()
	if err := db.Update(func(tx *vault.Tx) error {
		for _, id := range ids {
			if err := tx.DeleteOutboxRow(id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("delete rows: %v", err)
	}
}

func linkKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

func whsec() (string, []byte) {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return "whsec_" + base64.StdEncoding.EncodeToString(k), k
}

// events collects observer events.
type events struct {
	mu   sync.Mutex
	all  []Event
	used map[int]bool
}

func newEvents() *events { return &events{used: map[int]bool{}} }

func (e *events) observe(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

// wait returns the earliest event not returned before for id (any id when
// empty) of one of kinds (any kind when none). Events of other kinds for
// that id are consumed on the way.
func (e *events) wait(t testing.TB, id string, kinds ...EventKind) Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, ev := range e.all {
			if e.used[i] || (id != "" && ev.ID != id) {
				continue
			}
			match := len(kinds) == 0
			for _, k := range kinds {
				match = match || ev.Kind == k
			}
			if match {
				e.used[i] = true
				e.mu.Unlock()
				return ev
			}
			if id != "" {
				e.used[i] = true
			}
		}
		e.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no %v event for %q within 20s", kinds, id)
	return Event{}
}

// run starts s.Run and stops it at cleanup.
func run(t testing.TB, s *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// receiver is a webhook endpoint that verifies Standard Webhooks
// signatures with the reference library and records what it got.
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	hooks   []*standardwebhooks.Webhook
	ids     map[string]int
	bodies  map[string]WebhookBody
	bad     int
	respond func(w http.ResponseWriter, r *http.Request, id string) // nil: 204
	tol     bool                                                    // enforce the timestamp tolerance
}

func newReceiver(t testing.TB, secrets ...string) *receiver {
	rc := &receiver{t: t, ids: map[string]int{}, bodies: map[string]WebhookBody{}, tol: true}
	for _, s := range secrets {
		h, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatalf("NewWebhook: %v", err)
		}
		rc.hooks = append(rc.hooks, h)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", rc.serve)
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.ids["redirect-followed"]++
		rc.mu.Unlock()
	})
	rc.srv = httptest.NewServer(mux)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hook" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("webhook-id")
	ok := true
	for _, h := range rc.hooks {
		var err error
		if rc.tol {
			err = h.Verify(body, r.Header)
		} else {
			err = h.VerifyIgnoringTimestamp(body, r.Header)
		}
		if err != nil {
			ok = false
		}
	}
	var wb WebhookBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wb); err != nil || wb.Data.ID != id {
		ok = false
	}
	rc.mu.Lock()
	if !ok || len(rc.hooks) == 0 {
		rc.bad++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.ids[id]++
	rc.bodies[id] = wb
	respond := rc.respond
	rc.mu.Unlock()
	if respond != nil {
		respond(w, r, id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.ids[id]
}

// logBuffer captures a Service's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
