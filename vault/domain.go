package vault

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file is the one place where watches, grants and consent links
// change state. Every door (the status socket, the offline subcommands,
// the consent pages, the daemon's own reactions) goes through the DB
// methods in watches.go, consent.go and grants.go, which call these
// transitions inside their transaction; none writes a State field itself.

var (
	// ErrConflict means a record is not in a state that allows the change
	// asked for (pause a suspended-by-cap watch, use a used link, ...).
	// Errors carrying it are *TransitionError.
	ErrConflict = errors.New("vault: conflict")
	// ErrInvalid means a request breaks a domain rule (a watch the rules
	// refuse, a missing field). Errors carrying it are *InvalidError.
	ErrInvalid = errors.New("vault: invalid")
)

// NotFoundError says which record does not exist. errors.Is(err,
// ErrNotFound) is true for it.
type NotFoundError struct {
	// Kind is the record's kind as people say it: "watch", "grant",
	// "consent link", "notification", "user".
	Kind string
	// ID is the id that was asked for.
	ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q does not exist", e.Kind, e.ID) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(kind, id string) error { return &NotFoundError{Kind: kind, ID: id} }

// TransitionError says that a record cannot make the change asked for from
// the state it is in, and why. errors.Is(err, ErrConflict) is true for it.
type TransitionError struct {
	// Kind and ID name the record ("watch", "01h...").
	Kind, ID string
	// Action is what was asked ("pause", "resume", "use").
	Action string
	// State is the record's state, with its reason when it has one.
	State string
	// Why says what would make the change possible, in an operator's words.
	Why string
}

func (e *TransitionError) Error() string {
	s := fmt.Sprintf("cannot %s %s %s: it is %s", e.Action, e.Kind, e.ID, e.State)
	if e.Why != "" {
		s += "; " + e.Why
	}
	return s
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *TransitionError) Is(target error) bool { return target == ErrConflict }

// InvalidError says that a request breaks a domain rule. Object names what
// was refused ("watch", "consent link for user zed"); Err says why and,
// for a field, which one. errors.Is(err, ErrInvalid) is true for it.
type InvalidError struct {
	Object string
	Err    error
}

func (e *InvalidError) Error() string {
	if e.Object == "" {
		return e.Err.Error()
	}
	return e.Object + ": " + e.Err.Error()
}

// Unwrap returns the rule's error.
func (e *InvalidError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// SuspendReason says why a watch is suspended: the cause that must clear
// before it runs again. Its values are stored and shown to operators.
type SuspendReason string

// Suspend reasons.
const (
	// SuspendNone: not suspended.
	SuspendNone SuspendReason = ""
	// SuspendNeedsReconsent: the user's grant at the provider is dead (a
	// refresh was refused, permissions shrank); a re-consent clears it.
	SuspendNeedsReconsent SuspendReason = "needs_reconsent"
	// SuspendRevoked: the user's grant was revoked (unenroll, one-click
	// revoke); a new consent by the user clears it.
	SuspendRevoked SuspendReason = "revoked"
	// SuspendUsageCapped: the provider's app-wide usage cap is reached;
	// the daemon clears it when a probe gets through.
	SuspendUsageCapped SuspendReason = "usage_capped"
)

// Valid reports whether r is one of the reasons above.
func (r SuspendReason) Valid() bool {
	switch r {
	case SuspendNone, SuspendNeedsReconsent, SuspendRevoked, SuspendUsageCapped:
		return true
	}
	return false
}

// grantCause reports whether r is a grant's cause (cleared by a consent).
func (r SuspendReason) grantCause() bool { return r == SuspendNeedsReconsent || r == SuspendRevoked }

// Describe says in an operator's words what clears the reason.
func (r SuspendReason) Describe() string {
	switch r {
	case SuspendNeedsReconsent:
		return "it resumes when the user consents again (a re-consent link was sent)"
	case SuspendRevoked:
		return "its grant was revoked: it resumes when the user enrolls again, or delete it"
	case SuspendUsageCapped:
		return "the provider's usage cap is reached: it resumes by itself when the cap resets"
	}
	return ""
}

// StateText is a watch's state as people read it: "active", "paused",
// "suspended (needs_reconsent)", or "paused; its grant needs_reconsent"
// for a paused watch that would be suspended if resumed.
func (w Watch) StateText() string {
	switch {
	case w.State == WatchSuspended:
		return fmt.Sprintf("suspended (%s)", w.SuspendReason)
	case w.State == WatchPaused && w.SuspendReason != SuspendNone:
		return fmt.Sprintf("paused; also suspended (%s)", w.SuspendReason)
	}
	return string(w.State)
}

func (w *Watch) conflict(action, why string) error {
	return &TransitionError{Kind: "watch", ID: w.ID, Action: action, State: w.StateText(), Why: why}
}

// Pause records that the user or an operator wants the watch stopped. An
// active watch becomes paused; a suspended one becomes paused too and
// keeps its suspension as a pending reason (so resuming it later does not
// skip the cause). Pausing a paused watch changes nothing. It reports
// whether the watch changed.
func (w *Watch) Pause() bool {
	switch w.State {
	case WatchPaused:
		return false
	case WatchActive, WatchSuspended:
		w.State = WatchPaused
		return true
	}
	return false
}

// Resume lifts a pause. grant is the state of the user's grant at the
// watch's provider ("" when there is none). A paused watch becomes active
// when nothing else holds it, and suspended with the cause that does
// otherwise (a pending reason, or a grant that is not active). A
// suspended watch resumes only when its cause has cleared: a grant cause
// once the grant is active again; a usage cap never by hand. Resuming an
// active watch changes nothing. It reports whether the watch changed;
// refusals are *TransitionError.
func (w *Watch) Resume(grant GrantState) (bool, error) {
	hold := w.SuspendReason
	if hold.grantCause() && grant == GrantActive {
		hold = SuspendNone
	}
	if hold == SuspendNone && grant != GrantActive {
		hold = grantReason(grant)
	}
	switch w.State {
	case WatchActive:
		return false, nil
	case WatchPaused:
		if hold == SuspendNone {
			w.State, w.SuspendReason = WatchActive, SuspendNone
		} else {
			w.State, w.SuspendReason = WatchSuspended, hold
		}
		return true, nil
	case WatchSuspended:
		if hold != SuspendNone {
			return false, w.conflict("resume", hold.Describe())
		}
		w.State, w.SuspendReason = WatchActive, SuspendNone
		return true, nil
	}
	return false, w.conflict("resume", "")
}

// grantReason is the suspend reason a grant in state s imposes.
func grantReason(s GrantState) SuspendReason {
	switch s {
	case GrantActive:
		return SuspendNone
	case GrantNeedsReconsent:
		return SuspendNeedsReconsent
	}
	// Revoked, or no grant at all.
	return SuspendRevoked
}

// Suspend holds the watch for reason r. An active watch becomes suspended;
// a paused one stays paused with r pending; a suspended one takes r when r
// is a grant cause (a dead grant outranks a usage cap), and keeps its
// reason otherwise. It reports whether the watch changed.
func (w *Watch) Suspend(r SuspendReason) bool {
	if r == SuspendNone {
		return false
	}
	switch w.State {
	case WatchActive:
		w.State, w.SuspendReason = WatchSuspended, r
		return true
	case WatchPaused, WatchSuspended:
		if w.SuspendReason == r || (w.SuspendReason.grantCause() && !r.grantCause()) {
			return false
		}
		w.SuspendReason = r
		return true
	}
	return false
}

// Clear records that cause r is gone: a watch suspended for r becomes
// active, a paused one forgets r as its pending reason. A grant cause
// clears both grant causes (a new consent answers a revocation too). It
// reports whether the watch changed.
func (w *Watch) Clear(r SuspendReason) bool {
	match := w.SuspendReason == r || (r.grantCause() && w.SuspendReason.grantCause())
	if r == SuspendNone || !match {
		return false
	}
	if w.State == WatchSuspended {
		w.State = WatchActive
	}
	w.SuspendReason = SuspendNone
	return true
}

// Runs reports whether the scheduler should run the watch: active ones,
// and those suspended by a usage cap (their runs are the cap's probes).
func (w Watch) Runs() bool {
	return w.State == WatchActive || (w.State == WatchSuspended && w.SuspendReason == SuspendUsageCapped)
}

// Same reports whether two specs describe the same watch: the same
// hashtags (in any order, case-insensitively), schedule, targets (in any
// order), language, reposts and backfill. A second consent link for a
// watch the user has already leaves one watch, not two.
func (s WatchSpec) Same(o WatchSpec) bool {
	norm := func(xs []string, fold bool) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			if fold {
				x = strings.ToLower(x)
			}
			out[i] = x
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(s.Hashtags, true), norm(o.Hashtags, true)) &&
		s.Schedule == o.Schedule && slices.Equal(norm(s.Targets, false), norm(o.Targets, false)) &&
		strings.EqualFold(s.Lang, o.Lang) && s.IncludeRetweets == o.IncludeRetweets
}

// grantTransitions lists the allowed moves of a grant (ARCHITECTURE.md,
// Lifecycles): active → needs_reconsent | revoked; needs_reconsent →
// active (a consent) | revoked; revoked is final (the grant is deleted
// after revocation at the provider, or replaced by a new consent).
var grantTransitions = map[GrantState][]GrantState{
	GrantActive:         {GrantNeedsReconsent, GrantRevoked},
	GrantNeedsReconsent: {GrantActive, GrantRevoked},
	GrantRevoked:        {},
}

// SetState moves the grant to state to at now, or returns a
// *TransitionError when the lifecycle does not allow it. Setting the
// state it is in changes nothing and reports false.
func (g *Grant) SetState(to GrantState, now time.Time) (bool, error) {
	if g.State == to {
		return false, nil
	}
	if !slices.Contains(grantTransitions[g.State], to) {
		return false, &TransitionError{Kind: "grant", ID: g.ID, Action: "move to " + string(to), State: string(g.State)}
	}
	g.State, g.StateSince = to, now
	return true, nil
}

// LinkState is where a consent link is in its life.
type LinkState string

// Link states.
const (
	LinkPending  LinkState = "pending"
	LinkUsed     LinkState = "used"
	LinkExpired  LinkState = "expired"
	LinkCanceled LinkState = "canceled"
)

// State returns the link's state at now. A used link is used even after
// it expires; a canceled one is canceled even after it expires.
func (e Enrollment) State(now time.Time) LinkState {
	switch {
	case !e.UsedAt.IsZero():
		return LinkUsed
	case e.Canceled:
		return LinkCanceled
	case !now.Before(e.ExpiresAt):
		return LinkExpired
	}
	return LinkPending
}

// Usable returns nil when the link can be used at now, or a
// *TransitionError saying why not.
func (e Enrollment) Usable(now time.Time) error {
	if st := e.State(now); st != LinkPending {
		return &TransitionError{Kind: "consent link", ID: e.ID, Action: "use", State: string(st)}
	}
	return nil
}
