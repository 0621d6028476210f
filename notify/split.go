package notify

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The splitter cuts a message into parts that each fit a chat service's
// limit (limits.go), at block boundaries: a block (the lead, a post, the
// consent link, the footer) is never split across parts. A block too long
// for a part of its own is trimmed: its body is cut at a character
// boundary (never inside a UTF-8 sequence, a surrogate pair or before a
// combining mark), and its head and tail, which hold the post's author
// and link, are kept whole.

// block is one unit of a chat message.
type block struct {
	// Head and Tail are kept whole; Body may be trimmed to fit, and Mark
	// then follows what is left of it.
	Head, Body, Tail, Mark string
	// Post says the block is a post: parts count the posts they carry.
	Post bool
}

func (b block) text() string { return b.Head + b.Body + b.Tail }

// chatPart is one message of a split digest.
type chatPart struct {
	Text string
	// Posts is how many posts the part carries.
	Posts int
	// Trimmed says a block of the part was shortened to fit.
	Trimmed bool
}

// maxMarkerDigits bounds the parts of one digest to 10^maxMarkerDigits-1.
const maxMarkerDigits = 6

// splitBlocks cuts blocks into parts that each fit b. Every part starts
// with heading; when there is more than one part, or done > 0, the heading
// carries a marker, "heading (2/3)". done is how many parts of the same
// message were delivered before: the parts returned are numbered from
// done+1, and the total is done plus their count. Blocks are packed in
// order, as many to a part as fit (so splitting the blocks left after a
// part boundary again gives the same parts as the first split did there).
func splitBlocks(b budget, heading string, blocks []block, done int) []chatPart {
	if done == 0 {
		prefix := heading + "\n"
		var all strings.Builder
		posts := 0
		for _, bl := range blocks {
			all.WriteString(bl.text())
			if bl.Post {
				posts++
			}
		}
		if b.fits(prefix + all.String()) {
			return []chatPart{{Text: prefix + all.String(), Posts: posts}}
		}
	}
	for d := 1; ; d++ {
		nines := strings.Repeat("9", d)
		reserve := heading + " (" + nines + "/" + nines + ")\n"
		parts := pack(b, reserve, blocks)
		total := done + len(parts)
		if total < pow10(d) || d == maxMarkerDigits {
			for i := range parts {
				marker := heading + " (" + strconv.Itoa(done+i+1) + "/" + strconv.Itoa(total) + ")\n"
				parts[i].Text = marker + parts[i].Text
			}
			return parts
		}
	}
}

func pow10(d int) int {
	n := 1
	for range d {
		n *= 10
	}
	return n
}

// pack packs blocks into parts whose text, after prefix, fits b. The
// returned texts do not include prefix.
func pack(b budget, prefix string, blocks []block) []chatPart {
	var parts []chatPart
	var cur chatPart
	pre := b.measure(prefix)
	curSize := b.measure("")
	flush := func() {
		if cur.Text != "" {
			parts = append(parts, cur)
		}
		cur, curSize = chatPart{}, b.measure("")
	}
	for _, bl := range blocks {
		t := bl.text()
		ts := b.measure(t)
		switch {
		case b.fitsSize(pre, curSize, ts):
		case b.fitsSize(pre, ts):
			flush()
		default:
			// Too long for a message of its own: trimmed, after the lead
			// when that is all the current message holds (and the post's
			// author and link fit beside it), else in a message of its own.
			if cur.Posts > 0 || !b.fitsSize(pre, curSize, b.measure(bl.Head+bl.Mark+bl.Tail)) {
				flush()
			}
			t = trimBlock(b, prefix+cur.Text, bl)
			ts = b.measure(t)
			cur.Trimmed = true
		}
		cur.Text += t
		curSize = curSize.add(ts)
		if bl.Post {
			cur.Posts++
		}
	}
	flush()
	return parts
}

// trimBlock returns the longest form of bl that fits b after prefix: its
// body cut at a character boundary, preferably at a space, followed by
// its mark. When even the head, the mark and the tail do not fit (only a
// link longer than a whole message can make it so: the renderer caps
// links well below every limit), the block is cut as a whole.
func trimBlock(b budget, prefix string, bl block) string {
	fixed := b.measure(prefix + bl.Head + bl.Mark + bl.Tail)
	if !b.fitsSize(fixed) {
		whole := bl.Head + bl.Mark + bl.Tail
		i := longestFit(whole, func(i int) bool { return b.fits(prefix + whole[:i]) })
		return whole[:i]
	}
	i := longestFit(bl.Body, func(i int) bool { return b.fitsSize(fixed, b.measure(bl.Body[:i])) })
	i = backOff(bl.Body, i)
	return bl.Head + strings.TrimRight(bl.Body[:i], " \n") + bl.Mark + bl.Tail
}

// longestFit returns the largest rune boundary i of s for which ok(i)
// holds, given that ok is monotone (true up to some point) and ok(0).
func longestFit(s string, ok func(int) bool) int {
	bounds := make([]int, 0, len(s)+1)
	for i := range s {
		bounds = append(bounds, i)
	}
	bounds = append(bounds, len(s))
	lo, hi := 0, len(bounds)-1 // ok(bounds[lo]); the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if ok(bounds[mid]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return bounds[lo]
}

// backOff moves a cut at i back so that the text before it does not end
// in the middle of a character as people see it (a base letter cut from
// its combining marks, an emoji from its modifier or variation selector),
// and, when there is one among the last 32 characters, to a space.
func backOff(s string, i int) int {
	for i > 0 && i < len(s) {
		r, _ := utf8.DecodeRuneInString(s[i:])
		if !joins(r) {
			break
		}
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	j := i
	for n := 0; j > 0 && n < 32; n++ {
		r, size := utf8.DecodeLastRuneInString(s[:j])
		if unicode.IsSpace(r) {
			return j - size
		}
		j -= size
	}
	return i
}

// joins reports whether r belongs to the character before it.
func joins(r rune) bool {
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc) || r == '\u200d' ||
		(r >= 0x1f3fb && r <= 0x1f3ff) || (r >= 0xe0020 && r <= 0xe007f)
}
