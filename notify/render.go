package notify

import (
	"bytes"
	htmltemplate "html/template"
	"strings"
	"text/template"
	"unicode"

	"tagwatch/vault"
)

// rendered is a message as people read it.
type rendered struct {
	Subject string
	Text    string
	HTML    string
}

type renderData struct {
	*Message
	Heading  string
	Lead     string
	Tags     string
	Posts    []vault.Post
	Consent  string
	Sanitize func(string) string
}

// render turns m into a subject, a plain-text and an HTML body. User text
// (posts, hashtags) is escaped in HTML and stripped of control characters
// everywhere, so it cannot forge headers or terminal output.
func render(m *Message) (rendered, error) {
	n := m.Notice
	d := renderData{Message: m, Posts: n.Posts, Consent: m.Consent.Reveal()}
	tags := make([]string, len(n.Hashtags))
	for i, t := range n.Hashtags {
		tags[i] = "#" + clean(t)
	}
	d.Tags = strings.Join(tags, " ")
	if d.Tags == "" {
		d.Tags = "your hashtags"
	}
	switch n.Type {
	case vault.NoticeMatch:
		d.Heading = "New posts for " + d.Tags
		if len(n.Posts) == 1 {
			d.Heading = "A new post for " + d.Tags
		}
		d.Lead = "tagwatch found these while you were away."
	case vault.NoticeEnrolled:
		d.Heading = "tagwatch is watching " + d.Tags
		d.Lead = "Your watch is set up. New posts will be sent here."
	case vault.NoticeReconsent:
		d.Heading = "tagwatch needs your permission again"
		d.Lead = "Your watches are paused until you allow tagwatch again. The link below works once."
	case vault.NoticeRevoked:
		d.Heading = "tagwatch's access has ended"
		d.Lead = "tagwatch can no longer search on your behalf, and your watches have stopped."
	case vault.NoticeTargetDisabled:
		d.Heading = "A notification target was disabled"
		d.Lead = "One of the places tagwatch sends your notifications refused them for good, so it was turned off."
	default:
		d.Heading = "A message from tagwatch"
	}
	var r rendered
	r.Subject = clean(d.Heading)
	if len(r.Subject) > 200 {
		r.Subject = r.Subject[:200]
	}
	var b bytes.Buffer
	if err := textTmpl.Execute(&b, d); err != nil {
		return r, err
	}
	r.Text = b.String()
	b.Reset()
	if err := htmlTmpl.Execute(&b, d); err != nil {
		return r, err
	}
	r.HTML = b.String()
	return r, nil
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

var textTmpl = template.Must(template.New("text").Funcs(funcs).Parse(`{{.Heading}}

{{.Lead}}
{{if .Notice.Message}}
{{clean .Notice.Message}}
{{end}}{{range .Posts}}
@{{clean .AuthorUsername}}{{if not .CreatedAt.IsZero}} · {{.CreatedAt.UTC.Format "2006-01-02 15:04 UTC"}}{{end}}
{{para .Text}}
{{link .}}
{{end}}{{if .Consent}}
Allow tagwatch again (this link works once):
{{.Consent}}
{{end}}
--
{{if .PauseURL}}Pause this watch: {{.PauseURL}}
{{end}}{{if .RevokeURL}}Revoke tagwatch's access: {{.RevokeURL}}
{{end}}Notification {{.ID}}
`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Heading}}</title></head>
<body style="margin:0;padding:0;background:#f5f6f8;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1c2330">
<div style="max-width:560px;margin:0 auto;padding:24px 16px">
<p style="margin:0 0 16px;font-weight:700;color:#3b5bdb"># tagwatch</p>
<h1 style="margin:0 0 8px;font-size:22px;line-height:1.3">{{.Heading}}</h1>
<p style="margin:0 0 16px;font-size:16px">{{.Lead}}</p>
{{if .Notice.Message}}<p style="margin:0 0 16px">{{clean .Notice.Message}}</p>{{end}}
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
