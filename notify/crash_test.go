package notify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

const childEnv = "TAGWATCH_NOTIFY_CRASH_CHILD"

// crashChild is the re-executed test binary: it delivers the vault's
// outbox until nothing is pending, unless it is killed first.
func crashChild() {
	master, err := seal.LoadMasterKey(seal.Source{File: os.Getenv("TW_KEY")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	db, err := vault.Open(vault.Options{Path: os.Getenv("TW_DB"), Master: master, LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	hook := os.Getenv("TW_HOOK")
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: []byte("0123456789abcdef0123456789abcdef"),
		Channels: ChannelsConfig{AllowPrivateTargets: true, PerTargetConcurrency: 8, BaseDelay: 50 * time.Millisecond,
			Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(os.Getenv("TW_SECRET"))}}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for {
		time.Sleep(20 * time.Millisecond)
		v, err := s.Outbox("", 0)
		if err != nil {
			os.Exit(3)
		}
		left := 0
		for _, x := range v.Targets {
			left += x.Pending + x.Retrying
		}
		if left == 0 {
			break
		}
	}
	cancel()
	<-done
	db.Close()
	os.Exit(0)
}

// TestCrashRedelivery kills the delivering process with SIGKILL at random
// moments while 1,000 notifications go out, restarts it, and checks that
// the receiver got every id at least once, counting those that came twice.
func TestCrashRedelivery(t *testing.T) {
	dir := t.TempDir()
	master, enc, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, enc, 0o600); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "tagwatch.db")
	sec, _ := whsec()
	rc := newReceiver(t, sec)
	rc.respond = func(w http.ResponseWriter, r *http.Request, id string) {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		w.WriteHeader(http.StatusNoContent)
	}
	const total = 1000
	db := openDB(t, dbPath, master, nil)
	ids := make([]string, total)
	for i := range ids {
		ids[i] = vault.OutboxID("u", "w", strconv.Itoa(i))
		enqueue(t, db, ids[i], rc.url(), matchNotice("u", "w", 2))
	}
	db.Close()

	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "TW_KEY="+keyFile, "TW_DB="+dbPath, "TW_HOOK="+rc.url(), "TW_SECRET="+sec)
		cmd.Stderr = os.Stderr
		return cmd
	}
	received := func() int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		n := 0
		for _, id := range ids {
			if rc.ids[id] > 0 {
				n++
			}
		}
		return n
	}
	kills, midway := 0, 0
	for kills < 12 && received() < total*9/10 {
		cmd := child()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a random moment after deliveries resumed: after 1 to 80
		// more ids arrived (or 5 s), plus a random sub-millisecond delay.
		before := received()
		want := before + 1 + rand.IntN(80)
		for t0 := time.Now(); received() < want && time.Since(t0) < 5*time.Second; {
			time.Sleep(200 * time.Microsecond)
		}
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		if n := received(); n > before && n < total {
			midway++
		}
	}
	cmd := child()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("final run: %v", err)
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("final run did not finish within 90s")
	}

	twice, missing, maxCount := 0, 0, 0
	rc.mu.Lock()
	for _, id := range ids {
		n := rc.ids[id]
		if n == 0 {
			missing++
		}
		if n > 1 {
			twice += n - 1
		}
		maxCount = max(maxCount, n)
	}
	bad := rc.bad
	rc.mu.Unlock()
	if missing != 0 || bad != 0 {
		t.Errorf("after %d kills: %d ids never arrived, %d deliveries failed verification; want 0 and 0", kills, missing, bad)
	}
	if kills == 0 || midway == 0 {
		t.Errorf("%d kills, %d of them while deliveries were under way; want some", kills, midway)
	}
	db = openDB(t, dbPath, master, nil)
	for _, id := range ids {
		if r := getRow(t, db, id); r.State != vault.OutboxDelivered {
			t.Fatalf("row %s is %s, want delivered", id, r.State)
		}
	}
	t.Logf("crash test: %d SIGKILLs (%d mid-delivery); %d/%d ids received; %d duplicate deliveries (max %d copies of one id)",
		kills, midway, total-missing, total, twice, maxCount)
}
