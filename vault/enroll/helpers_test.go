package enroll_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/vaulttest"
)

var _ enroll.Provider = (*provider.Provider)(nil)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tokenCounter wraps a provider's HTTP transport: it counts token requests
// and keeps the PKCE verifiers they carried.
type tokenCounter struct {
	base      http.RoundTripper
	mu        sync.Mutex
	requests  int
	verifiers []string
	codes     []string
}

func (c *tokenCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Has("grant_type") {
			c.mu.Lock()
			c.requests++
			if v := form.Get("code_verifier"); v != "" {
				c.verifiers = append(c.verifiers, v)
			}
			if v := form.Get("code"); v != "" {
				c.codes = append(c.codes, v)
			}
			c.mu.Unlock()
		}
	}
	return c.base.RoundTrip(req)
}

func (c *tokenCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

func (c *tokenCounter) lastVerifier() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verifiers) == 0 {
		return ""
	}
	return c.verifiers[len(c.verifiers)-1]
}

// env is a Service served over real HTTP on loopback, with its vault.
type env struct {
	t      *testing.T
	db     *vault.DB
	dbPath string
	svc    *enroll.Service
	srv    *httptest.Server
	url    string // the public URL
	// accountURL, set by the providers func, is Config.AccountURL.
	accountURL string
	tokens     *tokenCounter
	logs       *syncBuffer
	clock      *clock
	mu         sync.Mutex
	stored     []string // OnGrantStored calls
}

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// newEnv starts the service. providers builds the providers once the
// callback URL is known, with the counting HTTP client to use; it may set
// e.db to a vault of its own (a renewtest stack's), else the service gets
// a vault from vaulttest.Open with e's clock and vaulttest.StubRules.
func newEnv(t *testing.T, providers func(e *env, redirect string, hc *http.Client) map[string]enroll.Provider) *env {
	t.Helper()
	e := &env{t: t, tokens: &tokenCounter{base: http.DefaultTransport}, logs: &syncBuffer{}, clock: &clock{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + l.Addr().String()
	hc := &http.Client{Transport: e.tokens, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ps := providers(e, e.url+"/callback", hc)
	if e.db == nil {
		e.db = vaulttest.Open(t, vaulttest.Now(e.clock.Now), vaulttest.Rules(vaulttest.StubRules{}))
	}
	e.dbPath = e.db.Path()
	e.svc, err = enroll.New(enroll.Config{
		DB:         e.db,
		Providers:  ps,
		PublicURL:  e.url,
		Operator:   "Example Newsroom",
		AccountURL: e.accountURL,
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        e.clock.Now,
		// The daemon's words for a target, so pages (and their
		// screenshots) show what users see.
		TargetLabel: notify.TargetLabel,
		// The daemon's words for a schedule.
		Cadence: notify.Cadence,
		OnGrantStored: func(id string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.stored = append(e.stored, id)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: e.svc.Handler()}}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) storedGrants() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.stored)
}

var testWatch = vault.WatchSpec{Hashtags: []string{"golang", "bbolt"}, Schedule: "@every 15m", Targets: []string{"console:", "mailto:ada@example.com"}}

// link creates an enrollment link for user at provider.
func (e *env) link(user, prov, expected string) (string, vault.Enrollment) {
	e.t.Helper()
	w := testWatch
	l, rec, err := e.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: user, UserName: "Ada " + user,
		Provider: prov, Expected: expected, Watch: &w, CreatedBy: "test"})
	if err != nil {
		e.t.Fatalf("CreateLink(%s, %s) = %v", user, prov, err)
	}
	return l, rec
}

// browser is a user agent with a cookie jar that does not follow
// redirects, so each step can be checked.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	header http.Header
	body   string
	loc    string
}

func (b *browser) do(method, u string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	p := page{status: resp.StatusCode, header: resp.Header, body: string(raw), loc: resp.Header.Get("Location")}
	if method == http.MethodPost && p.status == http.StatusSeeOther && strings.Contains(p.loc, "/continue?state=") {
		// The browser goes on from the continue page (its meta refresh):
		// what the tests check is where it leads, as a 303 would.
		base, _ := url.Parse(u)
		cu, err := base.Parse(p.loc)
		if err != nil {
			b.t.Fatal(err)
		}
		c := b.get(cu.String())
		p = page{status: http.StatusSeeOther, header: c.header, loc: enroll.ContinueTarget(b.t, c.status, c.header, c.body)}
	}
	return p
}

func (b *browser) get(u string) page                { return b.do(http.MethodGet, u, nil) }
func (b *browser) post(u string, f url.Values) page { return b.do(http.MethodPost, u, f) }

// begin opens the landing page and presses its button; it returns the
// authorization request URL.
func (b *browser) begin(link, authPrefix string) *url.URL {
	b.t.Helper()
	p := b.get(link)
	if p.status != http.StatusOK {
		b.t.Fatalf("GET landing = %d, want 200: %s", p.status, p.body)
	}
	p = b.post(link, url.Values{})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, authPrefix) {
		b.t.Fatalf("POST landing = %d Location %q, want 303 to %s: %s", p.status, p.loc, authPrefix, p.body)
	}
	u, err := url.Parse(p.loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// expectPage checks a refusal: its status and its message.
func expectPage(t *testing.T, p page, status int, text string) {
	t.Helper()
	if p.status != status || !strings.Contains(p.body, text) {
		t.Fatalf("page = %d, want %d with %q:\n%s", p.status, status, text, p.body)
	}
	if p.loc != "" {
		t.Errorf("refusal page has Location %q", p.loc)
	}
}

// expectNothingStored checks that the user has no grant, watch or
// notification and that the link is unused.
func (e *env) expectNothingStored(user string, rec vault.Enrollment) {
	e.t.Helper()
	if g, err := e.db.UserGrant(user, rec.Provider); !errors.Is(err, vault.ErrNotFound) {
		e.t.Errorf("user %s has grant %+v (err %v), want none", user, g, err)
	}
	if ws, err := e.db.ListWatches(user); err != nil || len(ws) != 0 {
		e.t.Errorf("user %s has %d watches (err %v), want 0", user, len(ws), err)
	}
	rows, err := e.db.ListOutbox("", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rows {
		if r.UserID == user {
			e.t.Errorf("outbox row %s for user %s, want none", r.ID, user)
		}
	}
	l, err := e.db.LinkByID(rec.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if !l.UsedAt.IsZero() {
		e.t.Errorf("link %s used at %v, want unused", rec.ID, l.UsedAt)
	}
}

// grantOf returns the user's grant and its opened tokens.
func (e *env) grantOf(user, prov string) (vault.Grant, vault.Tokens) {
	e.t.Helper()
	g, err := e.db.UserGrant(user, prov)
	if err != nil {
		e.t.Fatalf("grant of %s at %s: %v", user, prov, err)
	}
	g, tok, err := e.db.GrantTokens(g.ID)
	if err != nil {
		e.t.Fatalf("grant of %s at %s: %v", user, prov, err)
	}
	return g, tok
}

// expectEnrolled checks what a successful enrollment stores: the grant
// (sealed, with a refresh token), the link used, the watch, and one
// enrolled notice per target. It returns the grant.
func (e *env) expectEnrolled(user string, rec vault.Enrollment, subject string) vault.Grant {
	e.t.Helper()
	g, tok := e.grantOf(user, rec.Provider)
	if g.State != vault.GrantActive || g.Subject != subject || tok.Refresh.IsZero() || tok.Access.IsZero() ||
		len(g.SealedRefresh) == 0 || !g.AccessExpiry.After(time.Now()) {
		e.t.Errorf("grant = %+v (refresh present %v), want active for %s with tokens", g, !tok.Refresh.IsZero(), subject)
	}
	raw, err := os.ReadFile(e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(tok.Refresh.Reveal())) || bytes.Contains(raw, []byte(tok.Access.Reveal())) {
		e.t.Error("the database file holds a token in the clear")
	}
	if strings.Contains(e.logs.String(), tok.Refresh.Reveal()) || strings.Contains(e.logs.String(), tok.Access.Reveal()) {
		e.t.Error("the log holds a token")
	}
	l, err := e.db.LinkByID(rec.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if l.UsedAt.IsZero() || l.GrantID != g.ID {
		e.t.Errorf("link = %+v, want used for grant %s", l, g.ID)
	}
	watches, err := e.db.ListWatches(user)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(watches) != 1 || watches[0].State != vault.WatchActive || !slices.Equal(watches[0].Hashtags, testWatch.Hashtags) ||
		watches[0].Schedule != testWatch.Schedule || watches[0].Provider != rec.Provider {
		e.t.Errorf("watches = %+v, want one active %v", watches, testWatch)
	} else {
		for _, target := range testWatch.Targets {
			id := vault.OutboxID(user, watches[0].ID, rec.ID, vault.NoticeEnrolled, target)
			r, err := e.db.OutboxRow(id)
			if err != nil {
				e.t.Errorf("outbox row for %s: %v", target, err)
				continue
			}
			if r.Kind != vault.NoticeEnrolled || r.State != vault.OutboxPending || r.WatchID != watches[0].ID {
				e.t.Errorf("outbox row = %+v, want a pending enrolled notice", r)
			}
		}
	}
	if got := e.storedGrants(); !slices.Contains(got, g.ID) {
		e.t.Errorf("OnGrantStored calls = %v, want %s", got, g.ID)
	}
	return g
}

func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// expectPKCE checks the authorization request's PKCE and that the
// verifier sent to the token endpoint hashes to its challenge.
func expectPKCE(t *testing.T, auth *url.URL, verifier string) {
	t.Helper()
	q := auth.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
		t.Errorf("authorization request %v: want response_type=code and S256", q)
	}
	if len(verifier) != 43 || s256(verifier) != q.Get("code_challenge") {
		t.Errorf("verifier %q (len %d) hashes to %s, want the challenge %s", verifier, len(verifier), s256(verifier), q.Get("code_challenge"))
	}
}

// noSecretsIn fails when a page shows one of the values.
func noSecretsIn(t *testing.T, body string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(body, v) {
			t.Errorf("page shows the secret %.8s...", v)
		}
	}
}
