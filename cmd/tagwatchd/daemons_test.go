package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
	"tagwatch/vault/kv"
	"tagwatch/vault/pgtest"
	"tagwatch/worker"
)

// daemonsOf runs tagwatchctl daemons --json against s.
func (s *svc) daemonsOf() []statusapi.Daemon {
	s.t.Helper()
	var ds []statusapi.Daemon
	s.ctlJSON(&ds, "daemons")
	return ds
}

// TestDaemonsOnBbolt: a daemon on its own bbolt vault lists itself in
// tagwatchctl daemons, marked as the one that answered, with its host,
// pid, version, start and a fresh heartbeat, and its id is the daemon id
// of its start line.
func TestDaemonsOnBbolt(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	ds := s.daemonsOf()
	host, _ := os.Hostname()
	me := s.op.d.db.Holder()
	if len(ds) != 1 {
		t.Fatalf("tagwatchctl daemons = %+v, want this daemon alone", ds)
	}
	d := ds[0]
	if d.ID != me || !d.Self || !d.Alive || d.PID != os.Getpid() || d.Host != host || d.Version != Version() {
		t.Errorf("tagwatchctl daemons = %+v, want id %s, self, alive, pid %d, host %q, version %q", d, me, os.Getpid(), host, Version())
	}
	if age := time.Since(d.Heartbeat); age < 0 || age > 30*time.Second || d.Started.IsZero() || d.Heartbeat.Before(d.Started) {
		t.Errorf("started %s, heartbeat %s (%s ago): want a fresh heartbeat after the start", d.Started, d.Heartbeat, age)
	}
	if !strings.Contains(s.logs.String(), "daemon="+me) {
		t.Errorf("the start line does not name the daemon %s:\n%s", me, s.logs)
	}
	out, code := s.ctl("daemons")
	if code != 0 || !strings.Contains(out, me+" (this one)") || !strings.Contains(out, "alive") || !strings.Contains(out, "LAST HEARTBEAT") {
		t.Errorf("tagwatchctl daemons = %d\n%s\nwant a table with %s (this one), alive", code, out, me)
	}
}

// TestDaemonsOnPostgres: two daemons on one PostgreSQL database each
// list both, each marking itself; the claims one holds show in the
// other's view by kind; a daemon that stopped sending heartbeats shows
// dead; and a daemon that stops cleanly leaves the list.
func TestDaemonsOnPostgres(t *testing.T) {
	c := pgtest.Start(t)
	storage := "\n[storage]\nengine = \"postgres\"\ndsn = \"" + c.DSN(c.CreateDB(t)) + "\"\nlease = \"5s\"\n"
	s1 := newSvc(t, storage, false)
	s2 := newSvc(t, storage, false)
	// One vault, one master key: the second daemon gets the first's.
	key, err := os.ReadFile(s1.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s2.keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	s1.start(0)
	// A daemon that was killed: its entry stays, its heartbeat ages.
	ctx := context.Background()
	if err := s1.op.d.db.Cluster().Heartbeat(ctx, kv.Daemon{ID: "killed-daemon", Host: "elsewhere", PID: 1, Version: "v0"}); err != nil {
		t.Fatal(err)
	}
	s2.start(0)
	id1, id2 := s1.op.d.db.Holder(), s2.op.d.db.Holder()
	if id1 == id2 {
		t.Fatalf("two daemons share the id %s", id1)
	}
	// Daemon 2 holds a watch run and two notifications now.
	for _, cl := range []kv.Claim{{Kind: worker.ClaimKind, ID: "w-running"}, {Kind: notify.ClaimKind, ID: "n1"}, {Kind: notify.ClaimKind, ID: "n2"}} {
		cl.Round, cl.Holder, cl.Lease = 1, id2, time.Minute
		if ok, err := s2.op.d.db.Cluster().Claim(ctx, cl); !ok || err != nil {
			t.Fatalf("claim %+v = %v, %v", cl, ok, err)
		}
	}
	var ds []statusapi.Daemon
	byID := map[string]statusapi.Daemon{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ds = s1.daemonsOf()
		clear(byID)
		for _, d := range ds {
			byID[d.ID] = d
		}
		if len(ds) == 3 && !byID["killed-daemon"].Alive || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Oldest start first: daemon 1, the killed one (its first heartbeat
	// was its start), daemon 2.
	if len(ds) != 3 || ds[0].ID != id1 || ds[1].ID != "killed-daemon" || ds[2].ID != id2 {
		t.Fatalf("daemon 1's tagwatchctl daemons = %+v, want %s, killed-daemon, %s (by start)", ds, id1, id2)
	}
	if d := byID["killed-daemon"]; d.Alive || d.Self {
		t.Errorf("the killed daemon shows %+v, want dead (no heartbeat for more than storage.lease)", d)
	}
	if d := byID[id1]; !d.Self || !d.Alive || d.Watches != 0 || d.Outbox != 0 {
		t.Errorf("daemon 1 in its own list: %+v, want self, alive, holding nothing", d)
	}
	if d := byID[id2]; d.Self || !d.Alive || d.Watches != 1 || d.Outbox != 2 || d.Holds["watch"] != 1 || d.Holds["outbox"] != 2 {
		t.Errorf("daemon 2 in daemon 1's list: %+v, want alive, not self, holding 1 watch run and 2 notifications", d)
	}
	for _, d := range s2.daemonsOf() {
		if d.Self != (d.ID == id2) {
			t.Errorf("daemon 2's list marks %s self=%v", d.ID, d.Self)
		}
	}
	out, _ := s1.ctl("daemons")
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "killed-daemon"):
			if !strings.Contains(line, "dead") {
				t.Errorf("the killed daemon's line does not say dead: %q", line)
			}
		case strings.HasPrefix(line, id1):
			if !strings.Contains(line, "(this one)") || !strings.Contains(line, "alive") {
				t.Errorf("daemon 1's own line: %q, want (this one), alive", line)
			}
		case strings.HasPrefix(line, id2):
			if f := strings.Fields(line); strings.Contains(line, "(this one)") || len(f) < 3 || f[len(f)-3] != "1" || f[len(f)-2] != "2" {
				t.Errorf("daemon 2's line: %q, want 1 watch and 2 notifications, not this one", line)
			}
		}
	}
	// A clean stop leaves the registry, giving its claims back.
	if err := s2.stop(); err != nil {
		t.Fatal(err)
	}
	ds = s1.daemonsOf()
	for _, d := range ds {
		if d.ID == id2 {
			t.Errorf("daemon 2 stopped cleanly but is still listed: %+v", d)
		}
	}
	if ok, err := s1.op.d.db.Cluster().Claim(ctx, kv.Claim{Kind: worker.ClaimKind, ID: "w-running", Round: 1, Holder: id1, Lease: time.Minute}); !ok || err != nil {
		t.Errorf("the watch run daemon 2 held when it stopped: claim = %v, %v, want it given back", ok, err)
	}
	t.Logf("tagwatchctl daemons:\n%s", out)
}
