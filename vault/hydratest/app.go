package hydratest

import (
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// LoginMode says how the login app answers Hydra's login requests.
type LoginMode int

const (
	// LoginAuto accepts every login request at once, without a page, and
	// asks Hydra to remember neither the login nor the consent: every
	// authorization request signs in afresh, and prompt=none always ends in
	// login_required. The default (what enrollment tests want).
	LoginAuto LoginMode = iota
	// LoginRemember accepts every login request at once, without a page,
	// and asks Hydra to remember the login and the consent for
	// Options.RememberFor, as LoginInteractive does: the flows of a test
	// with an HTTP client (Browse) and a cookie jar, with silent renewal.
	LoginRemember
	// LoginInteractive is a provider with a person in front of it. When
	// Hydra has no live session for the browser (the login request's skip
	// is false: a first sign-in, prompt=login, an exceeded max_age), the app
	// shows an HTML login page whose form (button LoginButton, "Sign in as
	// <subject>") posts back to the app; the post accepts the login with
	// remember=true for Options.RememberFor, so that Hydra sets its session
	// cookie. When Hydra has a live session (skip is true) the app accepts
	// at once without a page: the silent path prompt=none takes. Consent is
	// never a page: it is accepted at once and remembered, and a remembered
	// consent (skip) is accepted again at once.
	LoginInteractive
)

// LoginButton is a CSS selector for the submit button of the login page
// (LoginInteractive), for a browser test to click.
const LoginButton = "#signin"

// Stats counts what the provider saw: at the authorization endpoint, in
// the login, consent and logout apps. Every map is non-nil.
type Stats struct {
	// Authorizations counts the authorization requests browsers sent to
	// the authorization endpoint, by their prompt parameter as sent (""
	// when absent, "login consent" for two values). Hydra's own returns to
	// the endpoint from the login and consent apps (login_verifier,
	// consent_verifier) are not counted. A prompt=none request that Hydra
	// answers with login_required is counted here and nowhere else.
	Authorizations map[string]int
	// LoginRequests counts the login requests the login app received, by
	// the authorization request's prompt and Hydra's skip flag (skip: Hydra
	// holds a live, remembered login session for the browser).
	LoginRequests map[LoginRequestKind]int
	// LoginPagesShown counts login pages rendered (LoginInteractive,
	// skip=false); LoginPagesSubmitted the posts of their form.
	LoginPagesShown, LoginPagesSubmitted int
	// ConsentRequests counts the consent requests the consent app
	// received, by Hydra's skip flag (skip: a remembered consent covers the
	// requested scopes).
	ConsentRequests map[bool]int
	// Logouts counts the logout requests the logout app accepted
	// (RP-initiated logout at /oauth2/sessions/logout).
	Logouts int
}

// LoginRequestKind classifies a login request: the authorization
// request's prompt and Hydra's skip flag.
type LoginRequestKind struct {
	Prompt string
	Skip   bool
}

func newStats() Stats {
	return Stats{
		Authorizations:  map[string]int{},
		LoginRequests:   map[LoginRequestKind]int{},
		ConsentRequests: map[bool]int{},
	}
}

func (s Stats) clone() Stats {
	c := s
	c.Authorizations = maps.Clone(s.Authorizations)
	c.LoginRequests = maps.Clone(s.LoginRequests)
	c.ConsentRequests = maps.Clone(s.ConsentRequests)
	return c
}

// SetSubject changes the subject the login app logs in.
func (h *Hydra) SetSubject(subject string) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.subject = subject
}

// SetConsentScopes changes the scopes the consent app grants (nil: every
// requested scope).
func (h *Hydra) SetConsentScopes(scopes []string) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.scopes = slices.Clone(scopes)
}

// SetDeny makes the consent app refuse (true) or accept (false) consent.
func (h *Hydra) SetDeny(deny bool) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.deny = deny
}

// SetIDTokenClaims changes the extra claims put into ID tokens.
func (h *Hydra) SetIDTokenClaims(claims map[string]any) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.claims = claims
}

// SetLoginMode changes how the login app answers from the next login
// request on. Sessions Hydra already remembers stay until they end.
func (h *Hydra) SetLoginMode(m LoginMode) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.mode = m
}

// Counts returns how many login and consent requests the app has answered
// (skipped ones included) since the start or the last ResetStats.
func (h *Hydra) Counts() (logins, consents int) {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	return h.app.logins, h.app.consents
}

// Stats returns a copy of the counters since the start or the last
// ResetStats.
func (h *Hydra) Stats() Stats {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	return h.app.stats.clone()
}

// ResetStats sets every counter (Stats and Counts) to zero.
func (h *Hydra) ResetStats() {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	h.app.stats = newStats()
	h.app.logins, h.app.consents = 0, 0
}

// SessionID returns the id of the newest login session the login app
// opened for subject (a login it accepted with skip=false): the sid Hydra
// puts in that session's ID tokens and logout tokens, and the one
// EndSession takes. Empty when there is none. Hydra opens a new session,
// with a new sid, for every login that is not skipped, prompt=login and an
// exceeded max_age included.
func (h *Hydra) SessionID(subject string) string {
	h.app.mu.Lock()
	defer h.app.mu.Unlock()
	return h.app.sids[subject]
}

// countAuthorization records an authorization request that reached the
// front door.
func (a *app) countAuthorization(q url.Values) {
	if q.Has("login_verifier") || q.Has("consent_verifier") {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.Authorizations[q.Get("prompt")]++
}

// app is the provider's login, consent and logout UI, answering through
// Hydra's admin API as configured by the Set... switches.
type app struct {
	mu          sync.Mutex
	subject     string
	scopes      []string // nil: grant all requested
	deny        bool
	claims      map[string]any
	mode        LoginMode
	rememberFor time.Duration
	logins      int
	consents    int
	stats       Stats
	sids        map[string]string // subject -> newest session id
	adminURL    string
	http        *http.Client
}

func newApp(opts Options) *app {
	return &app{
		subject:     orDefault(opts.Subject, "user-1"),
		scopes:      slices.Clone(opts.ConsentScopes),
		deny:        opts.Deny,
		claims:      opts.IDTokenClaims,
		mode:        opts.Login,
		rememberFor: durationOrDefault(opts.RememberFor, time.Hour),
		stats:       newStats(),
		sids:        map[string]string{},
	}
}

func (a *app) setAdmin(adminURL string, c *http.Client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.adminURL, a.http = adminURL, c
}

// loginRequest is the part of Hydra's login request the app reads.
type loginRequest struct {
	Skip       bool   `json:"skip"`
	Subject    string `json:"subject"`
	SessionID  string `json:"session_id"`
	RequestURL string `json:"request_url"`
	Client     struct {
		ID   string `json:"client_id"`
		Name string `json:"client_name"`
	} `json:"client"`
}

// prompt returns the prompt parameter of the authorization request behind
// the login request.
func (r *loginRequest) prompt() string {
	u, err := url.Parse(r.RequestURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("prompt")
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – test provider</title>
</head>
<body>
<main>
<h1>Test provider</h1>
<p>{{.Client}} asks you to sign in.</p>
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="{{.Challenge}}">
<button type="submit" id="signin">Sign in as {{.Subject}}</button>
</form>
</main>
</body>
</html>
`))

var signedOutPage = []byte(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Signed out – test provider</title></head>
<body><main><h1>Test provider</h1><p>You are signed out.</p></main></body>
</html>
`)

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	adminURL, c := a.adminURL, a.http
	a.mu.Unlock()
	if c == nil {
		http.Error(w, "hydratest: hydra not ready", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	var (
		redirect string
		err      error
	)
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodGet:
		var page *loginPageData
		redirect, page, err = a.login(c, adminURL, r.URL.Query().Get("login_challenge"))
		if err == nil && page != nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if err := loginPage.Execute(w, page); err != nil {
				http.Error(w, "hydratest: "+err.Error(), http.StatusInternalServerError)
			}
			return
		}
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		redirect, err = a.submitLogin(c, adminURL, r.PostFormValue("login_challenge"))
		if err == nil {
			// 303: the browser follows a form post with a GET.
			http.Redirect(w, r, redirect, http.StatusSeeOther)
			return
		}
	case r.URL.Path == "/consent":
		redirect, err = a.consent(c, adminURL, r.URL.Query().Get("consent_challenge"))
	case r.URL.Path == "/logout":
		redirect, err = a.logout(c, adminURL, r.URL.Query().Get("logout_challenge"))
	case r.URL.Path == "/signed-out":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(signedOutPage)
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "hydratest: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, redirect, http.StatusFound)
}

type loginPageData struct {
	Challenge, Client, Subject string
}

// login answers Hydra's redirect to the login app: a redirect back to
// Hydra, or (LoginInteractive, skip=false) the login page to show.
func (a *app) login(c *http.Client, adminURL, challenge string) (string, *loginPageData, error) {
	q := "?" + url.Values{"login_challenge": {challenge}}.Encode()
	var req loginRequest
	if err := adminCall(c, adminURL, http.MethodGet, "/admin/oauth2/auth/requests/login"+q, nil, "", http.StatusOK, &req); err != nil {
		return "", nil, err
	}
	a.mu.Lock()
	subject, mode, rememberFor := a.subject, a.mode, a.rememberFor
	a.logins++
	a.stats.LoginRequests[LoginRequestKind{Prompt: req.prompt(), Skip: req.Skip}]++
	if mode == LoginInteractive && !req.Skip {
		a.stats.LoginPagesShown++
	}
	a.mu.Unlock()

	if req.Skip {
		// Hydra remembers an authenticated session: it must be accepted
		// with the same subject (Hydra then keeps remember as it was).
		redirect, err := a.acceptLogin(c, adminURL, q, &req, req.Subject, false, 0)
		return redirect, nil, err
	}
	switch mode {
	case LoginInteractive:
		client := req.Client.Name
		if client == "" {
			client = req.Client.ID
		}
		return "", &loginPageData{Challenge: challenge, Client: client, Subject: subject}, nil
	case LoginRemember:
		redirect, err := a.acceptLogin(c, adminURL, q, &req, subject, true, rememberFor)
		return redirect, nil, err
	default:
		redirect, err := a.acceptLogin(c, adminURL, q, &req, subject, false, 0)
		return redirect, nil, err
	}
}

// submitLogin answers the post of the login page: the person signs in.
func (a *app) submitLogin(c *http.Client, adminURL, challenge string) (string, error) {
	q := "?" + url.Values{"login_challenge": {challenge}}.Encode()
	var req loginRequest
	if err := adminCall(c, adminURL, http.MethodGet, "/admin/oauth2/auth/requests/login"+q, nil, "", http.StatusOK, &req); err != nil {
		return "", err
	}
	a.mu.Lock()
	subject, rememberFor := a.subject, a.rememberFor
	a.stats.LoginPagesSubmitted++
	a.mu.Unlock()
	if req.Skip {
		subject = req.Subject
	}
	return a.acceptLogin(c, adminURL, q, &req, subject, true, rememberFor)
}

func (a *app) acceptLogin(c *http.Client, adminURL, q string, req *loginRequest, subject string, remember bool, rememberFor time.Duration) (string, error) {
	body := map[string]any{"subject": subject, "remember": remember}
	if remember {
		body["remember_for"] = int(rememberFor / time.Second)
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := adminCall(c, adminURL, http.MethodPut, "/admin/oauth2/auth/requests/login/accept"+q,
		mustJSON(body), "application/json", http.StatusOK, &out); err != nil {
		return "", err
	}
	if !req.Skip && req.SessionID != "" {
		a.mu.Lock()
		a.sids[subject] = req.SessionID
		a.mu.Unlock()
	}
	return out.RedirectTo, nil
}

func (a *app) consent(c *http.Client, adminURL, challenge string) (string, error) {
	q := "?" + url.Values{"consent_challenge": {challenge}}.Encode()
	var req struct {
		Skip              bool     `json:"skip"`
		RequestedScope    []string `json:"requested_scope"`
		RequestedAudience []string `json:"requested_access_token_audience"`
	}
	if err := adminCall(c, adminURL, http.MethodGet, "/admin/oauth2/auth/requests/consent"+q, nil, "", http.StatusOK, &req); err != nil {
		return "", err
	}
	a.mu.Lock()
	deny, allowed, claims, mode, rememberFor := a.deny, a.scopes, a.claims, a.mode, a.rememberFor
	a.consents++
	a.stats.ConsentRequests[req.Skip]++
	a.mu.Unlock()

	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if deny {
		body := map[string]any{
			"error":             "access_denied",
			"error_description": "The resource owner denied the request",
			"status_code":       http.StatusForbidden,
		}
		err := adminCall(c, adminURL, http.MethodPut, "/admin/oauth2/auth/requests/consent/reject"+q,
			mustJSON(body), "application/json", http.StatusOK, &out)
		return out.RedirectTo, err
	}
	grant := []string{}
	for _, s := range req.RequestedScope {
		if allowed == nil || slices.Contains(allowed, s) {
			grant = append(grant, s)
		}
	}
	audience := req.RequestedAudience
	if audience == nil {
		audience = []string{}
	}
	remember := mode != LoginAuto
	body := map[string]any{
		"grant_scope":                 grant,
		"grant_access_token_audience": audience,
		"remember":                    remember,
	}
	if remember {
		body["remember_for"] = int(rememberFor / time.Second)
	}
	if len(claims) > 0 {
		body["session"] = map[string]any{"id_token": claims}
	}
	err := adminCall(c, adminURL, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept"+q,
		mustJSON(body), "application/json", http.StatusOK, &out)
	return out.RedirectTo, err
}

// logout accepts an RP-initiated logout (or one a browser started at
// /oauth2/sessions/logout) at once, without asking.
func (a *app) logout(c *http.Client, adminURL, challenge string) (string, error) {
	q := "?" + url.Values{"logout_challenge": {challenge}}.Encode()
	if err := adminCall(c, adminURL, http.MethodGet, "/admin/oauth2/auth/requests/logout"+q, nil, "", http.StatusOK, nil); err != nil {
		return "", err
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := adminCall(c, adminURL, http.MethodPut, "/admin/oauth2/auth/requests/logout/accept"+q,
		nil, "", http.StatusOK, &out); err != nil {
		return "", err
	}
	a.mu.Lock()
	a.stats.Logouts++
	a.mu.Unlock()
	return out.RedirectTo, nil
}
