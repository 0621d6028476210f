package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// damagedCommand is `tagwatchctl damaged`: the stored records the daemon
// cannot use and skips (a record that does not decode, a sealed field
// that does not open), and the deletion of one of them.
func damagedCommand() *command {
	return &command{name: "damaged", summary: "list the stored records the daemon cannot use and skips", subs: []*command{
		{name: "list", summary: "list damaged records: kind, id, user, first seen, what is wrong",
			flags: func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdDamagedList) }},
		{name: "delete", args: "KIND ID", check: "tagwatchctl damaged list",
			summary: "delete one damaged record with its index entries (a grant's watches wait for a new consent)",
			flags: func(fs *flag.FlagSet) func(*env, []string) error {
				return func(e *env, args []string) error {
					if len(args) != 2 {
						return usagef("want KIND (user, grant, watch, cursor, link, outbox, revocation, audit) and ID")
					}
					r, err := e.client.DeleteDamaged(e.ctx, args[0], args[1])
					if err != nil {
						return err
					}
					if e.json {
						return printJSON(e.out, r)
					}
					fmt.Fprintf(e.out, "%s %s deleted (it was damaged: %s)\n", r.Kind, r.ID, r.Problem)
					return nil
				}
			}},
		{name: "reset", args: "GRANT", check: "tagwatchctl grants",
			summary: "reset a grant whose tokens do not open: needs_reconsent, its user sent a new consent link",
			flags: func(fs *flag.FlagSet) func(*env, []string) error {
				return oneArg("grant id", func(e *env, id string) error {
					r, err := e.client.ResetDamagedGrant(e.ctx, id)
					if err != nil {
						return err
					}
					if e.json {
						return printJSON(e.out, r)
					}
					fmt.Fprintf(e.out, "grant %s reset: tokens dropped, %s; consent link %s sent to user %s (%d notifications)\n",
						r.Grant.ID, r.Grant.State, r.LinkID, r.Grant.UserID, r.Notices)
					return nil
				})
			}},
	}}
}

func cmdDamagedList(e *env) error {
	rs, err := e.client.Damaged(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(e.out, "no damaged records")
		return nil
	}
	return damagedTable(e.out, rs)
}

func damagedTable(w io.Writer, rs []statusapi.DamagedRecord) error {
	return table(w, "KIND\tID\tUSER\tFIRST SEEN\tPROBLEM", func(tw *tabwriter.Writer) {
		for _, r := range rs {
			seen := "-"
			if !r.FirstSeen.IsZero() {
				seen = r.FirstSeen.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.ID, dash(r.UserID), seen, r.Problem)
		}
	})
}

// printDamagedStatus is status's part about damaged records.
func printDamagedStatus(w io.Writer, rs []statusapi.DamagedRecord) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "damaged records (skipped; tagwatchctl damaged delete KIND ID, or damaged reset GRANT):\n")
	for _, r := range rs {
		seen := ""
		if !r.FirstSeen.IsZero() {
			seen = ", first seen " + r.FirstSeen.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s %s: %s%s\n", r.Kind, r.ID, r.Problem, seen)
	}
}
