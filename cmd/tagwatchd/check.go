package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// exitConfig is the exit status of a configuration error, at start or
// from check-config: EX_CONFIG of sysexits.h. systemd/tagwatch.service
// lists it in RestartPreventExitStatus=, so the unit does not restart
// into the same refusal.
const exitConfig = 78

// loadConfig is how every door that takes -config gets its
// configuration: the daemon's start (runService), check-config and every
// offline subcommand (keys, watches, enroll, damaged). It loads the file
// (parseConfig) and applies checkStart, so a secret file that is missing,
// not a regular file or readable by others, a CA file that does not load,
// ... is refused by each of them alike: exit 78, "file:line: key: what is
// wrong".
func loadConfig(ctx context.Context, path string) (*config.Config, error) {
	cfg, err := parseConfig(path)
	if err != nil {
		return nil, err
	}
	if err := checkStart(ctx, cfg); err != nil {
		return nil, &exitError{exitConfig, err}
	}
	return cfg, nil
}

// parseConfig loads the configuration file only (keys init, before it
// writes the master key the file names); an error is an *exitError with
// exitConfig whose message reads "file:line: key: what is wrong".
func parseConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &exitError{exitConfig, err}
	}
	return cfg, nil
}

// noVaultYet is the one "is there a vault here?" decision of the doors
// that may meet a path with nothing at it (the start, which then creates
// the vault, and check-config, which then has nothing stored to check):
// true only when nothing at all is there. It asks with Lstat, so a
// symbolic link, dangling or not, and anything else at the path is
// opened, and vault.Open (vault.Identify) refuses what is not a vault:
// never "no vault yet" for something that is there.
func noVaultYet(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}

// checkStart applies every rule the daemon applies at start that needs
// neither the vault nor the network, with the daemon's own functions:
// the master key and every other secret read as the daemon reads them
// (file mode 0600 or stricter, a credential needs $CREDENTIALS_DIRECTORY)
// and parsed as the daemon parses them; each provider built as the daemon
// builds it, up to OIDC discovery; the TLS pair loaded; the operator
// group looked up; the notification channels built by the notifier.
// loadConfig runs it for every door before it opens anything (the start,
// check-config, the offline subcommands), so each refuses the same
// configurations with the same messages.
// Each error is a *config.Error naming its key; several are joined.
//
// Not checked here, because only opening them tells: that the master key
// is the vault's, that the listeners bind, and that an OIDC issuer answers
// discovery with matching metadata.
func checkStart(ctx context.Context, cfg *config.Config) error {
	var errs []error
	fail := func(key string, err error) { errs = append(errs, cfg.KeyError(key, err)) }

	src, key := cfg.MasterKeySource()
	if _, err := seal.LoadMasterKey(src); err != nil {
		fail(key, err)
	}

	// Every other secret, read once; keep them for the checks below.
	raw := map[string][]byte{}
	srcs := map[string]seal.Source{}
	defer func() {
		for _, b := range raw {
			clear(b)
		}
	}()
	for _, s := range cfg.Secrets() {
		b, err := seal.ReadSecretFile(s.Source)
		if err != nil {
			fail(s.Key, err)
			continue
		}
		raw[s.Key], srcs[s.Key] = b, s.Source
	}
	secretOf := func(keys ...string) ([]byte, string, bool) {
		for _, k := range keys {
			if b, ok := raw[k]; ok {
				return b, k, true
			}
		}
		return nil, "", false
	}

	// Providers: built as newDaemon builds them. A canceled context stops
	// an OIDC provider at discovery, after every check that needs no network.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	offline, cancel := context.WithCancel(ctx)
	cancel()
	for i, pc := range cfg.Providers {
		pk := fmt.Sprintf("provider[%d]", i)
		b, sk, ok := secretOf(pk+".private_key_file", pk+".private_key_credential", pk+".client_secret_file", pk+".client_secret_credential")
		if !ok {
			continue // reported above
		}
		if pc.ClientAuth == provider.AuthPrivateKeyJWT {
			if _, _, err := provider.ParsePrivateKey(b); err != nil {
				fail(sk, err)
				continue
			}
		} else if strings.TrimSpace(string(b)) == "" {
			fail(sk, fmt.Errorf("%s is empty", srcs[sk]))
			continue
		}
		_, err := buildProvider(offline, pc, b, redirectURL(cfg), cfg.Renewal.Timeout.Duration, options{}, quiet)
		if err != nil && !errors.Is(err, context.Canceled) {
			fail(pk, errors.New(strings.TrimPrefix(err.Error(), "provider "+pc.Name+": ")))
		}
	}

	if cfg.HTTP.TLSCertFile != "" {
		if _, err := newCertReloader(cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile); err != nil {
			fail("http.tls_cert_file", unwrapKey(err))
		}
	}
	if _, err := statusapi.LookupGroup(cfg.Status.Group); err != nil {
		fail("status.group", unwrapKey(err))
	}

	// The notifier's own checks, one part at a time so that each error
	// names its key: the link key (notify.New), the webhook secrets and
	// the SMTP settings (notify.NewTargetChecker builds the channels as
	// New and Reconfigure do).
	if b, k, ok := secretOf("http.link_key_file", "http.link_key_credential"); ok {
		if err := notifyLinkKey(cfg, []byte(strings.TrimSpace(string(b)))); err != nil {
			fail(k, err)
		}
	}
	n := cfg.Notify
	channels := func(hooks []notify.WebhookSecret, smtp notify.SMTPConfig) error {
		_, err := notify.NewTargetChecker(notify.ChannelsConfig{RetrySpan: n.RetrySpan.Duration, PruneAfter: n.PruneAfter.Duration,
			MaxBacklog: n.MaxBacklog, PerTargetConcurrency: n.PerTargetConcurrency, Timeout: n.WebhookTimeout.Duration,
			AllowPrivateTargets: n.AllowPrivateTargets, Webhooks: hooks, SMTP: smtp})
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "notify: "))
		}
		return nil
	}
	for i, h := range n.Webhooks {
		wk := fmt.Sprintf("notify.webhook[%d]", i)
		b, k, ok := secretOf(wk+".secret_file", wk+".secret_credential")
		if !ok {
			continue
		}
		ws := notify.WebhookSecret{URL: h.URL, Secret: secret.New(strings.TrimSpace(string(b)))}
		if err := channels([]notify.WebhookSecret{ws}, notify.SMTPConfig{}); err != nil {
			fail(k, err)
			continue
		}
		if prev, ok := raw[wk+".previous_secret_file"]; ok {
			ws.Previous = secret.New(strings.TrimSpace(string(prev)))
			if err := channels([]notify.WebhookSecret{ws}, notify.SMTPConfig{}); err != nil {
				fail(wk+".previous_secret_file", err)
			}
		}
	}
	if sc := n.SMTP; sc.Host != "" {
		smtp := notify.SMTPConfig{Host: sc.Host, Port: sc.Port, Security: sc.Security, Username: sc.Username, From: sc.From, CAFile: sc.CAFile}
		if b, _, ok := secretOf("notify.smtp.password_file", "notify.smtp.password_credential"); ok {
			smtp.Password = secret.New(strings.TrimSpace(string(b)))
		}
		if err := channels(nil, smtp); err != nil {
			fail("notify.smtp", err)
		}
	}
	return errors.Join(errs...)
}

// redirectURL is the OAuth redirect URI every provider is registered with:
// the public URL's /callback.
func redirectURL(cfg *config.Config) string {
	return strings.TrimRight(cfg.HTTP.PublicURL, "/") + "/callback"
}

// notifyLinkKey applies notify.New's rule for the key that signs
// one-click links. New only checks and builds (it starts nothing and does
// not touch its outbox), so a nil vault stands in for the outbox.
func notifyLinkKey(cfg *config.Config, key []byte) error {
	var none *vault.DB
	_, err := notify.New(notify.Config{Outbox: none, PublicURL: cfg.HTTP.PublicURL, LinkKey: key, Console: io.Discard})
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "notify: "))
	}
	return nil
}

// unwrapKey drops the "key: " its callee put before an error (the
// *config.Error names the key itself).
func unwrapKey(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// checkStored is check-config's door for what the vault holds: when the
// vault can be opened (the daemon is stopped and the master key opens
// it), every stored watch and the watch of every pending consent link is
// checked by the rules cfg gives, as the offline doors build them
// (offlineRules: newRules with a notify.TargetChecker), with one line per
// refused one:
//
//	watch W of user U: <the rule's error>
//	consent link L for user U: <the rule's error>
//
// It returns an *exitError with status 1 when one is refused. A vault that
// does not exist yet (noVaultYet: nothing at all at its path), or that a
// running daemon holds, is said so and is not an error (the daemon's lock is the one thing it cannot get past).
// A master key that is not the vault's is a configuration error (78),
// named by its key.
func checkStored(cfg *config.Config, stdout io.Writer) error {
	path := vaultName(cfg)
	if cfg.Storage.Engine != "postgres" && noVaultYet(path) {
		fmt.Fprintf(stdout, "%s: no vault yet: no stored watches to check\n", path)
		return nil
	}
	rules, err := offlineRules(cfg)
	if err != nil {
		return &exitError{exitConfig, err}
	}
	master, err := seal.LoadMasterKey(masterSource(cfg))
	if err != nil {
		return &exitError{exitConfig, err}
	}
	// Read only: a shared lock (a running daemon's vault is ErrLocked), no
	// migration, nothing written.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine, err := openEngine(context.Background(), cfg, quiet)
	if err != nil {
		return err
	}
	db, err := vault.Open(vault.Options{Path: vaultPath(cfg), Engine: engine, Master: master, ReadOnly: true, Rules: rules,
		LockTimeout: cfg.Daemon.LockTimeout.Duration, Logger: quiet})
	switch {
	case errors.Is(err, vault.ErrNoVault):
		// A database that holds no vault yet: the first start creates it.
		fmt.Fprintf(stdout, "%s: no vault yet: no stored watches to check\n", path)
		return nil
	case errors.Is(err, vault.ErrOlderSchema):
		fmt.Fprintf(stdout, "%s: %v; stored watches and consent links were not checked\n", path, vault.ErrOlderSchema)
		return nil
	case errors.Is(err, vault.ErrLocked):
		fmt.Fprintf(stdout, "%s is held by a running daemon: stored watches and consent links were not checked (run check-config again while it is stopped)\n", path)
		return nil
	case errors.Is(err, seal.ErrWrongMasterKey):
		_, key := cfg.MasterKeySource()
		return &exitError{exitConfig, cfg.KeyError(key, err)}
	case err != nil:
		return err
	}
	defer db.Close()
	watches, err := db.ListWatches("")
	if err != nil {
		return err
	}
	links, err := db.ListLinks(db.Now())
	if err != nil {
		return err
	}
	refused, pending := 0, 0
	for _, w := range watches {
		spec := w.WatchSpec
		if err := db.CheckWatch(w.Provider, &spec); err != nil {
			refused++
			fmt.Fprintf(stdout, "watch %s of user %s: %v\n", w.ID, w.UserID, ruleError(err))
		}
	}
	for _, l := range links {
		if l.State != vault.LinkPending || l.Watch == nil {
			continue
		}
		pending++
		spec := *l.Watch
		if err := db.CheckWatch(l.Provider, &spec); err != nil {
			refused++
			fmt.Fprintf(stdout, "consent link %s for user %s: %v\n", l.ID, l.UserID, ruleError(err))
		}
	}
	// Damaged records (vault/damaged.go): the daemon skips them; say so.
	damaged, err := db.FindDamaged()
	if err != nil {
		return err
	}
	for _, r := range damaged {
		fmt.Fprintf(stdout, "%s; the daemon skips it (tagwatchd damaged delete %s %s)\n", r, r.Kind, r.ID)
	}
	if refused > 0 {
		verb := "are"
		if refused == 1 {
			verb = "is"
		}
		return &exitError{1, fmt.Errorf("check-config: %d of %s %s refused by %s's rules",
			refused, count(len(watches)+pending, "stored watch or pending consent link", "stored watches and pending consent links"), verb, cfg.Path)}
	}
	if len(damaged) > 0 {
		return &exitError{1, fmt.Errorf("check-config: %s", count(len(damaged), "stored record is damaged", "stored records are damaged"))}
	}
	fmt.Fprintf(stdout, "%s: %s and %s pass\n", path, count(len(watches), "stored watch", "stored watches"),
		count(pending, "pending consent link", "pending consent links"))
	return nil
}

// ruleError is the rule's own error inside the vault's *InvalidError
// (whose "watch: " the line already says).
func ruleError(err error) error {
	var ie *vault.InvalidError
	if errors.As(err, &ie) {
		return ie.Err
	}
	return err
}
