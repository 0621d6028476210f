// Command tagwatchctl is the operator's tool for a running tagwatchd. It
// talks only to the daemon's status socket (HTTP with JSON, see package
// tagwatch/cmd/internal/statusapi) and never opens the vault: only the
// daemon does.
//
// Usage:
//
//	tagwatchctl [--socket PATH] [--json] COMMAND [ARGS]
//
// Every command prints a human table by default and the API's JSON with
// --json, and takes --help. Exit codes: 0 success, 1 failure, 2 usage
// error, 3 the daemon is not running, not reachable, or closed the
// connection before it answered (it stopped or restarted), 4 permission
// denied, 5 not found, 6 conflict (the thing is not in a state that
// allows it).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"tagwatch/cmd/internal/cliflag"
	"tagwatch/cmd/internal/statusapi"
)

// Exit codes.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitDown      = 3
	exitForbidden = 4
	exitNotFound  = 5
	exitConflict  = 6
)

var version = ""

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// env is what every command works with.
type env struct {
	client *statusapi.Client
	json   bool
	out    io.Writer
	err    io.Writer
	ctx    context.Context
}

// command is one subcommand; subs, when set, are its own subcommands and
// run (if set) is the default when none is named.
type command struct {
	name    string
	args    string
	summary string
	flags   func(fs *flag.FlagSet) func(e *env, args []string) error
	subs    []*command
	// check is the command that shows whether this one's change was
	// applied, for when the daemon closes the connection before answering.
	check string
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// run is main without os.Exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	global := flag.NewFlagSet("tagwatchctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	socket := global.String("socket", defaultSocket(), "path of tagwatchd's status socket")
	asJSON := global.Bool("json", false, "print the API's JSON instead of tables")
	showVersion := global.Bool("version", false, "print the version and exit")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "tagwatchctl: %v\n", err)
		fmt.Fprintln(stderr, "run 'tagwatchctl help' for usage")
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "tagwatchctl %s\n", versionString())
		return exitOK
	}
	rest := global.Args()
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "tagwatchctl: no command given (see tagwatchctl help)")
		return exitUsage
	}
	if rest[0] == "help" {
		if len(rest) > 1 {
			if c, path := find(rest[1:]); c != nil {
				printCommandUsage(stdout, c, path)
				return exitOK
			}
		}
		printUsage(stdout)
		return exitOK
	}
	cmd, path, cmdArgs, err := resolve(rest)
	if err != nil {
		fmt.Fprintf(stderr, "tagwatchctl: %v\n", err)
		return exitUsage
	}
	fs := flag.NewFlagSet("tagwatchctl "+strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(socket, "socket", *socket, "path of tagwatchd's status socket")
	fs.BoolVar(asJSON, "json", *asJSON, "print the API's JSON instead of tables")
	action := cmd.flags(fs)
	positional, err := cliflag.ParseInterspersed(fs, cmdArgs)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(stdout, cmd, path)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "tagwatchctl %s: %v\n", strings.Join(path, " "), err)
		fmt.Fprintf(stderr, "run 'tagwatchctl %s --help' for usage\n", strings.Join(path, " "))
		return exitUsage
	}
	e := &env{client: statusapi.NewClient(*socket), json: *asJSON, out: stdout, err: stderr, ctx: ctx}
	err = action(e, positional)
	return report(stderr, cmd, path, err)
}

// report prints a command's error in one line and picks the exit code.
func report(stderr io.Writer, cmd *command, path []string, err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var de *statusapi.DownError
	var ce *statusapi.ClosedError
	var ae *statusapi.Error
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tagwatchctl %s: %v\n", strings.Join(path, " "), err)
		fmt.Fprintf(stderr, "run 'tagwatchctl %s --help' for usage\n", strings.Join(path, " "))
		return exitUsage
	case errors.As(err, &de):
		fmt.Fprintf(stderr, "tagwatchctl: %v\n", de)
		if errors.Is(de.Err, os.ErrPermission) {
			return exitForbidden
		}
		return exitDown
	case errors.As(err, &ce):
		msg := ce.Error()
		if ce.Change() && !ce.Answered && cmd.check != "" {
			msg += "; once it is back, check with '" + cmd.check + "'"
		} else if !ce.Change() && !ce.Answered {
			msg += "; run it again once tagwatchd is back"
		}
		fmt.Fprintf(stderr, "tagwatchctl: %s\n", msg)
		return exitDown
	case errors.As(err, &ae):
		// The daemon's message names the object ("watch \"x\" does not
		// exist"); the command adds nothing to it.
		fmt.Fprintf(stderr, "tagwatchctl: %s\n", ae.Message)
		switch ae.Status {
		case 403:
			return exitForbidden
		case 404:
			return exitNotFound
		case 409:
			return exitConflict
		case 400, 413:
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(stderr, "tagwatchctl %s: %v\n", strings.Join(path, " "), err)
	return exitFailure
}

func defaultSocket() string {
	if s := os.Getenv("TAGWATCH_SOCKET"); s != "" {
		return s
	}
	return statusapi.DefaultSocket
}

// resolve finds the command named by args: a command, then a subcommand
// when it has some (its first one is the default).
func resolve(args []string) (*command, []string, []string, error) {
	c := lookup(commandTable(), args[0])
	if c == nil {
		return nil, nil, nil, fmt.Errorf("unknown command %q (see tagwatchctl help)", args[0])
	}
	path := []string{c.name}
	args = args[1:]
	if len(c.subs) > 0 {
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			s := lookup(c.subs, args[0])
			if s == nil {
				return nil, nil, nil, fmt.Errorf("%s: unknown subcommand %q (want %s)", c.name, args[0], subNames(c))
			}
			return s, append(path, s.name), args[1:], nil
		}
		if c.flags == nil {
			s := c.subs[0]
			return s, append(path, s.name), args, nil
		}
	}
	return c, path, args, nil
}

func find(args []string) (*command, []string) {
	c := lookup(commandTable(), args[0])
	if c == nil {
		return nil, nil
	}
	if len(args) > 1 && len(c.subs) > 0 {
		if s := lookup(c.subs, args[1]); s != nil {
			return s, []string{c.name, s.name}
		}
	}
	return c, []string{c.name}
}

func lookup(cs []*command, name string) *command {
	for _, c := range cs {
		if c.name == name {
			return c
		}
	}
	return nil
}

func subNames(c *command) string {
	var names []string
	for _, s := range c.subs {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `tagwatchctl: operate a running tagwatchd through its status socket

Usage:
  tagwatchctl [--socket PATH] [--json] COMMAND [ARGS]

Commands:
`)
	for _, c := range commandTable() {
		if len(c.subs) == 0 || c.flags != nil {
			fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
		}
		for _, s := range c.subs {
			fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(c.name+" "+s.name+" "+s.args), s.summary)
		}
	}
	fmt.Fprint(w, `
Global flags (also accepted after the command):
  --socket PATH   the status socket (default $TAGWATCH_SOCKET or `+statusapi.DefaultSocket+`)
  --json          print the API's JSON
  --version       print the version

Exit codes: 0 ok, 1 failure, 2 usage, 3 daemon not running (or it closed the
connection before answering), 4 permission denied, 5 not found, 6 conflict. Run 'tagwatchctl COMMAND --help' for a command's flags.
`)
}

func printCommandUsage(w io.Writer, c *command, path []string) {
	fmt.Fprintf(w, "Usage: tagwatchctl %s\n\n%s\n", strings.TrimSpace(strings.Join(path, " ")+" [flags] "+c.args), c.summary)
	if len(c.subs) > 0 {
		fmt.Fprintf(w, "\nSubcommands: %s\n", subNames(c))
	}
	if c.flags == nil {
		return
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var s string
	var j bool
	fs.StringVar(&s, "socket", defaultSocket(), "path of tagwatchd's status socket")
	fs.BoolVar(&j, "json", false, "print the API's JSON instead of tables")
	c.flags(fs)
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	})
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
