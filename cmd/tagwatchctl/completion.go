package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// completion prints a completion script for shell, generated from the
// command table so it never falls behind the commands. Watch, grant, link
// and notification ids are completed by asking the daemon.
func completion(w io.Writer, shell string) error {
	switch shell {
	case "bash":
	case "zsh":
		fmt.Fprintln(w, "autoload -U +X bashcompinit && bashcompinit")
	default:
		return usagef("unknown shell %q: want bash or zsh", shell)
	}
	var top []string
	var cases strings.Builder
	for _, c := range commandTable() {
		top = append(top, c.name)
		var subs []string
		for _, s := range c.subs {
			subs = append(subs, s.name)
			fmt.Fprintf(&cases, "    %q) words=%q; ids=%q ;;\n", c.name+" "+s.name, flagWords(s), idSource(c.name, s))
		}
		fmt.Fprintf(&cases, "    %q) words=%q; ids=%q ;;\n", c.name, strings.TrimSpace(strings.Join(subs, " ")+" "+flagWords(c)), idSource(c.name, c))
	}
	fmt.Fprintf(w, `# bash completion for tagwatchctl; load with: source <(tagwatchctl completion bash)
_tagwatchctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd="" sub="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    case $w in
      --socket) ((i++)); continue ;;
      -*) continue ;;
    esac
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  local words="" ids=""
  if [[ -z $cmd ]]; then
    words=%q
  else
    case "$cmd${sub:+ $sub}" in
%s    *) case "$cmd" in
%s       esac ;;
    esac
  fi
  if [[ $cur != -* && -n $ids ]]; then
    words="$words $(tagwatchctl --json $ids 2>/dev/null | sed -n 's/^    "id": "\([^"]*\)".*/\1/p')"
  fi
  if [[ ${COMP_WORDS[COMP_CWORD-1]} == backup ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _tagwatchctl tagwatchctl
`, strings.Join(append(top, "help", "--socket", "--json", "--version"), " "), cases.String(), cases.String())
	return nil
}

// flagWords lists a command's flags as --name words.
func flagWords(c *command) string {
	if c.flags == nil {
		return ""
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.String("socket", "", "")
	fs.Bool("json", false, "")
	c.flags(fs)
	var words []string
	fs.VisitAll(func(f *flag.Flag) { words = append(words, "--"+f.Name) })
	sort.Strings(words)
	return strings.Join(append(words, "--help"), " ")
}

// idSource names the list whose ids complete a command's argument.
func idSource(parent string, c *command) string {
	switch {
	case parent == "watches" && c.args == "WATCH":
		return "watches list"
	case parent == "revoke":
		return "grants"
	case parent == "enroll" && c.name == "cancel":
		return "enroll list"
	}
	return ""
}
