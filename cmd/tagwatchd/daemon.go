package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// newLogger builds the daemon's logger from the configuration.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Daemon.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Daemon.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// daemon is the running tagwatchd: every component, wired.
type daemon struct {
	cfg       *config.Config
	log       *slog.Logger
	db        *vault.DB
	providers map[string]*provider.Provider
	renew     *renew.Manager
	enroll    *enroll.Service
	httpLn    net.Listener
	started   time.Time
	// observers receive renewal events (logs, metrics, the demo).
	observers []func(renew.Event)
}

// options tune a daemon beyond its configuration (the demo, tests).
type options struct {
	// HTTPClient is used for every provider (the demo's in-process X).
	HTTPClient *http.Client
	// Master is the master key; nil loads it as the configuration says.
	Master *seal.MasterKey
	// CreateVault creates the vault when it does not exist (the demo).
	CreateVault bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RenewObserver receives renewal events.
	RenewObserver func(renew.Event)
}

// newDaemon loads secrets, opens the vault (checking the master key before
// anything else), builds the providers and binds the listeners.
func newDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger, o options) (*daemon, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &daemon{cfg: cfg, log: logger, providers: map[string]*provider.Provider{}, started: o.Now()}
	if o.RenewObserver != nil {
		d.observers = append(d.observers, o.RenewObserver)
	}
	master := o.Master
	if master == nil {
		var err error
		if master, err = seal.LoadMasterKey(masterSource(cfg)); err != nil {
			return nil, err
		}
	}
	db, err := vault.Open(vault.Options{Path: cfg.DatabasePath(), Master: master, Create: o.CreateVault,
		LockTimeout: cfg.Daemon.LockTimeout.Duration, Logger: logger, Now: o.Now})
	if errors.Is(err, seal.ErrWrongMasterKey) {
		return nil, fmt.Errorf("%w\nthe vault %s was not changed; check %s", err, cfg.DatabasePath(), masterSource(cfg))
	}
	if err != nil {
		return nil, err
	}
	d.db = db
	fail := func(err error) (*daemon, error) {
		d.close()
		return nil, err
	}
	redirect := strings.TrimRight(cfg.HTTP.PublicURL, "/") + "/callback"
	for _, pc := range cfg.Providers {
		p, err := buildProvider(ctx, pc, redirect, cfg.Renewal.Timeout.Duration, o, logger)
		if err != nil {
			return fail(err)
		}
		d.providers[pc.Name] = p
	}
	renewProviders := map[string]renew.Provider{}
	enrollProviders := map[string]enroll.Provider{}
	for name, p := range d.providers {
		renewProviders[name], enrollProviders[name] = p, p
	}
	d.renew = renew.New(renew.Config{DB: db, Providers: renewProviders, Skew: cfg.Renewal.Skew.Duration,
		Timeout: cfg.Renewal.Timeout.Duration, MaxBackoff: cfg.Renewal.MaxBackoff.Duration,
		PublicURL: cfg.HTTP.PublicURL, LinkTTL: cfg.Enroll.LinkTTL.Duration, Now: o.Now, Logger: logger,
		Observer: func(ev renew.Event) {
			for _, ob := range d.observers {
				ob(ev)
			}
		}})
	d.enroll, err = enroll.New(enroll.Config{DB: db, Providers: enrollProviders, PublicURL: cfg.HTTP.PublicURL,
		LinkTTL: cfg.Enroll.LinkTTL.Duration, ValidateWatch: watchValidator(cfg), OnGrantStored: d.renew.Forget,
		Logger: logger, Now: o.Now})
	if err != nil {
		return fail(err)
	}
	if d.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		return fail(fmt.Errorf("http listener: %w", err))
	}
	return d, nil
}

// buildProvider turns a provider's configuration into a provider, reading
// its client secret or private key.
func buildProvider(ctx context.Context, pc config.Provider, redirect string, timeout time.Duration, o options, logger *slog.Logger) (*provider.Provider, error) {
	c := provider.Config{Name: pc.Name, Kind: pc.Kind, Issuer: pc.Issuer, ClientID: pc.ClientID, ClientAuth: pc.ClientAuth,
		Scopes: pc.Scopes, RedirectURL: redirect, APIURL: pc.APIURL, AuthURL: pc.AuthURL, TokenURL: pc.TokenURL,
		RevokeURL: pc.RevokeURL, CAFile: pc.CAFile, HTTPClient: o.HTTPClient, Timeout: timeout, Now: o.Now, Logger: logger}
	if pc.ClientAuth == provider.AuthPrivateKeyJWT {
		raw, err := seal.ReadSecretFile(seal.Source{File: pc.PrivateKeyFile, Credential: pc.PrivateKeyCredential})
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		c.PrivateKey, c.KeyID, err = provider.ParsePrivateKey(raw)
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
	} else {
		raw, err := seal.ReadSecretFile(seal.Source{File: pc.ClientSecretFile, Credential: pc.ClientSecretCredential})
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		c.ClientSecret = secret.NewClientSecret(strings.TrimSpace(string(raw)))
		clear(raw)
	}
	return provider.New(ctx, c)
}

// watchValidator checks a watch against the configuration's limits.
func watchValidator(cfg *config.Config) func(vault.WatchSpec) error {
	return func(w vault.WatchSpec) error {
		if n := len(w.Hashtags); n > cfg.Scheduler.MaxHashtags {
			return fmt.Errorf("%d hashtags, at most %d (scheduler.max_hashtags)", n, cfg.Scheduler.MaxHashtags)
		}
		if _, err := config.ValidateSchedule(w.Schedule); err != nil {
			return fmt.Errorf("schedule %q: %v", w.Schedule, err)
		}
		return nil
	}
}

// handler is the public HTTP surface: consent pages and links.
func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	eh := d.enroll.Handler()
	mux.Handle("/enroll/", eh)
	mux.Handle("/callback", eh)
	mux.Handle("/enrolled/", eh)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// run runs every component until ctx ends, then shuts down in order.
func (d *daemon) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	g.Go(func() error {
		if err := srv.Serve(d.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return d.renew.Run(ctx) })
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), d.cfg.Daemon.ShutdownTimeout.Duration)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

func (d *daemon) close() {
	if d.httpLn != nil {
		d.httpLn.Close()
	}
	if d.db != nil {
		if err := d.db.Close(); err != nil {
			d.log.Error("close vault", "err", err)
		}
	}
}

// runDaemon loads the configuration, opens the vault (checking the master
// key first), binds the listeners, tells systemd it is ready, and runs
// until SIGTERM or SIGINT.
func runDaemon(cfgPath string, stderr io.Writer) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return &exitError{2, err}
	}
	logger := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDaemon(ctx, cfg, logger, options{})
	if err != nil {
		return err
	}
	defer d.close()
	logger.Info("tagwatchd started", "version", Version(), "vault", d.db.Path(), "http", d.httpLn.Addr().String())
	// READY only now: the master key opened the vault and the listeners are bound.
	if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		logger.Warn("sd_notify failed", "err", err)
	}
	err = d.run(ctx)
	logger.Info("tagwatchd stopping")
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	return err
}
