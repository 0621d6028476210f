package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tagwatch/cmd/internal/cliflag"
	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
)

// Damaged records (vault/damaged.go): a record that no longer decodes, or
// whose sealed field no longer opens, is skipped by every reader so the
// other users keep working. The doors here report it (the start's log and
// the operator's listing through vault.DB.FindDamaged, which walks every
// record; status, users and the tagwatch_damaged_records metric through
// vault.DB.DamagedRecords, the register the start filled and the readers
// that skip a record add to; the audit trail) and let an operator delete
// it (the status socket's DELETE /v1/damaged/{kind}/{id}, tagwatchd
// damaged delete while the daemon is stopped), each one call of the vault.

var _ statusapi.DamagedBackend = (*operator)(nil)

// damagedView copies a damaged record for the status API.
func damagedView(r vault.DamagedRecord) statusapi.DamagedRecord {
	return statusapi.DamagedRecord{Kind: r.Kind, ID: r.ID, Problem: r.Problem, FirstSeen: r.FirstSeen, UserID: r.UserID}
}

func damagedViews(rs []vault.DamagedRecord) []statusapi.DamagedRecord {
	out := make([]statusapi.DamagedRecord, len(rs))
	for i, r := range rs {
		out[i] = damagedView(r)
	}
	return out
}

// Damaged checks every stored record (vault.DB.FindDamaged: new ones are
// recorded and audited once) and lists the damaged ones.
func (o *operator) Damaged(ctx context.Context) ([]statusapi.DamagedRecord, error) {
	rs, err := o.d.db.FindDamaged()
	if err != nil {
		return nil, err
	}
	return damagedViews(rs), nil
}

// DeleteDamaged deletes one damaged record (vault.DB.DeleteDamaged, which
// audits it) and lets the scheduler reread the watches: deleting a
// damaged grant suspends its user's watches, deleting a damaged cursor
// lets its watch run again.
func (o *operator) DeleteDamaged(ctx context.Context, kind, id, actor string) (statusapi.DamagedRecord, error) {
	r, err := o.d.db.DeleteDamaged(kind, id, actor)
	if err != nil {
		return statusapi.DamagedRecord{}, apiErr(err)
	}
	o.hk().watchesChanged()
	return damagedView(r), nil
}

// ResetDamagedGrant resets a grant whose sealed tokens do not open to
// needs_reconsent and queues a re-consent link to its user
// (vault.DB.ResetDamagedGrant, as renewal does for a dead grant), then
// lets the scheduler and the delivery loop look again.
func (o *operator) ResetDamagedGrant(ctx context.Context, id, actor string) (statusapi.GrantReset, error) {
	out, err := o.d.db.ResetDamagedGrant(id, reconsentFor(o.d.cfg, actor))
	if err != nil {
		return statusapi.GrantReset{}, apiErr(err)
	}
	o.hk().watchesChanged()
	o.d.notify.Kick()
	return statusapi.GrantReset{Grant: grantHealth(out.Grant), LinkID: out.Link.ID, Notices: out.Notices}, nil
}

// reconsentFor is how a reset's re-consent link is made: under the
// public URL, with the configured link lifetime.
func reconsentFor(cfg *config.Config, actor string) vault.Reconsent {
	return vault.Reconsent{LinkPrefix: strings.TrimRight(cfg.HTTP.PublicURL, "/") + "/enroll/",
		LinkTTL: cfg.Enroll.LinkTTL.Duration, Actor: actor}
}

// statusDamaged fills the status's damaged records and says so in the
// vault component, from the register (vault.DB.DamagedRecords: no walk of
// every record); Status calls it after the counts, whose listings note
// the damaged records they skip.
func (o *operator) statusDamaged(st *statusapi.Status) error {
	rs, err := o.d.db.DamagedRecords()
	if err != nil {
		return err
	}
	if len(rs) > 0 {
		st.Damaged = damagedViews(rs)
		st.Components["vault"] = count(len(rs), "damaged record", "damaged records") + " skipped (tagwatchctl damaged)"
	}
	return nil
}

// reportDamaged checks the vault at start: every damaged record is
// logged (and, the first time it is found, audited) and the daemon
// starts without it.
func reportDamaged(db *vault.DB, log *slog.Logger) error {
	rs, err := db.FindDamaged()
	if err != nil {
		return err
	}
	for _, r := range rs {
		log.Error("damaged record: skipped until an operator deletes it (tagwatchctl damaged)", "kind", r.Kind, "id", r.ID,
			"user", r.UserID, "problem", r.Problem, "first_seen", r.FirstSeen)
	}
	return nil
}

var damagedDesc = prometheus.NewDesc("tagwatch_damaged_records",
	"Stored records the daemon cannot use and skips, by kind, as found at start, by the readers that skip them and by tagwatchctl damaged.",
	[]string{"kind"}, nil)

// damagedCollector reads the vault's register of damaged records at
// scrape time (vault.DB.DamagedRecords: only the registered records and
// those readers skipped are checked).
type damagedCollector struct{ db *vault.DB }

func (c *damagedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- damagedDesc }

func (c *damagedCollector) Collect(ch chan<- prometheus.Metric) {
	rs, err := c.db.DamagedRecords()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(damagedDesc, err)
		return
	}
	n := map[string]int{}
	for _, k := range vault.DamagedKinds {
		n[k] = 0
	}
	for _, r := range rs {
		n[r.Kind]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(damagedDesc, prometheus.GaugeValue, float64(v), k)
	}
}

const damagedUsage = `Usage: tagwatchd damaged [list]
       tagwatchd damaged delete KIND ID
       tagwatchd damaged reset GRANT

Lists the records of a stopped daemon's vault that tagwatch cannot use (a
record that does not decode, or whose sealed field does not open): the
daemon skips them and every other user keeps working. list only reads the
file (FIRST SEEN is "-" until the daemon has recorded the record). delete removes one
of them with its index entries, audited: a watch with its cursor and seen
index; a grant (its user's watches at the provider are suspended until a
new consent link is used: tagwatchctl enroll); a cursor (the watch starts
afresh); an outbox row with its due entry; a user, link, revocation or
audit event. KIND is user, grant, watch, cursor, link, outbox, revocation
or audit; ID as the list shows it. reset repairs a grant whose sealed
tokens do not open: tokens dropped, needs_reconsent, and its user is sent a
new consent link (the delivery goes out when the daemon runs). A record
that is not damaged is refused. While the daemon runs, use tagwatchctl damaged. Every command
takes -config FILE.

Exit status, as tagwatchctl's: 0 ok (list: also when records are
damaged), 1 failure, 2 usage, 5 no such record, 6 the record is not
damaged, 78 configuration error.
`

// damagedCommands are tagwatchd damaged's subcommands (list is the default).
var damagedCommands = []string{"list", "delete", "reset"}

// actorDamaged names this door in the audit trail.
const actorDamaged = "tagwatchd damaged"

// cmdDamaged implements `tagwatchd damaged`.
func cmdDamaged(args []string, stdout, stderr io.Writer) error {
	sub := "list"
	if len(args) > 0 && slices.Contains(damagedCommands, args[0]) {
		sub, args = args[0], args[1:]
	}
	if len(args) > 0 && args[0] == "help" {
		fmt.Fprint(stdout, damagedUsage)
		return nil
	}
	fs := flag.NewFlagSet("damaged "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", defaultConfigPath(), "configuration file")
	pos, err := cliflag.ParseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printFlagsUsage(stdout, damagedUsage, fs)
		return nil
	}
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("damaged %s: %w (see tagwatchd damaged -h)", sub, err)}
	}
	switch {
	case sub == "list" && len(pos) > 0:
		return &exitError{exitUsage, fmt.Errorf("damaged: unknown subcommand %q (%s)", pos[0], strings.Join(damagedCommands, ", "))}
	case sub == "delete" && len(pos) != 2:
		return &exitError{exitUsage, errors.New("damaged delete: want KIND and ID (tagwatchd damaged delete watch W)")}
	case sub == "reset" && len(pos) != 1:
		return &exitError{exitUsage, errors.New("damaged reset: want the GRANT id (tagwatchd damaged reset G)")}
	}
	cfg, err := loadConfig(context.Background(), *cfgPath)
	if err != nil {
		return err
	}
	// list only reads (vault.Options.ReadOnly): the file is left as it
	// was, and FindDamaged records nothing (first seen stays as the
	// daemon recorded it, "-" when it has not yet).
	db, err := openVault(cfg, newLogger(cfg, stderr), nil, sub == "list")
	if err != nil {
		return err
	}
	defer db.Close()
	if sub == "reset" {
		out, err := db.ResetDamagedGrant(pos[0], reconsentFor(cfg, actorDamaged))
		if err != nil {
			return offlineErr("damaged reset", err)
		}
		fmt.Fprintf(stdout, "grant %s reset: tokens dropped, needs_reconsent; consent link %s queued to %d targets of user %s\n",
			out.Grant.ID, out.Link.ID, out.Notices, out.Grant.UserID)
		return nil
	}
	if sub == "delete" {
		r, err := db.DeleteDamaged(pos[0], pos[1], actorDamaged)
		if err != nil {
			return offlineErr("damaged delete", err)
		}
		fmt.Fprintf(stdout, "%s %s deleted (it was damaged: %s)\n", r.Kind, r.ID, r.Problem)
		return nil
	}
	rs, err := db.FindDamaged()
	if err != nil {
		return err
	}
	return printDamaged(stdout, rs)
}

func printDamaged(w io.Writer, rs []vault.DamagedRecord) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no damaged records")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tUSER\tFIRST SEEN\tPROBLEM")
	for _, r := range rs {
		seen, user := "-", "-"
		if !r.FirstSeen.IsZero() {
			seen = r.FirstSeen.UTC().Format(time.RFC3339)
		}
		if r.UserID != "" {
			user = r.UserID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.ID, user, seen, r.Problem)
	}
	return tw.Flush()
}
