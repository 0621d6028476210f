package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tagwatch/vault"
	"tagwatch/vault/renew"
)

// metrics are the daemon's Prometheus metrics, on a registry of their own
// (no global state). Counters are fed through the observe methods, which
// the components' observers call; gauges of the vault's contents are read
// at scrape time. Safe for concurrent use.
type metrics struct {
	reg *prometheus.Registry

	refreshes  *prometheus.CounterVec
	watchRuns  *prometheus.CounterVec
	fireLag    prometheus.Histogram
	postsRead  prometheus.Counter
	rateLimit  *prometheus.GaugeVec
	deliveries *prometheus.CounterVec
}

func newMetrics(version string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagwatch_refreshes_total",
		Help: "Access-token refreshes and renewal events by result (renewed, refresh_failed, needs_reconsent, lost_rotation, revoked, operator_alert)."},
		[]string{"result"})
	m.watchRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagwatch_watch_runs_total",
		Help: "Watch runs by result."}, []string{"result"})
	m.fireLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tagwatch_fire_lag_seconds",
		Help:    "How late a watch run started after its scheduled time.",
		Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300}})
	m.postsRead = prometheus.NewCounter(prometheus.CounterOpts{Name: "tagwatch_posts_read_total",
		Help: "Posts read from X by watch runs (what X's usage cap counts)."})
	m.rateLimit = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tagwatch_x_rate_limit_remaining",
		Help: "Requests left in X's current rate-limit window, as last reported, per endpoint."}, []string{"endpoint"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagwatch_deliveries_total",
		Help: "Notification delivery attempts by channel and result."}, []string{"channel", "result"})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tagwatch_build_info", Help: "The running build.",
		ConstLabels: prometheus.Labels{"version": version}})
	build.Set(1)
	m.reg.MustRegister(m.refreshes, m.watchRuns, m.fireLag, m.postsRead, m.rateLimit, m.deliveries, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{renew.EventRenewed, renew.EventRefreshFailed, renew.EventNeedsReconsent, renew.EventLostRotation} {
		m.refreshes.WithLabelValues(r)
	}
	return m
}

// handler serves the metrics in Prometheus's formats.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// observeRenew counts a renewal event; it is a renew.Config.Observer.
func (m *metrics) observeRenew(ev renew.Event) { m.refreshes.WithLabelValues(ev.Kind).Inc() }

// observeRun counts a finished watch run: its result (ok, error class,
// skipped), how late it fired and how many posts it read. The worker's
// observer calls it.
func (m *metrics) observeRun(result string, lag time.Duration, posts int) {
	m.watchRuns.WithLabelValues(result).Inc()
	if lag >= 0 {
		m.fireLag.Observe(lag.Seconds())
	}
	if posts > 0 {
		m.postsRead.Add(float64(posts))
	}
}

// observeRateLimit records what X said is left of an endpoint's window
// (x-rate-limit-remaining). The X client's observer calls it.
func (m *metrics) observeRateLimit(endpoint string, remaining int) {
	m.rateLimit.WithLabelValues(endpoint).Set(float64(remaining))
}

// observeDelivery counts a delivery attempt (result: delivered, retry,
// dead, dropped). The delivery loop's observer calls it.
func (m *metrics) observeDelivery(channel, result string) {
	m.deliveries.WithLabelValues(channel, result).Inc()
}

// watchVault registers the gauges read from the vault at scrape time:
// grants by state, outbox depth by state and the age of its oldest
// waiting row.
func (m *metrics) watchVault(db *vault.DB) {
	m.reg.MustRegister(&vaultCollector{db: db}, &damagedCollector{db: db})
}

var (
	grantsDesc = prometheus.NewDesc("tagwatch_grants", "Grants by state.", []string{"state"}, nil)
	outboxDesc = prometheus.NewDesc("tagwatch_outbox_depth", "Notifications in the outbox by state.", []string{"state"}, nil)
	oldestDesc = prometheus.NewDesc("tagwatch_outbox_oldest_age_seconds",
		"Age of the oldest pending or retrying notification; 0 when none waits.", nil, nil)
	scrapeErrDesc = prometheus.NewDesc("tagwatch_vault_scrape_error", "1 when the vault could not be read for these metrics.", nil, nil)
)

type vaultCollector struct{ db *vault.DB }

func (c *vaultCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- grantsDesc
	ch <- outboxDesc
	ch <- oldestDesc
	ch <- scrapeErrDesc
}

func (c *vaultCollector) Collect(ch chan<- prometheus.Metric) {
	grants := map[vault.GrantState]int{vault.GrantActive: 0, vault.GrantNeedsReconsent: 0, vault.GrantRevoked: 0}
	outbox := map[vault.OutboxState]int{vault.OutboxPending: 0, vault.OutboxRetrying: 0, vault.OutboxDead: 0,
		vault.OutboxDropped: 0, vault.OutboxDelivered: 0}
	var oldest time.Time
	now := c.db.Now()
	// Two read methods of the vault: the grants, and the outbox's tallies.
	gs, err := c.db.ListGrants()
	var tallies []vault.OutboxTally
	if err == nil {
		tallies, err = c.db.OutboxTallies()
	}
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 1)
		return
	}
	for _, g := range gs {
		grants[g.State]++
	}
	for _, t := range tallies {
		outbox[vault.OutboxPending] += t.Pending
		outbox[vault.OutboxRetrying] += t.Retrying
		outbox[vault.OutboxDead] += t.Dead
		outbox[vault.OutboxDropped] += t.Dropped
		outbox[vault.OutboxDelivered] += t.Delivered
		if !t.OldestWaiting.IsZero() && (oldest.IsZero() || t.OldestWaiting.Before(oldest)) {
			oldest = t.OldestWaiting
		}
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 0)
	for s, n := range grants {
		ch <- prometheus.MustNewConstMetric(grantsDesc, prometheus.GaugeValue, float64(n), string(s))
	}
	for s, n := range outbox {
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(n), string(s))
	}
	age := 0.0
	if !oldest.IsZero() {
		age = now.Sub(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
