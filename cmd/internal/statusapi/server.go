package statusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Backend is what the socket serves: tagwatchd implements it over its vault
// and components. Methods that change something receive the actor ("uid:N")
// to record; they return errors wrapping ErrNotFound, ErrInvalid,
// ErrConflict or ErrUnavailable for conditions the API maps to statuses,
// and anything else is a 500 whose text is logged, not sent.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Users(ctx context.Context) ([]User, error)
	Grants(ctx context.Context) ([]Grant, error)
	// Revoke unenrolls a grant and says how far the revocation at the
	// provider got.
	Revoke(ctx context.Context, grantID, actor string) (RevokeResult, error)
	Watches(ctx context.Context) ([]Watch, error)
	AddWatch(ctx context.Context, req AddWatch, actor string) (Watch, error)
	ChangeWatch(ctx context.Context, id string, req ChangeWatch, actor string) (Watch, error)
	// PauseWatch pauses (pause true) or resumes a watch.
	PauseWatch(ctx context.Context, id string, pause bool, actor string) (Watch, error)
	DeleteWatch(ctx context.Context, id, actor string) error
	RunWatch(ctx context.Context, id, actor string) error
	// Outbox counts rows per target and lists the rows in state.
	Outbox(ctx context.Context, state string, limit int) (Outbox, error)
	Replay(ctx context.Context, id, actor string) (OutboxRow, error)
	// Audit returns the events q selects, oldest first.
	Audit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	Enroll(ctx context.Context, req EnrollRequest, actor string) (EnrollResponse, error)
	Enrollments(ctx context.Context) ([]Enrollment, error)
	CancelEnrollment(ctx context.Context, id, actor string) error
	Keys(ctx context.Context) (Keys, error)
	RotateKeys(ctx context.Context, actor string) (RotateResult, error)
	// Backup writes a consistent copy of the vault (still sealed) to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// RecordRequest writes an operator's change (or refused attempt) to the
	// audit trail.
	RecordRequest(ev AuditEvent) error
}

// Errors a Backend wraps to choose the answer's status. The answer's
// message is the error's text without the sentinel's own words: a backend
// returning fmt.Errorf("%w: %w", ErrNotFound, err) answers 404 with err's
// text (`watch "nosuch" does not exist`), the code field saying not_found.
var (
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid request")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("unavailable")
)

// Audit kinds the handler records.
const (
	AuditOperatorRequest = "operator_request"
	AuditOperatorRefused = "operator_refused"
)

// Config configures a Handler. Zero values take the defaults documented.
type Config struct {
	// Backend answers the requests. Required.
	Backend Backend
	// Metrics, when set, is served at /metrics (a read).
	Metrics http.Handler
	// OperatorGID is the operator group whose members may read; -1 for none.
	OperatorGID int
	// WriteUIDs may change things, besides root.
	WriteUIDs []int
	// SelfUID is the daemon's own uid, which may read; default os.Geteuid().
	SelfUID *int
	// MaxBody bounds a request body; default 64 KiB.
	MaxBody int64
	// MaxInFlight bounds the requests served at once; default 16.
	MaxInFlight int
	// Timeout bounds a request's work (not a backup's streaming); default 30 s.
	Timeout time.Duration
	// BackupTimeout bounds a backup's streaming; default 30 min.
	BackupTimeout time.Duration
	// Groups returns the groups a uid belongs to; default os/user's lookup.
	// Tests replace it.
	Groups func(uid int) []int
	Logger *slog.Logger
}

// Handler serves the API. It needs the connection's peer credentials in
// the request context: serve it with NewServer, or use ConnContext.
// Safe for concurrent use.
type Handler struct {
	cfg Config
	mux *http.ServeMux
	sem chan struct{}
	log *slog.Logger
}

// NewHandler returns the API's handler.
func NewHandler(cfg Config) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.BackupTimeout <= 0 {
		cfg.BackupTimeout = 30 * time.Minute
	}
	if cfg.SelfUID == nil {
		uid := os.Geteuid()
		cfg.SelfUID = &uid
	}
	if cfg.Groups == nil {
		cfg.Groups = userGroups
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), sem: make(chan struct{}, cfg.MaxInFlight), log: cfg.Logger}
	h.routes()
	return h
}

// NewServer returns an http.Server for h with bounded header size and
// deadlines, recording each connection's peer credentials.
func NewServer(h *Handler) *http.Server {
	return &http.Server{Handler: h, ConnContext: ConnContext,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: h.cfg.Timeout + 5*time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn)}
}

// Peer is the process at the other end of a connection, from SO_PEERCRED.
type Peer struct {
	PID, UID, GID int
	// Err is set when the credentials could not be read: such a peer may
	// do nothing.
	Err error
}

// Actor names the peer in the audit trail.
func (p Peer) Actor() string { return "uid:" + strconv.Itoa(p.UID) }

type peerKey struct{}

// ConnContext reads the peer credentials of a unix connection with
// SO_PEERCRED and stores them in ctx, for http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, PeerOf(c))
}

// PeerOf returns the peer credentials of a unix connection.
func PeerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{Err: fmt.Errorf("not a unix connection: %T", c)}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{Err: err}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{Err: err}
	}
	if cerr != nil {
		return Peer{Err: fmt.Errorf("SO_PEERCRED: %w", cerr)}
	}
	return Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
}

// userGroups returns the groups the system's user database puts uid in.
func userGroups(uid int) []int {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil
	}
	ids, _ := u.GroupIds()
	var gids []int
	for _, s := range append(ids, u.Gid) {
		if g, err := strconv.Atoi(s); err == nil {
			gids = append(gids, g)
		}
	}
	return gids
}

func (h *Handler) canRead(p Peer) bool {
	if p.Err != nil {
		return false
	}
	if p.UID == 0 || p.UID == *h.cfg.SelfUID || h.canWrite(p) {
		return true
	}
	g := h.cfg.OperatorGID
	return g >= 0 && (p.GID == g || slices.Contains(h.cfg.Groups(p.UID), g))
}

func (h *Handler) canWrite(p Peer) bool {
	return p.Err == nil && (p.UID == 0 || slices.Contains(h.cfg.WriteUIDs, p.UID))
}

// ServeHTTP checks the peer, the Origin header and the size of the request
// before any route sees it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	peer, ok := r.Context().Value(peerKey{}).(Peer)
	if !ok {
		peer = Peer{Err: errors.New("no peer credentials")}
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("status request panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			writeError(w, &Error{Code: "internal", Message: "internal error", Status: http.StatusInternalServerError})
		}
	}()
	switch {
	case r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "":
		h.log.Warn("status request with an origin refused", "uid", peer.UID, "path", r.URL.Path)
		writeError(w, &Error{Code: "forbidden", Message: "requests from browsers are refused", Status: http.StatusForbidden})
		return
	case !h.canRead(peer):
		h.log.Warn("status request refused", "uid", peer.UID, "pid", peer.PID, "method", r.Method, "path", r.URL.Path, "err", peer.Err)
		writeError(w, &Error{Code: "forbidden", Message: "permission denied: reading needs root or the operator group", Status: http.StatusForbidden})
		return
	case write && !h.canWrite(peer):
		h.log.Warn("status change refused", "uid", peer.UID, "pid", peer.PID, "method", r.Method, "path", r.URL.Path)
		h.record(AuditEvent{Kind: AuditOperatorRefused, Actor: peer.Actor(), Detail: r.Method + " " + r.URL.Path})
		writeError(w, &Error{Code: "forbidden", Message: "permission denied: changes need root or a uid in status.write_uids", Status: http.StatusForbidden})
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		writeError(w, &Error{Code: "unavailable", Message: "too many requests in flight", Status: http.StatusServiceUnavailable})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// No route: the mux's own 404 or 405, as a JSON error.
		var probe statusProbe
		probe.h = http.Header{}
		h.mux.ServeHTTP(&probe, r)
		if a := probe.h.Get("Allow"); a != "" {
			w.Header().Set("Allow", a)
		}
		code, msg := http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path
		if probe.code == http.StatusMethodNotAllowed {
			code, msg = probe.code, "method "+r.Method+" not allowed on "+r.URL.Path
		}
		writeError(w, &Error{Code: "not_found", Message: msg, Status: code})
		if write {
			h.record(AuditEvent{Kind: AuditOperatorRequest, Actor: peer.Actor(), Detail: fmt.Sprintf("%s %s: %d", r.Method, r.URL.Path, code)})
		}
		return
	}
	if !write {
		h.mux.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	h.mux.ServeHTTP(rec, r)
	h.record(AuditEvent{Kind: AuditOperatorRequest, Actor: peer.Actor(),
		Detail: fmt.Sprintf("%s %s: %d", r.Method, r.URL.Path, rec.status)})
}

func (h *Handler) record(ev AuditEvent) {
	if err := h.cfg.Backend.RecordRequest(ev); err != nil {
		h.log.Error("audit operator request", "actor", ev.Actor, "detail", ev.Detail, "err", err)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

// statusProbe learns the status the mux gives a request it has no route for.
type statusProbe struct {
	h    http.Header
	code int
}

func (p *statusProbe) Header() http.Header         { return p.h }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.code = code }

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func peerOf(r *http.Request) Peer {
	p, _ := r.Context().Value(peerKey{}).(Peer)
	return p
}

// routes registers every endpoint.
func (h *Handler) routes() {
	b := h.cfg.Backend
	m := h.mux
	get := func(pattern string, fn func(ctx context.Context, r *http.Request) (any, error)) {
		m.HandleFunc("GET "+pattern, h.wrap(fn))
	}
	change := func(pattern string, fn func(ctx context.Context, r *http.Request, actor string) (any, error)) {
		m.HandleFunc(pattern, h.wrap(func(ctx context.Context, r *http.Request) (any, error) {
			return fn(ctx, r, peerOf(r).Actor())
		}))
	}
	get("/v1/status", func(ctx context.Context, r *http.Request) (any, error) { return b.Status(ctx) })
	get("/v1/users", func(ctx context.Context, r *http.Request) (any, error) { return nonNil(b.Users(ctx)) })
	get("/v1/grants", func(ctx context.Context, r *http.Request) (any, error) { return nonNil(b.Grants(ctx)) })
	change("POST /v1/grants/{id}/revoke", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		res, err := b.Revoke(ctx, r.PathValue("id"), actor)
		if err != nil {
			return nil, err
		}
		res.OK = true
		return res, nil
	})
	get("/v1/watches", func(ctx context.Context, r *http.Request) (any, error) { return nonNil(b.Watches(ctx)) })
	change("POST /v1/watches", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		var req AddWatch
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.AddWatch(ctx, req, actor)
	})
	change("PATCH /v1/watches/{id}", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		var req ChangeWatch
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.ChangeWatch(ctx, r.PathValue("id"), req, actor)
	})
	change("POST /v1/watches/{id}/pause", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return b.PauseWatch(ctx, r.PathValue("id"), true, actor)
	})
	change("POST /v1/watches/{id}/resume", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return b.PauseWatch(ctx, r.PathValue("id"), false, actor)
	})
	change("POST /v1/watches/{id}/run", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return Done{true}, b.RunWatch(ctx, r.PathValue("id"), actor)
	})
	change("DELETE /v1/watches/{id}", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return Done{true}, b.DeleteWatch(ctx, r.PathValue("id"), actor)
	})
	get("/v1/outbox", func(ctx context.Context, r *http.Request) (any, error) {
		state := r.URL.Query().Get("state")
		switch state {
		case "":
			state = "dead"
		case "pending", "retrying", "dead", "dropped", "delivered", "all":
		default:
			return nil, fmt.Errorf("%w: state must be pending, retrying, dead, dropped, delivered or all", ErrInvalid)
		}
		limit, err := intParam(r, "limit", 100, 10000)
		if err != nil {
			return nil, err
		}
		return b.Outbox(ctx, state, limit)
	})
	change("POST /v1/outbox/{id}/replay", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return b.Replay(ctx, r.PathValue("id"), actor)
	})
	get("/v1/audit", func(ctx context.Context, r *http.Request) (any, error) {
		after, err := intParam(r, "after", 0, -1)
		if err != nil {
			return nil, err
		}
		before, err := intParam(r, "before", 0, -1)
		if err != nil {
			return nil, err
		}
		limit, err := intParam(r, "limit", 100, MaxAuditLimit)
		if err != nil {
			return nil, err
		}
		var newest bool
		if v := r.URL.Query().Get("newest"); v != "" {
			if newest, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("%w: newest must be true or false", ErrInvalid)
			}
		}
		return nonNil(b.Audit(ctx, AuditQuery{After: uint64(after), Before: uint64(before), Limit: limit, Newest: newest}))
	})
	get("/v1/enrollments", func(ctx context.Context, r *http.Request) (any, error) { return nonNil(b.Enrollments(ctx)) })
	change("POST /v1/enrollments", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		var req EnrollRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.Enroll(ctx, req, actor)
	})
	change("POST /v1/enrollments/{id}/cancel", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return Done{true}, b.CancelEnrollment(ctx, r.PathValue("id"), actor)
	})
	get("/v1/keys", func(ctx context.Context, r *http.Request) (any, error) { return b.Keys(ctx) })
	change("POST /v1/keys/rotate", func(ctx context.Context, r *http.Request, actor string) (any, error) {
		return b.RotateKeys(ctx, actor)
	})
	m.HandleFunc("POST /v1/backup", h.backup)
	h.damagedRoutes()
	h.daemonsRoutes()
	if h.cfg.Metrics != nil {
		m.Handle("GET /metrics", h.cfg.Metrics)
	}
}

// nonNil turns a nil slice into an empty one, so JSON says [] not null.
func nonNil[T any](v []T, err error) ([]T, error) {
	if v == nil {
		v = []T{}
	}
	return v, err
}

func intParam(r *http.Request, name string, def, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (max >= 0 && n > max) {
		return 0, fmt.Errorf("%w: %s must be a number from 0 to %d", ErrInvalid, name, max)
	}
	return n, nil
}

// decode reads one JSON object, refusing unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: content type must be application/json", ErrInvalid)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Code: "too_large", Message: fmt.Sprintf("request body over %d bytes", mbe.Limit), Status: http.StatusRequestEntityTooLarge}
		}
		return fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: one JSON object expected", ErrInvalid)
	}
	return nil
}

func (h *Handler) wrap(fn func(ctx context.Context, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		v, err := fn(ctx, r)
		if err != nil {
			writeError(w, h.apiError(r, err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			h.log.Warn("status answer", "path", r.URL.Path, "err", err)
		}
	}
}

// apiError maps an error to the answer: the one place that does.
func (h *Handler) apiError(r *http.Request, err error) *Error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ErrNotFound):
		return &Error{Code: "not_found", Message: message(err, ErrNotFound), Status: http.StatusNotFound}
	case errors.Is(err, ErrInvalid):
		return &Error{Code: "bad_request", Message: message(err, ErrInvalid), Status: http.StatusBadRequest}
	case errors.Is(err, ErrConflict):
		return &Error{Code: "conflict", Message: message(err, ErrConflict), Status: http.StatusConflict}
	case errors.Is(err, ErrUnavailable):
		return &Error{Code: "unavailable", Message: message(err, ErrUnavailable), Status: http.StatusServiceUnavailable}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: "unavailable", Message: "timed out", Status: http.StatusServiceUnavailable}
	}
	h.log.Error("status request", "method", r.Method, "path", r.URL.Path, "err", err)
	return &Error{Code: "internal", Message: "internal error (see the daemon's log)", Status: http.StatusInternalServerError}
}

// message is err's text without the sentinel's words in front, which the
// answer's code already carries: `watch "x" does not exist`, not
// `not found: watch "x" does not exist`. (Backends write
// fmt.Errorf("%w: %w", ErrNotFound, err).) Other texts stay as they are.
func message(err, sentinel error) string {
	msg := err.Error()
	if m, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok && m != "" {
		return m
	}
	return msg
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}

// backup streams the vault. The answer's status is sent before the copy
// starts; a failure half-way shows as a truncated body, which the client
// detects by the trailer Backup-Complete missing.
func (h *Handler) backup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BackupTimeout)
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.BackupTimeout))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", "Backup-Complete")
	w.Header().Set("Cache-Control", "no-store")
	n, err := h.cfg.Backend.Backup(ctx, w)
	if err != nil {
		h.log.Error("backup", "bytes", n, "err", err)
		return
	}
	w.Header().Set("Backup-Complete", strconv.FormatInt(n, 10))
	h.log.Info("backup streamed", "bytes", n, "uid", peerOf(r).UID)
}

// Listen binds the socket at path with mode 0660 and group gid (-1 keeps
// the process's group). A stale socket left by a crash is replaced; any
// other file at path is an error.
func Listen(path string, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket: %s: another daemon is listening", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("status socket: %w", err)
		}
	}
	// The umask decides the mode the socket is created with: create it
	// with nothing for others, then set the mode exactly.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("status socket: group: %w", err)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return ln, nil
}

// LookupGroup returns the gid of a group name (or number); "" gives -1.
func LookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("status.group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}
