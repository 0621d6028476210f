package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/seal"
)

// storageCommands are tagwatchd storage's subcommands.
var storageCommands = []string{"migrate"}

const migrateUsage = `Usage: tagwatchd storage migrate -to NEW.toml [-from OLD.toml]

Copies the vault of OLD.toml (default: the default configuration) into the
empty store NEW.toml's [storage] names: a PostgreSQL database with no vault
in it, or a bbolt file ([daemon] database, or the state directory's
tagwatch.db) that does not exist yet. Every record is copied as it is
stored (sealed tokens stay sealed; the keyring moves with them), then the
copy is compared with the source, bucket by bucket, key by key, byte by
byte, and opened with NEW.toml's master key and checked as tagwatchd
checks a vault. The source is only read and is left as it was.

Every daemon on the source must be stopped: a bbolt file a daemon holds is
refused, and so is a PostgreSQL database with a daemon whose heartbeat is
younger than storage.lease. The master key must be the vault's (NEW.toml
names the same key as OLD.toml). The password of a database is read from
its configuration's storage.password_file or password_credential.

Exit status: 0 copied and verified, 1 failure (what to do is said), 2 usage,
6 refused (the source is in use, or the target is not empty), 78
configuration error (a wrong master key included).
`

// cmdStorage implements `tagwatchd storage`.
func cmdStorage(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, migrateUsage)
		return &exitError{exitUsage, fmt.Errorf("storage: want a subcommand: %s", strings.Join(storageCommands, ", "))}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, migrateUsage)
		return nil
	case "migrate":
		return cmdMigrate(args[1:], stdout, stderr)
	}
	return &exitError{exitUsage, fmt.Errorf("storage: unknown subcommand %q (%s)", args[0], strings.Join(storageCommands, ", "))}
}

// cmdMigrate implements `tagwatchd storage migrate`: both configurations
// loaded as every door loads one (loadConfig: 78 on an error), then
// migrateVault.
func cmdMigrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("storage migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage, "\nFlags:\n"); fs.PrintDefaults() }
	from := fs.String("from", defaultConfigPath(), "configuration of the vault to copy (its daemons stopped)")
	to := fs.String("to", "", "configuration whose [storage] names the empty target (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return &exitError{exitUsage, fmt.Errorf("storage migrate: unexpected argument %q", fs.Arg(0))}
	case *to == "":
		return &exitError{exitUsage, errors.New("storage migrate: want -to NEW.toml, the configuration of the target")}
	case sameFile(*from, *to):
		return &exitError{exitUsage, fmt.Errorf("storage migrate: -from and -to are the same file %s: the target needs a configuration of its own", *to)}
	}
	ctx := context.Background()
	src, err := loadConfig(ctx, *from)
	if err != nil {
		return err
	}
	dst, err := loadConfig(ctx, *to)
	if err != nil {
		return err
	}
	return migrateVault(ctx, src, dst, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
}

// sameFile reports whether a and b name one file (or one path).
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(fa, fb)
}

// storeName names the store a configuration's [storage] names.
func storeName(cfg *config.Config) string {
	if cfg.Storage.Engine == "postgres" {
		return "the PostgreSQL database " + cfg.Storage.DSN
	}
	return "the vault file " + cfg.DatabasePath()
}

// sameStore reports whether two configurations name one store: one
// bbolt path, or one connection string.
func sameStore(a, b *config.Config) bool {
	if a.Storage.Engine != b.Storage.Engine {
		return false
	}
	if a.Storage.Engine == "postgres" {
		return a.Storage.DSN == b.Storage.DSN
	}
	pa, errA := filepath.Abs(a.DatabasePath())
	pb, errB := filepath.Abs(b.DatabasePath())
	return errA == nil && errB == nil && (pa == pb || sameFile(pa, pb))
}

// migrateVault copies src's vault into dst's empty store and verifies the
// copy:
//
//  1. the source: not in use (a bbolt file's lock; no daemon on a
//     PostgreSQL database with a heartbeat younger than storage.lease),
//     opened read-only with the target's master key (the copy opens with
//     that key only if the source does: checked before a byte is
//     written), consistent (vault.DB.CheckConsistency), its records
//     counted;
//  2. the target: empty (a PostgreSQL database with no bucket; a bbolt
//     path with nothing at it, created here with O_EXCL);
//  3. kv.Copy: every bucket's pairs as stored, sealed values as they are,
//     the keyring in the meta bucket with them, each bucket's sequence;
//     one transaction on the target;
//  4. kv.Verify re-reads both sides, then the copy is opened read-only
//     with the master key, checked (CheckConsistency) and its records
//     counted again: the same counts as the source's.
//
// Nothing is written to the source. When step 3 or 4 fails, a bbolt file
// created here is removed, and a PostgreSQL target is left as it is for
// inspection (the error says so, and what to do).
func migrateVault(ctx context.Context, src, dst *config.Config, stdout io.Writer, logger *slog.Logger) error {
	start := time.Now()
	if sameStore(src, dst) {
		return &exitError{exitUsage, fmt.Errorf("storage migrate: %s and %s both name %s", src.Path, dst.Path, storeName(dst))}
	}
	master, err := seal.LoadMasterKey(masterSource(dst))
	if err != nil {
		return &exitError{exitConfig, err}
	}

	// 1. The source.
	var srcEngine kv.Engine
	if src.Storage.Engine == "postgres" {
		e, err := openEngine(ctx, src, logger)
		if err != nil {
			return err
		}
		defer e.Close()
		if err := refuseLiveDaemons(ctx, e, src); err != nil {
			return err
		}
		srcEngine = e
	} else if noVaultYet(src.DatabasePath()) {
		return fmt.Errorf("storage migrate: there is no vault at %s (%s)", src.DatabasePath(), src.Path)
	}
	before, err := checkSource(src, dst, srcEngine, master, logger)
	if err != nil {
		return err
	}
	if srcEngine == nil {
		// The lock is held from here to the end: a daemon started
		// meanwhile waits for it, and fails after daemon.lock_timeout.
		e, err := boltkv.Open(src.DatabasePath(), boltkv.Options{ReadOnly: true, Timeout: src.Daemon.LockTimeout.Duration})
		if err != nil {
			return sourceOpenError(src, err)
		}
		defer e.Close()
		srcEngine = e
	}

	// 2. The target.
	dstEngine, created, err := openTarget(ctx, dst, logger)
	if err != nil {
		return err
	}
	closeTarget := func() {
		if dstEngine != nil {
			_ = dstEngine.Close()
			dstEngine = nil
		}
	}
	defer closeTarget()
	// cleanup closes the target after a failure and says what is left.
	cleanup := func() string {
		closeTarget()
		what := "the source is unchanged: keep running on " + src.Path
		if created == "" {
			return what + "; " + storeName(dst) + " is left as it is for inspection: make it empty again (drop and create the database) before you try again"
		}
		if err := os.Remove(created); err != nil {
			return what + fmt.Sprintf("; remove %s (%v) before you try again", created, err)
		}
		return what + "; the new file " + created + " was removed"
	}
	failed := func(step string, err error) error {
		return fmt.Errorf("storage migrate: %s: %w\n%s", step, err, cleanup())
	}

	// 3. The copy.
	copyStart := time.Now()
	copied, err := kv.Copy(dstEngine, srcEngine)
	if errors.Is(err, kv.ErrNotEmpty) && created == "" {
		// A database filled since openTarget looked: another writer is
		// there, and Copy wrote nothing.
		closeTarget()
		return &exitError{exitConflict, fmt.Errorf("storage migrate: %s is not empty: %w", storeName(dst), err)}
	}
	if err != nil {
		return failed("copy", err)
	}
	copyTime := time.Since(copyStart)

	// 4. The verification.
	if _, err := kv.Verify(dstEngine, srcEngine); err != nil {
		return failed("verify the copy", err)
	}
	if dst.Storage.Engine != "postgres" {
		closeTarget() // vault.Open takes the file's lock, below
	}
	after, err := checkCopy(dst, dstEngine, master, logger)
	if err != nil {
		return failed("open the copy", err)
	}
	if after != before {
		return failed("count the copy's records", fmt.Errorf("the source holds %s, the copy %s", before, after))
	}
	if src.Storage.Engine == "postgres" {
		// A daemon that started on the source meanwhile may have written
		// after the copy: the copy would be stale.
		if err := refuseLiveDaemons(ctx, srcEngine, src); err != nil {
			return failed("after the copy", err)
		}
	}
	printMigrated(stdout, src, dst, copied, after, master, copyTime, time.Since(start))
	return nil
}

// refuseLiveDaemons refuses a PostgreSQL store some daemon uses: one whose
// heartbeat is younger than storage.lease (kv.Cluster.Alive), whatever
// machine it runs on. An engine without a kv.Cluster has no registry to
// ask.
func refuseLiveDaemons(ctx context.Context, e kv.Engine, cfg *config.Config) error {
	cl := kv.ClusterOf(e)
	if cl == nil {
		return nil
	}
	ds, err := cl.Daemons(ctx)
	if err != nil {
		return fmt.Errorf("storage migrate: %s: %w", storeName(cfg), err)
	}
	var live []string
	for _, d := range ds {
		alive, err := cl.Alive(ctx, d.ID, cfg.Storage.Lease.Duration)
		if err != nil {
			return fmt.Errorf("storage migrate: %s: %w", storeName(cfg), err)
		}
		if alive {
			live = append(live, fmt.Sprintf("%s on %s (pid %d, heartbeat %s)", d.ID, d.Host, d.PID, d.Heartbeat.Format(time.RFC3339)))
		}
	}
	if len(live) > 0 {
		return &exitError{exitConflict, fmt.Errorf("storage migrate: %s is in use by %s: %s; stop every daemon on it first "+
			"(a daemon killed without a clean stop counts as stopped once storage.lease = %s has passed since its heartbeat)",
			storeName(cfg), count(len(live), "daemon", "daemons"), strings.Join(live, ", "), cfg.Storage.Lease.Duration)}
	}
	return nil
}

// sourceOpenError says why the source could not be opened: in use (6),
// the master key (78), or the vault's own error.
func sourceOpenError(src *config.Config, err error) error {
	switch {
	case errors.Is(err, vault.ErrLocked), errors.Is(err, boltkv.ErrTimeout):
		return &exitError{exitConflict, fmt.Errorf("storage migrate: %s is in use: a running daemon holds it; stop it first (systemctl stop tagwatch)",
			storeName(src))}
	case errors.Is(err, vault.ErrNoVault):
		return fmt.Errorf("storage migrate: %s holds no vault (%s)", storeName(src), src.Path)
	}
	return fmt.Errorf("storage migrate: %w", err)
}

// vaultCounts are a vault's records as its read methods see them.
type vaultCounts struct {
	users, grants, watches, links, outbox, audit int
}

func (c vaultCounts) String() string {
	return strings.Join([]string{count(c.users, "user", "users"), count(c.grants, "grant", "grants"),
		count(c.watches, "watch", "watches"), count(c.links, "consent link", "consent links"),
		count(c.outbox, "outbox row", "outbox rows"), count(c.audit, "audit event", "audit events")}, ", ")
}

// countVault counts db's records through its read methods.
func countVault(db *vault.DB) (vaultCounts, error) {
	var c vaultCounts
	us, err := db.ListUsers()
	if err != nil {
		return c, err
	}
	gs, err := db.ListGrants()
	if err != nil {
		return c, err
	}
	ws, err := db.ListWatches("")
	if err != nil {
		return c, err
	}
	ls, err := db.ListLinks(db.Now())
	if err != nil {
		return c, err
	}
	ts, err := db.OutboxTallies()
	if err != nil {
		return c, err
	}
	c.users, c.grants, c.watches, c.links = len(us), len(gs), len(ws), len(ls)
	for _, t := range ts {
		c.outbox += t.Pending + t.Retrying + t.Dead + t.Dropped + t.Delivered
	}
	err = db.AuditTrail(0, func(vault.AuditEvent) error { c.audit++; return nil })
	return c, err
}

// keepOpen lends an engine to vault.Open, which closes what it is given:
// its Close leaves the engine open for its owner.
type keepOpen struct{ kv.Engine }

func (keepOpen) Close() error { return nil }

func (k keepOpen) Name() string {
	if n, ok := k.Engine.(kv.Named); ok {
		return n.Name()
	}
	return "the storage engine"
}

// openStored opens the vault cfg names, read-only, with master: the bbolt
// file by its path (vault.Open identifies the file and takes its shared
// lock) when e is nil, else on e (left open).
func openStored(cfg *config.Config, e kv.Engine, master *seal.MasterKey, logger *slog.Logger) (*vault.DB, error) {
	o := vault.Options{Master: master, ReadOnly: true, LockTimeout: cfg.Daemon.LockTimeout.Duration, Logger: logger}
	if e != nil {
		o.Engine = keepOpen{e}
	} else {
		o.Path = cfg.DatabasePath()
	}
	return vault.Open(o)
}

// checkSource opens the source's vault read-only with the target's master
// key, checks it and counts its records.
func checkSource(src, dst *config.Config, e kv.Engine, master *seal.MasterKey, logger *slog.Logger) (vaultCounts, error) {
	db, err := openStored(src, e, master, logger)
	if errors.Is(err, seal.ErrWrongMasterKey) {
		return vaultCounts{}, &exitError{exitConfig, fmt.Errorf("storage migrate: %w\nthe master key %s, which %s names, does not open %s, so the copy "+
			"would not open either; nothing was written: name in %s the master key the daemon of %s runs with",
			err, masterSource(dst), dst.Path, storeName(src), dst.Path, src.Path)}
	}
	if err != nil {
		return vaultCounts{}, sourceOpenError(src, err)
	}
	defer db.Close()
	if err := db.CheckConsistency(); err != nil {
		return vaultCounts{}, fmt.Errorf("storage migrate: %w\nnothing was written: repair the source first (tagwatchd damaged list -config %s)", err, src.Path)
	}
	c, err := countVault(db)
	if err != nil {
		return c, fmt.Errorf("storage migrate: count the records of %s: %w", storeName(src), err)
	}
	return c, nil
}

// checkCopy opens the copy read-only with the master key, checks it and
// counts its records. e is the target's engine (nil for a bbolt file,
// opened by its path).
func checkCopy(dst *config.Config, e kv.Engine, master *seal.MasterKey, logger *slog.Logger) (vaultCounts, error) {
	if dst.Storage.Engine != "postgres" {
		e = nil
	}
	db, err := openStored(dst, e, master, logger)
	if err != nil {
		return vaultCounts{}, err
	}
	defer db.Close()
	if err := db.CheckConsistency(); err != nil {
		return vaultCounts{}, err
	}
	return countVault(db)
}

// openTarget opens the empty target: a PostgreSQL database holding no
// bucket (openEngine: the password from its secret, the replication
// check), or a new bbolt file, created here (its path is returned as
// created, for removal after a failure).
func openTarget(ctx context.Context, dst *config.Config, logger *slog.Logger) (kv.Engine, string, error) {
	if dst.Storage.Engine == "postgres" {
		e, err := openEngine(ctx, dst, logger)
		if err != nil {
			return nil, "", err
		}
		found, err := kv.Census(e)
		if err != nil {
			e.Close()
			return nil, "", fmt.Errorf("storage migrate: %s: %w", storeName(dst), err)
		}
		if len(found) > 0 {
			e.Close()
			return nil, "", &exitError{exitConflict, fmt.Errorf("storage migrate: %s is not empty: it holds %s; migrate copies only into a database "+
				"with no vault in it: create a new one and name it in %s", storeName(dst), (&kv.NotEmptyError{Found: found}).Holds(), dst.Path)}
		}
		return e, "", nil
	}
	path := dst.DatabasePath()
	if !noVaultYet(path) {
		return nil, "", &exitError{exitConflict, fmt.Errorf("storage migrate: %s exists; migrate writes a new file only: move it away, or name "+
			"another path in daemon.database of %s", path, dst.Path)}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("storage migrate: create the directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, "", &exitError{exitConflict, fmt.Errorf("storage migrate: %s exists; migrate writes a new file only", path)}
	}
	if err != nil {
		return nil, "", fmt.Errorf("storage migrate: create %s: %w", path, err)
	}
	_ = f.Close()
	ownLikeDir(path, dir)
	e, err := boltkv.Open(path, boltkv.Options{Timeout: dst.Daemon.LockTimeout.Duration})
	if err != nil {
		_ = os.Remove(path)
		return nil, "", fmt.Errorf("storage migrate: open %s: %w", path, err)
	}
	return e, path, nil
}

// ownLikeDir gives a new file its directory's owner when they differ (the
// command run as root, the state directory the daemon's user's, as
// systemd's StateDirectory= makes it), so that the daemon can open it.
// Without the right to change owners it leaves the file as it is.
func ownLikeDir(path, dir string) {
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() {
		return
	}
	_ = os.Chown(path, int(st.Uid), int(st.Gid))
}

// printMigrated prints what was copied: each bucket with its records and
// sequence, the vault's records, the times and what to do next.
func printMigrated(w io.Writer, src, dst *config.Config, copied []kv.BucketCount, c vaultCounts, master *seal.MasterKey, copyTime, total time.Duration) {
	records := 0
	for _, b := range copied {
		records += b.Pairs
	}
	fmt.Fprintf(w, "copied %s (%s)\n    to %s (%s)\n", storeName(src), src.Path, storeName(dst), dst.Path)
	width := len("bucket")
	for _, b := range copied {
		width = max(width, len(b.Name))
	}
	fmt.Fprintf(w, "  %-*s  %8s  %8s\n", width, "bucket", "records", "sequence")
	for _, b := range copied {
		fmt.Fprintf(w, "  %-*s  %8d  %8d\n", width, b.Name, b.Pairs, b.Sequence)
	}
	fmt.Fprintf(w, "%s, %s copied in %s\n", count(len(copied), "bucket", "buckets"), count(records, "record", "records"), copyTime.Round(time.Millisecond))
	fmt.Fprintf(w, "verified: every bucket, key, value and sequence equal to the source's; the copy opens with master key %s and is consistent\n", master.ID())
	fmt.Fprintf(w, "vault: %s\n", c)
	fmt.Fprintf(w, "done in %s; next: start tagwatchd with %s (keep %s until it runs)\n", total.Round(time.Millisecond), dst.Path, storeName(src))
}
