package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// backend is a daemon's status backend for the CLI's tests. Methods it
// does not override are never called (the embedded nil would panic).
type backend struct {
	statusapi.Backend
	audit []statusapi.AuditEvent
}

// Not found as tagwatchd's backend says it: the status's sentinel around
// the vault's error, which names the object.
func (b *backend) PauseWatch(ctx context.Context, id string, pause bool, actor string) (statusapi.Watch, error) {
	return statusapi.Watch{}, fmt.Errorf("%w: %v", statusapi.ErrNotFound, fmt.Errorf("watch %q does not exist", id))
}

func (b *backend) Revoke(ctx context.Context, id, actor string) (statusapi.RevokeResult, error) {
	return statusapi.RevokeResult{}, fmt.Errorf("%w: %v", statusapi.ErrNotFound, fmt.Errorf("grant %q does not exist", id))
}

func (b *backend) Replay(ctx context.Context, id, actor string) (statusapi.OutboxRow, error) {
	return statusapi.OutboxRow{}, fmt.Errorf("%w: %v", statusapi.ErrNotFound, fmt.Errorf("notification %q does not exist", id))
}

func (b *backend) RecordRequest(statusapi.AuditEvent) error { return nil }

// Audit applies statusapi.AuditQuery to b.audit (sequence numbers 1..n).
func (b *backend) Audit(ctx context.Context, q statusapi.AuditQuery) ([]statusapi.AuditEvent, error) {
	var in []statusapi.AuditEvent
	for _, e := range b.audit {
		if e.Seq > q.After && (q.Before == 0 || e.Seq < q.Before) {
			in = append(in, e)
		}
	}
	if len(in) > q.Limit {
		if q.Newest {
			in = in[len(in)-q.Limit:]
		} else {
			in = in[:q.Limit]
		}
	}
	return in, nil
}

// serveBackend serves b on a real unix socket, as tagwatchd does.
func serveBackend(t *testing.T, b statusapi.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "status.sock")
	ln, err := statusapi.Listen(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := statusapi.NewServer(statusapi.NewHandler(statusapi.Config{Backend: b, OperatorGID: -1}))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// TestNotFoundNamesTheObject: "tagwatchctl: watch "nosuch" does not exist",
// once, exit 5; not "not found: vault: not found" (C15).
func TestNotFoundNamesTheObject(t *testing.T) {
	sock := serveBackend(t, &backend{})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"watches", "pause", "nosuch"}, `tagwatchctl: watch "nosuch" does not exist` + "\n"},
		{[]string{"revoke", "nosuch"}, `tagwatchctl: grant "nosuch" does not exist` + "\n"},
		{[]string{"outbox", "replay", "nosuch"}, `tagwatchctl: notification "nosuch" does not exist` + "\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--socket", sock}, c.args...), &stdout, &stderr)
		if code != exitNotFound || stderr.String() != c.want || stdout.Len() != 0 {
			t.Errorf("run(%q) = %d, stderr %q, stdout %q; want %d, stderr %q", c.args, code, stderr.String(), stdout.String(), exitNotFound, c.want)
		}
	}
}

// closingDaemon is a daemon that exits while serving a request: it reads
// the request and closes the connection without an answer.
func closingDaemon(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "status.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			http.ReadRequest(bufio.NewReader(c))
			c.Close()
		}
	}()
	return path
}

// TestDaemonClosedTheConnection: the daemon exits while a command runs
// (C15): one line saying so and what state the change may be in, with
// the command that tells, and exit 3 (daemon down).
func TestDaemonClosedTheConnection(t *testing.T) {
	sock := closingDaemon(t)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"keys", "rotate"}, []string{"tagwatchctl: tagwatchd closed the connection before answering POST /v1/keys/rotate",
			"may or may not have been applied", "check with 'tagwatchctl keys status'"}},
		{[]string{"watches", "pause", "w1"}, []string{"may or may not have been applied", "check with 'tagwatchctl watches list'"}},
		{[]string{"revoke", "g1"}, []string{"may or may not have been applied", "check with 'tagwatchctl grants'"}},
		{[]string{"status"}, []string{"before answering GET /v1/status", "nothing was changed"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--socket", sock}, c.args...), &stdout, &stderr)
		out := stderr.String()
		ok := code == exitDown && strings.Count(out, "\n") == 1 && !strings.Contains(out, "EOF")
		for _, w := range c.want {
			ok = ok && strings.Contains(out, w)
		}
		if !ok {
			t.Errorf("run(%q) = %d %q; want %d, one line containing %q", c.args, code, out, exitDown, c.want)
		}
	}
}

// TestAuditShowsTheNewest: by default the newest events, and a line saying
// how to see the others (C15).
func TestAuditShowsTheNewest(t *testing.T) {
	b := &backend{}
	for i := 1; i <= 250; i++ {
		b.audit = append(b.audit, statusapi.AuditEvent{Seq: uint64(i), Time: time.Unix(int64(i), 0), Kind: "k"})
	}
	sock := serveBackend(t, b)
	for _, c := range []struct {
		args        []string
		first, last uint64
		n           int
		hint        string
	}{
		{[]string{"audit"}, 151, 250, 100, "showing the newest 100; older events: tagwatchctl audit --before 151 (or --all)\n"},
		{[]string{"audit", "--limit", "10", "--before", "151"}, 141, 150, 10, "tagwatchctl audit --before 141"},
		{[]string{"audit", "--after", "5", "--limit", "10"}, 6, 15, 10, "newer events follow: tagwatchctl audit --after 15 (or --all)\n"},
		{[]string{"audit", "--after", "200"}, 201, 250, 50, ""},
		{[]string{"audit", "--limit", "250"}, 1, 250, 250, ""},
		{[]string{"audit", "--all"}, 1, 250, 250, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--socket", sock, "--json"}, c.args...), &stdout, &stderr)
		var evs []statusapi.AuditEvent
		if err := json.Unmarshal(stdout.Bytes(), &evs); err != nil || code != exitOK {
			t.Errorf("run(%q) = %d, %v: %s %s", c.args, code, err, stdout.String(), stderr.String())
			continue
		}
		if len(evs) != c.n || evs[0].Seq != c.first || evs[len(evs)-1].Seq != c.last {
			t.Errorf("run(%q) showed %d events %d..%d, want %d events %d..%d", c.args, len(evs), evs[0].Seq, evs[len(evs)-1].Seq, c.n, c.first, c.last)
		}
		if c.hint == "" && stderr.Len() != 0 || !strings.Contains(stderr.String(), c.hint) {
			t.Errorf("run(%q) said %q, want %q", c.args, stderr.String(), c.hint)
		}
	}
	// The table too: newest last, the hint after it.
	var out bytes.Buffer
	if code := run([]string{"--socket", sock, "audit"}, &out, &out); code != exitOK ||
		!strings.Contains(out.String(), "\n250 ") || strings.Contains(out.String(), "\n150 ") || !strings.HasSuffix(out.String(), "(or --all)\n") {
		t.Errorf("audit = %d:\n%s", code, out.String())
	}
	var errOut bytes.Buffer
	if code := run([]string{"--socket", sock, "audit", "--after", "1", "--before", "9"}, io.Discard, &errOut); code != exitUsage {
		t.Errorf("audit --after --before = %d %q, want a usage error", code, errOut.String())
	}
}
