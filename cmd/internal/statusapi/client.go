package statusapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client talks to tagwatchd's status socket. Safe for concurrent use.
type Client struct {
	// Socket is the socket's path; default DefaultSocket.
	Socket string
	// Timeout bounds a request (not a backup); default 60 s.
	Timeout time.Duration

	hc *http.Client
}

// NewClient returns a client of the socket at path ("" for the default).
func NewClient(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	c := &Client{Socket: path, Timeout: 60 * time.Second}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		},
		MaxIdleConns: 1, DisableCompression: true, ResponseHeaderTimeout: 5 * time.Minute,
	}}
	return c
}

// DownError means the daemon could not be reached at the socket.
type DownError struct {
	Socket string
	Err    error
}

func (e *DownError) Error() string {
	switch {
	case errors.Is(e.Err, os.ErrNotExist):
		return fmt.Sprintf("tagwatchd is not running (no socket at %s)", e.Socket)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("tagwatchd is not running (nothing listens on %s)", e.Socket)
	case errors.Is(e.Err, os.ErrPermission):
		return fmt.Sprintf("cannot open %s: permission denied (run as root or a member of the operator group)", e.Socket)
	}
	return fmt.Sprintf("cannot reach tagwatchd at %s: %v", e.Socket, e.Err)
}

func (e *DownError) Unwrap() error { return e.Err }

// ClosedError means the daemon closed the connection in the middle of a
// request: it stopped, restarted or crashed while serving it. Before an
// answer, a change (any method but GET and HEAD) may or may not have been
// applied; only looking tells. After a 2xx answer began, the change was
// applied and only its answer was cut short. errors.Is(err, io.EOF) and the
// like still hold.
type ClosedError struct {
	Socket       string
	Method, Path string
	// Answered is set when the daemon had begun a 2xx answer.
	Answered bool
	Err      error
}

// Change reports whether the request asked for a change (a backup is a
// POST that changes nothing).
func (e *ClosedError) Change() bool {
	return e.Method != http.MethodGet && e.Method != http.MethodHead && e.Path != "/v1/backup"
}

func (e *ClosedError) Error() string {
	what := e.Method + " " + e.Path
	switch {
	case e.Answered && e.Change():
		return fmt.Sprintf("tagwatchd closed the connection while answering %s (it stopped or restarted): the change was applied, but its answer was cut short", what)
	case e.Answered:
		return fmt.Sprintf("tagwatchd closed the connection while answering %s (it stopped or restarted): the answer is incomplete", what)
	case e.Change():
		return fmt.Sprintf("tagwatchd closed the connection before answering %s (it stopped or restarted): the change may or may not have been applied", what)
	}
	return fmt.Sprintf("tagwatchd closed the connection before answering %s (it stopped or restarted); nothing was changed", what)
}

func (e *ClosedError) Unwrap() error { return e.Err }

// closedConn reports whether err says the peer closed the connection.
func closedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// do sends a request and decodes a JSON answer into out (nil: ignore).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if closedConn(err) {
			return &ClosedError{Socket: c.Socket, Method: method, Path: path, Answered: true, Err: err}
		}
		return fmt.Errorf("%s %s: answer: %w", method, path, err)
	}
	return nil
}

// send sends a request; an answer that is not 2xx becomes an *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tagwatchd"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, &DownError{Socket: c.Socket, Err: oe.Err}
		}
		if ctx.Err() == nil && closedConn(err) {
			return nil, &ClosedError{Socket: c.Socket, Method: method, Path: path, Err: err}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		e := &Error{Status: resp.StatusCode}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(e); err != nil || e.Message == "" {
			e.Code, e.Message = "internal", resp.Status
		}
		return nil, e
	}
	return resp, nil
}

// Status returns the daemon's overall state.
func (c *Client) Status(ctx context.Context) (s Status, err error) {
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Users lists the users.
func (c *Client) Users(ctx context.Context) (u []User, err error) {
	return u, c.do(ctx, "GET", "/v1/users", nil, &u)
}

// Grants lists the grants' health.
func (c *Client) Grants(ctx context.Context) (g []Grant, err error) {
	return g, c.do(ctx, "GET", "/v1/grants", nil, &g)
}

// Revoke ends a grant, here and at its provider; the result says whether
// the provider confirmed the revocation or it is queued and retried.
func (c *Client) Revoke(ctx context.Context, grantID string) (r RevokeResult, err error) {
	return r, c.do(ctx, "POST", "/v1/grants/"+url.PathEscape(grantID)+"/revoke", nil, &r)
}

// Watches lists the watches.
func (c *Client) Watches(ctx context.Context) (w []Watch, err error) {
	return w, c.do(ctx, "GET", "/v1/watches", nil, &w)
}

// AddWatch adds a watch.
func (c *Client) AddWatch(ctx context.Context, req AddWatch) (w Watch, err error) {
	return w, c.do(ctx, "POST", "/v1/watches", req, &w)
}

// ChangeWatch changes a watch's fields that req sets.
func (c *Client) ChangeWatch(ctx context.Context, id string, req ChangeWatch) (w Watch, err error) {
	return w, c.do(ctx, "PATCH", "/v1/watches/"+url.PathEscape(id), req, &w)
}

// PauseWatch pauses a watch.
func (c *Client) PauseWatch(ctx context.Context, id string) (w Watch, err error) {
	return w, c.do(ctx, "POST", "/v1/watches/"+url.PathEscape(id)+"/pause", nil, &w)
}

// ResumeWatch resumes a paused watch.
func (c *Client) ResumeWatch(ctx context.Context, id string) (w Watch, err error) {
	return w, c.do(ctx, "POST", "/v1/watches/"+url.PathEscape(id)+"/resume", nil, &w)
}

// DeleteWatch deletes a watch and its cursor.
func (c *Client) DeleteWatch(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/watches/"+url.PathEscape(id), nil, nil)
}

// RunWatch asks the scheduler to run a watch now.
func (c *Client) RunWatch(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/watches/"+url.PathEscape(id)+"/run", nil, nil)
}

// Outbox counts the outbox per target and lists rows in state ("" for dead).
func (c *Client) Outbox(ctx context.Context, state string, limit int) (o Outbox, err error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return o, c.do(ctx, "GET", "/v1/outbox?"+q.Encode(), nil, &o)
}

// Replay puts a dead notification back in the queue under the same id.
func (c *Client) Replay(ctx context.Context, id string) (r OutboxRow, err error) {
	return r, c.do(ctx, "POST", "/v1/outbox/"+url.PathEscape(id)+"/replay", nil, &r)
}

// Audit returns the audit events q selects, oldest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) (ev []AuditEvent, err error) {
	v := url.Values{"after": {strconv.FormatUint(q.After, 10)}}
	if q.Before > 0 {
		v.Set("before", strconv.FormatUint(q.Before, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Newest {
		v.Set("newest", "true")
	}
	return ev, c.do(ctx, "GET", "/v1/audit?"+v.Encode(), nil, &ev)
}

// Enroll creates a one-time consent link.
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (r EnrollResponse, err error) {
	return r, c.do(ctx, "POST", "/v1/enrollments", req, &r)
}

// Enrollments lists the consent links, newest first.
func (c *Client) Enrollments(ctx context.Context) (e []Enrollment, err error) {
	return e, c.do(ctx, "GET", "/v1/enrollments", nil, &e)
}

// CancelEnrollment makes a link unusable.
func (c *Client) CancelEnrollment(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/enrollments/"+url.PathEscape(id)+"/cancel", nil, nil)
}

// Keys describes the keyring.
func (c *Client) Keys(ctx context.Context) (k Keys, err error) {
	return k, c.do(ctx, "GET", "/v1/keys", nil, &k)
}

// RotateKeys makes a new data key active and re-seals every record.
func (c *Client) RotateKeys(ctx context.Context) (r RotateResult, err error) {
	return r, c.do(ctx, "POST", "/v1/keys/rotate", nil, &r)
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := c.send(ctx, "GET", "/metrics", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, io.LimitReader(resp.Body, 16<<20))
	return b.String(), err
}

// ErrIncompleteBackup means the daemon's copy broke off.
var ErrIncompleteBackup = errors.New("backup incomplete: the daemon's copy broke off (see its log)")

// Backup streams a consistent copy of the vault into w and returns its
// size. A copy that broke off gives ErrIncompleteBackup.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, "POST", "/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil && closedConn(err) {
		return n, &ClosedError{Socket: c.Socket, Method: "POST", Path: "/v1/backup", Answered: true, Err: err}
	}
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if want := resp.Trailer.Get("Backup-Complete"); want != strconv.FormatInt(n, 10) {
		return n, ErrIncompleteBackup
	}
	return n, nil
}
