package notify

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// A unit is how a chat service counts the length of a message.
type unit int

// Units of length.
const (
	// unitBytes counts UTF-8 bytes.
	unitBytes unit = iota
	// unitRunes counts Unicode code points ("characters" to most services).
	unitRunes
	// unitUTF16 counts UTF-16 code units: a character outside the Basic
	// Multilingual Plane (most emoji) counts two. Where a service says
	// "characters" without saying which, this, the larger count, is used,
	// so a message fits under either reading.
	unitUTF16
	// unitJSON counts the bytes of the text once written as a JSON string
	// by encoding/json (without the quotes): newlines and quotes take two
	// bytes, other control characters and <, >, & six. It is for services
	// whose cap is on the JSON request the library builds.
	unitJSON
)

func (u unit) String() string {
	switch u {
	case unitBytes:
		return "bytes"
	case unitRunes:
		return "characters"
	case unitUTF16:
		return "UTF-16 code units"
	case unitJSON:
		return "bytes of JSON"
	}
	return "units"
}

// measure returns the length of s in u. It is additive: the length of a
// concatenation is the sum of the lengths of its pieces, which the splitter
// relies on.
func (u unit) measure(s string) int {
	switch u {
	case unitBytes:
		return len(s)
	case unitRunes:
		return utf8.RuneCountInString(s)
	case unitUTF16:
		n := 0
		for _, r := range s {
			n++
			if r >= 0x10000 {
				n++
			}
		}
		return n
	case unitJSON:
		n := 0
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			i += size
			switch {
			case r == utf8.RuneError && size == 1:
				n += 6 // \ufffd
			case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
				n += 2
			case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
				n += 6
			default:
				n += size
			}
		}
		return n
	}
	return len(s)
}

// A constraint is one limit a message must keep: at most Max in Unit,
// counting each line break as PerLine more (for services that turn each
// line into a JSON object of its own).
type constraint struct {
	Max     int
	Unit    unit
	PerLine int
}

func (c constraint) measure(s string) int {
	n := c.Unit.measure(s)
	if c.PerLine > 0 {
		n += c.PerLine * strings.Count(s, "\n")
	}
	return n
}

// chatLimit is what one chat service accepts in one message: every
// constraint must hold. Where the library refuses a message locally (with
// a count of its own, often bytes) and the service counts otherwise, both
// are listed: the tighter one binds.
type chatLimit struct {
	Constraints []constraint
	// Source is where the figures come from.
	Source string
	// Title says how the service spends the URL's title= parameter (when
	// the user set one) from the message's budget; nil when it does not.
	Title func(title string) []constraint
}

// chatLimits is the length limit of one message for every chat service
// tagwatch sends to (shoutrrrSchemes; a test keeps the two lists the same).
// The digest is rendered to fit them (renderChat): split into several
// messages at post boundaries, a single post too long for one message
// trimmed, with its link kept. The library in use is
// github.com/nicholas-fedor/shoutrrr v0.13.2; where it refuses long
// messages itself, that refusal is part of the limit.
var chatLimits = map[string]chatLimit{
	"telegram": {
		Constraints: []constraint{{4096, unitUTF16, 0}},
		Source: "Telegram Bot API sendMessage: text of 1-4096 characters after entities parsing " +
			"(core.telegram.org/bots/api#sendmessage), counted in UTF-16 code units (core.telegram.org/api/entities). " +
			"Plain text, no entities. tagwatch sends it itself (telegram.go); the library would refuse more than " +
			"4096 bytes locally (telegram.go in the library, maxlength).",
		// A title is sent as "<b>title</b>\n" + message: after entity
		// parsing the title and its line break count.
		Title: func(t string) []constraint { return []constraint{{4096 - unitUTF16.measure(t) - 1, unitUTF16, 0}} },
	},
	"discord": {
		Constraints: []constraint{{2000, unitUTF16, 0}},
		Source: "Discord Execute Webhook: content up to 2000 characters " +
			"(discord.com/developers/docs/resources/webhook#execute-webhook); the library partitions longer text " +
			"into embeds of 2000 runes and, with its default splitLines, sends each line as an embed, at most 10: " +
			"tagwatch turns splitLines off and sends messages that need no partitioning.",
	},
	"slack": {
		Constraints: []constraint{{4000, unitUTF16, 0}},
		Source: "Slack chat.postMessage: keep text to 4,000 characters; more than 40,000 are truncated " +
			"(docs.slack.dev/reference/methods/chat.postMessage, \"Truncating content\"). The library sends each " +
			"line as an attachment, at most 100 (slack_json.go, MaxAttachments; later lines join the last one).",
	},
	"pushover": {
		Constraints: []constraint{{1024, unitRunes, 0}},
		Source: "Pushover Message API: message limited to 1,024 4-byte UTF-8 characters, title to 250 characters " +
			"(pushover.net/api#limits). tagwatch sends no title of its own; a title= in the URL is checked with the target.",
	},
	"ntfy": {
		Constraints: []constraint{{4096, unitBytes, 0}},
		Source: "ntfy publishing limits: message body up to 4,096 bytes; a larger body is turned into a file " +
			"attachment instead of text (docs.ntfy.sh/publish/#limitations, server message-size-limit).",
	},
	"gotify": {
		Constraints: []constraint{{65535, unitBytes, 0}},
		Source: "gotify documents no message limit (gotify.net/api-docs, POST /message); tagwatch's own cap, " +
			"the size of the TEXT column gotify's MySQL backend stores messages in.",
	},
	"matrix": {
		Constraints: []constraint{{60000, unitJSON, 0}},
		Source: "Matrix client-server spec: an event must not be larger than 65,536 bytes as canonical JSON, " +
			"signatures included (spec.matrix.org/latest/client-server-api/#size-limits); the body's JSON is kept " +
			"to 60,000 bytes, leaving the rest to the event's envelope.",
	},
	"mattermost": {
		Constraints: []constraint{{16383, unitRunes, 0}},
		Source: "Mattermost: a post holds up to 16,383 characters (docs.mattermost.com, \"message length\"; the " +
			"server counts runes, model.PostMessageMaxRunesV2).",
	},
	"rocketchat": {
		Constraints: []constraint{{5000, unitUTF16, 0}},
		Source: "Rocket.Chat: Administration > Message > Maximum Allowed Message Size, default 5,000 characters " +
			"(docs.rocket.chat, Message settings; counted as JavaScript string length, UTF-16).",
	},
	"zulip": {
		Constraints: []constraint{{10000, unitRunes, 0}, {10000, unitBytes, 0}},
		Source: "Zulip: max_message_length, 10,000 Unicode code points by default (zulip.com/api/register-queue); " +
			"the library refuses more than 10,000 bytes locally (zulip.go, contentMaxSize).",
	},
	"signal": {
		Constraints: []constraint{{2048, unitBytes, 0}},
		Source: "Signal clients carry at most 2 KiB of text inline (Signal-Android MessageUtil.MAX_INLINE_BODY_SIZE_BYTES, " +
			"Signal-Desktop LONG_ATTACHMENT_LIMIT = 2048 bytes); longer bodies travel as a long-text attachment, " +
			"which signal-cli-rest-api's /v2/send does not make from a message.",
	},
	"smtp": {
		Constraints: []constraint{{10 << 20, unitBytes, 0}},
		Source: "mail has no message length limit of its own; servers cap a message's size (SMTP SIZE, RFC 1870), " +
			"commonly at 10 MB and more: tagwatch's own cap.",
	},
	"bark": {
		Constraints: []constraint{{3000, unitJSON, 0}},
		Source: "Bark pushes through Apple's APNs, whose payload is at most 4,096 bytes " +
			"(developer.apple.com, \"Generating a remote notification\"); the body's JSON is kept to 3,000 bytes, " +
			"leaving the rest to bark-server's payload (aps, title, sound, group).",
	},
	"pushbullet": {
		Constraints: []constraint{{65535, unitBytes, 0}},
		Source: "Pushbullet documents no limit for a note's body (docs.pushbullet.com, Create Push); " +
			"tagwatch's own cap.",
	},
	"lark": {
		Constraints: []constraint{{4096, unitBytes, 0}},
		Source: "the library refuses more than 4,096 bytes locally (lark_service.go, maxLength); Lark's custom bot " +
			"takes a request body of up to 20 KB (open.larksuite.com, custom bot guide).",
	},
	"wecom": {
		Constraints: []constraint{{2048, unitBytes, 0}},
		Source: "WeCom group robot: text content at most 2,048 bytes, UTF-8 (developer.work.weixin.qq.com/document/path/91770); " +
			"the library refuses more than 4,096 bytes locally (wecom_service.go, maxLength).",
	},
	"teams": {
		Constraints: []constraint{{24576, unitJSON, 12}},
		Source: "Microsoft Teams incoming webhooks: a message is at most 28 KB (learn.microsoft.com, \"Create an " +
			"Incoming Webhook\", rate and size limits). The library sends each line as a section, {\"text\":…} " +
			"(12 bytes more per line); the text is kept to 24 KB of JSON, leaving the rest to the card.",
	},
	"pagerduty": {
		Constraints: []constraint{{1024, unitRunes, 0}},
		Source: "PagerDuty Events API v2: summary is at most 1,024 characters (developer.pagerduty.com, " +
			"send-alert-event); the library cuts longer messages to 1,024 runes without a word.",
	},
}

// budget is the length limit of one message to one target.
type budget struct {
	constraints []constraint
}

// fits reports whether s keeps every constraint.
func (b budget) fits(s string) bool {
	for _, c := range b.constraints {
		if c.measure(s) > c.Max {
			return false
		}
	}
	return true
}

// size is the length of a text in each of a budget's constraints.
type size []int

// measure returns the length of s in each of b's constraints.
func (b budget) measure(s string) size {
	n := make(size, len(b.constraints))
	for i, c := range b.constraints {
		n[i] = c.measure(s)
	}
	return n
}

// fitsSize reports whether texts of the lengths given, one after the
// other, keep every constraint: lengths add up (unit.measure).
func (b budget) fitsSize(parts ...size) bool {
	for i, c := range b.constraints {
		n := 0
		for _, p := range parts {
			n += p[i]
		}
		if n > c.Max {
			return false
		}
	}
	return true
}

func (n size) add(m size) size {
	out := slices.Clone(n)
	for i := range out {
		out[i] += m[i]
	}
	return out
}

// over describes how s breaks b, for an error: "5000 bytes, at most 4096".
func (b budget) over(s string) string {
	for _, c := range b.constraints {
		if n := c.measure(s); n > c.Max {
			return fmt.Sprintf("%d %s, at most %d", n, c.Unit, c.Max)
		}
	}
	return ""
}

// chatBudget returns the limit of one message to a chat target, and false
// for schemes without a limit (not a chat URL).
func chatBudget(target string) (budget, bool) {
	u, err := url.Parse(target)
	if err != nil {
		return budget{}, false
	}
	l, ok := chatLimits[u.Scheme]
	if !ok {
		return budget{}, false
	}
	b := budget{constraints: l.Constraints}
	if l.Title != nil {
		if t := queryValue(u, "title"); t != "" {
			b.constraints = append(append([]constraint(nil), l.Constraints...), l.Title(t)...)
		}
	}
	return b, true
}

// queryValue returns the value of a URL query key, compared without case
// as the library's configuration parser does.
func queryValue(u *url.URL, key string) string {
	for k, vs := range u.Query() {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return vs[len(vs)-1]
		}
	}
	return ""
}
