package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

const enrollUsage = `Usage: tagwatchd enroll -user ID -provider NAME -hashtags a,b -schedule SPEC -target T [-target T ...]
                       [-expect IDENTITY] [-ttl 72h] [-name NAME] [-email ADDRESS] [-config FILE]

Creates a one-time consent link for a user, carrying the watch it starts, in
the vault of a stopped daemon, and prints the link once: only its hash is
kept. Targets are console:, mailto:ADDRESS or a webhook URL.
`

// cmdEnroll implements `tagwatchd enroll`: it creates a one-time consent
// link against the stopped daemon's vault and prints it once.
func cmdEnroll(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, enrollUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", defaultConfigPath(), "configuration file")
	user := fs.String("user", "", "user id the grant will belong to (required)")
	prov := fs.String("provider", "", "provider name from the configuration (required)")
	hashtags := fs.String("hashtags", "", "comma-separated hashtags to watch, without # (required)")
	schedule := fs.String("schedule", "", "watch schedule, such as '@every 15m' or a cron expression (required)")
	var targets stringList
	fs.Var(&targets, "target", "where notifications go: console:, mailto:ADDRESS or a webhook URL (repeatable, required)")
	expect := fs.String("expect", "", "identity that must consent: subject, username or email")
	ttl := fs.Duration("ttl", 0, "link lifetime (default enroll.link_ttl of the configuration)")
	name := fs.String("name", "", "the user's display name")
	email := fs.String("email", "", "the user's email address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("enroll: unexpected argument %q", fs.Arg(0))}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"-user", *user}, {"-provider", *prov}, {"-hashtags", *hashtags}, {"-schedule", *schedule}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(targets) == 0 {
		missing = append(missing, "-target")
	}
	if len(missing) > 0 {
		return &exitError{2, fmt.Errorf("enroll: %s required (see tagwatchd enroll -h)", strings.Join(missing, ", "))}
	}

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return &exitError{2, err}
	}
	if _, ok := cfg.Provider(*prov); !ok {
		var names []string
		for _, p := range cfg.Providers {
			names = append(names, p.Name)
		}
		return &exitError{2, fmt.Errorf("enroll: provider %q is not in %s (configured: %s)", *prov, cfg.Path, strings.Join(names, ", "))}
	}
	spec := vault.WatchSpec{Schedule: strings.TrimSpace(*schedule), Targets: targets}
	for _, h := range strings.Split(*hashtags, ",") {
		if h = strings.TrimSpace(h); h != "" {
			spec.Hashtags = append(spec.Hashtags, h)
		}
	}
	validate := func(w vault.WatchSpec) error {
		if n, limit := len(w.Hashtags), cfg.Scheduler.MaxHashtags; n > limit {
			return fmt.Errorf("%d hashtags: scheduler.max_hashtags allows at most %d", n, limit)
		}
		if _, err := config.ValidateSchedule(w.Schedule); err != nil {
			return fmt.Errorf("schedule %q: %v", w.Schedule, err)
		}
		return nil
	}
	// Checked here too, before the vault is opened, for a quick answer.
	check := spec
	if err := enroll.CheckWatch(&check); err != nil {
		return &exitError{2, fmt.Errorf("enroll: %w", err)}
	}
	if err := validate(check); err != nil {
		return &exitError{2, fmt.Errorf("enroll: %w", err)}
	}

	logger := newLogger(cfg, stderr)
	db, err := openVault(cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	// The providers are only named here: a link needs no live provider
	// until the daemon serves it.
	providers := map[string]enroll.Provider{}
	for _, p := range cfg.Providers {
		providers[p.Name] = nil
	}
	svc, err := enroll.New(enroll.Config{DB: db, Providers: providers, PublicURL: cfg.HTTP.PublicURL,
		LinkTTL: cfg.Enroll.LinkTTL.Duration, ValidateWatch: validate, Logger: logger})
	if err != nil {
		return err
	}
	link, rec, err := svc.CreateLink(context.Background(), enroll.LinkRequest{UserID: *user, UserName: *name, UserEmail: *email,
		Provider: *prov, Expected: *expect, Watch: &spec, TTL: *ttl, CreatedBy: "tagwatchd enroll"})
	if errors.Is(err, enroll.ErrInvalidRequest) || errors.Is(err, enroll.ErrUnknownProvider) {
		return &exitError{2, err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "consent link for user %s at %s (link id %s, expires %s):\n%s\n",
		rec.UserID, rec.Provider, rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339), link)
	fmt.Fprintln(stdout, "It is shown only this once and works once. Send it to the user.")
	return nil
}
