package worker

import (
	"slices"
	"strings"
	"time"
)

// This file says what a provider's usage cap means for operators, so
// every door answers alike: while a provider is capped its watches are
// suspended (vault.SuspendUsageCapped) and make no request; one run probes
// the provider at the planned time (Config.CapProbeInterval after the
// last usage-capped answer, kept across restarts: ratelimit.go), and the
// first probe that gets through resumes them all. The probe is the first
// run of one of the provider's watches at or after the planned time, so
// the time operators are shown is when that run comes: UsageCaps'
// NextProbe is the earliest Status Next of the provider's scheduled
// watches (each the first fire of its schedule at or after the plan that
// no rate limit holds), one computation (asks) for both. RunNow of a
// capped watch is the probe, now: the operator says the cap may have
// lifted.

// UsageCapAlert is the message of the Error line logged when a provider's
// usage cap is reached (attribute "provider"): the operator's views show
// it while that cap is in force (UsageCaps) and not after it lifted.
const UsageCapAlert = "operator alert: provider usage cap reached, its watches are suspended"

// UsageCap is a provider's usage cap as operators see it.
type UsageCap struct {
	Provider string
	// NextProbe is when the probe asks the provider whether the cap is
	// still there: the first run of one of the provider's scheduled
	// watches at or after the planned time (the earliest Next of their
	// Status), or the planned time when none of them is scheduled. A probe
	// that is answered usage-capped again plans the next one
	// Config.CapProbeInterval later.
	NextProbe time.Time
	// Probing is true while a probe is asking the provider.
	Probing bool
}

// UsageCaps returns the providers whose usage cap is in force now, by
// provider name. It reads the worker's memory only (no store access).
func (w *Worker) UsageCaps() []UsageCap {
	w.mu.Lock()
	out := make([]UsageCap, 0, len(w.capped))
	for p, c := range w.capped {
		out = append(out, UsageCap{Provider: p, NextProbe: c.next, Probing: c.probing})
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b UsageCap) int { return strings.Compare(a.Provider, b.Provider) })
	for i := range out {
		out[i].NextProbe = w.probeAt(out[i].Provider, out[i].NextProbe)
	}
	return out
}

// UsageCapOf returns provider's usage cap, if it is in force.
func (w *Worker) UsageCapOf(provider string) (UsageCap, bool) {
	planned, probing, ok := w.capPlan(provider)
	if !ok {
		return UsageCap{}, false
	}
	return UsageCap{Provider: provider, NextProbe: w.probeAt(provider, planned), Probing: probing}, true
}

// capPlan returns provider's planned probe and whether one is under way,
// if its usage cap is in force.
func (w *Worker) capPlan(provider string) (planned time.Time, probing, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.capped[provider]
	if c == nil {
		return time.Time{}, false, false
	}
	return c.next, c.probing, true
}

// probeAt returns when the probe of provider's usage cap, planned at
// planned, asks the provider: the earliest asks of its scheduled watches,
// or planned when none is scheduled. The answer is kept (capState.memo)
// until the schedule or the holds change (Worker.gen), the plan moves or
// its time comes, so a listing of many watches computes it once.
func (w *Worker) probeAt(provider string, planned time.Time) time.Time {
	gen, now := w.gen.Load(), w.cfg.Now()
	w.mu.Lock()
	c := w.capped[provider]
	if c != nil && c.memo.gen == gen && c.memo.planned.Equal(planned) && now.Before(c.memo.at) {
		at := c.memo.at
		w.mu.Unlock()
		return at
	}
	w.mu.Unlock()

	holds := map[string]time.Time{} // by user: the latest hold's end
	for _, h := range w.Holds() {
		if h.Provider == provider {
			holds[h.UserID] = latest(holds[h.UserID], h.Until)
		}
	}
	var first time.Time
	for id, user := range w.fair.scheduledAt(provider) {
		next, _, err := w.engine.Next(id)
		if err != nil {
			continue // left the schedule meanwhile
		}
		if t := w.asks(id, next, holds[user], planned); !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if first.IsZero() {
		first = planned
	}
	w.mu.Lock()
	if c != nil && w.capped[provider] == c {
		c.memo = probeMemo{gen: gen, planned: planned, at: first}
	}
	w.mu.Unlock()
	return first
}

// probeMemo is a probeAt answer: at, for the plan planned, while the
// schedule and the holds are as they were at gen. Until at, no watch of
// the provider fires at or after the plan without a change that moves gen.
type probeMemo struct {
	gen     uint64
	planned time.Time
	at      time.Time
}

// changed notes a change of the schedule or of the rate-limit holds: the
// kept probe times (probeAt) are computed again.
func (w *Worker) changed() { w.gen.Add(1) }

// asks returns when scheduled watch id next asks its provider: its next
// fire next or, while a rate limit holds its user's runs there until
// heldUntil or its provider's usage cap holds every run but the probe
// planned at probe (zero: no hold, no cap), the first fire at or after the
// later of them (the fires before it ask nothing). Status and UsageCaps
// both answer from it.
func (w *Worker) asks(id string, next, heldUntil, probe time.Time) time.Time {
	for _, t := range []time.Time{heldUntil, probe} {
		if t.IsZero() {
			continue
		}
		if at, err := w.engine.FireFrom(id, t); err == nil && !at.IsZero() {
			t = at
		}
		next = latest(next, t)
	}
	return next
}

// probeNow makes the next run of one of provider's watches its usage
// cap's probe, whatever the planned time, and returns the plan it
// replaced, whether a probe was already asking the provider (it stands for
// the manual run) and a function that puts the plan back (when no run
// could be queued). It does nothing for a provider that is not capped
// (capped false).
func (w *Worker) probeNow(provider string) (planned time.Time, probing, capped bool, undo func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.capped[provider]
	if c == nil {
		return time.Time{}, false, false, func() {}
	}
	planned, probing = c.next, c.probing
	c.next = w.cfg.Now()
	return planned, probing, true, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.capped[provider] == c && !c.probing {
			c.next = latest(c.next, planned)
		}
	}
}
