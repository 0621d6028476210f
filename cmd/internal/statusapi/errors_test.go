package statusapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// namedBackend answers not found the way tagwatchd's backend does:
// fmt.Errorf("%w: %v", ErrNotFound, err) around the vault's error, which
// names the object.
type namedBackend struct{ *fakeBackend }

func (namedBackend) Revoke(ctx context.Context, id, actor string) (RevokeResult, error) {
	return RevokeResult{}, fmt.Errorf("%w: %v", ErrNotFound, fmt.Errorf("grant %q does not exist", id))
}

func (namedBackend) PauseWatch(ctx context.Context, id string, pause bool, actor string) (Watch, error) {
	return Watch{}, fmt.Errorf("%w: %v", ErrNotFound, fmt.Errorf("watch %q does not exist", id))
}

func (namedBackend) Replay(ctx context.Context, id, actor string) (OutboxRow, error) {
	return OutboxRow{}, fmt.Errorf("%w: %w", ErrConflict, fmt.Errorf("notification %q is pending; only dead or dropped ones are replayed", id))
}

func (namedBackend) DeleteWatch(ctx context.Context, id, actor string) error { return ErrNotFound }

// TestErrorMessageNamesTheObject: the answer's message is the backend's
// text once, without the status's own words in front (C15).
func TestErrorMessageNamesTheObject(t *testing.T) {
	sock := serve(t, Config{Backend: namedBackend{&fakeBackend{}}, OperatorGID: -1}, -1)
	c := NewClient(sock)
	ctx := context.Background()
	_, pauseErr := c.PauseWatch(ctx, "nosuch")
	_, replayErr := c.Replay(ctx, "n1")
	_, revokeErr := c.Revoke(ctx, "nosuch")
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		msg    string
	}{
		{"pause", pauseErr, 404, "not_found", `watch "nosuch" does not exist`},
		{"revoke", revokeErr, 404, "not_found", `grant "nosuch" does not exist`},
		{"replay", replayErr, 409, "conflict", `notification "n1" is pending; only dead or dropped ones are replayed`},
		// The sentinel alone keeps its words: there is nothing else to say.
		{"bare sentinel", c.DeleteWatch(ctx, "x"), 404, "not_found", "not found"},
	} {
		var ae *Error
		if !errors.As(tc.err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message != tc.msg {
			t.Errorf("%s: error = %#v, want %d %s %q", tc.name, tc.err, tc.status, tc.code, tc.msg)
		}
	}
}

// closingDaemon serves a unix socket like a daemon that exits while it
// serves a request: it reads the request, writes partial (nothing, or the
// start of an answer), and closes the connection.
func closingDaemon(t *testing.T, partial string) string {
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
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, partial)
			}
			c.Close()
		}
	}()
	return path
}

func TestDaemonClosesConnection(t *testing.T) {
	ctx := context.Background()
	cut := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"active\":"
	for _, tc := range []struct {
		name     string
		partial  string
		call     func(c *Client) error
		change   bool
		answered bool
		want     string
	}{
		{"change before the answer", "", func(c *Client) error { _, err := c.RotateKeys(ctx); return err }, true, false,
			"tagwatchd closed the connection before answering POST /v1/keys/rotate (it stopped or restarted): the change may or may not have been applied"},
		{"read before the answer", "", func(c *Client) error { _, err := c.Status(ctx); return err }, false, false,
			"tagwatchd closed the connection before answering GET /v1/status (it stopped or restarted); nothing was changed"},
		{"change with its answer cut", cut, func(c *Client) error { _, err := c.RotateKeys(ctx); return err }, true, true,
			"the change was applied, but its answer was cut short"},
		{"backup is no change", "", func(c *Client) error { _, err := c.Backup(ctx, io.Discard); return err }, false, false,
			"nothing was changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(NewClient(closingDaemon(t, tc.partial)))
			var ce *ClosedError
			if !errors.As(err, &ce) || ce.Change() != tc.change || ce.Answered != tc.answered || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v (%T), want a ClosedError (change %t, answered %t) saying %q", err, err, tc.change, tc.answered, tc.want)
			}
			if strings.Contains(err.Error(), "http://tagwatchd") || strings.Contains(err.Error(), "EOF") {
				t.Errorf("error %q shows the transport's words", err)
			}
		})
	}
}

func TestAuditQuery(t *testing.T) {
	b := &fakeBackend{}
	sock := serve(t, Config{Backend: b, OperatorGID: -1}, -1)
	c := NewClient(sock)
	for _, q := range []AuditQuery{
		{After: 5, Limit: 10},
		{Before: 300, Limit: 101, Newest: true},
		{Limit: 100, Newest: true},
	} {
		if _, err := c.Audit(context.Background(), q); err != nil {
			t.Fatalf("Audit(%+v) = %v", q, err)
		}
		calls := b.Calls()
		if got, want := calls[len(calls)-1], fmt.Sprintf("audit %+v", q); got != want {
			t.Errorf("Audit(%+v) reached the backend as %q, want %q", q, got, want)
		}
	}
	for _, bad := range []string{"newest=maybe", "before=-1", "limit=10001"} {
		status, body := rawRequest(t, sock, mustRequest(t, "GET", "/v1/audit?"+bad))
		if status != 400 {
			t.Errorf("GET /v1/audit?%s = %d %s, want 400", bad, status, body)
		}
	}
}

func mustRequest(t *testing.T, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
