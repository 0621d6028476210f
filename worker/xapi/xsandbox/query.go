package xsandbox

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// maxQueryLen is the query length limit of self-serve plans, in characters.
const maxQueryLen = 512

type nodeKind uint8

const (
	nodeTag     nodeKind = iota // #tag
	nodeWords                   // keyword or "quoted phrase"
	nodeRetweet                 // is:retweet
	nodeLang                    // lang:xx
	nodeAnd
	nodeOr
	nodeNot
)

// node is a parsed query. A fresh tree is parsed for every request, so the
// evaluation fields (entry, list) can be filled in place.
type node struct {
	kind  nodeKind
	value string   // tag or lang, lower case
	words []string // nodeWords
	kids  []*node

	entry *tagEntry // nodeTag: resolved posting list, nil if the tag is unknown
	list  []int32   // nodeTag: snapshot of entry.list
}

type tokKind uint8

const (
	tokWord tokKind = iota
	tokPhrase
	tokLParen
	tokRParen
	tokOr
	tokNeg
)

type token struct {
	kind tokKind
	text string
	pos  int
}

// parseQuery parses an X search query: hashtags, keywords and quoted phrases,
// is:retweet, lang:xx, implicit AND by juxtaposition, OR (binding looser than
// AND), parentheses and negation with -.
func parseQuery(q string) (*node, error) {
	if strings.TrimSpace(q) == "" {
		return nil, errors.New("the query is empty")
	}
	if n := utf8.RuneCountInString(q); n > maxQueryLen {
		return nil, fmt.Errorf("the query is %d characters long, the limit is %d", n, maxQueryLen)
	}
	toks, err := lexQuery(q)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		return nil, fmt.Errorf("unexpected %q at position %d", t.text, t.pos)
	}
	if !standalone(n) {
		return nil, errors.New("the query must contain at least one standalone operator (a hashtag, keyword or phrase) that is not negated; is: and lang: can only be used in conjunction with one")
	}
	return n, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func lexQuery(q string) ([]token, error) {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case isSpace(c):
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case c == '-':
			if i+1 >= len(q) || isSpace(q[i+1]) || q[i+1] == ')' || q[i+1] == '-' {
				return nil, fmt.Errorf("a negation (-) at position %d must immediately precede an operator or a group", i)
			}
			toks = append(toks, token{tokNeg, "-", i})
			i++
		case c == '"':
			j := strings.IndexByte(q[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote at position %d", i)
			}
			toks = append(toks, token{tokPhrase, q[i+1 : i+1+j], i})
			i += j + 2
		default:
			j := i
			for j < len(q) && !isSpace(q[j]) && q[j] != '(' && q[j] != ')' && q[j] != '"' {
				j++
			}
			w := q[i:j]
			if w == "OR" {
				toks = append(toks, token{tokOr, w, i})
			} else {
				toks = append(toks, token{tokWord, w, i})
			}
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() (token, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i], true
	}
	return token{}, false
}

func (p *parser) or() (*node, error) {
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	kids := []*node{first}
	for {
		t, ok := p.peek()
		if !ok || t.kind != tokOr {
			break
		}
		p.i++
		n, err := p.and()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &node{kind: nodeOr, kids: kids}, nil
}

func (p *parser) and() (*node, error) {
	var kids []*node
	for {
		t, ok := p.peek()
		if !ok || t.kind == tokOr || t.kind == tokRParen {
			if len(kids) == 0 {
				if !ok {
					return nil, errors.New("the query ends where an operator was expected")
				}
				return nil, fmt.Errorf("expected an operator before %q at position %d", t.text, t.pos)
			}
			break
		}
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return kids[0], nil
	}
	return &node{kind: nodeAnd, kids: kids}, nil
}

func (p *parser) unary() (*node, error) {
	t := p.toks[p.i]
	if t.kind == tokNeg {
		p.i++
		if _, ok := p.peek(); !ok {
			return nil, fmt.Errorf("a negation at position %d must precede an operator", t.pos)
		}
		n, err := p.primary()
		if err != nil {
			return nil, err
		}
		return &node{kind: nodeNot, kids: []*node{n}}, nil
	}
	return p.primary()
}

func (p *parser) primary() (*node, error) {
	t := p.toks[p.i]
	p.i++
	switch t.kind {
	case tokLParen:
		p.depth++
		if p.depth > 32 {
			return nil, errors.New("parentheses are nested too deeply")
		}
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		c, ok := p.peek()
		if !ok || c.kind != tokRParen {
			return nil, fmt.Errorf("missing ) for the ( at position %d", t.pos)
		}
		p.i++
		p.depth--
		return n, nil
	case tokWord:
		return termNode(t)
	case tokPhrase:
		words := appendWords(t.text, nil)
		if len(words) == 0 {
			return nil, fmt.Errorf("the quoted phrase at position %d has no words", t.pos)
		}
		return &node{kind: nodeWords, words: words}, nil
	default:
		return nil, fmt.Errorf("unexpected %q at position %d", t.text, t.pos)
	}
}

func termNode(t token) (*node, error) {
	w := t.text
	if w[0] == '#' || strings.HasPrefix(w, "＃") {
		_, size := utf8.DecodeRuneInString(w)
		key, ok := queryHashtag(w[size:])
		if !ok {
			return nil, fmt.Errorf("invalid hashtag %q at position %d", w, t.pos)
		}
		return &node{kind: nodeTag, value: key}, nil
	}
	if i := strings.IndexByte(w, ':'); i > 0 && isLetters(w[:i]) {
		op, val := strings.ToLower(w[:i]), w[i+1:]
		switch op {
		case "is":
			if strings.ToLower(val) == "retweet" {
				return &node{kind: nodeRetweet}, nil
			}
			return nil, fmt.Errorf("reference to invalid operator 'is:%s' at position %d", val, t.pos)
		case "lang":
			if !validLang(val) {
				return nil, fmt.Errorf("invalid language %q for the lang: operator at position %d", val, t.pos)
			}
			return &node{kind: nodeLang, value: strings.ToLower(val)}, nil
		default:
			return nil, fmt.Errorf("reference to invalid operator '%s:' at position %d", op, t.pos)
		}
	}
	words := appendWords(w, nil)
	if len(words) == 0 {
		return nil, fmt.Errorf("the operator %q at position %d has no words", w, t.pos)
	}
	return &node{kind: nodeWords, words: words}, nil
}

// Hashtags follow X's grammar, twitter-text's validHashtag regex
// (github.com/twitter/twitter-text, js/src/regexp/validHashtag.js and the
// sets it is built from: hashtagBoundary, hashSigns, hashtagAlpha,
// hashtagAlphaNumeric, hashtagSpecialChars; endHashtagMatch):
//
//   - a hashtag starts with '#' or '＃' at the start of the text, after
//     U+FE0E or U+FE0F, or after a character that is neither a hashtag
//     character nor '&' (so "a#b" and "&#x" hold none);
//   - the sign is not followed by U+FE0F or U+20E3 ("#️⃣" is the keycap
//     emoji);
//   - the tag is the longest run of hashtag characters after it: letters
//     (\p{L}), marks (\p{M}, which Indic and Thai vowel signs and viramas
//     are), decimal digits (\p{Nd}), '_', the joiners U+200C and U+200D and
//     the few other characters of isTagSpecial; it needs at least one
//     letter or mark, so "#123" and "#١٢٣" are not hashtags;
//   - a tag followed at once by '#', '＃' or "://" is not a hashtag.
//
// Matching: X's operator list says '#' matches posts containing a hashtag,
// "exact match", and the project's X API notes (shared/docs/X_API.md) that
// `#golang` matches the exact tag; neither says anything of letter case or
// of Unicode normalisation. X's search matches hashtags regardless of case
// (#GoLang finds #golang), as the sandbox always has. For canonically equivalent
// spellings (café as U+00E9, or as e + U+0301) X documents nothing; it
// counts a post's characters on its NFC form (developer docs, "Counting
// characters"), and a reader cannot tell the two apart, so the sandbox
// keys a tag by its lower-cased NFC form (tagKey): a query in either form
// finds posts in either form. tagwatch sends NFC (xapi.NormalizeHashtag),
// which finds the posts X's own clients write (NFC) whatever X does with
// other forms.

// isTagRune reports whether r may appear in a hashtag (hashtagAlphaNumeric).
func isTagRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.Nd) || isTagSpecial(r)
}

// isTagAlpha reports whether r is a letter or mark (hashtagAlpha); a
// hashtag needs one.
func isTagAlpha(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.In(r, unicode.L, unicode.M)
}

// isTagSpecial reports whether r is one of twitter-text's
// hashtagSpecialChars other than '_': the joiners ZWNJ and ZWJ, Cyrillic
// kavyka, Hebrew maqaf, geresh and gershayim, full-width tilde, wave dash,
// the kana voiced sound marks, double hyphen and middle dot, ditto mark,
// the Tibetan tshegs and the middle dot.
func isTagSpecial(r rune) bool {
	switch r {
	case '\u200C', '\u200D', '\uA67E', '\u05BE', '\u05F3', '\u05F4', '\uFF5E', '\u301C',
		'\u309B', '\u309C', '\u30A0', '\u30FB', '\u3003', '\u0F0B', '\u0F0C', '\u00B7':
		return true
	}
	return false
}

// tagKey is the form a hashtag is indexed and looked up by: lower case,
// then NFC.
func tagKey(tag string) string {
	return norm.NFC.String(strings.ToLower(tag))
}

// queryHashtag returns the key of the hashtag operator #body, or false
// when body is not one whole hashtag.
func queryHashtag(body string) (string, bool) {
	if body == "" {
		return "", false
	}
	if r, _ := utf8.DecodeRuneInString(body); r == '\uFE0F' || r == '\u20E3' {
		return "", false
	}
	alpha := false
	for _, r := range body {
		if !isTagRune(r) {
			return "", false
		}
		alpha = alpha || isTagAlpha(r)
	}
	if !alpha {
		return "", false
	}
	return tagKey(body), true
}

// hashtagBoundary reports whether a hash sign after prev (-1: the start of
// the text) may begin a hashtag.
func hashtagBoundary(prev rune) bool {
	return prev < 0 || prev == '\uFE0E' || prev == '\uFE0F' || (prev != '&' && !isTagRune(prev))
}

// extractHashtags appends the distinct keys (tagKey) of the hashtags of
// text to dst, in order of first appearance.
func extractHashtags(text string, dst []string) []string {
	prev := rune(-1)
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if (r == '#' || r == '＃') && hashtagBoundary(prev) {
			j := i + size
			if next, _ := utf8.DecodeRuneInString(text[j:]); j < len(text) && next != '\uFE0F' && next != '\u20E3' {
				k, alpha := j, false
				for k < len(text) {
					r2, s2 := utf8.DecodeRuneInString(text[k:])
					if !isTagRune(r2) {
						break
					}
					alpha = alpha || isTagAlpha(r2)
					prev = r2
					k += s2
				}
				if k > j {
					rest := text[k:]
					if alpha && !strings.HasPrefix(rest, "#") && !strings.HasPrefix(rest, "＃") && !strings.HasPrefix(rest, "://") {
						dst = appendTag(dst, tagKey(text[j:k]))
					}
					i = k
					continue
				}
			}
		}
		prev = r
		i += size
	}
	return dst
}

func appendTag(dst []string, tag string) []string {
	for _, t := range dst {
		if t == tag {
			return dst
		}
	}
	if len(dst) < 1<<15 {
		dst = append(dst, tag)
	}
	return dst
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// validLang accepts BCP 47-ish tags: 2 or 3 letters, optionally followed by
// -subtags of letters and digits.
func validLang(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts[0]) < 2 || len(parts[0]) > 3 || !isLetters(parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 8 {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i] | 0x20
			if (c < 'a' || c > 'z') && (p[i] < '0' || p[i] > '9') {
				return false
			}
		}
	}
	return true
}

// standalone reports whether n is guaranteed to contain a positive
// standalone operator, as X requires.
func standalone(n *node) bool {
	switch n.kind {
	case nodeTag, nodeWords:
		return true
	case nodeAnd:
		for _, k := range n.kids {
			if standalone(k) {
				return true
			}
		}
		return false
	case nodeOr:
		for _, k := range n.kids {
			if !standalone(k) {
				return false
			}
		}
		return true
	default:
		return false
	}
}

// String renders n canonically: parsing the result gives the same tree.
func (n *node) String() string {
	var b strings.Builder
	n.render(&b)
	return b.String()
}

func (n *node) render(b *strings.Builder) {
	switch n.kind {
	case nodeTag:
		b.WriteByte('#')
		b.WriteString(n.value)
	case nodeWords:
		if len(n.words) == 1 {
			b.WriteString(n.words[0])
		} else {
			b.WriteByte('"')
			b.WriteString(strings.Join(n.words, " "))
			b.WriteByte('"')
		}
	case nodeRetweet:
		b.WriteString("is:retweet")
	case nodeLang:
		b.WriteString("lang:")
		b.WriteString(n.value)
	case nodeNot:
		b.WriteByte('-')
		n.kids[0].renderGrouped(b, true)
	case nodeAnd, nodeOr:
		sep := " "
		if n.kind == nodeOr {
			sep = " OR "
		}
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(sep)
			}
			k.renderGrouped(b, false)
		}
	}
}

// renderGrouped renders n in parentheses when it is a group (or, with
// groupNot, a negation: "--" does not lex).
func (n *node) renderGrouped(b *strings.Builder, groupNot bool) {
	if n.kind == nodeAnd || n.kind == nodeOr || (groupNot && n.kind == nodeNot) {
		b.WriteByte('(')
		n.render(b)
		b.WriteByte(')')
		return
	}
	n.render(b)
}

// resolve fills in the posting lists of the hashtags in n. The store's read
// lock must be held.
func (n *node) resolve(st *store) {
	if n.kind == nodeTag {
		n.entry = st.tags[n.value]
		if n.entry != nil {
			n.list = n.entry.list
		}
	}
	for _, k := range n.kids {
		k.resolve(st)
	}
}

// match reports whether p satisfies n.
func (n *node) match(sn *snapshot, p *post) bool {
	switch n.kind {
	case nodeTag:
		return n.entry != nil && sn.hasTag(p, n.entry.id)
	case nodeWords:
		return containsWords(p.text, n.words)
	case nodeRetweet:
		return p.retweet
	case nodeLang:
		return sn.names[p.lang] == n.value
	case nodeNot:
		return !n.kids[0].match(sn, p)
	case nodeAnd:
		for _, k := range n.kids {
			if !k.match(sn, p) {
				return false
			}
		}
		return true
	case nodeOr:
		for _, k := range n.kids {
			if k.match(sn, p) {
				return true
			}
		}
		return false
	}
	return false
}

func containsWords(text string, words []string) bool {
	var buf [64]string
	tw := appendWords(text, buf[:0])
	for i := 0; i+len(words) <= len(tw); i++ {
		ok := true
		for j, w := range words {
			if tw[i+j] != w {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// cursor yields candidate positions in descending order, -1 when done.
type cursor interface{ next() int32 }

type listCursor struct {
	list []int32
	i    int // next index to yield, going down
	lo   int32
}

func (c *listCursor) next() int32 {
	if c.i < 0 {
		return -1
	}
	v := c.list[c.i]
	if v < c.lo {
		c.i = -1
		return -1
	}
	c.i--
	return v
}

type rangeCursor struct{ cur, lo int32 }

func (c *rangeCursor) next() int32 {
	if c.cur < c.lo {
		return -1
	}
	v := c.cur
	c.cur--
	return v
}

type unionCursor struct {
	kids  []cursor
	heads []int32
}

func (c *unionCursor) next() int32 {
	best := int32(-1)
	for _, h := range c.heads {
		best = max(best, h)
	}
	if best < 0 {
		return -1
	}
	for i, h := range c.heads {
		if h == best {
			c.heads[i] = c.kids[i].next()
		}
	}
	return best
}

// plan returns a cursor over a superset of the positions in [lo, hi) that can
// match n, and its size, or ok false when only a full scan will do.
func (n *node) plan(lo, hi int32) (c cursor, size int, ok bool) {
	switch n.kind {
	case nodeTag:
		start := sort.Search(len(n.list), func(i int) bool { return n.list[i] >= lo })
		end := sort.Search(len(n.list), func(i int) bool { return n.list[i] >= hi })
		return &listCursor{list: n.list, i: end - 1, lo: lo}, end - start, true
	case nodeAnd:
		for _, k := range n.kids {
			kc, ks, kok := k.plan(lo, hi)
			if kok && (!ok || ks < size) {
				c, size, ok = kc, ks, true
			}
		}
		return c, size, ok
	case nodeOr:
		u := &unionCursor{}
		for _, k := range n.kids {
			kc, ks, kok := k.plan(lo, hi)
			if !kok {
				return nil, 0, false
			}
			size += ks
			u.kids = append(u.kids, kc)
		}
		u.heads = make([]int32, len(u.kids))
		for i, kc := range u.kids {
			u.heads[i] = kc.next()
		}
		return u, size, true
	}
	return nil, 0, false
}
