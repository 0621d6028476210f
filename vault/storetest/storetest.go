// Package storetest is the contract suite of vault.Store: the tests any
// storage backend of tagwatch must pass. Package vault runs it against
// *vault.DB on each storage engine: bbolt (TestStoreContract), bbolt with
// every update closure run twice as a retrying engine runs it
// (TestStoreContractRunTwice), and PostgreSQL (TestStoreContractPostgres).
// The promises it checks are written down in the documentation of
// package vault.
//
// Run proves, each as a subtest of its name:
//
//   - Refresh: the in-flight marker is committed by BeginRefresh and
//     survives a reopen (the next BeginRefresh is a Retry, counted once);
//     of two tickets for one refresh token at most one commits and the
//     stale one gets ErrConflict and stores nothing; of many tickets
//     committed concurrently exactly one wins; RecordRefreshFailure keeps
//     or clears the marker as asked and never changes the grant's state;
//     a ticket of a grant ended meanwhile (re-consent, unenroll) is
//     refused and BeginRefresh gives ErrNeedsConsent. On a shared store
//     (Shared, a second daemon from Peer) a daemon whose heartbeat is not
//     recorded begins no refresh (ErrNoHeartbeat); another daemon's marker
//     while it sends heartbeats is busy (ErrRefreshBusy naming it, nothing
//     changed); a marker of a daemon that stopped (left the registry) is
//     in doubt only once this daemon has been steady for a whole lease;
//     this daemon's own
//     marker, and one handed over by RecordRefreshFailure with KeepMarker,
//     are in doubt at once. On a store one process owns every marker is in
//     doubt at once. Every committed change of a grant's tokens (refresh,
//     renewing consent, re-consent needed, unenroll) publishes its id on
//     vault.GrantTokensChannel once; a refused one publishes nothing.
//   - Runs: a commit moves the cursor, queues the outbox rows and fills
//     the seen index in one step; a repeated or overlapping commit queues
//     no post twice, also after a reopen; a failed run moves nothing but
//     its result; the cursor never moves back; a deleted watch gives
//     ErrNotFound and stores nothing; RunInput and RunnableWatches read
//     one state.
//   - Outbox: rows are due by next attempt, then id; an outcome applies
//     only while the row is in the state (and attempt count) it was read
//     in, so stale and repeated outcomes are skipped; a settle batch with
//     one bad outcome applies none; a replayed row keeps its id; a
//     repeated enqueue adds nothing; two delivery loops racing on the same
//     rows settle each row exactly once.
//   - Links: one link committed by many goroutines at once is consumed
//     exactly once (one success, the others ErrConflict, one grant, one
//     watch); expired, canceled and used links are refused; canceling is
//     idempotent; the token is kept only as its hash.
//   - Watches: pause, resume, suspend and clear move a watch as
//     vault.Watch's transitions say, through the store; a watch paused and
//     then resumed while its grant is dead goes back to suspended, never
//     active, and a re-consent makes it active; the same watch twice is
//     ErrDuplicateWatch (and a second link for it keeps one watch), and
//     so is ChangeWatch making a watch the same as another.
//   - Rules: AddWatch, ChangeWatch, CreateLink and CommitConsent apply
//     the rules set with SetRules (a hand-written stub): normalised specs
//     are stored, refused ones are ErrInvalid with nothing stored.
//   - NotFound: every method given an unknown id answers ErrNotFound with
//     a *vault.NotFoundError naming the record.
//   - Revocations: an unenroll queues the refresh token sealed; it opens,
//     is deferred and settled, and settling deletes the revoked grant.
//     CommitConsent over a live grant retires the replaced refresh token
//     by the provider's rule in its transaction: queued exactly once
//     where revocation is per grant (settling it leaves the renewed grant
//     alone), left to expire and audited where revocation ends the whole
//     account or the provider cannot revoke. An enrollment link signed in
//     as another account is refused unless it named it; a named switch
//     moves the grant, audited. A revocation that would end a live grant
//     of the account is dropped (DropRevocation) or never queued
//     (UnenrollGrant with EndsAccount).
//   - Audit: each change appends its entries in its own transaction,
//     numbered in order, naming the actor; a refused change appends
//     nothing; no entry shows a token or a target; RecordAudit appends,
//     AuditTrail reads after a sequence number and stops when asked.
//   - Reopen: what was committed is there after a reopen, and the
//     operator's lists (ListUsers, ListGrants) show it.
//   - RateWindows: what providers said about their windows and usage
//     caps survives a reopen; saving again replaces; a window saved over
//     is deleted and windows that ran out are neither read nor kept; a
//     bad window refuses the whole batch (ErrInvalid).
//   - Damaged: a record that no longer decodes (Backend.Damage) is left
//     out of RunnableWatches and the lists while the other user's watch
//     runs; a lookup names it (*vault.DamagedError); FindDamaged reports
//     it with the time it was first found and audits it once;
//     DamagedGrants names a damaged grant's user and provider;
//     DeleteDamaged refuses a healthy record (ErrConflict) and removes the
//     damaged one with its index entries (a grant's watches wait for a new
//     consent, which makes them run again), audited.
//   - Watches/OwnerScoped: with a vault.Owner, a watch of another user
//     is answered exactly as a missing one (the same *NotFoundError and
//     message) by every watch method, UserWatch and RecentMatches, and
//     nothing changes or is audited; AddWatch refuses another user's
//     grant exactly as a missing one; the owner's own watches move as
//     without an Owner.
//   - SignIns: UserBySignIn finds a user by their grant's account (its
//     issuer, when it has one, must match) or by an identity a sign-in
//     link bound; a sign-in link is only for an existing user, carries
//     no watch, is used once by CommitSignIn, makes no grant and keeps
//     no token, and CommitConsent refuses it; an identity that signs in
//     a user (by a sign-in or a grant) is never bound to another one;
//     users sharing an account are a conflict, never a pick; the index
//     survives a reopen and follows an account switch.
//   - RecentMatches: the posts a watch queued, newest first, each once
//     across targets, cut to an excerpt, marked delivered once a target
//     took them.
//   - DeleteUser: the user's live grant unenrolled with its revocation
//     queued by the provider's rule (the grant kept, scrubbed, until it
//     is settled), watches, links, outbox rows, rate windows, sign-ins
//     and the user deleted, one confirmation per target queued, audited without a
//     token or a target; in-flight runs and settlements find nothing;
//     other users untouched; the user id can start over.
//   - Concurrent: many goroutines mixing runs, pauses, new watches,
//     deliveries and refreshes (run it under -race) leave every post
//     queued once, every row settled once and every refresh counted.
//
// A backend's test opens a new, empty store per subtest (open is called
// once per subtest, with that subtest's t) on a clock it can move.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// Backend is a store under test: the contract plus what the suite needs
// to drive it, through public methods only.
type Backend interface {
	vault.Store
	// Daemon is the handle's place among the daemons sharing the store.
	Daemon
	// Peer opens a second handle on the same store, as a second daemon
	// with a holder of its own on the same clock, closed when t ends; ok
	// is false for a store one process owns (bbolt: Shared is false).
	Peer(t *testing.T) (p Peer, ok bool)
	// Now is the store's clock reading: the time its methods record.
	Now() time.Time
	// Advance moves the store's clock forward by d.
	Advance(d time.Duration)
	// Reopen closes the store and opens it again on the same data, as a
	// restarted daemon does, and returns the reopened store (with the same
	// clock). The old one is not used again. Rules are configuration, not
	// data: the suite sets them again.
	Reopen(t *testing.T) Backend
	// Damage overwrites the stored bytes of one record (kind
	// vault.KindWatch or vault.KindGrant, by id) so that it no longer
	// decodes, as a disk fault does.
	Damage(t *testing.T, kind, id string)
}

// Run runs the contract suite; open must return a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s Backend)
	}{
		{"Refresh/MarkerCommitted", testRefreshMarker},
		{"Refresh/MarkerSurvivesReopen", testRefreshMarkerReopen},
		{"Refresh/TwoTicketsOneCommit", testRefreshTwoTickets},
		{"Refresh/ConcurrentCommits", testRefreshConcurrent},
		{"Refresh/Failure", testRefreshFailure},
		{"Refresh/EndedGrantFencesTicket", testRefreshEndedGrant},
		{"Refresh/LiveHolderBusy", testRefreshLiveHolder},
		{"Refresh/DeadHolderInDoubt", testRefreshDeadHolder},
		{"Refresh/NotSteadyBusy", testRefreshNotSteady},
		{"Refresh/OwnMarkerInDoubt", testRefreshOwnMarker},
		{"Refresh/TokensNotified", testTokensNotified},
		{"Refresh/NoHeartbeatNoMarker", testRefreshNoHeartbeat},
		{"Runs/CommitIsOneStep", testRunCommit},
		{"Runs/RepeatedCommitQueuesNothingTwice", testRunRepeated},
		{"Runs/FailedRunMovesNothing", testRunFailed},
		{"Runs/CursorNeverMovesBack", testRunCursor},
		{"Runs/DeletedWatch", testRunDeletedWatch},
		{"Runs/RunInputAndRunnable", testRunInput},
		{"Outbox/DueOrder", testOutboxDue},
		{"Outbox/SettleOnlyInStateRead", testOutboxSettle},
		{"Outbox/GroupSettleAllOrNothing", testOutboxGroup},
		{"Outbox/ReplayKeepsID", testOutboxReplay},
		{"Outbox/TwoLoopsSettleOnce", testOutboxTwoLoops},
		{"Links/ConsumedOnce", testLinkOnce},
		{"Links/States", testLinkStates},
		{"Watches/Transitions", testWatchTransitions},
		{"Watches/PausedThenResumedWithDeadGrant", testWatchDeadGrant},
		{"Watches/Duplicate", testWatchDuplicate},
		{"Rules/Applied", testRules},
		{"NotFound", testNotFound},
		{"Revocations", testRevocations},
		{"Revocations/ReplacedToken", testReplacedToken},
		{"Revocations/AccountSwitch", testAccountSwitch},
		{"Watches/ChangeIntoDuplicate", testChangeWatchDuplicate},
		{"Audit", testAudit},
		{"Reopen", testReopen},
		{"RateWindows", testRateWindows},
		{"Concurrent", testConcurrent},
		{"Damaged", testDamaged},
		{"Watches/OwnerScoped", testOwnerScoped},
		{"SignIns", testSignIns},
		{"UserGrants", testUserGrants},
		{"Revocations/StaleReconsentLink", testStaleReconsentLink},
		{"Revocations/SignInKept", testRevokedSignInKept},
		{"RecentMatches", testRecentMatches},
		{"DeleteUser", testDeleteUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			s.SetRules(Rules{})
			heartbeat(t, s) // a daemon is in the registry before it refreshes (vault.ErrNoHeartbeat)
			tc.fn(t, s)
		})
	}
}

// Rules is the suite's hand-written vault.WatchRules: hashtags are
// trimmed and lose a leading '#'; a watch needs a hashtag, a schedule and
// a target; the hashtag "refused" and the target "refused:" are refused.
// Deliberately not tagwatch's rules: the suite proves the store applies
// the rules it is given, whatever they are.
type Rules struct{}

// CheckWatch implements vault.WatchRules.
func (Rules) CheckWatch(provider string, w *vault.WatchSpec) error {
	for i, h := range w.Hashtags {
		h = strings.TrimPrefix(strings.TrimSpace(h), "#")
		if h == "refused" {
			return errors.New(`hashtag "refused" is refused`)
		}
		w.Hashtags[i] = h
	}
	switch {
	case len(w.Hashtags) == 0 || slices.Contains(w.Hashtags, ""):
		return errors.New("a watch needs a hashtag")
	case w.Schedule == "":
		return errors.New("a watch needs a schedule")
	case len(w.Targets) == 0:
		return errors.New("a watch needs a target")
	case slices.Contains(w.Targets, "refused:"):
		return errors.New(`target "refused:" is refused`)
	}
	return nil
}

// reopen reopens s as a daemon restarts: it leaves the registry of
// daemons, is reopened (a new holder), has the suite's rules set again
// and sends its first heartbeat.
func reopen(t *testing.T, s Backend) Backend {
	t.Helper()
	leave(t, s)
	s = s.Reopen(t)
	s.SetRules(Rules{})
	heartbeat(t, s)
	return s
}

var (
	spec1 = vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 15m", Targets: []string{"console:", "mailto:zed@example.com"}}
	spec2 = vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly", Targets: []string{"console:"}}
)

const linkPrefix = "https://tagwatch.example/enroll/"

func cloneSpec(s vault.WatchSpec) vault.WatchSpec {
	s.Hashtags, s.Targets = slices.Clone(s.Hashtags), slices.Clone(s.Targets)
	return s
}

// link creates an enrollment link for user carrying spec.
func link(t *testing.T, s Backend, user string, spec vault.WatchSpec) vault.Enrollment {
	t.Helper()
	spec = cloneSpec(spec)
	token, e, err := s.CreateLink(vault.LinkRequest{UserID: user, Provider: "x", Watch: &spec, CreatedBy: "storetest"})
	if err != nil {
		t.Fatalf("CreateLink(%s) = %v", user, err)
	}
	if e.Hash != vault.HashLinkToken(token) || token == "" {
		t.Fatalf("CreateLink(%s) = token %q, hash %q; want the link stored under the token's hash", user, token, e.Hash)
	}
	return e
}

// consentFor is a consent through link e by subject with refresh token rt.
func consentFor(s Backend, e vault.Enrollment, subject, rt string) vault.Consent {
	return vault.Consent{LinkHash: e.Hash, LinkID: e.ID, UserID: e.UserID, Provider: e.Provider, Subject: subject,
		Scopes: []string{"tweet.read", "offline.access"}, AccessExpiry: s.Now().Add(2 * time.Hour),
		Tokens: vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken("at-" + rt)}}
}

// enroll gives user a grant and a watch of spec through a consent link.
func enroll(t *testing.T, s Backend, user string, spec vault.WatchSpec) vault.ConsentResult {
	t.Helper()
	res, err := s.CommitConsent(consentFor(s, link(t, s, user, spec), "sub-"+user, "rt-"+user))
	if err != nil {
		t.Fatalf("CommitConsent(%s) = %v", user, err)
	}
	if len(res.Started) != 1 {
		t.Fatalf("CommitConsent(%s) started %d watches, want 1", user, len(res.Started))
	}
	return res
}

// rows returns the outbox rows of kind (every kind when empty) for
// watchID (any when empty), oldest first.
func rows(t *testing.T, s Backend, kind, watchID string) []vault.OutboxRow {
	t.Helper()
	all, err := s.ListOutbox("", 0)
	if err != nil {
		t.Fatalf("ListOutbox = %v", err)
	}
	var out []vault.OutboxRow
	for _, r := range all {
		if (kind == "" || r.Kind == kind) && (watchID == "" || r.WatchID == watchID) {
			out = append(out, r)
		}
	}
	return out
}

// due returns the ids due at now and when the next one is due.
func due(t *testing.T, s Backend, now time.Time) ([]string, time.Time) {
	t.Helper()
	var ids []string
	next, err := s.DueOutboxIDs(now, func(id string) bool { ids = append(ids, id); return true })
	if err != nil {
		t.Fatalf("DueOutboxIDs = %v", err)
	}
	return ids, next
}

func watchOf(t *testing.T, s Backend, id string) vault.WatchWithCursor {
	t.Helper()
	w, err := s.Watch(id)
	if err != nil {
		t.Fatalf("Watch(%s) = %v", id, err)
	}
	return w
}

func grantOf(t *testing.T, s Backend, id string) vault.Grant {
	t.Helper()
	g, err := s.Grant(id)
	if err != nil {
		t.Fatalf("Grant(%s) = %v", id, err)
	}
	return g
}

func refreshOf(t *testing.T, s Backend, grantID string) string {
	t.Helper()
	_, tok, err := s.GrantTokens(grantID)
	if err != nil {
		t.Fatalf("GrantTokens(%s) = %v", grantID, err)
	}
	return tok.Refresh.Reveal()
}

// wantErr fails unless err matches target (errors.Is).
func wantErr(t *testing.T, call string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s = %v, want %v", call, err, target)
	}
}

func posts(ids ...int) []vault.Post {
	var ps []vault.Post
	for _, id := range ids {
		ps = append(ps, vault.Post{ID: fmt.Sprint(id), Text: "#golang post"})
	}
	return ps
}
