package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tagwatch/vault/kv"
)

// This file is who may sign in to a user's page: the accounts of the
// user's grants (the subject that consented at enrollment) and the
// identities bound to the user by sign-in links (User.SignIns). Both are
// found through one index, the sign-in index, kept in the transaction
// that changes a grant's account or a user's sign-ins.

// bucketSignIns is the sign-in index: key provider, subject, user, source
// (each a uvarint length and its bytes, so any byte may occur in them);
// value the issuer. Source is "grant:" and the grant's id, or "sign-in:"
// and the issuer of a bound sign-in. Created by schema migration 1 -> 2,
// which indexes the grants already stored.
var bucketSignIns = []byte("sign_ins")

// Sources of sign-in index entries.
const (
	signInFromGrant = "grant:"
	signInFromLink  = "sign-in:"
)

// Audit kinds of sign-ins.
const (
	// AuditSignInBound: a sign-in link bound an identity to its user.
	AuditSignInBound = "sign_in_bound"
)

// ErrSignInConflict means a sign-in identity cannot be used as asked: it
// belongs to more than one user (UserBySignIn), or to another user than
// the one a sign-in link would bind it to (CommitSignIn). Errors carrying
// it are *SignInConflictError.
var ErrSignInConflict = errors.New("vault: sign-in identity belongs to another user")

// SignInConflictError names a sign-in identity and the users it belongs
// to. errors.Is(err, ErrSignInConflict) is true for it.
type SignInConflictError struct {
	Provider, Subject string
	// Users are the users the identity belongs to, in id order.
	Users []string
	// Binding, when set, is the user a sign-in link would have bound the
	// identity to (CommitSignIn refused it).
	Binding string
}

func (e *SignInConflictError) Error() string {
	if e.Binding != "" {
		return fmt.Sprintf("sign-in %q at provider %q belongs to user %s already; it cannot sign in user %s too",
			e.Subject, e.Provider, strings.Join(e.Users, ", "), e.Binding)
	}
	return fmt.Sprintf("sign-in %q at provider %q belongs to more than one user (%s): none is chosen",
		e.Subject, e.Provider, strings.Join(e.Users, ", "))
}

// Is makes errors.Is(err, ErrSignInConflict) true.
func (e *SignInConflictError) Is(target error) bool { return target == ErrSignInConflict }

// appendPart appends s to k as a uvarint length and its bytes.
func appendPart(k []byte, s string) []byte {
	k = binary.AppendUvarint(k, uint64(len(s)))
	return append(k, s...)
}

// signInPrefix is the start of every index key of (provider, subject).
func signInPrefix(provider, subject string) []byte {
	return appendPart(appendPart(nil, provider), subject)
}

func signInKey(provider, subject, user, source string) []byte {
	return appendPart(appendPart(signInPrefix(provider, subject), user), source)
}

// parseSignInKey splits an index key into its four parts.
func parseSignInKey(k []byte) (parts [4]string, ok bool) {
	for i := range parts {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < n {
			return parts, false
		}
		parts[i] = string(k[w : w+int(n)])
		k = k[w+int(n):]
	}
	return parts, len(k) == 0
}

// signInEntry is one entry of the sign-in index.
type signInEntry struct {
	provider, subject, user, source, issuer string
}

func (e signInEntry) key() []byte { return signInKey(e.provider, e.subject, e.user, e.source) }

// matches reports whether the entry serves a sign-in with issuer: the
// entry's issuer, when it records one, must be the same.
func (e signInEntry) matches(issuer string) bool { return e.issuer == "" || e.issuer == issuer }

func grantEntry(g Grant) (signInEntry, bool) {
	return signInEntry{g.Provider, g.Subject, g.UserID, signInFromGrant + g.ID, g.Issuer}, g.Subject != "" && g.UserID != ""
}

func linkEntry(userID string, s SignIn) signInEntry {
	return signInEntry{s.Provider, s.Subject, userID, signInFromLink + s.Issuer, s.Issuer}
}

func (tx *Tx) signInBucket() (kv.Bucket, error) {
	b := tx.tx.Bucket(bucketSignIns)
	if b == nil {
		return nil, errors.New("vault: the sign-in index is missing (schema older than 2)")
	}
	return b, nil
}

func (tx *Tx) putSignIn(e signInEntry) error {
	b, err := tx.signInBucket()
	if err != nil {
		return err
	}
	return b.Put(e.key(), []byte(e.issuer))
}

func (tx *Tx) deleteSignIn(e signInEntry) error {
	b, err := tx.signInBucket()
	if err != nil {
		return err
	}
	return b.Delete(e.key())
}

// reindexGrant keeps the index in step when grant g replaces old (the
// zero Grant when there was none): PutGrant and DeleteGrant call it.
func (tx *Tx) reindexGrant(old, g Grant) error {
	oe, had := grantEntry(old)
	ne, has := grantEntry(g)
	if had && has && oe == ne {
		return nil
	}
	if had {
		if err := tx.deleteSignIn(oe); err != nil {
			return err
		}
	}
	if has {
		return tx.putSignIn(ne)
	}
	return nil
}

// reindexUser keeps the index in step when user u replaces old: PutUser
// and the deletion of a user call it.
func (tx *Tx) reindexUser(old, u User) error {
	for _, s := range old.SignIns {
		if u.ID == old.ID && slices.ContainsFunc(u.SignIns, func(n SignIn) bool { return linkEntry(u.ID, n) == linkEntry(old.ID, s) }) {
			continue
		}
		if err := tx.deleteSignIn(linkEntry(old.ID, s)); err != nil {
			return err
		}
	}
	for _, s := range u.SignIns {
		if err := tx.putSignIn(linkEntry(u.ID, s)); err != nil {
			return err
		}
	}
	return nil
}

// unindexWhere deletes every index entry keep says to drop: the deletion
// of a damaged record, whose fields cannot be read, scans for them.
func (tx *Tx) unindexWhere(drop func(parts [4]string) bool) error {
	b, err := tx.signInBucket()
	if err != nil {
		return err
	}
	var stale [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if parts, ok := parseSignInKey(k); ok && drop(parts) {
			stale = append(stale, slices.Clone(k))
		}
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// signInEntries returns the index entries of (provider, subject) that
// serve a sign-in with issuer.
func (tx *Tx) signInEntries(provider, issuer, subject string) ([]signInEntry, error) {
	b, err := tx.signInBucket()
	if err != nil {
		return nil, err
	}
	var out []signInEntry
	prefix := signInPrefix(provider, subject)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		parts, ok := parseSignInKey(k)
		if !ok {
			continue // CheckConsistency names it
		}
		e := signInEntry{parts[0], parts[1], parts[2], parts[3], string(v)}
		if e.matches(issuer) {
			out = append(out, e)
		}
	}
	return out, nil
}

// signInUsers returns the users, in id order, that (provider, issuer,
// subject) signs in.
func (tx *Tx) signInUsers(provider, issuer, subject string) ([]string, error) {
	es, err := tx.signInEntries(provider, issuer, subject)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range es {
		users = append(users, e.user)
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// indexExistingGrants is schema migration 1 -> 2: the sign-in index,
// with an entry for every grant already stored that names its account.
// A grant that does not decode is left out (FindDamaged reports it).
func indexExistingGrants(btx kv.Tx) error {
	b, err := btx.CreateBucketIfNotExists(bucketSignIns)
	if err != nil {
		return err
	}
	gb := btx.Bucket(bucketGrants)
	if gb == nil {
		return nil
	}
	return gb.ForEach(func(k, v []byte) error {
		g, err := decodeGrant(k, v)
		if err != nil {
			return nil
		}
		if e, ok := grantEntry(g); ok {
			return b.Put(e.key(), []byte(e.issuer))
		}
		return nil
	})
}

// UserBySignIn returns the user that an identity signs in to the user's
// page, from one read transaction: the user whose grant at provider has
// subject as its account (the subject that consented at enrollment; in
// any state), or to whom a sign-in link bound (provider, issuer,
// subject) (User.SignIns). The issuer must be the one the grant or the
// sign-in records, when it records one (an X grant records none).
//
// Errors: *InvalidError for an empty provider or subject;
// *NotFoundError (kind "sign-in") when the identity signs in nobody;
// *SignInConflictError (ErrSignInConflict) when it signs in more than one
// user (users sharing an account): none is chosen; *DamagedError when
// the user's record is damaged.
func (db *DB) UserBySignIn(provider, issuer, subject string) (User, error) {
	if provider == "" || subject == "" {
		return User{}, &InvalidError{Object: "sign-in", Err: errors.New("a provider and a subject are required")}
	}
	var u User
	err := db.View(func(tx *Tx) error {
		users, err := tx.signInUsers(provider, issuer, subject)
		if err != nil {
			return err
		}
		// A revoked grant kept for its pending revocation may outlive
		// its user (DeleteUser scrubs its account, but not every older
		// record): only users that exist count.
		var live []User
		for _, id := range users {
			u, err := tx.User(id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			live = append(live, u)
		}
		switch len(live) {
		case 0:
			return notFound("sign-in", provider+":"+subject)
		case 1:
			u = live[0]
			return nil
		}
		ids := make([]string, len(live))
		for i, u := range live {
			ids[i] = u.ID
		}
		return &SignInConflictError{Provider: provider, Subject: subject, Users: ids}
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// SignInConsent is what a sign-in link's flow learnt, for CommitSignIn:
// who signed in. It carries no token: a sign-in keeps none. Text from the
// provider is clipped by the caller.
type SignInConsent struct {
	// LinkHash is the key of the link the flow started from
	// (Enrollment.Hash); LinkID its public id, for errors.
	LinkHash, LinkID string
	// UserID and Provider are the link's as the flow started; a link that
	// changed meanwhile is refused.
	UserID, Provider string
	// Issuer and Subject are the verified ID token's iss and sub;
	// Username its preferred_username and Name its name (kept for a user
	// who has none).
	Issuer, Subject, Username, Name string
}

// SignInResult is what CommitSignIn did.
type SignInResult struct {
	// User is the user as stored, with the sign-in.
	User User
	// Link is the link as used.
	Link Enrollment
	// SignIn is the identity bound.
	SignIn SignIn
	// Already is set when the user had this sign-in bound before (its
	// username is updated, nothing else).
	Already bool
}

// CommitSignIn stores what a sign-in link's flow learnt, in one
// transaction: the link (PurposeSignIn) is consumed exactly once, as
// CommitConsent consumes an enrollment link (pending, still the user's
// and provider's the flow started with; a second commit is a
// *TransitionError and changes nothing); the identity (provider, issuer,
// subject) is added to the user's SignIns (one bound already keeps its
// BoundAt and takes the new username) and to the sign-in index; the user
// is given Name when it has none; the audit trail records it
// (AuditSignInBound, AuditEnrollmentUsed). No grant is made and no token
// stored.
//
// Errors: *InvalidError (no subject, or the link is not a sign-in link);
// *NotFoundError (the link, or its user, was deleted); *TransitionError
// (the link is used, canceled or expired, or changed during the flow);
// *SignInConflictError (ErrSignInConflict) when the identity already
// signs in another user, by a grant or a sign-in of theirs. On any error
// nothing is stored and the link stays as it was.
func (db *DB) CommitSignIn(c SignInConsent) (SignInResult, error) {
	var out SignInResult
	if c.Subject == "" || c.Provider == "" {
		return out, &InvalidError{Object: "sign-in", Err: errors.New("a provider and a subject are required")}
	}
	err := db.Update(func(tx *Tx) error {
		out = SignInResult{}
		now := tx.Now()
		e, err := tx.usableLink(c.LinkHash, c.LinkID, c.UserID, c.Provider, now)
		if err != nil {
			return err
		}
		if e.Purpose != PurposeSignIn {
			return &InvalidError{Object: "sign-in", Err: fmt.Errorf("link %s is a %s link, not a sign-in link", e.ID, e.Purpose)}
		}
		u, err := tx.User(e.UserID)
		if errors.Is(err, ErrNotFound) {
			return notFound("user", e.UserID)
		}
		if err != nil {
			return err
		}
		users, err := tx.signInUsers(e.Provider, c.Issuer, c.Subject)
		if err != nil {
			return err
		}
		if others := slices.DeleteFunc(slices.Clone(users), func(id string) bool { return id == u.ID }); len(others) > 0 {
			return &SignInConflictError{Provider: e.Provider, Subject: c.Subject, Users: others, Binding: u.ID}
		}
		s := SignIn{Provider: e.Provider, Issuer: c.Issuer, Subject: c.Subject, Username: c.Username, BoundAt: now}
		old := u
		u.SignIns = slices.Clone(u.SignIns)
		if i := slices.IndexFunc(u.SignIns, func(o SignIn) bool {
			return o.Provider == s.Provider && o.Issuer == s.Issuer && o.Subject == s.Subject
		}); i >= 0 {
			s.BoundAt = u.SignIns[i].BoundAt
			u.SignIns[i] = s
			out.Already = true
		} else {
			u.SignIns = append(u.SignIns, s)
		}
		if u.Name == "" && c.Name != "" {
			u.Name = c.Name
		}
		if err := tx.putUser(old, u); err != nil {
			return err
		}
		e.UsedAt = now
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}
		who := c.Subject
		if c.Username != "" {
			who += " (" + c.Username + ")"
		}
		detail := fmt.Sprintf("sign-in link %s bound subject %q at provider %s (issuer %q) to user %s", e.ID, c.Subject, e.Provider, c.Issuer, u.ID)
		if out.Already {
			detail += "; it was bound already"
		}
		if err := tx.Audit(AuditEvent{Kind: AuditSignInBound, Actor: who, UserID: u.ID, Detail: detail}); err != nil {
			return err
		}
		if err := tx.Audit(AuditEvent{Kind: AuditEnrollmentUsed, Actor: who, UserID: u.ID,
			Detail: fmt.Sprintf("%s link %s used at provider %s; no grant, no token kept", e.Purpose, e.ID, e.Provider)}); err != nil {
			return err
		}
		out.User, out.Link, out.SignIn = u, e, s
		return nil
	})
	if err != nil {
		return SignInResult{}, err
	}
	return out, nil
}

// usableLink reads the link a flow started from, as CommitConsent and
// CommitSignIn consume it: it must exist, be pending at now, and still be
// userID's at provider.
func (tx *Tx) usableLink(hash, id, userID, provider string, now time.Time) (Enrollment, error) {
	e, err := tx.Enrollment(hash)
	if errors.Is(err, ErrNotFound) {
		if id != "" {
			return Enrollment{}, notFound("consent link", id)
		}
		return Enrollment{}, linkNotFound(hash)
	}
	if err != nil {
		return Enrollment{}, err
	}
	if err := e.Usable(now); err != nil {
		return Enrollment{}, err
	}
	if e.UserID != userID || e.Provider != provider {
		return Enrollment{}, &TransitionError{Kind: "consent link", ID: e.ID, Action: "use", State: string(e.State(now)),
			Why: "its user or provider changed during the flow"}
	}
	return e, nil
}
