package enroll

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"tagwatch/vault"
)

// TestRules is a small hand-written vault.WatchRules for this package's
// tests (the daemon's are worker.Rules): hashtags of letters, digits and
// underscores, not only digits (a leading # dropped, duplicates removed
// case-insensitively); a schedule; at least one target, each console:,
// mailto:ADDRESS or an http(s) URL, and not one of RefuseTargets (as if
// the notifier could not deliver it: the configuration changed).
type TestRules struct {
	RefuseTargets []string
}

var _ vault.WatchRules = TestRules{}

// CheckWatch implements vault.WatchRules.
func (r TestRules) CheckWatch(provider string, w *vault.WatchSpec) error {
	var tags []string
	for _, h := range w.Hashtags {
		h = strings.TrimPrefix(strings.TrimSpace(h), "#")
		digits := true
		for _, c := range h {
			if !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' {
				return fmt.Errorf("hashtag %q: use letters, digits or underscores", h)
			}
			digits = digits && unicode.IsDigit(c)
		}
		if h == "" || digits {
			return fmt.Errorf("hashtag %q: needs a letter", h)
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return strings.EqualFold(t, h) }) {
			tags = append(tags, h)
		}
	}
	if len(tags) == 0 {
		return errors.New("a watch needs at least one hashtag")
	}
	w.Hashtags = tags
	if w.Schedule = strings.TrimSpace(w.Schedule); w.Schedule == "" {
		return errors.New("a watch needs a schedule")
	}
	if len(w.Targets) == 0 {
		return errors.New("a watch needs at least one notification target")
	}
	for _, t := range w.Targets {
		if slices.Contains(r.RefuseTargets, t) {
			return fmt.Errorf("target %s: no channel delivers it", t)
		}
		u, err := url.Parse(t)
		switch {
		case t == "console:":
		case err == nil && u.Scheme == "mailto":
			if a, err := mail.ParseAddress(u.Opaque); err != nil || a.Address != u.Opaque {
				return errors.New("target: not a plain mail address")
			}
		case err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "":
		default:
			return errors.New("target: use console:, mailto:ADDRESS or a webhook URL")
		}
	}
	return nil
}
