package enroll

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/webpage"
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

// reasons are the refusals of the consent pages (webpage.Refusal: status,
// log name, title, message, log level).
var reasons = webpage.Refusals[reason]{
	reasonInternal:            {Status: 500, Name: "internal", Title: "Something went wrong on our side", Message: "Nothing was changed. Please try again in a few minutes; if it keeps happening, tell whoever sent you the link.", Level: slog.LevelError},
	reasonNotFound:            {Status: 404, Name: "not_found", Title: "Page not found", Message: "There is nothing at this address.", Level: slog.LevelDebug},
	reasonMethod:              {Status: 405, Name: "method", Title: "This page cannot be used that way", Message: "Open the link from your message in a browser.", Level: slog.LevelDebug},
	reasonLinkUnknown:         {Status: 404, Name: "link_unknown", Title: "This link is not valid", Message: "Check that you opened the whole link from your message. If it still does not work, ask whoever sent it for a new one.", Level: slog.LevelInfo},
	reasonLinkExpired:         {Status: 410, Name: "link_expired", Title: "This link has expired", Message: "Links work for a limited time. Ask whoever sent it for a new one.", Level: slog.LevelInfo},
	reasonLinkUsed:            {Status: 410, Name: "link_used", Title: "This link was already used", Message: "Each link works only once. If you did not use it yourself, tell whoever sent it to you.", Level: slog.LevelInfo},
	reasonLinkCanceled:        {Status: 410, Name: "link_canceled", Title: "This link was canceled", Message: "Whoever sent it has withdrawn it. Ask them for a new one if you still need it.", Level: slog.LevelInfo},
	reasonProviderUnavailable: {Status: 503, Name: "provider_unavailable", Title: "Sign-in is not available right now", Message: "Nothing was changed. Please try again later with the same link.", Level: slog.LevelError},
	reasonCrossSite:           {Status: 403, Name: "cross_site", Title: "Please use the button on the page", Message: "Another site tried to start this sign-in. Open the link from your message and press the button yourself.", Level: slog.LevelWarn},
	reasonBusy:                {Status: 503, Name: "busy", Title: "tagwatch is busy", Message: "Too many sign-ins are in progress. Please try again in a few minutes with the same link.", Level: slog.LevelWarn},
	reasonFlowUnknown:         {Status: 400, Name: "flow_unknown", Title: "This sign-in has expired or was already completed", Message: "Nothing was changed. Open the link from your message again and press the button to start over.", Level: slog.LevelWarn},
	reasonFlowBrowser:         {Status: 400, Name: "flow_browser", Title: "This sign-in was started in another browser", Message: "Nothing was changed. Open the link from your message in this browser and press the button again.", Level: slog.LevelWarn},
	reasonBadCallback:         {Status: 400, Name: "bad_callback", Title: "The answer from the sign-in page is incomplete", Message: "Nothing was changed. Open the link from your message again and press the button to start over.", Level: slog.LevelWarn},
	reasonIssuer:              {Status: 400, Name: "issuer_mismatch", Title: "The answer did not come from the expected provider", Message: "Nothing was changed and nothing was sent anywhere. Open the link from your message again to start over.", Level: slog.LevelWarn},
	reasonDenied:              {Status: 403, Name: "access_denied", Title: "You did not allow access", Message: "Nothing was changed. If you change your mind, open the link from your message again while it is valid.", Level: slog.LevelInfo},
	reasonProviderError:       {Status: 400, Name: "provider_error", Title: "The provider could not complete the sign-in", Message: "Nothing was changed. Open the link from your message again to retry.", Level: slog.LevelWarn},
	reasonCodeRefused:         {Status: 400, Name: "code_refused", Title: "The sign-in could not be completed", Message: "The provider did not accept the answer it gave (it may have been used already). Nothing was changed. Open the link from your message again to start over.", Level: slog.LevelWarn},
	reasonProviderDown:        {Status: 502, Name: "provider_down", Title: "The provider did not answer", Message: "Nothing was changed. Please try again in a few minutes with the same link.", Level: slog.LevelWarn},
	reasonIdentity:            {Status: 400, Name: "identity_unverified", Title: "Your sign-in could not be verified", Message: "The provider's proof of who you are did not check out, so nothing was stored. Open the link from your message again to start over.", Level: slog.LevelWarn},
	reasonNoOffline:           {Status: 403, Name: "no_offline_access", Title: "The provider did not grant offline access", Message: "tagwatch needs it to watch hashtags while you are away. Nothing was stored. Open the link from your message again and allow every permission asked for.", Level: slog.LevelInfo},
	reasonWrongAccount:        {Status: 403, Name: "wrong_account", Title: "You signed in with a different account", Message: "This link is for another account, so nothing was stored. Sign out at the provider, open the link from your message again and sign in with the account it was meant for.", Level: slog.LevelWarn},
	reasonAccountSwitch:       {Status: 403, Name: "account_switch", Title: "tagwatch already works for you with another account", Message: "You signed in with another account than the one tagwatch already uses for you at this provider, so nothing was changed and your watches keep running on that account. To keep it, open the link again and sign in with that account. To move to the new one, ask whoever sent you the link for a link made for that account.", Level: slog.LevelWarn},
	reasonWatchRefused:        {Status: 409, Name: "watch_refused", Title: "This link's watch is no longer accepted", Message: "The settings of the watch this link was made for are no longer accepted by tagwatch (its configuration changed after the link was sent), so nothing was changed and nothing was sent to the provider. Ask whoever sent you the link for a new one.", Level: slog.LevelWarn},
	reasonSignInTaken:         {Status: 409, Name: "sign_in_taken", Title: "This account already signs in someone else", Message: "The account you signed in with already opens another person's tagwatch page, so nothing was changed. Sign out at the provider, open the link from your message again and sign in with your own account, or ask whoever sent you the link.", Level: slog.LevelWarn},
	reasonScopes:              {Status: 403, Name: "scopes_missing", Title: "Some permissions were not granted", Message: "tagwatch cannot work without them, so nothing was stored. Open the link from your message again and allow every permission asked for.", Level: slog.LevelInfo},
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

func (f *failure) Error() string { return reasons.Of(f.reason).ErrorText(f.err) }

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
	return refuse(webpage.ProviderReason(err, op, reasonProviderDown, reasonProviderUnavailable), err)
}

// flowFailure maps a state the flow store refused to its page.
func flowFailure(err error) *failure {
	return refuse(webpage.FlowReason(err, reasonFlowUnknown, reasonFlowBrowser, reasonInternal), err)
}

// fail is the one place that turns an error into a status, a page and a
// log line. Browsers get a short message; details go to the log.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var f *failure
	if !errors.As(err, &f) {
		f = refuse(reasonInternal, err)
	}
	t := reasons.Of(f.reason)
	t.Log(r.Context(), s.log, "enrollment request refused",
		append([]any{"status", t.Status, "method", r.Method, "path", routeName(r)}, f.attrs...), f.err)
	d := t.Page()
	if f.reason == reasonDenied && !f.until.IsZero() {
		d.Note = "The link works until " + formatTime(f.until) + "."
	}
	if f.reason == reasonWrongAccount && f.account != "" {
		d.Message = "This link is for " + f.account + ", so nothing was stored. Sign out at the provider, open the link from your message again and sign in as " + f.account + "."
	}
	if f.reason == reasonScopes {
		d.ListTitle = "Not granted"
		for _, m := range f.missing {
			d.List = append(d.List, scopeLine(m))
		}
	}
	if f.reason == reasonMethod {
		w.Header().Set("Allow", "GET, POST")
	}
	s.render(w, t.Status, webpage.MessagePage, d)
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

type landingData struct {
	webpage.Page
	Reconsent bool
	// Waiting: some of the user's watches at the provider wait for this
	// consent (a re-consent resumes them).
	Waiting      bool
	SignIn       bool
	Operator     string
	UserName     string
	ProviderName string
	ProviderHost string
	Hashtags     []string
	Cadence      string
	Targets      []string
	Scopes       []webpage.Term
	Expected     string
	Expires      string
}

// render writes a page (webpage.Write), or the internal error's page when
// its template fails.
func (s *Service) render(w http.ResponseWriter, status int, tmpl *template.Template, d webpage.Data) {
	if err := webpage.Write(w, status, tmpl, d); err != nil {
		s.log.Error("render enrollment page", "page", tmpl.Name(), "err", err)
		reasons.Of(reasonInternal).Write(w)
	}
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

func scopeLine(s string) webpage.Term {
	if d, ok := scopeDescriptions[s]; ok {
		return webpage.Term{Name: s, Text: d}
	}
	return webpage.Term{Name: s, Text: "A permission your provider defines."}
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

var landingTmpl = template.Must(webpage.Parse("landing", "", `
{{if .Reconsent}}<h1>Renew tagwatch's access to your {{.ProviderName}} account</h1>
<p class="lead">{{.Operator}} asks you to allow tagwatch again{{if .Waiting}}, so that your watches resume where they stopped{{end}}.</p>
{{else if .SignIn}}<h1>Sign in to tagwatch with your {{.ProviderName}} account</h1>
<p class="lead">{{.Operator}} invites you to use this account to sign in to your tagwatch page, where you see and steer your watches. tagwatch only learns who you are: it gets no access to your account.</p>
{{else}}<h1>Let tagwatch watch hashtags for you</h1>
<p class="lead">{{.Operator}} asks you to allow tagwatch to search {{.ProviderName}} on your behalf while you are away, and to tell you about new posts.</p>
{{end}}
{{if or .UserName .Expected}}<p class="muted">{{if .UserName}}For {{.UserName}}{{end}}{{if .Expected}}{{if .UserName}} · {{end}}sign in as {{.Expected}}{{end}}</p>{{end}}
{{if .Hashtags}}<h2>Hashtags</h2>
<ul class="tags">{{range .Hashtags}}<li>#{{.}}</li>{{end}}</ul>{{end}}
{{if or .Cadence .Targets}}<h2>What tagwatch will do</h2>
<dl class="rows">{{if .Cadence}}<div><dt>Search {{.Cadence}}</dt><dd>For new posts with these hashtags.</dd></div>{{end}}
{{range .Targets}}<div><dt>{{.}}</dt><dd>Where new posts are sent.</dd></div>{{end}}</dl>{{end}}
<h2>Permissions asked at {{.ProviderName}}</h2>
<dl class="rows">{{range .Scopes}}<div><dt>{{.Name}}</dt><dd>{{.Text}}</dd></div>{{end}}</dl>
<form method="post"><button type="submit">Continue to {{.ProviderName}}</button></form>
<p class="fine">You will sign in at {{.ProviderHost}}; tagwatch never sees your password.{{if not .SignIn}} You can revoke access there at any time.{{end}} This link works once, until {{.Expires}}.</p>
`))
