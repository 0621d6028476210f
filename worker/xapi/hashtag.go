package xapi

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxHashtagLen is the longest hashtag a watch may hold, in characters
// (Unicode code points of the NFC form, without the '#'). X sets no limit
// of its own short of a post's length; 100 keeps a few tags within a
// query's MaxQueryLen.
const MaxHashtagLen = 100

// HashtagError is the error NormalizeHashtag returns. Tag is the hashtag
// as the user wrote it (spaces trimmed, with a leading '#'); Reason says
// what is wrong, for example "is digits only: X does not treat it as a
// hashtag".
type HashtagError struct {
	Tag    string
	Reason string
}

// Error reads `hashtag "#123" is digits only: X does not treat it as a
// hashtag`.
func (e *HashtagError) Error() string {
	return fmt.Sprintf("hashtag %q %s", e.Tag, e.Reason)
}

// NormalizeHashtag returns the hashtag h in the form a watch stores and a
// query carries: without its '#', in Unicode Normalization Form C (so
// "cafe\u0301" becomes "café"), case unchanged (X matches hashtags
// case-insensitively). h may have surrounding spaces and one leading '#'
// (or the full-width '＃').
//
// The grammar is X's, from twitter-text's validHashtag regex
// (github.com/twitter/twitter-text, js/src/regexp/hashtagAlphaNumeric.js,
// hashtagSpecialChars.js, hashtagAlpha.js and validHashtag.js; the same
// sets in java/.../twittertext/Regex.java as HASHTAG_LETTERS_AND_MARKS,
// HASHTAG_NUMERALS and HASHTAG_SPECIAL_CHARS): a tag is letters (\p{L}),
// marks (\p{M}), decimal digits (\p{Nd}), '_' and the special characters
// U+200C ZERO WIDTH NON-JOINER, U+200D ZERO WIDTH JOINER, U+A67E CYRILLIC
// KAVYKA, U+05BE HEBREW PUNCTUATION MAQAF, U+05F3 GERESH, U+05F4
// GERSHAYIM, U+FF5E FULLWIDTH TILDE, U+301C WAVE DASH, U+309B/U+309C
// KATAKANA-HIRAGANA (SEMI-)VOICED SOUND MARK, U+30A0 KATAKANA-HIRAGANA
// DOUBLE HYPHEN, U+30FB KATAKANA MIDDLE DOT, U+3003 DITTO MARK, U+0F0B/U+0F0C
// TIBETAN TSHEG and U+00B7 MIDDLE DOT; it has at least one letter or mark
// (so "123", "١٢٣" and "_" are not hashtags), and it does not start with
// U+FE0F or U+20E3 ("#️⃣" is the keycap emoji). The characters are checked
// on the NFC form, the form that goes into the query.
//
// tagwatch is stricter than X in two ways: a joiner (U+200C, U+200D) may
// stand only between two characters of a tag, never first or last (an
// invisible joiner at an edge is a copy-paste accident that would make the
// watch match nothing), and a tag has at most MaxHashtagLen characters.
//
// The error is a *HashtagError naming the tag as written and, for a
// character X does not allow, the character as U+XXXX.
func NormalizeHashtag(h string) (string, error) {
	written := strings.TrimSpace(h)
	body := written
	switch {
	case strings.HasPrefix(body, "#"):
		body = body[len("#"):]
	case strings.HasPrefix(body, "＃"):
		body = body[len("＃"):]
	default:
		written = "#" + written
	}
	fail := func(format string, args ...any) (string, error) {
		return "", &HashtagError{Tag: written, Reason: fmt.Sprintf(format, args...)}
	}
	if body == "" {
		return fail("is empty")
	}
	if !utf8.ValidString(body) {
		return fail("is not valid UTF-8")
	}
	tag := norm.NFC.String(body)
	n, letters, digits := 0, 0, 0
	for _, r := range tag {
		n++
		switch {
		case isHashtagLetter(r):
			letters++
		case unicode.Is(unicode.Nd, r):
			digits++
		case isHashtagSpecial(r):
		default:
			return fail("contains %s, which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)", describeRune(r))
		}
	}
	first, _ := utf8.DecodeRuneInString(tag)
	last, _ := utf8.DecodeLastRuneInString(tag)
	switch {
	case isJoiner(first):
		return fail("starts with %s: a joiner belongs between two characters of a tag", describeRune(first))
	case isJoiner(last):
		return fail("ends with %s: a joiner belongs between two characters of a tag", describeRune(last))
	case first == '\uFE0F' || first == '\u20E3':
		return fail("starts with %s: X reads '#' followed by it as the keycap emoji, not a hashtag", describeRune(first))
	case digits == n:
		return fail("is digits only: X does not treat it as a hashtag")
	case letters == 0:
		return fail("has no letter: X does not treat it as a hashtag")
	case n > MaxHashtagLen:
		return fail("is %d characters long: the limit is %d", n, MaxHashtagLen)
	}
	return tag, nil
}

// isHashtagLetter reports whether r is in twitter-text's hashtagAlpha set:
// a letter or a mark. A hashtag needs at least one.
func isHashtagLetter(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M)
}

// isHashtagSpecial reports whether r is one of twitter-text's
// hashtagSpecialChars.
func isHashtagSpecial(r rune) bool {
	switch r {
	case '_', '\u200C', '\u200D', '\uA67E', '\u05BE', '\u05F3', '\u05F4', '\uFF5E',
		'\u301C', '\u309B', '\u309C', '\u30A0', '\u30FB', '\u3003', '\u0F0B', '\u0F0C', '\u00B7':
		return true
	}
	return false
}

func isJoiner(r rune) bool { return r == '\u200C' || r == '\u200D' }

// describeRune names r for an error message: its code point, and what it
// is or looks like.
func describeRune(r rune) string {
	switch {
	case r == '\u200C':
		return "U+200C (zero width non-joiner)"
	case r == '\u200D':
		return "U+200D (zero width joiner)"
	case r == '\uFE0F':
		return "U+FE0F (emoji variation selector)"
	case r == '\u20E3':
		return "U+20E3 (combining enclosing keycap)"
	case unicode.IsControl(r):
		return fmt.Sprintf("U+%04X (a control character)", r)
	case unicode.IsSpace(r) || unicode.In(r, unicode.Z):
		return fmt.Sprintf("U+%04X (a space)", r)
	case unicode.Is(unicode.Cf, r):
		return fmt.Sprintf("U+%04X (an invisible formatting character)", r)
	case unicode.IsGraphic(r):
		return fmt.Sprintf("U+%04X %q", r, string(r))
	default:
		return fmt.Sprintf("U+%04X (an unassigned or private-use character)", r)
	}
}
