package vault

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Audit kinds of watch changes.
const (
	AuditWatchAdded   = "watch_added"
	AuditWatchChanged = "watch_changed"
	AuditWatchPaused  = "watch_paused"
	AuditWatchResumed = "watch_resumed"
	AuditWatchDeleted = "watch_deleted"
)

// NewWatch asks for a watch: whose, at which provider, doing what.
type NewWatch struct {
	UserID   string
	Provider string
	Spec     WatchSpec
}

// WatchChange changes the fields it sets; nil fields stay as they are.
type WatchChange struct {
	Hashtags        []string
	Lang            *string
	IncludeRetweets *bool
	Schedule        *string
	Targets         []string
}

func (c WatchChange) apply(s *WatchSpec) {
	if c.Hashtags != nil {
		s.Hashtags = slices.Clone(c.Hashtags)
	}
	if c.Lang != nil {
		s.Lang = *c.Lang
	}
	if c.IncludeRetweets != nil {
		s.IncludeRetweets = *c.IncludeRetweets
	}
	if c.Schedule != nil {
		s.Schedule = *c.Schedule
	}
	if c.Targets != nil {
		s.Targets = slices.Clone(c.Targets)
	}
}

// Owner limits a watch method to the watches of one user: a door that
// acts for a user (the user's page) passes it, so that the call only
// ever touches that user's watches. A watch of another user is answered
// exactly as an unknown one (*NotFoundError, `watch "x" does not
// exist`) and nothing changes; AddWatch refuses a grant of another user
// exactly as a missing one. Without it (the operator's doors, the
// daemon's own reactions) a method reaches every watch, as before.
type Owner struct {
	// UserID is the user whose watches the call may touch. Required: an
	// Owner without one is *InvalidError.
	UserID string
}

// ownerOf returns the user the Owner options name, and whether there is
// one: none is the operator's call. More than one Owner, or one without a
// user, is *InvalidError.
func ownerOf(os []Owner) (string, bool, error) {
	switch {
	case len(os) == 0:
		return "", false, nil
	case len(os) > 1:
		return "", false, &InvalidError{Object: "watch", Err: errors.New("at most one owner")}
	case os[0].UserID == "":
		return "", false, &InvalidError{Object: "watch", Err: errors.New("an owner names a user")}
	}
	return os[0].UserID, true, nil
}

// ownedWatch is tx.watch for a call limited to owner's watches (scoped):
// a watch of another user, or one whose record is damaged and not
// indexed as owner's, is a *NotFoundError naming id, as a missing one.
func (tx *Tx) ownedWatch(id, owner string, scoped bool) (Watch, error) {
	if !scoped {
		return tx.watch(id)
	}
	key := pair(owner, id)
	if k, _ := tx.tx.Bucket(bucketUserWatches).Cursor().Seek(key); !bytes.Equal(k, key) {
		return Watch{}, notFound("watch", id)
	}
	w, err := tx.watch(id)
	if err == nil && w.UserID != owner {
		return Watch{}, notFound("watch", id)
	}
	return w, err
}

// WatchWithCursor is a watch and where its runs stand.
type WatchWithCursor struct {
	Watch
	Cursor Cursor
}

// ErrDuplicateWatch means the user already has a watch that is the same
// (WatchSpec.Same) at that provider; errors.Is(err, ErrExists) holds too.
var ErrDuplicateWatch = fmt.Errorf("%w: the user has the same watch", ErrExists)

// AddWatch checks req against the rules and stores it, with an audit
// entry naming actor, in one transaction. The user must have a grant at
// the provider: the watch starts active when the grant is, suspended with
// the grant's cause otherwise. With an Owner, the grant must be the
// owner's (req.UserID empty: the owner's); a grant of another user is
// refused exactly as a missing one. Errors: *InvalidError for a watch the
// rules refuse or a user without a grant (or, with an Owner, another
// user's); ErrDuplicateWatch (with the existing watch returned) when the
// user has the same watch already.
func (db *DB) AddWatch(req NewWatch, actor string, owner ...Owner) (Watch, error) {
	spec := cloneSpec(req.Spec)
	who, scoped, err := ownerOf(owner)
	if err != nil {
		return Watch{}, err
	}
	if scoped && req.UserID == "" {
		req.UserID = who
	}
	if req.UserID == "" || req.Provider == "" {
		return Watch{}, &InvalidError{Object: "watch", Err: errors.New("a user and a provider are required")}
	}
	if err := db.CheckWatch(req.Provider, &spec); err != nil {
		return Watch{}, err
	}
	var w Watch
	err = db.Update(func(tx *Tx) error {
		w = Watch{}
		g, err := tx.UserGrant(req.UserID, req.Provider)
		if errors.Is(err, ErrNotFound) || (err == nil && scoped && (req.UserID != who || g.UserID != who)) {
			return &InvalidError{Object: "watch", Err: fmt.Errorf("user %q has no grant at provider %q: send them a consent link first", req.UserID, req.Provider)}
		}
		if err != nil {
			return err
		}
		if dup, ok, err := tx.sameWatch(req.UserID, req.Provider, spec); err != nil {
			return err
		} else if ok {
			w = dup
			return fmt.Errorf("%w (watch %s)", ErrDuplicateWatch, dup.ID)
		}
		w = Watch{ID: NewID(), UserID: req.UserID, Provider: req.Provider, WatchSpec: spec, State: WatchActive}
		w.Suspend(grantReason(g.State))
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditWatchAdded, Actor: actor, UserID: w.UserID, GrantID: g.ID, Detail: watchDetail(w)})
	})
	return w, err
}

// sameWatch returns the user's watch at provider that is the same as spec.
func (tx *Tx) sameWatch(userID, provider string, spec WatchSpec) (Watch, bool, error) {
	return tx.sameWatchBut(userID, provider, spec, "")
}

// sameWatchBut is sameWatch ignoring the watch with id except.
func (tx *Tx) sameWatchBut(userID, provider string, spec WatchSpec, except string) (Watch, bool, error) {
	var found Watch
	err := tx.UserWatches(userID, func(w Watch) error {
		if w.Provider == provider && w.ID != except && w.WatchSpec.Same(spec) {
			found = w
			return errStop
		}
		return nil
	})
	if err == errStop {
		return found, true, nil
	}
	return Watch{}, false, err
}

// ChangeWatch applies c to the watch with id, checks the result against
// the rules and stores it with an audit entry, in one transaction. Its
// state does not change. With an Owner, a watch of another user is
// *NotFoundError, as a missing one. Errors: *NotFoundError,
// *InvalidError; ErrDuplicateWatch (with the other watch returned) when
// the change would make it the same as another watch of the user
// (WatchSpec.Same), which AddWatch and CommitConsent refuse to create
// too.
func (db *DB) ChangeWatch(id string, c WatchChange, actor string, owner ...Owner) (Watch, error) {
	who, scoped, err := ownerOf(owner)
	if err != nil {
		return Watch{}, err
	}
	var w Watch
	err = db.Update(func(tx *Tx) error {
		var err error
		if w, err = tx.ownedWatch(id, who, scoped); err != nil {
			return err
		}
		spec := cloneSpec(w.WatchSpec)
		c.apply(&spec)
		if err := db.CheckWatch(w.Provider, &spec); err != nil {
			return err
		}
		if dup, ok, err := tx.sameWatchBut(w.UserID, w.Provider, spec, w.ID); err != nil {
			return err
		} else if ok {
			w = dup
			return fmt.Errorf("%w (watch %s)", ErrDuplicateWatch, dup.ID)
		}
		w.WatchSpec = spec
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditWatchChanged, Actor: actor, UserID: w.UserID, Detail: watchDetail(w)})
	})
	return w, err
}

// PauseWatch pauses the watch with id (Watch.Pause) and audits it, in one
// transaction. It reports whether the watch changed (pausing a paused
// watch is not an error). With an Owner, a watch of another user is
// *NotFoundError, as a missing one. Errors: *NotFoundError.
func (db *DB) PauseWatch(id, actor string, owner ...Owner) (Watch, bool, error) {
	return db.moveWatch(id, actor, owner, AuditWatchPaused, func(tx *Tx, w *Watch) (bool, error) { return w.Pause(), nil })
}

// ResumeWatch resumes the watch with id (Watch.Resume, against the state
// of the user's grant) and audits it, in one transaction. A paused watch
// whose grant is not active goes back to suspended, not active. With an
// Owner, a watch of another user is *NotFoundError, as a missing one.
// Errors: *NotFoundError, *TransitionError (a suspension whose cause is
// still there).
func (db *DB) ResumeWatch(id, actor string, owner ...Owner) (Watch, bool, error) {
	return db.moveWatch(id, actor, owner, AuditWatchResumed, func(tx *Tx, w *Watch) (bool, error) {
		var gs GrantState
		g, err := tx.UserGrant(w.UserID, w.Provider)
		switch {
		case err == nil:
			gs = g.State
		case !errors.Is(err, ErrNotFound):
			return false, err
		}
		return w.Resume(gs)
	})
}

func (db *DB) moveWatch(id, actor string, owner []Owner, kind string, move func(*Tx, *Watch) (bool, error)) (Watch, bool, error) {
	who, scoped, err := ownerOf(owner)
	if err != nil {
		return Watch{}, false, err
	}
	var w Watch
	var changed bool
	err = db.Update(func(tx *Tx) error {
		w, changed = Watch{}, false
		var err error
		if w, err = tx.ownedWatch(id, who, scoped); err != nil {
			return err
		}
		if changed, err = move(tx, &w); err != nil || !changed {
			return err
		}
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: kind, Actor: actor, UserID: w.UserID, Detail: watchDetail(w)})
	})
	return w, changed, err
}

// DeleteWatch removes the watch with id, its cursor and its seen index,
// and audits it, in one transaction; it returns the watch as it was.
// With an Owner, a watch of another user is *NotFoundError, as a missing
// one. Errors: *NotFoundError.
func (db *DB) DeleteWatch(id, actor string, owner ...Owner) (Watch, error) {
	who, scoped, err := ownerOf(owner)
	if err != nil {
		return Watch{}, err
	}
	var w Watch
	err = db.Update(func(tx *Tx) error {
		var err error
		if w, err = tx.ownedWatch(id, who, scoped); err != nil {
			return err
		}
		if err := tx.DeleteWatch(id); err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditWatchDeleted, Actor: actor, UserID: w.UserID, Detail: watchDetail(w)})
	})
	return w, err
}

// Watch returns the watch with id and its cursor. Errors: *NotFoundError;
// *DamagedError naming the watch or its cursor.
func (db *DB) Watch(id string) (WatchWithCursor, error) {
	var out WatchWithCursor
	err := db.View(func(tx *Tx) error {
		w, err := tx.watch(id)
		if err != nil {
			return err
		}
		c, err := tx.Cursor(id)
		out = WatchWithCursor{Watch: w, Cursor: c}
		return err
	})
	return out, err
}

// UserWatch returns owner's watch with id and its cursor, from one read
// transaction: the user's page reads a watch this way. A watch of another
// user is answered exactly as a missing one. Errors: *InvalidError for an
// empty owner (an operator reads with Watch); *NotFoundError naming the
// watch; *DamagedError naming the watch or its cursor.
func (db *DB) UserWatch(owner, id string) (WatchWithCursor, error) {
	if owner == "" {
		return WatchWithCursor{}, &InvalidError{Object: "watch", Err: errors.New("an owner names a user")}
	}
	var out WatchWithCursor
	err := db.View(func(tx *Tx) error {
		w, err := tx.ownedWatch(id, owner, true)
		if err != nil {
			return err
		}
		c, err := tx.Cursor(id)
		out = WatchWithCursor{Watch: w, Cursor: c}
		return err
	})
	return out, err
}

// ListWatches returns every watch (of userID only, when it is not empty)
// with its cursor, in id order, from one read transaction. A user without
// watches gives none, not an error. Damaged watches are left out; a watch
// whose cursor is damaged is listed with the zero cursor (FindDamaged
// reports both; RunnableWatches runs neither). Errors: only the store's
// own.
func (db *DB) ListWatches(userID string) ([]WatchWithCursor, error) {
	var out []WatchWithCursor
	err := db.View(func(tx *Tx) error {
		out = nil
		each := func(w Watch) error {
			c, err := tx.Cursor(w.ID)
			if err != nil && !errors.Is(err, ErrDamaged) {
				return err
			}
			out = append(out, WatchWithCursor{Watch: w, Cursor: c})
			return nil
		}
		if userID != "" {
			return tx.UserWatches(userID, each)
		}
		return tx.Watches(each)
	})
	return out, err
}

// SuspendProviderWatches suspends, for reason r, every watch of a
// provider that Watch.Suspend changes, in one transaction, and returns
// their ids (none changed: empty, not an error). Errors: only the store's
// own; nothing changes then.
func (db *DB) SuspendProviderWatches(provider string, r SuspendReason) ([]string, error) {
	var ids []string
	err := db.Update(func(tx *Tx) error {
		var err error
		ids, err = tx.setProviderWatches(provider, func(w *Watch) bool { return w.Suspend(r) })
		return err
	})
	return ids, err
}

// ClearProviderWatches records that cause r is gone for every watch of a
// provider (Watch.Clear), in one transaction, and returns the ids of the
// watches that changed. Errors: only the store's own; nothing changes
// then.
func (db *DB) ClearProviderWatches(provider string, r SuspendReason) ([]string, error) {
	var ids []string
	err := db.Update(func(tx *Tx) error {
		var err error
		ids, err = tx.setProviderWatches(provider, func(w *Watch) bool { return w.Clear(r) })
		return err
	})
	return ids, err
}

// suspendUserWatches suspends the user's watches at provider for r
// (Watch.Suspend) and returns the targets of all of them (once each) and
// their hashtags, for the notice that tells the user.
func (tx *Tx) suspendUserWatches(userID, provider string, r SuspendReason) (targets, hashtags []string, err error) {
	var changed []Watch
	err = tx.UserWatches(userID, func(w Watch) error {
		if w.Provider != provider {
			return nil
		}
		for _, t := range w.Targets {
			if !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
		for _, h := range w.Hashtags {
			if !slices.Contains(hashtags, h) {
				hashtags = append(hashtags, h)
			}
		}
		if w.Suspend(r) {
			changed = append(changed, w)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, w := range changed {
		if err := tx.PutWatch(w); err != nil {
			return nil, nil, err
		}
	}
	return targets, hashtags, nil
}

// watch is Tx.Watch with a *NotFoundError that names the watch.
func (tx *Tx) watch(id string) (Watch, error) {
	w, err := tx.Watch(id)
	if errors.Is(err, ErrNotFound) {
		return Watch{}, notFound("watch", id)
	}
	return w, err
}

func cloneSpec(s WatchSpec) WatchSpec {
	s.Hashtags = slices.Clone(s.Hashtags)
	s.Targets = slices.Clone(s.Targets)
	return s
}

// watchDetail is a watch as the audit trail records it: no target, since
// a target URL may carry a secret.
func watchDetail(w Watch) string {
	return fmt.Sprintf("watch %s at %s: #%s, schedule %q, %s, state %s", w.ID, w.Provider,
		strings.Join(w.Hashtags, " #"), w.Schedule, count(len(w.Targets), "target", "targets"), w.StateText())
}
