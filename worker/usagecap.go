package worker

import (
	"slices"
	"strings"
	"time"

	"tagwatch/vault"
)

// This file says what a provider's usage cap means for operators, so
// every door answers alike: while a provider is capped its watches are
// suspended (vault.SuspendUsageCapped) and make no request; one run probes
// the provider at the planned time (Config.CapProbeInterval after the
// last usage-capped answer, kept across restarts: ratelimit.go), and the
// first probe that gets through resumes them all. UsageCaps lists the caps
// from the worker's own state (restored at Reload), Status's Next of a
// capped watch is when it may probe, and RunNow of a capped watch is the
// probe, now: the operator says the cap may have lifted.

// UsageCap is a provider's usage cap as operators see it.
type UsageCap struct {
	Provider string
	// NextProbe is the planned probe: the first run of one of the
	// provider's watches at or after it asks the provider whether the cap
	// is still there. A probe that is answered usage-capped again plans
	// the next one Config.CapProbeInterval later.
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
	return out
}

// UsageCapOf returns provider's usage cap, if it is in force.
func (w *Worker) UsageCapOf(provider string) (UsageCap, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.capped[provider]
	if c == nil {
		return UsageCap{}, false
	}
	return UsageCap{Provider: provider, NextProbe: c.next, Probing: c.probing}, true
}

// cappedNext returns, when wt's provider is usage-capped and wt runs, the
// cap and when the watch may next ask the provider: the first fire of its
// schedule at or after the planned probe (the probe time itself when the
// watch is not scheduled or its schedule has no fire then). The fires
// before it ask nothing.
func (w *Worker) cappedNext(wt vault.Watch) (UsageCap, time.Time, bool) {
	if !wt.Runs() {
		return UsageCap{}, time.Time{}, false
	}
	c, ok := w.UsageCapOf(wt.Provider)
	if !ok {
		return UsageCap{}, time.Time{}, false
	}
	next, err := w.engine.FireFrom(wt.ID, c.NextProbe)
	if err != nil || next.IsZero() {
		next = c.NextProbe
	}
	return c, next, true
}

// probeNow makes the next run of one of provider's watches its usage
// cap's probe, whatever the planned time, and returns a function that
// puts the plan back (when no run could be queued). It does nothing for a
// provider that is not capped.
func (w *Worker) probeNow(provider string) (undo func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.capped[provider]
	if c == nil {
		return func() {}
	}
	planned := c.next
	c.next = w.cfg.Now()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.capped[provider] == c && !c.probing {
			c.next = latest(c.next, planned)
		}
	}
}
