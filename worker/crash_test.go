package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xsource"
)

// The crash test runs this test binary again as a child that runs one
// watch and kills itself with SIGKILL at a failpoint.
const (
	envChild  = "TAGWATCH_WORKER_CRASH_CHILD"
	envDB     = "TAGWATCH_CRASH_DB"
	envMaster = "TAGWATCH_CRASH_MASTER"
	envAPI    = "TAGWATCH_CRASH_API"
	envToken  = "TAGWATCH_CRASH_TOKEN"
	envWatch  = "TAGWATCH_CRASH_WATCH"
)

func TestMain(m *testing.M) {
	if point := os.Getenv(envChild); point != "" {
		os.Exit(crashChild(point))
	}
	os.Exit(m.Run())
}

func crashChild(point string) int {
	master, err := seal.ParseMasterKey([]byte(os.Getenv(envMaster)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	db, err := vault.Open(vault.Options{Path: os.Getenv(envDB), Master: master, LockTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	client := xapi.New(xapi.Config{BaseURL: os.Getenv(envAPI), MaxResults: 10})
	w, err := worker.New(worker.Config{DB: db, Sources: map[string]worker.Source{"x": xsource.New(client)},
		Tokens: func(string) worker.TokenSource { return staticToken{secret.NewAccessToken(os.Getenv(envToken))} },
		Failpoint: func(name string) {
			if name == point {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	ev := w.RunWatch(context.Background(), os.Getenv(envWatch))
	fmt.Fprintf(os.Stderr, "child run ended: %s %s %v\n", ev.Kind, ev.Reason, ev.Err)
	return 4 // the failpoint should have killed us
}

// TestCrashBetweenSearchAndCommit: a daemon killed with SIGKILL after the
// search and before the commit leaves no outbox row and the old cursor; the
// next run repeats the search and queues each post once. Killed right after
// the commit, the next run queues nothing again.
func TestCrashBetweenSearchAndCommit(t *testing.T) {
	f := newFix(t, fixOpts{realTime: true})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Now().Add(-time.Minute))
	at, _, err := f.sb.Grant("100", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	var want []string
	for i := 0; i < 15; i++ {
		want = append(want, f.post("100", tagPost("golang", i)))
	}
	crash := func(point string) {
		t.Helper()
		// The child opens the vault: the parent lets go of it meanwhile.
		if err := f.db.Close(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"="+point, envDB+"="+f.dbPath, envMaster+"="+string(f.masterText),
			envAPI+"="+f.sb.URL(), envToken+"="+at, envWatch+"="+wid)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child at %s: %v, want killed by SIGKILL; output:\n%s", point, err, out)
		}
		f.db = vaulttest.Open(t, vaulttest.Path(f.dbPath), vaulttest.Master(f.master), vaulttest.Rules(rules(f.src)))
		// A new worker on the reopened vault, as a restarted daemon has.
		f.wcfg.DB = f.db
		f.wcfg.Tokens = func(string) worker.TokenSource { return staticToken{secret.NewAccessToken(at)} }
		if f.w, err = worker.New(f.wcfg); err != nil {
			t.Fatal(err)
		}
	}

	crash("after_search")
	if n := f.sb.Stats().PostsRead["100"]; n != 15 {
		t.Fatalf("posts read by the killed run = %d, want 15 (it searched)", n)
	}
	if got, rows := f.queued(wid); rows != 0 || len(got) != 0 {
		t.Fatalf("outbox after a crash before commit: %d rows, want 0", rows)
	}
	if c := f.cursor(wid); c.SinceID != "" || c.Runs != 0 {
		t.Fatalf("cursor after a crash before commit = %+v, want untouched", c)
	}

	crash("after_commit") // repeats the search from the old cursor
	f.checkExactlyOnce(wid, want)

	more := f.post("100", "#golang after the crashes")
	f.mustRun(wid)
	f.checkExactlyOnce(wid, append(want, more))
	if c := f.cursor(wid); c.SinceID != more {
		t.Errorf("since_id = %s, want %s", c.SinceID, more)
	}
}
