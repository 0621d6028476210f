package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/worker"
)

// rateHold is a worker's hold as the status socket shows it.
func rateHold(h worker.Hold) statusapi.RateHold {
	return statusapi.RateHold{Provider: h.Provider, UserID: h.UserID, Endpoint: h.Endpoint, Window: h.Window, Until: h.Until}
}

// rateHoldHooks are the hooks through which the operator's views read the
// worker's table of rate-limit holds (worker.Holds, worker.HoldOf): in
// memory, so a held run costs no write.
func rateHoldHooks(w *worker.Worker) (held func(userID, provider string) (statusapi.RateHold, bool), all func() []statusapi.RateHold) {
	held = func(userID, provider string) (statusapi.RateHold, bool) {
		h, ok := w.HoldOf(userID, provider)
		return rateHold(h), ok
	}
	all = func() []statusapi.RateHold {
		hs := w.Holds()
		out := make([]statusapi.RateHold, len(hs))
		for i, h := range hs {
			out[i] = rateHold(h)
		}
		return out
	}
	return held, all
}

// usageCapsHook is the hook through which the operator's views read the
// usage caps in force from the worker's state (worker.UsageCaps, restored
// from the vault at start): provider, next probe (when it runs, as the
// watches' NEXT RUN says), whether one is under way. Watches is left 0:
// the views count them in the vault.
func usageCapsHook(w *worker.Worker) func() []statusapi.UsageCap {
	return func() []statusapi.UsageCap {
		cs := w.UsageCaps()
		out := make([]statusapi.UsageCap, len(cs))
		for i, c := range cs {
			out[i] = statusapi.UsageCap{Provider: c.Provider, NextProbe: c.NextProbe, Probing: c.Probing}
		}
		return out
	}
}

var heldDesc = prometheus.NewDesc("tagwatch_rate_limit_held_users",
	"Users whose runs a rate limit holds now, without a request, by provider, endpoint and window (per_user: the provider's window for the user is spent; app_fair_share: the user's share of the app-wide window is used).",
	[]string{"provider", "endpoint", "window"}, nil)

// holdsCollector reads the worker's table of holds at scrape time.
type holdsCollector struct{ holds func() []worker.Hold }

func (c holdsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- heldDesc }

func (c holdsCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ provider, endpoint, window string }
	n := map[key]int{}
	for _, h := range c.holds() {
		n[key{h.Provider, h.Endpoint, h.Window}]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(v), k.provider, k.endpoint, k.window)
	}
}

// watchHolds registers the gauge of held users, read from the worker's
// table of holds at scrape time.
func (m *metrics) watchHolds(w *worker.Worker) {
	m.reg.MustRegister(holdsCollector{holds: w.Holds})
}
