package selfservice

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// outboxKinds counts the user's outbox rows by kind.
func outboxKinds(t *testing.T, db *vault.DB, userID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, st := range []vault.OutboxState{vault.OutboxPending, vault.OutboxRetrying, vault.OutboxDelivered, vault.OutboxDead, vault.OutboxDropped} {
		rows, err := db.ListOutbox(st, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.UserID == userID {
				out[r.Kind]++
			}
		}
	}
	return out
}

func (pe *pagesEnv) watch(t *testing.T, id string) vault.Watch {
	t.Helper()
	w, err := pe.db.Watch(id)
	if err != nil {
		t.Fatalf("watch %s: %v", id, err)
	}
	return w.Watch
}

// TestActions: each action, as its form sends it, does what it says
// through the vault's owner-scoped methods, tells the scheduler, and
// returns (303) to a page that says what happened.
func TestActions(t *testing.T) {
	cases := []struct {
		name  string
		path  func(pe *pagesEnv) string
		form  func(pe *pagesEnv) url.Values
		loc   func(pe *pagesEnv) string // the 303's Location; prefix match when it ends in "*"
		check func(t *testing.T, pe *pagesEnv)
		// then is what the page the 303 leads to says.
		then string
	}{
		{name: "pause from the page",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch + "/pause" },
			loc: func(pe *pagesEnv) string {
				return "/account/?done=paused&watch=" + pe.adaWatch + "#watch-" + pe.adaWatch
			},
			check: func(t *testing.T, pe *pagesEnv) {
				if w := pe.watch(t, pe.adaWatch); w.State != vault.WatchPaused {
					t.Errorf("state %s, want paused", w.State)
				}
				if up, _ := pe.sched.calls(); len(up) != 1 || up[0].ID != pe.adaWatch || up[0].State != vault.WatchPaused {
					t.Errorf("scheduler told %+v, want the paused watch", up)
				}
			},
			then: "Watch paused"},
		{name: "pause from the watch's page",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch + "/pause" },
			form: func(pe *pagesEnv) url.Values { return url.Values{"from": {"watch"}} },
			loc:  func(pe *pagesEnv) string { return "/account/watches/" + pe.adaWatch + "?done=paused" },
			then: "Watch paused"},
		{name: "pause a paused watch",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaPause + "/pause" },
			loc: func(pe *pagesEnv) string {
				return "/account/?done=unchanged&watch=" + pe.adaPause + "#watch-" + pe.adaPause
			},
			check: func(t *testing.T, pe *pagesEnv) {
				if up, _ := pe.sched.calls(); len(up) != 0 {
					t.Errorf("scheduler told %d times, want none", len(up))
				}
			},
			then: "Nothing needed changing"},
		{name: "resume",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaPause + "/resume" },
			loc: func(pe *pagesEnv) string {
				return "/account/?done=resumed&watch=" + pe.adaPause + "#watch-" + pe.adaPause
			},
			check: func(t *testing.T, pe *pagesEnv) {
				if w := pe.watch(t, pe.adaPause); w.State != vault.WatchActive {
					t.Errorf("state %s, want active", w.State)
				}
			},
			then: "Watch resumed."},
		{name: "resume a paused watch whose grant needs consent: it waits",
			path: func(pe *pagesEnv) string {
				if _, _, err := pe.db.PauseWatch(pe.adaXWatch, "test"); err != nil {
					panic(err)
				}
				return "/watches/" + pe.adaXWatch + "/resume"
			},
			loc: func(pe *pagesEnv) string {
				return "/account/?done=waiting&watch=" + pe.adaXWatch + "#watch-" + pe.adaXWatch
			},
			check: func(t *testing.T, pe *pagesEnv) {
				if w := pe.watch(t, pe.adaXWatch); w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendNeedsReconsent {
					t.Errorf("state %s (%s), want suspended for re-consent", w.State, w.SuspendReason)
				}
			},
			then: "Watch resumed, but it waits"},
		{name: "change hashtags, schedule and targets",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			form: func(pe *pagesEnv) url.Values {
				return url.Values{"hashtags": {"#golang, sqlite  bbolt"}, "schedule": {" @every 30m "}, "target": {targetKey(adaHook)},
					"new_targets": {"console:\r\n"}}
			},
			loc: func(pe *pagesEnv) string { return "/account/watches/" + pe.adaWatch + "?done=changed#top" },
			check: func(t *testing.T, pe *pagesEnv) {
				w := pe.watch(t, pe.adaWatch)
				if !slices.Equal(w.Hashtags, []string{"golang", "sqlite", "bbolt"}) || w.Schedule != "@every 30m" ||
					!slices.Equal(w.Targets, []string{adaHook, "console:"}) || w.State != vault.WatchActive {
					t.Errorf("watch = %+v, want the change applied, still active", w)
				}
				if up, _ := pe.sched.calls(); len(up) != 1 || up[0].Schedule != "@every 30m" {
					t.Errorf("scheduler told %+v", up)
				}
			},
			then: "Changes saved"},
		{name: "add a watch on a grant",
			path: func(pe *pagesEnv) string { return "/watches" },
			form: func(pe *pagesEnv) url.Values {
				return url.Values{"provider": {"corp"}, "hashtags": {"sqlite"}, "schedule": {"@hourly"}, "target": {targetKey(adaMail)}}
			},
			loc: func(pe *pagesEnv) string { return "/account/?done=added&watch=*" },
			check: func(t *testing.T, pe *pagesEnv) {
				ws, _ := pe.db.ListWatches("ada")
				i := slices.IndexFunc(ws, func(w vault.WatchWithCursor) bool { return slices.Equal(w.Hashtags, []string{"sqlite"}) })
				if i < 0 || ws[i].Provider != "corp" || ws[i].State != vault.WatchActive || !slices.Equal(ws[i].Targets, []string{adaMail}) {
					t.Fatalf("ada's watches %+v, want #sqlite at corp, active, to her mail", ws)
				}
				if up, _ := pe.sched.calls(); len(up) != 1 || up[0].ID != ws[i].ID {
					t.Errorf("scheduler told %+v", up)
				}
			},
			then: "Watch added"},
		{name: "add a watch on a grant that needs consent: it waits",
			path: func(pe *pagesEnv) string { return "/watches" },
			form: func(pe *pagesEnv) url.Values {
				return url.Values{"provider": {"x"}, "hashtags": {"sqlite"}, "schedule": {"@hourly"}, "new_targets": {"console:"}}
			},
			loc: func(pe *pagesEnv) string { return "/account/?done=added&watch=*" },
			check: func(t *testing.T, pe *pagesEnv) {
				ws, _ := pe.db.ListWatches("ada")
				i := slices.IndexFunc(ws, func(w vault.WatchWithCursor) bool { return slices.Equal(w.Hashtags, []string{"sqlite"}) })
				if i < 0 || ws[i].State != vault.WatchSuspended || ws[i].SuspendReason != vault.SuspendNeedsReconsent {
					t.Fatalf("ada's watches %+v, want #sqlite suspended for re-consent", ws)
				}
			}},
		{name: "delete a watch",
			path: func(pe *pagesEnv) string { return "/watches/" + pe.adaPause + "/delete" },
			loc:  func(pe *pagesEnv) string { return "/account/?done=deleted" },
			check: func(t *testing.T, pe *pagesEnv) {
				if _, err := pe.db.Watch(pe.adaPause); !errors.Is(err, vault.ErrNotFound) {
					t.Errorf("deleted watch: %v, want not found", err)
				}
				if _, rm := pe.sched.calls(); !slices.Equal(rm, []string{pe.adaPause}) {
					t.Errorf("scheduler removed %v", rm)
				}
			},
			then: "Watch deleted"},
		{name: "re-consent: a fresh link, and its landing page",
			path: func(pe *pagesEnv) string { return "/grants/x/reconsent" },
			loc:  func(pe *pagesEnv) string { return pe.url + "/enroll/*" },
			check: func(t *testing.T, pe *pagesEnv) {
				links, err := pe.db.ListLinks(time.Now())
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, l := range links {
					if l.Purpose == vault.PurposeReconsent && l.UserID == "ada" && l.Provider == "x" && l.CreatedBy == actor {
						n++
						if l.Expected != "1001" || l.GrantID != pe.adaX.ID {
							t.Errorf("re-consent link %+v, want bound to the grant's account 1001", l)
						}
					}
				}
				if n != 1 {
					t.Errorf("%d re-consent links by the page, want 1", n)
				}
			}},
		{name: "re-consent of an active grant: nothing to do",
			path: func(pe *pagesEnv) string { return "/grants/corp/reconsent" },
			loc:  func(pe *pagesEnv) string { return "/account/?done=active" },
			then: "does not need renewing"},
		{name: "revoke",
			path: func(pe *pagesEnv) string { return "/grants/corp/revoke" },
			loc:  func(pe *pagesEnv) string { return "/account/?done=revoked" },
			check: func(t *testing.T, pe *pagesEnv) {
				g, err := pe.db.Grant(pe.adaCorp.ID)
				if err != nil || g.State != vault.GrantRevoked || len(g.SealedRefresh) != 0 {
					t.Errorf("grant after revoke = %+v, %v; want revoked without tokens", g, err)
				}
				if w := pe.watch(t, pe.adaWatch); w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendRevoked {
					t.Errorf("watch %s (%s), want suspended revoked", w.State, w.SuspendReason)
				}
				if n := outboxKinds(t, pe.db, "ada")[vault.NoticeRevoked]; n == 0 {
					t.Errorf("no confirmation (NoticeRevoked) queued")
				}
				if !slices.Equal(pe.access.revoked, []string{"ada/corp"}) {
					t.Errorf("revoked %v", pe.access.revoked)
				}
			},
			then: "access was revoked"},
		{name: "delete all data",
			path: func(pe *pagesEnv) string { return "/delete" },
			loc:  func(pe *pagesEnv) string { return "/account/deleted" },
			check: func(t *testing.T, pe *pagesEnv) {
				if _, err := pe.db.User("ada"); !errors.Is(err, vault.ErrNotFound) {
					t.Errorf("user after deletion: %v, want not found", err)
				}
				if ws, _ := pe.db.ListWatches("ada"); len(ws) != 0 {
					t.Errorf("%d watches left", len(ws))
				}
				if k := outboxKinds(t, pe.db, "ada"); k[vault.NoticeAccountDeleted] != 2 || len(k) != 1 {
					t.Errorf("ada's outbox %v, want only the confirmation, once per target (2)", k)
				}
				if _, err := pe.db.User("bob"); err != nil {
					t.Errorf("bob: %v", err)
				}
			},
			then: "Your data was deleted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pe := newPagesEnv(t)
			b := newBrowser(t)
			pe.signInFake(b)
			form := url.Values{}
			if c.form != nil {
				form = c.form(pe)
			}
			p := b.post(pe.url+Prefix+c.path(pe), form)
			pe.checkNoSecrets(t, "the answer", p)
			want := c.loc(pe)
			if p.status != http.StatusSeeOther || !(p.loc == want || strings.HasSuffix(want, "*") && strings.HasPrefix(p.loc, strings.TrimSuffix(want, "*"))) {
				t.Fatalf("POST = %v, want 303 to %s", p, want)
			}
			if c.check != nil {
				c.check(t, pe)
			}
			if c.then != "" {
				then := b.follow(pe.url, p)
				if then.status != http.StatusOK || !strings.Contains(html.UnescapeString(then.body), c.then) {
					t.Errorf("the page after = %v, want %q", then, c.then)
				}
				// A notice about one watch stands in its card, where the
				// page scrolls to, not above the visible part.
				if id := mustURL(pe.url + p.loc).Query().Get("watch"); id != "" {
					card := strings.Index(then.body, `id="watch-`+id+`"`)
					notice := strings.Index(html.UnescapeString(then.body), c.then)
					if card < 0 || notice < card {
						t.Errorf("the notice %q is not in the card of watch %s", c.then, id)
					}
				}
			}
		})
	}
}

// TestDeleteEndsSession: deleting their data ends every page session of
// the person (sessionStore.endUser), in this browser and every other,
// and no one else's.
func TestDeleteEndsSession(t *testing.T) {
	pe := newPagesEnv(t)
	b, other, bob := newBrowser(t), newBrowser(t), newBrowser(t)
	pe.signInFake(b)
	pe.signInFake(other)
	pe.op.set(func(op *fakeOP) { op.subject = "bob-sub" })
	pe.signInFake(bob)
	pe.op.set(func(op *fakeOP) { op.subject = "alice" })
	otherID, bobID := other.cookie(pe.url, SessionCookie), bob.cookie(pe.url, SessionCookie)
	p := b.post(pe.url+Prefix+"/delete", nil)
	if p.status != http.StatusSeeOther || b.cookie(pe.url, SessionCookie) != "" {
		t.Fatalf("POST /account/delete = %v, session cookie %q; want 303 and the cookie gone", p, b.cookie(pe.url, SessionCookie))
	}
	if _, st := pe.svc.sessions.lookup(otherID, pe.clock.Now()); st != sessionUnknown {
		t.Errorf("the other browser's session is %v after deletion, want ended", st)
	}
	if sess, st := pe.svc.sessions.lookup(bobID, pe.clock.Now()); st != sessionLive || sess.userID != "bob" {
		t.Errorf("bob's session is %v (%q) after ada's deletion, want live", st, sess.userID)
	}
	expectPage(t, "the page after deletion", b.get(pe.url+Prefix+"/"), http.StatusOK, `action="/account/signin"`)
	if p := other.get(pe.url + Prefix + "/"); strings.Contains(p.body, "#golang") {
		t.Errorf("the other browser still sees ada's watches: %v", p)
	}
}

// TestDomainErrors: a change the domain refuses shows the form again,
// with the rule's own message next to it and what was typed, and nothing
// changes.
func TestDomainErrors(t *testing.T) {
	cases := []struct {
		name   string
		path   func(pe *pagesEnv) string
		form   url.Values
		status int
		msg    string
	}{
		{"change: invalid hashtag", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"go-lang"}, "schedule": {"@every 15m"}, "target": {targetKey(adaMail)}}, 422, `hashtag "#go-lang" contains U+002D`},
		{"change: schedule below the minimum", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"golang"}, "schedule": {"@every 5m"}, "target": {targetKey(adaMail)}}, 422, rulesMessage},
		{"change: schedule that never fires", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"golang"}, "schedule": {"0 0 30 2 *"}, "target": {targetKey(adaMail)}}, 422, `schedule "0 0 30 2 *" never fires`},
		{"change: no hashtags", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {" , "}, "schedule": {"@every 15m"}, "target": {targetKey(adaMail)}}, 422, "at least one hashtag is required"},
		{"change: no targets", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"golang"}, "schedule": {"@every 15m"}}, 422, "target"},
		{"change: a target no channel delivers to", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"golang"}, "schedule": {"@every 15m"}, "new_targets": {"gopher://example.com/x"}}, 422,
			notify.TargetLabel("gopher://example.com/x") + ": no channel delivers to it"},
		{"change: another user's target key", func(pe *pagesEnv) string { return "/watches/" + pe.adaWatch },
			url.Values{"hashtags": {"golang"}, "schedule": {"@every 15m"}, "target": {targetKey("mailto:bob@example.com")}}, 422, errTargetGone.Error()},
		{"change: the same as another watch", func(pe *pagesEnv) string { return "/watches/" + pe.adaPause },
			url.Values{"hashtags": {"bbolt golang"}, "schedule": {"@every 15m"}, "target": {targetKey(adaHook), targetKey(adaMail)}}, 422,
			"you already have a watch with these hashtags"},
		{"add: schedule below the minimum", func(pe *pagesEnv) string { return "/watches" },
			url.Values{"provider": {"corp"}, "hashtags": {"golang"}, "schedule": {"@every 5m"}, "target": {targetKey(adaMail)}}, 422, rulesMessage},
		{"add: invalid hashtag", func(pe *pagesEnv) string { return "/watches" },
			url.Values{"provider": {"corp"}, "hashtags": {"#"}, "schedule": {"@hourly"}, "target": {targetKey(adaMail)}}, 422, `hashtag "#" is empty`},
		{"add: a watch she has", func(pe *pagesEnv) string { return "/watches" },
			url.Values{"provider": {"corp"}, "hashtags": {"golang bbolt"}, "schedule": {"@every 15m"}, "target": {targetKey(adaMail), targetKey(adaHook)}},
			422, "you already have a watch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pe := newPagesEnv(t)
			b := newBrowser(t)
			pe.signInFake(b)
			before := vaultSum(t, pe.db)
			p := b.post(pe.url+Prefix+c.path(pe), c.form)
			body := html.UnescapeString(p.body)
			if p.status != c.status || !strings.Contains(body, c.msg) {
				t.Fatalf("POST = %v, want %d with %q", p, c.status, c.msg)
			}
			// Next to the form: the message comes right before it.
			at, form := strings.Index(body, c.msg), strings.Index(body, `class="edit"`)
			if form < 0 || at > form || !strings.Contains(body[strings.LastIndex(body[:at], "<p"):at], `class="alert"`) {
				t.Errorf("the message is not next to the form:\n%s", body)
			}
			if h := c.form.Get("hashtags"); !strings.Contains(body, `value="`+h+`"`) {
				t.Errorf("the form does not keep the hashtags typed (%q)", h)
			}
			if vaultSum(t, pe.db) != before {
				t.Errorf("a refused change changed the vault")
			}
			if up, rm := pe.sched.calls(); len(up)+len(rm) != 0 {
				t.Errorf("a refused change told the scheduler")
			}
			pe.checkNoSecrets(t, "the refusal", p)
		})
	}
}

// TestResumeRefused: resuming a watch its cause still holds (suspended,
// grant needs consent) is refused on the watch's page, with why.
func TestResumeRefused(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.signInFake(b)
	before := vaultSum(t, pe.db)
	p := b.post(pe.url+Prefix+"/watches/"+pe.adaXWatch+"/resume", nil)
	expectPage(t, "resume a suspended watch", p, http.StatusConflict, "This watch cannot be resumed now. tagwatch&#39;s access to your X account needs renewing")
	if vaultSum(t, pe.db) != before {
		t.Errorf("a refused resume changed the vault")
	}
}

// TestAnotherUsersWatch: on every route that names a watch, bob's watch
// is answered exactly as a missing one (the same status and page), and
// nothing of his changes. Routes that name a provider only ever reach
// the signed-in user's own grant.
func TestAnotherUsersWatch(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.signInFake(b)
	bobBefore := pe.watch(t, pe.bobWatch)
	bobGrant, _ := pe.db.UserGrant("bob", "corp")
	routes := []struct {
		method, path string
		form         url.Values
	}{
		{"GET", "/watches/%s", nil},
		{"GET", "/watches/%s/delete", nil},
		{"POST", "/watches/%s", url.Values{"hashtags": {"pwned"}, "schedule": {"@hourly"}, "new_targets": {"console:"}}},
		{"POST", "/watches/%s/pause", url.Values{}},
		{"POST", "/watches/%s/resume", url.Values{}},
		{"POST", "/watches/%s/delete", url.Values{}},
	}
	for _, rt := range routes {
		sum := vaultSum(t, pe.db)
		theirs := b.do(rt.method, pe.url+Prefix+strings.Replace(rt.path, "%s", pe.bobWatch, 1), rt.form)
		missing := b.do(rt.method, pe.url+Prefix+strings.Replace(rt.path, "%s", "zzzzzzzzzzzzzzzzzzzzzzzzzz", 1), rt.form)
		what := rt.method + " " + rt.path
		if theirs.status != http.StatusNotFound || theirs.status != missing.status || withoutNonce(theirs.body) != withoutNonce(missing.body) {
			t.Errorf("%s with bob's watch = %v; with a missing one = %v; want the same 404", what, theirs, missing)
		}
		if strings.Contains(theirs.body, "bobonly") || strings.Contains(theirs.body, pe.bobWatch) {
			t.Errorf("%s shows bob's watch", what)
		}
		if vaultSum(t, pe.db) != sum {
			t.Errorf("%s changed the vault", what)
		}
	}
	if after := pe.watch(t, pe.bobWatch); after.State != bobBefore.State || !slices.Equal(after.Hashtags, bobBefore.Hashtags) {
		t.Errorf("bob's watch changed: %+v", after)
	}
	// Adding a watch at a provider where she has no grant: as a missing
	// grant, nothing added (bob's grant at corp is not hers to use).
	for _, prov := range []string{"nosuch", ""} {
		p := b.post(pe.url+Prefix+"/watches", url.Values{"provider": {prov}, "hashtags": {"x"}, "schedule": {"@hourly"}, "new_targets": {"console:"}})
		if p.status != http.StatusNotFound {
			t.Errorf("add at provider %q = %v, want 404", prov, p)
		}
		if g := b.get(pe.url + Prefix + "/watches/new?provider=" + prov); g.status != http.StatusNotFound {
			t.Errorf("the add form at provider %q = %v, want 404", prov, g)
		}
	}
	for _, path := range []string{"/grants/nosuch/reconsent", "/grants/nosuch/revoke"} {
		if p := b.post(pe.url+Prefix+path, nil); p.status != http.StatusNotFound {
			t.Errorf("POST %s = %v, want 404", path, p)
		}
	}
	if g, _ := pe.db.UserGrant("bob", "corp"); g.State != bobGrant.State || g.UpdatedAt != bobGrant.UpdatedAt {
		t.Errorf("bob's grant changed")
	}
}

// TestRecentSignIn: revoking and deleting need a recent sign-in: with a
// stale one, their confirmation pages and their POSTs go to the provider
// with max_age and change nothing; after it, the confirmation page shows.
func TestRecentSignIn(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.op.set(func(op *fakeOP) { op.authTime = time.Now().Add(-time.Hour) })
	pe.signInFake(b)
	before := vaultSum(t, pe.db)
	for _, rt := range []struct{ method, path, back string }{
		{"GET", "/grants/corp/revoke", "/account/grants/corp/revoke"},
		{"POST", "/grants/corp/revoke", "/account/grants/corp/revoke"},
		{"GET", "/delete", "/account/delete"},
		{"POST", "/delete", "/account/delete"},
	} {
		var form url.Values
		if rt.method == "POST" {
			form = url.Values{}
		}
		p := b.do(rt.method, pe.url+Prefix+rt.path, form)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc, pe.op.srv.URL+"/authorize?") || mustURL(p.loc).Query().Get("max_age") != "300" {
			t.Errorf("%s %s with a stale sign-in = %v, want 303 to the provider with max_age=300", rt.method, rt.path, p)
		}
	}
	if vaultSum(t, pe.db) != before || len(pe.access.revoked)+len(pe.access.deleted) != 0 {
		t.Fatalf("a request without a recent sign-in changed something")
	}
	// The provider authenticates again: back on the confirmation page.
	pe.op.set(func(op *fakeOP) { op.authTime = time.Time{} })
	p := b.get(pe.url + Prefix + "/grants/corp/revoke")
	p = b.follow(pe.url, b.follow(pe.url, p))
	if p.status != http.StatusSeeOther || p.loc != "/account/grants/corp/revoke" {
		t.Fatalf("the recent sign-in's callback = %v, want 303 back to the confirmation page", p)
	}
	confirm := b.follow(pe.url, p)
	expectPage(t, "the revoke confirmation", confirm, http.StatusOK, `action="/account/grants/corp/revoke"`)
	expectPage(t, "the revoke confirmation", confirm, http.StatusOK, "Revoke tagwatch&#39;s access to corp?")
	if vaultSum(t, pe.db) != before {
		t.Errorf("the confirmation page changed the vault")
	}
	if p := b.get(pe.url + Prefix + "/delete"); p.status != http.StatusOK || !strings.Contains(p.body, "Delete all my data") {
		t.Errorf("the delete confirmation after a recent sign-in = %v", p)
	}
}

// TestExpiredSessionPost: an action whose session expired is not done:
// the renewal comes back to the page, which says nothing changed.
func TestExpiredSessionPost(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.signInFake(b)
	pe.clock.Advance(DefaultIdleTimeout + time.Second)
	before := vaultSum(t, pe.db)
	p := b.post(pe.url+Prefix+"/watches/"+pe.adaWatch+"/pause", url.Values{})
	if p.status != http.StatusSeeOther || mustURL(p.loc).Query().Get("prompt") != "none" {
		t.Fatalf("POST with an expired session = %v, want a silent renewal", p)
	}
	p = b.follow(pe.url, b.follow(pe.url, p))
	home := b.follow(pe.url, p)
	expectPage(t, "the page after the renewal", home, http.StatusOK, "nothing was changed")
	if vaultSum(t, pe.db) != before || pe.watch(t, pe.adaWatch).State != vault.WatchActive {
		t.Errorf("the expired session's action ran")
	}
}

// TestMethods: a route asked with a method it does not take gets the
// method page (405) and changes nothing; a form too large is refused.
func TestMethods(t *testing.T) {
	pe := newPagesEnv(t)
	b := newBrowser(t)
	pe.signInFake(b)
	before := vaultSum(t, pe.db)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/watches"}, {"GET", "/watches/%s/pause"}, {"GET", "/watches/%s/resume"}, {"GET", "/grants/x/reconsent"},
		{"PUT", "/watches/%s"}, {"DELETE", "/watches/%s"}, {"DELETE", "/delete"}, {"POST", "/deleted"}, {"PATCH", "/watches/new"},
	} {
		path := strings.Replace(rt.path, "%s", pe.adaWatch, 1)
		var form url.Values
		if rt.method != "GET" {
			form = url.Values{}
		}
		expectPage(t, rt.method+" "+path, b.do(rt.method, pe.url+Prefix+path, form), http.StatusMethodNotAllowed, "cannot be used that way")
	}
	big := url.Values{"hashtags": {strings.Repeat("a", 20<<10)}, "schedule": {"@hourly"}}
	expectPage(t, "a form too large", b.post(pe.url+Prefix+"/watches/"+pe.adaWatch, big), http.StatusBadRequest, "could not be read")
	if vaultSum(t, pe.db) != before {
		t.Errorf("refused requests changed the vault")
	}
}

// TestPagesWithoutDaemon: a page wired without the daemon's parts (no
// Access, Links, Scheduler, Status) still shows the watches, and offers
// neither revoking nor deleting nor a re-consent.
func TestPagesWithoutDaemon(t *testing.T) {
	pe := newPagesEnv(t, func(_ *pagesEnv, pg *Pages) { *pg = Pages{} })
	b := newBrowser(t)
	home := pe.signInFake(b)
	body := html.UnescapeString(home.body)
	for _, not := range []string{"/revoke", "/reconsent", "/account/delete", "Next run"} {
		if strings.Contains(body, not) {
			t.Errorf("the page without the daemon offers %q", not)
		}
	}
	for _, want := range []string{"#golang", "on the schedule “@every 15m”", "email", "a webhook", "Use the link tagwatch sent you"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page without the daemon lacks %q", want)
		}
	}
	for _, path := range []string{"/grants/corp/revoke", "/delete"} {
		if p := b.get(pe.url + Prefix + path); p.status != http.StatusNotFound {
			t.Errorf("GET %s without Access = %v, want 404", path, p)
		}
	}
	if p := b.post(pe.url+Prefix+"/grants/x/reconsent", nil); p.status != http.StatusNotFound {
		t.Errorf("re-consent without Links = %v, want 404", p)
	}
}

// TestInvalidWatchShown: a watch the rules refuse as it is now (the
// configuration changed since) says so, with the rule's message.
func TestInvalidWatchShown(t *testing.T) {
	pe := newPagesEnv(t, func(pe *pagesEnv, pg *Pages) {
		pg.Status = func(id string) (RunStatus, error) {
			if id == pe.adaWatch {
				return RunStatus{Invalid: rulesMessage}, nil
			}
			return RunStatus{}, nil
		}
	})
	b := newBrowser(t)
	want := "tagwatch's rules no longer accept this watch as it is, so it does not run: " + rulesMessage
	if p := pe.signInFake(b); !strings.Contains(html.UnescapeString(p.body), want) || strings.Count(p.body, `class="alert"`) != 1 {
		t.Errorf("the page does not say the watch is refused, once:\n%s", p.body)
	}
	if p := b.get(pe.url + Prefix + "/watches/" + pe.adaWatch); !strings.Contains(html.UnescapeString(p.body), want) {
		t.Errorf("the watch's page does not say it is refused")
	}
}

// TestGiveAccessAgain: after ada revoked tagwatch's access at X and the
// revocation settled (the grant deleted), her waiting X watch keeps a
// card on the page that offers to give access again; pressing it makes a
// re-consent link bound to the account she had there (the sign-in her
// revocation left), and a consent through it makes a new grant and
// resumes the watch. Bob, with no watch at X, is offered nothing there.
func TestGiveAccessAgain(t *testing.T) {
	pe := newPagesEnv(t)
	out, err := pe.db.UnenrollGrant(pe.adaX.ID, vault.Unenroll{Actor: "test", Revoke: true})
	if err != nil || out.RevocationID == "" {
		t.Fatalf("UnenrollGrant = %+v, %v", out, err)
	}
	if err := pe.db.SettleRevocation(out.RevocationID, "test"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	pe.signInFake(b)
	home := b.get(pe.url + Prefix + "/")
	for _, want := range []string{"No access", "Give access again", `action="/account/grants/x/reconsent"`,
		"tagwatch no longer has access to your X account, so your watches there wait"} {
		expectPage(t, "the page after the revocation", home, http.StatusOK, want)
	}

	p := b.post(pe.url+Prefix+"/grants/x/reconsent", nil)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), pe.url+"/enroll/") {
		t.Fatalf("give access again = %v, want 303 to a consent link", p)
	}
	links, err := pe.db.ListLinks(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var link vault.Enrollment
	for _, l := range links {
		if l.Purpose == vault.PurposeReconsent && l.CreatedBy == actor {
			link = l.Enrollment
		}
	}
	if link.ID == "" || link.UserID != "ada" || link.Provider != "x" || link.GrantID != "" || link.Expected != "1001" {
		t.Fatalf("the page's link = %+v, want a re-consent link for ada at x, naming no grant, bound to 1001", link)
	}
	token := strings.TrimPrefix(p.header.Get("Location"), pe.url+"/enroll/")
	res, err := pe.db.CommitConsent(vault.Consent{LinkHash: vault.HashLinkToken(token), LinkID: link.ID, UserID: "ada", Provider: "x", Subject: "1001",
		Tokens: vault.Tokens{Refresh: secret.NewRefreshToken("rt-again"), Access: secret.NewAccessToken("at-again")}, AccessExpiry: time.Now().Add(time.Hour)})
	if err != nil || len(res.Resumed) != 1 || res.Resumed[0].ID != pe.adaXWatch {
		t.Fatalf("CommitConsent(give access again) = %+v, %v; want ada's X watch resumed", res, err)
	}
	expectPage(t, "the page with access again", b.get(pe.url+Prefix+"/"), http.StatusOK, "Active")

	// Bob has nothing at X: no card, and the button's route finds nothing.
	bb := newBrowser(t)
	pe.op.set(func(op *fakeOP) { op.subject = "bob-sub" })
	pe.signInFake(bb)
	if p := bb.get(pe.url + Prefix + "/"); strings.Contains(p.body, "Give access again") {
		t.Errorf("bob's page offers to give access again: %s", p.body)
	}
	if p := bb.post(pe.url+Prefix+"/grants/x/reconsent", nil); p.status != http.StatusNotFound {
		t.Errorf("bob's give access again at X = %v, want 404", p)
	}
}
