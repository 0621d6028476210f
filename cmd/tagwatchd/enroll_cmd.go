package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tagwatch/cmd/internal/cliflag"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// splitList splits a comma-separated flag value, dropping empty elements.
// It is never nil, so a flag given empty still says "none".
func splitList(v string) []string {
	out := []string{}
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

const enrollUsage = `Usage: tagwatchd enroll -user ID -provider NAME -hashtags a,b -schedule SPEC -target T [-target T ...]
                       [-lang xx] [-backfill] [-expect IDENTITY] [-ttl 72h] [-name NAME] [-email ADDRESS] [-config FILE]

Creates a one-time consent link for a user, carrying the watch it starts, in
the vault of a stopped daemon, and prints the link once: only its hash is
kept. The watch is checked by the rules the daemon applies, built from the
same configuration: what the daemon (tagwatchctl enroll) refuses, this
refuses. Targets are console:, mailto:ADDRESS (with [notify.smtp]), a
webhook URL with a secret in [[notify.webhook]], or a chat URL (ntfy://,
slack://, ...).

Exit status, as tagwatchctl's: 0 ok, 1 failure, 2 usage or invalid input,
78 configuration error.
`

// cmdEnroll implements `tagwatchd enroll`: it creates a one-time consent
// link against the stopped daemon's vault and prints it once. Its
// refusals exit as tagwatchctl enroll's do (offlineErr).
func cmdEnroll(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", defaultConfigPath(), "configuration file")
	user := fs.String("user", "", "user id the grant will belong to (required)")
	prov := fs.String("provider", "", "provider name from the configuration (required)")
	hashtags := fs.String("hashtags", "", "comma-separated hashtags to watch, without # (required)")
	schedule := fs.String("schedule", "", "watch schedule, such as '@every 15m' or a cron expression (required)")
	var targets stringList
	fs.Var(&targets, "target", "where notifications go: console:, mailto:ADDRESS, a webhook URL or a chat URL (ntfy://, slack://, ...) (repeatable, required)")
	lang := fs.String("lang", "", "only posts in this language")
	backfill := fs.Bool("backfill", false, "let the first run read the recent past")
	expect := fs.String("expect", "", "identity that must consent: subject, username or email")
	ttl := fs.Duration("ttl", 0, "link lifetime (default enroll.link_ttl of the configuration)")
	name := fs.String("name", "", "the user's display name")
	email := fs.String("email", "", "the user's email address")
	pos, err := cliflag.ParseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printFlagsUsage(stdout, enrollUsage, fs)
		return nil
	}
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("enroll: %w (see tagwatchd enroll -h)", err)}
	}
	if len(pos) > 0 {
		return &exitError{exitUsage, fmt.Errorf("enroll: unexpected argument %q", pos[0])}
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
		return &exitError{exitUsage, fmt.Errorf("enroll: %s required (see tagwatchd enroll -h)", strings.Join(missing, ", "))}
	}

	cfg, err := loadConfig(context.Background(), *cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	db, err := openOffline(cfg, logger)
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
		LinkTTL: cfg.Enroll.LinkTTL.Duration, TargetLabel: notify.TargetLabel, Cadence: notify.Cadence, Logger: logger})
	if err != nil {
		return err
	}
	spec := vault.WatchSpec{Hashtags: splitList(*hashtags), Schedule: *schedule, Lang: *lang, Targets: targets, Backfill: *backfill}
	link, rec, err := svc.CreateLink(context.Background(), vault.LinkRequest{UserID: *user, UserName: *name, UserEmail: *email,
		Provider: *prov, Expected: *expect, Watch: &spec, TTL: *ttl, CreatedBy: "tagwatchd enroll"})
	if err != nil {
		return offlineErr("enroll", err)
	}
	fmt.Fprintf(stdout, "consent link for user %s at %s (link id %s, expires %s):\n%s\n",
		rec.UserID, rec.Provider, rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339), link)
	fmt.Fprintln(stdout, "It is shown only this once and works once. Send it to the user.")
	return nil
}
