package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/worker"
)

// hooks connect the operator surface to the scheduler and the delivery
// loop. Each may be nil: the surface then says the part is not running
// rather than pretending. The daemon's wiring sets them.
type hooks struct {
	// NextRun reports when the scheduler fires a watch next.
	NextRun func(watchID string) (time.Time, bool)
	// RunNow asks the scheduler to run a watch at once.
	RunNow func(ctx context.Context, watchID string) error
	// WatchesChanged is called after an operator changed, paused, resumed,
	// added or deleted a watch, or revoked a grant, so the scheduler
	// rereads the watches from the vault.
	WatchesChanged func()
	// SchedulerAlive is the scheduler's part of the liveness check: an
	// error when its loop is stuck.
	SchedulerAlive func(ctx context.Context) error
	// Held reports the rate limit holding a user's runs at a provider;
	// RateHolds lists every one in force (ratelimits.go).
	Held      func(userID, provider string) (statusapi.RateHold, bool)
	RateHolds func() []statusapi.RateHold
	// UsageCaps lists the providers' usage caps in force (ratelimits.go).
	UsageCaps func() []statusapi.UsageCap
	// Reload applies a reloaded configuration (SIGHUP) to the components
	// that take one (watches, channels, providers), in order.
	Reload []func(ctx context.Context, cfg *config.Config) error
}

// hk returns the hooks.
func (o *operator) hk() *hooks {
	o.hooksMu.Lock()
	defer o.hooksMu.Unlock()
	h := o.hooks
	return &h
}

func (h *hooks) watchesChanged() {
	if h.WatchesChanged != nil {
		h.WatchesChanged()
	}
}

// operator is the daemon's operator surface: the status socket, metrics,
// the TLS certificate of the public listener, the watchdog and signals.
// It is safe for concurrent use once bound.
type operator struct {
	d *daemon
	// hooks are set before READY; hooksMu guards later changes (tests).
	hooksMu sync.Mutex
	hooks   hooks
	metrics *metrics
	errs    *errorRing
	certs   *certReloader // nil without http.tls_cert_file

	statusLn  net.Listener
	metricsLn net.Listener // nil without status.metrics_listen
	handler   *statusapi.Handler
	ready     atomic.Bool
}

// bindOperator binds the status socket and the metrics listener, and puts
// TLS on the public listener when the configuration names a certificate.
// Call it after newDaemon and before READY.
func bindOperator(d *daemon, m *metrics, errs *errorRing) (*operator, error) {
	o := &operator{d: d, metrics: m, errs: errs}
	cfg := d.cfg
	gid, err := statusapi.LookupGroup(cfg.Status.Group)
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.TLSCertFile != "" {
		if o.certs, err = newCertReloader(cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile); err != nil {
			return nil, err
		}
		d.httpLn = o.certs.listener(d.httpLn)
	} else if !config.IsLoopbackHost(hostOf(cfg.HTTP.PublicURL)) && len(cfg.HTTP.TrustedProxies) == 0 {
		d.log.Warn("the public listener serves plain HTTP with no trusted proxy: set http.tls_cert_file or http.trusted_proxies",
			"listen", cfg.HTTP.Listen)
	}
	m.watchVault(d.db)
	m.watchHolds(d.worker)
	o.handler = statusapi.NewHandler(statusapi.Config{Backend: o, Metrics: m.handler(), OperatorGID: gid,
		WriteUIDs: cfg.Status.WriteUIDs, Logger: d.log})
	if err := os.MkdirAll(dirOf(cfg.Status.Socket), 0o750); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if o.statusLn, err = statusapi.Listen(cfg.Status.Socket, gid); err != nil {
		return nil, err
	}
	if cfg.Status.MetricsListen != "" {
		if o.metricsLn, err = net.Listen("tcp", cfg.Status.MetricsListen); err != nil {
			o.statusLn.Close()
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}
	return o, nil
}

func dirOf(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}

// run serves the socket and the metrics listener until ctx ends, then
// shuts them down within the configured shutdown timeout.
func (o *operator) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	servers := []*http.Server{statusapi.NewServer(o.handler)}
	listeners := []net.Listener{o.statusLn}
	if o.metricsLn != nil {
		servers = append(servers, &http.Server{Handler: metricsOnly(o.metrics.handler()), ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(o.d.log.Handler(), slog.LevelWarn)})
		listeners = append(listeners, o.metricsLn)
	}
	for i, srv := range servers {
		ln := listeners[i]
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), o.d.cfg.Daemon.ShutdownTimeout.Duration)
		defer cancel()
		var errs []error
		for _, srv := range servers {
			errs = append(errs, srv.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	return g.Wait()
}

func metricsOnly(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}

// alive is the liveness check behind the watchdog: a read transaction on
// the vault and the scheduler's own check, each within a deadline. A
// daemon that fails it stops feeding the watchdog and systemd restarts it.
func (o *operator) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	// The goroutine outlives a stuck read only until the process is
	// restarted for failing this check.
	go func() {
		_, err := o.d.db.User("\x00liveness")
		if errors.Is(err, vault.ErrNotFound) {
			err = nil
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
	case <-ctx.Done():
		return errors.New("vault: a read transaction did not finish in time")
	}
	if o.hk().SchedulerAlive != nil {
		if err := o.hk().SchedulerAlive(ctx); err != nil {
			return fmt.Errorf("scheduler: %w", err)
		}
	}
	return nil
}

// watchdog feeds systemd's watchdog (WatchdogSec, WATCHDOG_USEC) at half
// its interval, as long as the liveness check passes.
func (o *operator) watchdog(ctx context.Context) error {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return err
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := o.alive(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			o.d.log.Error("liveness check failed; not feeding the watchdog", "err", err)
			failing = true
			continue
		}
		if failing {
			o.d.log.Info("liveness check passes again")
			failing = false
		}
		if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog); err != nil {
			o.d.log.Warn("sd_notify watchdog", "err", err)
		}
	}
}

// reload rereads the configuration on SIGHUP and applies what can change
// without a restart: the TLS certificate and whatever the hooks reload
// (providers, notification channels, watches). A configuration that does
// not load changes nothing; a part that does not apply keeps running as it
// was, and its error comes back (the caller logs it, so it also shows in
// the status's last errors).
func (o *operator) reload(ctx context.Context) error {
	cfg, err := config.Load(o.d.cfg.Path)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var errs []error
	if o.certs != nil {
		if err := o.certs.reload(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, fn := range o.hk().Reload {
		if err := fn(ctx, cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.HTTP.Listen != o.d.cfg.HTTP.Listen || cfg.Status.Socket != o.d.cfg.Status.Socket ||
		cfg.Status.MetricsListen != o.d.cfg.Status.MetricsListen || cfg.DatabasePath() != o.d.cfg.DatabasePath() ||
		cfg.HTTP.PublicURL != o.d.cfg.HTTP.PublicURL {
		o.d.log.Warn("listener addresses, the public URL and the vault's path change only on restart")
	}
	if !reflect.DeepEqual(cfg.Account, o.d.cfg.Account) {
		o.d.log.Warn("the self-service page's settings ([account]) change only on restart")
	}
	return errors.Join(errs...)
}

// serviceLogger is newLogger with log_format "journal" (syslog priority
// prefixes that journald reads) and a record of the last errors.
func serviceLogger(cfg *config.Config, w io.Writer, errs *errorRing) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Daemon.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch cfg.Daemon.LogFormat {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "journal":
		h = newJournalHandler(w, opts)
	default:
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(errs.handler(h))
}

// runService runs the daemon as a service: it opens the vault (the key
// check), binds every listener, tells systemd READY, feeds the watchdog,
// reloads on SIGHUP, and on SIGTERM or SIGINT (or the end of ctx) says
// STOPPING, stops taking work and shuts down within the shutdown timeout.
//
// onBound, when set, is called with the operator surface once everything
// is bound and before READY (tests reach the components through it).
//
// A configuration that does not load, or that checkStart refuses (a
// secret file missing or readable by others, a credential without
// $CREDENTIALS_DIRECTORY, a TLS pair that does not load, an unknown
// operator group, ...), stops it with exitConfig before anything is
// opened: the same refusals, with the same messages and status, as
// tagwatchd check-config and the offline subcommands (loadConfig).
func runService(ctx context.Context, cfgPath string, stderr io.Writer, o options, onBound func(*operator)) error {
	cfg, err := loadConfig(ctx, cfgPath)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr, o, onBound)
}

// serve is runService with the configuration already loaded (the demo
// builds its own).
func serve(ctx context.Context, cfg *config.Config, stderr io.Writer, o options, onBound func(*operator)) error {
	errs := newErrorRing(16)
	logger := serviceLogger(cfg, stderr, errs)
	if !o.NoSignals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	m := newMetrics(Version())
	prevRenew, prevWorker, prevNotify := o.RenewObserver, o.WorkerObserver, o.NotifyObserver
	o.RenewObserver = func(ev renew.Event) {
		m.observeRenew(ev)
		if prevRenew != nil {
			prevRenew(ev)
		}
	}
	o.WorkerObserver = func(ev worker.Event) {
		m.observeWorker(ev)
		if prevWorker != nil {
			prevWorker(ev)
		}
	}
	o.NotifyObserver = func(ev notify.Event) {
		m.observeNotify(ev)
		if prevNotify != nil {
			prevNotify(ev)
		}
	}
	o.RateLimitObserver = m.observeRateLimit
	d, err := newDaemon(ctx, cfg, logger, o)
	if errors.Is(err, seal.ErrWrongMasterKey) || errors.Is(err, seal.ErrNoMasterKey) {
		// The unit's RestartPreventExitStatus stops systemd from
		// restarting into the same refusal.
		return &exitError{exitConfig, err}
	}
	if err != nil {
		return err
	}
	defer d.close()
	op, err := bindOperator(d, m, errs)
	if err != nil {
		return err
	}
	op.wire()
	if onBound != nil {
		onBound(op)
	}
	started := []any{"version", Version(), "daemon", d.db.Holder(), "vault", vaultName(cfg), "http", d.httpLn.Addr().String(),
		"public_url", cfg.HTTP.PublicURL, "status", cfg.Status.Socket, "tls", op.certs != nil}
	if d.account != nil {
		started = append(started, "account_page", cfg.AccountURL())
	}
	logger.Info("tagwatchd started", started...)
	// READY only now: the master key opened the vault and every listener is bound.
	op.ready.Store(true)
	if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		logger.Warn("sd_notify failed", "err", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.run(gctx) })
	g.Go(func() error { return op.run(gctx) })
	g.Go(func() error { return op.watchdog(gctx) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
			}
			logger.Info("reloading the configuration", "config", cfg.Path)
			notifyReloading()
			if err := op.reload(gctx); err != nil {
				logger.Error("reload", "err", err)
			} else {
				logger.Info("configuration reloaded")
			}
			_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
		}
	})
	<-gctx.Done()
	logger.Info("tagwatchd stopping")
	op.ready.Store(false)
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("tagwatchd stopped")
	return nil
}

// notifyReloading tells systemd a reload began (RELOADING=1 with the
// monotonic clock reading it asks for); READY=1 ends it.
func notifyReloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Sec*1_000_000 + ts.Nsec/1000
	_, _ = sddaemon.SdNotify(false, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec))
}

// hostOf returns the host of a URL, or "".
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
