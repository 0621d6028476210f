package xsandbox

import (
	"bytes"
	"html/template"
	"net/http"
)

// maxSelectUsers is the most users the consent page lists in a select;
// beyond it the page shows a username field.
const maxSelectUsers = 50

const pageStyle = `
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f7f9f9;color:#0f1419;font:16px/1.4 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
.card{width:calc(100% - 32px);max-width:440px;margin:16px;padding:32px 28px;background:#fff;border-radius:16px;box-shadow:0 1px 3px rgba(15,20,25,.12),0 8px 28px rgba(15,20,25,.08)}
.logo{width:44px;height:44px;margin:0 auto 14px;border-radius:50%;background:#0f1419;color:#fff;display:flex;align-items:center;justify-content:center;font-weight:800;font-size:22px}
.tag{display:block;width:max-content;margin:0 auto 18px;padding:2px 10px;border-radius:999px;background:#fff4cc;color:#6b5500;font-size:12px;font-weight:700;letter-spacing:.04em;text-transform:uppercase}
h1{margin:0 0 6px;font-size:23px;text-align:center;line-height:1.25}
.sub{margin:0 0 22px;color:#536471;text-align:center;font-size:15px}
ul{list-style:none;margin:0 0 22px;padding:0;border:1px solid #eff3f4;border-radius:12px}
li{padding:11px 14px;border-bottom:1px solid #eff3f4;font-size:14px;color:#536471}
li:last-child{border-bottom:0}
li b{display:block;color:#0f1419;font-size:15px}
label{display:block;margin-bottom:6px;font-size:14px;font-weight:700}
select,input[type=text]{width:100%;margin-bottom:22px;padding:11px 12px;font-size:16px;color:#0f1419;background:#fff;border:1px solid #cfd9de;border-radius:8px}
.err{margin:0 0 16px;padding:10px 12px;border-radius:8px;background:#fdecee;color:#a4121f;font-size:14px}
.buttons{display:flex;flex-direction:column;gap:10px}
button{padding:12px 16px;font-size:16px;font-weight:700;border-radius:999px;cursor:pointer}
.allow{background:#0f1419;color:#fff;border:1px solid #0f1419}
.deny{background:#fff;color:#0f1419;border:1px solid #cfd9de}
.foot{margin:20px 0 0;color:#536471;font-size:12px;text-align:center}
.who{margin:0 0 22px;padding:11px 14px;border:1px solid #eff3f4;border-radius:12px;font-size:15px;text-align:center}
.switch{margin:16px 0 0;color:#536471;font-size:14px;text-align:center}
.link{padding:0;border:0;background:none;color:#1d9bf0;font:inherit;font-weight:700;text-decoration:underline;cursor:pointer}
@media (min-width:520px){.buttons{flex-direction:row-reverse}.buttons button{flex:1}}
`

var consentTmpl = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Authorize {{.App}} · X sandbox</title><style>` + pageStyle + `</style></head>
<body><main class="card">
<div class="logo" aria-hidden="true">𝕏</div>
<span class="tag">Sandbox</span>
<h1>{{.App}} wants to access your X account</h1>
<p class="sub">It will be able to:</p>
<ul>{{range .Scopes}}<li><b>{{.Name}}</b>{{.Text}}</li>{{end}}</ul>
<form method="post" action="/i/oauth2/authorize">
<input type="hidden" name="request" value="{{.Request}}">
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
{{if .SignedIn}}<p class="who">Signed in as <b>{{.SignedIn.Name}}</b> (@{{.SignedIn.Username}})</p>
<input type="hidden" name="username" value="{{.SignedIn.Username}}">
{{else if .Users}}<label for="username">Sign in as</label>
<select id="username" name="username" required><option value=""{{if not .Username}} selected{{end}} disabled>Choose a sandbox account</option>{{range .Users}}<option value="{{.Username}}"{{if eq .Username $.Username}} selected{{end}}>{{.Name}} (@{{.Username}})</option>{{end}}</select>
{{else}}<label for="username">Sandbox username</label>
<input id="username" type="text" name="username" value="{{.Username}}" autocomplete="username" autocapitalize="none" spellcheck="false" required>
{{end}}<div class="buttons">
<button class="allow" type="submit" name="action" value="authorize">Authorize app</button>
<button class="deny" type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</div>{{if .SignedIn}}<p class="switch">Not {{.SignedIn.Name}}? <button class="link" type="submit" name="action" value="signout" formnovalidate>Sign out</button> and choose another account.</p>{{end}}</form>
<p class="foot">This is the tagwatch X sandbox, not x.com. No real account is involved.</p>
</main></body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Something went wrong · X sandbox</title><style>` + pageStyle + `</style></head>
<body><main class="card"><div class="logo" aria-hidden="true">𝕏</div>
<h1>Something went wrong</h1><p class="sub">{{.}}</p>
<p class="foot">tagwatch X sandbox</p></main></body></html>
`))

type scopeLine struct{ Name, Text string }

type consentData struct {
	App, Request, Username, Error string
	Scopes                        []scopeLine
	Users                         []User
	// SignedIn is the account this browser's sandbox session is signed in
	// as (after a consent in it), as X's own sign-in session: the page
	// then asks that account and offers to sign out.
	SignedIn *User
}

// renderConsent shows the consent page of request reqID. The account is
// the session's signed-in one, else the user picks it: nothing is
// preselected (username is what the user picked before an error), so a
// second person's link in the same browser is never answered as the
// first person without them choosing so.
func (s *Server) renderConsent(w http.ResponseWriter, status int, reqID string, p authParams, session, username, msg string) {
	d := consentData{App: s.cfg.AppName, Request: reqID, Username: username, Error: msg}
	for _, sc := range p.scopes {
		d.Scopes = append(d.Scopes, scopeLine{sc, knownScopes[sc]})
	}
	if u, ok := s.signedIn(session); ok {
		d.SignedIn = &u
	}
	users, total := s.store.userList(maxSelectUsers + 1)
	if total > 0 && total <= maxSelectUsers {
		d.Users = users
	}
	var b bytes.Buffer
	if err := consentTmpl.Execute(&b, d); err != nil {
		s.log.Error("render consent page", "err", err)
		errorPage(w, http.StatusInternalServerError, "The page could not be shown.")
		return
	}
	writeHTML(w, status, b.Bytes())
}

// maxSessions bounds the signed-in sessions the sandbox remembers; past
// it the oldest are forgotten (their browsers are asked to pick again).
const maxSessions = 4096

// signedIn returns the account session is signed in as.
func (s *Server) signedIn(session string) (User, bool) {
	if session == "" {
		return User{}, false
	}
	s.mu.Lock()
	id, ok := s.sessions[session]
	s.mu.Unlock()
	if !ok {
		return User{}, false
	}
	return s.store.user(id)
}

// signInLocked records that session signed in as userID. s.mu must be held.
func (s *Server) signInLocked(session, userID string) {
	if _, ok := s.sessions[session]; !ok && len(s.sessions) >= maxSessions {
		for k := range s.sessions { // any one: a sandbox, not a login service
			delete(s.sessions, k)
			break
		}
	}
	s.sessions[session] = userID
}

// errorPage shows a short message to a browser.
func errorPage(w http.ResponseWriter, status int, msg string) {
	var b bytes.Buffer
	_ = errorTmpl.Execute(&b, msg) // a constant template over a string cannot fail
	writeHTML(w, status, b.Bytes())
}

func writeHTML(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
