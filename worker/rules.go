package worker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"tagwatch/vault"
	"tagwatch/worker/sched"
)

// Defaults of Rules and Config.
const (
	// DefaultMinInterval is the least time between two runs of one watch
	// (scheduler.min_interval). X's recent search allows 300 requests per
	// user and 450 per app in 15 minutes, shared by every watch: minutes,
	// not seconds.
	DefaultMinInterval = 5 * time.Minute
	// DefaultMaxHashtags is how many hashtags a watch may have
	// (scheduler.max_hashtags).
	DefaultMaxHashtags = 10
)

// Limits of the free-text fields of a watch.
const (
	maxLangLen     = 35 // BCP 47's longest well-formed tags fit
	maxScheduleLen = 200
)

// Targets checks notification targets; notify implements it, on the
// running service and on a checker built from the configuration alone.
type Targets interface {
	// CheckTarget returns nil when raw is a target the notifier can
	// deliver to, or an error that names the target (as notify.TargetLabel
	// shows it) and says why not. Rules return the error as is.
	CheckTarget(raw string) error
}

// Rules decide what a valid watch is: the general rules (normalisation,
// lengths, at least one hashtag and one target), the configured limits
// (scheduler.max_hashtags, scheduler.min_interval), the source's hashtag
// grammar and query limits, the notifier's targets, and worker/sched's
// schedule rule. They implement vault.WatchRules; every door applies the
// same Rules value through the vault. A Rules value is not changed after
// it is built (build a new one on a reload) and is then safe for
// concurrent use.
type Rules struct {
	// Sources by provider name: a watch's provider must have one. Only
	// their NormalizeHashtag and CheckQuery are used.
	Sources map[string]Source
	// Targets checks each target. Required: without it every watch is
	// refused.
	Targets Targets
	// MaxHashtags is how many hashtags a watch may have (after removing
	// duplicates); default DefaultMaxHashtags.
	MaxHashtags int
	// MinInterval is the least time between two runs of one watch that its
	// schedule may ask for; default DefaultMinInterval, negative: none.
	MinInterval time.Duration
}

var _ vault.WatchRules = Rules{}

// CheckWatch normalises spec in place and checks it for a watch at
// provider (vault.WatchRules). Normalising trims every field, drops a
// hashtag's leading '#', puts hashtags in NFC and in the source's form,
// and removes duplicate hashtags (case-insensitively, keeping the first
// spelling) and targets. The error, the first rule broken, names the field
// and its value, such as `schedule "0 0 30 2 *" never fires`; spec is
// left as it was then. It never panics.
func (r Rules) CheckWatch(provider string, spec *vault.WatchSpec) error {
	src := r.Sources[provider]
	if src == nil {
		return fmt.Errorf("provider %q is not configured", provider)
	}
	out := *spec
	var err error
	if out.Hashtags, err = r.hashtags(src, spec.Hashtags); err != nil {
		return err
	}
	out.Lang = strings.TrimSpace(spec.Lang)
	if n := utf8.RuneCountInString(out.Lang); n > maxLangLen {
		return fmt.Errorf("lang %q is %d characters long, at most %d", out.Lang, n, maxLangLen)
	}
	if err := printable("lang", out.Lang); err != nil {
		return err
	}
	if err := src.CheckQuery(Query{Hashtags: out.Hashtags, Lang: out.Lang, IncludeRetweets: out.IncludeRetweets}); err != nil {
		return err
	}
	out.Schedule = strings.TrimSpace(spec.Schedule)
	if err := r.schedule(out.Schedule); err != nil {
		return err
	}
	if out.Targets, err = r.targets(spec.Targets); err != nil {
		return err
	}
	*spec = out
	return nil
}

func (r Rules) hashtags(src Source, raw []string) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("at least one hashtag is required")
	}
	out := make([]string, 0, len(raw))
	for _, h := range raw {
		t := strings.TrimSpace(h)
		if !utf8.ValidString(t) {
			return nil, fmt.Errorf("hashtag %q is not valid UTF-8", t)
		}
		t = strings.TrimPrefix(norm.NFC.String(t), "#")
		if t == "" {
			return nil, fmt.Errorf("hashtag %q is empty", strings.TrimSpace(h))
		}
		n, err := src.NormalizeHashtag(t)
		if err != nil {
			return nil, err
		}
		n = strings.TrimPrefix(norm.NFC.String(n), "#")
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, n) }) {
			out = append(out, n)
		}
	}
	max := r.MaxHashtags
	if max <= 0 {
		max = DefaultMaxHashtags
	}
	if len(out) > max {
		return nil, fmt.Errorf("%d hashtags, at most %d (scheduler.max_hashtags)", len(out), max)
	}
	return out, nil
}

func (r Rules) schedule(spec string) error {
	if spec == "" {
		return errors.New("a schedule is required")
	}
	if n := utf8.RuneCountInString(spec); n > maxScheduleLen {
		return fmt.Errorf("schedule %.40q... is %d characters long, at most %d", spec, n, maxScheduleLen)
	}
	if err := printable("schedule", spec); err != nil {
		return err
	}
	_, err := sched.CheckSchedule(spec, r.Floor())
	return err
}

// Floor is the least time between two runs of one watch these rules let a
// schedule ask for: MinInterval, DefaultMinInterval when it is 0, and 0
// (no floor) when it is negative.
func (r Rules) Floor() time.Duration {
	switch {
	case r.MinInterval == 0:
		return DefaultMinInterval
	case r.MinInterval < 0:
		return 0
	}
	return r.MinInterval
}

func (r Rules) targets(raw []string) ([]string, error) {
	out := make([]string, 0, len(raw))
	for _, t := range raw {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, errors.New("a target is empty")
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("at least one target is required")
	}
	if r.Targets == nil {
		return nil, errors.New("targets cannot be checked: no target checker is configured")
	}
	for _, t := range out {
		if err := r.Targets.CheckTarget(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// printable returns an error naming field and its value when v is not
// valid UTF-8 or holds a character that does not print: a control
// character (a tab, a newline, NUL) or another invisible one.
func printable(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	}
	for _, c := range v {
		switch {
		case unicode.IsControl(c):
			return fmt.Errorf("%s %q contains a control character (%U)", field, v, c)
		case !unicode.IsPrint(c):
			return fmt.Errorf("%s %q contains a character that does not print (%U)", field, v, c)
		}
	}
	return nil
}
