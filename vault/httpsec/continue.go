package httpsec

import (
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// WriteContinuePage answers 200 with the page that sends the browser on
// to target, another origin's URL (a provider's authorization or end
// session endpoint), with a meta refresh and, for a browser with meta
// refresh turned off, a visible "Continue to label" link. It carries the
// page headers (SetPageHeaders: form-action 'self' only, no script, no
// caching, no referrer). target must be an absolute http(s) URL; anything
// else is a 500 (a programming error).
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
	h := w.Header()
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(target, " \t\r\n\"'<>\\") {
		SetPageHeaders(h, "")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error\n"))
		return
	}
	if label == "" {
		label = u.Host
	}
	var nb [18]byte
	_, _ = rand.Read(nb[:])
	nonce := base64.RawURLEncoding.EncodeToString(nb[:])
	var b strings.Builder
	_ = continueTmpl.Execute(&b, struct {
		Nonce, Label  string
		Refresh, Href template.HTMLAttr
	}{nonce, label, template.HTMLAttr(`content="0;url=` + template.HTMLEscapeString(target) + `"`),
		template.HTMLAttr(`href="` + template.HTMLEscapeString(target) + `"`)})
	SetPageHeaders(h, nonce)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}

var continueTmpl = template.Must(template.New("continue").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow">
<meta http-equiv="refresh" {{.Refresh}}>
<title>Continue to {{.Label}} · tagwatch</title><style nonce="{{.Nonce}}">
:root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--ink:#14181f;--muted:#5a6472;--line:#e3e7ec;--accent:#1f5eff;--accent-ink:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#0f1318;--card:#181d24;--ink:#e8ecf1;--muted:#9aa5b4;--line:#2a313b;--accent:#5b8cff;--accent-ink:#0b1020}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--ink);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;overflow-wrap:anywhere}
main{width:100%;min-width:0;max-width:560px;margin:24px 16px;padding:28px 24px;background:var(--card);border:1px solid var(--line);border-radius:16px}
.brand{margin:0 0 20px;font-size:13px;font-weight:700;letter-spacing:.08em;text-transform:uppercase;color:var(--muted)}
.brand span{color:var(--accent)}
p{margin:0 0 12px}
a.button{display:block;padding:14px 18px;border-radius:12px;background:var(--accent);color:var(--accent-ink);font-size:17px;font-weight:700;text-align:center;text-decoration:none}
a.button:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
</style></head>
<body><main>
<p class="brand"><span>#</span> tagwatch</p>
<p>Taking you to {{.Label}}…</p>
<p><a class="button" {{.Href}}>Continue to {{.Label}}</a></p>
</main></body></html>
`))
