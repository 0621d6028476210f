package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// daemonsCommand is `tagwatchctl daemons`: the daemons sharing the
// daemon's store, from the store's registry of heartbeats.
func daemonsCommand() *command {
	return &command{name: "daemons",
		summary: "list the daemons sharing the store: id, host, pid, started, last heartbeat, the claims each holds now",
		flags:   func(fs *flag.FlagSet) func(*env, []string) error { return noArgs(cmdDaemons) }}
}

func cmdDaemons(e *env) error {
	ds, err := e.client.Daemons(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.out, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintln(e.out, "no daemons in the registry")
		return nil
	}
	return daemonsTable(e.out, ds)
}

// daemonsTable writes one line per daemon: the one that answered is
// marked "(this one)"; STATE is alive, or dead when its last heartbeat
// is older than storage.lease (it was killed, or is cut off from the
// store); WATCHES and OUTBOX count the watch runs and notifications it
// holds claims on now, OTHER any other kind of claim.
func daemonsTable(w io.Writer, ds []statusapi.Daemon) error {
	return table(w, "ID\tHOST\tPID\tVERSION\tSTARTED\tLAST HEARTBEAT\tSTATE\tWATCHES\tOUTBOX\tOTHER", func(tw *tabwriter.Writer) {
		for _, d := range ds {
			id := d.ID
			if d.Self {
				id += " (this one)"
			}
			state := "alive"
			if !d.Alive {
				state = "dead"
			}
			var other []string
			for _, k := range slices.Sorted(maps.Keys(d.Holds)) {
				if k != "watch" && k != "outbox" {
					other = append(other, fmt.Sprintf("%s %d", k, d.Holds[k]))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, dash(d.Host), d.PID, dash(d.Version),
				ago(d.Started), ago(d.Heartbeat), state, d.Watches, d.Outbox, dash(strings.Join(other, ", ")))
		}
	})
}

// ago formats a past time of the store's clock for a table: UTC and how
// long ago, "2026-11-30 09:48:36Z (4s ago)"; a clock a little ahead of
// this one's gives "0s ago", not a time in the future.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return stamp(t) + " (" + max(time.Since(t).Round(time.Second), 0).String() + " ago)"
}
