package kv

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Check reports what c lacks to be claimed (Cluster.Claim): a kind, an
// id, a holder, each UTF-8 text without a NUL byte (PostgreSQL's text),
// and a lease > 0. The error names the claim's kind and id. Every
// Cluster checks a claim with it, so that a claim refused by one engine
// is refused by all.
func (c Claim) Check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"kind", c.Kind}, {"id", c.ID}, {"holder", c.Holder}} {
		if !text(f.v) {
			missing = append(missing, "UTF-8 text without NUL in its "+f.name)
		}
	}
	if c.Kind == "" {
		missing = append(missing, "a kind")
	}
	if c.ID == "" {
		missing = append(missing, "an id")
	}
	if c.Holder == "" {
		missing = append(missing, "a holder")
	}
	if c.Lease <= 0 {
		missing = append(missing, fmt.Sprintf("a positive lease (it is %s)", c.Lease))
	}
	if missing == nil {
		return nil
	}
	return fmt.Errorf("kv: the claim on %q %q (holder %q) needs %s", c.Kind, c.ID, c.Holder, strings.Join(missing, ", "))
}

// MaxChannel is the longest notification channel name, in bytes: a
// PostgreSQL identifier (NAMEDATALEN - 1), which LISTEN and NOTIFY take.
const MaxChannel = 63

// CheckChannel reports whether channel can carry notifications
// (Cluster.Publish, Subscribe) on every engine: not empty, at most
// MaxChannel bytes, UTF-8 without a NUL byte (PostgreSQL's rules for an
// identifier).
// The error names the channel.
func CheckChannel(channel string) error {
	switch {
	case channel == "":
		return fmt.Errorf("kv: a notification channel needs a name")
	case len(channel) > MaxChannel:
		return fmt.Errorf("kv: notification channel %.20q...: %d bytes, more than %d", channel, len(channel), MaxChannel)
	case !text(channel):
		return fmt.Errorf("kv: notification channel %q: not UTF-8 text without NUL", channel)
	}
	return nil
}

// text reports whether s is UTF-8 without a NUL byte, which PostgreSQL's
// text (and name) types hold.
func text(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
