package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/webpage"
)

// Handler returns the HTTP handler of the enrollment pages, to be served at
// Config.PublicURL:
//
//	GET  /enroll/{token}   the landing page: who asks, what tagwatch will do, one button
//	POST /enroll/{token}   starts the flow: a 303 to
//	GET  /continue?state=… the flow's continue page, on to the provider's authorization endpoint
//	GET  /callback         the provider's answer: the grant is stored, then a 303 to
//	GET  /enrolled/{id}    the success page
//
// Every other path is a 404 page. Every response carries the security
// headers (CSP, no referrer, no caching, no framing).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix
	webpage.Routes(mux, map[string]http.HandlerFunc{
		"GET " + p + "/enroll/{token}":  s.landing,
		"POST " + p + "/enroll/{token}": s.start,
		"GET " + p + "/continue":        s.continuePage,
		"GET " + p + "/callback":        s.callback,
		"GET " + p + "/enrolled/{id}":   s.enrolled,
	}, s.wrongMethod, s.notFound)
	return webpage.WithHeaders(mux)
}

// wrongMethod answers a method a route does not serve.
func (s *Service) wrongMethod(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, refuse(reasonMethod, nil))
}

// notFound answers a path the handler does not serve.
func (s *Service) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, refuse(reasonNotFound, nil))
}

// cookieName is the flow cookie: __Host- (Secure, Path=/, no Domain) when
// the pages are served over https.
func (s *Service) cookieName() string {
	if s.secure {
		return "__Host-tagwatch-flow"
	}
	return "tagwatch-flow"
}

func (s *Service) cookiePath() string {
	if s.secure || s.prefix == "" {
		return "/"
	}
	return s.prefix + "/"
}

// wellFormedID reports whether v looks like a vault.NewID: 26 characters
// of lower-case Crockford base32.
func wellFormedID(v string) bool {
	if len(v) != 26 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// link finds the usable link a request names, with its provider. A link
// whose watch the vault's rules no longer accept (the configuration
// changed since it was sent) is refused here, before the landing page
// offers the button and before the button starts a flow: no authorization
// request, no token request (C11).
func (s *Service) link(r *http.Request) (vault.Enrollment, Provider, error) {
	token := r.PathValue("token")
	if !webpage.WellFormed(token) {
		return vault.Enrollment{}, nil, refuse(reasonLinkUnknown, errors.New("malformed link token"))
	}
	e, err := s.cfg.DB.Link(vault.HashLinkToken(token))
	if errors.Is(err, vault.ErrNotFound) {
		return e, nil, refuse(reasonLinkUnknown, errors.New("no link with this token"))
	}
	if err != nil {
		return e, nil, refuse(reasonInternal, err)
	}
	attrs := []any{"user", e.UserID, "provider", e.Provider, "enrollment", e.ID}
	if err := e.Usable(s.cfg.Now()); err != nil {
		f := stateFailure(e.State(s.cfg.Now()), err)
		f.attrs = attrs
		return e, nil, f
	}
	p, _ := s.provider(e.Provider)
	if p == nil {
		f := refuse(reasonProviderUnavailable, fmt.Errorf("provider %q is not configured", e.Provider))
		f.attrs = attrs
		return e, nil, f
	}
	if e.Purpose == vault.PurposeSignIn && p.Kind() != provider.KindOIDC {
		f := refuse(reasonProviderUnavailable, fmt.Errorf("provider %q is not an OpenID Connect provider: sign-in link %s cannot be used", e.Provider, e.ID))
		f.attrs = attrs
		return e, nil, f
	}
	if e.Purpose == vault.PurposeEnroll && e.Watch != nil {
		spec := *e.Watch
		spec.Hashtags, spec.Targets = slices.Clone(spec.Hashtags), slices.Clone(spec.Targets)
		if err := s.cfg.DB.CheckWatch(e.Provider, &spec); err != nil {
			f := refuse(reasonInternal, err)
			if errors.Is(err, vault.ErrInvalid) {
				f = refuse(reasonWatchRefused, fmt.Errorf("link %s: %w", e.ID, err))
			}
			f.attrs = attrs
			return e, nil, f
		}
	}
	return e, p, nil
}

func providerName(name string, p Provider) string {
	if p.Kind() == provider.KindX {
		return "X"
	}
	return name
}

func hostOf(origin string) string {
	_, h, ok := strings.Cut(origin, "://")
	if !ok {
		return origin
	}
	return h
}

// accountLabel names the account a link is for as people know it: at X
// "@name", never the numeric account id a re-consent link is bound to
// (the grant's subject); the grant's username is shown when the link
// names its subject. A re-consent link that names no account is for its
// grant's (the vault refuses any other). A subject's username comes from
// the link's grant, else the user's grant there now, else the sign-in a
// revocation left; a subject whose username none of them knows is "the
// account with id N". Empty when the link names no
// account.
func (s *Service) accountLabel(e vault.Enrollment, p Provider) string {
	name := e.Expected
	var g vault.Grant
	if e.GrantID != "" {
		// A damaged or deleted grant leaves the link's own words.
		var err error
		if g, err = s.cfg.DB.Grant(e.GrantID); err != nil {
			g = vault.Grant{}
		}
	}
	if name == "" && e.Purpose == vault.PurposeReconsent {
		name = g.Subject
	}
	if name == "" {
		return ""
	}
	known := false
	if g.Subject != name {
		// The link's grant is gone (revoked and deleted): the user's
		// grant there now, or the sign-in a revocation left, may still
		// know the account's username.
		if cur, err := s.cfg.DB.UserGrant(e.UserID, e.Provider); err == nil && cur.Subject == name {
			g = cur
		} else if u, err := s.cfg.DB.User(e.UserID); err == nil {
			for _, si := range u.SignIns {
				if si.Provider == e.Provider && si.Subject == name {
					g = vault.Grant{Subject: si.Subject, Username: si.Username}
				}
			}
		}
	}
	if g.Subject == name && g.Username != "" {
		name, known = g.Username, true
	}
	if p.Kind() != provider.KindX {
		return name
	}
	if !known && isDigits(name) {
		return "the account with id " + name
	}
	return "@" + strings.TrimPrefix(name, "@")
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// landing shows what the link will do. It never changes anything: mail
// scanners fetch links. It names the operator who asks (Config.Operator),
// not who made the link (Enrollment.CreatedBy, such as "tagwatchctl
// uid:0"): that is for the operator, in the audit trail and the log.
func (s *Service) landing(w http.ResponseWriter, r *http.Request) {
	e, p, err := s.link(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := landingData{
		Reconsent:    e.Purpose == vault.PurposeReconsent,
		SignIn:       e.Purpose == vault.PurposeSignIn,
		Operator:     s.operator,
		ProviderName: providerName(e.Provider, p),
		ProviderHost: hostOf(p.AuthorizationOrigin()),
		Expected:     s.accountLabel(e, p),
		Expires:      formatTime(e.ExpiresAt),
	}
	d.Title = "Let tagwatch watch hashtags for you"
	scopes := p.Scopes()
	switch {
	case d.Reconsent:
		d.Title = "Renew tagwatch's access"
	case d.SignIn:
		d.Title = "Sign in to tagwatch with this account"
		scopes = signInScopes
	}
	for _, sc := range scopes {
		d.Scopes = append(d.Scopes, scopeLine(sc))
	}
	specs := []vault.WatchSpec{}
	if e.Watch != nil {
		specs = append(specs, *e.Watch)
	}
	if u, err := s.cfg.DB.User(e.UserID); err == nil {
		d.UserName = u.Name
	} else if !errors.Is(err, vault.ErrNotFound) {
		s.fail(w, r, refuse(reasonInternal, err))
		return
	}
	if e.Purpose == vault.PurposeReconsent {
		watches, err := s.cfg.DB.ListWatches(e.UserID)
		if err != nil {
			s.fail(w, r, refuse(reasonInternal, err))
			return
		}
		for _, wc := range watches {
			// The watches a consent resumes: those waiting for one, after a
			// dead grant or a revocation (Watch.Clear clears both).
			if wc.Provider == e.Provider && (wc.SuspendReason == vault.SuspendNeedsReconsent || wc.SuspendReason == vault.SuspendRevoked) {
				specs = append(specs, wc.WatchSpec)
				d.Waiting = true
			}
		}
	}
	for _, spec := range specs {
		for _, h := range spec.Hashtags {
			if !slices.Contains(d.Hashtags, h) {
				d.Hashtags = append(d.Hashtags, h)
			}
		}
		if d.Cadence == "" {
			d.Cadence = s.cfg.Cadence(spec.Schedule)
		}
		for _, t := range spec.Targets {
			if l := s.targetLine(t); !slices.Contains(d.Targets, l) {
				d.Targets = append(d.Targets, l)
			}
		}
	}
	s.render(w, http.StatusOK, landingTmpl, &d)
}

// start begins an authorization request for the link: state, PKCE
// verifier and nonce stay here; the browser gets a cookie binding it to
// the flow and a 303 to the flow's continue page (continuePage), never
// straight to the authorization endpoint: see webpage.WriteContinuePage.
func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	// A form posted from another site must not start a sign-in in this
	// browser. (Origin is no help: with no-referrer, browsers send "null".)
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		s.fail(w, r, refuse(reasonCrossSite, fmt.Errorf("Sec-Fetch-Site %q", httpsec.Clip(site, 20))))
		return
	}
	e, p, err := s.link(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A well-formed flow cookie stays: the browser's other tabs may have
	// flows bound to it.
	binding := s.flowCookie(r)
	if !webpage.WellFormed(binding) {
		binding = webpage.RandomString(32)
	}
	now := s.cfg.Now()
	state := webpage.RandomString(32)
	f := flow{
		linkHash:     e.Hash,
		enrollmentID: e.ID,
		userID:       e.UserID,
		provider:     e.Provider,
		issuer:       p.Issuer(),
		verifier:     oauth2.GenerateVerifier(),
		nonce:        webpage.RandomString(32),
	}
	f.authURL = p.AuthCodeURL(state, f.verifier, f.nonce)
	if e.Purpose == vault.PurposeSignIn {
		if f.authURL, err = signInURL(p, state, f.verifier, f.nonce); err != nil {
			s.fail(w, r, refuse(reasonInternal, err))
			return
		}
	}
	f.label = providerName(e.Provider, p)
	if err := s.flows.Add(r.Context(), state, binding, f.linkHash, f, now.Add(s.cfg.FlowTTL), now); err != nil {
		s.fail(w, r, &failure{reason: webpage.AddFlowReason(err, reasonBusy, reasonInternal), err: err, attrs: []any{"user", e.UserID, "provider", e.Provider, "enrollment", e.ID}})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: binding, Path: s.cookiePath(),
		MaxAge: int(s.cfg.FlowTTL / time.Second), HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	s.log.Info("consent flow started", "user", e.UserID, "provider", e.Provider, "enrollment", e.ID)
	httpsec.SetPageHeaders(w.Header(), "")
	w.Header().Set("Location", s.prefix+"/continue?state="+state)
	w.WriteHeader(http.StatusSeeOther)
}

// continuePage sends the browser of a flow on to its authorization
// request (webpage.WriteContinuePage): a same-origin GET, so that the
// landing form's redirect chain never leaves the origin. It changes
// nothing and may be loaded again while the flow lives; an unknown or
// expired flow, or another browser's, gets the callback's error pages.
func (s *Service) continuePage(w http.ResponseWriter, r *http.Request) {
	f, err := s.flows.Peek(r.Context(), r.URL.Query().Get("state"), s.flowCookie(r), s.cfg.Now())
	if err != nil {
		s.fail(w, r, flowFailure(fmt.Errorf("continue page: %w", err)))
		return
	}
	webpage.WriteContinuePage(w, f.authURL, f.label)
}

// flowCookie returns the browser's flow binding, "" without one.
func (s *Service) flowCookie(r *http.Request) string {
	if c, err := r.Cookie(s.cookieName()); err == nil {
		return c.Value
	}
	return ""
}

// callback finishes a flow: it checks state, cookie and iss, redeems the
// code once, identifies the user, checks what was granted, and stores it
// all in one transaction.
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, err := webpage.CallbackState(q)
	if err != nil {
		s.fail(w, r, refuse(reasonBadCallback, err))
		return
	}
	f, err := s.flows.Take(r.Context(), state, s.flowCookie(r), s.cfg.Now())
	if err != nil {
		s.fail(w, r, flowFailure(err))
		return
	}
	if err := s.finish(r, &f, q); err != nil {
		var fl *failure
		if !errors.As(err, &fl) {
			fl = refuse(reasonInternal, err)
		}
		fl.attrs = append(fl.attrs, "user", f.userID, "provider", f.provider, "enrollment", f.enrollmentID)
		s.fail(w, r, fl)
		return
	}
	httpsec.SetPageHeaders(w.Header(), "")
	w.Header().Set("Location", s.prefix+"/enrolled/"+f.enrollmentID)
	w.WriteHeader(http.StatusSeeOther)
}

// finish does the callback's work once the flow is known.
func (s *Service) finish(r *http.Request, f *flow, q map[string][]string) error {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p, _ := s.provider(f.provider)
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
		cause := fmt.Errorf("provider answered error %q: %s", code, httpsec.Clip(get("error_description"), 200))
		if code == "access_denied" {
			fl := refuse(reasonDenied, cause)
			if e, err := s.cfg.DB.Link(f.linkHash); err == nil && e.Usable(s.cfg.Now()) == nil {
				fl.until = e.ExpiresAt
			}
			s.auditRefusal(f, "access denied at the provider")
			return fl
		}
		s.auditRefusal(f, "the provider answered "+code)
		return refuse(reasonProviderError, cause)
	}
	code := get("code")
	if code == "" || len(code) > 4096 {
		return refuse(reasonBadCallback, errors.New("no code or an oversized one"))
	}
	// A link canceled, used or expired while the user was at the provider
	// is refused before the code is redeemed.
	e, err := s.cfg.DB.Link(f.linkHash)
	if errors.Is(err, vault.ErrNotFound) {
		return refuse(reasonLinkUnknown, errors.New("link deleted during the flow"))
	}
	if err != nil {
		return refuse(reasonInternal, err)
	}
	if err := e.Usable(s.cfg.Now()); err != nil {
		return stateFailure(e.State(s.cfg.Now()), err)
	}

	// A flow started on a daemon whose callback URL (http.public_url) is
	// not this one's: redeeming the code would send another redirect_uri
	// than the authorization request did, which the provider refuses
	// (RFC 6749 §4.1.3) as an invalid code. Say what is wrong instead.
	if sent, here := redirectURI(f.authURL), redirectURI(p.AuthCodeURL("state", "verifier", "nonce")); sent != here {
		return refuse(reasonInternal, fmt.Errorf("the consent was started with redirect_uri %s, and this daemon's is %s: every daemon sharing a store needs the same http.public_url", sent, here))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ExchangeTimeout)
	defer cancel()
	tr, err := p.Exchange(ctx, code, f.verifier)
	if err != nil {
		s.auditRefusal(f, "the code was not redeemed: "+string(provider.ClassOf(err)))
		return providerFailure(reasonCodeRefused, err)
	}
	if e.Purpose == vault.PurposeSignIn {
		return s.finishSignIn(ctx, f, p, e, tr)
	}
	id, err := p.Identify(ctx, tr, f.nonce)
	if err != nil {
		s.discard(p, tr)
		s.auditRefusal(f, "the identity was not verified")
		return providerFailure(reasonIdentity, err)
	}
	if tr.Refresh.IsZero() {
		s.discard(p, tr)
		s.auditRefusal(f, "no refresh token: offline access not granted")
		return refuse(reasonNoOffline, errors.New("the token response has no refresh token"))
	}
	if !id.Matches(e.Expected) {
		s.discardFor(p, tr, f.provider, id.Subject)
		s.auditRefusal(f, fmt.Sprintf("identity %s is not the expected %s", id.Subject, e.Expected))
		fl := refuse(reasonWrongAccount, fmt.Errorf("subject %q (username %q) is not the expected %q", id.Subject, id.Username, e.Expected))
		fl.account = s.accountLabel(e, p)
		return fl
	}
	granted := tr.Scopes
	if granted == nil {
		// RFC 6749 5.1: no scope in the answer means the scope requested.
		granted = p.Scopes()
	}
	// The refresh token (checked above) proves offline access, listed or
	// not (provider.MissingScopes); every other scope must be granted.
	if missing := p.MissingScopes(tr.Scopes, !tr.Refresh.IsZero()); len(missing) > 0 {
		s.discardFor(p, tr, f.provider, id.Subject)
		s.auditRefusal(f, "scopes not granted: "+strings.Join(missing, " "))
		fl := refuse(reasonScopes, fmt.Errorf("scopes not granted: %s", strings.Join(missing, " ")))
		fl.missing = missing
		return fl
	}
	res, err := s.commit(f, p, tr, id, granted)
	if err != nil {
		var fl *failure
		if errors.As(err, &fl) {
			if fl.reason == reasonWrongAccount {
				fl.account = s.accountLabel(e, p)
			}
			s.discardFor(p, tr, f.provider, id.Subject)
			s.auditRefusal(f, fl.Error())
			return fl
		}
		return refuse(reasonInternal, err)
	}
	if s.cfg.OnGrantStored != nil {
		s.cfg.OnGrantStored(res.Grant.ID)
	}
	s.log.Info("enrollment completed", "user", f.userID, "provider", f.provider, "enrollment", f.enrollmentID, "grant", res.Grant.ID,
		"watches_started", len(res.Started), "watches_kept", len(res.Kept), "watches_resumed", len(res.Resumed),
		"replaced_token_revocation", res.RevocationID, "replaced_token_not_revoked", res.NotRevoked, "switched_from", res.SwitchedFrom)
	return nil
}

// revoker is implemented by providers that can revoke tokens (RFC 7009).
type revoker interface {
	Revoke(ctx context.Context, rt secret.RefreshToken) error
}

// discard is discardFor with the account unknown.
func (s *Service) discard(p Provider, tr *provider.TokenResult) {
	s.discardFor(p, tr, "", "")
}

// discardFor revokes a refresh token obtained for a sign-in that was then
// refused, so it does not outlive the refusal at the provider. Best effort,
// bounded by a short timeout: nothing stores it. Where revoking ends every
// token of the account (provider.Revocation.EndsAccount: X), it is revoked
// only when the account (subject at provider) is known and no live grant
// holds it: a user re-consenting, or another user sharing the account,
// would lose their grant. Otherwise it is left to expire unused.
func (s *Service) discardFor(p Provider, tr *provider.TokenResult, prov, subject string) {
	rv, ok := p.(revoker)
	if !ok || tr.Refresh.IsZero() {
		return
	}
	rule := revocationRule(p)
	if !rule.Endpoint {
		return
	}
	if rule.EndsAccount {
		live, err := s.cfg.DB.LiveAccountGrants(prov, subject, "")
		if subject == "" || err != nil || len(live) > 0 {
			s.log.Info("refused sign-in's token not revoked; it expires unused", "provider", prov, "why", rule.Why,
				"account_known", subject != "", "live_grants", len(live))
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rv.Revoke(ctx, tr.Refresh); err != nil {
		s.log.Warn("revoke refused sign-in's token", "err", err.Error())
	}
}

// auditRefusal records a refused sign-in of a real flow (one that passed
// the state and cookie checks, so only link holders can cause it).
func (s *Service) auditRefusal(f *flow, detail string) {
	if err := s.cfg.DB.RecordConsentRefused(f.userID, f.enrollmentID, f.provider, httpsec.Clip(detail, 300)); err != nil {
		s.log.Error("audit refused enrollment", "user", f.userID, "provider", f.provider, "err", err.Error())
	}
}

// enrolled shows the success page of a used link.
func (s *Service) enrolled(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wellFormedID(id) {
		s.fail(w, r, refuse(reasonNotFound, nil))
		return
	}
	e, err := s.cfg.DB.LinkByID(id)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && e.UsedAt.IsZero()) {
		s.fail(w, r, refuse(reasonNotFound, nil))
		return
	}
	var watches []vault.WatchWithCursor
	if err == nil {
		watches, err = s.cfg.DB.ListWatches(e.UserID)
	}
	if err != nil {
		s.fail(w, r, refuse(reasonInternal, err))
		return
	}
	var resumed []vault.Watch
	for _, wc := range watches {
		if wc.Provider == e.Provider && wc.State == vault.WatchActive {
			resumed = append(resumed, wc.Watch)
		}
	}
	d := webpage.Message{Kind: "ok"}
	if e.Purpose == vault.PurposeSignIn {
		d.Title = "You're all set"
		d.Message = "You can now sign in to your tagwatch page with this account."
		d.Note = "tagwatch keeps only who you are at this provider: it has no access to your account and kept no token. You can close this page."
		if s.cfg.AccountURL != "" {
			d.Back, d.BackText = s.cfg.AccountURL, "Open your tagwatch page"
		}
		s.render(w, http.StatusOK, webpage.MessagePage, &d)
		return
	}
	if e.Purpose == vault.PurposeReconsent {
		d.Title = "Access renewed"
		d.Message = "Thank you. tagwatch can act for you again."
		if len(resumed) > 0 {
			d.Message += " These watches of yours are running; any that waited go on from where they stopped:"
		}
	} else if e.WatchKept {
		d.Title = "You're all set"
		d.Message = "Thank you. You already had this watch, so tagwatch kept it and did not add a second one: " +
			"each new post still reaches you once."
	} else {
		d.Title = "You're all set"
		d.Message = "Thank you. tagwatch now watches these hashtags for you and tells you about new posts."
	}
	specs := resumed
	if e.Watch != nil && e.Purpose != vault.PurposeReconsent {
		specs = []vault.Watch{{WatchSpec: *e.Watch}}
	}
	for _, w := range specs {
		tags := make([]string, len(w.Hashtags))
		for i, h := range w.Hashtags {
			tags[i] = "#" + h
		}
		d.Lines = append(d.Lines, strings.Join(tags, " ")+", "+s.cfg.Cadence(w.Schedule))
	}
	d.Note = "You can close this page. To stop, revoke tagwatch's access in your account settings at the provider, or ask whoever sent you the link."
	if s.cfg.AccountURL != "" {
		d.Note = "You can close this page. Your tagwatch page shows your watches and lets you change, pause or stop them."
		d.Back, d.BackText = s.cfg.AccountURL, "Open your tagwatch page"
	}
	s.render(w, http.StatusOK, webpage.MessagePage, &d)
}

// redirectURI returns the redirect_uri parameter of an authorization
// request URL ("" when it has none or does not parse).
func redirectURI(authURL string) string {
	u, err := url.Parse(authURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("redirect_uri")
}
