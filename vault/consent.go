package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tagwatch/vault/secret"
)

// This file is the store's side of consent links: creating, listing and
// canceling them (operators, through any door), and committing what a
// consent flow learnt (vault/enroll, after the provider answered). Each
// method is one transaction; none does network I/O.

// Link lifetimes.
const (
	// DefaultLinkTTL is a consent link's lifetime when none is asked for.
	DefaultLinkTTL = 72 * time.Hour
	// MaxLinkTTL bounds a link's life: consent links are short-lived.
	MaxLinkTTL = 30 * 24 * time.Hour
	// MinLinkTTL is the shortest lifetime a link may be asked for.
	MinLinkTTL = time.Minute
)

// AuditEnrollmentCanceled is the audit kind of a link canceled by an
// operator.
const AuditEnrollmentCanceled = "enrollment_canceled"

// ErrWrongAccount means a consent was given by another account than the
// one whose grant it renews (a re-consent), or than the user's live grant
// at the provider when the link named no account: the grant is not
// handed over. A switch needs a link that names the new account.
var ErrWrongAccount = errors.New("consent by another account")

// ErrAccountSwitch is the ErrWrongAccount of an enrollment link signed in
// as another account than the user's live grant at the provider, when the
// link named no account: errors.Is(err, ErrWrongAccount) holds too.
var ErrAccountSwitch = errors.New("the user's grant is another account's")

// LinkRequest asks CreateLink for a one-time consent link.
type LinkRequest struct {
	// UserID is the user the grant will belong to: 1 to 200 printable
	// characters. Required.
	UserID string
	// UserName and UserEmail describe a new user; when set they also
	// update an existing one. At most 200 printable characters; a plain
	// mail address.
	UserName  string
	UserEmail string
	// Provider names the provider the user will consent at. Required; the
	// door checks that it is configured.
	Provider string
	// Expected, when set, is the identity that must consent: a subject, a
	// username (with or without @) or an email; at most 320 printable
	// characters.
	Expected string
	// Watch is the watch a used link starts; it is checked against the
	// DB's rules (DB.CheckWatch) and stored normalised. Required for
	// PurposeEnroll, refused for PurposeReconsent and PurposeSignIn.
	Watch *WatchSpec
	// Purpose is PurposeEnroll (default), PurposeReconsent or
	// PurposeSignIn (a link that binds the identity signing in with it to
	// an existing user, for the user's page: no watch, no grant; the door
	// checks that the provider is an OpenID Connect provider).
	Purpose EnrollmentPurpose
	// GrantID is the grant a re-consent link was made for: when set it
	// must exist and belong to UserID at Provider. A re-consent link
	// renews the user's grant at Provider as it is when the link is used
	// (CommitConsent), or makes one where the user has none left (after a
	// revocation: the page's "Give access again"); GrantID is kept for the
	// audit trail. Refused for the other purposes.
	GrantID string
	// TTL is the link's lifetime: MinLinkTTL to MaxLinkTTL, default
	// DefaultLinkTTL.
	TTL time.Duration
	// CreatedBy names the operator or component asking, for the audit
	// trail and the landing page; at most 200 printable characters.
	CreatedBy string
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkLinkRequest normalises req (default purpose and TTL, the watch by
// the rules) and returns a *InvalidError for the first field that is
// wrong.
func (db *DB) checkLinkRequest(req *LinkRequest) error {
	bad := func(format string, args ...any) error {
		return &InvalidError{Object: "consent link", Err: fmt.Errorf(format, args...)}
	}
	switch {
	case req.UserID == "" || len(req.UserID) > 200 || !printable(req.UserID):
		return bad("user id must be 1 to 200 printable characters")
	case req.Provider == "" || len(req.Provider) > 200 || !printable(req.Provider):
		return bad("a provider is required")
	case len(req.UserName) > 200 || !printable(req.UserName):
		return bad("user name must be at most 200 printable characters")
	case len(req.Expected) > 320 || !printable(req.Expected):
		return bad("expected identity must be at most 320 printable characters")
	case len(req.CreatedBy) > 200 || !printable(req.CreatedBy):
		return bad("created by must be at most 200 printable characters")
	}
	if req.UserEmail != "" {
		if a, err := mail.ParseAddress(req.UserEmail); err != nil || a.Address != req.UserEmail {
			return bad("user email %q is not a plain mail address", req.UserEmail)
		}
	}
	if req.TTL == 0 {
		req.TTL = DefaultLinkTTL
	}
	if req.TTL < MinLinkTTL || req.TTL > MaxLinkTTL {
		return bad("ttl must be between %s and %s, got %s", MinLinkTTL, MaxLinkTTL, req.TTL)
	}
	switch req.Purpose {
	case "", PurposeEnroll:
		req.Purpose = PurposeEnroll
		if req.Watch == nil {
			return bad("an enrollment link needs the watch it starts")
		}
		if req.GrantID != "" {
			return bad("an enrollment link names no grant")
		}
	case PurposeReconsent:
		if req.Watch != nil {
			return bad("a re-consent link carries no watch: it resumes the user's watches")
		}
	case PurposeSignIn:
		if req.Watch != nil {
			return bad("a sign-in link carries no watch: it only binds who signs in")
		}
		if req.GrantID != "" {
			return bad("a sign-in link names no grant")
		}
	default:
		return bad("unknown purpose %q", req.Purpose)
	}
	if req.Watch != nil {
		spec := cloneSpec(*req.Watch)
		if err := db.CheckWatch(req.Provider, &spec); err != nil {
			return err
		}
		req.Watch = &spec
	}
	return nil
}

// CreateLink stores a one-time consent link, in one transaction: the user
// is created (or its name and email updated), the link recorded under the
// hash of a fresh token, and the audit trail told. It returns the token,
// which is kept nowhere (the door turns it into <PublicURL>/enroll/<token>
// and shows it once), and the record. The request is checked first: its
// fields, its watch against the DB's rules (so a link carries only a watch
// every other door would accept), and a re-consent link's grant.
// Errors: *InvalidError (a field or the watch); *NotFoundError (a
// re-consent link's grant, a sign-in link's user: a sign-in link is only
// for a user that exists); errNoRules when the DB has no rules.
func (db *DB) CreateLink(req LinkRequest) (string, Enrollment, error) {
	if err := db.checkLinkRequest(&req); err != nil {
		return "", Enrollment{}, err
	}
	var (
		token string
		rec   Enrollment
	)
	err := db.Update(func(tx *Tx) error {
		token, rec = "", Enrollment{}
		if req.Purpose == PurposeReconsent && req.GrantID != "" {
			g, err := tx.grant(req.GrantID)
			if err != nil {
				return err
			}
			if g.UserID != req.UserID || g.Provider != req.Provider {
				return &InvalidError{Object: "consent link", Err: fmt.Errorf("grant %s belongs to another user or provider", req.GrantID)}
			}
		}
		u, err := tx.User(req.UserID)
		switch {
		case errors.Is(err, ErrNotFound) && req.Purpose == PurposeSignIn:
			// A sign-in is for a user tagwatch works for already: a
			// mistyped id makes no empty user.
			return notFound("user", req.UserID)
		case errors.Is(err, ErrNotFound):
			u = User{ID: req.UserID}
		case err != nil:
			return err
		}
		if req.UserName != "" || req.UserEmail != "" || u.CreatedAt.IsZero() {
			if req.UserName != "" {
				u.Name = req.UserName
			}
			if req.UserEmail != "" {
				u.Email = req.UserEmail
			}
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		token, rec, err = tx.CreateEnrollment(Enrollment{Purpose: req.Purpose, UserID: req.UserID, Provider: req.Provider,
			Expected: req.Expected, Watch: req.Watch, GrantID: req.GrantID, CreatedBy: req.CreatedBy,
			ExpiresAt: tx.Now().Add(req.TTL)})
		return err
	})
	if err != nil {
		return "", Enrollment{}, err
	}
	return token, rec, nil
}

// linkNotFound names a link known by the hash of its token without
// showing the whole hash.
func linkNotFound(hash string) error {
	if len(hash) > 12 {
		hash = hash[:12]
	}
	return notFound("consent link", "sha256:"+hash)
}

// Link returns the consent link whose token hashes to hash
// (HashLinkToken). Errors: *NotFoundError.
func (db *DB) Link(hash string) (Enrollment, error) {
	var e Enrollment
	err := db.View(func(tx *Tx) error {
		var err error
		e, err = tx.Enrollment(hash)
		if errors.Is(err, ErrNotFound) {
			return linkNotFound(hash)
		}
		return err
	})
	return e, err
}

// LinkByID returns the consent link with the public id. Errors:
// *NotFoundError.
func (db *DB) LinkByID(id string) (Enrollment, error) {
	var e Enrollment
	err := db.View(func(tx *Tx) error {
		var err error
		e, err = tx.linkByID(id)
		return err
	})
	return e, err
}

func (tx *Tx) linkByID(id string) (Enrollment, error) {
	e, err := tx.EnrollmentByID(id)
	if errors.Is(err, ErrNotFound) {
		return Enrollment{}, notFound("consent link", id)
	}
	return e, err
}

// User returns the user with id. Errors: *NotFoundError.
func (db *DB) User(id string) (User, error) {
	var u User
	err := db.View(func(tx *Tx) error {
		var err error
		u, err = tx.User(id)
		if errors.Is(err, ErrNotFound) {
			return notFound("user", id)
		}
		return err
	})
	return u, err
}

// LinkView is a consent link as operators see it: the record without the
// hash of its token, and its state at the time asked.
type LinkView struct {
	Enrollment
	State LinkState
}

// ListLinks returns every consent link with its state at now
// (Enrollment.State), newest first, without the hashes of their tokens,
// from one read transaction. Errors: only the store's own.
func (db *DB) ListLinks(now time.Time) ([]LinkView, error) {
	var links []LinkView
	err := db.View(func(tx *Tx) error {
		links = nil
		return tx.Enrollments(func(e Enrollment) error {
			e.Hash = ""
			links = append(links, LinkView{Enrollment: e, State: e.State(now)})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(links, func(i, j int) bool { return links[i].CreatedAt.After(links[j].CreatedAt) })
	return links, nil
}

// CancelLink makes the link with id unusable and audits it, naming actor,
// in one transaction. Canceling a canceled link changes nothing; an
// expired one is marked canceled too. Errors: *NotFoundError;
// *TransitionError for a used link.
func (db *DB) CancelLink(id, actor string) error {
	return db.Update(func(tx *Tx) error {
		e, err := tx.linkByID(id)
		if err != nil {
			return err
		}
		if !e.UsedAt.IsZero() {
			return &TransitionError{Kind: "consent link", ID: e.ID, Action: "cancel", State: string(LinkUsed)}
		}
		if e.Canceled {
			return nil
		}
		e.Canceled = true
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditEnrollmentCanceled, Actor: actor, UserID: e.UserID, GrantID: e.GrantID,
			Detail: fmt.Sprintf("%s link %s for provider %s canceled", e.Purpose, e.ID, e.Provider)})
	})
}

// RecordConsentRefused appends an AuditEnrollmentRefused entry, in one
// transaction: a consent flow of link linkID for userID at provider was
// refused, and why (no secret, already clipped by the caller). Nothing
// else changes; the link stays as it was. Errors: only the store's own.
func (db *DB) RecordConsentRefused(userID, linkID, provider, detail string) error {
	return db.Update(func(tx *Tx) error {
		return tx.Audit(AuditEvent{Kind: AuditEnrollmentRefused, UserID: userID,
			Detail: fmt.Sprintf("link %s at provider %s: %s", linkID, provider, detail)})
	})
}

// Consent is what a successful authorization-code flow learnt, for
// CommitConsent. Text from the provider is clipped by the caller.
type Consent struct {
	// LinkHash is the key of the link the flow started from
	// (Enrollment.Hash); LinkID its public id, for errors.
	LinkHash, LinkID string
	// UserID and Provider are the link's as the flow started; a link that
	// changed meanwhile is refused.
	UserID, Provider string
	// Issuer, Subject and Username say who consented (a verified ID token,
	// or the provider's user endpoint); Name is their display name, kept
	// for a user who has none. Audience is the ID token's aud.
	Issuer, Subject, Username, Name string
	Audience                        []string
	// Scopes are the scopes granted.
	Scopes []string
	// Tokens are the tokens the code was redeemed for; a refresh token is
	// required. AccessExpiry is the access token's absolute expiry.
	Tokens       Tokens
	AccessExpiry time.Time
	// Revocation is the provider's rule (provider.Provider.Revocation):
	// it decides whether the refresh token this consent replaces is
	// revoked at the provider. The zero rule revokes nothing.
	Revocation RevocationRule
}

// ConsentResult is what CommitConsent did.
type ConsentResult struct {
	// Grant is the grant as stored (tokens sealed).
	Grant Grant
	// Link is the link as used.
	Link Enrollment
	// Replaced is the state of the grant this consent renewed or
	// replaced, "" when the user had none at the provider.
	Replaced GrantState
	// Started holds the link's watch when this consent created it.
	Started []Watch
	// Kept holds the user's watch that was already the same as the
	// link's (WatchSpec.Same): it was kept, and no second one created.
	Kept []Watch
	// Resumed holds the user's watches at the provider that run again
	// because of this consent (suspended for a grant cause, or the
	// link's own watch found paused).
	Resumed []Watch
	// RevocationID names the pending revocation of the refresh token this
	// consent replaced (RevocationReplaced), "" when none was queued.
	// NotRevoked says why a replaced refresh token was left to expire
	// instead ("" when there was none, or it was queued).
	RevocationID, NotRevoked string
	// SwitchedFrom is the subject the grant held before, when this
	// consent moved it to another account (the link named the new one).
	SwitchedFrom string
}

// CommitConsent stores what a consent flow learnt, in one transaction:
//   - the link is consumed exactly once: it must be pending
//     (Enrollment.Usable) and still the user's and provider's the flow
//     started with; it is marked used. A second commit of the same link
//     fails with a *TransitionError and changes nothing.
//   - the link's watch is checked again against the DB's rules.
//   - the user is created, or given Name when it has none.
//   - the grant is stored with the tokens sealed: the user's grant at the
//     provider (a re-consent link's own grant) moves to active
//     (Grant.SetState) and takes the new tokens and identity; a revoked
//     grant, being final, is replaced by a new one (and deleted unless a
//     pending revocation still needs it).
//   - the account: a re-consent must be by the grant's subject; an
//     enrollment link by another subject than the user's live grant at
//     the provider moves the grant to that account only when the link
//     named it (Expected, checked by the flow; AuditAccountSwitched),
//     and is refused otherwise. A user has one grant per provider, which
//     all their watches there run on.
//   - the refresh token the consent replaced (a live grant's) is retired
//     by c.Revocation, the provider's rule: queued for revocation at the
//     provider (RevocationReplaced, AuditRevocationQueued; the revocation
//     worker sends it and settles it with SettleRevocation) when
//     revoking it ends only its own grant; left to expire, with
//     AuditRevocationSkipped saying why, when the provider cannot revoke
//     or revoking would end another live grant of the same account (X
//     ends the app's whole authorization for the account, and the new
//     grant is that account's).
//   - every watch of the user at the provider held for a grant cause is
//     cleared (Watch.Clear(SuspendNeedsReconsent), which clears revoked
//     too): suspended ones run again, paused ones forget the cause.
//   - the link's watch is created, unless the user already has the same
//     one at the provider (WatchSpec.Same): then that one is kept (one
//     watch, not two; AuditWatchKept; the link records it:
//     Enrollment.WatchID, WatchKept), and resumed if it was paused.
//   - a NoticeEnrolled (facts: Hashtags, Schedule, Resumed) is queued for
//     every target of each watch started or resumed, with ids
//     deterministic per (user, watch, link, target); a kept watch that
//     was running already tells its targets nothing new.
//   - the audit trail records the link used, the grant stored and the
//     watch added or kept.
//
// Errors: *NotFoundError (the link was deleted); *TransitionError (the
// link is used, canceled or expired); *InvalidError (the link's watch is
// no longer valid, the consent lacks a refresh token, or the link is a
// sign-in link, which CommitSignIn consumes); an error
// wrapping ErrWrongAccount (a re-consent by another subject than the
// grant's, or an account switch the link did not name). On any error
// nothing is stored.
func (db *DB) CommitConsent(c Consent) (ConsentResult, error) {
	var out ConsentResult
	if c.Tokens.Refresh.IsZero() {
		return out, &InvalidError{Object: "consent", Err: errors.New("no refresh token: offline access was not granted")}
	}
	err := db.Update(func(tx *Tx) error {
		out = ConsentResult{}
		now := tx.Now()
		e, err := tx.usableLink(c.LinkHash, c.LinkID, c.UserID, c.Provider, now)
		if err != nil {
			return err
		}
		if e.Purpose == PurposeSignIn {
			// A sign-in link makes no grant, whatever a flow brings back.
			return &InvalidError{Object: "consent", Err: fmt.Errorf("link %s is a sign-in link: it makes no grant (CommitSignIn)", e.ID)}
		}
		var spec *WatchSpec
		if e.Purpose == PurposeEnroll && e.Watch != nil {
			s := cloneSpec(*e.Watch)
			if err := db.CheckWatch(e.Provider, &s); err != nil {
				return err
			}
			spec = &s
		}

		u, err := tx.User(e.UserID)
		if errors.Is(err, ErrNotFound) {
			u, err = User{ID: e.UserID}, nil
		}
		if err != nil {
			return err
		}
		if u.Name == "" && c.Name != "" {
			u.Name = c.Name
		}
		if err := tx.PutUser(u); err != nil {
			return err
		}

		g, err := tx.consentGrant(e, c, now)
		if err != nil {
			return err
		}
		out.Replaced = g.replaced
		out.Grant = g.Grant
		e.UsedAt, e.GrantID = now, g.ID

		var linked *Watch
		var changed []Watch
		err = tx.UserWatches(e.UserID, func(w Watch) error {
			if w.Provider != e.Provider {
				return nil
			}
			was := w.State
			touched := w.Clear(SuspendNeedsReconsent)
			if spec != nil && linked == nil && w.WatchSpec.Same(*spec) {
				if ok, err := w.Resume(GrantActive); err == nil && ok {
					touched = true
				}
				linked = &w
				out.Kept = append(out.Kept, w)
				e.WatchID, e.WatchKept = w.ID, true
			}
			if touched {
				changed = append(changed, w)
				if was != WatchActive && w.State == WatchActive {
					out.Resumed = append(out.Resumed, w)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, w := range changed {
			if err := tx.PutWatch(w); err != nil {
				return err
			}
		}
		if spec != nil && linked == nil {
			w := Watch{ID: NewID(), UserID: e.UserID, Provider: e.Provider, WatchSpec: *spec, State: WatchActive}
			if err := tx.PutWatch(w); err != nil {
				return err
			}
			out.Started = append(out.Started, w)
			e.WatchID = w.ID
			if err := tx.Audit(AuditEvent{Kind: AuditWatchAdded, Actor: "consent link " + e.ID, UserID: e.UserID, GrantID: g.ID,
				Detail: watchDetail(w)}); err != nil {
				return err
			}
		}
		if linked != nil {
			// One watch, not two: the user is told by the consent page
			// (Enrollment.WatchKept), and its targets hear nothing new
			// unless it resumes.
			if err := tx.Audit(AuditEvent{Kind: AuditWatchKept, Actor: "consent link " + e.ID, UserID: e.UserID, GrantID: g.ID,
				Detail: keptWatchDetail(*linked, e)}); err != nil {
				return err
			}
		}
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}
		out.Link = e

		notified := map[string]bool{}
		notify := func(w Watch, resumed bool) error {
			if notified[w.ID] {
				return nil
			}
			notified[w.ID] = true
			payload, err := json.Marshal(Notice{Type: NoticeEnrolled, UserID: e.UserID, WatchID: w.ID, Provider: e.Provider,
				Hashtags: w.Hashtags, Schedule: w.Schedule, Resumed: resumed, Time: now})
			if err != nil {
				return err
			}
			for _, t := range w.Targets {
				if _, err := tx.Enqueue(OutboxRow{ID: OutboxID(e.UserID, w.ID, e.ID, NoticeEnrolled, t),
					Kind: NoticeEnrolled, UserID: e.UserID, WatchID: w.ID, Target: t, Payload: payload}); err != nil {
					return err
				}
			}
			return nil
		}
		for _, w := range out.Started {
			if err := notify(w, false); err != nil {
				return err
			}
		}
		for _, w := range out.Resumed {
			if err := notify(w, true); err != nil {
				return err
			}
		}

		who := c.Subject
		if c.Username != "" {
			who += " (" + c.Username + ")"
		}
		if g.switchedFrom != "" {
			out.SwitchedFrom = g.switchedFrom
			if err := tx.Audit(AuditEvent{Kind: AuditAccountSwitched, Actor: who, UserID: e.UserID, GrantID: g.ID,
				Detail: fmt.Sprintf("grant %s at provider %s moved from subject %q to %q: link %s named the new account (%q)",
					g.ID, e.Provider, g.switchedFrom, c.Subject, e.ID, e.Expected)}); err != nil {
				return err
			}
		}
		if !g.replacedRefresh.IsZero() && !g.replacedRefresh.Value.Equal(c.Tokens.Refresh.Value) {
			out.RevocationID, out.NotRevoked, err = tx.retireReplaced(g.Grant, g.replacedSubject, g.replacedRefresh, c.Revocation, who, e)
			if err != nil {
				return err
			}
		}
		if err := tx.Audit(AuditEvent{Kind: AuditEnrollmentUsed, Actor: who, UserID: e.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("%s link %s used at provider %s; %s started, %d kept, %d resumed",
				e.Purpose, e.ID, e.Provider, count(len(out.Started), "watch", "watches"), len(out.Kept), len(out.Resumed))}); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditGrantStored, Actor: who, UserID: e.UserID, GrantID: g.ID,
			Detail: g.detail + "; scopes " + strings.Join(c.Scopes, " ")})
	})
	if err != nil {
		return ConsentResult{}, err
	}
	return out, nil
}

// storedGrant is a grant CommitConsent stored, with what it replaced and
// the audit detail that says so.
type storedGrant struct {
	Grant
	replaced GrantState
	detail   string
	// replacedRefresh is the refresh token the consent replaced (zero when
	// there was none, or the grant was revoked), of account
	// replacedSubject.
	replacedRefresh secret.RefreshToken
	replacedSubject string
	// switchedFrom is the subject the grant held before the consent moved
	// it to another account.
	switchedFrom string
}

// consentGrant stores the grant a consent gives, for link e.
func (tx *Tx) consentGrant(e Enrollment, c Consent, now time.Time) (storedGrant, error) {
	// The grant a consent renews is the user's grant at the provider now
	// (the user_grants index), never the one a re-consent link was made
	// for: that one may have been revoked and deleted, and a newer grant
	// made, since; a consent through the old link renews the newer grant
	// instead of making a second one (one grant per user and provider).
	old, err := tx.UserGrant(e.UserID, e.Provider)
	switch {
	case errors.Is(err, ErrNotFound):
		old = Grant{}
	case err != nil:
		return storedGrant{}, err
	case old.UserID != e.UserID || old.Provider != e.Provider:
		return storedGrant{}, fmt.Errorf("grant %s belongs to another user or provider than link %s", old.ID, e.ID)
	case e.Purpose == PurposeReconsent && old.Subject != "" && old.Subject != c.Subject:
		// Re-consent renews the same account's grant; another account
		// needs an enrollment link of its own.
		return storedGrant{}, fmt.Errorf("%w: subject %q re-consented for grant %s of subject %q", ErrWrongAccount, c.Subject, old.ID, old.Subject)
	case old.State != GrantRevoked && old.Subject != "" && old.Subject != c.Subject && e.Expected == "":
		// A user has one grant per provider, and all their watches there
		// run on it: a sign-in as another account (often the one the
		// browser happened to be signed in to) does not silently take it
		// over. An operator who means the switch names the new account in
		// the link (LinkRequest.Expected), which the flow checked.
		return storedGrant{}, fmt.Errorf("%w: %w: user %s's grant %s at provider %s is subject %q; subject %q signed in through link %s, "+
			"which names no account: a switch to another account needs a link that names it", ErrWrongAccount, ErrAccountSwitch,
			e.UserID, old.ID, e.Provider, old.Subject, c.Subject, e.ID)
	}
	out := storedGrant{replaced: old.State, detail: "new grant"}
	if old.ID != "" && old.State != GrantRevoked && len(old.SealedRefresh) > 0 {
		tok, err := tx.OpenTokens(old)
		if err != nil {
			return storedGrant{}, err
		}
		out.replacedRefresh, out.replacedSubject = tok.Refresh, old.Subject
	}
	g := Grant{ID: old.ID, UserID: e.UserID, Provider: e.Provider, State: old.State, CreatedAt: old.CreatedAt, StateSince: old.StateSince,
		RefreshCount: old.RefreshCount}
	switch {
	case old.ID == "":
	case old.State == GrantRevoked:
		// Revoked is final: a new grant replaces it. Its record goes now
		// unless a pending revocation will delete it once settled.
		pending := false
		if err := tx.Revocations(func(r Revocation) error {
			pending = pending || (r.GrantID == old.ID && r.Cause != RevocationReplaced)
			return nil
		}); err != nil {
			return storedGrant{}, err
		}
		if !pending {
			if err := tx.DeleteGrant(old.ID); err != nil {
				return storedGrant{}, err
			}
		}
		out.detail = "grant " + old.ID + " (revoked) replaced"
		g = Grant{}
	default:
		out.detail = "grant renewed (was " + string(old.State) + ")"
	}
	if g.ID == "" {
		g = Grant{ID: NewID(), UserID: e.UserID, Provider: e.Provider, State: GrantActive, CreatedAt: now, StateSince: now}
	}
	if _, err := g.SetState(GrantActive, now); err != nil {
		return storedGrant{}, err
	}
	if old.Subject != "" && old.Subject != c.Subject && old.State != GrantRevoked {
		out.switchedFrom = old.Subject
		out.detail += fmt.Sprintf("; account changed from subject %q to %q", old.Subject, c.Subject)
	}
	g.Issuer, g.Subject, g.Username = c.Issuer, c.Subject, c.Username
	g.Scopes, g.AccessExpiry, g.IDTokenAudience = slices.Clone(c.Scopes), c.AccessExpiry, slices.Clone(c.Audience)
	if err := tx.SealTokens(&g, c.Tokens); err != nil {
		return storedGrant{}, err
	}
	if err := tx.PutGrant(g); err != nil {
		return storedGrant{}, err
	}
	tx.tokensChanged(g.ID) // other daemons drop what they cache of it (grants.go)
	out.Grant = g
	return out, nil
}
