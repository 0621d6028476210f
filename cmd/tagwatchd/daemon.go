package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"tagwatch/cmd/internal/config"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/kv"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/selfservice"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xsource"
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
	cfg  *config.Config
	log  *slog.Logger
	opts options
	db   *vault.DB
	// provMu serialises provider reloads; providers is what they replace.
	provMu    sync.Mutex
	providers map[string]*builtProvider
	// live is providers as the doors that read them outside provMu see
	// them (liveProvider: the account page's providers and their kinds);
	// replaced, never changed.
	live   atomic.Pointer[map[string]*builtProvider]
	renew  *renew.Manager
	enroll *enroll.Service
	// account is the self-service page, nil unless [account] is on.
	account *selfservice.Service
	worker  *worker.Worker
	notify  *notify.Service
	httpLn  net.Listener
	started time.Time
	// beatDown is set from a failed heartbeat to the next success
	// (heartbeat), so an outage is logged once.
	beatDown atomic.Bool
	// observers receive events (logs, metrics, the demo).
	observers       []func(renew.Event)
	workerObservers []func(worker.Event)
	notifyObservers []func(notify.Event)
}

// options tune a daemon beyond its configuration (the demo, tests).
type options struct {
	// HTTPClient is used for every provider (the demo's in-process X).
	HTTPClient *http.Client
	// Master is the master key; nil loads it as the configuration says.
	Master *seal.MasterKey
	// CreateVault says the vault is expected to be new (the demo): its
	// creation is not worth a warning.
	CreateVault bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RenewObserver, WorkerObserver and NotifyObserver receive events.
	RenewObserver  func(renew.Event)
	WorkerObserver func(worker.Event)
	NotifyObserver func(notify.Event)
	// HTTPListener is the public listener, already bound (the demo);
	// nil binds http.listen.
	HTTPListener net.Listener
	// Console is where console: notifications print; default stdout.
	Console io.Writer
	// RateLimitObserver is told what X says is left of each endpoint's
	// rate-limit window (metrics).
	RateLimitObserver func(endpoint string, remaining int)
	// NoSignals: the caller handles SIGINT and SIGTERM (the demo, whose
	// Ctrl-C lets the last runs deliver first); serve stops when its ctx
	// ends.
	NoSignals bool
}

// newDaemon loads secrets, opens the vault (checking the master key before
// anything else), builds the providers and binds the listeners.
func newDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger, o options) (*daemon, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &daemon{cfg: cfg, log: logger, opts: o, started: o.Now()}
	if o.RenewObserver != nil {
		d.observers = append(d.observers, o.RenewObserver)
	}
	if o.WorkerObserver != nil {
		d.workerObservers = append(d.workerObservers, o.WorkerObserver)
	}
	if o.NotifyObserver != nil {
		d.notifyObservers = append(d.notifyObservers, o.NotifyObserver)
	}
	master := o.Master
	if master == nil {
		var err error
		if master, err = seal.LoadMasterKey(masterSource(cfg)); err != nil {
			return nil, err
		}
	}
	// A first start creates the vault; an existing one is only ever opened
	// with its own master key (a wrong one is refused, nothing written).
	// Nothing at all at the path (noVaultYet): anything there, a dangling
	// symbolic link included, is opened and identified, not "created".
	engine, err := openEngine(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if engine == nil && noVaultYet(cfg.DatabasePath()) && !o.CreateVault {
		logger.Warn("no vault yet: creating a new one", "vault", cfg.DatabasePath(), "master_key", master.ID())
	}
	if engine != nil && !o.CreateVault {
		if has, err := vault.HasVault(engine); err == nil && !has {
			logger.Warn("no vault yet: creating a new one", "vault", vaultName(cfg), "master_key", master.ID())
		}
	}
	db, err := vault.Open(vault.Options{Path: vaultPath(cfg), Engine: engine, Master: master, Create: true,
		LockTimeout: cfg.Daemon.LockTimeout.Duration, Lease: cfg.Storage.Lease.Duration, Logger: logger, Now: o.Now})
	if errors.Is(err, seal.ErrWrongMasterKey) {
		return nil, fmt.Errorf("%w\nthe vault %s was not changed; check %s", err, vaultName(cfg), masterSource(cfg))
	}
	if err != nil {
		return nil, err
	}
	d.db = db
	fail := func(err error) (*daemon, error) {
		d.close()
		return nil, err
	}
	// One damaged record is skipped, not fatal: logged and audited here.
	if err := reportDamaged(db, logger); err != nil {
		return fail(err)
	}
	// At start every provider must build; a reload is forgiving (see
	// reloadProviders).
	if d.providers, err = d.buildProviders(ctx, cfg.Providers, nil); err != nil {
		return fail(err)
	}
	live := d.providers
	d.live.Store(&live)
	renewProviders, enrollProviders, searchers := d.providerMaps()
	d.renew = renew.New(renew.Config{DB: db, Providers: renewProviders, Skew: cfg.Renewal.Skew.Duration,
		Timeout: cfg.Renewal.Timeout.Duration, MaxBackoff: cfg.Renewal.MaxBackoff.Duration,
		PublicURL: cfg.HTTP.PublicURL, LinkTTL: cfg.Enroll.LinkTTL.Duration, Now: o.Now, Logger: logger,
		Observer: func(ev renew.Event) {
			for _, ob := range d.observers {
				ob(ev)
			}
		}})
	d.notify, err = newNotify(cfg, db, master, d, o, logger)
	if err != nil {
		return fail(err)
	}
	// The rules of a valid watch, with the running notifier's targets: from
	// here on every door that changes a watch or a link goes through them.
	db.SetRules(newRules(cfg, d.notify))
	var accountURL string
	if cfg.Account.Enabled {
		accountURL = cfg.AccountURL()
	}
	d.enroll, err = enroll.New(enroll.Config{DB: db, Providers: enrollProviders, PublicURL: cfg.HTTP.PublicURL,
		LinkTTL: cfg.Enroll.LinkTTL.Duration, TargetLabel: notify.TargetLabel, Cadence: notify.Cadence,
		AccountURL: accountURL, OnGrantStored: d.onGrantStored, Logger: logger, Now: o.Now})
	if err != nil {
		return fail(err)
	}
	wc := worker.Config{DB: db, Sources: searchers,
		Tokens:  func(grantID string) worker.TokenSource { return d.renew.Source(grantID) },
		Workers: cfg.Scheduler.Workers, PerUserConcurrency: cfg.Scheduler.PerUserConcurrency,
		PerProviderConcurrency: cfg.Scheduler.PerProviderConcurrency, CatchUpWindow: cfg.Scheduler.CatchUpWindow.Duration,
		MinInterval: cfg.Scheduler.MinInterval.Duration, AppRequestsPerWindow: appRequests(cfg), AppWindow: config.XRateWindow,
		MaxPages: cfg.Scheduler.MaxPages, RunTimeout: cfg.Scheduler.RunTimeout.Duration, MaxPerDigest: cfg.Notify.MaxPerDigest,
		Logger: logger, Now: o.Now,
		Observer: func(ev worker.Event) {
			if ev.Rows > 0 {
				d.notify.Kick()
			}
			for _, ob := range d.workerObservers {
				ob(ev)
			}
		}}
	if db.Shared() {
		// Several daemons on one store: each watch's round runs on one.
		wc.Claims, wc.Holder, wc.Lease = db.Cluster(), db.Holder(), db.Lease()
	}
	if d.worker, err = worker.New(wc); err != nil {
		return fail(err)
	}
	if d.account, err = d.newAccount(); err != nil {
		return fail(err)
	}
	if o.HTTPListener != nil {
		d.httpLn = o.HTTPListener
	} else if d.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		return fail(fmt.Errorf("http listener: %w", err))
	}
	return d, nil
}

// appRequests is scheduler.app_requests_per_window as worker.Config takes
// it: the configuration's 0 (no app-wide budget) is the worker's negative.
func appRequests(cfg *config.Config) int {
	if n := cfg.Scheduler.AppRequestsPerWindow; n > 0 {
		return n
	}
	return -1
}

// builtProvider is a provider as built from its configuration, with what
// a reload compares to decide whether to build it again.
type builtProvider struct {
	pc        config.Provider
	secretSum [sha256.Size]byte // of the client secret or private key file
	p         *provider.Provider
	// searcher is the provider's X API client; it is kept as long as the
	// API URL stays, with its rate-limit state.
	searcher worker.Source
}

// buildProviders builds the providers of pcs. A provider whose
// configuration and secret are those of its entry in old is that entry,
// untouched; the others are built anew. It returns every provider that
// built and the errors of those that did not, one per provider.
func (d *daemon) buildProviders(ctx context.Context, pcs []config.Provider, old map[string]*builtProvider) (map[string]*builtProvider, error) {
	// The redirect URL and the timeout are those the daemon started with:
	// the public URL and [renewal] change only on restart.
	redirect := strings.TrimRight(d.cfg.HTTP.PublicURL, "/") + "/callback"
	out := make(map[string]*builtProvider, len(pcs))
	var errs []error
	for _, pc := range pcs {
		raw, err := readProviderSecret(pc)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %s: %w", pc.Name, err))
			continue
		}
		sum := sha256.Sum256(raw)
		if prev := old[pc.Name]; prev != nil && prev.secretSum == sum && reflect.DeepEqual(prev.pc, pc) {
			clear(raw)
			out[pc.Name] = prev
			continue
		}
		p, err := buildProvider(ctx, pc, raw, redirect, d.cfg.Renewal.Timeout.Duration, d.opts, d.log)
		clear(raw)
		if err != nil {
			errs = append(errs, err) // it names the provider
			continue
		}
		b := &builtProvider{pc: pc, secretSum: sum, p: p}
		if prev := old[pc.Name]; prev != nil && prev.p.APIURL() == p.APIURL() {
			b.searcher = prev.searcher
		} else {
			// Authors are expanded: a notification names who posted (X
			// bills the user reads, de-duplicated per day).
			b.searcher = xsource.New(xapi.New(xapi.Config{BaseURL: p.APIURL(), HTTPClient: d.opts.HTTPClient, ExpandAuthors: true,
				OnRateLimit: d.opts.RateLimitObserver, Logger: d.log, Now: d.opts.Now}))
		}
		out[pc.Name] = b
	}
	return out, errors.Join(errs...)
}

// providerMaps returns the providers as renewal, enrollment and the
// worker take them.
func (d *daemon) providerMaps() (map[string]renew.Provider, map[string]enroll.Provider, map[string]worker.Source) {
	rp := make(map[string]renew.Provider, len(d.providers))
	ep := make(map[string]enroll.Provider, len(d.providers))
	ss := make(map[string]worker.Source, len(d.providers))
	for name, b := range d.providers {
		rp[name], ep[name], ss[name] = b.p, b.p, b.searcher
	}
	return rp, ep, ss
}

// reloadProviders applies the providers of a reloaded configuration:
// unchanged ones stay as they are (cached tokens, refreshes in flight,
// searchers with their rate-limit state), changed and new ones are built,
// removed ones are dropped (their grants and watches stay in the vault;
// refreshes and runs for them fail until they return). A provider that
// does not build keeps its old version, or, if new, stays out; its error
// comes back. Renewal, enrollment and the worker then get the new set,
// each in one atomic step.
func (d *daemon) reloadProviders(ctx context.Context, cfg *config.Config) error {
	d.provMu.Lock()
	defer d.provMu.Unlock()
	next, err := d.buildProviders(ctx, cfg.Providers, d.providers)
	for name, prev := range d.providers {
		if _, ok := next[name]; ok {
			continue
		}
		if slices.ContainsFunc(cfg.Providers, func(pc config.Provider) bool { return pc.Name == name }) {
			// Still configured but did not build: keep the old one.
			next[name] = prev
			d.log.Error("provider not reloaded; keeping the running one", "provider", name)
		} else {
			d.log.Warn("provider removed from the configuration; its grants and watches wait for it to return", "provider", name)
		}
	}
	changed := len(next) != len(d.providers)
	for name, b := range next {
		if prev := d.providers[name]; prev != b {
			changed = true
			if prev == nil {
				d.log.Info("provider added", "provider", name)
			} else {
				d.log.Info("provider reloaded", "provider", name)
			}
		}
	}
	if changed {
		d.providers = next
		d.live.Store(&next)
		rp, ep, ss := d.providerMaps()
		d.renew.SetProviders(rp)
		d.enroll.SetProviders(ep)
		d.worker.SetSources(ss)
		if d.account != nil {
			// A sign-in provider that did not build keeps its running
			// version (above), so the set is whole.
			if ps, err := d.signInProviders(); err != nil {
				d.log.Error("account page providers not reloaded", "err", err)
			} else if err := d.account.SetProviders(ps); err != nil {
				d.log.Error("account page providers not reloaded", "err", err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("reload providers: %w", err)
	}
	return nil
}

// liveProvider returns the provider of that name as it is now, or nil.
// Safe for concurrent use.
func (d *daemon) liveProvider(name string) *provider.Provider {
	if b := d.currentProviders()[name]; b != nil {
		return b.p
	}
	return nil
}

// currentProviders returns the providers as they are now; the map is not
// changed afterwards. Safe for concurrent use.
func (d *daemon) currentProviders() map[string]*builtProvider {
	if m := d.live.Load(); m != nil {
		return *m
	}
	return nil
}

// readProviderSecret reads a provider's client secret or private key.
func readProviderSecret(pc config.Provider) ([]byte, error) {
	if pc.ClientAuth == provider.AuthPrivateKeyJWT {
		return seal.ReadSecretFile(seal.Source{File: pc.PrivateKeyFile, Credential: pc.PrivateKeyCredential})
	}
	return seal.ReadSecretFile(seal.Source{File: pc.ClientSecretFile, Credential: pc.ClientSecretCredential})
}

// buildProvider turns a provider's configuration and its secret (as
// readProviderSecret read it) into a provider. Its errors name the
// provider ("provider corp: ...").
func buildProvider(ctx context.Context, pc config.Provider, raw []byte, redirect string, timeout time.Duration, o options, logger *slog.Logger) (*provider.Provider, error) {
	c := provider.Config{Name: pc.Name, Kind: pc.Kind, Issuer: pc.Issuer, ClientID: pc.ClientID, ClientAuth: pc.ClientAuth,
		Scopes: pc.Scopes, RedirectURL: redirect, APIURL: pc.APIURL, AuthURL: pc.AuthURL, TokenURL: pc.TokenURL,
		RevokeURL: pc.RevokeURL, CAFile: pc.CAFile, HTTPClient: o.HTTPClient, Timeout: timeout, Now: o.Now, Logger: logger}
	if pc.ClientAuth == provider.AuthPrivateKeyJWT {
		var err error
		if c.PrivateKey, c.KeyID, err = provider.ParsePrivateKey(raw); err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
	} else {
		c.ClientSecret = secret.NewClientSecret(strings.TrimSpace(string(raw)))
	}
	return provider.New(ctx, c)
}

// notifyChannels reads the configuration's channels and retry policy,
// with their secrets, as notify.New and Reconfigure take them.
func notifyChannels(cfg *config.Config) (notify.ChannelsConfig, error) {
	var hooks []notify.WebhookSecret
	for _, h := range cfg.Notify.Webhooks {
		raw, err := seal.ReadSecretFile(seal.Source{File: h.SecretFile, Credential: h.SecretCredential})
		if err != nil {
			return notify.ChannelsConfig{}, fmt.Errorf("webhook %s: %w", notify.TargetLabel(h.URL), err)
		}
		ws := notify.WebhookSecret{URL: h.URL, Secret: secret.New(strings.TrimSpace(string(raw)))}
		if h.PreviousSecretFile != "" {
			prev, err := seal.ReadSecretFile(seal.Source{File: h.PreviousSecretFile})
			if err != nil {
				return notify.ChannelsConfig{}, fmt.Errorf("webhook %s previous secret: %w", notify.TargetLabel(h.URL), err)
			}
			ws.Previous = secret.New(strings.TrimSpace(string(prev)))
		}
		hooks = append(hooks, ws)
	}
	sc := cfg.Notify.SMTP
	smtp := notify.SMTPConfig{Host: sc.Host, Port: sc.Port, Security: sc.Security, Username: sc.Username, From: sc.From, CAFile: sc.CAFile}
	if sc.PasswordFile != "" || sc.PasswordCredential != "" {
		raw, err := seal.ReadSecretFile(seal.Source{File: sc.PasswordFile, Credential: sc.PasswordCredential})
		if err != nil {
			return notify.ChannelsConfig{}, fmt.Errorf("smtp password: %w", err)
		}
		smtp.Password = secret.New(strings.TrimSpace(string(raw)))
	}
	n := cfg.Notify
	return notify.ChannelsConfig{RetrySpan: n.RetrySpan.Duration, PruneAfter: n.PruneAfter.Duration, MaxBacklog: n.MaxBacklog,
		PerTargetConcurrency: n.PerTargetConcurrency, Timeout: n.WebhookTimeout.Duration,
		AllowPrivateTargets: n.AllowPrivateTargets, Webhooks: hooks, SMTP: smtp}, nil
}

// reloadNotify applies the channels of a reloaded configuration. A
// secret that does not read or a channel that does not build keeps the
// running channels.
func (d *daemon) reloadNotify(_ context.Context, cfg *config.Config) error {
	cc, err := notifyChannels(cfg)
	if err != nil {
		return fmt.Errorf("reload notify: %w", err)
	}
	return d.notify.Reconfigure(cc)
}

// reloadRules gives the vault the rules of a reloaded configuration
// (providers, scheduler.max_hashtags, scheduler.min_interval; the targets
// follow the notifier's channels, which reloadNotify set) and the
// scheduler its floor, and logs one Info line saying so. Every door
// applies the new rules from the next request. Stored watches are checked
// again by the worker.Reload that follows in the SIGHUP sequence (wire):
// one the new rules refuse leaves the schedule, is not run, is logged once
// and shows as refused in tagwatchctl watches and status, as check-config
// reports it; one they accept again is scheduled again. A pending consent
// link whose watch they refuse is refused at consent.
func (d *daemon) reloadRules(_ context.Context, cfg *config.Config) error {
	r := newRules(cfg, d.notify)
	d.db.SetRules(r)
	// The engine's own floor, for a schedule that is accepted but fires
	// closer once (a daylight-saving change).
	d.worker.SetMinInterval(cfg.Scheduler.MinInterval.Duration)
	d.log.Info("watch rules reloaded", "min_interval", r.Floor().String())
	return nil
}

// newNotify builds the notifier from the configuration's [notify] part.
func newNotify(cfg *config.Config, db *vault.DB, master *seal.MasterKey, actions notify.Actions, o options, logger *slog.Logger) (*notify.Service, error) {
	linkKey := master.Derive("tagwatch one-click links")
	if cfg.HTTP.LinkKeyFile != "" || cfg.HTTP.LinkKeyCredential != "" {
		raw, err := seal.ReadSecretFile(seal.Source{File: cfg.HTTP.LinkKeyFile, Credential: cfg.HTTP.LinkKeyCredential})
		if err != nil {
			return nil, fmt.Errorf("link key: %w", err)
		}
		linkKey = []byte(strings.TrimSpace(string(raw)))
	}
	cc, err := notifyChannels(cfg)
	if err != nil {
		return nil, err
	}
	console := o.Console
	if console == nil {
		console = os.Stdout
	}
	var d *daemon
	if dd, ok := actions.(*daemon); ok {
		d = dd
	}
	var accountURL string
	if cfg.Account.Enabled {
		accountURL = cfg.AccountURL()
	}
	nc := notify.Config{Outbox: db, PublicURL: cfg.HTTP.PublicURL, AccountURL: accountURL, LinkKey: linkKey, Actions: actions,
		Channels: cc, Console: console, Logger: logger, Now: o.Now,
		Observer: func(ev notify.Event) {
			if d == nil {
				return
			}
			for _, ob := range d.notifyObservers {
				ob(ev)
			}
		}}
	if db.Shared() {
		// Several daemons on one store: each attempt is sent by one.
		nc.Claims, nc.Holder, nc.Lease = db.Cluster(), db.Holder(), db.Lease()
	}
	return notify.New(nc)
}

// onGrantStored runs after an enrollment or re-consent committed: renewal
// forgets what it cached of the grant, the user's watches are (re)scheduled
// and the notifier picks up the confirmation at once.
func (d *daemon) onGrantStored(grantID string) {
	d.renew.Forget(grantID)
	if err := d.scheduleGrantWatches(grantID); err != nil {
		d.log.Error("cannot schedule the watches of a new grant", "grant", grantID, "err", err)
	}
	d.notify.Kick()
}

// scheduleGrantWatches tells the scheduler about every watch of the
// grant's user at its provider, as the vault has them now.
func (d *daemon) scheduleGrantWatches(grantID string) error {
	g, err := d.db.Grant(grantID)
	if err != nil {
		return err
	}
	watches, err := d.db.ListWatches(g.UserID)
	if err != nil {
		return err
	}
	for _, w := range watches {
		if w.Provider != g.Provider {
			continue
		}
		if err := d.worker.Upsert(w.Watch); err != nil {
			d.log.Error("cannot schedule a watch", "watch", w.ID, "err", err)
		}
	}
	return nil
}

// actorUserLink names a user's one-click link in the audit trail.
const actorUserLink = "user link"

// PauseWatch implements notify.Actions: a user's one-click pause
// (vault.DB.PauseWatch: a suspended watch is paused too, keeping its
// cause pending). Errors: *vault.NotFoundError.
func (d *daemon) PauseWatch(ctx context.Context, watchID string) error {
	w, changed, err := d.db.PauseWatch(watchID, actorUserLink)
	if err != nil || !changed {
		return err
	}
	return d.worker.Upsert(w)
}

// Revoke implements notify.Actions: a user's one-click revocation
// (renew.Manager.Unenroll). A user without a grant at the provider, or
// whose grant is revoked already, has nothing left to revoke.
func (d *daemon) Revoke(ctx context.Context, userID, providerName string) error {
	return d.revoke(ctx, userID, providerName, actorUserLink)
}

// revoke unenrolls the user's grant at the provider for actor
// (renew.Manager.Unenroll), then wakes the notifier and rereads the
// watches. Nothing to revoke is not an error.
func (d *daemon) revoke(ctx context.Context, userID, providerName, actor string) error {
	g, err := d.db.UserGrant(userID, providerName)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	res, err := d.renew.Unenroll(ctx, g.ID, actor)
	if err != nil {
		return err
	}
	if res.Queued {
		d.log.Warn("grant revoked here; the revocation at the provider is queued", "grant", g.ID, "provider", providerName)
	}
	d.notify.Kick()
	return d.worker.Reload(ctx)
}

// handler is the public HTTP surface: consent pages and links, and the
// self-service page under /account/ when [account] is on.
func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	eh := d.enroll.Handler()
	mux.Handle("/enroll/", eh)
	mux.Handle("/continue", eh)
	mux.Handle("/callback", eh)
	mux.Handle("/enrolled/", eh)
	mux.Handle(notify.LinkPrefix, d.notify.Handler())
	if d.account != nil {
		mux.Handle(d.accountPath(), d.account.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// run runs every component until ctx ends, then shuts down in order. The
// daemon's first heartbeat goes to the store's registry of daemons before
// any component starts, the next every storage.lease/3; once every
// component has stopped, the daemon leaves the registry, giving back the
// claims it still holds.
func (d *daemon) run(ctx context.Context) error {
	beat := d.heartbeat(ctx)
	defer d.leave()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t := time.NewTicker(d.db.Lease() / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				beat()
			}
		}
	})
	srv := &http.Server{Handler: d.public(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	g.Go(func() error {
		if err := srv.Serve(d.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := d.renew.FollowInvalidations(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("stopped following the token changes of the other daemons", "err", err)
		}
		return nil
	})
	g.Go(func() error { return d.renew.Run(ctx) })
	g.Go(func() error { return d.notify.Run(ctx) })
	g.Go(func() error { return d.worker.Run(ctx) })
	if d.db.Shared() {
		g.Go(func() error { d.followWatches(ctx); return nil })
	}
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), d.cfg.Daemon.ShutdownTimeout.Duration)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// heartbeat says in the store's registry that this daemon is alive
// (vault.DB.Heartbeat), once now, and returns the function that says it
// again. A failure is logged once per outage, at Warn, and the first
// success after it at Info.
func (d *daemon) heartbeat(ctx context.Context) func() {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	me := kv.Daemon{Host: host, PID: os.Getpid(), Version: Version(), Started: d.started}
	beat := func() {
		bctx, cancel := context.WithTimeout(ctx, d.db.Lease()/3)
		defer cancel()
		err := d.db.Heartbeat(bctx, me)
		switch {
		case err != nil && ctx.Err() == nil:
			if d.beatDown.CompareAndSwap(false, true) {
				d.log.Warn("heartbeat not recorded: the other daemons will take this one for dead after storage.lease",
					"daemon", d.db.Holder(), "lease", d.db.Lease(), "err", err)
			}
		case err == nil:
			if d.beatDown.CompareAndSwap(true, false) {
				d.log.Info("heartbeat recorded again", "daemon", d.db.Holder())
			}
		}
	}
	beat()
	return beat
}

// followWatches keeps this daemon's schedule as the shared store has it
// while ctx runs: every watch another daemon creates, changes or deletes
// is announced on vault.WatchesChannel, and rescheduled (or taken out)
// here from the vault's record; after a lost connection, whose
// announcements are lost, every watch is reloaded.
func (d *daemon) followWatches(ctx context.Context) {
	apply := func(payload string) {
		for _, id := range vault.ChangedWatchIDs(payload) {
			w, err := d.db.Watch(id)
			switch {
			case errors.Is(err, vault.ErrNotFound):
				d.worker.Remove(id)
			case err != nil:
				d.log.Warn("cannot read a watch another daemon changed; it is scheduled at the next reload", "watch", id, "err", err)
			default:
				if err := d.worker.Upsert(w.Watch); err != nil {
					d.log.Warn("cannot schedule a watch another daemon changed", "watch", id, "err", err)
				}
			}
		}
	}
	reload := func() {
		if err := d.worker.Reload(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("cannot reload the watches after the store's connection came back", "err", err)
		}
	}
	_ = d.db.Cluster().Subscribe(ctx, vault.WatchesChannel, apply, reload)
}

// leave takes this daemon out of the store's registry at its stop,
// giving back undone the claims it still holds (kv.Cluster.Leave).
func (d *daemon) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.db.Cluster().Leave(ctx, d.db.Holder()); err != nil {
		d.log.Warn("daemon not taken out of the registry of daemons: the others see it dead after storage.lease",
			"daemon", d.db.Holder(), "err", err)
	}
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

// runDaemon runs the daemon as a service (see runService).
func runDaemon(cfgPath string, stderr io.Writer) error {
	return runService(context.Background(), cfgPath, stderr, options{}, nil)
}
