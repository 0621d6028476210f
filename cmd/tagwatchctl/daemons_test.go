package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// daemonsBackend answers GET /v1/daemons with its daemons, or err.
type daemonsBackend struct {
	statusapi.Backend
	daemons []statusapi.Daemon
	err     error
}

func (b daemonsBackend) Daemons(context.Context) ([]statusapi.Daemon, error) { return b.daemons, b.err }

// TestDaemons: tagwatchctl daemons prints one line per daemon, the one
// that answered marked, dead ones said so, the claims each holds by
// kind; --json gives the API's list; an empty registry says so; a store
// that does not answer is one line and exit 1.
func TestDaemons(t *testing.T) {
	// Not truncated: the ages shown are rounded to the second from the
	// time they are printed, a few milliseconds after now.
	now := time.Now().UTC()
	ds := []statusapi.Daemon{
		{ID: "a1b2", Host: "node1", PID: 101, Version: "v1.5.0", Started: now.Add(-time.Hour), Heartbeat: now.Add(-2 * time.Second),
			Alive: true, Self: true, Watches: 3, Outbox: 1, Holds: map[string]int{"watch": 3, "outbox": 1}},
		{ID: "c3d4", Host: "node2", PID: 202, Version: "v1.5.0", Started: now.Add(-30 * time.Minute), Heartbeat: now.Add(-5 * time.Minute),
			Holds: map[string]int{"refresh": 2}},
	}
	sock := serveBackend(t, daemonsBackend{daemons: ds})
	var out, errOut bytes.Buffer
	if code := run([]string{"--socket", sock, "daemons"}, &out, &errOut); code != exitOK {
		t.Fatalf("daemons = %d %q %q", code, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST HEARTBEAT") {
		t.Fatalf("daemons =\n%s\nwant a header and two lines", out.String())
	}
	for i, want := range [][]string{
		{"a1b2 (this one)", "node1", "101", "v1.5.0", stamp(now.Add(-time.Hour)), "(2s ago)", "alive", " 3 ", " 1 "},
		{"c3d4", "node2", "202", "(5m0s ago)", "dead", "refresh 2"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d = %q, want %q in it", i+1, lines[i+1], w)
			}
		}
	}
	if strings.Contains(lines[2], "this one") {
		t.Errorf("line 2 = %q marks another daemon as this one", lines[2])
	}

	out.Reset()
	if code := run([]string{"--socket", sock, "daemons", "--json"}, &out, &errOut); code != exitOK {
		t.Fatalf("daemons --json = %d %q", code, errOut.String())
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 2 {
		t.Fatalf("daemons --json = %q, %v; want a list of two", out.String(), err)
	}
	for _, k := range []string{"id", "host", "pid", "version", "started", "heartbeat", "alive", "self", "watches", "outbox", "holds"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("daemons --json: no %q in %v", k, got[0])
		}
	}

	out.Reset()
	if code := run([]string{"--socket", serveBackend(t, daemonsBackend{}), "daemons"}, &out, &errOut); code != exitOK ||
		out.String() != "no daemons in the registry\n" {
		t.Errorf("daemons of an empty registry = %d %q", code, out.String())
	}

	out.Reset()
	errOut.Reset()
	down := daemonsBackend{err: fmt.Errorf("%w: the registry of daemons: connection refused", statusapi.ErrUnavailable)}
	if code := run([]string{"--socket", serveBackend(t, down), "daemons"}, &out, &errOut); code != exitFailure ||
		!strings.Contains(errOut.String(), "the registry of daemons: connection refused") || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("daemons with the store down = %d %q %q, want exit 1 and one line", code, out.String(), errOut.String())
	}
}
