package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// noArgs wraps an action that takes no positional arguments.
func noArgs(fn func(e *env) error) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		return fn(e)
	}
}

// oneArg wraps an action that takes exactly one positional argument.
func oneArg(what string, fn func(e *env, arg string) error) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		if len(args) != 1 {
			return usagef("want exactly one %s", what)
		}
		return fn(e, args[0])
	}
}

func table(w io.Writer, header string, rows func(tw *tabwriter.Writer)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

// when formats a time for a table: "-" for none, else UTC with the
// distance from now.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Until(t).Round(time.Second)
	rel := "in " + d.String()
	if d < 0 {
		rel = (-d).String() + " ago"
	}
	return stamp(t) + " (" + rel + ")"
}

// stamp is a time as the tables show it: UTC, in RFC 3339 with a space
// for the T, to the second, "2026-11-30 09:48:36Z".
func stamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkWatches shows whether a change to a watch was applied.
const checkWatches = "tagwatchctl watches list"

// commandTable returns the commands; completion and help read it too.
func commandTable() []*command {
	return []*command{
		{name: "status", summary: "show the daemon's version, uptime, readiness, counts and last errors",
			flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdStatus) }},
		{name: "users", summary: "list users with their grant and watch counts",
			flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdUsers) }},
		{name: "grants", summary: "list grants and their health (never a token)",
			flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdGrants) }},
		{name: "watches", summary: "list and change watches", subs: []*command{
			{name: "list", summary: "list watches with schedule, next and last run, cursor and posts read",
				flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdWatchesList) }},
			{name: "add", summary: "add a watch for a user who has a grant at the provider", flags: watchAddFlags, check: checkWatches},
			{name: "change", args: "WATCH", summary: "change a watch's hashtags, schedule, targets or language", flags: watchChangeFlags, check: checkWatches},
			{name: "pause", args: "WATCH", summary: "pause a watch", flags: watchAction("pause"), check: checkWatches},
			{name: "resume", args: "WATCH", summary: "resume a paused watch", flags: watchAction("resume"), check: checkWatches},
			{name: "delete", args: "WATCH", summary: "delete a watch and its cursor", flags: watchAction("delete"), check: checkWatches},
			{name: "run", args: "WATCH", summary: "run a watch now", flags: watchAction("run"), check: checkWatches},
		}},
		{name: "enroll", summary: "create a one-time consent link for a user, or with --sign-in a sign-in link (printed once)", flags: enrollFlags, check: "tagwatchctl enroll list", subs: []*command{
			{name: "list", summary: "list consent links and their state",
				flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdEnrollList) }},
			{name: "cancel", args: "LINK-ID", summary: "cancel a consent link", check: "tagwatchctl enroll list",
				flags: func(fs *flag.FlagSet) func(*env, []string) error {
					return oneArg("link id", func(e *env, id string) error {
						if err := e.client.CancelEnrollment(e.ctx, id); err != nil {
							return err
						}
						return done(e, "link "+id+" canceled")
					})
				}},
		}},
		{name: "revoke", args: "GRANT", summary: "end a grant: tokens deleted here, revoked at the provider, watches suspended",
			check: "tagwatchctl grants",
			flags: func(fs *flag.FlagSet) func(*env, []string) error {
				return oneArg("grant id", func(e *env, id string) error {
					r, err := e.client.Revoke(e.ctx, id)
					if err != nil {
						return err
					}
					if e.json {
						return printJSON(e.out, r)
					}
					fmt.Fprintln(e.out, revokeText(id, r))
					return nil
				})
			}},
		{name: "outbox", summary: "the notification queue", subs: []*command{
			{name: "list", summary: "count notifications per target and list those in a state", flags: outboxListFlags},
			{name: "replay", args: "ID", summary: "queue a dead notification again, under the same id",
				check: "tagwatchctl outbox list --state all",
				flags: func(fs *flag.FlagSet) func(*env, []string) error {
					return oneArg("notification id", func(e *env, id string) error {
						r, err := e.client.Replay(e.ctx, id)
						if err != nil {
							return err
						}
						if e.json {
							return printJSON(e.out, r)
						}
						fmt.Fprintf(e.out, "notification %s to %s is %s again\n", r.ID, r.Target, r.State)
						return nil
					})
				}},
		}},
		{name: "audit", summary: "show the newest events of the audit trail (--all for every one)", flags: auditFlags},
		damagedCommand(),
		daemonsCommand(),
		{name: "keys", summary: "the vault's keyring", subs: []*command{
			{name: "status", summary: "show the master key id and the data keys with their use",
				flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdKeysStatus) }},
			{name: "rotate", summary: "make a new data key active, re-seal every record, retire unused keys",
				check: "tagwatchctl keys status",
				flags: func(fs *flag.FlagSet) func(*env, []string) error {
					return noArgs(func(e *env) error {
						r, err := e.client.RotateKeys(e.ctx)
						if err != nil {
							return err
						}
						if e.json {
							return printJSON(e.out, r)
						}
						fmt.Fprintf(e.out, "data key %d is active; every record was re-sealed under it\n", r.Active)
						return nil
					})
				}},
		}},
		{name: "backup", args: "FILE", summary: "write a consistent copy of the vault (still sealed) to FILE", flags: backupFlags},
		{name: "metrics", summary: "print the Prometheus metrics",
			flags: func(fs *flag.FlagSet) func(*env, []string) error {
				return noArgs(func(e *env) error {
					s, err := e.client.Metrics(e.ctx)
					if err != nil {
						return err
					}
					_, err = io.WriteString(e.out, s)
					return err
				})
			}},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script",
			flags: func(fs *flag.FlagSet) func(*env, []string) error {
				return oneArg("shell (bash or zsh)", func(e *env, shell string) error { return completion(e.out, shell) })
			}},
	}
}

// revokeText says what a revocation did, here and at the provider: it
// does not say "revoked at the provider" when that is only queued (C15).
func revokeText(id string, r statusapi.RevokeResult) string {
	switch {
	case r.AlreadyRevoked:
		return "grant " + id + " was already revoked; nothing changed"
	case r.RevokedAtProvider:
		return "grant " + id + " revoked: tokens deleted here, its watches suspended, and the provider confirmed the revocation"
	case r.Queued:
		return "grant " + id + " revoked here (tokens deleted, its watches suspended); the revocation at the provider did not go through yet: it is queued and the daemon retries it"
	}
	return "grant " + id + " revoked here (tokens deleted, its watches suspended); the provider was not asked (it has no revocation endpoint, or the grant held no refresh token)"
}

func done(e *env, msg string) error {
	if e.json {
		return printJSON(e.out, statusapi.Done{OK: true})
	}
	fmt.Fprintln(e.out, msg)
	return nil
}

func cmdStatus(e *env) error {
	s, err := e.client.Status(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, s)
	}
	w := e.out
	fmt.Fprintf(w, "tagwatchd %s, up %s, ready: %t\n", s.Version, (time.Duration(s.Uptime) * time.Second).String(), s.Ready)
	comps := make(map[string]int, len(s.Components))
	for k := range s.Components {
		comps[k] = 0
	}
	for _, k := range sortedKeys(comps) {
		fmt.Fprintf(w, "  %-10s %s\n", k, s.Components[k])
	}
	fmt.Fprintf(w, "users: %d\n", s.Counts.Users)
	for _, c := range []struct {
		name string
		m    map[string]int
	}{{"grants", s.Counts.Grants}, {"watches", s.Counts.Watches}, {"outbox", s.Counts.Outbox}, {"links", s.Counts.Enrollments}} {
		var parts []string
		for _, k := range sortedKeys(c.m) {
			parts = append(parts, fmt.Sprintf("%s %d", k, c.m[k]))
		}
		fmt.Fprintf(w, "%s: %s\n", c.name, dash(strings.Join(parts, ", ")))
	}
	printRateLimits(w, s.RateLimits)
	printUsageCaps(w, s.UsageCaps)
	printDamagedStatus(w, s.Damaged)
	if len(s.LastErrors) > 0 {
		fmt.Fprintln(w, "last errors:")
		for _, le := range s.LastErrors {
			fmt.Fprintf(w, "  %s  %s  %s\n", le.Time.UTC().Format(time.RFC3339), le.Message, le.Detail)
		}
	}
	return nil
}

func cmdUsers(e *env) error {
	us, err := e.client.Users(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, us)
	}
	return table(e.out, "USER\tNAME\tEMAIL\tGRANTS\tWATCHES\tCREATED", func(tw *tabwriter.Writer) {
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, dash(u.Name), dash(u.Email), withDamaged(u.Grants, u.DamagedGrants),
				withDamaged(u.Watches, u.DamagedWatches), u.CreatedAt.UTC().Format(time.DateOnly))
		}
	})
}

// withDamaged is a count of the users table with its damaged records:
// "1 (+1 damaged: tagwatchctl damaged)".
func withDamaged(n, damaged int) string {
	if damaged == 0 {
		return strconv.Itoa(n)
	}
	return fmt.Sprintf("%d (+%d damaged: tagwatchctl damaged)", n, damaged)
}

func cmdGrants(e *env) error {
	gs, err := e.client.Grants(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, gs)
	}
	return table(e.out, "GRANT\tUSER\tPROVIDER\tIDENTITY\tSTATE\tACCESS EXPIRES\tLAST REFRESH\tREFRESHES\tLAST ERROR\tIN FLIGHT", func(tw *tabwriter.Writer) {
		for _, g := range gs {
			if g.State == statusapi.GrantDamaged {
				fmt.Fprintf(tw, "%s\t%s\t%s\t-\t%s\t-\t-\t-\t-\t-\n", g.ID, dash(g.UserID), dash(g.Provider), damagedGrantState(g))
				continue
			}
			state := g.State
			if !g.NeedsReconsentSince.IsZero() {
				state += " since " + stamp(g.NeedsReconsentSince)
			}
			id := g.Subject
			if g.Username != "" {
				id = "@" + g.Username
			}
			inFlight := "-"
			if !g.RefreshInFlight.IsZero() {
				inFlight = "since " + stamp(g.RefreshInFlight)
				if g.RefreshHolder != "" {
					inFlight += " on daemon " + g.RefreshHolder
				} else {
					inFlight += ", outcome unknown"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", g.ID, g.UserID, g.Provider, id, state,
				when(g.AccessExpiry), when(g.LastRefresh), g.RefreshCount, dash(g.LastErrorClass), inFlight)
		}
	})
}

func cmdWatchesList(e *env) error {
	ws, err := e.client.Watches(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, ws)
	}
	return table(e.out, "WATCH\tUSER\tHASHTAGS\tSCHEDULE\tSTATE\tNEXT RUN\tLAST RUN\tRESULT\tCURSOR\tPOSTS READ", func(tw *tabwriter.Writer) {
		for _, w := range ws {
			tags := "#" + strings.Join(w.Hashtags, " #")
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", w.ID, w.UserID, tags, w.Schedule, watchState(w),
				nextRunText(w), when(w.LastRunAt), dash(w.LastResult), dash(w.Cursor), w.PostsRead)
		}
	})
}

// damagedGrantState is a damaged grant's STATE in the grants table:
// "damaged: <what is wrong>; repair: tagwatchctl damaged reset G | ...".
func damagedGrantState(g statusapi.Grant) string {
	s := g.State + ": " + dash(g.Problem)
	if len(g.Repair) > 0 {
		s += "; repair: " + strings.Join(g.Repair, " | ")
	}
	return s
}

// watchState is a watch's state as the tables show it: "active",
// "suspended (needs_reconsent)", ", refused: <the rule's message>"
// when the daemon's current rules refuse it (it then does not run),
// ", held: <why>" when it does not run until an operator repairs
// something (its grant is damaged), and ", rate limited until <T>
// (<window> of <endpoint> at <provider>)" while a rate limit holds its
// user's runs (holdText), and ", usage capped at <provider>" for an
// active watch its provider's usage cap holds (added since the cap).
func watchState(w statusapi.Watch) string {
	state := w.State
	if w.SuspendReason != "" {
		state += " (" + w.SuspendReason + ")"
	}
	if w.UsageCap != nil && w.SuspendReason == "" {
		state += ", usage capped at " + w.Provider
	}
	if w.Invalid != "" {
		state += ", refused: " + w.Invalid
	}
	if w.Held != "" {
		state += ", held: " + w.Held
	}
	if h := w.RateLimited; h != nil {
		state += ", " + holdText(*h)
	}
	return state
}

func printWatch(e *env, w statusapi.Watch, verb string) error {
	if e.json {
		return printJSON(e.out, w)
	}
	fmt.Fprintf(e.out, "watch %s %s: #%s, %q, %s\n", w.ID, verb, strings.Join(w.Hashtags, " #"), w.Schedule, watchState(w))
	return nil
}

func watchAddFlags(fs *flag.FlagSet) func(*env, []string) error {
	user := fs.String("user", "", "the user (required)")
	prov := fs.String("provider", "", "the provider the user has a grant at (required)")
	tags := fs.String("hashtags", "", "comma-separated hashtags, without # (required)")
	sched := fs.String("schedule", "", "schedule, such as '@every 15m' or a cron expression (required)")
	var targets stringList
	fs.Var(&targets, "target", "where notifications go: console:, mailto:ADDRESS, a webhook URL or a chat URL (ntfy://, slack://, ...) (repeatable, required)")
	lang := fs.String("lang", "", "only posts in this language (BCP 47)")
	rts := fs.Bool("retweets", false, "include retweets")
	backfill := fs.Bool("backfill", false, "let the first run read the recent past")
	return noArgs(func(e *env) error {
		if *user == "" || *prov == "" || *tags == "" || *sched == "" || len(targets) == 0 {
			return usagef("--user, --provider, --hashtags, --schedule and --target are required")
		}
		w, err := e.client.AddWatch(e.ctx, statusapi.AddWatch{UserID: *user, Provider: *prov, WatchSpec: statusapi.WatchSpec{
			Hashtags: splitList(*tags), Lang: *lang, IncludeRetweets: *rts, Schedule: *sched, Targets: targets, Backfill: *backfill}})
		if err != nil {
			return err
		}
		return printWatch(e, w, "added")
	})
}

func watchChangeFlags(fs *flag.FlagSet) func(*env, []string) error {
	tags := fs.String("hashtags", "", "new comma-separated hashtags")
	sched := fs.String("schedule", "", "new schedule")
	var targets stringList
	fs.Var(&targets, "target", "new targets: console:, mailto:ADDRESS, a webhook URL or a chat URL (ntfy://, slack://, ...) (repeatable; replaces all)")
	lang := fs.String("lang", "", "new language ('-' for any)")
	rts := fs.String("retweets", "", "include retweets: true or false")
	return oneArg("watch id", func(e *env, id string) error {
		var req statusapi.ChangeWatch
		changed := false
		if *tags != "" {
			req.Hashtags, changed = splitList(*tags), true
		}
		if *sched != "" {
			req.Schedule, changed = sched, true
		}
		if len(targets) > 0 {
			req.Targets, changed = targets, true
		}
		if *lang != "" {
			l := *lang
			if l == "-" {
				l = ""
			}
			req.Lang, changed = &l, true
		}
		if *rts != "" {
			b, err := strconv.ParseBool(*rts)
			if err != nil {
				return usagef("--retweets wants true or false")
			}
			req.IncludeRetweets, changed = &b, true
		}
		if !changed {
			return usagef("nothing to change: give --hashtags, --schedule, --target, --lang or --retweets")
		}
		w, err := e.client.ChangeWatch(e.ctx, id, req)
		if err != nil {
			return err
		}
		return printWatch(e, w, "changed")
	})
}

func watchAction(verb string) func(fs *flag.FlagSet) func(*env, []string) error {
	return func(fs *flag.FlagSet) func(*env, []string) error {
		return oneArg("watch id", func(e *env, id string) error {
			switch verb {
			case "pause", "resume":
				f := e.client.PauseWatch
				if verb == "resume" {
					f = e.client.ResumeWatch
				}
				w, err := f(e.ctx, id)
				if err != nil {
					return err
				}
				return printWatch(e, w, verb+"d")
			case "delete":
				if err := e.client.DeleteWatch(e.ctx, id); err != nil {
					return err
				}
				return done(e, "watch "+id+" deleted")
			default:
				if err := e.client.RunWatch(e.ctx, id); err != nil {
					return err
				}
				return done(e, "watch "+id+" queued to run now")
			}
		})
	}
}

func enrollFlags(fs *flag.FlagSet) func(*env, []string) error {
	user := fs.String("user", "", "user id the grant will belong to (required)")
	prov := fs.String("provider", "", "provider name from the daemon's configuration (required)")
	tags := fs.String("hashtags", "", "comma-separated hashtags to watch, without # (required)")
	sched := fs.String("schedule", "", "watch schedule, such as '@every 15m' or a cron expression (required)")
	var targets stringList
	fs.Var(&targets, "target", "where notifications go: console:, mailto:ADDRESS, a webhook URL or a chat URL (ntfy://, slack://, ...) (repeatable, required)")
	expect := fs.String("expect", "", "identity that must consent: subject, username or email")
	ttl := fs.Duration("ttl", 0, "link lifetime (default: the daemon's enroll.link_ttl)")
	name := fs.String("name", "", "the user's display name")
	email := fs.String("email", "", "the user's email address")
	lang := fs.String("lang", "", "only posts in this language")
	backfill := fs.Bool("backfill", false, "let the first run read the recent past")
	signIn := fs.Bool("sign-in", false, "a sign-in link instead: the account the user signs in with (at an OpenID Connect provider) "+
		"may then open their tagwatch page; no watch, no grant (only --user, --provider, --expect, --ttl, --name and --email go with it)")
	return noArgs(func(e *env) error {
		req := statusapi.EnrollRequest{UserID: *user, UserName: *name, UserEmail: *email, Provider: *prov, Expected: *expect}
		kind := "consent link"
		switch {
		case *signIn && (*tags != "" || *sched != "" || len(targets) > 0 || *lang != "" || *backfill):
			return usagef("--sign-in makes a link that only binds who signs in: --hashtags, --schedule, --target, --lang and --backfill do not go with it")
		case *signIn && (*user == "" || *prov == ""):
			return usagef("--user and --provider are required")
		case *signIn:
			req.SignIn, kind = true, "sign-in link"
		case *user == "" || *prov == "" || *tags == "" || *sched == "" || len(targets) == 0:
			return usagef("--user, --provider, --hashtags, --schedule and --target are required")
		default:
			req.Watch = &statusapi.WatchSpec{Hashtags: splitList(*tags), Lang: *lang, Schedule: *sched, Targets: targets, Backfill: *backfill}
		}
		if *ttl != 0 {
			req.TTL = ttl.String()
		}
		r, err := e.client.Enroll(e.ctx, req)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.out, r)
		}
		fmt.Fprintf(e.out, "%s for user %s at %s (link id %s, expires %s):\n%s\n", kind, r.Enrollment.UserID, r.Enrollment.Provider,
			r.Enrollment.ID, r.Enrollment.ExpiresAt.UTC().Format(time.RFC3339), r.Link)
		fmt.Fprintln(e.out, "It is shown only this once and works once. Send it to the user.")
		return nil
	})
}

func cmdEnrollList(e *env) error {
	ls, err := e.client.Enrollments(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, ls)
	}
	return table(e.out, "LINK\tPURPOSE\tSTATE\tUSER\tPROVIDER\tCREATED BY\tEXPIRES\tUSED", func(tw *tabwriter.Writer) {
		for _, l := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.Purpose, l.State, l.UserID, l.Provider, dash(l.CreatedBy),
				when(l.ExpiresAt), when(l.UsedAt))
		}
	})
}

func outboxListFlags(fs *flag.FlagSet) func(*env, []string) error {
	state := fs.String("state", "dead", "list rows in this state: pending, retrying, dead, dropped, delivered or all")
	limit := fs.Int("limit", 100, "list at most this many rows")
	return noArgs(func(e *env) error {
		o, err := e.client.Outbox(e.ctx, *state, *limit)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.out, o)
		}
		err = table(e.out, "TARGET\tPENDING\tRETRYING\tDEAD\tDROPPED\tDELIVERED\tOLDEST WAITING", func(tw *tabwriter.Writer) {
			for _, t := range o.Targets {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", t.Target, t.Pending, t.Retrying, t.Dead, t.Dropped, t.Delivered, when(t.OldestWaiting))
			}
		})
		if err != nil || len(o.Rows) == 0 {
			return err
		}
		fmt.Fprintf(e.out, "\n%s notifications:\n", *state)
		return table(e.out, "ID\tKIND\tUSER\tTARGET\tSTATE\tATTEMPTS\tCREATED\tLAST ERROR", func(tw *tabwriter.Writer) {
			for _, r := range o.Rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Kind, r.UserID, r.Target, r.State, r.Attempts,
					r.CreatedAt.UTC().Format(time.DateTime), dash(r.LastError))
			}
		})
	})
}

// auditPage is how many events tagwatchctl audit --all asks for at once.
const auditPage = 1000

func auditFlags(fs *flag.FlagSet) func(*env, []string) error {
	after := fs.Uint64("after", 0, "show the oldest events after this sequence number")
	before := fs.Uint64("before", 0, "show the newest events before this sequence number")
	limit := fs.Int("limit", 100, "show at most this many events")
	all := fs.Bool("all", false, "show every event, oldest first")
	return noArgs(func(e *env) error {
		if *limit < 1 || *limit >= statusapi.MaxAuditLimit {
			return usagef("--limit must be from 1 to %d", statusapi.MaxAuditLimit-1)
		}
		if *after > 0 && *before > 0 || *all && (*after > 0 || *before > 0) {
			return usagef("give one of --after, --before and --all")
		}
		evs, hint, err := auditEvents(e, *after, *before, *limit, *all)
		if err != nil {
			return err
		}
		if e.json {
			err = printJSON(e.out, evs)
		} else {
			err = table(e.out, "SEQ\tTIME\tKIND\tACTOR\tUSER\tGRANT\tDETAIL", func(tw *tabwriter.Writer) {
				for _, ev := range evs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.UTC().Format(time.DateTime), ev.Kind, dash(ev.Actor),
						dash(ev.UserID), dash(ev.GrantID), strconv.Quote(ev.Detail))
				}
			})
		}
		if hint != "" {
			// On stderr, so that the table or the JSON stays the events.
			fmt.Fprintln(e.err, hint)
		}
		return err
	})
}

// auditEvents reads the events tagwatchctl audit shows, oldest first: by
// default the newest limit; with after, the oldest limit after it; with
// before, the newest limit before it; with all, every one. hint, when
// set, says how to see the events left out. One more event than shown is
// asked for, to know whether there are more.
func auditEvents(e *env, after, before uint64, limit int, all bool) (evs []statusapi.AuditEvent, hint string, err error) {
	if all {
		for {
			page, err := e.client.Audit(e.ctx, statusapi.AuditQuery{After: after, Limit: auditPage})
			if err != nil {
				return nil, "", err
			}
			evs = append(evs, page...)
			if len(page) < auditPage {
				return evs, "", nil
			}
			after = page[len(page)-1].Seq
		}
	}
	if after > 0 {
		evs, err = e.client.Audit(e.ctx, statusapi.AuditQuery{After: after, Limit: limit + 1})
		if err != nil || len(evs) <= limit {
			return evs, "", err
		}
		evs = evs[:limit]
		return evs, fmt.Sprintf("newer events follow: tagwatchctl audit --after %d (or --all)", evs[limit-1].Seq), nil
	}
	evs, err = e.client.Audit(e.ctx, statusapi.AuditQuery{Before: before, Limit: limit + 1, Newest: true})
	if err != nil || len(evs) <= limit {
		return evs, "", err
	}
	evs = evs[1:]
	return evs, fmt.Sprintf("showing the newest %d; older events: tagwatchctl audit --before %d (or --all)", limit, evs[0].Seq), nil
}

func cmdKeysStatus(e *env) error {
	k, err := e.client.Keys(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, k)
	}
	fmt.Fprintf(e.out, "master key %s, active data key %d\n", k.MasterID, k.Active)
	return table(e.out, "DATA KEY\tCREATED\tRECORDS", func(tw *tabwriter.Writer) {
		for _, d := range k.DataKeys {
			fmt.Fprintf(tw, "%d\t%s\t%d\n", d.ID, d.Created.UTC().Format(time.DateTime), d.Records)
		}
	})
}

func backupFlags(fs *flag.FlagSet) func(*env, []string) error {
	force := fs.Bool("force", false, "replace FILE if it exists")
	return oneArg("file", func(e *env, file string) error {
		if !*force {
			if _, err := os.Lstat(file); err == nil {
				return fmt.Errorf("%s exists (use --force to replace it)", file)
			}
		}
		// Written beside FILE and renamed into place only when complete,
		// so FILE is never a partial copy. Mode 0600: the copy is sealed,
		// but it is every user's grant.
		tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		n, err := e.client.Backup(e.ctx, tmp)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), file); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.out, map[string]any{"file": file, "bytes": n})
		}
		fmt.Fprintf(e.out, "wrote a consistent copy of the vault to %s (%d bytes); it is sealed: keep the master key apart from it\n", file, n)
		return nil
	})
}
