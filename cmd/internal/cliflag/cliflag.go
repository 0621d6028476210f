// Package cliflag holds what tagwatchd's offline subcommands and
// tagwatchctl share in parsing their command lines, so both doors read
// the same arguments the same way.
package cliflag

import "flag"

// ParseInterspersed parses fs's flags where they may come before, between
// or after positional arguments, as in `watches pause ID -config F`; "--"
// ends the flags. It returns the positional arguments in order, or the
// flag package's error.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" and consumes it: what follows is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
