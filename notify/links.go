package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/webpage"
)

// Actions is what the one-click links do; the daemon implements it.
// Errors wrapping vault.ErrNotFound show "no longer exists"; others are
// logged and shown as a generic failure.
type Actions interface {
	// PauseWatch pauses a watch (idempotent).
	PauseWatch(ctx context.Context, watchID string) error
	// Revoke ends tagwatch's access for the user at the provider, as
	// unenroll does (idempotent).
	Revoke(ctx context.Context, userID, provider string) error
}

// Link actions.
const (
	ActionPause  = "pause"
	ActionRevoke = "revoke"
)

// LinkPrefix is the path under which Handler serves the one-click pages.
const LinkPrefix = "/n/"

var errBadLink = errors.New("notify: link is not valid")

// link is what a signed one-click link says.
type link struct {
	Action, UserID, WatchID, Provider string
	Expires                           time.Time
}

func (l link) payload() []byte {
	return []byte(strings.Join([]string{"tagwatch-link-v1", l.Action, l.UserID, l.WatchID, l.Provider,
		strconv.FormatInt(l.Expires.Unix(), 10)}, "\x00"))
}

// signLink returns the token of l: base64url(payload) "." base64url(HMAC-SHA256).
func signLink(key []byte, l link) string { return newLinkSigner(key).sign(l) }

// linkSigner signs links with one key. Every message carries links, so
// it keeps keyed HMACs for reuse: hmac.New hashes the key each time, a
// Reset returns to the keyed state. Safe for concurrent use.
type linkSigner struct{ macs sync.Pool }

func newLinkSigner(key []byte) *linkSigner {
	key = bytes.Clone(key)
	return &linkSigner{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// sign returns the token of l, as signLink does.
func (ls *linkSigner) sign(l link) string {
	p := l.payload()
	mac := ls.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(p)
	sum := mac.Sum(nil)
	ls.macs.Put(mac)
	return base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sum)
}

// verifyLink checks a token's signature, action and expiry.
func verifyLink(key []byte, action, token string, now time.Time) (link, error) {
	if len(token) > 2048 {
		return link{}, errBadLink
	}
	p64, s64, ok := strings.Cut(token, ".")
	if !ok {
		return link{}, errBadLink
	}
	// Strict: one token per link, no variants with other padding bits.
	p, err1 := base64.RawURLEncoding.Strict().DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.Strict().DecodeString(s64)
	if err1 != nil || err2 != nil {
		return link{}, errBadLink
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(p)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return link{}, errBadLink
	}
	f := strings.Split(string(p), "\x00")
	if len(f) != 6 || f[0] != "tagwatch-link-v1" || f[1] != action {
		return link{}, errBadLink
	}
	exp, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return link{}, errBadLink
	}
	l := link{Action: f[1], UserID: f[2], WatchID: f[3], Provider: f[4], Expires: time.Unix(exp, 0)}
	if !now.Before(l.Expires) {
		return link{}, errLinkExpired
	}
	return l, nil
}

var errLinkExpired = errors.New("notify: link expired")

// PauseURL returns a signed one-click link that pauses watchID of userID.
func (s *Service) PauseURL(userID, watchID string) string {
	l := link{Action: ActionPause, UserID: userID, WatchID: watchID, Expires: s.now().Add(s.cfg.LinkTTL)}
	return s.publicURL + LinkPrefix + ActionPause + "/" + s.links.sign(l)
}

// RevokeURL returns a signed one-click link that revokes tagwatch's
// access for userID at provider.
func (s *Service) RevokeURL(userID, provider string) string {
	l := link{Action: ActionRevoke, UserID: userID, Provider: provider, Expires: s.now().Add(s.cfg.LinkTTL)}
	return s.publicURL + LinkPrefix + ActionRevoke + "/" + s.links.sign(l)
}

// Handler serves the one-click pages under LinkPrefix ("/n/"): GET shows
// a confirmation page and never acts (mail scanners fetch links); POST
// (the page's button, or a mail client's RFC 8058 one-click unsubscribe)
// acts through Config.Actions. Safe for concurrent use.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LinkPrefix+"{action}/{token}", s.linkPage)
	mux.HandleFunc("POST "+LinkPrefix+"{action}/{token}", s.linkAct)
	mux.HandleFunc(LinkPrefix, func(w http.ResponseWriter, r *http.Request) {
		s.page(w, http.StatusNotFound, pageData{Kind: "error", Page: webpage.Page{Title: "Not found"}, Message: "This page does not exist."})
	})
	return mux
}

func (s *Service) checkLink(w http.ResponseWriter, r *http.Request) (link, bool) {
	action := r.PathValue("action")
	if action != ActionPause && action != ActionRevoke {
		s.page(w, http.StatusNotFound, pageData{Kind: "error", Page: webpage.Page{Title: "Not found"}, Message: "This page does not exist."})
		return link{}, false
	}
	l, err := verifyLink(s.cfg.LinkKey, action, r.PathValue("token"), s.now())
	switch {
	case errors.Is(err, errLinkExpired):
		s.page(w, http.StatusGone, pageData{Kind: "error", Page: webpage.Page{Title: "This link has expired"},
			Message: "Use the link in a more recent notification, or ask your operator."})
		return link{}, false
	case err != nil:
		s.log.Info("one-click link refused", "action", action, "reason", "bad signature")
		s.page(w, http.StatusBadRequest, pageData{Kind: "error", Page: webpage.Page{Title: "This link is not valid"},
			Message: "Copy the whole link from the notification, or ask your operator."})
		return link{}, false
	}
	return l, true
}

func (s *Service) linkPage(w http.ResponseWriter, r *http.Request) {
	l, ok := s.checkLink(w, r)
	if !ok {
		return
	}
	d := pageData{Form: true}
	if l.Action == ActionPause {
		d.Title, d.Message, d.Button = "Pause this watch?", "tagwatch will stop searching for this watch's hashtags and stop sending you its posts until it is resumed.", "Pause the watch"
	} else {
		d.Title, d.Message, d.Button = "Revoke tagwatch's access?", "tagwatch will give up its access to your "+l.Provider+" account and stop every watch that uses it. You can allow it again later with a new link.", "Revoke access"
	}
	s.page(w, http.StatusOK, d)
}

func (s *Service) linkAct(w http.ResponseWriter, r *http.Request) {
	l, ok := s.checkLink(w, r)
	if !ok {
		return
	}
	if s.cfg.Actions == nil {
		s.log.Error("one-click link used but no actions are wired", "action", l.Action)
		s.page(w, http.StatusServiceUnavailable, pageData{Kind: "error", Page: webpage.Page{Title: "Not available"}, Message: "Please try again later."})
		return
	}
	var err error
	var d pageData
	if l.Action == ActionPause {
		err = s.cfg.Actions.PauseWatch(r.Context(), l.WatchID)
		d = pageData{Kind: "ok", Page: webpage.Page{Title: "Watch paused"}, Message: "tagwatch will not search for this watch or send its posts until it is resumed."}
	} else {
		err = s.cfg.Actions.Revoke(r.Context(), l.UserID, l.Provider)
		d = pageData{Kind: "ok", Page: webpage.Page{Title: "Access revoked"}, Message: "tagwatch no longer acts for your " + l.Provider + " account, and its watches have stopped."}
	}
	switch {
	case errors.Is(err, vault.ErrNotFound):
		s.page(w, http.StatusNotFound, pageData{Kind: "error", Page: webpage.Page{Title: "Nothing to do"}, Message: "This watch or access no longer exists."})
		return
	case err != nil:
		s.log.Error("one-click link action failed", "action", l.Action, "user", l.UserID, "watch", l.WatchID, "provider", l.Provider, "err", err)
		s.page(w, http.StatusInternalServerError, pageData{Kind: "error", Page: webpage.Page{Title: "Something went wrong"}, Message: "Nothing was changed. Please try again later."})
		return
	}
	s.log.Info("one-click link used", "action", l.Action, "user", l.UserID, "watch", l.WatchID, "provider", l.Provider)
	s.page(w, http.StatusOK, d)
}

type pageData struct {
	webpage.Page
	Kind, Message, Button string
	Form                  bool
}

// page writes a page in the consent pages' look (webpage.Parse) with
// their security headers: CSP with a per-response style nonce and no
// other source, no-referrer, frame-ancestors 'none', nosniff, no-store.
func (s *Service) page(w http.ResponseWriter, status int, d pageData) {
	if err := webpage.Write(w, status, linkTmpl, &d); err != nil {
		s.log.Error("render link page", "err", err)
		httpsec.SetPageHeaders(w.Header(), "")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error\n"))
	}
}

var linkTmpl = template.Must(webpage.Parse("link", "", `
{{if .Kind}}<div class="badge {{.Kind}}" aria-hidden="true">{{if eq .Kind "ok"}}✓{{else}}!{{end}}</div>{{end}}
<h1>{{.Title}}</h1>
<p class="lead">{{.Message}}</p>
{{if .Form}}<form method="post"><button type="submit">{{.Button}}</button></form>{{end}}
`))
