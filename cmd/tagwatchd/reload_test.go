package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
)

// hookReceiver is a webhook endpoint that accepts only deliveries signed
// (Standard Webhooks) with its current key.
type hookReceiver struct {
	mu       sync.Mutex
	key      []byte
	accepted map[string]int // webhook-id -> deliveries accepted
	refused  map[string]int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	h.mu.Lock()
	defer h.mu.Unlock()
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			h.accepted[id]++
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	h.refused[id]++
	http.Error(w, "bad signature", http.StatusUnauthorized)
}

func (h *hookReceiver) counts(id string) (accepted, refused int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted[id], h.refused[id]
}

func newWhsec(fill byte) (string, []byte) {
	k := bytes.Repeat([]byte{fill}, 32)
	return "whsec_" + base64.StdEncoding.EncodeToString(k), k
}

// TestReloadChannelsAndProviders: SIGHUP applies a changed webhook secret
// (a row pending under the old one keeps its id and is delivered signed
// with the new one), rebuilds a provider whose client secret file changed
// (its next refresh sends the new secret) while an unchanged provider
// keeps its object and its grant's cached access token (no refresh), and
// a provider whose secret no longer reads keeps running as it was, with
// the error logged and shown in the status's last errors.
func TestReloadChannelsAndProviders(t *testing.T) {
	s := newSvcTTL(t, "", false, time.Hour)
	keyDir := filepath.Dir(s.config)

	// A second provider "y" on the same sandbox, with a secret file of its
	// own, and a webhook the test receives, signed with hook-old.
	ySecret := filepath.Join(keyDir, "y-client-secret")
	if err := os.WriteFile(ySecret, []byte(s.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oldHook, _ := newWhsec('o')
	newHook, newKey := newWhsec('n')
	hookFile := filepath.Join(keyDir, "hook-local")
	if err := os.WriteFile(hookFile, []byte(oldHook), 0o600); err != nil {
		t.Fatal(err)
	}
	rcv := &hookReceiver{key: newKey, accepted: map[string]int{}, refused: map[string]int{}}
	hs := httptest.NewServer(rcv)
	t.Cleanup(hs.Close)
	hookURL := hs.URL + "/hook"
	raw, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := string(raw)
	xBlock := cfgText[strings.Index(cfgText, "[[provider]]"):strings.Index(cfgText, "[[notify.webhook]]")]
	yBlock := strings.Replace(strings.Replace(xBlock, `name = "x"`, `name = "y"`, 1), filepath.Join(keyDir, "x-client-secret"), ySecret, 1)
	cfgText = strings.Replace(cfgText, "[[notify.webhook]]", yBlock+"[notify]\nallow_private_targets = true\nretry_span = \"6s\"\n\n[[notify.webhook]]", 1)
	cfgText += "\n[[notify.webhook]]\nurl = \"" + hookURL + "\"\nsecret_file = \"" + hookFile + "\"\n"
	if err := os.WriteFile(s.config, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(0)
	op, d := s.op, s.op.d

	reloaded := make(chan struct{}, 1)
	op.hooksMu.Lock()
	op.hooks.Reload = append(op.hooks.Reload, func(context.Context, *config.Config) error {
		reloaded <- struct{}{}
		return nil
	})
	op.hooksMu.Unlock()
	sighup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reloaded:
		case <-time.After(20 * time.Second):
			t.Fatalf("SIGHUP did not reload\n%s", s.logs)
		}
	}

	// Grants at x and y; both access tokens are cached.
	s.enrollUserAt("ada", "x")
	s.enrollUserAt("ada", "y")
	var gx, gy vault.Grant
	if err := d.db.View(func(tx *vault.Tx) error {
		var err error
		if gx, err = tx.UserGrant("ada", "x"); err != nil {
			return err
		}
		gy, err = tx.UserGrant("ada", "y")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokX, err := d.renew.Source(gx.ID).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tokY, err := d.renew.Source(gy.ID).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.seen.all()); n != 0 {
		t.Fatalf("refreshes before the reload = %d, want 0 (fresh tokens)", n)
	}

	// A notification under the old webhook secret: refused, retried.
	row := vault.OutboxID("ada", "reload-test")
	payload, _ := json.Marshal(vault.Notice{Type: vault.NoticeMatch, UserID: "ada", Provider: "x", Time: time.Now(), Message: "hello"})
	if err := d.db.Update(func(tx *vault.Tx) error {
		_, err := tx.Enqueue(vault.OutboxRow{ID: row, Kind: vault.NoticeMatch, UserID: "ada", Target: hookURL, Payload: payload})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d.notify.Kick()
	waitFor(t, 20*time.Second, "the webhook to refuse the old signature", func() bool { _, r := rcv.counts(row); return r > 0 })

	// Rotate: the webhook's secret, and y's client secret (X accepts both).
	rotated := "SENTINEL-rotated-" + vault.NewID()
	s.rotated.Store(&rotated)
	if err := os.WriteFile(hookFile, []byte(newHook), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ySecret, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.provMu.Lock()
	px, py := d.providers["x"].p, d.providers["y"].p
	d.provMu.Unlock()
	sighup()

	// The row keeps its id and is delivered, signed with the new secret.
	// Its next attempt is made due now: the first retry of the notifier's
	// schedule waits at least its base delay (30 s), longer than this
	// test waits.
	if err := d.db.Update(func(tx *vault.Tx) error {
		r, err := tx.OutboxRow(row)
		if err != nil {
			return err
		}
		r.NextAttempt = time.Now()
		return tx.PutOutboxRow(r)
	}); err != nil {
		t.Fatal(err)
	}
	d.notify.Kick()
	waitFor(t, 20*time.Second, "the row's delivery under the new secret", func() bool { a, _ := rcv.counts(row); return a == 1 })
	// The receiver's 2xx comes before the notifier commits the outcome
	// (outcomes are committed in batches): wait for the row to say so.
	var r vault.OutboxRow
	waitFor(t, 20*time.Second, "the row to be marked delivered", func() bool {
		if err := d.db.View(func(tx *vault.Tx) error { r, err = tx.OutboxRow(row); return err }); err != nil {
			t.Fatalf("row %s after the reload: %v", row, err)
		}
		return r.State == vault.OutboxDelivered
	})
	if r.State != vault.OutboxDelivered || r.Attempts < 2 {
		t.Errorf("row after the reload = %s after %d attempts, want delivered after the refused ones", r.State, r.Attempts)
	}

	// x did not change: same provider, cached token, no refresh.
	d.provMu.Lock()
	px2, py2 := d.providers["x"].p, d.providers["y"].p
	d.provMu.Unlock()
	if px2 != px || py2 == py {
		t.Errorf("after the reload x is the same provider %v (want true), y is the same %v (want false)", px2 == px, py2 == py)
	}
	if got, err := d.renew.Source(gx.ID).Token(ctx); err != nil || !got.Equal(tokX.Value) {
		t.Errorf("x's token after the reload = %v, want the cached one", err)
	}
	if n := len(s.seen.all()); n != 0 {
		t.Errorf("refreshes after the reload = %d, want 0", n)
	}
	// y's next refresh sends the new secret.
	newY, err := d.renew.Source(gy.ID).Invalidate(ctx, tokY)
	if err != nil || newY.Equal(tokY.Value) {
		t.Fatalf("y's refresh after the reload = %v, want a new token", err)
	}
	if seen := s.seen.all(); len(seen) != 1 || seen[0] != rotated {
		t.Errorf("client secrets of refreshes after the reload = %d %v, want one, the rotated secret", len(seen), len(seen) > 0 && seen[0] == s.secret)
	}

	// y's secret file turns unreadable (group-readable): y keeps running.
	if err := os.Chmod(ySecret, 0o644); err != nil {
		t.Fatal(err)
	}
	sighup()
	d.provMu.Lock()
	py3 := d.providers["y"].p
	d.provMu.Unlock()
	if py3 != py2 {
		t.Error("a provider whose secret does not read was replaced, want the running one kept")
	}
	if _, err := d.renew.Source(gy.ID).Invalidate(ctx, newY); err != nil {
		t.Errorf("y's refresh after a broken reload = %v, want the running provider to work", err)
	}
	if seen := s.seen.all(); len(seen) != 2 || seen[1] != rotated {
		t.Errorf("refreshes = %d, want 2, the last with the rotated secret", len(seen))
	}
	var st statusapi.Status
	s.ctlJSON(&st, "status")
	found := false
	for _, e := range st.LastErrors {
		found = found || strings.Contains(e.Message, "provider not reloaded")
	}
	if !found {
		t.Errorf("status last errors = %+v, want the provider that did not reload", st.LastErrors)
	}
	if !strings.Contains(s.logs.String(), "provider y") {
		t.Errorf("no log naming provider y's error:\n%s", s.logs)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
