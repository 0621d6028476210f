package worker

import (
	"errors"
	"fmt"
	"slices"

	"tagwatch/vault"
)

// RuleChecker applies the current rules of a valid watch without storing
// anything: vault.DB.CheckWatch, which every Store has.
type RuleChecker interface {
	CheckWatch(provider string, spec *vault.WatchSpec) error
}

// Refused returns why the current rules refuse the stored watch w: the
// rule's own error, such as `schedule "@every 5m" runs every 5m0s; the
// minimum between runs of one watch is 20m0s (scheduler.min_interval)`,
// or nil when they accept it. A watch stored under earlier rules (a lower
// scheduler.min_interval, a webhook whose secret has since been removed
// from the configuration) is refused here as check-config refuses it.
//
// Only a refusal counts (an error that is vault.ErrInvalid): a store
// without rules, as a tool that opens the vault without a configuration
// has it, refuses nothing here. w is not changed.
//
// The scheduler decides with it (Reload and Upsert leave a refused watch
// out of the schedule, RunNow refuses it, a run skips it) and the
// operator's views show it, so every door gives the same answer.
func Refused(rc RuleChecker, w vault.Watch) error {
	spec := w.WatchSpec
	spec.Hashtags, spec.Targets = slices.Clone(spec.Hashtags), slices.Clone(spec.Targets)
	err := rc.CheckWatch(w.Provider, &spec)
	if err == nil || !errors.Is(err, vault.ErrInvalid) {
		return nil
	}
	var ie *vault.InvalidError
	if errors.As(err, &ie) && ie.Err != nil {
		return ie.Err
	}
	return err
}

// refusedError is RunNow's answer for a watch the rules refuse: a
// *vault.InvalidError naming the watch, with the rule's error.
func refusedError(watchID string, why error) error {
	return &vault.InvalidError{Object: fmt.Sprintf("watch %q", watchID),
		Err: fmt.Errorf("refused by the current rules, so it does not run: %w", why)}
}

// refuse takes a watch the current rules refuse out of the schedule and
// records why (Status, the "watches loaded" count). It logs at Warn, with
// the watch and the rule's message, once: when the watch is first refused
// or the reason changes, not on every reload while it stays refused.
func (w *Worker) refuse(wt vault.Watch, why error) {
	w.unschedule(wt.ID)
	msg := why.Error()
	w.mu.Lock()
	prev, had := w.invalid[wt.ID]
	w.invalid[wt.ID] = msg
	w.mu.Unlock()
	if !had || prev != msg {
		w.logRefused(wt, msg)
	}
}

func (w *Worker) logRefused(wt vault.Watch, msg string) {
	w.log.Warn("watch refused by the current rules: not scheduled, not run", "watch", wt.ID, "user", wt.UserID,
		"provider", wt.Provider, "err", msg)
}

// accepted forgets that a watch was refused, and logs it when it was.
func (w *Worker) accepted(wt vault.Watch) {
	w.mu.Lock()
	_, had := w.invalid[wt.ID]
	delete(w.invalid, wt.ID)
	w.mu.Unlock()
	if had {
		w.log.Info("watch accepted by the current rules again: scheduled", "watch", wt.ID, "user", wt.UserID, "provider", wt.Provider)
	}
}
