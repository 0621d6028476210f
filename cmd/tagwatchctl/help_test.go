package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestTargetHelpNamesEveryKind: every command that takes --target says
// which targets the daemon delivers to, chat URLs included, as tagwatchd
// enroll -h and tagwatchd watches -h do.
func TestTargetHelpNamesEveryKind(t *testing.T) {
	for _, args := range [][]string{{"enroll", "--help"}, {"watches", "add", "--help"}, {"watches", "change", "--help"}} {
		var out bytes.Buffer
		if code := run(args, &out, &out); code != exitOK {
			t.Fatalf("run(%q) = %d %q, want 0", args, code, out.String())
		}
		_, target, ok := strings.Cut(out.String(), "--target")
		target, _, _ = strings.Cut(target, "\n  --")
		for _, kind := range []string{"console:", "mailto:", "webhook URL", "chat URL", "ntfy://", "slack://"} {
			if !ok || !strings.Contains(target, kind) {
				t.Errorf("run(%q): --target says %q, want it to name %q", args, strings.TrimSpace(target), kind)
			}
		}
	}
}
