package notify

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tagwatch/vault"
)

// This file is the one place where what users read is worded: every
// notice type, from the facts its vault.Notice carries (vault/records.go),
// for every channel (plain text for console, chat and mail; HTML for
// mail; the message member of a webhook body). Old rows, written before
// notices carried facts only, carry their words in Notice.Message: they
// are shown only when a row lacks the facts its type is rendered from.

// rendered is a message as people read it.
type rendered struct {
	// Subject is the heading on one line, at most 200 bytes.
	Subject string
	// Lead says what happened, in a sentence or two.
	Lead string
	Text string
	HTML string
}

type renderData struct {
	*Message
	Heading string
	Lead    string
	Posts   []vault.Post
	Consent string
}

// render turns m into a subject, a lead, a plain-text and an HTML body.
// User text (posts, hashtags) is escaped in HTML and stripped of control
// characters everywhere, so it cannot forge headers or terminal output.
func render(m *Message) (rendered, error) {
	d := renderData{Message: m, Posts: m.Notice.Posts, Consent: m.Consent.Reveal()}
	d.Heading, d.Lead = words(m.Notice, m.AccountURL)
	var r rendered
	r.Subject, r.Lead = clipRunes(clean(d.Heading), 200), d.Lead
	r.Text = renderText(d)
	var b bytes.Buffer
	if err := htmlTmpl.Execute(&b, d); err != nil {
		return r, err
	}
	r.HTML = b.String()
	return r, nil
}

// words returns the heading and the lead of a notice; accountURL, when
// not "", is the user's own page, where access ended is given again.
func words(n vault.Notice, accountURL string) (heading, lead string) {
	tags := hashtags(n.Hashtags)
	who := providerName(n.Provider)
	// old is the text of a row written before notices carried facts,
	// when the row lacks the facts its type is rendered from.
	old := func(facts bool) string {
		if facts {
			return ""
		}
		return clean(n.Message)
	}
	switch n.Type {
	case vault.NoticeMatch:
		heading = "New posts for " + tags
		if len(n.Posts) == 1 {
			heading = "A new post for " + tags
		}
		lead = "tagwatch found these while you were away."
		if len(n.Posts) == 0 {
			heading = "tagwatch found new posts for " + tags
			lead = first(old(false), lead)
		}
	case vault.NoticeEnrolled:
		if n.Resumed {
			heading = "tagwatch is watching " + tags + " again"
			lead = "tagwatch has access again: the watch of " + tags + " resumes where it stopped."
			break
		}
		heading = "tagwatch is watching " + tags
		lead = "tagwatch now watches " + tags + ". New posts will be sent here."
		if n.Schedule != "" {
			lead = "tagwatch now watches " + tags + " " + Cadence(n.Schedule) + ". New posts will be sent here."
		}
		lead = first(old(n.Schedule != ""), lead)
	case vault.NoticeReconsent:
		heading = "tagwatch needs your permission again"
		lead = "tagwatch can no longer search " + who + " for you: " + reconsentReason(n.Reason, who) +
			". Your watches" + of(n.Hashtags, tags) + " are paused until you allow it again with the link below, which works once."
		lead = first(old(n.Reason != ""), lead)
	case vault.NoticeRevoked:
		heading = "tagwatch's access has ended"
		lead = "tagwatch's access to your " + who + " account was revoked, and your watches" + of(n.Hashtags, tags) +
			" have stopped. To start again, ask your operator for a new link."
		if accountURL != "" {
			// The user's page gives access again (vault/selfservice).
			lead = "tagwatch's access to your " + who + " account was revoked, and your watches" + of(n.Hashtags, tags) +
				" have stopped. To start again, give access again on your tagwatch page: " + accountURL
		}

	case vault.NoticeTargetDisabled:
		heading = "A notification target was turned off"
		target := "one of the places tagwatch sends your notifications"
		if n.Target != "" {
			target = clean(n.Target)
		}
		lead = "Notifications to " + target + " were refused for good (410 Gone), so tagwatch turned that target off. " +
			"Ask your operator for a new one."
		lead = first(old(n.Target != ""), lead)
	case vault.NoticeAccountDeleted:
		heading = "Your tagwatch data was deleted"
		lead = "As you asked, tagwatch deleted everything it kept for you: your watches have stopped and are gone, " +
			"with their history and the notifications not yet sent; tagwatch's access to your accounts was revoked " +
			"(its tokens deleted here, and revoked at the provider where the provider allows it); your links and " +
			"your sign-in to your tagwatch page ended. This is the last message tagwatch sends you."
	default:
		heading = "A message from tagwatch"
		lead = first(clean(n.Message), "tagwatch has news about your watches.")
	}
	return heading, lead
}

// first returns the first of ss that is not empty.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func hashtags(hs []string) string {
	tags := make([]string, len(hs))
	for i, t := range hs {
		tags[i] = "#" + clean(t)
	}
	if len(tags) == 0 {
		return "your hashtags"
	}
	return strings.Join(tags, " ")
}

// of is " of #a #b" when there are hashtags to name.
func of(hs []string, tags string) string {
	if len(hs) == 0 {
		return ""
	}
	return " of " + tags
}

// providerName is a provider as users call it.
func providerName(p string) string {
	switch p {
	case "":
		return "your account"
	case "x":
		return "X"
	}
	return clean(p)
}

// reconsentReason says in a user's words why a grant needs a new consent,
// from the cause vault/renew or the vault records (Notice.Reason): what
// happened, truthfully, without blaming the user for what the provider or
// tagwatch did. who is the provider as users call it.
func reconsentReason(reason, who string) string {
	if who == "your account" { // no provider named
		who = "the provider"
	}
	class, _, _ := strings.Cut(reason, ":")
	switch class {
	case "dead_grant": // the provider refused the refresh token: revoked, expired or spent
		return who + " no longer accepts the access tagwatch had"
	case "lost_rotation": // tagwatch lost the answer to a refresh that spent its token
		return "tagwatch lost the answer from " + who + " while renewing its access, so it needs your permission again"
	case "scope_reduced":
		return who + " now gives tagwatch fewer permissions than it needs"
	case "id_token_changed":
		return who + " answered for an account other than the one you allowed"
	case "damaged": // an operator reset a grant whose stored tokens no longer open
		return "tagwatch could no longer read the access it had stored, so it needs your permission again"
	}
	return "the access tagwatch had no longer works"
}

// Cadence says a schedule in words where it can: "every 15 minutes",
// "every hour", "once a day", or, for a cron expression, "on the schedule
// “*/5 * * * *”". It never fails: the schedule was checked when the watch
// was made.
func Cadence(spec string) string {
	switch spec {
	case "@hourly", "@every 1h", "@every 60m":
		return "every hour"
	case "@daily", "@midnight":
		return "once a day"
	case "@weekly":
		return "once a week"
	case "@monthly":
		return "once a month"
	case "@yearly", "@annually":
		return "once a year"
	}
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil && d > 0 {
			return "every " + humanDuration(d)
		}
	}
	return "on the schedule “" + clean(spec) + "”"
}

// humanDuration says d in the largest whole unit, "15 minutes" or
// "2 hours"; one of a unit is the unit alone, so a cadence reads "every day".
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	}
	return d.String()
}

// clipRunes cuts s to at most n bytes without splitting a character.
func clipRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// clean removes control and format characters (newlines included) from
// user-controlled text that lands on one line.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
}

// cleanBlock keeps newlines but removes other control characters (terminal
// escapes, bidi overrides) from multi-line user text.
func cleanBlock(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' {
			return r
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
}

var funcs = map[string]any{"clean": clean, "para": cleanBlock, "link": postURL}

// The plain text of a message is built from blocks, the same for every
// channel: mail and the console print them in one piece (render), chat
// services get them packed into messages that fit the service (renderChat).
// Each block starts with a line break, so a text reads:
//
//	New posts for #golang
//
//	tagwatch found these while you were away.
//
//	@gopher · 2026-03-01 11:58 UTC
//	Go 1.26 is out!
//	https://x.com/gopher/status/1869…
//
//	--
//	Pause this watch: https://…
//	Notification 9f2c…

// Longest author name and post link a text shows; X's are far shorter.
// They keep a post's block, less its text, well inside the shortest
// message limit (limits.go), so a post trimmed to fit keeps its link.
const (
	maxAuthorBytes = 64
	maxLinkBytes   = 512
)

// textBlocks returns the blocks of d's text after its heading line.
func textBlocks(d renderData) []block {
	bs := []block{{Head: "\n", Body: d.Lead, Tail: "\n", Mark: " …"}}
	for _, p := range d.Posts {
		bs = append(bs, postBlock(p))
	}
	if d.Consent != "" {
		bs = append(bs, block{Head: "\nAllow tagwatch again (this link works once):\n", Tail: d.Consent + "\n"})
	}
	var foot strings.Builder
	foot.WriteString("\n--\n")
	if d.PauseURL != "" {
		foot.WriteString("Pause this watch: " + d.PauseURL + "\n")
	}
	if d.RevokeURL != "" {
		foot.WriteString("Revoke tagwatch's access: " + d.RevokeURL + "\n")
	}
	foot.WriteString("Notification " + d.ID + "\n")
	return append(bs, block{Tail: foot.String()})
}

// postBlock is one post: its author and time, its text (what a trim
// shortens) and its link.
func postBlock(p vault.Post) block {
	head := "\n@" + clipRunes(clean(p.AuthorUsername), maxAuthorBytes)
	if !p.CreatedAt.IsZero() {
		head += " · " + p.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	return block{Head: head + "\n", Body: cleanBlock(p.Text), Tail: "\n" + textLink(p) + "\n",
		Mark: " … (shortened: the whole post is at the link below)", Post: true}
}

// textLink is a post's link as a text shows it: on one line, and no
// longer than maxLinkBytes (X's canonical link by id otherwise).
func textLink(p vault.Post) string {
	l := clean(postURL(p))
	if len(l) <= maxLinkBytes {
		return l
	}
	return "https://x.com/i/web/status/" + clipRunes(clean(p.ID), 64)
}

// renderText is d's whole plain text.
func renderText(d renderData) string {
	var b strings.Builder
	b.WriteString(d.Heading + "\n")
	for _, bl := range textBlocks(d) {
		b.WriteString(bl.text())
	}
	return b.String()
}

// renderChat renders m as chat messages that each fit b: the whole text
// in one message when it fits, otherwise split at post boundaries into
// messages whose heading says "(2/3)", the lead in the first, the links
// in the last; a post too long for a message of its own is shortened,
// its link kept. from is what earlier attempts delivered: the messages
// returned carry the posts after from.Posts, numbered after from.Parts.
// The split is deterministic: the same message and budget give the same
// parts, and the parts after a boundary are those a split of the posts
// after it gives.
func renderChat(m *Message, b budget, from progress) ([]chatPart, error) {
	d := renderData{Message: m, Posts: m.Notice.Posts, Consent: m.Consent.Reveal()}
	d.Heading, d.Lead = words(m.Notice, m.AccountURL)
	heading := clipRunes(clean(d.Heading), 200)
	blocks := textBlocks(d)
	if from.Parts > 0 {
		// The lead went with the first message; so did the posts before
		// from.Posts.
		blocks = blocks[1+min(from.Posts, len(d.Posts)):]
	}
	return splitBlocks(b, heading, blocks, from.Parts), nil
}

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Heading}}</title></head>
<body style="margin:0;padding:0;background:#f5f6f8;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1c2330">
<div style="max-width:560px;margin:0 auto;padding:24px 16px">
<p style="margin:0 0 16px;font-weight:700;color:#3b5bdb"># tagwatch</p>
<h1 style="margin:0 0 8px;font-size:22px;line-height:1.3">{{.Heading}}</h1>
<p style="margin:0 0 16px;font-size:16px">{{.Lead}}</p>
{{range .Posts}}<div style="margin:0 0 12px;padding:14px;background:#fff;border:1px solid #dde1e8;border-radius:10px">
<p style="margin:0 0 6px;font-weight:600">@{{clean .AuthorUsername}}{{if not .CreatedAt.IsZero}} <span style="font-weight:400;color:#5b6475">· {{.CreatedAt.UTC.Format "2006-01-02 15:04 UTC"}}</span>{{end}}</p>
<p style="margin:0 0 8px;white-space:pre-wrap;overflow-wrap:anywhere">{{para .Text}}</p>
{{if link .}}<a href="{{link .}}" style="color:#3b5bdb">Open the post</a>{{end}}
</div>{{end}}
{{if .Consent}}<p style="margin:20px 0"><a href="{{.Consent}}" style="display:inline-block;padding:12px 18px;background:#3b5bdb;color:#fff;border-radius:10px;text-decoration:none;font-weight:700">Allow tagwatch again</a></p>
<p style="margin:0 0 16px;font-size:13px;color:#5b6475">This link works once.</p>{{end}}
<p style="margin:24px 0 0;font-size:13px;color:#5b6475">{{if .PauseURL}}<a href="{{.PauseURL}}" style="color:#5b6475">Pause this watch</a> · {{end}}{{if .RevokeURL}}<a href="{{.RevokeURL}}" style="color:#5b6475">Revoke tagwatch's access</a>{{end}}</p>
</div></body></html>
`))

// postURL is the post's link, or X's canonical one when the row has none.
func postURL(p vault.Post) string {
	if p.URL != "" {
		return p.URL
	}
	if p.ID == "" {
		return ""
	}
	user := p.AuthorUsername
	if user == "" {
		user = "i/web"
	}
	return "https://x.com/" + user + "/status/" + p.ID
}
