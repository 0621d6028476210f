package selfservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
)

// This file is what the page shows: what it needs from the vault and the
// daemon (declared here, wired by cmd/tagwatchd), and the views of
// watches and grants built from them, in words. Nothing here changes a
// record.

// PageStore is what the page's views and actions need from the vault,
// every call scoped to the signed-in user: owner-scoped watch methods
// (a watch of another user is *vault.NotFoundError, as a missing one) and
// reads by user. *vault.DB implements it.
type PageStore interface {
	User(id string) (vault.User, error)
	ListWatches(userID string) ([]vault.WatchWithCursor, error)
	UserWatch(owner, id string) (vault.WatchWithCursor, error)
	RecentMatches(owner, watchID string, n int) ([]vault.Match, error)
	UserGrant(userID, provider string) (vault.Grant, error)
	UserGrants(userID string) ([]vault.Grant, error)
	AddWatch(req vault.NewWatch, actor string, owner ...vault.Owner) (vault.Watch, error)
	ChangeWatch(id string, c vault.WatchChange, actor string, owner ...vault.Owner) (vault.Watch, error)
	PauseWatch(id, actor string, owner ...vault.Owner) (vault.Watch, bool, error)
	ResumeWatch(id, actor string, owner ...vault.Owner) (vault.Watch, bool, error)
	DeleteWatch(id, actor string, owner ...vault.Owner) (vault.Watch, error)
}

var _ PageStore = (*vault.DB)(nil)

// Scheduler learns of the watches the page changed: Upsert schedules a
// watch as it is now (or unschedules one that does not run), Remove
// unschedules a deleted one. *worker.Worker implements it.
type Scheduler interface {
	Upsert(w vault.Watch) error
	Remove(watchID string)
}

// Links makes one-time consent links: the page makes a re-consent link
// for a grant that needs one and sends the browser to its landing page.
// *enroll.Service implements it (the link is <PublicURL>/enroll/<token>).
type Links interface {
	CreateLink(ctx context.Context, req vault.LinkRequest) (string, vault.Enrollment, error)
}

// Access is what the page asks of the daemon for the two changes that
// reach past the vault. cmd/tagwatchd implements it.
type Access interface {
	// Revoke ends tagwatch's access for the user at the provider as an
	// unenroll does (renew.Manager.Unenroll: the refresh token revoked at
	// the provider or queued for it, the grant revoked and its tokens
	// deleted here, the user's watches there suspended, a NoticeRevoked
	// queued to the user: the confirmation). Idempotent; nil when the
	// user has no grant there.
	Revoke(ctx context.Context, userID, provider string) error
	// DeleteUser deletes everything kept for the user
	// (vault.DB.DeleteUser with every provider's revocation rule: its
	// NoticeAccountDeleted, the confirmation, is queued in the same
	// transaction), then tries the revocations it queued, unschedules
	// the watches and wakes the notifier. Errors: *vault.NotFoundError
	// for a user already gone.
	DeleteUser(ctx context.Context, userID, actor string) (vault.DeleteUserOutcome, error)
}

// RunStatus is what the scheduler says of one watch (cmd/tagwatchd
// adapts worker.Worker.Status).
type RunStatus struct {
	// Next is when the watch next asks its provider (after any rate
	// limit or usage cap that holds it); zero when it is not scheduled.
	Next time.Time
	// Running: a run is in progress.
	Running bool
	// Invalid is the rules' message when they refuse the watch as it is
	// now (it is not run until changed); "" when they accept it.
	Invalid string
}

// Pages is what the page needs beyond signing people in. Zero fields take
// the defaults documented.
type Pages struct {
	// Scheduler learns of the watches the page changes; nil: none (the
	// daemon's next reload finds them).
	Scheduler Scheduler
	// Links makes re-consent links; nil: a grant that needs one says to
	// use the link tagwatch sent.
	Links Links
	// Access revokes and deletes; nil: the page does not offer either.
	Access Access
	// Status says when a watch runs next (worker.Worker.Status adapted);
	// nil: the page does not say.
	Status func(watchID string) (RunStatus, error)
	// Cadence says a schedule in words (notify.Cadence); nil: the
	// schedule as written.
	Cadence func(schedule string) string
	// TargetLabel shows a target without what it may hide in its path
	// or user part (notify.TargetLabel); nil: the kind of target only.
	// A target itself is never shown: it may carry a credential.
	TargetLabel func(target string) string
	// ProviderKind says what kind of provider a grant's provider name is
	// (provider.KindX, provider.KindOIDC; "" for one not configured), so
	// that the page names X as "X"; nil: only the sign-in providers' kinds
	// are known.
	ProviderKind func(name string) string
	// Matches is how many recent matches each watch shows on the page
	// (its own page shows MatchesPerWatch); default DefaultMatches.
	Matches int
}

// Defaults of Pages.
const (
	DefaultMatches  = 3
	MatchesPerWatch = 10
)

// actor names the page in the audit trail.
const actor = "user page"

// pages returns s's Pages with the defaults filled in.
func (s *Service) pages() Pages {
	pg := s.cfg.Pages
	if pg.Cadence == nil {
		pg.Cadence = func(spec string) string { return "on the schedule “" + spec + "”" }
	}
	if pg.TargetLabel == nil {
		pg.TargetLabel = targetKind
	}
	label := pg.TargetLabel
	pg.TargetLabel = func(t string) string {
		// The console is the operator's terminal, as the consent pages
		// call it: its URL says nothing to a user.
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), "console:") {
			return "The tagwatch operator's console"
		}
		return label(t)
	}
	if pg.Matches <= 0 {
		pg.Matches = DefaultMatches
	}
	return pg
}

// targetKind is the default TargetLabel: the kind of a target, nothing
// of its address.
func targetKind(t string) string {
	u, err := url.Parse(t)
	switch {
	case err != nil:
		return "a notification target"
	case u.Scheme == "mailto":
		return "email"
	case u.Scheme == "http" || u.Scheme == "https":
		return "a webhook"
	case u.Scheme == "console":
		return "the operator's console"
	}
	return u.Scheme + " notifications"
}

// targetKey names a target in a form without showing it: the first 16
// bytes of its SHA-256, hex. The server maps it back to one of the user's
// own targets; a key it does not know is refused.
func targetKey(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:16])
}

// watchView is a watch as the page shows it.
type watchView struct {
	// Path is the watch's page; its actions are below it.
	Path                        string
	ID, Provider, ProviderLabel string
	Hashtags                    []string
	Cadence                     string
	// Schedule is the schedule as written, for the change form.
	Schedule string
	Targets  []string // labels
	// State is "active", "paused" or "suspended" (a CSS class too);
	// StateText its word, Why what it waits for, in the user's words.
	State, StateText, Why string
	// CanPause, CanResume: the buttons shown.
	CanPause, CanResume bool
	// LastRun and NextRun say when (NextRun "" when the page does not
	// know); LastRunSub and NextRunSub add the time and how it went.
	LastRun, LastRunSub string
	NextRun, NextRunSub string
	// Invalid is the rules' refusal of the watch as it is now.
	Invalid string
	Created string
	Matches []matchView
	// Own: the view is on the watch's own page (its forms come back to it).
	Own bool
	// MatchesErr: the matches could not be read.
	MatchesErr bool
	Runs       int64
}

type matchView struct {
	URL, Author, Excerpt string
	// When says how long ago it was posted; At is when, in UTC, and
	// Stamp the same for a machine.
	When, At, Stamp string
}

// grantView is a grant as the page shows it: never a token.
type grantView struct {
	// Path is the grant's, below which its actions are.
	Path                             string
	Provider, ProviderLabel, Account string
	// State is "active", "needs_reconsent" or "revoked" (a CSS class
	// too); StateText its words, Why what follows from it.
	State, StateText, Why string
	Since, LastRenewal    string
	Watches               int
	// CanReconsent, CanRevoke, CanAdd: the actions offered;
	// ReconsentLabel the re-consent button's words ("Renew access", or
	// "Give access again" after a revocation).
	CanReconsent, CanRevoke, CanAdd bool
	ReconsentLabel                  string
}

// targetChoice is one of the user's targets, offered in a form by label.
type targetChoice struct {
	Key, Label string
	Checked    bool
}

// providerLabel names a provider for people: "X" for an X provider, else
// its name as the operator configured it.
func (s *Service) providerLabel(name string) string {
	if p := s.provider(name); p != nil && p.Kind() == provider.KindX {
		return "X"
	}
	if k := s.pages().ProviderKind; k != nil && k(name) == provider.KindX {
		return "X"
	}
	return name
}

// when says t for people: how far from now ("7 minutes ago", "in 8
// minutes", "in 40 seconds"; "now" within 5 seconds), and when, in UTC (the page does not know the
// person's zone).
func when(t, now time.Time) (rel, abs string) {
	abs = t.UTC().Format("2 Jan 2006, 15:04 UTC")
	d := t.Sub(now)
	switch {
	case d > -5*time.Second && d < 5*time.Second:
		return "now", abs
	case d > -time.Minute && d < 0:
		return fmt.Sprintf("%d seconds ago", int64(-d/time.Second)), abs
	case d >= 0 && d < time.Minute:
		return fmt.Sprintf("in %d seconds", int64(d/time.Second)), abs
	case d < 0:
		return span(-d) + " ago", abs
	}
	return "in " + span(d), abs
}

func formatDate(t time.Time) string { return t.UTC().Format("2 Jan 2006") }

// span says d roughly, in its largest unit.
func span(d time.Duration) string {
	n := func(v int64, unit string) string {
		if v == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", v, unit)
	}
	switch {
	case d < time.Hour-30*time.Second:
		return n(int64(d.Round(time.Minute)/time.Minute), "minute")
	case d < 48*time.Hour:
		return n(int64(d/time.Hour), "hour")
	}
	return n(int64(d/(24*time.Hour)), "day")
}

// watchWhy says, in the user's words, why a watch is not running and
// what makes it run again.
func (s *Service) watchWhy(w vault.Watch) string {
	p := s.providerLabel(w.Provider)
	switch {
	case w.State == vault.WatchPaused:
		switch w.SuspendReason {
		case vault.SuspendNeedsReconsent:
			return "You paused it. tagwatch's access to your " + p + " account also needs renewing: once resumed, the watch waits for that."
		case vault.SuspendRevoked:
			return "You paused it. tagwatch also no longer has access to your " + p + " account: once resumed, the watch waits until you give access again."
		case vault.SuspendUsageCapped:
			return "You paused it. " + p + "'s usage cap for tagwatch is also reached: once resumed, the watch waits until the cap lifts."
		}
		return "You paused it: tagwatch does not search until you resume it."
	case w.State != vault.WatchSuspended:
		return ""
	}
	switch w.SuspendReason {
	case vault.SuspendNeedsReconsent:
		return "tagwatch's access to your " + p + " account needs renewing. Renew it below and the watch resumes by itself."
	case vault.SuspendRevoked:
		return "tagwatch no longer has access to your " + p + " account. The watch resumes when you give access again, below."
	case vault.SuspendUsageCapped:
		return p + "'s usage cap for tagwatch is reached. The watch resumes by itself when the cap lifts."
	}
	return "It waits for its cause to clear."
}

// resultText says how a run ended.
func resultText(c vault.Cursor) string {
	switch c.LastResult {
	case vault.RunOK, "":
		if c.LastTruncated {
			return "completed; more posts than one run reads"
		}
		return "completed"
	case vault.RunBaseline:
		return "started: new posts from here on"
	case vault.RunFailed:
		return "did not complete; tagwatch tries again at the next run"
	case "gap":
		return "completed; some older posts were out of reach"
	}
	return c.LastResult
}

// watchView builds the view of w, with up to n recent matches (none when
// n is 0).
func (s *Service) watchView(ps PageStore, owner string, w vault.WatchWithCursor, n int, now time.Time) watchView {
	pg := s.pages()
	v := watchView{Path: s.prefix + "/watches/" + url.PathEscape(w.ID), ID: w.ID, Provider: w.Provider, ProviderLabel: s.providerLabel(w.Provider), Hashtags: w.Hashtags,
		Cadence: pg.Cadence(w.Schedule), Schedule: w.Schedule, State: string(w.State), Why: s.watchWhy(w.Watch),
		Created: formatDate(w.CreatedAt), Runs: w.Cursor.Runs}
	for _, t := range w.Targets {
		v.Targets = append(v.Targets, pg.TargetLabel(t))
	}
	switch w.State {
	case vault.WatchActive:
		v.StateText, v.CanPause = "Active", true
	case vault.WatchPaused:
		v.StateText, v.CanResume = "Paused", true
	case vault.WatchSuspended:
		v.StateText, v.CanPause = "Waiting", true
	default:
		v.StateText = string(w.State)
	}
	if w.Cursor.LastRunAt.IsZero() {
		v.LastRun = "Not yet"
	} else {
		var at string
		v.LastRun, at = when(w.Cursor.LastRunAt, now)
		v.LastRunSub = at + " · " + resultText(w.Cursor)
	}
	if pg.Status != nil {
		st, err := pg.Status(w.ID)
		switch {
		case err != nil:
			v.NextRun = "Not known right now"
		case st.Running:
			v.NextRun = "Running now"
		case w.State == vault.WatchPaused:
			v.NextRun = "None while it is paused"
		case !w.Runs():
			v.NextRun = "None while it waits"
		case st.Next.IsZero():
			v.NextRun = "Not scheduled"
		default:
			v.NextRun, v.NextRunSub = when(st.Next, now)
		}
		if err == nil {
			v.Invalid = st.Invalid
		}
	}
	if n > 0 {
		ms, err := ps.RecentMatches(owner, w.ID, n)
		if err != nil {
			v.MatchesErr = true
			s.log.Warn("read recent matches", "user", owner, "watch", w.ID, "err", err)
		}
		for _, m := range ms {
			v.Matches = append(v.Matches, matchOf(m, now))
		}
	}
	return v
}

// matchOf is a match as the page lists it; its link only when it is an
// http(s) address.
func matchOf(m vault.Match, now time.Time) matchView {
	mv := matchView{Excerpt: m.Excerpt}
	if u, err := url.Parse(m.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		mv.URL = u.String()
	}
	if m.AuthorUsername != "" {
		mv.Author = "@" + m.AuthorUsername
	}
	at := m.PostedAt
	if at.IsZero() {
		at = m.QueuedAt
	}
	if !at.IsZero() {
		mv.When, mv.At = when(at, now)
		mv.Stamp = at.UTC().Format(time.RFC3339)
	}
	if mv.Excerpt == "" {
		mv.Excerpt = "(a post without text)"
	}
	return mv
}

// grantView builds the view of g; watches counts the user's watches at
// its provider.
func (s *Service) grantView(g vault.Grant, watches int) grantView {
	pg := s.pages()
	v := grantView{Path: s.prefix + "/grants/" + url.PathEscape(g.Provider), Provider: g.Provider, ProviderLabel: s.providerLabel(g.Provider), State: string(g.State),
		Since: formatDate(g.CreatedAt), Watches: watches, ReconsentLabel: "Renew access"}
	switch {
	case g.Username != "" && s.providerLabel(g.Provider) == "X":
		v.Account = "@" + strings.TrimPrefix(g.Username, "@")
	case g.Username != "":
		v.Account = g.Username
	default:
		v.Account = g.Subject
	}
	if !g.LastRefreshAt.IsZero() {
		v.LastRenewal = formatDate(g.LastRefreshAt) + ", " + g.LastRefreshAt.UTC().Format("15:04 UTC")
	}
	switch g.State {
	case vault.GrantActive:
		v.StateText, v.CanAdd = "Active", true
		v.CanRevoke = pg.Access != nil
	case vault.GrantNeedsReconsent:
		v.StateText, v.CanAdd = "Needs renewing", true
		v.CanRevoke = pg.Access != nil
		v.CanReconsent = pg.Links != nil
		v.Why = "Since " + formatDate(g.StateSince) + " tagwatch cannot act for you at " + v.ProviderLabel +
			", so your watches there wait."
		if pg.Links == nil {
			v.Why += " Use the link tagwatch sent you to renew its access."
		}
	case vault.GrantRevoked:
		v.StateText, v.ReconsentLabel = "Revoked", "Give access again"
		v.CanReconsent = pg.Links != nil && watches > 0
		v.Why = revokedWhy(v.ProviderLabel, watches, pg.Links != nil)
	default:
		v.StateText = string(g.State)
	}
	return v
}

// noGrantView is the card of a provider where the user has watches but
// no grant any more (revoked at the provider and deleted here): the
// watches wait, and the page offers to give access again.
func (s *Service) noGrantView(providerName string, watches int) grantView {
	pg := s.pages()
	label := s.providerLabel(providerName)
	return grantView{Path: s.prefix + "/grants/" + url.PathEscape(providerName), Provider: providerName, ProviderLabel: label,
		State: string(vault.GrantRevoked), StateText: "No access", Watches: watches, CanReconsent: pg.Links != nil,
		ReconsentLabel: "Give access again", Why: revokedWhy(label, watches, pg.Links != nil)}
}

// revokedWhy says what a revoked access means for the user's watches at
// the provider, and how to give it again.
func revokedWhy(providerLabel string, watches int, canLink bool) string {
	why := "tagwatch no longer has access to your " + providerLabel + " account"
	switch {
	case watches == 0:
		return why + "."
	case canLink:
		return why + ", so your watches there wait. Give access again and they resume where they stopped."
	}
	return why + ", so your watches there wait. To give access again, ask whoever set up tagwatch for you for a new link."
}

// userView is everything the page shows of one user.
type userView struct {
	Watches []watchView
	Grants  []grantView
}

// errUserGone: the signed-in user no longer exists (their data was
// deleted meanwhile, in this browser or another).
var errUserGone = errors.New("the signed-in user no longer exists")

// userView reads the user's watches (with n matches each) and grants.
func (s *Service) userView(ps PageStore, sess session, n int, now time.Time) (userView, error) {
	var v userView
	if _, err := ps.User(sess.userID); errors.Is(err, vault.ErrNotFound) {
		return v, errUserGone
	} else if err != nil {
		return v, err
	}
	ws, err := ps.ListWatches(sess.userID)
	if err != nil {
		return v, err
	}
	// Oldest first: a watch keeps its place on the page.
	slices.SortStableFunc(ws, func(a, b vault.WatchWithCursor) int { return a.CreatedAt.Compare(b.CreatedAt) })
	perProvider := map[string]int{}
	for _, w := range ws {
		v.Watches = append(v.Watches, s.watchView(ps, sess.userID, w, n, now))
		perProvider[w.Provider]++
	}
	gs, err := ps.UserGrants(sess.userID) // damaged ones left out: FindDamaged tells the operator
	if err != nil {
		return v, err
	}
	for _, g := range gs {
		v.Grants = append(v.Grants, s.grantView(g, perProvider[g.Provider]))
		delete(perProvider, g.Provider)
	}
	// Watches at a provider where no grant is left: their access was
	// revoked and deleted; the card offers to give it again.
	for _, name := range slices.Sorted(maps.Keys(perProvider)) {
		v.Grants = append(v.Grants, s.noGrantView(name, perProvider[name]))
	}
	return v, nil
}

// targetChoices lists the user's distinct targets, by label, checked when
// in checked.
func (s *Service) targetChoices(ws []vault.WatchWithCursor, checked []string) []targetChoice {
	label := s.pages().TargetLabel
	var out []targetChoice
	seen := map[string]bool{}
	add := func(t string) {
		k := targetKey(t)
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, targetChoice{Key: k, Label: label(t), Checked: slices.Contains(checked, t)})
	}
	for _, t := range checked {
		add(t)
	}
	for _, w := range ws {
		for _, t := range w.Targets {
			add(t)
		}
	}
	return out
}
