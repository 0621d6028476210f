package selfservice

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"tagwatch/vault/webpage"
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
	// reasonRecentDenied: the person declined the fresh sign-in a change
	// needs; their page session is untouched.
	reasonRecentDenied
	reasonProviderError
	reasonCodeRefused
	reasonProviderDown
	reasonIdentity
	reasonNotRecent
	reasonNoUser
	reasonSignInConflict
	reasonOtherAccount
)

// reasons are the refusals of the page (webpage.Refusal: status, log
// name, title, message, log level).
var reasons = webpage.Refusals[reason]{
	reasonInternal:            {Status: 500, Name: "internal", Title: "Something went wrong on our side", Message: "Nothing was changed. Please try again in a few minutes.", Level: slog.LevelError},
	reasonNotFound:            {Status: 404, Name: "not_found", Title: "Page not found", Message: "There is nothing at this address.", Level: slog.LevelDebug},
	reasonMethod:              {Status: 405, Name: "method", Title: "This page cannot be used that way", Message: "Use the buttons on your tagwatch page.", Level: slog.LevelDebug},
	reasonCrossSite:           {Status: 403, Name: "cross_site", Title: "Please use the buttons on your page", Message: "Another site tried to make this change for you, so nothing was changed.", Level: slog.LevelWarn},
	reasonBusy:                {Status: 503, Name: "busy", Title: "tagwatch is busy", Message: "Too many sign-ins are in progress. Please try again in a few minutes.", Level: slog.LevelWarn},
	reasonUnknownProvider:     {Status: 400, Name: "unknown_provider", Title: "You cannot sign in there", Message: "tagwatch does not sign people in with that provider. Choose one on the sign-in page.", Level: slog.LevelInfo},
	reasonProviderUnavailable: {Status: 503, Name: "provider_unavailable", Title: "Sign-in is not available right now", Message: "Nothing was changed. Please try again later.", Level: slog.LevelError},
	reasonFlowUnknown:         {Status: 400, Name: "flow_unknown", Title: "This sign-in has expired or was already completed", Message: "Nothing was changed. Open your tagwatch page again to sign in.", Level: slog.LevelWarn},
	reasonFlowBrowser:         {Status: 400, Name: "flow_browser", Title: "This sign-in was started in another browser", Message: "Nothing was changed. Open your tagwatch page in this browser and sign in again.", Level: slog.LevelWarn},
	reasonBadCallback:         {Status: 400, Name: "bad_callback", Title: "The answer from the sign-in page is incomplete", Message: "Nothing was changed. Open your tagwatch page again to sign in.", Level: slog.LevelWarn},
	reasonIssuer:              {Status: 400, Name: "issuer_mismatch", Title: "The answer did not come from the expected provider", Message: "Nothing was changed and nothing was sent anywhere. Open your tagwatch page again to sign in.", Level: slog.LevelWarn},
	reasonRecentDenied:        {Status: 403, Name: "access_denied", Title: "Nothing was changed", Message: "You did not sign in again, which this change needs. You are still signed in to your tagwatch page: go back to it to carry on.", Level: slog.LevelInfo},
	reasonDenied:              {Status: 403, Name: "access_denied", Title: "You did not sign in", Message: "Nothing was changed. Open your tagwatch page again when you want to sign in.", Level: slog.LevelInfo},
	reasonProviderError:       {Status: 400, Name: "provider_error", Title: "The provider could not complete the sign-in", Message: "Nothing was changed. Open your tagwatch page again to retry.", Level: slog.LevelWarn},
	reasonCodeRefused:         {Status: 400, Name: "code_refused", Title: "The sign-in could not be completed", Message: "The provider did not accept the answer it gave (it may have been used already). Nothing was changed. Open your tagwatch page again to sign in.", Level: slog.LevelWarn},
	reasonProviderDown:        {Status: 502, Name: "provider_down", Title: "The provider did not answer", Message: "Nothing was changed. Please try again in a few minutes.", Level: slog.LevelWarn},
	reasonIdentity:            {Status: 400, Name: "identity_unverified", Title: "Your sign-in could not be verified", Message: "The provider's proof of who you are did not check out, so you are not signed in. Open your tagwatch page again to sign in.", Level: slog.LevelWarn},
	reasonNotRecent:           {Status: 403, Name: "not_recent", Title: "Your sign-in was not recent enough", Message: "This change needs you to have signed in just now, and the provider said you signed in earlier. Nothing was changed. Try again from your tagwatch page.", Level: slog.LevelWarn},
	reasonNoUser:              {Status: 403, Name: "no_user", Title: "No tagwatch watches for this account", Message: "You signed in with an account tagwatch does not know. Sign in with the account you gave tagwatch access to, or ask whoever set up tagwatch for you for a sign-in link.", Level: slog.LevelInfo},
	reasonSignInConflict:      {Status: 409, Name: "sign_in_conflict", Title: "This account opens more than one person's page", Message: "tagwatch cannot tell whose page to open, so you are not signed in. Ask whoever set up tagwatch for you.", Level: slog.LevelWarn},
	reasonOtherAccount:        {Status: 403, Name: "other_account", Title: "You signed in with another account", Message: "This change needs you to sign in again with the account of your tagwatch page. Nothing was changed, and your page stays signed in as before.", Level: slog.LevelWarn},
}

// failure is why a request cannot go on: the reason the browser is told,
// and the cause for the log.
type failure struct {
	reason reason
	err    error
	attrs  []any // log attributes: user, provider
}

func (f *failure) Error() string { return reasons.Of(f.reason).ErrorText(f.err) }

func (f *failure) Unwrap() error { return f.err }

func refuse(r reason, err error) *failure { return &failure{reason: r, err: err} }

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
	t.Log(r.Context(), s.log, "account page request refused", append([]any{"method", r.Method, "path", r.URL.Path}, f.attrs...), f.err)
	s.render(w, t.Status, messageTmpl, s.withBack(t.Page()))
}

// base is what every page's data embeds; messageData and messageTmpl are
// the message page.
type (
	base        = webpage.Page
	messageData = webpage.Message
)

var messageTmpl = webpage.MessagePage

// withBack adds the link back to the page to d.
func (s *Service) withBack(d *messageData) *messageData {
	d.Back, d.BackText = s.prefix+"/", "Back to your tagwatch page"
	return d
}

// render writes a page (webpage.Write), or the internal error's page when
// its template fails.
func (s *Service) render(w http.ResponseWriter, status int, tmpl *template.Template, d webpage.Data) {
	if err := webpage.Write(w, status, tmpl, d); err != nil {
		s.log.Error("render account page", "page", tmpl.Name(), "err", err)
		reasons.Of(reasonInternal).Write(w)
	}
}

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

var signInTmpl = template.Must(webpage.Parse("signin", "", `
<h1>Sign in to your tagwatch page</h1>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
<p class="lead">See and steer the hashtags tagwatch watches for you.</p>
{{range .Buttons}}<form method="post" action="{{$.Action}}"><input type="hidden" name="provider" value="{{.Provider}}"><button type="submit">Sign in with {{.Label}}</button></form>
{{end}}
{{if .X}}<p class="muted">With X, you sign in at X every time your session here ends: X cannot confirm who you are without asking you. tagwatch only reads who you are there and keeps no access.</p>{{end}}
`))
