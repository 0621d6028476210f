package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
)

const watchesUsage = `Usage: tagwatchd watches list [-user ID]
       tagwatchd watches add -user ID -provider P -hashtags a,b -schedule S -target T [-target T ...]
                             [-lang xx] [-retweets] [-backfill]
       tagwatchd watches change -id W [-hashtags a,b] [-schedule S] [-target T ...] [-lang xx] [-retweets=true|false]
       tagwatchd watches pause|resume|delete -id W

Lists and changes hashtag watches in the vault of a stopped daemon (every
command takes -config FILE). A running daemon picks changes up at start or
on SIGHUP.
`

// cmdWatches implements `tagwatchd watches`.
func cmdWatches(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, watchesUsage)
		return &exitError{2, errors.New("watches: want a subcommand: list, add, change, pause, resume, delete")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("watches "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, watchesUsage); fs.PrintDefaults() }
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
			id = fs.String("id", "", "watch id (required)")
		}
		hashtags = fs.String("hashtags", "", "comma-separated hashtags, without #")
		schedule = fs.String("schedule", "", "schedule, such as '@every 15m' or a cron expression")
		lang = fs.String("lang", "", "only posts in this language")
		retweets = fs.Bool("retweets", false, "include reposts")
		fs.Var(&targets, "target", "notification target (repeatable; on change, replaces them all)")
	case "pause", "resume", "delete":
		id = fs.String("id", "", "watch id (required)")
	default:
		fmt.Fprint(stderr, watchesUsage)
		return &exitError{2, fmt.Errorf("watches: unknown subcommand %q", sub)}
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("watches %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	if id != nil && *id == "" {
		return &exitError{2, fmt.Errorf("watches %s: -id is required", sub)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return &exitError{2, err}
	}
	validate := func(w *vault.WatchSpec) error {
		if err := enroll.CheckWatch(w); err != nil {
			return err
		}
		if n, limit := len(w.Hashtags), cfg.Scheduler.MaxHashtags; n > limit {
			return fmt.Errorf("%d hashtags: scheduler.max_hashtags allows at most %d", n, limit)
		}
		if _, err := config.ValidateSchedule(w.Schedule); err != nil {
			return fmt.Errorf("schedule %q: %v", w.Schedule, err)
		}
		_, err := xapi.BuildQuery(xapi.QuerySpec{Hashtags: w.Hashtags, Lang: w.Lang, IncludeRetweets: w.IncludeRetweets})
		return err
	}
	apply := func(w *vault.WatchSpec) {
		if set["hashtags"] {
			w.Hashtags = nil
			for _, h := range strings.Split(*hashtags, ",") {
				if h = strings.TrimSpace(h); h != "" {
					w.Hashtags = append(w.Hashtags, h)
				}
			}
		}
		if set["schedule"] {
			w.Schedule = strings.TrimSpace(*schedule)
		}
		if set["lang"] {
			w.Lang = *lang
		}
		if set["retweets"] {
			w.IncludeRetweets = *retweets
		}
		if len(targets) > 0 {
			w.Targets = targets
		}
	}
	var spec vault.WatchSpec
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
			return &exitError{2, fmt.Errorf("watches add: %s required", strings.Join(missing, ", "))}
		}
		if _, ok := cfg.Provider(*prov); !ok {
			return &exitError{2, fmt.Errorf("watches add: provider %q is not in %s", *prov, cfg.Path)}
		}
		apply(&spec)
		spec.Backfill = *backfill
		if err := validate(&spec); err != nil {
			return &exitError{2, fmt.Errorf("watches add: %w", err)}
		}
	}

	db, err := openVault(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer db.Close()
	if sub == "list" {
		return listWatches(db, *user, stdout)
	}
	var changed vault.Watch
	err = db.Update(func(tx *vault.Tx) error {
		if sub == "add" {
			if _, err := tx.UserGrant(*user, *prov); err != nil {
				return fmt.Errorf("user %s has no grant at %s (create a consent link with tagwatchd enroll): %w", *user, *prov, err)
			}
			changed = vault.Watch{ID: vault.NewID(), UserID: *user, Provider: *prov, WatchSpec: spec, State: vault.WatchActive}
			if err := tx.PutWatch(changed); err != nil {
				return err
			}
			return auditWatch(tx, changed, "added")
		}
		w, err := tx.Watch(*id)
		if err != nil {
			return fmt.Errorf("watch %s: %w", *id, err)
		}
		switch sub {
		case "change":
			apply(&w.WatchSpec)
			if err := validate(&w.WatchSpec); err != nil {
				return &exitError{2, err}
			}
		case "pause":
			if w.State == vault.WatchSuspended {
				return fmt.Errorf("watch %s is suspended (%s); it cannot be paused", w.ID, w.SuspendReason)
			}
			w.State = vault.WatchPaused
		case "resume":
			switch {
			case w.State == vault.WatchActive:
			case w.State == vault.WatchPaused, w.SuspendReason == worker.SuspendUsageCapped:
				w.State, w.SuspendReason = vault.WatchActive, ""
			default:
				return fmt.Errorf("watch %s is suspended (%s): it resumes when the user consents again", w.ID, w.SuspendReason)
			}
		case "delete":
			if err := tx.DeleteWatch(w.ID); err != nil {
				return err
			}
			changed = w
			return auditWatch(tx, w, "deleted")
		}
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		changed = w
		return auditWatch(tx, w, sub+"d")
	})
	var ee *exitError
	if errors.As(err, &ee) {
		ee.err = fmt.Errorf("watches %s: %w", sub, ee.err)
		return ee
	}
	if err != nil {
		return fmt.Errorf("watches %s: %w", sub, err)
	}
	verb := map[string]string{"add": "added", "change": "changed", "pause": "paused", "resume": "resumed", "delete": "deleted"}[sub]
	fmt.Fprintf(stdout, "watch %s %s (user %s, state %s)\n", changed.ID, verb, changed.UserID, changed.State)
	return nil
}

func auditWatch(tx *vault.Tx, w vault.Watch, what string) error {
	return tx.Audit(vault.AuditEvent{Kind: "watch_" + what, Actor: "tagwatchd watches", UserID: w.UserID,
		Detail: fmt.Sprintf("watch %s at %s: %s, schedule %q, state %s", w.ID, w.Provider, strings.Join(w.Hashtags, ","), w.Schedule, w.State)})
}

func listWatches(db *vault.DB, user string, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WATCH\tUSER\tPROVIDER\tSTATE\tSCHEDULE\tHASHTAGS\tLAST RUN\tRESULT\tRUNS\tREAD\tMATCHES")
	err := db.View(func(tx *vault.Tx) error {
		each := func(w vault.Watch) error {
			c, err := tx.Cursor(w.ID)
			if err != nil {
				return err
			}
			last := "-"
			if !c.LastRunAt.IsZero() {
				last = c.LastRunAt.UTC().Format(time.RFC3339)
			}
			state := string(w.State)
			if w.SuspendReason != "" {
				state += " (" + w.SuspendReason + ")"
			}
			result := c.LastResult
			if c.LastTruncated {
				result += ", truncated"
			}
			if result == "" {
				result = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%q\t%s\t%s\t%s\t%d\t%d\t%d\n", w.ID, w.UserID, w.Provider, state, w.Schedule,
				strings.Join(w.Hashtags, ","), last, result, c.Runs, c.PostsRead, c.Matches)
			return nil
		}
		if user != "" {
			return tx.UserWatches(user, each)
		}
		return tx.Watches(each)
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}
