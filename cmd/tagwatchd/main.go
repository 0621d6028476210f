// Command tagwatchd is the tagwatch daemon: it keeps users' grants sealed in
// its vault, runs their hashtag watches on schedule with renewed access
// tokens, and delivers notifications. It is meant to run as a systemd
// service (see systemd/tagwatch.service).
//
// Usage:
//
//	tagwatchd [-config FILE]              run the daemon
//	tagwatchd -version                    print the version
//	tagwatchd check-config [-config FILE] apply every check of the start, then check
//	                                      the stored watches by its rules, and exit
//	tagwatchd keys init|status|rotate|rotate-master|generate
//	                                      manage the vault's keys (daemon stopped)
//	tagwatchd watches|enroll|damaged|demo|sandbox|storage ...
//	                                      see tagwatchd help (usage)
//
// Every door here (the status socket's backend, the offline subcommands,
// the one-click links' actions, check-config) changes watches, grants and
// links only through the vault's methods, which apply the rules newRules
// builds; the package opens no read-write transaction of its own (an
// operator's request is audited with vault.DB.RecordAudit) and no read
// transaction either (the vault's read methods serve every view).
//
// A configuration error, at check-config, at start or from an offline
// subcommand (keys, watches, enroll, damaged: each loads the configuration
// and its secrets with the same function, loadConfig), exits with status
// 78 (EX_CONFIG), which the unit does not restart on; its message reads
// "file:line: key: what is wrong". So does a vault path that holds no
// usable vault file (vault.ErrBadFile: cut short, empty, of another
// program, a directory, ...), at start and from every offline
// subcommand; the file is left as it is. check-config exits 1 when the
// configuration is valid but refuses a stored watch or a pending consent
// link's watch (one line each).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3".
var version = ""

// Version returns the build's version: the link-time one, else the module's.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit statuses of the offline commands (tagwatchd watches, tagwatchd
// enroll), the same as tagwatchctl's for the same refusal (README): 0 ok,
// 1 failure, 2 usage or invalid input, 5 not found, 6 conflict. A
// configuration error is exitConfig.
const (
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 5
	exitConflict = 6
)

// refusal is what kind of refusal a domain error is, for each edge to map
// once: apiErr to the status API's answers, offlineErr to the offline
// commands' exit statuses.
type refusal int

const (
	refusalNone     refusal = iota // not the domain's refusal: a failure
	refusalNotFound                // vault.ErrNotFound
	refusalInvalid                 // vault.ErrInvalid, enroll.ErrUnknownProvider
	refusalConflict                // vault.ErrConflict, vault.ErrExists
)

// classify says what kind of refusal err is and returns the error to show
// for it: the domain's own typed error, found with errors.As whatever
// layers wrapped it (a *vault.NotFoundError reads `grant "nosuch" does not
// exist`, not `renew: unenroll: grant "nosuch" does not exist`; likewise a
// *vault.InvalidError and a *vault.TransitionError), else err itself.
func classify(err error) (refusal, error) {
	switch {
	case err == nil:
		return refusalNone, nil
	case errors.Is(err, vault.ErrNotFound):
		return refusalNotFound, own[*vault.NotFoundError](err)
	case errors.Is(err, vault.ErrInvalid), errors.Is(err, enroll.ErrUnknownProvider):
		return refusalInvalid, own[*vault.InvalidError](err)
	case errors.Is(err, vault.ErrConflict), errors.Is(err, vault.ErrExists):
		return refusalConflict, own[*vault.TransitionError](err)
	case errors.Is(err, vault.ErrDamaged):
		// The record is there but cannot be used until an operator
		// deletes it (tagwatchctl damaged): a conflict naming it
		// (`watch "w1" is damaged: ...`).
		return refusalConflict, own[*vault.DamagedError](err)
	}
	return refusalNone, err
}

// own returns the first error of type T in err's tree, or err.
func own[T error](err error) error {
	var t T
	if errors.As(err, &t) {
		return t
	}
	return err
}

// offlineErr is an offline command's error with the exit status
// tagwatchctl gives the same refusal (classify): 5 not found, 2 invalid,
// 6 conflict, else 1. op names the command ("watches pause"); the rest of
// the message is the domain's own text, as tagwatchctl shows it.
func offlineErr(op string, err error) error {
	if err == nil {
		return nil
	}
	kind, shown := classify(err)
	code := map[refusal]int{refusalNone: exitFailure, refusalNotFound: exitNotFound, refusalInvalid: exitUsage,
		refusalConflict: exitConflict}[kind]
	return &exitError{code, fmt.Errorf("%s: %w", op, shown)}
}

// shownError is an error shown with its own text that is still its
// cause for errors.Is and errors.As.
type shownError struct {
	text string
	err  error
}

func (e *shownError) Error() string { return e.text }
func (e *shownError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without os.Exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "tagwatchd: %v\n", err)
	if errors.Is(err, vault.ErrBadFile) {
		// Whatever door met it: starting again meets it again.
		return exitConfig
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// commands are tagwatchd's subcommands, by name; usage lists each of them
// with every flag it takes (TestUsageListsEveryCommandAndFlag).
var commands = map[string]func(args []string, stdout, stderr io.Writer) error{
	"check-config": cmdCheckConfig,
	"keys":         cmdKeys,
	"enroll":       cmdEnroll,
	"demo":         cmdDemo,
	"watches":      cmdWatches,
	"damaged":      cmdDamaged,
	"sandbox":      cmdSandbox,
	"storage":      cmdStorage,
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if cmd, ok := commands[args[0]]; ok {
			return cmd(args[1:], stdout, stderr)
		}
		switch args[0] {
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	fs := flag.NewFlagSet("tagwatchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath, showVersion := daemonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "tagwatchd %s\n", Version())
		return nil
	}
	if fs.NArg() > 0 {
		return &exitError{2, fmt.Errorf("unknown command %q (see tagwatchd help)", fs.Arg(0))}
	}
	return runDaemon(*cfgPath, stderr)
}

// daemonFlags defines the flags of tagwatchd without a subcommand.
func daemonFlags(fs *flag.FlagSet) (cfgPath *string, showVersion *bool) {
	return fs.String("config", defaultConfigPath(), "configuration file"), fs.Bool("version", false, "print the version and exit")
}

// usage lists every subcommand with every flag it takes: each entry is a
// line "  tagwatchd COMMAND [SUBCOMMAND] flags..." (alternatives as
// a|b), continued on lines indented further.
// TestUsageListsEveryCommandAndFlag compares it with the flags each
// command registers.
const usage = `tagwatchd: the tagwatch daemon

Usage:
  tagwatchd [-config FILE]                  run the daemon
  tagwatchd -version                        print the version
  tagwatchd demo [-duration 60s] [-manual] [-webhook URL] [-color auto|always|never] [-keep]
                                            the whole story in one process, no accounts, no network
                                            (-keep keeps its state directory; -webhook also delivers there)
  tagwatchd sandbox [-listen 127.0.0.1:8099] [-dir DIR] [-users ada,bea] [-rate 1] [-hashtags a,b]
                    [-redirect URL,...] [-token-ttl 2h]
                                            the X sandbox on its own, on loopback, to try the service
                                            without an X account: prints the [[provider]] block to
                                            paste, its accounts and its control page; Ctrl-C stops it
  tagwatchd check-config [-config FILE]     apply every check of the start (secrets, TLS pair, operator
                                            group included); 78 on a configuration error. Then, when the
                                            vault can be opened (daemon stopped), check every stored
                                            watch and pending consent link's watch by the rules this
                                            configuration gives: one line per refused one, exit 1 if any
                                            ("not checked" when a running daemon holds the vault)
  tagwatchd keys init [-generate] [-config FILE]
                                            create the vault (and with -generate a master key file)
  tagwatchd keys status [-config FILE]      show the keyring: master key id, data keys and their use
  tagwatchd keys rotate [-config FILE]      new data key; re-seal every record; retire unused keys
  tagwatchd keys rotate-master -new-key F [-config FILE]
                                            re-wrap the data keys under the master key in file F
  tagwatchd keys generate FILE              write a new random master key to FILE (mode 0600)
  tagwatchd watches list [-user ID] [-config FILE]
  tagwatchd watches add -user ID -provider P -hashtags a,b -schedule S -target T [-target T ...]
                        [-lang xx] [-retweets] [-backfill] [-config FILE]
  tagwatchd watches change WATCH [-id WATCH] [-hashtags a,b] [-schedule S] [-target T ...] [-lang xx]
                        [-retweets=true|false] [-config FILE]
  tagwatchd watches pause|resume|delete WATCH [-id WATCH] [-config FILE]
                                            manage watches (daemon stopped; tagwatchctl when it runs),
                                            by the rules the daemon applies
  tagwatchd enroll -user ID -provider P -hashtags a,b -schedule S -target T [-target T ...]
                   [-lang xx] [-backfill] [-expect IDENTITY] [-ttl 72h] [-name NAME] [-email ADDRESS]
                   [-config FILE]
                                            create a one-time consent link (prints it once), by the
                                            rules the daemon applies
  tagwatchd storage migrate -to FILE [-from FILE]
                                            copy the vault (its daemons stopped) into the empty store
                                            FILE's [storage] names (a PostgreSQL database, or a new bbolt
                                            file), compare the copy with it and open it with FILE's master key
  tagwatchd damaged list [-config FILE]     list the records the daemon cannot use and skips (the
                                            default of tagwatchd damaged; reads only)
  tagwatchd damaged delete KIND ID [-config FILE]
                                            delete one of them
  tagwatchd damaged reset GRANT [-config FILE]
                                            reset a grant whose sealed tokens do not open and send its
                                            user a new consent link

The keys, watches, enroll and damaged commands work on the vault file of a stopped
daemon (tagwatchctl does the same while it runs); they read the configuration
and its secrets as the start does (78 on a configuration error); watches,
enroll and damaged exit as tagwatchctl does for the same refusal (2 invalid,
5 not found, 6 conflict); tagwatchd COMMAND -h shows a command's flags.
The default configuration file is /etc/tagwatch/tagwatch.toml ($TAGWATCH_CONFIG overrides it).
`

func defaultConfigPath() string {
	if p := os.Getenv("TAGWATCH_CONFIG"); p != "" {
		return p
	}
	return "/etc/tagwatch/tagwatch.toml"
}
