package selfservice

import (
	"context"
	"crypto/sha256"
	"errors"
	"html"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker"
	"tagwatch/worker/xsource"
)

var (
	_ PageStore = (*vault.DB)(nil)
	_ Scheduler = (*worker.Worker)(nil)
	_ Access    = (*testAccess)(nil)
	_ Links     = (*testLinks)(nil)
)

// Known secret values: the grants' tokens, a target's credential-bearing
// path. No page, header or cookie may show any of them.
const (
	adaRefresh   = "SENTINEL-ada-corp-refresh-4f9c2e71b0"
	adaAccess    = "SENTINEL-ada-corp-access-8a17d3c5e2"
	adaXRefresh  = "SENTINEL-ada-x-refresh-61b8f0d4a9"
	adaXAccess   = "SENTINEL-ada-x-access-2d5e9c7f13"
	bobRefresh   = "SENTINEL-bob-corp-refresh-93ac61e8f4"
	bobAccess    = "SENTINEL-bob-corp-access-c07b2a5d86"
	hookSecret   = "s3cr3t-hook-path-5b1f"
	adaHook      = "https://hooks.example.com/services/" + hookSecret
	adaMail      = "mailto:ada.lovelace@example.com"
	minInterval  = 10 * time.Minute
	rulesMessage = `schedule "@every 5m" runs every 5m0s; the minimum between runs of one watch is 10m0s (scheduler.min_interval)`
)

// testTargets is the notifier's target check in these tests: console:,
// mailto: with an address, and https:// webhooks.
type testTargets struct{}

func (testTargets) CheckTarget(raw string) error {
	switch {
	case raw == "console:", strings.HasPrefix(raw, "mailto:") && strings.Contains(raw, "@"), strings.HasPrefix(raw, "https://"):
		return nil
	}
	return &notify.TargetError{Label: notify.TargetLabel(raw), Err: errors.New("no channel delivers to it")}
}

// testRules are tagwatch's real watch rules (worker.Rules) with X's
// hashtag grammar at both providers and a 10-minute minimum interval.
func testRules() vault.WatchRules {
	return worker.Rules{Sources: map[string]worker.Source{"corp": xsource.New(nil), "x": xsource.New(nil)},
		Targets: testTargets{}, MinInterval: minInterval}
}

// testScheduler records what the page told the scheduler.
type testScheduler struct {
	mu       sync.Mutex
	upserted []vault.Watch
	removed  []string
}

func (s *testScheduler) Upsert(w vault.Watch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upserted = append(s.upserted, w)
	return nil
}

func (s *testScheduler) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, id)
}

func (s *testScheduler) calls() (upserted []vault.Watch, removed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.upserted), slices.Clone(s.removed)
}

// testLinks makes consent links as enroll.Service.CreateLink does: the
// vault's link under <url>/enroll/.
type testLinks struct {
	db   *vault.DB
	base string
}

func (l *testLinks) CreateLink(ctx context.Context, req vault.LinkRequest) (string, vault.Enrollment, error) {
	token, rec, err := l.db.CreateLink(req)
	if err != nil {
		return "", rec, err
	}
	return l.base + "/enroll/" + token, rec, nil
}

// testAccess is the daemon's part in-process: an unenroll (the vault's
// own, as renew.Manager.Unenroll calls it) and DeleteUser with each
// provider's rule.
type testAccess struct {
	db      *vault.DB
	mu      sync.Mutex
	revoked []string // user/provider
	deleted []string
}

func (a *testAccess) Revoke(ctx context.Context, userID, provider string) error {
	a.mu.Lock()
	a.revoked = append(a.revoked, userID+"/"+provider)
	a.mu.Unlock()
	g, err := a.db.UserGrant(userID, provider)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = a.db.UnenrollGrant(g.ID, vault.Unenroll{Actor: actor, Revoke: true})
	return err
}

func (a *testAccess) DeleteUser(ctx context.Context, userID, who string) (vault.DeleteUserOutcome, error) {
	a.mu.Lock()
	a.deleted = append(a.deleted, userID)
	a.mu.Unlock()
	return a.db.DeleteUser(userID, vault.UserDeletion{Actor: who, Rules: map[string]vault.RevocationRule{
		"corp": {Endpoint: true, Why: "test"}, "x": {Endpoint: true, EndsAccount: true, Why: "test"}}})
}

// pagesEnv is the page with everything it shows: user ada, signed in at
// corp as alice, with
//   - a grant at corp (active, renewed once) and its watch #golang #bbolt
//     every 15 minutes to a mail address and a webhook, run once with
//     three matches; a second watch there, #rustlang, paused;
//   - a grant at x (account @ada) that needs re-consent, its watch
//     #gophers suspended for it;
//
// and user bob, at corp too, with his own watch #bobonly.
type pagesEnv struct {
	*env
	op                  *fakeOP
	sched               *testScheduler
	access              *testAccess
	links               *testLinks
	adaWatch, adaPause  string // ids
	adaXWatch, bobWatch string
	adaCorp, adaX       vault.Grant
	statusNext          time.Time
}

// newPagesEnv makes a pagesEnv; edits, when given, change the Pages the
// Service is made with.
func newPagesEnv(t *testing.T, edits ...func(pe *pagesEnv, pg *Pages)) *pagesEnv {
	t.Helper()
	op := newFakeOP(t, false)
	pe := &pagesEnv{op: op, sched: &testScheduler{}}
	pe.env = newEnvWith(t, Config{}, func(e *env, cfg *Config) {
		cfg.Providers = map[string]Provider{"corp": newProvider(t, "corp", op.srv.URL, testClientID, testSecret, e.tokens)}
		pe.access = &testAccess{db: e.db}
		pe.links = &testLinks{db: e.db, base: e.url}
		db := e.db
		cfg.Pages = Pages{Scheduler: pe.sched, Links: pe.links, Access: pe.access, Cadence: notify.Cadence,
			TargetLabel: notify.TargetLabel, ProviderKind: func(name string) string {
				return map[string]string{"x": provider.KindX, "corp": provider.KindOIDC}[name]
			},
			Status: func(id string) (RunStatus, error) {
				w, err := db.Watch(id)
				if err != nil {
					return RunStatus{}, err
				}
				if !w.Runs() {
					return RunStatus{}, nil
				}
				return RunStatus{Next: pe.statusNext}, nil
			}}
		for _, edit := range edits {
			edit(pe, &cfg.Pages)
		}
	}, nil)
	db := pe.db
	ada := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "ada", Provider: "corp", Subject: "alice", Username: "alice",
		Refresh: adaRefresh, Access: adaAccess, Scopes: []string{"openid", "offline_access"},
		Watch: &vault.WatchSpec{Hashtags: []string{"golang", "bbolt"}, Schedule: "@every 15m", Targets: []string{adaMail, adaHook}}})
	adaX := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "ada", Provider: "x", Subject: "1001", Username: "ada",
		Refresh: adaXRefresh, Access: adaXAccess, Watch: &vault.WatchSpec{Hashtags: []string{"gophers"}, Schedule: "@hourly",
			Targets: []string{adaMail}}})
	bob := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "bob", Provider: "corp", Subject: "bob-sub", Refresh: bobRefresh,
		Access: bobAccess, Watch: &vault.WatchSpec{Hashtags: []string{"bobonly"}, Schedule: "@every 30m", Targets: []string{"mailto:bob@example.com"}}})
	db.SetRules(testRules())
	pe.adaWatch, pe.adaXWatch, pe.bobWatch = ada.Started[0].ID, adaX.Started[0].ID, bob.Started[0].ID
	pe.adaCorp = ada.Grant

	paused, err := db.AddWatch(vault.NewWatch{UserID: "ada", Provider: "corp", Spec: vault.WatchSpec{Hashtags: []string{"rustlang"},
		Schedule: "@daily", Targets: []string{adaMail}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PauseWatch(paused.ID, "test"); err != nil {
		t.Fatal(err)
	}
	pe.adaPause = paused.ID
	if _, err := db.MarkNeedsReconsent(adaX.Grant.ID, vault.Reconsent{Reason: "dead_grant", KeepTokens: true,
		LinkPrefix: pe.url + "/enroll/", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if pe.adaX, err = db.Grant(adaX.Grant.ID); err != nil {
		t.Fatal(err)
	}
	tk, err := db.BeginRefresh(ada.Grant.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitRefresh(tk, vault.RefreshResult{Access: secret.NewAccessToken(adaAccess), Expiry: time.Now().Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := db.CommitRun(vault.RunCommit{WatchID: pe.adaWatch, StartedAt: now.Add(-7 * time.Minute), NewSinceID: "1003", PostsRead: 5,
		Posts: []vault.Post{
			{ID: "1003", Text: "bbolt 1.4 is out, with a faster freelist", AuthorUsername: "etcdio", CreatedAt: now.Add(-9 * time.Minute),
				URL: "https://x.com/etcdio/status/1003"},
			{ID: "1002", Text: "What's new in #golang 1.26: a walk through the release notes", AuthorUsername: "golang",
				CreatedAt: now.Add(-40 * time.Minute), URL: "https://x.com/golang/status/1002"},
			{ID: "1001", Text: "javascript: links are not links", AuthorUsername: "mallory", CreatedAt: now.Add(-3 * time.Hour),
				URL: "javascript:alert(1)"},
		}}); err != nil {
		t.Fatal(err)
	}
	pe.statusNext = now.Add(8 * time.Minute)
	return pe
}

// secrets are the values no response may carry: the grants' tokens, the
// webhook's path and every ID token the provider issued so far.
func (pe *pagesEnv) secrets() []string {
	out := []string{adaRefresh, adaAccess, adaXRefresh, adaXAccess, bobRefresh, bobAccess, hookSecret}
	pe.op.mu.Lock()
	defer pe.op.mu.Unlock()
	return append(out, pe.op.idTokens...)
}

// checkNoSecrets fails t when p's body or any header (Set-Cookie and
// Location included) carries a secret.
func (pe *pagesEnv) checkNoSecrets(t *testing.T, what string, p page) {
	t.Helper()
	noSecretsIn(t, what+" body", p.body, pe.secrets()...)
	for k, vs := range p.header {
		for _, v := range vs {
			noSecretsIn(t, what+" header "+k, v, pe.secrets()...)
		}
	}
}

// vaultSum is the SHA-256 of the vault's file: any committed write
// changes it (bbolt writes a new meta page at every commit).
func vaultSum(t *testing.T, db *vault.DB) [32]byte {
	t.Helper()
	b, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// nonceRE finds the per-response style nonce, which two answers never
// share.
var nonceRE = regexp.MustCompile(`nonce="[^"]*"`)

func withoutNonce(s string) string { return nonceRE.ReplaceAllString(s, `nonce=""`) }

// TestPageShowsWatchesAndGrants: the page shows each watch (hashtags,
// schedule in words, targets by label, state and why, last and next run,
// recent matches with links) and each grant (provider, account, state,
// last renewal), and never a raw target, a token or a script link.
func TestPageShowsWatchesAndGrants(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	home := pe.signInFake(b)
	if home.status != http.StatusOK {
		t.Fatalf("the page = %v", home)
	}
	body := html.UnescapeString(home.body)
	for _, want := range []string{
		"Signed in as <strong>alice</strong> (corp).",
		"#golang", "#bbolt", "every 15 minutes", notify.TargetLabel(adaMail), notify.TargetLabel(adaHook),
		"#rustlang", "Paused", "You paused it", "once a day",
		"#gophers", "Waiting", "tagwatch's access to your X account needs renewing",
		"7 minutes ago", "in 8 minutes", "· completed", "None while it is paused", "None while it waits",
		`href="https://x.com/etcdio/status/1003"`, "bbolt 1.4 is out", "@etcdio",
		"Needs renewing", "<dd>@ada</dd>", "Renew access", "Last renewal", "Not yet",
		`action="/account/watches/` + pe.adaWatch + `/pause"`, `action="/account/watches/` + pe.adaPause + `/resume"`,
		`href="/account/watches/` + pe.adaWatch + `#change"`, `href="/account/watches/new?provider=corp"`, `href="/account/grants/corp/revoke"`, `action="/account/grants/x/reconsent"`,
		`href="/account/delete"`, `action="/account/signout"`, `action="/account/signout-everywhere"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, not := range []string{"ada.lovelace@", `href="javascript`, "ZgotmplZ", "bobonly", pe.bobWatch,
		`action="/account/watches/` + pe.adaXWatch + `/resume"`} {
		if strings.Contains(body, not) {
			t.Errorf("the page shows %q", not)
		}
	}
	if strings.Count(body, `class="matches"`) != 1 || strings.Count(body, "<li>") < 3 {
		t.Errorf("want one list of matches (the run watch's):\n%s", body)
	}
	// The last renewal of the renewed grant is today's.
	if !strings.Contains(body, time.Now().UTC().Format("2 Jan 2006")+", ") {
		t.Errorf("the renewed grant's last renewal is not shown")
	}
	pe.checkNoSecrets(t, "the page", home)
	if csp := home.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
		t.Errorf("CSP = %q", csp)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
		t.Errorf("the page has a script, a style attribute or an event handler")
	}

	wp := b.get(pe.url + Prefix + "/watches/" + pe.adaWatch)
	wbody := html.UnescapeString(wp.body)
	for _, want := range []string{"#golang", "Recent matches", "Change it", `value="golang bbolt"`, `value="@every 15m"`,
		`name="target" value="` + targetKey(adaHook) + `" checked`, `name="from" value="watch"`, "bbolt 1.4 is out", "What's new in #golang"} {
		if !strings.Contains(wbody, want) {
			t.Errorf("the watch's page lacks %q", want)
		}
	}
	if strings.Contains(wbody, "ada.lovelace@") || strings.Contains(wbody, hookSecret) {
		t.Errorf("the watch's page shows a raw target")
	}
}

// TestGetChangesNothing: no GET route writes to the vault, however often
// it is asked (the vault's file is byte for byte the same), or calls the
// scheduler or the daemon.
func TestGetChangesNothing(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.signInFake(b)
	routes := []string{"/", "/watches/new?provider=corp", "/watches/new?provider=x", "/watches/" + pe.adaWatch,
		"/watches/" + pe.adaPause, "/watches/" + pe.adaXWatch, "/watches/" + pe.adaWatch + "/delete",
		"/grants/corp/revoke", "/grants/x/revoke", "/delete", "/deleted", "/signed-out",
		// routes that only take POST: a GET changes nothing either
		"/watches", "/watches/" + pe.adaWatch + "/pause", "/watches/" + pe.adaPause + "/resume", "/grants/x/reconsent",
		"/signout", "/signout-everywhere",
		// another user's watch, a missing one
		"/watches/" + pe.bobWatch, "/watches/" + pe.bobWatch + "/delete", "/watches/nosuch",
	}
	for _, route := range routes {
		before := vaultSum(t, pe.db)
		for range 2 {
			p := b.get(pe.url + Prefix + route)
			if p.status >= 500 || p.status == http.StatusSeeOther {
				t.Errorf("GET %s = %v", route, p)
			}
		}
		if vaultSum(t, pe.db) != before {
			t.Errorf("GET %s changed the vault", route)
		}
	}
	up, rm := pe.sched.calls()
	if len(up) != 0 || len(rm) != 0 || len(pe.access.revoked) != 0 || len(pe.access.deleted) != 0 {
		t.Errorf("GETs called the scheduler (%d, %d) or the daemon (%v, %v)", len(up), len(rm), pe.access.revoked, pe.access.deleted)
	}
	if p := b.get(pe.url + Prefix + "/"); !strings.Contains(p.body, "Signed in as") {
		t.Errorf("after the GETs the page is %v, want still signed in", p)
	}
}

// hrefRE and formRE find a page's links and forms; inputRE and
// textareaRE a form's fields. The page's own markup is regular enough.
var (
	hrefRE     = regexp.MustCompile(`href="([^"]*)"`)
	formRE     = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)"[^>]*>(.*?)</form>`)
	inputRE    = regexp.MustCompile(`<input ([^>]*)>`)
	attrRE     = regexp.MustCompile(`([a-z_]+)(?:="([^"]*)")?`)
	textareaRE = regexp.MustCompile(`(?s)<textarea [^>]*name="([^"]*)"[^>]*>(.*?)</textarea>`)
)

// pageForm is a form as a browser would submit it unchanged.
type pageForm struct {
	action string
	values url.Values
}

func formsOf(body string) []pageForm {
	var out []pageForm
	for _, m := range formRE.FindAllStringSubmatch(body, -1) {
		f := pageForm{action: html.UnescapeString(m[1]), values: url.Values{}}
		for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range attrRE.FindAllStringSubmatch(in[1], -1) {
				attrs[a[1]] = html.UnescapeString(a[2])
			}
			if _, checked := attrs["checked"]; attrs["type"] == "checkbox" && !checked {
				continue
			}
			if attrs["name"] != "" {
				f.values.Add(attrs["name"], attrs["value"])
			}
		}
		for _, ta := range textareaRE.FindAllStringSubmatch(m[2], -1) {
			f.values.Set(ta[1], html.UnescapeString(ta[2]))
		}
		out = append(out, f)
	}
	return out
}

// TestCrawl: with known secret values in the vault (the grants' sealed
// tokens, a webhook's path) and the ID tokens the provider issued, every page
// reached from the page by a link or a form, every form's target asked
// with GET, and every form submitted as it is, answers without any of
// them in its body, its headers or its cookies. The GETs change nothing.
func TestCrawl(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.checkNoSecrets(t, "the sign-in page", b.get(pe.url+Prefix+"/"))
	pe.signInFake(b)
	if len(pe.secrets()) < 8 {
		t.Fatalf("the provider issued no ID token")
	}
	sum := vaultSum(t, pe.db)
	seen := map[string]bool{}
	queue := []string{Prefix + "/"}
	var forms []pageForm
	formSeen := map[string]bool{}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		p := b.get(pe.url + path)
		pe.checkNoSecrets(t, "GET "+path, p)
		if p.status >= 500 || p.status == http.StatusSeeOther {
			t.Errorf("GET %s = %v", path, p)
		}
		for _, m := range hrefRE.FindAllStringSubmatch(p.body, -1) {
			link := html.UnescapeString(m[1])
			if u := mustURL(link); u.Host == "" && strings.HasPrefix(u.Path, Prefix+"/") {
				queue = append(queue, strings.SplitN(link, "#", 2)[0])
			}
		}
		for _, f := range formsOf(p.body) {
			queue = append(queue, f.action)
			if key := f.action + "?" + f.values.Encode(); !formSeen[key] {
				formSeen[key] = true
				forms = append(forms, f)
			}
		}
	}
	if vaultSum(t, pe.db) != sum {
		t.Errorf("the crawl's GETs changed the vault")
	}
	for _, want := range []string{Prefix + "/watches/" + pe.adaWatch, Prefix + "/watches/new?provider=corp", Prefix + "/grants/corp/revoke",
		Prefix + "/delete", Prefix + "/watches/" + pe.adaPause + "/delete", Prefix + "/watches/" + pe.adaWatch + "/pause"} {
		if !seen[want] {
			t.Errorf("the crawl did not reach %s (reached %v)", want, slices.Sorted(maps.Keys(seen)))
		}
	}

	// Submit every form as it is: what changes nothing for good first,
	// then what ends things. Sign out everywhere is submitted from a
	// second browser signed in as ada too, so that it ends a live session
	// (its redirect to the provider must carry no token either) and the
	// first browser goes on.
	everywhere := newBrowser(t)
	pe.signInFake(everywhere)
	rank := func(f pageForm) int {
		switch {
		case strings.HasSuffix(f.action, "/revoke"):
			return 2
		case strings.HasSuffix(f.action, "/delete") && !strings.Contains(f.action, "/watches/"):
			return 3
		case strings.HasSuffix(f.action, "/signout"):
			return 4
		case strings.HasSuffix(f.action, "/delete"):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(forms, func(a, b pageForm) int { return rank(a) - rank(b) })
	submitted := 0
	for _, f := range forms {
		who := b
		if strings.HasSuffix(f.action, "/signout-everywhere") {
			who = everywhere
		}
		p := who.post(pe.url+f.action, f.values)
		what := "POST " + f.action
		t.Logf("%s %v -> %d %s", what, f.values, p.status, p.loc)
		pe.checkNoSecrets(t, what, p)
		submitted++
		for hops := 0; p.status == http.StatusSeeOther && hops < 3; hops++ {
			u := mustURL(p.loc)
			if u.Host != "" && u.Host != mustURL(pe.url).Host || strings.HasPrefix(u.Path, "/enroll/") {
				break // the provider, or the consent pages (not served here)
			}
			p = who.follow(pe.url, p)
			pe.checkNoSecrets(t, what+" then GET "+u.Path, p)
		}
		if p.status >= 500 {
			t.Errorf("%s = %v", what, p)
		}
	}
	if submitted < 8 {
		t.Errorf("submitted %d forms, want every form of the pages", submitted)
	}
}

// TestTargetKeys: a form names a target by key, never by value, and only
// the user's own targets map back.
func TestTargetKeys(t *testing.T) {
	ws := []vault.WatchWithCursor{{Watch: vault.Watch{WatchSpec: vault.WatchSpec{Targets: []string{adaMail, adaHook}}}}}
	got, err := formTargets(url.Values{"target": {targetKey(adaHook), targetKey(adaHook)}, "new_targets": {"\n console: \r\n\n" + adaMail}}, ws)
	if err != nil || !slices.Equal(got, []string{adaHook, "console:", adaMail}) {
		t.Errorf("formTargets = %q, %v; want the hook, console:, the mail address", got, err)
	}
	if _, err := formTargets(url.Values{"target": {targetKey("mailto:bob@example.com")}}, ws); !errors.Is(err, errTargetGone) {
		t.Errorf("formTargets(another's key) = %v, want errTargetGone", err)
	}
	if got, err := formTargets(url.Values{}, ws); err != nil || got == nil || len(got) != 0 {
		t.Errorf("formTargets(nothing) = %#v, %v; want an empty, non-nil list (the rules refuse it)", got, err)
	}
	if k := targetKey(adaHook); strings.Contains(k, hookSecret) || len(k) != 32 {
		t.Errorf("targetKey = %q", k)
	}
}

// TestSplitHashtags: spaces and commas separate; an empty field is an
// empty list, not "no change".
func TestSplitHashtags(t *testing.T) {
	for in, want := range map[string][]string{
		"golang bbolt": {"golang", "bbolt"}, " #golang,#bbolt ,, go": {"#golang", "#bbolt", "go"}, "": {}, " , ": {},
	} {
		if got := splitHashtags(in); !slices.Equal(got, want) || got == nil {
			t.Errorf("splitHashtags(%q) = %#v, want %#v", in, got, want)
		}
	}
}

// TestWhen: how far from now, and the time in UTC.
func TestWhen(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at       time.Time
		rel, abs string
	}{
		{now.Add(-7 * time.Minute), "7 minutes ago", "30 Nov 2026, 11:53 UTC"},
		{now.Add(30 * time.Second), "in 30 seconds", "30 Nov 2026, 12:00 UTC"},
		{now.Add(-50 * time.Second), "50 seconds ago", "30 Nov 2026, 11:59 UTC"},
		{now.Add(4 * time.Second), "now", "30 Nov 2026, 12:00 UTC"},
		{now.Add(-4 * time.Second), "now", "30 Nov 2026, 11:59 UTC"},
		{now.Add(59*time.Second + 999*time.Millisecond), "in 59 seconds", "30 Nov 2026, 12:00 UTC"},
		{now.Add(time.Minute), "in 1 minute", "30 Nov 2026, 12:01 UTC"},
		{now.Add(7*time.Minute + 59*time.Second), "in 8 minutes", "30 Nov 2026, 12:07 UTC"},
		{now.Add(61 * time.Minute), "in 1 hour", "30 Nov 2026, 13:01 UTC"},
		{now.Add(-72 * time.Hour), "3 days ago", "27 Nov 2026, 12:00 UTC"},
		{now.In(time.FixedZone("CET", 3600)).Add(-time.Minute), "1 minute ago", "30 Nov 2026, 11:59 UTC"},
	} {
		if rel, abs := when(c.at, now); rel != c.rel || abs != c.abs {
			t.Errorf("when(%v) = %q, %q; want %q, %q", c.at, rel, abs, c.rel, c.abs)
		}
	}
}
