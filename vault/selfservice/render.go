package selfservice

import (
	"bytes"
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"tagwatch/vault/provider"
)

// reason is what a browser is told when a request cannot go on.
type reason int

const (
	reasonInternal reason = iota
	reasonNotFound
	reasonMethod
	reasonCrossSite
	reasonBusy
	reasonUnknownProvider
	reasonProviderUnavailable
	reasonFlowUnknown
	reasonFlowBrowser
	reasonBadCallback
	reasonIssuer
	reasonDenied
	reasonProviderError
	reasonCodeRefused
	reasonProviderDown
	reasonIdentity
	reasonNotRecent
	reasonNoUser
	reasonSignInConflict
	reasonOtherAccount
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
	reasonInternal:            {500, "internal", "Something went wrong on our side", "Nothing was changed. Please try again in a few minutes.", slog.LevelError},
	reasonNotFound:            {404, "not_found", "Page not found", "There is nothing at this address.", slog.LevelDebug},
	reasonMethod:              {405, "method", "This page cannot be used that way", "Use the buttons on your tagwatch page.", slog.LevelDebug},
	reasonCrossSite:           {403, "cross_site", "Please use the buttons on your page", "Another site tried to make this change for you, so nothing was changed.", slog.LevelWarn},
	reasonBusy:                {503, "busy", "tagwatch is busy", "Too many sign-ins are in progress. Please try again in a few minutes.", slog.LevelWarn},
	reasonUnknownProvider:     {400, "unknown_provider", "You cannot sign in there", "tagwatch does not sign people in with that provider. Choose one on the sign-in page.", slog.LevelInfo},
	reasonProviderUnavailable: {503, "provider_unavailable", "Sign-in is not available right now", "Nothing was changed. Please try again later.", slog.LevelError},
	reasonFlowUnknown:         {400, "flow_unknown", "This sign-in has expired or was already completed", "Nothing was changed. Open your tagwatch page again to sign in.", slog.LevelWarn},
	reasonFlowBrowser:         {400, "flow_browser", "This sign-in was started in another browser", "Nothing was changed. Open your tagwatch page in this browser and sign in again.", slog.LevelWarn},
	reasonBadCallback:         {400, "bad_callback", "The answer from the sign-in page is incomplete", "Nothing was changed. Open your tagwatch page again to sign in.", slog.LevelWarn},
	reasonIssuer:              {400, "issuer_mismatch", "The answer did not come from the expected provider", "Nothing was changed and nothing was sent anywhere. Open your tagwatch page again to sign in.", slog.LevelWarn},
	reasonDenied:              {403, "access_denied", "You did not sign in", "Nothing was changed. Open your tagwatch page again when you want to sign in.", slog.LevelInfo},
	reasonProviderError:       {400, "provider_error", "The provider could not complete the sign-in", "Nothing was changed. Open your tagwatch page again to retry.", slog.LevelWarn},
	reasonCodeRefused:         {400, "code_refused", "The sign-in could not be completed", "The provider did not accept the answer it gave (it may have been used already). Nothing was changed. Open your tagwatch page again to sign in.", slog.LevelWarn},
	reasonProviderDown:        {502, "provider_down", "The provider did not answer", "Nothing was changed. Please try again in a few minutes.", slog.LevelWarn},
	reasonIdentity:            {400, "identity_unverified", "Your sign-in could not be verified", "The provider's proof of who you are did not check out, so you are not signed in. Open your tagwatch page again to sign in.", slog.LevelWarn},
	reasonNotRecent:           {403, "not_recent", "Your sign-in was not recent enough", "This change needs you to have signed in just now, and the provider said you signed in earlier. Nothing was changed. Try again from your tagwatch page.", slog.LevelWarn},
	reasonNoUser:              {403, "no_user", "No tagwatch watches for this account", "You signed in with an account tagwatch does not know. Sign in with the account you gave tagwatch access to, or ask whoever set up tagwatch for you for a sign-in link.", slog.LevelInfo},
	reasonSignInConflict:      {409, "sign_in_conflict", "This account opens more than one person's page", "tagwatch cannot tell whose page to open, so you are not signed in. Ask whoever set up tagwatch for you.", slog.LevelWarn},
	reasonOtherAccount:        {403, "other_account", "You signed in with another account", "This change needs you to sign in again with the account of your tagwatch page. Nothing was changed, and your page stays signed in as before.", slog.LevelWarn},
}

// failure is why a request cannot go on: the reason the browser is told,
// and the cause for the log.
type failure struct {
	reason reason
	err    error
	attrs  []any // log attributes: user, provider
}

func (f *failure) Error() string {
	if f.err != nil {
		return reasons[f.reason].name + ": " + f.err.Error()
	}
	return reasons[f.reason].name
}

func (f *failure) Unwrap() error { return f.err }

func refuse(r reason, err error) *failure { return &failure{reason: r, err: err} }

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
	attrs := append([]any{"reason", t.name, "method", r.Method, "path", r.URL.Path}, f.attrs...)
	if f.err != nil {
		attrs = append(attrs, "err", f.err.Error())
	}
	s.log.Log(r.Context(), t.level, "account page request refused", attrs...)
	d := &messageData{Kind: "error", Message: t.msg, Home: s.prefix + "/"}
	d.Title = t.title
	s.render(w, t.status, messageTmpl, d)
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
	// Home, when set, is a link back to the page.
	Home string
}

// render writes a page with the security headers.
func (s *Service) render(w http.ResponseWriter, status int, tmpl *template.Template, d pageData) {
	nonce := randomString(18)
	d.setNonce(nonce)
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		s.log.Error("render account page", "page", tmpl.Name(), "err", err)
		b.Reset()
		_ = messageTmpl.Execute(&b, &messageData{base: base{Nonce: nonce, Title: reasons[reasonInternal].title},
			Kind: "error", Message: reasons[reasonInternal].msg})
		status = http.StatusInternalServerError
	}
	s.setHeaders(w.Header(), nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// pageStyle is the consent pages' (vault/enroll), with what the account
// page adds: inline forms and secondary buttons.
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
p{margin:0 0 12px}
.lead{font-size:17px;color:var(--ink)}
.muted{color:var(--muted);font-size:14px}
.notice{padding:10px 14px;border-radius:12px;background:var(--chip);color:var(--chip-ink)}
form{margin:16px 0 0}
button{display:block;width:100%;padding:14px 18px;border:0;border-radius:12px;background:var(--accent);color:var(--accent-ink);font:inherit;font-size:17px;font-weight:700;cursor:pointer}
button.secondary{background:transparent;color:var(--ink);border:1px solid var(--line);font-size:15px;font-weight:600;padding:10px 14px}
button:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
a{color:var(--accent)}
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
{{if .Note}}<p class="muted">{{.Note}}</p>{{end}}
{{if .Home}}<p><a href="{{.Home}}">Back to your tagwatch page</a></p>{{end}}
` + pageFoot))

// signInData is the sign-in page: one button per provider.
type signInData struct {
	base
	Notice  string
	Action  string
	Buttons []signInButton
	// X says that X is among the providers (its note is shown).
	X bool
}

type signInButton struct{ Provider, Label string }

var signInTmpl = template.Must(template.New("signin").Parse(pageHead + `
<h1>Sign in to your tagwatch page</h1>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
<p class="lead">See and steer the hashtags tagwatch watches for you.</p>
{{range .Buttons}}<form method="post" action="{{$.Action}}"><input type="hidden" name="provider" value="{{.Provider}}"><button type="submit">Sign in with {{.Label}}</button></form>
{{end}}
{{if .X}}<p class="muted">With X, you sign in at X every time your session here ends: X cannot confirm who you are without asking you. tagwatch only reads who you are there and keeps no access.</p>{{end}}
` + pageFoot))
