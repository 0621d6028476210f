package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var _ Searcher = (*xapi.Client)(nil)
var _ xapi.TokenSource = (*renew.Source)(nil)

// hookTransport calls after once per search request that got an answer.
type hookTransport struct {
	mu    sync.Mutex
	after func(n int)
	n     int
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.URL.Path == string(xsandbox.EndpointSearch) {
		h.mu.Lock()
		h.n++
		n, after := h.n, h.after
		h.mu.Unlock()
		if after != nil {
			after(n)
		}
	}
	return resp, err
}

func (h *hookTransport) set(f func(n int)) {
	h.mu.Lock()
	h.after, h.n = f, 0
	h.mu.Unlock()
}

type fix struct {
	t      *testing.T
	clock  *xsandbox.Clock
	sb     *xsandbox.Server
	db     *vault.DB
	dbPath string
	master *seal.MasterKey
	// masterText is the master key's encoded form, for child processes.
	masterText []byte
	mgr        *renew.Manager
	client     *xapi.Client
	hook       *hookTransport
	w          *Worker

	mu     sync.Mutex
	events []Event
}

type fixOpts struct {
	realTime bool
	ttl      time.Duration // sandbox access-token lifetime
	xcfg     func(*xapi.Config)
	wcfg     func(*Config)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newFix(t *testing.T, o fixOpts) *fix {
	t.Helper()
	f := &fix{t: t, hook: &hookTransport{}}
	now := time.Now
	if !o.realTime {
		f.clock = xsandbox.NewClock(t0)
		now = f.clock.Now
	}
	var err error
	f.sb, err = xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s3cret-client",
		RedirectURIs: []string{"http://127.0.0.1:1/callback"}, AccessTokenTTL: o.ttl, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.sb.Close)
	prov, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret("s3cret-client"), RedirectURL: "http://127.0.0.1:1/callback",
		AuthURL: f.sb.URL() + "/i/oauth2/authorize", TokenURL: f.sb.URL() + "/2/oauth2/token", RevokeURL: f.sb.URL() + "/2/oauth2/revoke",
		APIURL: f.sb.URL(), Now: now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	f.dbPath = filepath.Join(t.TempDir(), "tagwatch.db")
	f.master, f.masterText, _ = seal.NewMasterKey()
	f.db, err = vault.Open(vault.Options{Path: f.dbPath, Master: f.master, Create: true, Now: now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.Close() })
	f.mgr = renew.New(renew.Config{DB: f.db, Providers: map[string]renew.Provider{"x": prov}, PublicURL: "http://127.0.0.1:8080",
		Now: now, Logger: quiet(), MinBackoff: time.Second, MaxBackoff: time.Minute})
	xc := xapi.Config{BaseURL: prov.APIURL(), HTTPClient: &http.Client{Transport: f.hook}, MaxResults: 10,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Retries: 2, Now: now}
	if o.xcfg != nil {
		o.xcfg(&xc)
	}
	f.client = xapi.New(xc)
	wc := Config{DB: f.db, Searchers: map[string]Searcher{"x": f.client},
		Tokens: func(id string) xapi.TokenSource { return f.mgr.Source(id) }, MaxPages: 5, Now: now, Logger: quiet(),
		Observer: func(ev Event) {
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
		}}
	if o.wcfg != nil {
		o.wcfg(&wc)
	}
	f.w, err = New(wc)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fix) now() time.Time {
	if f.clock != nil {
		return f.clock.Now()
	}
	return time.Now()
}

// addWatch adds sandbox user xid, a vault user and grant for it (access
// token recorded as expiring at expiry; zero: in 2 h) and a watch of tags.
func (f *fix) addWatch(xid string, spec vault.WatchSpec, expiry time.Time) (watchID, grantID string) {
	f.t.Helper()
	if err := f.sb.AddUser(xsandbox.User{ID: xid, Username: "user" + xid}); err != nil {
		f.t.Fatal(err)
	}
	at, rt, err := f.sb.Grant(xid, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if expiry.IsZero() {
		expiry = f.now().Add(2 * time.Hour)
	}
	uid := "u" + xid
	g := vault.Grant{ID: vault.NewID(), UserID: uid, Provider: "x", Subject: xid, Scopes: provider.XScopes, State: vault.GrantActive, AccessExpiry: expiry}
	if spec.Schedule == "" {
		spec.Schedule = "@every 1m"
	}
	if len(spec.Targets) == 0 {
		spec.Targets = []string{"console:"}
	}
	wt := vault.Watch{ID: vault.NewID(), UserID: uid, Provider: "x", State: vault.WatchActive, WatchSpec: spec}
	err = f.db.Update(func(tx *vault.Tx) error {
		if err := tx.PutUser(vault.User{ID: uid}); err != nil {
			return err
		}
		if err := tx.SealTokens(&g, vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken(at)}); err != nil {
			return err
		}
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		return tx.PutWatch(wt)
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return wt.ID, g.ID
}

func (f *fix) post(author, text string) string {
	return f.sb.Post(xsandbox.Post{AuthorID: author, Text: text})
}

func (f *fix) cursor(watchID string) vault.Cursor {
	f.t.Helper()
	var c vault.Cursor
	if err := f.db.View(func(tx *vault.Tx) error { var err error; c, err = tx.Cursor(watchID); return err }); err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fix) watch(id string) vault.Watch {
	f.t.Helper()
	var w vault.Watch
	if err := f.db.View(func(tx *vault.Tx) error { var err error; w, err = tx.Watch(id); return err }); err != nil {
		f.t.Fatal(err)
	}
	return w
}

// queued returns how many times each post id was queued for watchID per
// target, and the number of outbox rows.
func (f *fix) queued(watchID string) (map[string]int, int) {
	f.t.Helper()
	counts := map[string]int{}
	rows := 0
	err := f.db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			if r.WatchID != watchID || r.Kind != vault.NoticeMatch {
				return nil
			}
			rows++
			var n vault.Notice
			if err := json.Unmarshal(r.Payload, &n); err != nil {
				return err
			}
			for _, p := range n.Posts {
				counts[p.ID]++
			}
			return nil
		})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return counts, rows
}

func (f *fix) run(watchID string) Event {
	f.t.Helper()
	ev := f.w.RunWatch(context.Background(), watchID)
	return ev
}

func (f *fix) mustRun(watchID string) Event {
	f.t.Helper()
	ev := f.run(watchID)
	if ev.Kind != EventRun {
		f.t.Fatalf("RunWatch(%s) = %s %s %v, want a run", watchID, ev.Kind, ev.Reason, ev.Err)
	}
	return ev
}

func (f *fix) searches(xid string) int {
	return f.sb.Stats().APICalls[xsandbox.EndpointSearch][xid]
}

func (f *fix) eventsOf(kind string) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Event
	for _, e := range f.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// checkExactlyOnce fails unless every id in want was queued exactly once
// and nothing else was.
func (f *fix) checkExactlyOnce(watchID string, want []string) {
	f.t.Helper()
	got, _ := f.queued(watchID)
	for _, id := range want {
		if got[id] != 1 {
			f.t.Errorf("post %s queued %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		f.t.Errorf("%d distinct posts queued, want %d", len(got), len(want))
	}
}

func tagPost(tag string, i int) string { return fmt.Sprintf("post %d about #%s", i, tag) }
