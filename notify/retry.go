package notify

import (
	"errors"
	"time"

	"tagwatch/vault"
)

// The retry schedule: what the result of one attempt means for its row.
// The n-th failed attempt of a row waits delay(n) (BaseDelay doubling up
// to MaxDelay, with ±25% jitter; a longer Retry-After replaces it) until
// the nominal delays add up to RetrySpan; the attempt that fails then
// makes the row a dead letter. A 410 Gone disables the target; a row that
// can never be sent (corrupt payload or target, a *PermanentError) is dead
// at once.

// decide turns the result of sending r (err nil: the target accepted it)
// into the outcome to record, with the retry policy in force now.
func (s *Service) decide(r vault.OutboxRow, err error, final bool) attempt {
	a := attempt{row: r, out: vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts, Sent: true}}
	if err == nil {
		a.out.State = vault.OutboxDelivered
		return a
	}
	var wait time.Duration
	var se *SendError
	if errors.As(err, &se) {
		a.status, wait = se.Status, se.RetryAfter
	}
	a.out.Error = err.Error()
	if pe := (*partialError)(nil); errors.As(err, &pe) {
		a.out.Progress = pe.progress
	}
	cc := &s.set.Load().cc
	switch n := r.Attempts + 1; {
	case errors.Is(err, ErrTargetGone):
		a.out.State, a.out.DisableTarget, a.out.TargetLabel = vault.OutboxDropped, true, TargetLabel(r.Target)
	case final || errors.As(err, new(*PermanentError)) || cc.exhausted(n):
		a.out.State = vault.OutboxDead
	default:
		d := time.Duration(float64(cc.delay(n)) * (0.75 + 0.5*s.cfg.Jitter()))
		a.out.State, a.out.NextAttempt = vault.OutboxRetrying, s.now().Add(max(d, wait))
	}
	return a
}

// delay returns the nominal delay after the n-th failed attempt.
func (c *ChannelsConfig) delay(n int) time.Duration {
	d := c.BaseDelay
	for i := 1; i < n && d < c.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// exhausted reports whether a row that failed its n-th attempt has been
// retried for RetrySpan: the nominal delays before it add up to the span.
func (c *ChannelsConfig) exhausted(n int) bool {
	var sum time.Duration
	for i := 1; i < n; i++ {
		sum += c.delay(i)
		if sum >= c.RetrySpan {
			return true
		}
	}
	return false
}

// Schedule returns the nominal retry schedule in force: the delay after
// each failed attempt until the row becomes a dead letter. Jitter of ±25%
// applies to each delay; a longer Retry-After replaces it.
func (s *Service) Schedule() []time.Duration {
	cc := &s.set.Load().cc
	var out []time.Duration
	for n := 1; !cc.exhausted(n); n++ {
		out = append(out, cc.delay(n))
	}
	return out
}
