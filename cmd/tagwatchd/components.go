package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/notify"
	"tagwatch/worker"
)

// wire connects the operator surface to the scheduler and the delivery
// loop. Call it before READY.
func (o *operator) wire() {
	d := o.d
	o.hooksMu.Lock()
	defer o.hooksMu.Unlock()
	held, holds := rateHoldHooks(d.worker)
	o.hooks = hooks{
		NextRun: func(id string) (time.Time, bool) {
			st, err := d.worker.Status(id)
			if err != nil || !st.Scheduled {
				return time.Time{}, false
			}
			return st.Next, true
		},
		RunNow: func(ctx context.Context, id string) error { return d.worker.RunNow(id) },
		// The worker's table of rate-limit holds (in memory: a held run
		// costs no write).
		Held:      held,
		RateHolds: holds,
		UsageCaps: usageCapsHook(d.worker),
		WatchesChanged: func() {
			if err := d.worker.Reload(context.Background()); err != nil {
				d.log.Error("reload watches after an operator change", "err", err)
			}
		},
		SchedulerAlive: func(ctx context.Context) error {
			// The engine answers under its lock; a deadlocked engine does
			// not, and the watchdog then lets systemd restart the daemon.
			done := make(chan struct{})
			go func() { d.worker.Engine().Stats(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return errors.New("the scheduling engine did not answer")
			}
		},
		// SIGHUP, in order. Each step is atomic for its component and a
		// failing step changes nothing of its own and does not stop the
		// next: a bad webhook secret does not hold back a fixed provider.
		Reload: []func(context.Context, *config.Config) error{
			// Providers first, so the watches reread below run with them:
			// only changed providers are rebuilt, a provider that does not
			// build keeps running as it was.
			d.reloadProviders,
			// Channels, their secrets and the retry policy; outbox rows keep
			// their ids and schedules.
			d.reloadNotify,
			// The rules of a valid watch, from the new configuration and
			// the channels just applied.
			d.reloadRules,
			// Watches live in the vault: SIGHUP rereads them, so a changed
			// schedule takes effect and unchanged watches keep running.
			func(ctx context.Context, _ *config.Config) error { return d.worker.Reload(ctx) },
		},
	}
}

// observeWorker counts a worker event.
func (m *metrics) observeWorker(ev worker.Event) {
	switch ev.Kind {
	case worker.EventRun:
		m.observeRun("ok", ev.Lag, ev.PostsRead)
	case worker.EventRunFailed:
		m.observeRun("failed", ev.Lag, ev.PostsRead)
	case worker.EventSkipped, worker.EventRateLimited, worker.EventUsageCapped:
		m.observeRun(ev.Kind, -1, 0)
	case worker.EventClaimedElsewhere:
		// Another daemon on the same store runs this round.
		m.observeRun(ev.Kind, -1, 0)
	}
}

// observeNotify counts a delivery event by its channel (the target's
// scheme: console, mailto, https...) and kind.
func (m *metrics) observeNotify(ev notify.Event) {
	channel, _, ok := strings.Cut(ev.Target, ":")
	if !ok || len(channel) > 16 {
		channel = "other"
	}
	m.observeDelivery(channel, string(ev.Kind))
}
