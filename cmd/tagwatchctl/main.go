// Command tagwatchctl is the operator's tool for a running tagwatchd. It
// talks only to the daemon's status socket and never opens the vault.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

var version = ""

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tagwatchctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *showVersion {
		v := version
		if v == "" {
			v = "devel"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
		}
		fmt.Fprintf(stdout, "tagwatchctl %s\n", v)
		return 0
	}
	fmt.Fprintln(stderr, "tagwatchctl: no command given (see tagwatchctl -help)")
	return 2
}
