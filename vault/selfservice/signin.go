package selfservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
	"tagwatch/vault/webpage"
)

// Handler returns the HTTP handler of the page, to be mounted on the
// public listener at PublicURL's path + "/account/":
//
//	GET  /account/                    the page, or the sign-in page; an expired session is renewed
//	POST /account/signin              form provider: a 303 to the flow's continue page
//	GET  /account/continue?state=…    on to the provider (authorization or end session endpoint)
//	GET  /account/callback            the provider's answer: a session, then a 303 back
//	POST /account/signout             ends the session here
//	POST /account/signout-everywhere  ends it here and at the provider (RP-initiated logout)
//	GET  /account/signed-out          where a sign-out ends
//	POST /account/backchannel-logout  the provider's logout token (JSON errors)
//
// with the page's own routes (pageRoutes). Every other path is a 404
// page. Every response carries the security headers; every POST but the
// back-channel logout passes the cross-origin check.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix
	webpage.Routes(mux, map[string]http.HandlerFunc{
		"POST " + p + "/signin":             s.signIn,
		"GET " + p + "/continue":            s.continuePage,
		"GET " + p + "/callback":            s.callback,
		"POST " + p + "/signout":            s.signOut,
		"POST " + p + "/signout-everywhere": s.signOutEverywhere,
		"GET " + p + "/signed-out":          s.signedOut,
	}, s.wrongMethod, s.notFound)
	mux.HandleFunc("POST "+p+"/backchannel-logout", s.backchannelLogout)
	mux.HandleFunc(p+"/backchannel-logout", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		logoutError(w, http.StatusMethodNotAllowed, "use POST")
	})
	s.pageRoutes(mux)
	return webpage.WithHeaders(s.crossOriginCheck(mux))
}

// notFound answers a path the handler does not serve.
func (s *Service) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, refuse(reasonNotFound, nil))
}

// renewalErrors are the prompt=none answers that mean "the person must
// interact": the page then starts an interactive sign-in (OpenID Connect
// Core 1.0 section 3.1.2.6).
var renewalErrors = map[string]bool{
	"login_required":             true,
	"interaction_required":       true,
	"consent_required":           true,
	"account_selection_required": true,
}

// renewedNotice is said when a POST found its session expired: the
// action is not replayed after the renewal (a state change should be
// asked for again, knowingly).
const renewedNotice = "You were signed in again; nothing was changed. Please do it again."

// requireSession returns the signed-in person's live session, or answers
// the request itself and returns false:
//   - an expired session (or, with one OpenID provider, an id from
//     before a restart) is renewed: a top-level 303 to the authorization
//     endpoint with prompt=none, back to this page (a GET) or, after a
//     POST, to the page's start with renewedNotice: the action is not
//     replayed. An X session cannot be renewed silently: the sign-in page
//     says so.
//   - without a session, a GET gets the sign-in page and a POST a 303 to
//     the page's start.
//
// The session returned is a copy; its idle lifetime starts again.
func (s *Service) requireSession(w http.ResponseWriter, r *http.Request) (session, bool) {
	now := s.cfg.Now()
	sess, st := s.sessions.lookup(sessionID(r), now)
	switch st {
	case sessionLive:
		return sess, true
	case sessionExpired:
		s.renew(w, r, sess.provider, sess.userID)
	case sessionUnknown:
		single := s.providers().single
		if single == "" {
			s.signInPage(w, r, "Your session has ended. Please sign in again.")
			break
		}
		s.renew(w, r, single, "")
	default:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			s.signInPage(w, r, "")
			break
		}
		s.redirect(w, s.prefix+"/")
	}
	return session{}, false
}

// renew starts a silent renewal at the provider of an expired session.
func (s *Service) renew(w http.ResponseWriter, r *http.Request, name, userID string) {
	p := s.provider(name)
	if p == nil || p.Kind() != provider.KindOIDC {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.redirect(w, s.prefix+"/")
			return
		}
		s.signInPage(w, r, "Your session has ended. Please sign in again: X cannot renew it without asking you.")
		return
	}
	f := &flow{kind: flowRenew, provider: name, prompt: "none", userID: userID, returnTo: s.prefix + "/"}
	if r.Method == http.MethodGet && s.localPath(r.URL.RequestURI()) {
		f.returnTo = r.URL.RequestURI()
	} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
		f.notice = renewedNotice
	}
	s.start(w, r, p, f)
}

// requireRecentAuth reports whether sess signed in at most RecentAuth ago
// (its auth_time), as the actions that cannot be undone need (revoking
// access, deleting data). When not, it answers the request itself with a
// top-level 303 to a sign-in that asks the provider for a fresh
// authentication (OpenID Connect: max_age = RecentAuth, then the new ID
// token's auth_time checked; X: an interactive sign-in), after which the
// browser comes back to action (the path of the action's confirmation
// page, a GET below the page: the action itself is never replayed) with a
// new session of the same user, and returns false.
func (s *Service) requireRecentAuth(w http.ResponseWriter, r *http.Request, sess session, action string) bool {
	now := s.cfg.Now()
	if !sess.authTime.IsZero() && !sess.authTime.After(now.Add(clockLeeway)) && now.Sub(sess.authTime) <= s.cfg.RecentAuth {
		return true
	}
	p := s.provider(sess.provider)
	if p == nil {
		s.fail(w, r, refuse(reasonProviderUnavailable, fmt.Errorf("provider %q is not configured", sess.provider)))
		return false
	}
	if !s.localPath(action) {
		action = s.prefix + "/"
	}
	f := &flow{kind: flowRecent, provider: sess.provider, userID: sess.userID, returnTo: action}
	if p.Kind() == provider.KindOIDC {
		f.maxAge = s.cfg.RecentAuth
	}
	s.log.Info("recent sign-in asked", "user", sess.userID, "provider", sess.provider, "action", action)
	s.start(w, r, p, f)
	return false
}

// clockLeeway absorbs the clock difference between a provider and
// tagwatch in auth_time checks.
const clockLeeway = 30 * time.Second

// signInPage shows the sign-in buttons, with notice when set.
func (s *Service) signInPage(w http.ResponseWriter, r *http.Request, notice string) {
	d := &signInData{Notice: notice, Action: s.prefix + "/signin"}
	d.Title = "Sign in"
	for _, name := range s.providers().names {
		p := s.provider(name)
		label := name
		if p.Kind() == provider.KindX {
			label, d.X = "X", true
		}
		d.Buttons = append(d.Buttons, signInButton{Provider: name, Label: label})
	}
	s.render(w, http.StatusOK, signInTmpl, d)
}

// signIn starts an interactive sign-in at the provider the form names.
func (s *Service) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, refuse(reasonBadCallback, err))
		return
	}
	name := r.PostForm.Get("provider")
	p := s.provider(name)
	if p == nil {
		s.fail(w, r, refuse(reasonUnknownProvider, fmt.Errorf("provider %q", httpsec.Clip(name, 64))))
		return
	}
	s.start(w, r, p, &flow{kind: flowSignIn, provider: name, returnTo: s.prefix + "/"})
}

// start begins the authorization request of f at p: state, PKCE verifier
// and nonce stay here; the browser gets the flow cookie binding it to the
// flow and a top-level 303: after a GET (an expired session on a page,
// the callback of a failed silent renewal) to the authorization endpoint
// itself; after a POST (a form) to the flow's continue page, so that the
// form's redirect chain stays on this origin (webpage.WriteContinuePage).
func (s *Service) start(w http.ResponseWriter, r *http.Request, p Provider, f *flow) {
	now := s.cfg.Now()
	binding := flowBinding(r)
	state := webpage.RandomString(32)
	f.issuer = p.Issuer()
	f.verifier = oauth2.GenerateVerifier()
	if p.Kind() == provider.KindOIDC {
		f.nonce = webpage.RandomString(32)
	} else {
		f.prompt, f.maxAge = "", 0 // X has neither
	}
	f.next = p.SignInURL(provider.SignInRequest{State: state, Verifier: f.verifier, Nonce: f.nonce,
		RedirectURL: s.callbackURL, Prompt: f.prompt, MaxAge: f.maxAge})
	f.label = s.providerLabel(f.provider)
	if err := s.addFlow(r.Context(), state, binding, f, now); err != nil {
		s.fail(w, r, &failure{reason: webpage.AddFlowReason(err, reasonBusy, reasonInternal), err: err, attrs: []any{"provider", f.provider}})
		return
	}
	s.setFlowCookie(w, binding)
	s.log.Info("account sign-in started", "provider", f.provider, "kind", f.kind.String(), "prompt", f.prompt,
		"max_age", int(f.maxAge/time.Second), "user", f.userID)
	s.goOn(w, r, f.next, state)
}

// goOn sends the browser to next, a provider's URL, for the flow of
// state: after a GET or HEAD straight (a 303), after a form's POST
// through the flow's continue page (a 303 to it), which goes on with a
// meta refresh: Chromium checks form-action on every redirect that
// follows a form submission, and the provider's own redirect to its
// login or logout UI may lead to an origin the CSP cannot know.
func (s *Service) goOn(w http.ResponseWriter, r *http.Request, next, state string) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.redirect(w, next)
		return
	}
	s.redirect(w, s.prefix+"/continue?state="+url.QueryEscape(state))
}

// continuePage sends the browser of a flow on to its provider URL
// (webpage.WriteContinuePage). It changes nothing and may be loaded
// again while the flow lives; an unknown or expired flow, or another
// browser's, gets the callback's error pages.
func (s *Service) continuePage(w http.ResponseWriter, r *http.Request) {
	f, err := s.flows.Peek(r.Context(), r.URL.Query().Get("state"), flowCookie(r), s.cfg.Now())
	if err != nil {
		s.fail(w, r, flowFailure(fmt.Errorf("continue page: %w", err)))
		return
	}
	if f.next == "" {
		s.fail(w, r, refuse(reasonFlowUnknown, errors.New("continue page: a flow with nowhere to go")))
		return
	}
	webpage.WriteContinuePage(w, f.next, f.label)
}

// flowCookie returns the browser's flow binding, "" without one.
func flowCookie(r *http.Request) string {
	if c, err := r.Cookie(FlowCookie); err == nil {
		return c.Value
	}
	return ""
}

// callback finishes a flow: state and its cookie, iss, then an error
// answer (a failed silent renewal becomes an interactive sign-in) or the
// code, redeemed once; the identity; the user it signs in; a new session.
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, err := webpage.CallbackState(q)
	if err != nil {
		s.fail(w, r, refuse(reasonBadCallback, err))
		return
	}
	f, err := s.flows.Take(r.Context(), state, flowCookie(r), s.cfg.Now())
	if err != nil {
		s.fail(w, r, flowFailure(err))
		return
	}
	if f.kind == flowLogout || f.kind == flowEndSession {
		s.fail(w, r, refuse(reasonBadCallback, errors.New("a sign-out's state at the sign-in callback")))
		return
	}
	if err := s.finish(w, r, &f, q); err != nil {
		var fl *failure
		if !errors.As(err, &fl) {
			fl = refuse(reasonInternal, err)
		}
		fl.attrs = append(fl.attrs, "provider", f.provider, "kind", f.kind.String())
		if f.userID != "" {
			fl.attrs = append(fl.attrs, "user", f.userID)
		}
		s.fail(w, r, fl)
	}
}

// finish does the callback's work once the flow is known. It answers the
// browser itself on success (a 303) and returns the failure otherwise.
func (s *Service) finish(w http.ResponseWriter, r *http.Request, f *flow, q map[string][]string) error {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p := s.provider(f.provider)
	if p == nil {
		return refuse(reasonProviderUnavailable, fmt.Errorf("provider %q is not configured", f.provider))
	}
	if p.Issuer() != f.issuer {
		return refuse(reasonIssuer, errors.New("the provider's issuer changed during the flow"))
	}
	_, issPresent := q["iss"]
	if err := p.CheckAuthorizationIssuer(get("iss"), issPresent); err != nil {
		return refuse(reasonIssuer, err)
	}
	if _, ok := q["error"]; ok {
		code := httpsec.Clip(get("error"), 64)
		cause := fmt.Errorf("provider answered error %q", code)
		if desc := httpsec.Clip(get("error_description"), 200); desc != "" {
			cause = fmt.Errorf("provider answered error %q: %s", code, desc)
		}
		if f.prompt == "none" && renewalErrors[code] {
			// The provider's session is gone (or needs the person): sign
			// in with them, same way back.
			s.log.Info("account silent renewal needs the person", "provider", f.provider, "answer", code, "user", f.userID)
			s.start(w, r, p, &flow{kind: flowSignIn, provider: f.provider, userID: f.userID, returnTo: f.returnTo, notice: f.notice})
			return nil
		}
		switch {
		case code == "access_denied" && f.kind == flowRecent:
			return refuse(reasonRecentDenied, cause)
		case code == "access_denied":
			return refuse(reasonDenied, cause)
		}
		return refuse(reasonProviderError, cause)
	}
	code := get("code")
	if code == "" || len(code) > 4096 {
		return refuse(reasonBadCallback, errors.New("no code or an oversized one"))
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ExchangeTimeout)
	defer cancel()
	tr, err := p.ExchangeSignIn(ctx, code, f.verifier, s.callbackURL)
	if err != nil {
		return providerFailure(reasonCodeRefused, err)
	}
	// Nothing the token answer carries is kept, not even the ID token
	// (signOutEverywhere goes without it): what it says goes into the
	// session; a refresh token, which a sign-in does not ask for, is
	// discarded at once.
	s.discard(p, f.provider, tr)
	id, err := p.Identify(ctx, tr, f.nonce)
	if err != nil {
		return providerFailure(reasonIdentity, err)
	}
	now := s.cfg.Now()
	authTime := id.AuthTime
	if p.Kind() == provider.KindX {
		// X asked the person just now (it has no silent answer).
		authTime = now
	}
	if f.maxAge > 0 {
		// OpenID Connect Core 1.0 section 3.1.2.1: with max_age, auth_time
		// is required; and it must be as recent as asked.
		switch {
		case authTime.IsZero():
			return refuse(reasonNotRecent, errors.New("max_age was sent and the ID token has no auth_time"))
		case now.Sub(authTime) > f.maxAge+clockLeeway:
			return refuse(reasonNotRecent, fmt.Errorf("auth_time %s is older than max_age %v", authTime.Format(time.RFC3339), f.maxAge))
		}
	}
	issuer := id.Issuer
	if issuer == "" {
		issuer = p.Issuer()
	}
	u, err := s.cfg.Store.UserBySignIn(f.provider, issuer, id.Subject)
	if f.kind == flowRecent && (err == nil && u.ID != f.userID || errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrSignInConflict)) {
		// A recent sign-in must be the session's own user; any other
		// account changes nothing, the session included.
		return &failure{reason: reasonOtherAccount, err: fmt.Errorf("recent sign-in as %q (user %q, %v) for user %s", httpsec.Clip(id.Subject, 100), u.ID, err, f.userID)}
	}
	if err != nil {
		old := sessionID(r)
		switch {
		case errors.Is(err, vault.ErrNotFound):
			// Whoever this browser was signed in as, it is not now.
			s.sessions.delete(old)
			s.clearSessionCookie(w)
			return refuse(reasonNoUser, fmt.Errorf("subject %q at %s: %w", httpsec.Clip(id.Subject, 100), f.provider, err))
		case errors.Is(err, vault.ErrSignInConflict):
			s.sessions.delete(old)
			s.clearSessionCookie(w)
			return refuse(reasonSignInConflict, err)
		}
		return refuse(reasonInternal, err)
	}
	// A new id at every sign-in, renewals included; the old one ends.
	s.sessions.delete(sessionID(r))
	sid := s.sessions.create(session{userID: u.ID, provider: f.provider, issuer: issuer, subject: id.Subject, account: accountLabel(p, id),
		sid: id.SessionID, authTime: authTime, notice: f.notice}, now)
	s.setSessionCookie(w, sid)
	s.log.Info("account signed in", "user", u.ID, "provider", f.provider, "kind", f.kind.String(),
		"renewed_silently", f.prompt == "none", "auth_time", authTime.UTC().Format(time.RFC3339))
	returnTo := f.returnTo
	if !s.localPath(returnTo) {
		returnTo = s.prefix + "/"
	}
	s.redirect(w, returnTo)
	return nil
}

// accountLabel names the account that signed in, for people.
func accountLabel(p Provider, id provider.Identity) string {
	switch {
	case p.Kind() == provider.KindX && id.Username != "":
		return "@" + httpsec.Clip(id.Username, 100)
	case id.Username != "":
		return httpsec.Clip(id.Username, 100)
	case id.Email != "":
		return httpsec.Clip(id.Email, 200)
	}
	return httpsec.Clip(id.Subject, 200)
}

// discard drops a sign-in's tokens. A refresh token (a sign-in asks for
// none, but a provider may send one) is revoked where revoking ends only
// its own grant (provider.Revocation); where it would end every token of
// the account (X: the app's whole authorization, the user's watches
// included) it is left to expire unused. The access token is dropped
// unused (X's: after /2/users/me): never revoked.
func (s *Service) discard(p Provider, name string, tr *provider.TokenResult) {
	if tr.Refresh.IsZero() {
		return
	}
	rule := p.Revocation()
	if !rule.Endpoint || rule.EndsAccount {
		s.log.Info("sign-in's refresh token not revoked; it expires unused", "provider", name, "why", rule.Why)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Revoke(ctx, tr.Refresh); err != nil {
		s.log.Warn("revoke sign-in's refresh token", "provider", name, "err", err.Error())
	}
}

// signOut ends the session here (not at the provider).
func (s *Service) signOut(w http.ResponseWriter, r *http.Request) {
	id := sessionID(r)
	if sess, st := s.sessions.lookup(id, s.cfg.Now()); st == sessionLive || st == sessionExpired {
		s.log.Info("account signed out", "user", sess.userID, "provider", sess.provider, "everywhere", false)
	}
	s.sessions.delete(id)
	s.clearSessionCookie(w)
	s.redirect(w, s.prefix+"/signed-out")
}

// signOutEverywhere ends the session here, server side, then at the
// provider by RP-Initiated Logout 1.0 (§2): a top-level 303 to its end
// session endpoint with client_id and logout_hint (the subject), and
// nothing else.
//
// No id_token_hint, though §2 recommends it: the request is a redirect,
// and the ID token in its address would reach the browser (address bar,
// history), where no token of any kind may go; so the session keeps none.
// No post_logout_redirect_uri and no state either: Ory Hydra v2.3.0
// refuses both without an id_token_hint (invalid_request: "Logout failed
// because query parameter post_logout_redirect_uri is set but
// id_token_hint is missing"). With client_id and logout_hint only (it
// ignores both) Hydra takes the request as a logout it started itself:
// its logout app is called, its login session ends (the next sign-in
// shows its login page), it sends back-channel logout tokens to every
// client of that session, this page included (which finds the session
// already ended here), and the browser lands on Hydra's own post-logout
// page (its urls.post_logout_redirect), not back here.
//
// A provider without an end session endpoint (X) cannot be asked: the
// signed-out page says so, to this browser only (a state bound to it).
func (s *Service) signOutEverywhere(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	id := sessionID(r)
	sess, st := s.sessions.lookup(id, now)
	s.sessions.delete(id)
	s.clearSessionCookie(w)
	if st != sessionLive && st != sessionExpired {
		s.redirect(w, s.prefix+"/signed-out")
		return
	}
	s.log.Info("account signed out", "user", sess.userID, "provider", sess.provider, "everywhere", true)
	binding := flowBinding(r)
	state := webpage.RandomString(32)
	f := &flow{kind: flowLogout, provider: sess.provider, userID: sess.userID}
	p := s.provider(sess.provider)
	if p != nil {
		if loc := p.EndSessionURL(sess.subject, "", ""); loc != "" {
			// On to the end session endpoint through the continue page:
			// the provider's logout UI may be on another origin.
			f.kind, f.next, f.label = flowEndSession, loc, s.providerLabel(sess.provider)
		}
	}
	if err := s.addFlow(r.Context(), state, binding, f, now); err != nil {
		s.fail(w, r, &failure{reason: webpage.AddFlowReason(err, reasonBusy, reasonInternal), err: err, attrs: []any{"provider", sess.provider}})
		return
	}
	s.setFlowCookie(w, binding)
	if f.kind == flowEndSession {
		s.redirect(w, s.prefix+"/continue?state="+state)
		return
	}
	s.redirect(w, s.prefix+"/signed-out?state="+state)
}

// signedOut is where every sign-out here ends (signing out everywhere at
// an OpenID provider ends on the provider's own page). It changes
// nothing but the sign-out's state, which it spends: only the browser
// that signed out everywhere at a provider without an end session
// endpoint is told it is still signed in there.
func (s *Service) signedOut(w http.ResponseWriter, r *http.Request) {
	d := s.withBack(&messageData{Kind: "ok", Message: "You are signed out of your tagwatch page. Nothing changed for your watches."})
	d.Title = "Signed out"
	if state := r.URL.Query().Get("state"); state != "" {
		if f, err := s.flows.Take(r.Context(), state, flowCookie(r), s.cfg.Now()); err == nil && f.kind == flowLogout {
			label := f.provider
			if p := s.provider(f.provider); p != nil && p.Kind() == provider.KindX {
				label = "X"
			}
			d.Note = label + " has no way for tagwatch to sign you out there: sign out on its own site if you want to."
		}
	}
	s.render(w, http.StatusOK, messageTmpl, d)
}
