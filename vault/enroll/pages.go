package enroll

import (
	"bytes"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
)

// reason is what a browser is told when a request cannot go on.
type reason int

const (
	reasonInternal reason = iota
	reasonNotFound
	reasonMethod
	reasonLinkUnknown
	reasonLinkExpired
	reasonLinkUsed
	reasonLinkCanceled
	reasonProviderUnavailable
	reasonCrossSite
	reasonBusy
	reasonFlowUnknown
	reasonFlowBrowser
	reasonBadCallback
	reasonIssuer
	reasonDenied
	reasonProviderError
	reasonCodeRefused
	reasonProviderDown
	reasonIdentity
	reasonNoOffline
	reasonWrongAccount
	reasonAccountSwitch
	reasonScopes
	reasonWatchRefused
	reasonSignInTaken
)

// pageText is a refusal as the browser sees it.
type pageText struct {
	status int
	name   string // for the log
	title  string
	msg    string
	level  slog.Level
}

var reasons = map[reason]pageText{
	reasonInternal:            {500, "internal", "Something went wrong on our side", "Nothing was changed. Please try again in a few minutes; if it keeps happening, tell whoever sent you the link.", slog.LevelError},
	reasonNotFound:            {404, "not_found", "Page not found", "There is nothing at this address.", slog.LevelDebug},
	reasonMethod:              {405, "method", "This page cannot be used that way", "Open the link from your message in a browser.", slog.LevelDebug},
	reasonLinkUnknown:         {404, "link_unknown", "This link is not valid", "Check that you opened the whole link from your message. If it still does not work, ask whoever sent it for a new one.", slog.LevelInfo},
	reasonLinkExpired:         {410, "link_expired", "This link has expired", "Links work for a limited time. Ask whoever sent it for a new one.", slog.LevelInfo},
	reasonLinkUsed:            {410, "link_used", "This link was already used", "Each link works only once. If you did not use it yourself, tell whoever sent it to you.", slog.LevelInfo},
	reasonLinkCanceled:        {410, "link_canceled", "This link was canceled", "Whoever sent it has withdrawn it. Ask them for a new one if you still need it.", slog.LevelInfo},
	reasonProviderUnavailable: {503, "provider_unavailable", "Sign-in is not available right now", "Nothing was changed. Please try again later with the same link.", slog.LevelError},
	reasonCrossSite:           {403, "cross_site", "Please use the button on the page", "Another site tried to start this sign-in. Open the link from your message and press the button yourself.", slog.LevelWarn},
	reasonBusy:                {503, "busy", "tagwatch is busy", "Too many sign-ins are in progress. Please try again in a few minutes with the same link.", slog.LevelWarn},
	reasonFlowUnknown:         {400, "flow_unknown", "This sign-in has expired or was already completed", "Nothing was changed. Open the link from your message again and press the button to start over.", slog.LevelWarn},
	reasonFlowBrowser:         {400, "flow_browser", "This sign-in was started in another browser", "Nothing was changed. Open the link from your message in this browser and press the button again.", slog.LevelWarn},
	reasonBadCallback:         {400, "bad_callback", "The answer from the sign-in page is incomplete", "Nothing was changed. Open the link from your message again and press the button to start over.", slog.LevelWarn},
	reasonIssuer:              {400, "issuer_mismatch", "The answer did not come from the expected provider", "Nothing was changed and nothing was sent anywhere. Open the link from your message again to start over.", slog.LevelWarn},
	reasonDenied:              {403, "access_denied", "You did not allow access", "Nothing was changed. If you change your mind, open the link from your message again while it is valid.", slog.LevelInfo},
	reasonProviderError:       {400, "provider_error", "The provider could not complete the sign-in", "Nothing was changed. Open the link from your message again to retry.", slog.LevelWarn},
	reasonCodeRefused:         {400, "code_refused", "The sign-in could not be completed", "The provider did not accept the answer it gave (it may have been used already). Nothing was changed. Open the link from your message again to start over.", slog.LevelWarn},
	reasonProviderDown:        {502, "provider_down", "The provider did not answer", "Nothing was changed. Please try again in a few minutes with the same link.", slog.LevelWarn},
	reasonIdentity:            {400, "identity_unverified", "Your sign-in could not be verified", "The provider's proof of who you are did not check out, so nothing was stored. Open the link from your message again to start over.", slog.LevelWarn},
	reasonNoOffline:           {403, "no_offline_access", "The provider did not grant offline access", "tagwatch needs it to watch hashtags while you are away. Nothing was stored. Open the link from your message again and allow every permission asked for.", slog.LevelInfo},
	reasonWrongAccount:        {403, "wrong_account", "You signed in with a different account", "This link is for another account, so nothing was stored. Sign out at the provider, open the link from your message again and sign in with the account it was meant for.", slog.LevelWarn},
	reasonAccountSwitch:       {403, "account_switch", "tagwatch already works for you with another account", "You signed in with another account than the one tagwatch already uses for you at this provider, so nothing was changed and your watches keep running on that account. To keep it, open the link again and sign in with that account. To move to the new one, ask whoever sent you the link for a link made for that account.", slog.LevelWarn},
	reasonWatchRefused:        {409, "watch_refused", "This link's watch is no longer accepted", "The settings of the watch this link was made for are no longer accepted by tagwatch (its configuration changed after the link was sent), so nothing was changed and nothing was sent to the provider. Ask whoever sent you the link for a new one.", slog.LevelWarn},
	reasonSignInTaken:         {409, "sign_in_taken", "This account already signs in someone else", "The account you signed in with already opens another person's tagwatch page, so nothing was changed. Sign out at the provider, open the link from your message again and sign in with your own account, or ask whoever sent you the link.", slog.LevelWarn},
	reasonScopes:              {403, "scopes_missing", "Some permissions were not granted", "tagwatch cannot work without them, so nothing was stored. Open the link from your message again and allow every permission asked for.", slog.LevelInfo},
}

// failure is why a request cannot go on: the reason the browser is told,
// and the cause for the log.
type failure struct {
	reason  reason
	err     error
	until   time.Time // when the link stops working, if it still works
	missing []string  // scopes not granted
	account string    // the account the link is for, as accountLabel names it ("@ada"), if known
	attrs   []any     // log attributes: user, provider, enrollment
}

func (f *failure) Error() string {
	if f.err != nil {
		return reasons[f.reason].name + ": " + f.err.Error()
	}
	return reasons[f.reason].name
}

func (f *failure) Unwrap() error { return f.err }

func refuse(r reason, err error) *failure { return &failure{reason: r, err: err} }

// stateFailure maps the state of a link that cannot be used to its page.
func stateFailure(st vault.LinkState, err error) *failure {
	switch st {
	case vault.LinkUsed:
		return refuse(reasonLinkUsed, err)
	case vault.LinkCanceled:
		return refuse(reasonLinkCanceled, err)
	case vault.LinkExpired:
		return refuse(reasonLinkExpired, err)
	}
	return refuse(reasonInternal, err)
}

// providerFailure maps a failed exchange with the provider to its page.
func providerFailure(op reason, err error) *failure {
	switch provider.ClassOf(err) {
	case provider.ClassTransient:
		return refuse(reasonProviderDown, err)
	case provider.ClassClient:
		// The provider refuses tagwatch itself: the operator's problem.
		return refuse(reasonProviderUnavailable, err)
	}
	return refuse(op, err)
}

// fail is the one place that turns an error into a status, a page and a
// log line. Browsers get a short message; details go to the log.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var f *failure
	if !errors.As(err, &f) {
		f = refuse(reasonInternal, err)
	}
	t, ok := reasons[f.reason]
	if !ok {
		t = reasons[reasonInternal]
	}
	attrs := append([]any{"reason", t.name, "status", t.status, "method", r.Method, "path", routeName(r)}, f.attrs...)
	if f.err != nil {
		attrs = append(attrs, "err", f.err.Error())
	}
	s.log.Log(r.Context(), t.level, "enrollment request refused", attrs...)
	d := messageData{base: base{Title: t.title}, Message: t.msg, Kind: "error"}
	if f.reason == reasonDenied && !f.until.IsZero() {
		d.Note = "The link works until " + formatTime(f.until) + "."
	}
	if f.reason == reasonWrongAccount && f.account != "" {
		d.Message = "This link is for " + f.account + ", so nothing was stored. Sign out at the provider, open the link from your message again and sign in as " + f.account + "."
	}
	if f.reason == reasonScopes {
		for _, m := range f.missing {
			d.List = append(d.List, scopeLine(m))
		}
	}
	if f.reason == reasonMethod {
		w.Header().Set("Allow", "GET, POST")
	}
	s.render(w, t.status, messageTmpl, &d)
}

// routeName names the route for the log, without the link token or any
// query parameter: the path of the pattern that matched
// ("/enroll/{token}"), without the pattern's method, which the log line
// carries once, as the request's ("method"; a HEAD request matches a GET
// pattern). "-" when no pattern matched.
func routeName(r *http.Request) string {
	p := r.Pattern
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t") // "[METHOD ][HOST]/[PATH]"
	}
	if p == "" {
		return "-"
	}
	return p
}

// pageData is what every page template gets.
type pageData interface{ setNonce(string) }

type base struct{ Nonce, Title string }

func (b *base) setNonce(n string) { b.Nonce = n }

type messageData struct {
	base
	Kind    string // "error" or "ok"
	Message string
	Note    string
	List    []scopeText
	Lines   []string
}

type scopeText struct{ Name, Text string }

type landingData struct {
	base
	Reconsent    bool
	SignIn       bool
	Operator     string
	UserName     string
	ProviderName string
	ProviderHost string
	Hashtags     []string
	Cadence      string
	Targets      []string
	Scopes       []scopeText
	Expected     string
	Expires      string
}

// render writes a page with the security headers.
func (s *Service) render(w http.ResponseWriter, status int, tmpl *template.Template, d pageData) {
	nonce := randomString(18)
	d.setNonce(nonce)
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		s.log.Error("render enrollment page", "page", tmpl.Name(), "err", err)
		b.Reset()
		_ = messageTmpl.Execute(&b, &messageData{base: base{Nonce: nonce, Title: reasons[reasonInternal].title},
			Kind: "error", Message: reasons[reasonInternal].msg})
		status = http.StatusInternalServerError
	}
	setSecurityHeaders(w.Header(), nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// setSecurityHeaders sets what every response of the handler carries
// (httpsec.SetPageHeaders: form-action 'self' only; the landing page's
// form leads to the same-origin continue page, not to the provider).
func setSecurityHeaders(h http.Header, nonce string) {
	httpsec.SetPageHeaders(h, nonce)
}

// scopeDescriptions explain the scopes tagwatch asks for.
var scopeDescriptions = map[string]string{
	"tweet.read":     "Read posts, to find the ones with your hashtags.",
	"users.read":     "Read your profile, to know the account is yours.",
	"offline.access": "Stay connected while you are away, until you revoke access.",
	"openid":         "Confirm who you are.",
	"offline_access": "Stay connected while you are away, until you revoke access.",
	"profile":        "See your name and username.",
	"email":          "See your email address.",
}

func scopeLine(s string) scopeText {
	if d, ok := scopeDescriptions[s]; ok {
		return scopeText{Name: s, Text: d}
	}
	return scopeText{Name: s, Text: "A permission your provider defines."}
}

// targetLine says where notifications go, through Config.TargetLabel:
// never a webhook's path or query, which may carry a secret.
func (s *Service) targetLine(t string) string {
	if t == "console:" {
		return "The tagwatch operator's console"
	}
	return s.cfg.TargetLabel(t)
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

const pageStyle = `
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
.tags{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 4px;padding:0;list-style:none}
.tags li{padding:4px 12px;border-radius:999px;background:var(--chip);color:var(--chip-ink);font-weight:600;font-size:15px}
dl{margin:0;border:1px solid var(--line);border-radius:12px;overflow:hidden}
dl div{padding:12px 14px;border-top:1px solid var(--line)}
dl div:first-child{border-top:0}
dt{font-weight:600;font-size:15px}
dd{margin:2px 0 0;color:var(--muted);font-size:14px}
ul.plain{margin:4px 0 16px;padding:0 0 0 20px}
ul.plain li{margin:0 0 4px}
form{margin:28px 0 0}
button{display:block;width:100%;padding:14px 18px;border:0;border-radius:12px;background:var(--accent);color:var(--accent-ink);font:inherit;font-size:17px;font-weight:700;cursor:pointer}
button:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
.fine{margin:14px 0 0;color:var(--muted);font-size:13px;text-align:center}
.badge{display:inline-flex;align-items:center;justify-content:center;width:44px;height:44px;margin:0 0 16px;border-radius:50%;font-size:22px;font-weight:800}
.badge.ok{background:color-mix(in srgb,var(--ok) 15%,transparent);color:var(--ok)}
.badge.error{background:color-mix(in srgb,var(--err) 15%,transparent);color:var(--err)}
`

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow">
<title>{{.Title}} · tagwatch</title><style nonce="{{.Nonce}}">` + pageStyle + `</style></head>
<body><main>
<p class="brand"><span>#</span> tagwatch</p>
`

const pageFoot = `</main></body></html>
`

var messageTmpl = template.Must(template.New("message").Parse(pageHead + `
<div class="badge {{.Kind}}" aria-hidden="true">{{if eq .Kind "ok"}}✓{{else}}!{{end}}</div>
<h1>{{.Title}}</h1>
<p class="lead">{{.Message}}</p>
{{if .List}}<h2>Not granted</h2><dl>{{range .List}}<div><dt>{{.Name}}</dt><dd>{{.Text}}</dd></div>{{end}}</dl>{{end}}
{{if .Lines}}<ul class="plain">{{range .Lines}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Note}}<p class="muted">{{.Note}}</p>{{end}}
` + pageFoot))

var landingTmpl = template.Must(template.New("landing").Parse(pageHead + `
{{if .Reconsent}}<h1>Renew tagwatch's access to your {{.ProviderName}} account</h1>
<p class="lead">{{.Operator}} asks you to allow tagwatch again, so that your watches resume where they stopped.</p>
{{else if .SignIn}}<h1>Sign in to tagwatch with your {{.ProviderName}} account</h1>
<p class="lead">{{.Operator}} invites you to use this account to sign in to your tagwatch page, where you see and steer your watches. tagwatch only learns who you are: it gets no access to your account.</p>
{{else}}<h1>Let tagwatch watch hashtags for you</h1>
<p class="lead">{{.Operator}} asks you to allow tagwatch to search {{.ProviderName}} on your behalf while you are away, and to tell you about new posts.</p>
{{end}}
{{if or .UserName .Expected}}<p class="muted">{{if .UserName}}For {{.UserName}}{{end}}{{if .Expected}}{{if .UserName}} · {{end}}sign in as {{.Expected}}{{end}}</p>{{end}}
{{if .Hashtags}}<h2>Hashtags</h2>
<ul class="tags">{{range .Hashtags}}<li>#{{.}}</li>{{end}}</ul>{{end}}
{{if or .Cadence .Targets}}<h2>What tagwatch will do</h2>
<dl>{{if .Cadence}}<div><dt>Search {{.Cadence}}</dt><dd>For new posts with these hashtags.</dd></div>{{end}}
{{range .Targets}}<div><dt>{{.}}</dt><dd>Where new posts are sent.</dd></div>{{end}}</dl>{{end}}
<h2>Permissions asked at {{.ProviderName}}</h2>
<dl>{{range .Scopes}}<div><dt>{{.Name}}</dt><dd>{{.Text}}</dd></div>{{end}}</dl>
<form method="post"><button type="submit">Continue to {{.ProviderName}}</button></form>
<p class="fine">You will sign in at {{.ProviderHost}}; tagwatch never sees your password.{{if not .SignIn}} You can revoke access there at any time.{{end}} This link works once, until {{.Expires}}.</p>
` + pageFoot))
