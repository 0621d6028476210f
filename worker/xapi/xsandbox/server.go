package xsandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Endpoint names an endpoint of the sandbox, for the fault and rate-limit
// switches and in [Stats]. Its value is the endpoint's path.
type Endpoint string

// The endpoints the sandbox serves.
const (
	// EndpointAuthorize is the browser-facing consent endpoint (GET shows
	// the consent page, POST submits it).
	EndpointAuthorize Endpoint = "/i/oauth2/authorize"
	// EndpointToken exchanges codes and refresh tokens.
	EndpointToken Endpoint = "/2/oauth2/token"
	// EndpointRevoke revokes tokens.
	EndpointRevoke Endpoint = "/2/oauth2/revoke"
	// EndpointUsersMe is GET /2/users/me.
	EndpointUsersMe Endpoint = "/2/users/me"
	// EndpointSearch is GET /2/tweets/search/recent.
	EndpointSearch Endpoint = "/2/tweets/search/recent"
)

var allEndpoints = []Endpoint{EndpointAuthorize, EndpointToken, EndpointRevoke, EndpointUsersMe, EndpointSearch}

func knownEndpoint(ep Endpoint) bool {
	for _, e := range allEndpoints {
		if e == ep {
			return true
		}
	}
	return false
}

// Sentinel errors returned by [Server] methods.
var (
	// ErrUnknownUser is returned for a user id that was never added.
	ErrUnknownUser = errors.New("xsandbox: unknown user")
	// ErrClosed is returned by methods called after [Server.Close].
	ErrClosed = errors.New("xsandbox: server closed")
)

// Default values of [Config] fields.
const (
	DefaultAccessTokenTTL  = 7200 * time.Second
	DefaultRefreshTokenTTL = 182 * 24 * time.Hour
	// CodeTTL is how long an authorization code is valid.
	CodeTTL = 30 * time.Second
	// SearchWindow is how far back recent search sees.
	SearchWindow = 7 * 24 * time.Hour
)

// Config configures a sandbox. The zero value is usable: a public client
// with an empty id, which is rarely what a test wants.
type Config struct {
	// ClientID is the OAuth 2.0 client id of the one registered app.
	ClientID string
	// ClientSecret, when set, makes the app a confidential client: HTTP
	// Basic authentication is then required on /2/oauth2/token and
	// /2/oauth2/revoke. When empty the app is a public client and must send
	// client_id in the form.
	ClientSecret string
	// RedirectURIs are the registered callback URLs, matched exactly.
	RedirectURIs []string
	// AppName is shown on the consent page; default "tagwatch".
	AppName string
	// AccessTokenTTL is the lifetime of access tokens; default 7200 s.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of refresh tokens; default 182 days.
	RefreshTokenTTL time.Duration
	// Now is the clock for token lifetimes, code expiry, rate-limit windows,
	// the usage-cap month, the 7-day search window, FailFor windows and post
	// times; default time.Now. See [Clock].
	Now func() time.Time
	// Logger receives a line for each action of the control page (Info),
	// debug logs of faults, and errors; default discards. Tokens and
	// secrets are never logged.
	Logger *slog.Logger
	// ExternalToken, when set, is asked about bearer tokens the sandbox did
	// not issue (for example access tokens of an OpenID provider such as Ory
	// Hydra, validated by introspection). It returns the X user id the token
	// acts for and its scopes, or an error to refuse the token (401). A user
	// id that was never added is served as a user named "user<id>". It is
	// called on every such request, without locks held.
	ExternalToken func(ctx context.Context, token string) (userID string, scopes []string, err error)
	// OnSearch, when set, is called for every search request the sandbox
	// authenticated, before its rate limits and usage cap are applied (a
	// refused request is seen too): userID is the X user id the token
	// acts for, query the request's query parameter as sent, at the time
	// by Now. It is called on the request's goroutine with no lock held,
	// so it must be quick and safe for concurrent use. It observes only:
	// the answer does not depend on it. Tests read from it when each
	// watch asked (a multi-daemon test's largest gap between runs).
	OnSearch func(userID, query string, at time.Time)
	// OnReuse, when set, is called for every refresh token presented
	// again after it was spent (a reuse, whatever SetReuseRevokesFamily
	// does about it): userID is the user the token's grant is for,
	// rotatedAt when the token was spent (its first use, which rotated
	// it), reusedAt now. Called with no lock held, observing only, like
	// OnSearch: a test tells a reuse that a process killed between
	// the rotation and its commit explains from any other.
	OnReuse func(userID string, rotatedAt, reusedAt time.Time)
	// Addr is the address to listen on, host:port with a loopback host;
	// default "127.0.0.1:0" (a free port). The sandbox is never served
	// beyond loopback: Start refuses any other host.
	Addr string
}

// Server is a running sandbox. All its methods are safe for concurrent use.
type Server struct {
	cfg Config
	now func() time.Time
	log *slog.Logger

	ln        net.Listener
	srv       *http.Server
	url       string
	closing   chan struct{}
	closeOnce sync.Once
	serveDone chan struct{}
	genWG     sync.WaitGroup

	store *store

	mu                 sync.Mutex
	closed             bool
	codes              map[string]*authCode
	pending            map[string]*pendingAuth
	grants             map[string][]*grant // by user id
	access             map[string]*accessToken
	refresh            map[string]*refreshToken
	autoApprove        string
	sessions           map[string]string // sign-in session -> user id (see consent.go)
	controlNote        string            // what the last control action did, shown once (control.go)
	reuseRevokesFamily bool
	revokeFamilyOnly   bool // see SetRevokeEndsAuthorization
	faults             map[Endpoint]*faultState
	dropAfterRotate    int
	partialErrors      int
	limits             map[Endpoint]RateLimit
	userWin            map[winKey]*window
	appWin             map[Endpoint]*window
	budget             int64
	capReached         bool // CapUsage: the usage cap binds until SetMonthlyPostBudget
	month              int
	monthRead          int64
	stats              Stats
}

// Start starts a sandbox listening on 127.0.0.1 on a free port. Close it
// with [Server.Close].
func Start(cfg Config) (*Server, error) {
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.AppName == "" {
		cfg.AppName = "tagwatch"
	}
	s := &Server{
		cfg:       cfg,
		now:       cfg.Now,
		log:       cfg.Logger,
		closing:   make(chan struct{}),
		serveDone: make(chan struct{}),
		store:     newStore(),
		codes:     make(map[string]*authCode),
		pending:   make(map[string]*pendingAuth),
		sessions:  make(map[string]string),
		grants:    make(map[string][]*grant),
		access:    make(map[string]*accessToken),
		refresh:   make(map[string]*refreshToken),
		faults:    make(map[Endpoint]*faultState),
		limits: map[Endpoint]RateLimit{
			EndpointSearch:  {PerUser: 300, PerApp: 450, Window: 15 * time.Minute},
			EndpointUsersMe: {PerUser: 75, Window: 15 * time.Minute},
		},
		userWin: make(map[winKey]*window),
		appWin:  make(map[Endpoint]*window),
		stats:   newStats(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("xsandbox: listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()

	mux := http.NewServeMux()
	mux.Handle("GET "+string(EndpointAuthorize), s.wrap(EndpointAuthorize, s.handleAuthorize))
	mux.Handle("POST "+string(EndpointAuthorize), s.wrap(EndpointAuthorize, s.handleConsent))
	mux.Handle("POST "+string(EndpointToken), s.wrap(EndpointToken, s.handleToken))
	mux.Handle("POST "+string(EndpointRevoke), s.wrap(EndpointRevoke, s.handleRevoke))
	mux.Handle("GET "+string(EndpointUsersMe), s.wrap(EndpointUsersMe, s.handleUsersMe))
	mux.Handle("GET "+string(EndpointSearch), s.wrap(EndpointSearch, s.handleSearch))
	s.controlRoutes(mux)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return s, nil
}

// URL returns the base URL, like http://127.0.0.1:PORT. The endpoints are
// the [Endpoint] paths below it.
func (s *Server) URL() string { return s.url }

// Close releases hanging requests, stops generators started with
// [Server.StartGenerator], shuts the server down and waits for all of its
// goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx) // waits for handlers; Close below forces the rest
		_ = s.srv.Close()
		<-s.serveDone
		s.genWG.Wait()
	})
}

// AddUser adds a sandbox user, or replaces the one with the same id. The id
// must be a decimal string of up to 19 digits and the username non-empty;
// an empty Name defaults to the username.
func (s *Server) AddUser(u User) error { return s.store.addUser(u) }

// SetAutoApprove makes /i/oauth2/authorize skip the consent page and
// redirect straight back approved as the given user; "" turns it off.
func (s *Server) SetAutoApprove(userID string) {
	s.mu.Lock()
	s.autoApprove = userID
	s.mu.Unlock()
}

// SetReuseRevokesFamily sets whether presenting a spent refresh token also
// revokes every token of its family (all access and refresh tokens issued
// from the same consent), as X is reported to do. Off by default: reuse is
// then refused but the family lives on.
func (s *Server) SetReuseRevokesFamily(on bool) {
	s.mu.Lock()
	s.reuseRevokesFamily = on
	s.mu.Unlock()
}

// Post stores p and returns its id, a snowflake-like decimal string larger
// than every id before it.
func (s *Server) Post(p Post) string {
	now := s.now()
	var buf [8]string
	s.store.mu.Lock()
	_, id := s.store.addLocked(p, now, buf[:0])
	s.store.mu.Unlock()
	return formatID(id)
}

// PostBatch stores ps in order under one lock, which is much faster than
// calling Post for each when loading a million posts. It returns the ids of
// the first and last post; the ones between are increasing.
func (s *Server) PostBatch(ps []Post) (first, last string) {
	if len(ps) == 0 {
		return "", ""
	}
	now := s.now()
	var buf []string
	var a, b uint64
	s.store.mu.Lock()
	for i, p := range ps {
		var id uint64
		buf, id = s.store.addLocked(p, now, buf)
		if i == 0 {
			a = id
		}
		b = id
	}
	s.store.mu.Unlock()
	return formatID(a), formatID(b)
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters (not the rate-limit windows or the
// monthly usage).
func (s *Server) ResetStats() {
	s.mu.Lock()
	s.stats = newStats()
	s.mu.Unlock()
}
