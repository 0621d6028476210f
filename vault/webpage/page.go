// Package webpage holds what tagwatch's pages for people share: the
// consent pages (vault/enroll) and the account page (vault/selfservice).
//
//   - The page shell (Parse) with the one stylesheet (Style), written
//     with the page headers and a fresh style nonce (Write), and the
//     message page (MessagePage) that says what happened or why not.
//   - The continue page (WriteContinuePage), on which a form's POST goes
//     on to a provider.
//   - How a refused request is shown and logged (Refusal, Refusals).
//   - The store of OAuth 2.0 authorization flows in progress, bound to
//     the browser that started them (FlowStore; RFC 6749 §10.12), and
//     the first checks of the authorization response (CallbackState).
//
// Its functions and a FlowStore are safe for concurrent use.
package webpage

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"reflect"
	"strings"

	"tagwatch/vault/httpsec"
)

// Style is the stylesheet of every page: the consent pages, the account
// page (which adds its own rules for lists of watches) and the continue
// page (which adds its link button). Light and dark (prefers-color-scheme),
// one column that fits a 390 px wide phone, a 560 px card on wider
// screens. It is only ever served inside the page's nonce'd style element:
// the CSP (httpsec.SetPageHeaders) allows no other style.
const Style = `
:root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--ink:#14181f;--muted:#5a6472;--line:#e3e7ec;--accent:#1f5eff;--accent-ink:#fff;--ok:#167a4a;--err:#b42318;--chip:#eef2ff;--chip-ink:#1f3fa8}
@media (prefers-color-scheme:dark){:root{--bg:#0f1318;--card:#181d24;--ink:#e8ecf1;--muted:#9aa5b4;--line:#2a313b;--accent:#5b8cff;--accent-ink:#0b1020;--ok:#4fc38a;--err:#ff8a80;--chip:#1f2a44;--chip-ink:#b9ccff}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;min-height:100vh;display:flex;align-items:flex-start;justify-content:center;background:var(--bg);color:var(--ink);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;overflow-wrap:anywhere}
main{width:100%;min-width:0;max-width:560px;margin:24px 16px;padding:28px 24px;background:var(--card);border:1px solid var(--line);border-radius:16px;box-shadow:0 1px 2px rgba(0,0,0,.04),0 8px 24px rgba(0,0,0,.06)}
@media (min-width:640px){body{align-items:center}main{margin:48px 16px;padding:40px 44px}}
.brand{margin:0 0 20px;font-size:13px;font-weight:700;letter-spacing:.08em;text-transform:uppercase;color:var(--muted)}
.brand span{color:var(--accent)}
h1{margin:0 0 10px;font-size:24px;line-height:1.25;letter-spacing:-.01em}
h2{margin:26px 0 10px;font-size:13px;font-weight:700;letter-spacing:.06em;text-transform:uppercase;color:var(--muted)}
p{margin:0 0 12px}
.lead{font-size:17px;color:var(--ink)}
.muted{color:var(--muted);font-size:14px}
.notice{padding:10px 14px;border-radius:12px;background:var(--chip);color:var(--chip-ink)}
.tags{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 4px;padding:0;list-style:none}
.tags li{padding:4px 12px;border-radius:999px;background:var(--chip);color:var(--chip-ink);font-weight:600;font-size:15px}
dl.rows{margin:0;border:1px solid var(--line);border-radius:12px;overflow:hidden}
.rows div{padding:12px 14px;border-top:1px solid var(--line)}
.rows div:first-child{border-top:0}
.rows dt{font-weight:600;font-size:15px}
.rows dd{margin:2px 0 0;color:var(--muted);font-size:14px}
ul.plain{margin:4px 0 16px;padding:0 0 0 20px}
ul.plain li{margin:0 0 4px}
form{margin:16px 0 0}
.rows+form{margin-top:28px}
button{display:block;width:100%;padding:14px 18px;border:0;border-radius:12px;background:var(--accent);color:var(--accent-ink);font:inherit;font-size:17px;font-weight:700;cursor:pointer}
button:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
a{color:var(--accent)}
.fine{margin:14px 0 0;color:var(--muted);font-size:13px;text-align:center}
.badge{display:inline-flex;align-items:center;justify-content:center;width:44px;height:44px;margin:0 0 16px;border-radius:50%;font-size:22px;font-weight:800}
.badge.ok{background:color-mix(in srgb,var(--ok) 15%,transparent);color:var(--ok)}
.badge.error{background:color-mix(in srgb,var(--err) 15%,transparent);color:var(--err)}
`

// pageTop and pageTopEnd open every page, around the stylesheet: Style,
// then the page's own rules. The "head" template, empty unless a page
// defines it, adds to <head>.
const (
	pageTop = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow">
{{block "head" .}}{{end}}<title>{{.Title}} · tagwatch</title><style nonce="{{.Nonce}}">` + Style
	pageTopEnd = `</style></head>
<body><main>
<p class="brand"><span>#</span> tagwatch</p>
`
)

const pageFoot = `</main></body></html>
`

// Page is what every page's data carries: embed it.
type Page struct {
	// Nonce is the CSP nonce of the page's style element; Write sets it.
	Nonce string
	// Title is the page's title, " · tagwatch" added.
	Title string
}

// SetNonce sets the style nonce (Data).
func (p *Page) SetNonce(n string) { p.Nonce = n }

// Data is the data of a page: a pointer to a struct that embeds Page.
type Data interface{ SetNonce(string) }

// Parse parses a page template named name: the shell (doctype, head with
// Style then style, the brand line), body, the closing tags. The data's
// Title and Nonce come from Page. body may define a "head" template, put
// at the start of <head> (a meta refresh). style is CSS added after
// Style, so that its rules win over Style's of the same specificity; like
// body it is template text. It returns html/template's parse error.
func Parse(name, style, body string) (*template.Template, error) {
	return template.New(name).Parse(pageTop + style + pageTopEnd + body + pageFoot)
}

// Write answers with the page tmpl makes of d: status, the page headers
// (httpsec.SetPageHeaders with a fresh 144-bit style nonce, also set in
// d), Content-Type text/html. The page is made before anything is
// written: when tmpl fails (or tmpl or d is nil, or status is not a
// three-digit code) nothing is written and the error is returned, so that
// the caller can answer otherwise.
func Write(w http.ResponseWriter, status int, tmpl *template.Template, d Data) error {
	if v := reflect.ValueOf(d); tmpl == nil || d == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return errors.New("webpage: no template or no data")
	}
	if status < 100 || status > 999 {
		return fmt.Errorf("webpage: status %d", status) // net/http would panic
	}
	nonce := newNonce()
	d.SetNonce(nonce)
	var b strings.Builder
	if err := tmpl.Execute(&b, d); err != nil {
		return err
	}
	httpsec.SetPageHeaders(w.Header(), nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// newNonce returns 18 random bytes, base64url without padding: 24
// characters.
func newNonce() string {
	var b [18]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand: it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Message is the data of MessagePage: what happened, or why a request
// was refused (Refusal.Page).
type Message struct {
	Page
	// Kind is "ok" (a tick) or "error" (an exclamation mark).
	Kind string
	// Message is the lead paragraph.
	Message string
	// List, under the heading ListTitle, is terms with their
	// descriptions (the scopes not granted).
	ListTitle string
	List      []Term
	// Lines is a bulleted list.
	Lines []string
	// Note is a muted paragraph.
	Note string
	// Back, when set, is a link reading BackText ("Back to your tagwatch
	// page").
	Back, BackText string
}

// Term is a term with its description, such as a scope and what it
// allows.
type Term struct{ Name, Text string }

// MessagePage is the page of a Message (Write it with a *Message): the
// badge of its Kind, its Title as the heading, its Message, then what it
// has of List, Lines, Note and Back, in that order.
var MessagePage = template.Must(Parse("message", "", `
<div class="badge {{.Kind}}" aria-hidden="true">{{if eq .Kind "ok"}}✓{{else}}!{{end}}</div>
<h1>{{.Title}}</h1>
<p class="lead">{{.Message}}</p>
{{if .List}}{{with .ListTitle}}<h2>{{.}}</h2>{{end}}<dl class="rows">{{range .List}}<div><dt>{{.Name}}</dt><dd>{{.Text}}</dd></div>{{end}}</dl>{{end}}
{{if .Lines}}<ul class="plain">{{range .Lines}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Note}}<p class="muted">{{.Note}}</p>{{end}}
{{if .Back}}<p><a href="{{.Back}}">{{.BackText}}</a></p>{{end}}
`))

// Routes registers on mux each handler under its pattern ("GET
// /enroll/{token}": a method and a path, as http.ServeMux reads them);
// then, once for each of their paths, methodNotAllowed for every other
// method on it (the 405 page), and notFound for every other path ("/",
// when notFound is not nil). A pattern without a method gets no
// methodNotAllowed. Like mux.HandleFunc, it panics on patterns that
// conflict (a programming error, found as the handler is built).
func Routes(mux *http.ServeMux, handlers map[string]http.HandlerFunc, methodNotAllowed, notFound http.HandlerFunc) {
	paths := map[string]bool{}
	for pattern, h := range handlers {
		mux.HandleFunc(pattern, h)
		if _, path, ok := strings.Cut(pattern, " "); ok && methodNotAllowed != nil {
			paths[strings.TrimLeft(path, " \t")] = true
		}
	}
	for path := range paths {
		if _, taken := handlers[path]; !taken {
			mux.HandleFunc(path, methodNotAllowed)
		}
	}
	if notFound != nil {
		mux.HandleFunc("/", notFound)
	}
}

// WithHeaders returns h with the page headers (httpsec.SetPageHeaders,
// no style nonce) set on every response before h answers, so that the
// answers a mux writes itself (a redirect to a cleaned path) carry them
// too; a page replaces them with its own (Write).
func WithHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpsec.SetPageHeaders(w.Header(), "")
		h.ServeHTTP(w, r)
	})
}
