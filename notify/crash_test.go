package notify

import (
	"context"
	"fmt"
	"maps"
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
// moments while 1,000 notifications go out, restarts it, and checks the
// delivery guarantees: every id reaches the receiver; a row the vault
// records as delivered was received before the crash that left it so;
// and a crash redelivers only what was in flight, that is every copy
// beyond the first of an id is owed to a crash at which the id had been
// received but its delivery was not recorded yet. It reports the
// duplicates per 1,000 notifications and the rows in flight at a crash.
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
	counts := func() map[string]int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return maps.Clone(rc.ids)
	}
	receivedOf := func(got map[string]int) int {
		n := 0
		for _, id := range ids {
			if got[id] > 0 {
				n++
			}
		}
		return n
	}
	received := func() int { return receivedOf(counts()) }
	// owed counts, per id, the crashes at which it had been received and
	// its delivery was not recorded: each may cost one more copy.
	owed := map[string]int{}
	kills, midway, maxInFlight, inFlight := 0, 0, 0, 0
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
		// The receiver finishes the requests the child wrote before it died.
		time.Sleep(100 * time.Millisecond)
		got := counts()
		if n := receivedOf(got); n > before && n < total {
			midway++
		}
		states := rowStates(t, dbPath, master, ids)
		flight := 0
		for _, id := range ids {
			switch {
			case states[id] == vault.OutboxDelivered && got[id] == 0:
				t.Errorf("crash %d: row %s is recorded delivered but the receiver never got it", kills, id)
			case states[id] != vault.OutboxDelivered && got[id] > 0:
				owed[id]++
				flight++
			}
		}
		maxInFlight, inFlight = max(maxInFlight, flight), inFlight+flight
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
	got := counts()
	for _, id := range ids {
		n := got[id]
		if n == 0 {
			missing++
		}
		if n > 1 {
			twice += n - 1
		}
		if n > 1+owed[id] {
			t.Errorf("id %s arrived %d times; only %d crashes found it in flight (received, not recorded)", id, n, owed[id])
		}
		maxCount = max(maxCount, n)
	}
	rc.mu.Lock()
	bad := rc.bad
	rc.mu.Unlock()
	if missing != 0 || bad != 0 {
		t.Errorf("after %d kills: %d ids never arrived, %d deliveries failed verification; want 0 and 0", kills, missing, bad)
	}
	if kills == 0 || midway == 0 {
		t.Errorf("%d kills, %d of them while deliveries were under way; want some", kills, midway)
	}
	for id, st := range rowStates(t, dbPath, master, ids) {
		if st != vault.OutboxDelivered {
			t.Fatalf("row %s is %s, want delivered", id, st)
		}
	}
	t.Logf("crash test: %d SIGKILLs (%d mid-delivery); %d/%d ids received; %d duplicate deliveries, %.1f per 1,000 "+
		"(max %d copies of one id); in flight at a crash (received, not recorded): %.1f on average, at most %d",
		kills, midway, total-missing, total, twice, float64(twice)*1000/total, maxCount, float64(inFlight)/float64(kills), maxInFlight)
}

// rowStates opens the vault at path, as the dead child left it, and
// returns the state of each row.
func rowStates(t *testing.T, path string, master *seal.MasterKey, ids []string) map[string]vault.OutboxState {
	t.Helper()
	db, err := vault.Open(vault.Options{Path: path, Master: master, ReadOnly: true, LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := make(map[string]vault.OutboxState, len(ids))
	for _, id := range ids {
		r, err := db.OutboxRow(id)
		if err != nil {
			t.Fatalf("OutboxRow(%s): %v", id, err)
		}
		out[id] = r.State
	}
	return out
}
