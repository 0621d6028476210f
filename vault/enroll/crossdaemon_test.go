package enroll_test

import (
	"bytes"
	"context"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/renew/renewtest"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// daemons are two consent doors (two vaults, two enroll.Services, two
// listeners) on one PostgreSQL database and one public URL, as two
// daemons behind a load balancer: a request reaches A or B as the test
// sends it (on, which rewrites a public URL to one daemon's listener).
type daemons struct {
	t      *testing.T
	public string // the public URL, A's listener
	urls   map[string]string
	db     map[string]*vault.DB
	svc    map[string]*enroll.Service
	stack  *renewtest.Stack
	tokens *tokenCounter
	logs   *syncBuffer
	conn   *pgx.Conn
}

func newDaemons(t *testing.T, users []xsandbox.User) *daemons {
	t.Helper()
	c := pgtest.Start(t)
	dsn := c.DSN(c.CreateDB(t))
	open := func() (kv.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	}
	d := &daemons{t: t, urls: map[string]string{}, db: map[string]*vault.DB{}, svc: map[string]*enroll.Service{},
		tokens: &tokenCounter{base: http.DefaultTransport}, logs: &syncBuffer{}}
	lns := map[string]net.Listener{}
	for _, name := range []string{"A", "B"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[name], d.urls[name] = l, "http://"+l.Addr().String()
	}
	d.public = d.urls["A"]
	d.stack = renewtest.New(t, renewtest.Options{RedirectURL: d.public + "/callback", Transport: d.tokens, Users: users,
		Vault: []vaulttest.Option{vaulttest.Engine(open), vaulttest.Rules(vaulttest.StubRules{})}})
	d.db["A"] = d.stack.DB
	d.db["B"] = vaulttest.Open(t, vaulttest.Engine(open), vaulttest.Master(d.stack.Master), vaulttest.Rules(vaulttest.StubRules{}))
	for name, l := range lns {
		if !d.db[name].Shared() {
			t.Fatalf("vault %s is not on the shared store", name)
		}
		svc, err := enroll.New(enroll.Config{DB: d.db[name], Providers: map[string]enroll.Provider{"x": d.stack.Provider},
			PublicURL: d.public, Operator: "Example Newsroom",
			Logger: slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("daemon", name)})
		if err != nil {
			t.Fatal(err)
		}
		d.svc[name] = svc
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: svc.Handler()}}
		srv.Start()
		t.Cleanup(srv.Close)
	}
	var err error
	if d.conn, err = pgx.Connect(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.conn.Close(context.Background()) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services' log:\n%s", d.logs)
		}
	})
	return d
}

// on rewrites u, a URL on the public URL (absolute, or a path), to
// daemon name's listener.
func (d *daemons) on(name, u string) string {
	d.t.Helper()
	if strings.HasPrefix(u, "/") {
		return d.urls[name] + u
	}
	if !strings.HasPrefix(u, d.public+"/") {
		d.t.Fatalf("%q is not on the public URL %s", u, d.public)
	}
	return d.urls[name] + strings.TrimPrefix(u, d.public)
}

// link creates a consent link (on A) for user, any X account.
func (d *daemons) link(user string) (string, vault.Enrollment) {
	d.t.Helper()
	w := testWatch
	l, rec, err := d.svc["A"].CreateLink(context.Background(), vault.LinkRequest{UserID: user, UserName: "Ada " + user,
		Provider: "x", Watch: &w, CreatedBy: "test"})
	if err != nil {
		d.t.Fatal(err)
	}
	return l, rec
}

// start opens the link's landing page on daemon land and presses its
// button there, loads the continue page on daemon cont, and returns the
// authorization request and the state.
func (d *daemons) start(b *browser, link, land, cont string) (*url.URL, string) {
	d.t.Helper()
	if p := b.get(d.on(land, link)); p.status != http.StatusOK {
		d.t.Fatalf("landing on %s = %d: %s", land, p.status, p.body)
	}
	req, err := http.NewRequest(http.MethodPost, d.on(land, link), strings.NewReader(""))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/continue?state=") {
		d.t.Fatalf("POST landing on %s = %d %q, want a 303 to the continue page", land, resp.StatusCode, loc)
	}
	cp := b.get(d.on(cont, loc))
	auth, err := url.Parse(enroll.ContinueTarget(d.t, cp.status, cp.header, cp.body))
	if err != nil {
		d.t.Fatal(err)
	}
	if !strings.HasPrefix(auth.String(), d.stack.Sandbox.URL()+string(xsandbox.EndpointAuthorize)) {
		d.t.Fatalf("continue page on %s leads to %s, want the sandbox's authorization endpoint", cont, auth)
	}
	return auth, auth.Query().Get("state")
}

// flowRows returns every key and value kv_flows holds now, concatenated,
// and their count.
func (d *daemons) flowRows() ([]byte, int) {
	d.t.Helper()
	rows, err := d.conn.Query(context.Background(), "SELECT key, value FROM kv_flows")
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var all []byte
	n := 0
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			d.t.Fatal(err)
		}
		all = append(append(all, k...), v...)
		n++
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return all, n
}

// expectConsented checks what the consent stored, as both daemons read
// it: an active grant of the X account, and the link used for it.
func (d *daemons) expectConsented(user string, rec vault.Enrollment, subject string) {
	d.t.Helper()
	for name, db := range d.db {
		g, err := db.UserGrant(user, "x")
		if err != nil || g.State != vault.GrantActive || g.Subject != subject || len(g.SealedRefresh) == 0 {
			d.t.Errorf("on %s: grant of %s = %+v, %v; want active for %s", name, user, g, err, subject)
			continue
		}
		l, err := db.LinkByID(rec.ID)
		if err != nil || l.UsedAt.IsZero() || l.GrantID != g.ID {
			d.t.Errorf("on %s: link = %+v, %v; want used for grant %s", name, l, err, g.ID)
		}
	}
}

// cookie returns the browser's flow cookie.
func (d *daemons) cookie(b *browser) string {
	d.t.Helper()
	u, _ := url.Parse(d.public)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "tagwatch-flow" {
			return c.Value
		}
	}
	d.t.Fatal("the browser has no flow cookie")
	return ""
}

// TestConsentAcrossDaemons: a consent started on daemon A (landing page,
// button) finishes on daemon B (the provider's redirect reaches B, as a
// load balancer may send it): the grant is committed and the link used,
// as both daemons read them; the continue page works on either; the
// callback replayed on A or B is refused with no second code exchange;
// two callbacks with one state at once on A and B: exactly one finishes.
// The flow state in PostgreSQL (kv_flows) holds neither the PKCE verifier
// nor the state nor the browser's cookie.
func TestConsentAcrossDaemons(t *testing.T) {
	users := []xsandbox.User{{ID: "1001", Username: "ada", Name: "Ada L"}}
	for i := range 6 {
		users = append(users, xsandbox.User{ID: "20" + string(rune('0'+i)), Username: "racer" + string(rune('a'+i)), Name: "Racer"})
	}
	d := newDaemons(t, users)
	x := d.stack.Sandbox

	t.Run("started on A, finished on B", func(t *testing.T) {
		d.t = t
		link, rec := d.link("ada")
		b := newBrowser(t)
		auth, state := d.start(b, link, "A", "B")
		binding := d.cookie(b)
		held, n := d.flowRows()
		if n == 0 {
			t.Fatal("kv_flows holds nothing while the flow is in progress")
		}
		// The provider's consent page, answered by the user.
		consent := b.get(auth.String())
		m := hiddenRequest.FindStringSubmatch(consent.body)
		if consent.status != http.StatusOK || m == nil {
			t.Fatalf("consent page = %d without a request field:\n%s", consent.status, consent.body)
		}
		ans := b.post(x.URL()+string(xsandbox.EndpointAuthorize), url.Values{"request": {html.UnescapeString(m[1])},
			"username": {"ada"}, "action": {"authorize"}})
		if ans.status != http.StatusFound || !strings.HasPrefix(ans.loc, d.public+"/callback?") {
			t.Fatalf("consent answer = %d %q, want a redirect to the public callback", ans.status, ans.loc)
		}
		exchanges := d.tokens.count()
		cb := b.get(d.on("B", ans.loc))
		if cb.status != http.StatusSeeOther || !strings.HasPrefix(cb.loc, "/enrolled/") {
			t.Fatalf("callback on B = %d %q: %s", cb.status, cb.loc, cb.body)
		}
		expectPage(t, b.get(d.on("A", cb.loc)), http.StatusOK, "all set")
		if got := d.tokens.count(); got != exchanges+1 {
			t.Errorf("%d token requests for the callback, want 1", got-exchanges)
		}
		d.expectConsented("ada", rec, "1001")
		verifier := d.tokens.lastVerifier()
		expectPKCE(t, auth, verifier)
		for what, v := range map[string]string{"PKCE verifier": verifier, "state": state, "flow cookie": binding} {
			if bytes.Contains(held, []byte(v)) {
				t.Errorf("kv_flows held the %s in the clear", what)
			}
			if strings.Contains(d.logs.String(), v) {
				t.Errorf("the log holds the %s", what)
			}
		}
		if rest, n := d.flowRows(); n != 0 {
			t.Errorf("kv_flows holds %d rows (%d bytes) after the flow finished, want none", n, len(rest))
		}

		// The callback again, on either daemon, from this browser or
		// another: refused, and the code is not sent again.
		exchanges = d.tokens.count()
		for _, name := range []string{"A", "B"} {
			expectPage(t, b.get(d.on(name, ans.loc)), http.StatusBadRequest, "already completed")
			expectPage(t, newBrowser(t).get(d.on(name, ans.loc)), http.StatusBadRequest, "already completed")
		}
		if got := d.tokens.count(); got != exchanges {
			t.Errorf("replayed callbacks made %d token requests, want 0", got-exchanges)
		}
	})

	t.Run("another browser on B", func(t *testing.T) {
		d.t = t
		link, rec := d.link("racer-x")
		b := newBrowser(t)
		auth, _ := d.start(b, link, "B", "A")
		x.SetAutoApprove("200")
		at := b.get(auth.String())
		x.SetAutoApprove("")
		if at.status != http.StatusFound || !strings.HasPrefix(at.loc, d.public+"/callback?") {
			t.Fatalf("authorize = %d %q", at.status, at.loc)
		}
		// A browser without the cookie is refused on B and spends
		// nothing: the right browser then finishes on A.
		expectPage(t, newBrowser(t).get(d.on("B", at.loc)), http.StatusBadRequest, "started in another browser")
		if cb := b.get(d.on("A", at.loc)); cb.status != http.StatusSeeOther || !strings.HasPrefix(cb.loc, "/enrolled/") {
			t.Fatalf("callback on A = %d %q: %s", cb.status, cb.loc, cb.body)
		}
		d.expectConsented("racer-x", rec, "200")
	})

	t.Run("one state, two callbacks at once", func(t *testing.T) {
		d.t = t
		for i := 1; i < 6; i++ {
			user, account := "racer"+string(rune('a'+i)), "20"+string(rune('0'+i))
			link, rec := d.link(user)
			b := newBrowser(t)
			first, other := "A", "B"
			if i%2 == 0 {
				first, other = other, first
			}
			auth, _ := d.start(b, link, first, other)
			x.SetAutoApprove(account)
			at := b.get(auth.String())
			x.SetAutoApprove("")
			if at.status != http.StatusFound || !strings.HasPrefix(at.loc, d.public+"/callback?") {
				t.Fatalf("authorize = %d %q", at.status, at.loc)
			}
			exchanges := d.tokens.count()
			pages := map[string]page{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, name := range []string{"A", "B"} {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, d.on(name, at.loc), nil)
					resp, err := b.c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					pages[name] = page{status: resp.StatusCode, body: string(body), loc: resp.Header.Get("Location")}
					mu.Unlock()
				})
			}
			wg.Wait()
			won := 0
			for name, p := range pages {
				switch {
				case p.status == http.StatusSeeOther && strings.HasPrefix(p.loc, "/enrolled/"):
					won++
				case p.status != http.StatusBadRequest || !strings.Contains(p.body, "already completed"):
					t.Errorf("round %d: callback on %s = %d %q, want the success redirect or the used-flow page:\n%s", i, name, p.status, p.loc, p.body)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d of the two callbacks finished the flow, want exactly 1", i, won)
			}
			if got := d.tokens.count(); got != exchanges+1 {
				t.Errorf("round %d: %d token requests, want 1: the code is redeemed once", i, got-exchanges)
			}
			d.expectConsented(user, rec, account)
		}
	})

	t.Run("a daemon with another public_url refuses before redeeming", func(t *testing.T) {
		d.t = t
		base := x.URL()
		other, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: renewtest.ClientID,
			ClientSecret: secret.NewClientSecret("unused"), RedirectURL: "http://127.0.0.1:1/elsewhere/callback",
			AuthURL: base + string(xsandbox.EndpointAuthorize), TokenURL: base + string(xsandbox.EndpointToken),
			RevokeURL: base + string(xsandbox.EndpointRevoke), APIURL: base, Logger: vaulttest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		d.svc["B"].SetProviders(map[string]enroll.Provider{"x": other})
		defer d.svc["B"].SetProviders(map[string]enroll.Provider{"x": d.stack.Provider})
		link, _ := d.link("cyd")
		b := newBrowser(t)
		auth, _ := d.start(b, link, "A", "A")
		consent := b.get(auth.String())
		m := hiddenRequest.FindStringSubmatch(consent.body)
		if consent.status != http.StatusOK || m == nil {
			t.Fatalf("consent page = %d without a request field:\n%s", consent.status, consent.body)
		}
		ans := b.post(x.URL()+string(xsandbox.EndpointAuthorize), url.Values{"request": {html.UnescapeString(m[1])},
			"username": {"ada"}, "action": {"authorize"}})
		if ans.status != http.StatusFound || !strings.HasPrefix(ans.loc, d.public+"/callback?") {
			t.Fatalf("consent answer = %d %q, want a redirect to the public callback", ans.status, ans.loc)
		}
		exchanges := d.tokens.count()
		expectPage(t, b.get(d.on("B", ans.loc)), http.StatusInternalServerError, "Something went wrong on our side")
		if got := d.tokens.count(); got != exchanges {
			t.Errorf("%d token requests, want none: the code must not be redeemed with another redirect_uri", got-exchanges)
		}
		if log := d.logs.String(); !strings.Contains(log, "every daemon sharing a store needs the same http.public_url") ||
			!strings.Contains(log, "http://127.0.0.1:1/elsewhere/callback") {
			t.Errorf("B's log does not name the mismatch and its fix:\n%s", log)
		}
	})
}
