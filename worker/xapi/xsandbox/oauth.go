package xsandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// TagwatchScopes are the scopes tagwatch asks for; [Server.Grant] uses them
// when given none.
var TagwatchScopes = []string{"tweet.read", "users.read", "offline.access"}

// knownScopes are X's OAuth 2.0 scopes, with the consent page's wording.
var knownScopes = map[string]string{
	"tweet.read":           "See posts from your timeline (including protected posts) and your lists and collections.",
	"tweet.write":          "Post and repost for you.",
	"tweet.moderate.write": "Hide and unhide replies to your posts.",
	"users.read":           "See your X profile information and account settings, and any account you can view.",
	"users.email":          "See your email address.",
	"follows.read":         "See who you follow and who follows you.",
	"follows.write":        "Follow and unfollow people for you.",
	"offline.access":       "Stay connected to your account until you revoke access.",
	"space.read":           "See all the Spaces you can view.",
	"mute.read":            "See accounts you have muted.",
	"mute.write":           "Mute and unmute accounts for you.",
	"like.read":            "See posts you liked and likes you can view.",
	"like.write":           "Like and unlike posts for you.",
	"list.read":            "See lists, list members and followers of lists you created or are a member of.",
	"list.write":           "Create and manage lists for you.",
	"block.read":           "See accounts you have blocked.",
	"block.write":          "Block and unblock accounts for you.",
	"bookmark.read":        "See your bookmarks.",
	"bookmark.write":       "Bookmark and remove bookmarks for you.",
	"dm.read":              "See all your direct messages.",
	"dm.write":             "Send and manage direct messages for you.",
	"media.write":          "Upload media for you.",
}

// Exact token-endpoint bodies of X.
const (
	bodyMissingAuth  = `{"error":"unauthorized_client","error_description":"Missing valid authorization header"}`
	descBadToken     = "Value passed for the token was invalid."
	descBadCode      = "Value passed for the authorization code was invalid."
	descBadGrantType = "Value passed for the grant type was invalid."
	pendingTTL       = 10 * time.Minute
	sessionCookie    = "xsandbox_session"
)

type authCode struct {
	redirectURI string
	challenge   string
	scopes      []string
	userID      string
	expires     time.Time
}

type authParams struct {
	redirectURI string
	state       string
	challenge   string
	scopes      []string
}

type pendingAuth struct {
	params  authParams
	query   string // the authorization request's query, to ask again after a sign-out
	session string
	expires time.Time
}

// grant is a token family: everything issued from one consent.
type grant struct {
	userID  string
	scopes  []string
	revoked bool
}

func (g *grant) has(scope string) bool { return slices.Contains(g.scopes, scope) }

type accessToken struct {
	grant   *grant
	expires time.Time
	revoked bool
}

type refreshToken struct {
	grant   *grant
	expires time.Time
	used    bool
	usedAt  time.Time // when it was spent
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b)
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	AccessToken  string `json:"access_token"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// issueLocked mints an access token, and a refresh token when the grant has
// offline.access. s.mu must be held.
func (s *Server) issueLocked(g *grant, now time.Time) tokenResponse {
	tr := tokenResponse{
		TokenType:   "bearer",
		ExpiresIn:   int64(s.cfg.AccessTokenTTL / time.Second),
		AccessToken: randomToken(32),
		Scope:       strings.Join(g.scopes, " "),
	}
	s.access[tr.AccessToken] = &accessToken{grant: g, expires: now.Add(s.cfg.AccessTokenTTL)}
	if g.has("offline.access") {
		tr.RefreshToken = randomToken(32)
		s.refresh[tr.RefreshToken] = &refreshToken{grant: g, expires: now.Add(s.cfg.RefreshTokenTTL)}
	}
	return tr
}

func (s *Server) newGrantLocked(userID string, scopes []string) *grant {
	g := &grant{userID: userID, scopes: slices.Clone(scopes)}
	s.grants[userID] = append(s.grants[userID], g)
	return g
}

// Grant mints tokens for userID as if the user had consented to scopes
// (TagwatchScopes when nil), without the browser flow: for benchmarks with
// many users. refresh is empty unless scopes include offline.access. It
// returns ErrUnknownUser for a user that was never added.
func (s *Server) Grant(userID string, scopes []string) (access, refresh string, err error) {
	if _, ok := s.store.user(userID); !ok {
		return "", "", ErrUnknownUser
	}
	if scopes == nil {
		scopes = TagwatchScopes
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", "", ErrClosed
	}
	tr := s.issueLocked(s.newGrantLocked(userID, scopes), s.now())
	return tr.AccessToken, tr.RefreshToken, nil
}

// RevokeUser revokes every grant userID gave the app, as the user would in
// X's settings: all its access and refresh tokens stop working at once, and
// its unused authorization codes too. It returns how many live grants
// (token families) it ended.
func (s *Server) RevokeUser(userID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.grants[userID] {
		if !g.revoked {
			g.revoked = true
			s.stats.UserRevocations++
			n++
		}
	}
	delete(s.grants, userID)
	for k, c := range s.codes {
		if c.userID == userID {
			delete(s.codes, k)
		}
	}
	return n
}

// validateAuthorize checks the authorization request. It returns a message
// for an error page when the redirect URI cannot be trusted, or an OAuth
// error code (and description) to redirect back with.
func (s *Server) validateAuthorize(q url.Values) (p authParams, page, oauthErr, desc string) {
	if q.Get("client_id") != s.cfg.ClientID || s.cfg.ClientID == "" {
		return p, "The app that sent you here is not known (client_id).", "", ""
	}
	p.redirectURI = q.Get("redirect_uri")
	if !slices.Contains(s.cfg.RedirectURIs, p.redirectURI) {
		return p, "The app that sent you here gave a callback URL it did not register (redirect_uri).", "", ""
	}
	p.state = q.Get("state")
	if p.state == "" || len(p.state) > 500 {
		return p, "The request's state is missing or longer than 500 characters.", "", ""
	}
	if q.Get("response_type") != "code" {
		return p, "", "unsupported_response_type", "response_type must be code"
	}
	p.scopes = strings.Fields(q.Get("scope"))
	if len(p.scopes) == 0 {
		return p, "", "invalid_scope", "scope is required"
	}
	for _, sc := range p.scopes {
		if _, ok := knownScopes[sc]; !ok {
			return p, "", "invalid_scope", "unknown scope " + sc
		}
	}
	p.challenge = q.Get("code_challenge")
	if p.challenge == "" {
		return p, "", "invalid_request", "code_challenge is required"
	}
	if q.Get("code_challenge_method") != "S256" {
		return p, "", "invalid_request", "code_challenge_method must be S256"
	}
	return p, "", "", ""
}

func redirectBack(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil { // registered URIs are the operator's; refuse rather than guess
		errorPage(w, http.StatusBadRequest, "The registered callback URL is not a valid URL.")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// approveLocked issues a code for p and userID. s.mu must be held.
func (s *Server) approveLocked(p authParams, userID string, now time.Time) string {
	if len(s.codes) > 1024 {
		for k, c := range s.codes {
			if now.After(c.expires) {
				delete(s.codes, k)
			}
		}
	}
	code := randomToken(32)
	s.codes[code] = &authCode{redirectURI: p.redirectURI, challenge: p.challenge, scopes: p.scopes, userID: userID, expires: now.Add(CodeTTL)}
	s.stats.Consents++
	return code
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	p, page, oauthErr, desc := s.validateAuthorize(r.URL.Query())
	if page != "" {
		errorPage(w, http.StatusBadRequest, page)
		return
	}
	if oauthErr != "" {
		redirectBack(w, r, p.redirectURI, url.Values{"error": {oauthErr}, "error_description": {desc}, "state": {p.state}})
		return
	}
	now := s.now()
	s.mu.Lock()
	s.stats.AuthorizeRequests++
	if id := s.autoApprove; id != "" {
		if _, ok := s.store.user(id); ok {
			code := s.approveLocked(p, id, now)
			s.mu.Unlock()
			redirectBack(w, r, p.redirectURI, url.Values{"state": {p.state}, "code": {code}})
			return
		}
	}
	for k, pa := range s.pending {
		if now.After(pa.expires) {
			delete(s.pending, k)
		}
	}
	session := ""
	if c, err := r.Cookie(sessionCookie); err == nil && len(c.Value) == 43 {
		session = c.Value
	} else {
		session = randomToken(32)
	}
	reqID := randomToken(24)
	s.pending[reqID] = &pendingAuth{params: p, query: r.URL.RawQuery, session: session, expires: now.Add(pendingTTL)}
	s.mu.Unlock()

	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: session, Path: "/i/oauth2", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	s.renderConsent(w, http.StatusOK, reqID, p, session, "", "")
}

func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	reqID := r.PostForm.Get("request")
	cookie, _ := r.Cookie(sessionCookie)
	now := s.now()
	s.mu.Lock()
	pa := s.pending[reqID]
	if pa == nil || now.After(pa.expires) {
		s.mu.Unlock()
		errorPage(w, http.StatusBadRequest, "This authorization request has expired. Go back to the app and start again.")
		return
	}
	if cookie == nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(pa.session)) != 1 {
		s.mu.Unlock()
		errorPage(w, http.StatusForbidden, "This authorization request was started in another browser.")
		return
	}
	p := pa.params
	if r.PostForm.Get("action") == "signout" {
		// Sign out of the sandbox session and ask again: the same
		// authorization request, now with the account picker.
		delete(s.sessions, pa.session)
		delete(s.pending, reqID)
		s.mu.Unlock()
		http.Redirect(w, r, string(EndpointAuthorize)+"?"+pa.query, http.StatusSeeOther)
		return
	}
	if r.PostForm.Get("action") != "authorize" {
		delete(s.pending, reqID)
		s.stats.Denials++
		s.mu.Unlock()
		redirectBack(w, r, p.redirectURI, url.Values{"error": {"access_denied"}, "state": {p.state}})
		return
	}
	s.mu.Unlock()

	name := strings.TrimSpace(r.PostForm.Get("username"))
	if name == "" {
		s.renderConsent(w, http.StatusBadRequest, reqID, p, pa.session, "", "Choose the sandbox account to sign in with.")
		return
	}
	u, ok := s.store.userByName(name)
	if !ok {
		s.renderConsent(w, http.StatusBadRequest, reqID, p, pa.session, name, "There is no sandbox account with that username.")
		return
	}
	s.mu.Lock()
	if s.pending[reqID] != pa { // approved or cancelled concurrently
		s.mu.Unlock()
		errorPage(w, http.StatusBadRequest, "This authorization request was already answered.")
		return
	}
	delete(s.pending, reqID)
	s.signInLocked(pa.session, u.ID)
	code := s.approveLocked(p, u.ID, now)
	s.mu.Unlock()
	redirectBack(w, r, p.redirectURI, url.Values{"state": {p.state}, "code": {code}})
}

func unescapeBasic(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// clientAuthOK checks client authentication: HTTP Basic for a confidential
// client (credentials form-urlencoded first, as RFC 6749 says and
// golang.org/x/oauth2 does), client_id in the form for a public one.
func (s *Server) clientAuthOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if s.cfg.ClientSecret == "" {
		if ok {
			return unescapeBasic(id) == s.cfg.ClientID
		}
		return r.PostForm.Get("client_id") == s.cfg.ClientID
	}
	if !ok {
		return false
	}
	idOK := subtle.ConstantTimeCompare([]byte(unescapeBasic(id)), []byte(s.cfg.ClientID))
	secretOK := subtle.ConstantTimeCompare([]byte(unescapeBasic(secret)), []byte(s.cfg.ClientSecret))
	return idOK&secretOK == 1
}

func (s *Server) tokenError(w http.ResponseWriter, status int, code, desc string) {
	s.mu.Lock()
	s.stats.TokenErrors++
	s.mu.Unlock()
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	writeRaw(w, status, contentJSON, string(b))
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, http.StatusBadRequest, "invalid_request", "The request body could not be read.")
		return
	}
	gt := r.PostForm.Get("grant_type")
	s.mu.Lock()
	s.stats.TokenRequests[gt]++
	s.mu.Unlock()
	if !s.clientAuthOK(r) {
		s.mu.Lock()
		s.stats.TokenErrors++
		s.mu.Unlock()
		writeRaw(w, http.StatusUnauthorized, contentJSON, bodyMissingAuth)
		return
	}
	switch gt {
	case "authorization_code":
		s.exchangeCode(w, r)
	case "refresh_token":
		s.refreshGrant(w, r)
	case "":
		s.tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter [grant_type].")
	default:
		s.tokenError(w, http.StatusBadRequest, "invalid_request", descBadGrantType)
	}
}

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	for _, k := range []string{"code", "redirect_uri", "code_verifier"} {
		if f.Get(k) == "" {
			s.tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter ["+k+"].")
			return
		}
	}
	now := s.now()
	s.mu.Lock()
	c := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code")) // single use, even when the exchange fails
	if c == nil || now.After(c.expires) || c.redirectURI != f.Get("redirect_uri") ||
		subtle.ConstantTimeCompare([]byte(pkceS256(f.Get("code_verifier"))), []byte(c.challenge)) != 1 {
		s.mu.Unlock()
		s.tokenError(w, http.StatusBadRequest, "invalid_request", descBadCode)
		return
	}
	tr := s.issueLocked(s.newGrantLocked(c.userID, c.scopes), now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, tr)
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request) {
	rt := r.PostForm.Get("refresh_token")
	if rt == "" {
		s.tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter [refresh_token].")
		return
	}
	now := s.now()
	s.mu.Lock()
	t := s.refresh[rt]
	switch {
	case t == nil:
		s.mu.Unlock()
		s.tokenError(w, http.StatusBadRequest, "invalid_request", descBadToken)
		return
	case t.used:
		s.stats.RefreshReuses++
		if s.reuseRevokesFamily && !t.grant.revoked {
			t.grant.revoked = true
			s.stats.FamilyRevocations++
		}
		user, rotated, revokes := t.grant.userID, t.usedAt, s.reuseRevokesFamily
		s.mu.Unlock()
		if s.cfg.OnReuse != nil {
			s.cfg.OnReuse(user, rotated, now)
		}
		s.log.Warn("a spent refresh token was presented again (a reuse)", "user", user, "family_revoked", revokes)
		s.tokenError(w, http.StatusBadRequest, "invalid_request", descBadToken)
		return
	case t.grant.revoked || !now.Before(t.expires):
		s.mu.Unlock()
		s.tokenError(w, http.StatusBadRequest, "invalid_request", descBadToken)
		return
	}
	t.used, t.usedAt = true, now
	tr := s.issueLocked(t.grant, now)
	drop := s.dropAfterRotate > 0
	if drop {
		s.dropAfterRotate--
		s.stats.Drops++
	}
	s.mu.Unlock()
	if drop {
		s.log.Debug("fault: drop after rotate", "user", t.grant.userID)
		s.dropConn(w)
		return
	}
	writeJSON(w, http.StatusOK, tr)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeRaw(w, http.StatusBadRequest, contentJSON, `{"error":"invalid_request","error_description":"The request body could not be read."}`)
		return
	}
	if !s.clientAuthOK(r) {
		writeRaw(w, http.StatusUnauthorized, contentJSON, bodyMissingAuth)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeRaw(w, http.StatusBadRequest, contentJSON, `{"error":"invalid_request","error_description":"Missing required parameter [token]."}`)
		return
	}
	s.mu.Lock()
	var user string
	if t := s.refresh[tok]; t != nil {
		user = t.grant.userID
		if !t.grant.revoked {
			t.grant.revoked = true
			s.stats.Revocations++
		}
	} else if a := s.access[tok]; a != nil {
		user = a.grant.userID
		if !a.revoked {
			a.revoked = true
			s.stats.Revocations++
		}
	}
	if user != "" && !s.revokeFamilyOnly {
		// X: the app's whole authorization for the user ends.
		s.endAuthorizationLocked(user)
	}
	s.mu.Unlock()
	writeRaw(w, http.StatusOK, contentJSON, `{"revoked":true}`)
}

// SetRevokeEndsAuthorization sets what POST /2/oauth2/revoke ends. On (the
// default) it models X as reported: revoking any token of a user ends the
// app's whole authorization for that user, every token of every consent
// they gave it, as [Server.RevokeUser] does (twitodon's author, who calls
// it to sign users out: it "revokes *all* access from the app, not just the
// current session", github.com/lucyllewy/twitodon issue 22; X announced its
// OAuth 1.0a counterpart as "essentially 'revoking' their own apps
// authorization for the specific user"). Off: only the token's own family
// (one consent's tokens) ends, as RFC 7009 section 2.1 describes, for tests
// of a provider that revokes per grant (an access token's revocation then
// ends that access token only).
func (s *Server) SetRevokeEndsAuthorization(on bool) {
	s.mu.Lock()
	s.revokeFamilyOnly = !on
	s.mu.Unlock()
}

// endAuthorizationLocked ends every grant userID gave the app and their
// unused codes. s.mu must be held.
func (s *Server) endAuthorizationLocked(userID string) {
	for _, g := range s.grants[userID] {
		g.revoked = true
	}
	delete(s.grants, userID)
	for k, c := range s.codes {
		if c.userID == userID {
			delete(s.codes, k)
		}
	}
}
