package notify

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// maintainEvery runs Maintain every MaintainEvery until ctx ends.
func (s *Service) maintainEvery(ctx context.Context) {
	t := time.NewTicker(s.cfg.MaintainEvery)
	defer t.Stop()
	for {
		if err := s.Maintain(); err != nil {
			s.log.Error("outbox maintenance", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Maintain prunes delivered and dropped rows older than PruneAfter and
// drops the newest waiting rows of any target holding more than
// MaxBacklog, alerting the operator once per episode (an episode ends when
// a run finds the target at or under the cap). Run calls it every
// MaintainEvery; it needs no running loop, so operators and tests may call
// it too. It keeps going after a failed step and returns every error.
func (s *Service) Maintain() error {
	cc := &s.set.Load().cc
	var errs []error
	if _, err := s.outbox.PruneOutbox(s.now().Add(-cc.PruneAfter)); err != nil {
		errs = append(errs, fmt.Errorf("notify: prune the outbox: %w", err))
	}
	reason := fmt.Sprintf("backlog over max_backlog (%d)", cc.MaxBacklog)
	over, err := s.outbox.DropOutboxBacklog(cc.MaxBacklog, reason)
	if err != nil {
		errs = append(errs, fmt.Errorf("notify: cap the backlogs: %w", err))
	}
	overNow := make(map[string]bool, len(over))
	for _, b := range over {
		overNow[b.Target] = true
	}
	s.mu.Lock()
	first := map[string]bool{} // over the cap, not alerted yet
	for _, b := range over {
		first[b.Target] = !s.alerted[b.Target]
		s.alerted[b.Target] = true
	}
	if err == nil {
		for t := range s.alerted {
			if !overNow[t] {
				delete(s.alerted, t)
			}
		}
	}
	s.mu.Unlock()
	for _, b := range over {
		label := TargetLabel(b.Target)
		if first[b.Target] {
			s.log.Error("notification target backlog over max_backlog: newest rows dropped", "target", label,
				"backlog", b.Waiting, "max_backlog", cc.MaxBacklog, "dropped", b.Dropped)
		}
		s.emit(Event{Kind: EventBacklog, Target: label, Count: b.Dropped})
	}
	return errors.Join(errs...)
}
