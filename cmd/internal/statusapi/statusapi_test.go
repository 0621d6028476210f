package statusapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeBackend is an in-memory Backend that records what it was asked.
type fakeBackend struct {
	mu      sync.Mutex
	audit   []AuditEvent
	calls   []string
	backup  []byte
	blockCh chan struct{}
}

var _ Backend = (*fakeBackend)(nil)

func (f *fakeBackend) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Audits() []AuditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AuditEvent(nil), f.audit...)
}

func (f *fakeBackend) Status(ctx context.Context) (Status, error) {
	return Status{Version: "test", Ready: true}, nil
}
func (f *fakeBackend) Users(ctx context.Context) ([]User, error)   { return nil, nil }
func (f *fakeBackend) Grants(ctx context.Context) ([]Grant, error) { return []Grant{{ID: "g1"}}, nil }
func (f *fakeBackend) Revoke(ctx context.Context, id, actor string) (RevokeResult, error) {
	f.call("revoke " + id + " " + actor)
	return RevokeResult{Queued: true}, nil
}
func (f *fakeBackend) Watches(ctx context.Context) ([]Watch, error) { return []Watch{{ID: "w1"}}, nil }
func (f *fakeBackend) AddWatch(ctx context.Context, req AddWatch, actor string) (Watch, error) {
	f.call("add " + req.UserID + " " + actor)
	return Watch{ID: "w2", UserID: req.UserID}, nil
}
func (f *fakeBackend) ChangeWatch(ctx context.Context, id string, req ChangeWatch, actor string) (Watch, error) {
	return Watch{ID: id}, nil
}
func (f *fakeBackend) PauseWatch(ctx context.Context, id string, pause bool, actor string) (Watch, error) {
	if id != "w1" {
		return Watch{}, fmt.Errorf("watch %s: %w", id, ErrNotFound)
	}
	f.call(fmt.Sprintf("pause %s %t %s", id, pause, actor))
	return Watch{ID: id, State: "paused"}, nil
}
func (f *fakeBackend) DeleteWatch(ctx context.Context, id, actor string) error { return nil }
func (f *fakeBackend) RunWatch(ctx context.Context, id, actor string) error {
	f.call("run " + id)
	if f.blockCh != nil {
		<-f.blockCh
	}
	return fmt.Errorf("%w: no scheduler", ErrUnavailable)
}
func (f *fakeBackend) Outbox(ctx context.Context, state string, limit int) (Outbox, error) {
	return Outbox{}, nil
}
func (f *fakeBackend) Replay(ctx context.Context, id, actor string) (OutboxRow, error) {
	return OutboxRow{}, fmt.Errorf("%w: not dead", ErrConflict)
}
func (f *fakeBackend) Audit(ctx context.Context, q AuditQuery) ([]AuditEvent, error) {
	f.call(fmt.Sprintf("audit %+v", q))
	return f.Audits(), nil
}
func (f *fakeBackend) Enroll(ctx context.Context, req EnrollRequest, actor string) (EnrollResponse, error) {
	return EnrollResponse{}, errors.New("secret internal detail")
}
func (f *fakeBackend) Enrollments(ctx context.Context) ([]Enrollment, error) { return nil, nil }
func (f *fakeBackend) CancelEnrollment(ctx context.Context, id, actor string) error {
	return nil
}
func (f *fakeBackend) Keys(ctx context.Context) (Keys, error) { return Keys{}, nil }
func (f *fakeBackend) RotateKeys(ctx context.Context, actor string) (RotateResult, error) {
	return RotateResult{Active: 2}, nil
}
func (f *fakeBackend) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, err := w.Write(f.backup)
	return int64(n), err
}
func (f *fakeBackend) RecordRequest(ev AuditEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, ev)
	return nil
}

// serve starts the API on a real unix socket in a directory anyone may
// traverse, and returns the socket's path.
func serve(t *testing.T, cfg Config, gid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "statusapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "status.sock")
	ln, err := Listen(path, gid)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(NewHandler(cfg))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// TestPeerHelper is the peer of TestPeerCredentials, run as another user
// by setpriv. It is a no-op unless that test started it.
func TestPeerHelper(t *testing.T) {
	sock := os.Getenv("STATUSAPI_PEER_SOCKET")
	if sock == "" {
		return
	}
	c := NewClient(sock)
	var err error
	switch os.Getenv("STATUSAPI_PEER_OP") {
	case "read":
		_, err = c.Status(context.Background())
	case "write":
		_, err = c.PauseWatch(context.Background(), "w1")
	}
	var ae *Error
	var de *DownError
	switch {
	case err == nil:
		fmt.Println("RESULT ok")
	case errors.As(err, &ae):
		fmt.Printf("RESULT %d\n", ae.Status)
	case errors.As(err, &de) && errors.Is(de.Err, os.ErrPermission):
		fmt.Println("RESULT eacces")
	default:
		fmt.Printf("RESULT error %v\n", err)
	}
}

// asNobody runs TestPeerHelper as uid 65534 with group gid and no others,
// and returns its RESULT.
func asNobody(t *testing.T, sock string, gid int, op string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a directory only root may enter: copy it
	// beside the socket.
	bin := filepath.Join(filepath.Dir(sock), "peer.test")
	if _, err := os.Stat(bin); err != nil {
		raw, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, raw, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("setpriv", "--reuid", "65534", "--regid", strconv.Itoa(gid), "--clear-groups",
		bin, "-test.run=^TestPeerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "STATUSAPI_PEER_SOCKET="+sock, "STATUSAPI_PEER_OP="+op, "GOCOVERDIR=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer as nobody: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			return r
		}
	}
	t.Fatalf("peer printed no result:\n%s", out)
	return ""
}

func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a peer as another uid with setpriv and needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is required: ", err)
	}
	const nogroup = 65534
	t.Run("operator group reads, may not write", func(t *testing.T) {
		b := &fakeBackend{}
		sock := serve(t, Config{Backend: b, OperatorGID: nogroup}, nogroup)
		if got := asNobody(t, sock, nogroup, "read"); got != "ok" {
			t.Errorf("read by uid 65534 in the operator group = %s, want ok", got)
		}
		if got := asNobody(t, sock, nogroup, "write"); got != "403" {
			t.Errorf("write by uid 65534 not in write_uids = %s, want 403", got)
		}
		if c := b.Calls(); len(c) != 0 {
			t.Errorf("backend saw %q after a refused write", c)
		}
		a := b.Audits()
		if len(a) != 1 || a[0].Kind != AuditOperatorRefused || a[0].Actor != "uid:65534" {
			t.Errorf("audit = %+v, want one operator_refused by uid:65534", a)
		}
	})
	t.Run("write uid writes, audited", func(t *testing.T) {
		b := &fakeBackend{}
		sock := serve(t, Config{Backend: b, OperatorGID: nogroup, WriteUIDs: []int{65534}}, nogroup)
		if got := asNobody(t, sock, nogroup, "write"); got != "ok" {
			t.Errorf("write by uid 65534 in write_uids = %s, want ok", got)
		}
		if c := b.Calls(); len(c) != 1 || c[0] != "pause w1 true uid:65534" {
			t.Errorf("backend calls = %q, want the pause by uid:65534", c)
		}
		a := b.Audits()
		if len(a) != 1 || a[0].Kind != AuditOperatorRequest || a[0].Actor != "uid:65534" || !strings.Contains(a[0].Detail, "POST /v1/watches/w1/pause: 200") {
			t.Errorf("audit = %+v, want one operator_request by uid:65534", a)
		}
	})
	t.Run("outside the group", func(t *testing.T) {
		b := &fakeBackend{}
		// The socket's group is root's: mode 0660 alone keeps uid 65534 out.
		sock := serve(t, Config{Backend: b, OperatorGID: 0}, 0)
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 0 {
			t.Fatalf("socket mode %v gid %d, want 0660 and the operator group", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid)
		}
		if got := asNobody(t, sock, nogroup, "read"); got != "eacces" {
			t.Errorf("connect by uid 65534 outside the group = %s, want permission denied", got)
		}
		// With the file mode loosened by mistake, SO_PEERCRED still refuses.
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		if got := asNobody(t, sock, nogroup, "read"); got != "403" {
			t.Errorf("read by uid 65534 outside the group through a 0666 socket = %s, want 403", got)
		}
		if got := asNobody(t, sock, nogroup, "write"); got != "403" {
			t.Errorf("write by uid 65534 outside the group = %s, want 403", got)
		}
		if c, a := b.Calls(), b.Audits(); len(c) != 0 || len(a) != 0 {
			t.Errorf("backend calls %q audits %+v, want none for a peer outside the group", c, a)
		}
	})
}

// rawRequest sends req over the socket and returns the answer.
func rawRequest(t *testing.T, sock string, req *http.Request) (int, string) {
	t.Helper()
	c := NewClient(sock)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRequests(t *testing.T) {
	b := &fakeBackend{backup: bytes.Repeat([]byte("bolt"), 1000)}
	sock := serve(t, Config{Backend: b, OperatorGID: -1, MaxBody: 1024}, -1)
	mk := func(method, path, body string, hdr ...string) *http.Request {
		req, _ := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return req
	}
	cases := []struct {
		name   string
		req    *http.Request
		status int
		body   string
	}{
		{"status", mk("GET", "/v1/status", ""), 200, `"ready": true`},
		{"origin refused", mk("GET", "/v1/status", "", "Origin", "http://evil.example"), 403, "browsers"},
		{"fetch metadata refused", mk("GET", "/v1/status", "", "Sec-Fetch-Site", "cross-site"), 403, "browsers"},
		{"unknown path", mk("GET", "/v2/status", ""), 404, "no such endpoint"},
		{"wrong method", mk("PUT", "/v1/status", ""), 405, ""},
		{"empty list is []", mk("GET", "/v1/users", ""), 200, "[]"},
		{"malformed json", mk("POST", "/v1/watches", "{not json"), 400, "bad_request"},
		{"unknown field", mk("POST", "/v1/watches", `{"user_id":"u","bogus":1}`), 400, "bogus"},
		{"trailing data", mk("POST", "/v1/watches", `{"user_id":"u"} {}`), 400, "one JSON object"},
		{"wrong content type", mk("POST", "/v1/watches", `{}`, "Content-Type", "text/plain"), 400, "content type"},
		{"too large", mk("POST", "/v1/watches", `{"user_id":"`+strings.Repeat("a", 2000)+`"}`), 413, "too_large"},
		{"not found from backend", mk("POST", "/v1/watches/nope/pause", ""), 404, "not_found"},
		{"conflict", mk("POST", "/v1/outbox/x/replay", ""), 409, "conflict"},
		{"unavailable", mk("POST", "/v1/watches/w1/run", ""), 503, "no scheduler"},
		{"internal error hides detail", mk("POST", "/v1/enrollments", `{"user_id":"u"}`), 500, "see the daemon's log"},
		{"bad audit param", mk("GET", "/v1/audit?after=-1", ""), 400, "after"},
		{"bad outbox state", mk("GET", "/v1/outbox?state=weird", ""), 400, "state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, sock, c.req)
			if status != c.status || !strings.Contains(body, c.body) {
				t.Errorf("%s %s = %d %q, want %d containing %q", c.req.Method, c.req.URL.Path, status, body, c.status, c.body)
			}
			if strings.Contains(body, "secret internal detail") {
				t.Errorf("answer leaks an internal error: %s", body)
			}
		})
	}
	// Every write, refused or not, was audited with the peer's uid (root).
	writes := 0
	for _, c := range cases {
		if c.req.Method != "GET" && c.status != 403 {
			writes++
		}
	}
	if a := b.Audits(); len(a) != writes {
		t.Errorf("%d audit entries for %d writes: %+v", len(a), writes, a)
	} else {
		for _, e := range a {
			if e.Actor != "uid:0" || e.Kind != AuditOperatorRequest {
				t.Errorf("audit entry %+v, want operator_request by uid:0", e)
			}
		}
	}

	t.Run("backup", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := NewClient(sock).Backup(context.Background(), &buf)
		if err != nil || n != int64(len(b.backup)) || !bytes.Equal(buf.Bytes(), b.backup) {
			t.Errorf("Backup = %d, %v (%d bytes), want %d bytes", n, err, buf.Len(), len(b.backup))
		}
	})
}

func TestInFlightBound(t *testing.T) {
	b := &fakeBackend{blockCh: make(chan struct{})}
	sock := serve(t, Config{Backend: b, OperatorGID: -1, MaxInFlight: 1}, -1)
	c := NewClient(sock)
	done := make(chan error, 1)
	go func() { done <- c.RunWatch(context.Background(), "w1") }()
	// Wait until the first request holds the only slot, in the backend.
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Calls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the backend")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err := c.Status(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Errorf("second request while the first is in flight = %v, want 503", err)
	}
	close(b.blockCh)
	<-done
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("Status after the slot freed = %v", err)
	}
}

func TestDaemonDown(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	_, err := NewClient(missing).Status(context.Background())
	var de *DownError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "tagwatchd is not running") {
		t.Errorf("Status(no socket) = %v, want a DownError saying the daemon is not running", err)
	}
	// A socket file left by a dead daemon: connection refused.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = NewClient(stale).Status(context.Background())
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "nothing listens") {
		t.Errorf("Status(stale socket) = %v, want a DownError", err)
	}
	// Listen replaces the stale socket but refuses a live one or a file.
	ln2, err := Listen(stale, -1)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln2.Close()
	if _, err := Listen(stale, -1); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Errorf("Listen over a live socket = %v, want a refusal", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a file = %v, want a refusal", err)
	}
}

// FuzzHandler sends arbitrary requests from root: the handler answers each
// with a status and never panics.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/status", "")
	f.Add("POST", "/v1/watches", `{"user_id":"u","provider":"x","hashtags":["a"],"schedule":"@hourly","targets":["console:"]}`)
	f.Add("PATCH", "/v1/watches/w1", `{"schedule":null}`)
	f.Add("POST", "/v1/enrollments", `{"watch":{"hashtags":[1]}}`)
	f.Add("GET", "/v1/audit?after=18446744073709551615&limit=9", "")
	f.Add("DELETE", "/v1/watches/%00", "")
	h := NewHandler(Config{Backend: &fakeBackend{}, OperatorGID: -1})
	f.Fuzz(func(t *testing.T, method, target, body string) {
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, Peer{UID: 0}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Errorf("%s %s = %d", method, target, rec.Code)
		}
	})
}
