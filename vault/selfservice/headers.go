package selfservice

import (
	"net/http"
	"strings"
	"time"

	"tagwatch/vault/httpsec"
	"tagwatch/vault/webpage"
)

// setHeaders sets the headers every response of the page carries
// (httpsec.SetPageHeaders): a CSP with no script, a nonce'd style, forms
// posted to the page itself only (form-action 'self': a POST that sends
// the browser to a provider answers 303 to the continue page, since
// Chromium checks form-action on every redirect of a form submission;
// see webpage.WriteContinuePage), frame-ancestors 'none' and base-uri 'none';
// Referrer-Policy no-referrer; nosniff; Cache-Control no-store (every
// page is a signed-in person's, a sign-in or a redirect).
func (s *Service) setHeaders(h http.Header, nonce string) {
	httpsec.SetPageHeaders(h, nonce)
}

// redirect answers 303 See Other to loc with the headers.
func (s *Service) redirect(w http.ResponseWriter, loc string) {
	s.setHeaders(w.Header(), "")
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
}

// cookie is the one shape both cookies have: __Host- (Secure, Path=/, no
// Domain), HttpOnly, SameSite=Lax. maxAge < 0 deletes it.
func cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	return c
}

// setSessionCookie gives the browser a session id. It lives as long as the
// session is kept as a renewal hint, so that an expired session is renewed
// silently rather than greeted by the sign-in page.
func (s *Service) setSessionCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, cookie(SessionCookie, id, 2*s.cfg.AbsoluteTimeout))
}

func (s *Service) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, cookie(SessionCookie, "", -1))
}

// sessionID returns the browser's session id, "" without one.
func sessionID(r *http.Request) string {
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// flowBinding returns the browser's flow binding: its flow cookie when it
// has a well-formed one (its other tabs may have flows bound to it), or a
// new one to set.
func flowBinding(r *http.Request) string {
	if c, err := r.Cookie(FlowCookie); err == nil && webpage.WellFormed(c.Value) {
		return c.Value
	}
	return webpage.RandomString(32)
}

func (s *Service) setFlowCookie(w http.ResponseWriter, binding string) {
	http.SetCookie(w, cookie(FlowCookie, binding, s.cfg.FlowTTL))
}

// crossOriginCheck refuses a state-changing request another site's page
// made the browser send (net/http's CrossOriginProtection: Sec-Fetch-Site,
// else Origin against Host), with the cross-site page. Every method but
// GET, HEAD and OPTIONS is checked, on every path but the back-channel
// logout endpoint: a server-to-server POST that no browser sends,
// authenticated by the logout token's signature.
func (s *Service) crossOriginCheck(next http.Handler) http.Handler {
	backchannel := s.prefix + "/backchannel-logout"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != backchannel {
			if err := s.cop.Check(r); err != nil {
				s.fail(w, r, refuse(reasonCrossSite, err))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// localPath reports whether p is a path of the page that a redirect may
// return to: below the prefix, with nothing that makes a browser leave
// the origin (//host, a backslash, a scheme).
func (s *Service) localPath(p string) bool {
	return strings.HasPrefix(p, s.prefix+"/") && !strings.HasPrefix(p, "//") &&
		!strings.ContainsAny(p, "\\\r\n\t#") && !strings.Contains(p, "/..")
}
