package xapi

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxQueryLen is the longest query recent search accepts on self-serve
// plans, in characters.
const MaxQueryLen = 512

// QuerySpec is what a search query is built from: a watch's hashtags and
// filters.
type QuerySpec struct {
	// Hashtags are matched with OR, with or without a leading '#'; each
	// must pass NormalizeHashtag and goes into the query in its NFC form.
	Hashtags []string
	// Lang, when set, restricts posts to one language (lang:xx).
	Lang string
	// IncludeRetweets keeps reposts; by default they are excluded.
	IncludeRetweets bool
}

// ErrQueryTooLong means a watch's hashtags and filters do not fit in
// MaxQueryLen characters.
var ErrQueryTooLong = errors.New("xapi: query too long")

// BuildQuery returns the recent-search query of spec:
// `(#a OR #b) -is:retweet lang:xx`. Each hashtag is NormalizeHashtag's
// result (X's hashtag grammar, NFC, case kept); an invalid one gives
// NormalizeHashtag's *HashtagError, wrapped. lang must be a language tag.
// A query longer than MaxQueryLen characters gives an error wrapping
// ErrQueryTooLong that says by how much, so a watch that cannot fit is
// refused when it is created.
func BuildQuery(spec QuerySpec) (string, error) {
	if len(spec.Hashtags) == 0 {
		return "", errors.New("xapi: a query needs at least one hashtag")
	}
	var b strings.Builder
	if len(spec.Hashtags) > 1 {
		b.WriteByte('(')
	}
	for i, h := range spec.Hashtags {
		tag, err := NormalizeHashtag(h)
		if err != nil {
			return "", fmt.Errorf("xapi: %w", err)
		}
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteByte('#')
		b.WriteString(tag)
	}
	if len(spec.Hashtags) > 1 {
		b.WriteByte(')')
	}
	if !spec.IncludeRetweets {
		b.WriteString(" -is:retweet")
	}
	if spec.Lang != "" {
		if !validLang(spec.Lang) {
			return "", fmt.Errorf("xapi: lang %q is not a language tag", spec.Lang)
		}
		b.WriteString(" lang:")
		b.WriteString(spec.Lang)
	}
	q := b.String()
	if n := utf8.RuneCountInString(q); n > MaxQueryLen {
		return "", fmt.Errorf("%w: the hashtags and filters make a %d-character search query, X allows %d: remove hashtags or shorten them by %d characters",
			ErrQueryTooLong, n, MaxQueryLen, n-MaxQueryLen)
	}
	return q, nil
}

// validLang accepts BCP 47-like tags: letters, digits and '-'.
func validLang(l string) bool {
	if len(l) > 35 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
