package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/secret"
)

// stubRules is a hand-written WatchRules: a watch needs a hashtag, a
// schedule and a target; '#' is dropped; refuse, when set, refuses a
// target (a channel the configuration no longer has).
type stubRules struct{ refuse string }

func (r stubRules) CheckWatch(provider string, s *WatchSpec) error {
	for i, h := range s.Hashtags {
		s.Hashtags[i] = strings.TrimPrefix(strings.TrimSpace(h), "#")
	}
	switch {
	case len(s.Hashtags) == 0:
		return errors.New("a watch needs at least one hashtag")
	case s.Schedule == "":
		return errors.New("a watch needs a schedule")
	case len(s.Targets) == 0:
		return errors.New("a watch needs at least one notification target")
	case r.refuse != "" && slices.Contains(s.Targets, r.refuse):
		return fmt.Errorf("target %s: no channel delivers it", r.refuse)
	}
	return nil
}

var zedWatch = WatchSpec{Hashtags: []string{"golang", "bbolt"}, Schedule: "@every 15m", Targets: []string{"console:", "mailto:zed@example.com"}}

// clock is a settable clock for a DB.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openConsentDB(t *testing.T) (*DB, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	db, err := Open(Options{Path: filepath.Join(t.TempDir(), "v.db"), Master: newMaster(t), Create: true, Now: c.Now, Rules: stubRules{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	checkAtCleanup(t, db)
	return db, c
}

// link creates an enrollment link for user with spec and returns its hash.
func link(t *testing.T, db *DB, user string, spec WatchSpec) Enrollment {
	t.Helper()
	spec = cloneSpec(spec)
	_, e, err := db.CreateLink(LinkRequest{UserID: user, Provider: "x", Watch: &spec, CreatedBy: "test"})
	if err != nil {
		t.Fatalf("CreateLink(%s) = %v", user, err)
	}
	return e
}

func consent(e Enrollment, subject, refresh string) Consent {
	return Consent{LinkHash: e.Hash, LinkID: e.ID, UserID: e.UserID, Provider: e.Provider, Subject: subject,
		Scopes: []string{"tweet.read"}, AccessExpiry: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC),
		Tokens: Tokens{Refresh: secret.NewRefreshToken(refresh), Access: secret.NewAccessToken("at-" + refresh)}}
}

func outboxRows(t *testing.T, db *DB, kind string) []OutboxRow {
	t.Helper()
	var rows []OutboxRow
	err := db.View(func(tx *Tx) error {
		return tx.Outbox(func(r OutboxRow) error {
			if r.Kind == kind {
				rows = append(rows, r)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestCreateLinkChecks(t *testing.T) {
	db, _ := openConsentDB(t)
	g := putGrant(t, db, "zed", "rt", "at")
	w := zedWatch
	tests := []struct {
		name string
		req  LinkRequest
		want error
	}{
		{"no user", LinkRequest{Provider: "x", Watch: &w}, ErrInvalid},
		{"no provider", LinkRequest{UserID: "zed", Watch: &w}, ErrInvalid},
		{"control characters", LinkRequest{UserID: "zed", UserName: "a\nb", Provider: "x", Watch: &w}, ErrInvalid},
		{"bad email", LinkRequest{UserID: "zed", UserEmail: "Zed <zed@example.com>", Provider: "x", Watch: &w}, ErrInvalid},
		{"no watch", LinkRequest{UserID: "zed", Provider: "x"}, ErrInvalid},
		{"watch the rules refuse", LinkRequest{UserID: "zed", Provider: "x", Watch: &WatchSpec{Hashtags: []string{"go"}, Targets: []string{"console:"}}}, ErrInvalid},
		{"ttl too short", LinkRequest{UserID: "zed", Provider: "x", Watch: &w, TTL: time.Second}, ErrInvalid},
		{"ttl too long", LinkRequest{UserID: "zed", Provider: "x", Watch: &w, TTL: 2 * MaxLinkTTL}, ErrInvalid},
		{"unknown purpose", LinkRequest{UserID: "zed", Provider: "x", Watch: &w, Purpose: "steal"}, ErrInvalid},
		{"reconsent with a watch", LinkRequest{UserID: "zed", Provider: "x", Purpose: PurposeReconsent, GrantID: g.ID, Watch: &w}, ErrInvalid},
		{"reconsent of another user's grant", LinkRequest{UserID: "amy", Provider: "x", Purpose: PurposeReconsent, GrantID: g.ID}, ErrInvalid},
		{"reconsent of a missing grant", LinkRequest{UserID: "zed", Provider: "x", Purpose: PurposeReconsent, GrantID: "nosuch"}, ErrNotFound},
		{"enroll", LinkRequest{UserID: "zed", Provider: "x", Watch: &w}, nil},
		{"reconsent", LinkRequest{UserID: "zed", Provider: "x", Purpose: PurposeReconsent, GrantID: g.ID}, nil},
		// No grant named: it renews (or, after a revocation, makes) the
		// user's grant at the provider when used: the page's "Give access
		// again".
		{"reconsent without grant", LinkRequest{UserID: "zed", Provider: "x", Purpose: PurposeReconsent}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, e, err := db.CreateLink(tt.req)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("CreateLink(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if err != nil {
				return
			}
			if e.Hash != HashLinkToken(token) || e.State(db.Now()) != LinkPending || e.ExpiresAt != db.Now().Add(DefaultLinkTTL) {
				t.Errorf("CreateLink(%s) = %+v, want a pending link stored by the hash of its token, for %s", tt.name, e, DefaultLinkTTL)
			}
		})
	}
	if _, _, err := db.CreateLink(LinkRequest{UserID: "zed", Provider: "x", Purpose: PurposeReconsent, GrantID: "nosuch"}); err == nil ||
		err.Error() != `grant "nosuch" does not exist` {
		t.Errorf("CreateLink(missing grant) = %v, want the grant named", err)
	}
}

func TestListAndCancelLinks(t *testing.T) {
	db, c := openConsentDB(t)
	a := link(t, db, "amy", zedWatch)
	c.Advance(time.Minute)
	link(t, db, "bob", zedWatch)
	c.Advance(time.Minute)
	used := link(t, db, "zed", zedWatch)
	if _, err := db.CommitConsent(consent(used, "s1", "rt1")); err != nil {
		t.Fatal(err)
	}
	if err := db.CancelLink(a.ID, "op"); err != nil {
		t.Fatal(err)
	}
	if err := db.CancelLink(a.ID, "op"); err != nil {
		t.Errorf("CancelLink(canceled) = %v, want nil", err)
	}
	var te *TransitionError
	if err := db.CancelLink(used.ID, "op"); !errors.As(err, &te) || !errors.Is(err, ErrConflict) {
		t.Errorf("CancelLink(used) = %v, want a *TransitionError", err)
	}
	if err := db.CancelLink("nosuch", "op"); !errors.Is(err, ErrNotFound) || err.Error() != `consent link "nosuch" does not exist` {
		t.Errorf("CancelLink(nosuch) = %v, want the link named", err)
	}
	links, err := db.ListLinks(c.Now().Add(DefaultLinkTTL))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range links {
		if l.Hash != "" {
			t.Errorf("ListLinks shows the hash of link %s", l.ID)
		}
		got = append(got, fmt.Sprintf("%s:%s", l.UserID, l.State))
	}
	// Newest first; bob's link expired at that time; used and canceled
	// stay what they are.
	if want := []string{"zed:used", "bob:expired", "amy:canceled"}; !slices.Equal(got, want) {
		t.Errorf("ListLinks = %v, want %v", got, want)
	}
}

func TestCommitConsent(t *testing.T) {
	db, _ := openConsentDB(t)
	e := link(t, db, "zed", zedWatch)
	res, err := db.CommitConsent(consent(e, "s1", "rt1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Grant.State != GrantActive || res.Replaced != "" || len(res.Started) != 1 || len(res.Kept)+len(res.Resumed) != 0 {
		t.Fatalf("CommitConsent = %+v, want a new active grant and one watch started", res)
	}
	g, tok, err := db.GrantTokens(res.Grant.ID)
	if err != nil || g.Subject != "s1" || tok.Refresh.Reveal() != "rt1" || len(g.SealedRefresh) == 0 {
		t.Errorf("GrantTokens = %+v, %v: want subject s1 with the refresh token sealed", g, err)
	}
	l, err := db.LinkByID(e.ID)
	if err != nil || l.State(db.Now()) != LinkUsed || l.GrantID != g.ID {
		t.Errorf("link after commit = %+v, %v; want used for grant %s", l, err, g.ID)
	}
	rows := outboxRows(t, db, NoticeEnrolled)
	if len(rows) != len(zedWatch.Targets) {
		t.Fatalf("%d enrolled notices, want one per target", len(rows))
	}
	var n Notice
	if err := json.Unmarshal(rows[0].Payload, &n); err != nil {
		t.Fatal(err)
	}
	if n.Message != "" || n.Schedule != zedWatch.Schedule || n.Resumed || !slices.Equal(n.Hashtags, zedWatch.Hashtags) {
		t.Errorf("notice = %+v, want the facts (hashtags, schedule) and no words", n)
	}
}

// TestCommitConsentOnce: many callers commit the same link at once (two
// browsers, a replayed callback); exactly one succeeds, the others get a
// *TransitionError, and what is stored is one grant, one watch and one
// notice per target.
func TestCommitConsentOnce(t *testing.T) {
	db, _ := openConsentDB(t)
	e := link(t, db, "zed", zedWatch)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = db.CommitConsent(consent(e, "s1", fmt.Sprintf("rt%d", i)))
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var te *TransitionError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &te) || te.State != string(LinkUsed):
			t.Errorf("CommitConsent = %v, want a *TransitionError for a used link", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d commits of one link succeeded, want 1", ok)
	}
	watches, err := db.ListWatches("zed")
	if err != nil || len(watches) != 1 {
		t.Errorf("ListWatches(zed) = %d watches, %v; want 1", len(watches), err)
	}
	if rows := outboxRows(t, db, NoticeEnrolled); len(rows) != len(zedWatch.Targets) {
		t.Errorf("%d enrolled notices, want %d", len(rows), len(zedWatch.Targets))
	}
	grants := 0
	db.View(func(tx *Tx) error { return tx.Grants(func(Grant) error { grants++; return nil }) })
	if grants != 1 {
		t.Errorf("%d grants stored, want 1", grants)
	}
}

// TestCommitConsentRefusals: each refusal stores nothing.
func TestCommitConsentRefusals(t *testing.T) {
	db, c := openConsentDB(t)
	tests := []struct {
		name  string
		setup func(e *Enrollment) Consent
		want  error
	}{
		{"expired", func(e *Enrollment) Consent { c.Advance(DefaultLinkTTL); return consent(*e, "s1", "rt") }, ErrConflict},
		{"canceled", func(e *Enrollment) Consent {
			if err := db.CancelLink(e.ID, "op"); err != nil {
				t.Fatal(err)
			}
			return consent(*e, "s1", "rt")
		}, ErrConflict},
		{"another user's flow", func(e *Enrollment) Consent { k := consent(*e, "s1", "rt"); k.UserID = "amy"; return k }, ErrConflict},
		{"unknown link", func(e *Enrollment) Consent {
			k := consent(*e, "s1", "rt")
			k.LinkHash = strings.Repeat("0", 64)
			return k
		}, ErrNotFound},
		{"no refresh token", func(e *Enrollment) Consent {
			k := consent(*e, "s1", "rt")
			k.Tokens.Refresh = secret.RefreshToken{}
			return k
		}, ErrInvalid},
		{"the watch is no longer valid", func(e *Enrollment) Consent {
			db.SetRules(stubRules{refuse: "console:"})
			return consent(*e, "s1", "rt")
		}, ErrInvalid},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db.SetRules(stubRules{})
			user := fmt.Sprintf("u%d", i)
			e := link(t, db, user, zedWatch)
			_, err := db.CommitConsent(tt.setup(&e))
			if !errors.Is(err, tt.want) {
				t.Fatalf("CommitConsent = %v, want %v", err, tt.want)
			}
			if _, err := db.UserGrant(user, "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("UserGrant = %v, want none stored", err)
			}
			if w, _ := db.ListWatches(user); len(w) != 0 {
				t.Errorf("%d watches stored, want none", len(w))
			}
			if l, _ := db.LinkByID(e.ID); !l.UsedAt.IsZero() {
				t.Error("link used")
			}
		})
	}
}

// TestSameWatchLeavesOne is C12's neighbour: a second link with the watch
// the user already has (written in another order and case) keeps the one
// watch, and renews the grant; a different watch is added.
func TestSameWatchLeavesOne(t *testing.T) {
	db, _ := openConsentDB(t)
	first, err := db.CommitConsent(consent(link(t, db, "zed", zedWatch), "s1", "rt1"))
	if err != nil {
		t.Fatal(err)
	}
	same := cloneSpec(zedWatch)
	same.Hashtags = []string{"#BBolt", "GOLANG"}
	slices.Reverse(same.Targets)
	second, err := db.CommitConsent(consent(link(t, db, "zed", same), "s1", "rt2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Started) != 0 || len(second.Kept) != 1 || second.Kept[0].ID != first.Started[0].ID {
		t.Errorf("second consent = started %d kept %+v, want the first watch kept", len(second.Started), second.Kept)
	}
	if second.Grant.ID != first.Grant.ID || second.Replaced != GrantActive {
		t.Errorf("second consent stored grant %s (replaced %q), want %s renewed", second.Grant.ID, second.Replaced, first.Grant.ID)
	}
	other := cloneSpec(zedWatch)
	other.Schedule = "@hourly"
	if _, err := db.CommitConsent(consent(link(t, db, "zed", other), "s1", "rt3")); err != nil {
		t.Fatal(err)
	}
	if w, _ := db.ListWatches("zed"); len(w) != 2 {
		t.Errorf("zed has %d watches, want 2 (the same one once, the other schedule once)", len(w))
	}
}

// TestPauseByLinkThenResume: a watch suspended because its grant died,
// paused by its user's one-click link and resumed by an operator goes
// back to suspended (needs_reconsent), not active with a stale reason
// (the fault of the old one-click pause). The re-consent then lets it
// run; a watch still paused stays paused and forgets the cause.
func TestPauseByLinkThenResume(t *testing.T) {
	db, _ := openConsentDB(t)
	res, err := db.CommitConsent(consent(link(t, db, "zed", zedWatch), "s1", "rt1"))
	if err != nil {
		t.Fatal(err)
	}
	w1 := res.Started[0]
	w2, err := db.AddWatch(NewWatch{UserID: "zed", Provider: "x", Spec: WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly", Targets: []string{"console:"}}}, "op")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := db.MarkNeedsReconsent(res.Grant.ID, Reconsent{Reason: "dead_grant", LinkPrefix: "https://tw.example/enroll/", Actor: "renewal"})
	if err != nil {
		t.Fatal(err)
	}
	state := func(id string) string {
		w, err := db.Watch(id)
		if err != nil {
			t.Fatal(err)
		}
		return w.StateText()
	}
	for _, id := range []string{w1.ID, w2.ID} {
		if _, _, err := db.PauseWatch(id, "user link"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := db.ResumeWatch(w1.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	if got, want := state(w1.ID), "suspended (needs_reconsent)"; got != want {
		t.Errorf("pause by link, resume by operator: watch is %q, want %q", got, want)
	}
	if got, want := state(w2.ID), "paused; also suspended (needs_reconsent)"; got != want {
		t.Errorf("paused watch of a dead grant is %q, want %q", got, want)
	}
	again, err := db.CommitConsent(consent(dead.Link, "s1", "rt2"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Grant.ID != res.Grant.ID || again.Replaced != GrantNeedsReconsent || len(again.Resumed) != 1 || again.Resumed[0].ID != w1.ID {
		t.Errorf("re-consent = grant %s replaced %q resumed %+v, want %s renewed and %s resumed", again.Grant.ID, again.Replaced, again.Resumed, res.Grant.ID, w1.ID)
	}
	if got := state(w1.ID); got != "active" {
		t.Errorf("after re-consent the suspended watch is %q, want active", got)
	}
	if got := state(w2.ID); got != "paused" {
		t.Errorf("after re-consent the paused watch is %q, want paused", got)
	}
	if _, _, err := db.ResumeWatch(w2.ID, "operator"); err != nil || state(w2.ID) != "active" {
		t.Errorf("ResumeWatch after re-consent = %v, state %q; want active", err, state(w2.ID))
	}
}
