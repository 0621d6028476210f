package selfservice

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"tagwatch/vault"
)

// This file is the page itself: its routes and what every GET shows. A
// GET changes nothing (actions.go has the POSTs); every route starts with
// requireSession, and the two that cannot be undone with
// requireRecentAuth.

// pageRoutes registers the page's own routes on the handler's mux:
//
//	GET  /account/                            the watches and grants
//	GET  /account/watches/new?provider=P      the form to add a watch on the grant at P
//	POST /account/watches                     add it
//	GET  /account/watches/{id}                one watch: matches, the change form
//	POST /account/watches/{id}                change hashtags, schedule, targets
//	POST /account/watches/{id}/pause|resume   pause, resume
//	GET  /account/watches/{id}/delete         confirm
//	POST /account/watches/{id}/delete         delete
//	POST /account/grants/{provider}/reconsent a re-consent link, then its landing page
//	GET  /account/grants/{provider}/revoke    confirm (a recent sign-in)
//	POST /account/grants/{provider}/revoke    revoke at the provider, then here
//	GET  /account/delete                      confirm (a recent sign-in)
//	POST /account/delete                      delete everything of the user
//	GET  /account/deleted                     where that ends
//
// Any other method on these paths gets the method page.
func (s *Service) pageRoutes(mux *http.ServeMux) {
	p := s.prefix
	routes := []struct {
		method, path string
		h            http.HandlerFunc
	}{
		{"GET", "/{$}", s.home},
		{"GET", "/watches/new", s.newWatchPage},
		{"POST", "/watches", s.addWatch},
		{"GET", "/watches/{id}", s.watchPage},
		{"POST", "/watches/{id}", s.changeWatch},
		{"POST", "/watches/{id}/pause", s.pauseWatch},
		{"POST", "/watches/{id}/resume", s.resumeWatch},
		{"GET", "/watches/{id}/delete", s.deleteWatchPage},
		{"POST", "/watches/{id}/delete", s.deleteWatch},
		{"POST", "/grants/{provider}/reconsent", s.reconsent},
		{"GET", "/grants/{provider}/revoke", s.revokePage},
		{"POST", "/grants/{provider}/revoke", s.revoke},
		{"GET", "/delete", s.deletePage},
		{"POST", "/delete", s.deleteData},
		{"GET", "/deleted", s.deletedPage},
	}
	fallback := map[string]bool{}
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+p+rt.path, rt.h)
		if rt.path != "/watches/new" && !fallback[rt.path] { // /watches/{id} covers it
			fallback[rt.path] = true
			mux.HandleFunc(p+rt.path, s.wrongMethod)
		}
	}
}

func (s *Service) wrongMethod(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, refuse(reasonMethod, nil))
}

// done are the notices an action leaves on the page it returns to, by
// the code in the page's "done" parameter: fixed texts, so a link cannot
// make the page say anything else.
var done = map[string]string{
	"added":     "Watch added.",
	"changed":   "Changes saved.",
	"paused":    "Watch paused.",
	"resumed":   "Watch resumed.",
	"waiting":   "Watch resumed, but it waits: it says why below.",
	"unchanged": "Nothing needed changing.",
	"deleted":   "Watch deleted.",
	"revoked":   "tagwatch's access was revoked and its tokens deleted. A confirmation is on its way to where your watches notify you.",
	"active":    "This access does not need renewing.",
}

// homeData is the page.
type homeData struct {
	base
	P            string // the page's path prefix
	Notice, Done string
	// DoneWatch is the watch Done is about (the "watch" parameter), shown
	// in its card, where the page scrolls to; "" shows Done at the top.
	DoneWatch                  string
	Account, Provider          string
	Watches                    []watchView
	Grants                     []grantView
	SignOut, SignOutEverywhere string
	// CanSignOutEverywhere: the sign-in provider has an end session
	// endpoint (OpenID providers that publish one; never X).
	CanDelete, CanSignOutEverywhere bool
}

// home is the page: the user's watches and grants, and the ways out.
func (s *Service) home(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	now := s.cfg.Now()
	v, err := s.userView(ps, sess, s.pages().Matches, now)
	if err != nil {
		s.readFailed(w, r, sess, err)
		return
	}
	d := &homeData{P: s.prefix, Notice: s.sessions.takeNotice(sess.key), Done: done[r.URL.Query().Get("done")], DoneWatch: r.URL.Query().Get("watch"),
		Account: sess.account, Provider: s.providerLabel(sess.provider), Watches: v.Watches, Grants: v.Grants,
		SignOut: s.prefix + "/signout", SignOutEverywhere: s.prefix + "/signout-everywhere", CanDelete: s.pages().Access != nil}
	if p := s.provider(sess.provider); p != nil {
		d.CanSignOutEverywhere = p.EndSessionURL(sess.subject, "", "") != ""
	}
	d.Title = "Your watches"
	s.render(w, http.StatusOK, homeTmpl, d)
}

// readFailed answers a page whose reads failed: a user deleted meanwhile
// ends the session (the sign-in page says why); anything else is the
// internal error page.
func (s *Service) readFailed(w http.ResponseWriter, r *http.Request, sess session, err error) {
	if errors.Is(err, errUserGone) {
		s.log.Info("account page of a deleted user; session ended", "user", sess.userID)
		s.sessions.delete(sessionID(r))
		s.clearSessionCookie(w)
		s.signInPage(w, r, "tagwatch keeps nothing for that account any more.")
		return
	}
	s.fail(w, r, &failure{reason: reasonInternal, err: err, attrs: []any{"user", sess.userID}})
}

// watchForm is what the add and change forms hold.
type watchForm struct {
	Provider           string
	Hashtags, Schedule string
	Targets            []targetChoice
	NewTargets         string
}

// watchPageData is one watch's page: its facts, matches and forms.
type watchPageData struct {
	base
	P          string
	Done       string
	W          watchView
	Form       watchForm
	ChangeErr  string // next to the change form
	MoveErr    string // next to pause / resume
	Schedules  []string
	TargetHint string
}

// schedules are the suggestions of the schedule field.
var schedules = []string{"@every 15m", "@every 30m", "@hourly", "@every 6h", "@daily"}

const targetHint = "One per line: mailto:you@example.com, a webhook's https:// address, or a chat address tagwatch supports. Once saved, only its kind and a short fingerprint are shown."

// watchPage is one watch: everything the page says of it, its recent
// matches and the forms to change, pause, resume or delete it.
func (s *Service) watchPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	d, wc, err := s.watchPageData(sess, r.PathValue("id"))
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	d.Done = done[r.URL.Query().Get("done")]
	d.Form = watchForm{Hashtags: strings.Join(wc.Hashtags, " "), Schedule: wc.Schedule, Targets: d.Form.Targets}
	s.render(w, http.StatusOK, watchTmpl, d)
}

// watchPageData reads what the page of the user's watch id shows (its
// change form empty but for the target choices).
func (s *Service) watchPageData(sess session, id string) (*watchPageData, vault.WatchWithCursor, error) {
	ps := s.cfg.Store
	wc, err := ps.UserWatch(sess.userID, id)
	if err != nil {
		return nil, wc, err
	}
	ws, err := ps.ListWatches(sess.userID)
	if err != nil {
		return nil, wc, err
	}
	d := &watchPageData{P: s.prefix, W: s.watchView(ps, sess.userID, wc, MatchesPerWatch, s.cfg.Now()),
		Form: watchForm{Targets: s.targetChoices(ws, wc.Targets)}, Schedules: schedules, TargetHint: targetHint}
	d.W.Own = true
	d.Title = "#" + strings.Join(wc.Hashtags, " #")
	return d, wc, nil
}

// watchFailed answers a request about a watch that could not be read: a
// missing watch and another user's get the same not-found page.
func (s *Service) watchFailed(w http.ResponseWriter, r *http.Request, sess session, err error) {
	if errors.Is(err, vault.ErrNotFound) {
		s.fail(w, r, &failure{reason: reasonNotFound, err: err, attrs: []any{"user", sess.userID}})
		return
	}
	s.fail(w, r, &failure{reason: reasonInternal, err: err, attrs: []any{"user", sess.userID}})
}

// newWatchData is the form that adds a watch on a grant.
type newWatchData struct {
	base
	P             string
	ProviderLabel string
	Form          watchForm
	Err           string
	Schedules     []string
	TargetHint    string
}

// newWatchPage is the form that adds a watch on the user's grant at the
// provider the query names.
func (s *Service) newWatchPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	d, err := s.newWatchData(sess, r.URL.Query().Get("provider"))
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, newWatchTmpl, d)
}

// newWatchData reads what the add form for the user's grant at name
// shows. A provider where the user has no grant that can take a watch is
// *vault.NotFoundError.
func (s *Service) newWatchData(sess session, name string) (*newWatchData, error) {
	ps := s.cfg.Store
	g, err := ps.UserGrant(sess.userID, name)
	if err != nil {
		return nil, err
	}
	if g.State == vault.GrantRevoked {
		return nil, &vault.NotFoundError{Kind: "grant", ID: name}
	}
	ws, err := ps.ListWatches(sess.userID)
	if err != nil {
		return nil, err
	}
	d := &newWatchData{P: s.prefix, ProviderLabel: s.providerLabel(name),
		Form: watchForm{Provider: name, Targets: s.targetChoices(ws, nil)}, Schedules: schedules, TargetHint: targetHint}
	d.Title = "Add a watch"
	return d, nil
}

// confirmData is a page that asks before an action that cannot be undone.
type confirmData struct {
	base
	P      string
	Lead   string
	Lines  []string
	Tags   []string
	Action string
	Button string
	Back   string
}

// deleteWatchPage asks before deleting a watch.
func (s *Service) deleteWatchPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	wc, err := ps.UserWatch(sess.userID, r.PathValue("id"))
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	v := s.watchView(ps, sess.userID, wc, 0, s.cfg.Now())
	d := &confirmData{P: s.prefix, Tags: wc.Hashtags,
		Lead: "tagwatch stops searching " + v.ProviderLabel + " for these hashtags and forgets the watch, with its run history and the list of its recent matches.",
		Lines: []string{"It searches " + v.ProviderLabel + " " + v.Cadence + " and sends to " + strings.Join(v.Targets, ", ") + ".",
			"Notifications already sent stay where they are.",
			"To watch these hashtags again later, add a new watch."},
		Action: v.Path + "/delete", Button: "Delete this watch", Back: v.Path}
	d.Title = "Delete this watch?"
	s.render(w, http.StatusOK, confirmTmpl, d)
}

// revokePage asks before revoking tagwatch's access at a provider; it
// needs a recent sign-in.
func (s *Service) revokePage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	name := r.PathValue("provider")
	action := s.prefix + "/grants/" + url.PathEscape(name) + "/revoke"
	if !s.requireRecentAuth(w, r, sess, action) {
		return
	}
	g, watches, err := s.revocableGrant(sess, name)
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	label := s.providerLabel(name)
	d := &confirmData{P: s.prefix, Lead: "tagwatch asks " + label + " to end the access you gave it as " + s.grantView(g, watches).Account +
		", then deletes the tokens it keeps for it.", Action: action, Button: "Revoke access", Back: s.prefix + "/"}
	switch watches {
	case 0:
	case 1:
		d.Lines = append(d.Lines, "Your watch on "+label+" stops. It stays on this page, waiting, until you give access again from here.")
	default:
		d.Lines = append(d.Lines, "Your "+strconv.Itoa(watches)+" watches on "+label+" stop. They stay on this page, waiting, until you give access again from here.")
	}
	d.Lines = append(d.Lines, "You can still sign in to this page as you do now.")
	if watches > 0 {
		d.Lines = append(d.Lines, "A confirmation goes to where those watches notify you.")
	}
	d.Lines = append(d.Lines, "If "+label+" cannot be reached now, tagwatch keeps asking it until it answers; the tokens here are deleted at once.")
	d.Title = "Revoke tagwatch's access to " + label + "?"
	s.render(w, http.StatusOK, confirmTmpl, d)
}

// revocableGrant returns the user's grant at name and how many of the
// user's watches are there. A grant revoked already, none, or a page
// without Access is *vault.NotFoundError.
func (s *Service) revocableGrant(sess session, name string) (vault.Grant, int, error) {
	ps := s.cfg.Store
	if s.pages().Access == nil {
		return vault.Grant{}, 0, &vault.NotFoundError{Kind: "grant", ID: name}
	}
	g, err := ps.UserGrant(sess.userID, name)
	if err != nil {
		return g, 0, err
	}
	if g.State == vault.GrantRevoked {
		return g, 0, &vault.NotFoundError{Kind: "grant", ID: name}
	}
	ws, err := ps.ListWatches(sess.userID)
	if err != nil {
		return g, 0, err
	}
	n := 0
	for _, w := range ws {
		if w.Provider == name {
			n++
		}
	}
	return g, n, nil
}

// deletePage asks before deleting everything tagwatch keeps for the
// user; it needs a recent sign-in.
func (s *Service) deletePage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok || !s.requireRecentAuth(w, r, sess, s.prefix+"/delete") {
		return
	}
	if s.pages().Access == nil {
		s.fail(w, r, refuse(reasonNotFound, errors.New("deleting data is not wired")))
		return
	}
	ps := s.cfg.Store
	v, err := s.userView(ps, sess, 0, s.cfg.Now())
	if err != nil {
		s.readFailed(w, r, sess, err)
		return
	}
	d := &confirmData{P: s.prefix, Lead: "tagwatch deletes everything it keeps for you, and you are signed out.",
		Action: s.prefix + "/delete", Button: "Delete all my data", Back: s.prefix + "/"}
	switch n := len(v.Watches); n {
	case 0:
	case 1:
		d.Lines = append(d.Lines, "Your watch, with its run history and recent matches.")
	default:
		d.Lines = append(d.Lines, "Your "+strconv.Itoa(n)+" watches, with their run history and recent matches.")
	}
	var live []string
	for _, g := range v.Grants {
		if g.State != string(vault.GrantRevoked) {
			live = append(live, g.ProviderLabel)
		}
	}
	if len(live) > 0 {
		d.Lines = append(d.Lines, "The access you gave tagwatch at "+andList(live)+": revoked there, and its tokens deleted here.")
	}
	d.Lines = append(d.Lines, "Notifications not sent yet, and any link tagwatch sent you that is still unused.")
	if len(v.Watches) > 0 {
		d.Lines = append(d.Lines, "A confirmation goes to where your watches notified you. Nothing else is sent after it.")
	}
	d.Title = "Delete all your data?"
	s.render(w, http.StatusOK, confirmTmpl, d)
}

// deletedPage is where a deletion ends. It shows the same text to
// anyone: it reads nothing and changes nothing.
func (s *Service) deletedPage(w http.ResponseWriter, r *http.Request) {
	d := &messageData{Kind: "ok", Message: "tagwatch deleted everything it kept for you and signed you out. If your watches had somewhere to notify you, a confirmation is on its way there.",
		Note: "tagwatch also asked each provider to end the access you gave it; if one could not be reached, tagwatch keeps asking until it answers."}
	d.Title = "Your data was deleted"
	s.render(w, http.StatusOK, messageTmpl, d)
}

// andList says "a", "a and b", "a, b and c".
func andList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}
