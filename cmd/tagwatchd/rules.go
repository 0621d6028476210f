package main

import (
	"fmt"

	"tagwatch/cmd/internal/config"
	"tagwatch/notify"
	"tagwatch/worker"
	"tagwatch/worker/xsource"
)

// newRules builds what a valid watch is from the configuration: every
// door (the status socket, the offline subcommands, the consent pages,
// check-config) gets a value built here and hands it to the vault, which
// applies it in every method that creates or changes a watch or a link
// carrying one. This is the only place in cmd that knows a watch rule.
//
//   - Sources: one per configured provider, with the source's grammar
//     (hashtags, query length). Every provider is searched through X's API
//     (buildProviders), so each gets X's rules; a rules-only source needs
//     no client.
//   - Targets: what the notifier can deliver to. The daemon passes its
//     running *notify.Service (its channels follow SIGHUP); the offline
//     doors pass a *notify.TargetChecker built from the same configuration
//     (offlineRules).
//   - MaxHashtags and MinInterval: scheduler.max_hashtags and
//     scheduler.min_interval.
func newRules(cfg *config.Config, targets worker.Targets) worker.Rules {
	sources := make(map[string]worker.Source, len(cfg.Providers))
	for _, p := range cfg.Providers {
		sources[p.Name] = xsource.New(nil)
	}
	return worker.Rules{Sources: sources, Targets: targets, MaxHashtags: cfg.Scheduler.MaxHashtags,
		MinInterval: cfg.Scheduler.MinInterval.Duration}
}

// offlineRules is newRules for the doors that work without a running
// daemon: the targets are checked by a notify.TargetChecker built from the
// configuration's channels, with their secrets read as the daemon reads
// them, so these doors refuse exactly what the daemon refuses.
func offlineRules(cfg *config.Config) (worker.Rules, error) {
	cc, err := notifyChannels(cfg)
	if err != nil {
		return worker.Rules{}, err
	}
	tc, err := notify.NewTargetChecker(cc)
	if err != nil {
		return worker.Rules{}, fmt.Errorf("notification channels: %w", err)
	}
	return newRules(cfg, tc), nil
}
