package notify

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"tagwatch/vault"
)

// The operator's views of the outbox, served by the notifier so that
// every door shows the same thing: counts per target, rows by state, and
// Replay. None needs a running loop. Targets appear only as their
// TargetLabel.

// OutboxView is the outbox as operators see it.
type OutboxView struct {
	// Targets counts each target's rows by state, sorted by label.
	Targets []TargetCounts `json:"targets"`
	// Rows are the rows in the state asked for, oldest first.
	Rows []OutboxEntry `json:"rows"`
	// Disabled are the labels of targets that answered 410 Gone since the
	// daemon started (until a replay enables them again), sorted.
	Disabled []string `json:"disabled,omitempty"`
}

// TargetCounts counts one target's rows by state. Its fields are those of
// the status API's OutboxTarget.
type TargetCounts struct {
	Target    string `json:"target"` // TargetLabel
	Pending   int    `json:"pending"`
	Retrying  int    `json:"retrying"`
	Dead      int    `json:"dead"`
	Dropped   int    `json:"dropped"`
	Delivered int    `json:"delivered"`
	// OldestWaiting is the creation time of the oldest pending or retrying row.
	OldestWaiting time.Time `json:"oldest_waiting,omitzero"`
}

// OutboxEntry is one row without its payload or sealed secret. Its fields
// are those of the status API's OutboxRow.
type OutboxEntry struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	UserID      string    `json:"user_id"`
	WatchID     string    `json:"watch_id,omitempty"`
	Target      string    `json:"target"` // TargetLabel
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Entry returns what operators see of r.
func Entry(r vault.OutboxRow) OutboxEntry {
	e := OutboxEntry{ID: r.ID, Kind: r.Kind, UserID: r.UserID, WatchID: r.WatchID, Target: TargetLabel(r.Target),
		State: string(r.State), Attempts: r.Attempts, CreatedAt: r.CreatedAt, LastError: r.LastError}
	if r.State == vault.OutboxPending || r.State == vault.OutboxRetrying {
		e.NextAttempt = r.NextAttempt
	}
	return e
}

// Outbox counts every target's rows by state and lists up to limit rows
// (limit <= 0: all) in state, oldest first: "" lists the dead letters,
// "all" every row, otherwise one of pending, retrying, delivered, dead,
// dropped. The counts and the rows come from two read transactions. It
// reads every row: it is for operators, not for hot paths. Errors:
// *vault.InvalidError for an unknown state; the store's, wrapped.
func (s *Service) Outbox(state string, limit int) (OutboxView, error) {
	var st vault.OutboxState
	switch state {
	case "":
		st = vault.OutboxDead
	case "all":
	default:
		st = vault.OutboxState(state)
	}
	rows, err := s.outbox.ListOutbox(st, limit)
	var inv *vault.InvalidError
	if errors.As(err, &inv) {
		return OutboxView{}, &vault.InvalidError{Object: "outbox view", Err: fmt.Errorf("state %q is not pending, retrying, delivered, dead, dropped or all", state)}
	}
	if err != nil {
		return OutboxView{}, fmt.Errorf("notify: outbox rows: %w", err)
	}
	tallies, err := s.outbox.OutboxTallies()
	if err != nil {
		return OutboxView{}, fmt.Errorf("notify: outbox counts: %w", err)
	}
	v := OutboxView{Targets: make([]TargetCounts, 0, len(tallies)), Rows: make([]OutboxEntry, 0, len(rows))}
	for _, t := range tallies {
		v.Targets = append(v.Targets, TargetCounts{Target: TargetLabel(t.Target), Pending: t.Pending, Retrying: t.Retrying,
			Dead: t.Dead, Dropped: t.Dropped, Delivered: t.Delivered, OldestWaiting: t.OldestWaiting})
	}
	sort.SliceStable(v.Targets, func(i, j int) bool { return v.Targets[i].Target < v.Targets[j].Target })
	for _, r := range rows {
		v.Rows = append(v.Rows, Entry(r))
	}
	s.mu.Lock()
	for t := range s.disabled {
		v.Disabled = append(v.Disabled, TargetLabel(t))
	}
	s.mu.Unlock()
	sort.Strings(v.Disabled)
	return v, nil
}

// Replay sends a dead or dropped row again under the same id, due now,
// with a fresh retry schedule, and records an audit entry naming actor,
// in one transaction (vault.DB.ReplayOutbox). A target disabled by 410 is
// enabled again. It needs no running loop: on a stopped daemon the row
// goes out at the next start. It returns the row as committed.
//
// Errors: *vault.NotFoundError (`notification "x" does not exist`);
// *vault.TransitionError for a row that is not dead or dropped (`cannot
// replay notification x: it is delivered; only dead or dropped ones are
// replayed`); the store's, wrapped.
func (s *Service) Replay(id, actor string) (OutboxEntry, error) {
	r, err := s.outbox.ReplayOutbox(id, actor)
	switch {
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrConflict):
		return OutboxEntry{}, err
	case err != nil:
		return OutboxEntry{}, fmt.Errorf("notify: replay notification %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.disabled, r.Target)
	s.mu.Unlock()
	label := TargetLabel(r.Target)
	s.log.Info("notification replayed", "id", id, "target", label, "actor", actor)
	s.emit(Event{Kind: EventReplayed, ID: id, Target: label})
	s.Kick()
	return Entry(r), nil
}
