package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
	"tagwatch/vault/seal"
)

// cmdCheckConfig implements `tagwatchd check-config`: the configuration
// as the start checks it (loadConfig, checkStart: exit 78 on an error),
// then the stored watches and pending consent links by the rules it gives
// (checkStored: exit 1 when one is refused), then "ok" when all passed.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfigPath(), "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("check-config: unexpected argument %q", fs.Arg(0))}
	}
	// The same function as the start (runService) and every offline
	// subcommand: what they refuse, this refuses, with the same exit status.
	cfg, err := loadConfig(context.Background(), *cfgPath)
	if err != nil {
		return err
	}
	// Then what is stored, by the rules this configuration gives; "ok"
	// only once that passed too.
	if err := checkStored(cfg, stdout); err != nil {
		return err
	}
	printAccount(cfg, stdout)
	fmt.Fprintf(stdout, "%s: ok (%s, vault %s)\n", cfg.Path, count(len(cfg.Providers), "provider", "providers"), vaultName(cfg))
	return nil
}

// printAccount says, when [account] is on, where the self-service page
// is, who signs in there and what each sign-in provider must have
// registered for it.
func printAccount(cfg *config.Config, stdout io.Writer) {
	a := cfg.Account
	if !a.Enabled {
		return
	}
	redirect, backchannel, postLogout := cfg.AccountRedirectURIs()
	fmt.Fprintf(stdout, "account page: %s (sign in with %s; sessions end after %s unused or %s, recent sign-in %s)\n",
		cfg.AccountURL(), strings.Join(a.SignIn, ", "), a.IdleTimeout.Duration, a.AbsoluteTimeout.Duration, a.RecentAuth.Duration)
	for _, name := range a.SignIn {
		if p, ok := cfg.Provider(name); ok && p.Kind == "oidc" {
			fmt.Fprintf(stdout, "  register at %s: redirect URI %s, back-channel logout URI %s, post-logout redirect URI %s\n",
				name, redirect, backchannel, postLogout)
		} else {
			// X has no OpenID Connect: no logout URIs to register.
			fmt.Fprintf(stdout, "  register at %s: callback URI %s\n", name, redirect)
		}
	}
}

// count is n with its noun in the right number: "1 provider", "2 providers".
func count(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// masterSource returns where the configuration says the master key is.
func masterSource(cfg *config.Config) seal.Source {
	src, _ := cfg.MasterKeySource()
	return src
}

// openVault loads the master key and opens the existing vault of a
// stopped daemon. rules are the watch rules of the doors that change
// watches or links (offlineRules); nil for the key commands, which do
// not. readOnly opens it as check-config does (vault.Options.ReadOnly):
// a door that only lists leaves the file as it was.
func openVault(cfg *config.Config, logger *slog.Logger, rules vault.WatchRules, readOnly bool) (*vault.DB, error) {
	master, err := seal.LoadMasterKey(masterSource(cfg))
	if err != nil {
		return nil, err
	}
	engine, err := openEngine(context.Background(), cfg, logger)
	if err != nil {
		return nil, err
	}
	db, err := vault.Open(vault.Options{Path: vaultPath(cfg), Engine: engine, Master: master, ReadOnly: readOnly,
		LockTimeout: cfg.Daemon.LockTimeout.Duration, Logger: logger, Rules: rules})
	if errors.Is(err, seal.ErrWrongMasterKey) {
		// A configuration error, as at start (serve) and from check-config.
		return nil, &exitError{exitConfig, fmt.Errorf("%w\nthe vault %s was not changed; check %s", err, vaultName(cfg), masterSource(cfg))}
	}
	return db, err
}

// keysCommands are tagwatchd keys's subcommands.
var keysCommands = []string{"init", "status", "rotate", "rotate-master", "generate"}

func cmdKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &exitError{2, fmt.Errorf("keys: want a subcommand: %s", strings.Join(keysCommands, ", "))}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Each subcommand takes its own flags only (the usage lists them).
	var (
		cfgPath  = new(string)
		generate = new(bool)
		newKey   = new(string)
	)
	switch {
	case !slices.Contains(keysCommands, sub):
		return &exitError{2, fmt.Errorf("keys: unknown subcommand %q (%s)", sub, strings.Join(keysCommands, ", "))}
	case sub != "generate":
		cfgPath = fs.String("config", defaultConfigPath(), "configuration file")
	}
	switch sub {
	case "init":
		generate = fs.Bool("generate", false, "also write a new master key to keys.master_key_file if it does not exist")
	case "rotate-master":
		newKey = fs.String("new-key", "", "file holding the new master key (required)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub == "generate" {
		if fs.NArg() != 1 {
			return &exitError{2, errors.New("keys generate: want one FILE")}
		}
		return writeNewMasterKey(fs.Arg(0), stdout)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if sub == "init" {
		// The file only, then the master key it names written (-generate),
		// then the start's checks (loadConfig's), which read that key.
		cfg, err := parseConfig(*cfgPath)
		if err != nil {
			return err
		}
		src := masterSource(cfg)
		if *generate {
			if src.File == "" {
				return &exitError{2, errors.New("keys init -generate: keys.master_key_file is not set (a systemd credential is created with systemd-creds, not here)")}
			}
			if _, err := os.Lstat(src.File); errors.Is(err, os.ErrNotExist) {
				if err := writeNewMasterKey(src.File, stdout); err != nil {
					return err
				}
			}
		}
		if err := checkStart(context.Background(), cfg); err != nil {
			return &exitError{exitConfig, err}
		}
		if cfg.Storage.Engine == "postgres" {
			// The first start creates the vault in the database, under
			// the master key it reads, as for a bbolt file.
			fmt.Fprintf(stdout, "keys init: nothing to do for storage.engine = \"postgres\": the daemon's first start creates the vault %s sealed under master key file or credential %s\n",
				vaultName(cfg), src)
			return nil
		}
		if !noVaultYet(cfg.DatabasePath()) {
			if err := vault.Identify(cfg.DatabasePath()); errors.Is(err, vault.ErrBadFile) {
				return fmt.Errorf("keys init: %w", err)
			}
			return fmt.Errorf("keys init: the vault %s already exists; it is never re-initialised", cfg.DatabasePath())
		}
		master, err := seal.LoadMasterKey(src)
		if err != nil {
			return fmt.Errorf("keys init: %w", err)
		}
		db, err := vault.Open(vault.Options{Path: cfg.DatabasePath(), Master: master, Create: true,
			LockTimeout: cfg.Daemon.LockTimeout.Duration, Logger: logger})
		if err != nil {
			return err
		}
		defer db.Close()
		fmt.Fprintf(stdout, "created vault %s sealed under master key %s\n", cfg.DatabasePath(), master.ID())
		return nil
	}
	if sub == "rotate-master" && *newKey == "" {
		return &exitError{2, errors.New("keys rotate-master: -new-key FILE is required")}
	}
	cfg, err := loadConfig(context.Background(), *cfgPath)
	if err != nil {
		return err
	}
	// status only reads: the file is not changed.
	db, err := openVault(cfg, logger, nil, sub == "status")
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "rotate":
		id, err := db.RotateDataKey("tagwatchd keys rotate", 100)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "data key %d is active; records re-sealed\n", id)
	case "rotate-master":
		next, err := seal.LoadMasterKey(seal.Source{File: *newKey})
		if err != nil {
			return err
		}
		if err := db.RotateMaster(next, "tagwatchd keys rotate-master"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "data keys re-wrapped under master key %s.\nReplace %s with %s before the next start: only the new key opens the vault now.\n",
			next.ID(), masterSource(cfg), *newKey)
	}
	return printKeyStatus(db, stdout)
}

func printKeyStatus(db *vault.DB, w io.Writer) error {
	ks, err := db.KeyStatus()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "master key %s; active data key %d\n", ks.MasterID, ks.Active)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCREATED\tSEALED FIELDS\tACTIVE")
	for _, k := range ks.Keys {
		active := ""
		if k.ID == ks.Active {
			active = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", k.ID, k.Created.Format(time.RFC3339), k.Records, active)
	}
	return tw.Flush()
}

func writeNewMasterKey(path string, stdout io.Writer) error {
	m, enc, err := seal.NewMasterKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write master key: %w", err)
	}
	if _, err := f.Write(enc); err != nil {
		f.Close()
		return fmt.Errorf("write master key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote master key %s to %s (mode 0600); keep a copy offline\n", m.ID(), path)
	return nil
}
