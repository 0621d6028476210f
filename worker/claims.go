package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/worker/sched"
)

// ClaimKind is the kv.Claim.Kind of a watch's run: the claim's ID is the
// watch's id, its Round the fire's (runRound).
const ClaimKind = "watch"

// Claims is what the worker needs of the claims of the daemons sharing a
// store (kv.Cluster; *vault.DB's Cluster() gives it): one claim, with a
// lease, on each round of each watch. See kv.Cluster for the rules: a
// claim is taken when nobody holds it, when its holder's lease ended
// and its round is older or was not done; a round released done is
// never taken again. Both methods are safe for concurrent use.
type Claims = kv.Claimer

// releaseTimeout bounds a Release, which runs after its run's context
// may have ended (a shutdown gives the round back).
const releaseTimeout = 5 * time.Second

// runRound is the claim's Round of a fire: the time it was due, in Unix
// nanoseconds. The engine's phases are a pure function of the watch's
// id (sched: phase), so every daemon scheduling a watch fires it at the
// same Scheduled time, and that time names the round. A catch-up fire is
// due at a time that depends on when the daemon started: its round is
// the instant before the schedule's next fire, the same for every daemon
// catching up in the same period, and older than that next fire's own
// round. A manual or coalesced fire is due when it was asked for: a
// round of its own, newer than every scheduled fire before it (a late
// scheduled fire of an older round then finds a newer round done and is
// not run again).
func (w *Worker) runRound(f sched.Fire) int64 {
	if f.Reason == sched.CatchUp {
		if next, err := w.engine.FireFrom(f.Key, f.Scheduled); err == nil && !next.IsZero() {
			return next.UnixNano() - 1
		}
	}
	return f.ScheduledNano()
}

// heldClaim is the claim on one round of one watch while its run goes on.
// A run longer than a third of the lease extends it (Claim again by the
// same holder), so a live daemon's claim does not lapse under a slow run;
// a run whose claim was taken over meanwhile (this daemon was cut off
// from the store for longer than the lease) is cancelled.
type heldClaim struct {
	w      *Worker
	c      kv.Claim
	cancel context.CancelFunc // the run's

	mu    sync.Mutex
	ended bool
	timer *time.Timer
}

// claim takes the claim on fire f's round for this daemon. It returns
// nil, true without Claims (one daemon: every fire runs); nil, false
// when the run must not happen here: another daemon holds it or ran the
// round (debug log, EventClaimedElsewhere), or the store did not answer
// (EventSkipped, SkipNoClaim; logged at Warn once per outage).
func (w *Worker) claim(ctx context.Context, f sched.Fire, start time.Time, cancel context.CancelFunc) (*heldClaim, bool) {
	if w.cfg.Claims == nil {
		return nil, true
	}
	c := kv.Claim{Kind: ClaimKind, ID: f.Key, Round: w.runRound(f), Holder: w.cfg.Holder, Lease: w.cfg.Lease}
	ok, err := w.cfg.Claims.Claim(ctx, c)
	if err != nil && ctx.Err() != nil {
		return nil, false // the daemon stops: not an outage, and nothing to run
	}
	w.claimOutage(err)
	switch {
	case err != nil:
		w.cfg.Observer(Event{Kind: EventSkipped, WatchID: f.Key, Reason: SkipNoClaim, Err: err, Lag: start.Sub(f.Scheduled), Time: start})
		return nil, false
	case !ok:
		if f.Reason == sched.Manual {
			w.log.Info("manual run not started: another daemon is running this watch now", "watch", f.Key)
		} else {
			w.log.Debug("watch run claimed by another daemon", "watch", f.Key, "round", time.Unix(0, c.Round))
		}
		w.cfg.Observer(Event{Kind: EventClaimedElsewhere, WatchID: f.Key, Reason: f.Reason.String(), Lag: start.Sub(f.Scheduled), Time: start})
		return nil, false
	}
	h := &heldClaim{w: w, c: c, cancel: cancel}
	h.mu.Lock()
	h.timer = time.AfterFunc(w.cfg.Lease/3, func() { h.extend(ctx) })
	h.mu.Unlock()
	return h, true
}

// extend renews the claim's lease while the run goes on.
func (h *heldClaim) extend(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended || ctx.Err() != nil {
		return // the run ended, or this daemon stops: the lease runs out
	}
	ok, err := h.w.cfg.Claims.Claim(ctx, h.c)
	if ctx.Err() != nil {
		return
	}
	h.w.claimOutage(err)
	if err == nil && !ok {
		h.w.log.Warn("watch run's claim was taken over by another daemon: run cancelled", "watch", h.c.ID,
			"round", time.Unix(0, h.c.Round))
		h.cancel()
		return
	}
	h.timer.Reset(h.w.cfg.Lease / 3)
}

// stop ends the lease's extension without releasing the claim (a run
// that panicked leaves it to run out). Nil h is a no-op.
func (h *heldClaim) stop() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.ended = true
	h.timer.Stop()
	h.mu.Unlock()
}

// release ends the claim: done, unless the run was cut short by the
// daemon's stop before it committed, which gives the round back to the
// other daemons at once. Nil h is a no-op.
func (h *heldClaim) release(ctx context.Context, ev Event) {
	if h == nil {
		return
	}
	h.stop()
	done := ctx.Err() == nil || ev.Kind == EventRun
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := h.w.cfg.Claims.Release(rctx, h.c.Kind, h.c.ID, h.c.Holder, done)
	h.w.claimOutage(err)
}

// claimOutage logs the first failure of the claims after a success at
// Warn, and the first success after a failure at Info: once per outage,
// not once per watch.
func (w *Worker) claimOutage(err error) {
	if err != nil {
		if w.claimsDown.CompareAndSwap(false, true) {
			w.log.Warn("store does not answer claims: watch runs are skipped until it does", "err", err)
		}
		return
	}
	if w.claimsDown.CompareAndSwap(true, false) {
		w.log.Info("store answers claims again: watch runs go on")
	}
}

// claimsState is the Worker's part about claims.
type claimsState struct {
	// claimsDown is set from a failed claim to the next success.
	claimsDown atomic.Bool
}

// SkipNoClaim is the Reason of an EventSkipped whose claim the store did
// not answer (Event.Err): the fire is not run, and the next one tries
// again.
const SkipNoClaim = "no_claim"
