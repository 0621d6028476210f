package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/cliflag"
	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
)

const watchesUsage = `Usage: tagwatchd watches list [-user ID]
       tagwatchd watches add -user ID -provider P -hashtags a,b -schedule S -target T [-target T ...]
                             [-lang xx] [-retweets] [-backfill]
       tagwatchd watches change WATCH [-hashtags a,b] [-schedule S] [-target T ...] [-lang xx] [-retweets=true|false]
       tagwatchd watches pause|resume|delete WATCH

Lists and changes hashtag watches in the vault of a stopped daemon (every
command takes -config FILE), with the rules the daemon applies, built from
the same configuration. A running daemon picks changes up at start or on
SIGHUP; while it runs, use tagwatchctl. The watch is named by its id, as
an argument or with -id W. Flags may come before or after it.

Targets are console:, mailto:ADDRESS (with [notify.smtp]), a webhook URL
with a secret in [[notify.webhook]], or a chat URL (ntfy://, slack://, ...).

Exit status, as tagwatchctl's: 0 ok, 1 failure, 2 usage or invalid input,
5 no such watch, 6 conflict (the same watch exists, or the watch's state
does not allow it), 78 configuration error.
`

// actorWatches names this door in the audit trail.
const actorWatches = "tagwatchd watches"

// cmdWatches implements `tagwatchd watches`. Every change is one call of
// the vault's watch methods, which apply the rules; their refusals exit
// as tagwatchctl's do (offlineErr).
func cmdWatches(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, watchesUsage)
		return &exitError{exitUsage, errors.New("watches: want a subcommand: list, add, change, pause, resume, delete")}
	}
	sub := args[0]
	switch sub {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, watchesUsage)
		return nil
	}
	fs := flag.NewFlagSet("watches "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", defaultConfigPath(), "configuration file")
	var (
		id, user, prov, hashtags, schedule, lang *string
		retweets, backfill                       *bool
		targets                                  stringList
	)
	switch sub {
	case "list":
		user = fs.String("user", "", "only this user's watches")
	case "add", "change":
		if sub == "add" {
			user = fs.String("user", "", "user id (required)")
			prov = fs.String("provider", "", "provider name (required)")
			backfill = fs.Bool("backfill", false, "let the first run read the last 7 days")
		} else {
			id = fs.String("id", "", "watch id (or give it as the argument)")
		}
		hashtags = fs.String("hashtags", "", "comma-separated hashtags, without #")
		schedule = fs.String("schedule", "", "schedule, such as '@every 15m' or a cron expression")
		lang = fs.String("lang", "", "only posts in this language")
		retweets = fs.Bool("retweets", false, "include reposts")
		fs.Var(&targets, "target", "where notifications go: console:, mailto:ADDRESS, a webhook URL or a chat URL (ntfy://, slack://, ...)"+
			" (repeatable; on change, replaces them all)")
	case "pause", "resume", "delete":
		id = fs.String("id", "", "watch id (or give it as the argument)")
	default:
		fmt.Fprint(stderr, watchesUsage)
		return &exitError{exitUsage, fmt.Errorf("watches: unknown subcommand %q", sub)}
	}
	pos, err := cliflag.ParseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printFlagsUsage(stdout, watchesUsage, fs)
		return nil
	}
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("watches %s: %w (see tagwatchd watches -h)", sub, err)}
	}
	if id != nil && len(pos) > 0 {
		if *id != "" && *id != pos[0] {
			return &exitError{exitUsage, fmt.Errorf("watches %s: name the watch once, as the argument or with -id", sub)}
		}
		*id, pos = pos[0], pos[1:]
	}
	if len(pos) > 0 {
		return &exitError{exitUsage, fmt.Errorf("watches %s: unexpected argument %q", sub, pos[0])}
	}
	if id != nil && *id == "" {
		return &exitError{exitUsage, fmt.Errorf("watches %s: the watch id is required (tagwatchd watches %s WATCH)", sub, sub)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if sub == "add" {
		var missing []string
		for _, f := range []string{"user", "provider", "hashtags", "schedule"} {
			if !set[f] {
				missing = append(missing, "-"+f)
			}
		}
		if len(targets) == 0 {
			missing = append(missing, "-target")
		}
		if len(missing) > 0 {
			return &exitError{exitUsage, fmt.Errorf("watches add: %s required", strings.Join(missing, ", "))}
		}
	}
	cfg, err := loadConfig(context.Background(), *cfgPath)
	if err != nil {
		return err
	}
	db, err := openOffline(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer db.Close()

	var (
		w       vault.Watch
		changed = true
	)
	switch sub {
	case "list":
		return listWatches(db, *user, stdout)
	case "add":
		spec := vault.WatchSpec{Hashtags: splitList(*hashtags), Schedule: *schedule, Lang: *lang, IncludeRetweets: *retweets,
			Targets: targets, Backfill: *backfill}
		w, err = db.AddWatch(vault.NewWatch{UserID: *user, Provider: *prov, Spec: spec}, actorWatches)
		if errors.Is(err, vault.ErrDuplicateWatch) {
			// As the status socket says it.
			err = &shownError{fmt.Sprintf("user %q already has this watch at %q: watch %s", *user, *prov, w.ID), err}
		}
	case "change":
		var c vault.WatchChange
		if set["hashtags"] {
			c.Hashtags = splitList(*hashtags)
		}
		if set["schedule"] {
			c.Schedule = schedule
		}
		if set["lang"] {
			c.Lang = lang
		}
		if set["retweets"] {
			c.IncludeRetweets = retweets
		}
		if len(targets) > 0 {
			c.Targets = targets
		}
		w, err = db.ChangeWatch(*id, c, actorWatches)
	case "pause":
		w, changed, err = db.PauseWatch(*id, actorWatches)
	case "resume":
		w, changed, err = db.ResumeWatch(*id, actorWatches)
	case "delete":
		w, err = db.DeleteWatch(*id, actorWatches)
	}
	if err != nil {
		return offlineErr("watches "+sub, err)
	}
	verb := map[string]string{"add": "added", "change": "changed", "pause": "paused", "resume": "resumed", "delete": "deleted"}[sub]
	if !changed {
		verb = "unchanged"
	}
	fmt.Fprintf(stdout, "watch %s %s (user %s, state %s)\n", w.ID, verb, w.UserID, w.StateText())
	return nil
}

// printFlagsUsage prints a command's usage text and its flags to w: the
// answer to -h, which is asked for (on stdout, exit 0).
func printFlagsUsage(w io.Writer, usage string, fs *flag.FlagSet) {
	fmt.Fprint(w, usage)
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// openOffline opens a stopped daemon's vault with the rules the daemon
// would apply under cfg (offlineRules). A notification channel that does
// not build (a webhook secret that does not read) is a configuration
// error, as it is at start.
func openOffline(cfg *config.Config, logger *slog.Logger) (*vault.DB, error) {
	rules, err := offlineRules(cfg)
	if err != nil {
		return nil, &exitError{exitConfig, err}
	}
	return openVault(cfg, logger, rules, false)
}

func listWatches(db *vault.DB, user string, stdout io.Writer) error {
	ws, err := db.ListWatches(user)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WATCH\tUSER\tPROVIDER\tSTATE\tSCHEDULE\tHASHTAGS\tLAST RUN\tRESULT\tRUNS\tREAD\tMATCHES")
	for _, w := range ws {
		c := w.Cursor
		last := "-"
		if !c.LastRunAt.IsZero() {
			last = c.LastRunAt.UTC().Format(time.RFC3339)
		}
		result := c.LastResult
		if c.LastTruncated {
			result += ", truncated"
		}
		if result == "" {
			result = "-"
		}
		// Hashtags and the schedule as tagwatchctl watches list shows
		// them: "#golang #rust", "@every 5m" (unquoted: columns are apart
		// by two spaces or more).
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", w.ID, w.UserID, w.Provider, w.StateText(), w.Schedule,
			"#"+strings.Join(w.Hashtags, " #"), last, result, c.Runs, c.PostsRead, c.Matches)
	}
	return tw.Flush()
}
