package webpage

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"tagwatch/vault/httpsec"
)

// WriteContinuePage answers 200 with the page that sends the browser on
// to target, another origin's URL (a provider's authorization or end
// session endpoint), with a meta refresh and, for a browser with meta
// refresh turned off, a visible "Continue to label" link (label empty:
// target's host), in the pages' look (Style). It carries the page headers
// (httpsec.SetPageHeaders: form-action 'self' only, no script, no
// caching, no referrer). target must be an absolute http(s) URL without
// spaces, quotes, angle brackets or backslashes; anything else is a 500
// in plain text (a programming error).
//
// Why a page and not a 303 straight to target: a form's POST whose answer
// redirects leaves the page under its CSP's form-action for the whole
// redirect chain. Chromium checks form-action on every redirect that
// follows a form submission, not only the first (CSP Level 3, section
// 6.4.1 "form-action", with its redirect behaviour: the request's
// redirects are checked against the directive too), so a 303 to a
// provider that then redirects to its login or logout UI on a third
// origin (self-hosted Ory Hydra's login app, say) is blocked unless that
// origin, unknown to tagwatch, is listed. Instead, a POST that must send
// the browser away answers 303 to a same-origin GET page that calls this:
// the form's redirect chain never leaves the origin, and the meta refresh
// is a new top-level navigation, not a form submission, which form-action
// does not govern. It stays a top-level navigation (frame-ancestors
// 'none': never in a frame).
func WriteContinuePage(w http.ResponseWriter, target, label string) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(target, " \t\r\n\"'<>\\") {
		internalError(w)
		return
	}
	if label == "" {
		label = u.Host
	}
	d := &continueData{Page: Page{Title: "Continue to " + label}, Label: label,
		Refresh: template.HTMLAttr(`content="0;url=` + template.HTMLEscapeString(target) + `"`),
		Href:    template.HTMLAttr(`href="` + template.HTMLEscapeString(target) + `"`)}
	if err := Write(w, http.StatusOK, continuePage, d); err != nil {
		internalError(w)
	}
}

// internalError answers 500 in plain text, with the page headers.
func internalError(w http.ResponseWriter) {
	h := w.Header()
	httpsec.SetPageHeaders(h, "")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("internal error\n"))
}

type continueData struct {
	Page
	Label string
	// Refresh and Href are the meta refresh's content and the link's
	// href, the target escaped for an attribute.
	Refresh, Href template.HTMLAttr
}

// continueStyle is what the continue page adds to Style: its link, a
// button.
const continueStyle = `a.button{display:block;padding:14px 18px;border-radius:12px;background:var(--accent);color:var(--accent-ink);font-size:17px;font-weight:700;text-align:center;text-decoration:none}
a.button:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
`

var continuePage = template.Must(Parse("continue", continueStyle, `{{define "head"}}<meta http-equiv="refresh" {{.Refresh}}>
{{end}}<p>Taking you to {{.Label}}…</p>
<p><a class="button" {{.Href}}>Continue to {{.Label}}</a></p>
`))
