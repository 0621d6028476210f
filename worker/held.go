package worker

import (
	"fmt"
	"time"

	"tagwatch/vault"
)

// This file says what a rate-limit hold means for one watch, so every door
// answers alike: Status's Next is when the watch next asks its provider
// (not a scheduled fire the hold skips without a request), and RunNow
// refuses a manual run the hold would skip, naming the hold and until
// when, instead of queueing a run that asks nothing.

// String names the hold for operators: "the provider's per-user window of
// /2/tweets/search/recent at x until 2026-11-26 12:15:01Z".
func (h Hold) String() string {
	window := h.Window + " window"
	switch h.Window {
	case HoldPerUser:
		window = "the provider's per-user window"
	case HoldFairShare:
		window = "the user's fair share of the app-wide window"
	}
	return fmt.Sprintf("%s of %s at %s until %s", window, h.Endpoint, h.Provider, h.Until.UTC().Format("2006-01-02 15:04:05Z"))
}

// heldError is RunNow's answer for a watch whose user's runs a rate limit
// holds: a *vault.TransitionError (errors.Is vault.ErrConflict) naming the
// hold, until when, and when the watch next asks its provider.
func heldError(watchID string, h Hold, next time.Time) error {
	why := "it runs when the hold ends; ask again after " + h.Until.UTC().Format("2006-01-02 15:04:05Z")
	if !next.IsZero() {
		why = "its next run asks the provider at " + next.UTC().Format("2006-01-02 15:04:05Z") + "; or ask again after " +
			h.Until.UTC().Format("2006-01-02 15:04:05Z")
	}
	return &vault.TransitionError{Kind: "watch", ID: watchID, Action: "run now", State: "held by a rate limit: " + h.String(), Why: why}
}

// heldNext returns, when a rate limit holds the runs of wt's user at its
// provider, the hold and the first fire of the watch's schedule at or
// after the hold's end (the hold's end when the watch is not scheduled or
// its schedule has no fire then): the fires before it are skipped without
// a request.
func (w *Worker) heldNext(wt vault.Watch) (Hold, time.Time, bool) {
	h, ok := w.HoldOf(wt.UserID, wt.Provider)
	if !ok {
		return Hold{}, time.Time{}, false
	}
	next, err := w.engine.FireFrom(wt.ID, h.Until)
	if err != nil || next.IsZero() {
		next = h.Until
	}
	return h, next, true
}
