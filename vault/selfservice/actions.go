package selfservice

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"tagwatch/vault"
)

// This file is the page's actions: every change is a POST, passes the
// cross-origin check (Handler), runs for the signed-in user only (each
// vault call takes vault.Owner: another user's watch is not found, as a
// missing one, and nothing changes), and ends in a 303 to a page that
// says what happened, or in the form's page again with the domain's
// refusal next to the form and nothing changed.

// maxForm bounds the body of a page's form.
const maxForm = 16 << 10

// parseForm reads a POST's form, bounded.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	return r.ParseForm()
}

// formSession is requireSession for a form's POST, whose form it then
// reads (parseForm; badForm when it cannot). false: the request was
// answered.
func (s *Service) formSession(w http.ResponseWriter, r *http.Request) (session, bool) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return sess, false
	}
	if err := parseForm(w, r); err != nil {
		s.badForm(w, r, sess, err)
		return sess, false
	}
	return sess, true
}

// badForm answers a form that could not be read (too large, malformed).
func (s *Service) badForm(w http.ResponseWriter, r *http.Request, sess session, err error) {
	s.log.Info("account page request refused", "reason", "bad_form", "method", r.Method, "path", r.URL.Path,
		"user", sess.userID, "err", err.Error())
	d := s.withBack(&messageData{Kind: "error", Message: "Nothing was changed. Go back to your tagwatch page and try again."})
	d.Title = "This form could not be read"
	s.render(w, http.StatusBadRequest, messageTmpl, d)
}

// domainMessage returns what the page says next to a form for a refusal
// by the domain: the rule's own message for a watch the rules refuse,
// and false for any other error (not the person's to fix).
func domainMessage(err error) (string, bool) {
	var ie *vault.InvalidError
	switch {
	case errors.Is(err, vault.ErrDuplicateWatch):
		return "you already have a watch with these hashtags, this schedule and these targets.", true
	case errors.As(err, &ie):
		if ie.Err == nil {
			return ie.Error(), true
		}
		return ie.Err.Error(), true
	}
	return "", false
}

// splitHashtags reads the hashtags field: words separated by spaces or
// commas. Never nil: an empty field asks for no hashtags, which the rules
// refuse.
func splitHashtags(v string) []string {
	out := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if out == nil {
		out = []string{}
	}
	return out
}

// errTargetGone: a form names a target (by key) the user no longer has.
var errTargetGone = errors.New("a target you chose is no longer one of yours; choose again")

// formTargets reads the targets a form names: the checked ones, by key,
// among the user's own (of any of their watches), then the new ones, one
// per line. Never nil.
func formTargets(form url.Values, ws []vault.WatchWithCursor) ([]string, error) {
	own := map[string]string{}
	for _, w := range ws {
		for _, t := range w.Targets {
			own[targetKey(t)] = t
		}
	}
	out := []string{}
	for _, k := range form["target"] {
		t, ok := own[k]
		if !ok {
			return out, errTargetGone
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, line := range strings.Split(form.Get("new_targets"), "\n") {
		if t := strings.TrimSpace(line); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// echoForm is the form as the person filled it, to show again with a
// refusal: the hashtags and schedule as typed, the targets chosen still
// chosen, the new ones as typed (their own input, on a page only they
// see, never stored).
func echoForm(f *watchForm, form url.Values) {
	f.Hashtags, f.Schedule, f.NewTargets = form.Get("hashtags"), form.Get("schedule"), form.Get("new_targets")
	for i := range f.Targets {
		f.Targets[i].Checked = slices.Contains(form["target"], f.Targets[i].Key)
	}
}

// watchFormSpec reads the add and change forms (parsed): the watch they
// ask for, their hashtags, schedule and targets, with the form echoed into
// form (echoForm) for the page to show it again. A target named by key
// must be one of the user's own (formTargets): errTargetGone, a refusal
// to show next to the form; any other error is a failed read of the
// user's watches.
func (s *Service) watchFormSpec(r *http.Request, sess session, form *watchForm) (vault.WatchSpec, error) {
	ws, err := s.cfg.Store.ListWatches(sess.userID)
	if err != nil {
		return vault.WatchSpec{}, err
	}
	echoForm(form, r.PostForm)
	targets, err := formTargets(r.PostForm, ws)
	if err != nil {
		return vault.WatchSpec{}, err
	}
	return vault.WatchSpec{Hashtags: splitHashtags(r.PostForm.Get("hashtags")), Schedule: strings.TrimSpace(r.PostForm.Get("schedule")),
		Targets: targets}, nil
}

// changed tells the scheduler about w, and logs what the page did.
func (s *Service) changed(sess session, what string, w vault.Watch, deleted bool) {
	s.log.Info("account page changed a watch", "user", sess.userID, "watch", w.ID, "change", what, "state", string(w.State))
	sch := s.pages().Scheduler
	switch {
	case sch == nil:
	case deleted:
		sch.Remove(w.ID)
	default:
		if err := sch.Upsert(w); err != nil {
			s.log.Warn("schedule a watch the page changed", "user", sess.userID, "watch", w.ID, "err", err)
		}
	}
}

// addWatch adds a watch on the user's grant at the form's provider.
func (s *Service) addWatch(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.formSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	name := r.PostForm.Get("provider")
	d, err := s.newWatchData(sess, name)
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	spec, err := s.watchFormSpec(r, sess, &d.Form)
	if errors.Is(err, errTargetGone) {
		d.Err = err.Error()
		s.render(w, http.StatusUnprocessableEntity, newWatchTmpl, d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	wt, err := ps.AddWatch(vault.NewWatch{UserID: sess.userID, Provider: name, Spec: spec}, actor, vault.Owner{UserID: sess.userID})
	if msg, ok := domainMessage(err); ok {
		s.log.Info("account page refused a watch", "user", sess.userID, "provider", name, "err", err.Error())
		d.Err = msg
		s.render(w, http.StatusUnprocessableEntity, newWatchTmpl, d)
		return
	}
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	s.changed(sess, "added", wt, false)
	s.redirect(w, s.prefix+"/?done=added&watch="+url.QueryEscape(wt.ID)+"#watch-"+url.PathEscape(wt.ID))
}

// changeWatch changes a watch's hashtags, schedule and targets.
func (s *Service) changeWatch(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.formSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	id := r.PathValue("id")
	d, _, err := s.watchPageData(sess, id)
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	spec, err := s.watchFormSpec(r, sess, &d.Form)
	if errors.Is(err, errTargetGone) {
		d.ChangeErr = err.Error()
		s.render(w, http.StatusUnprocessableEntity, watchTmpl, d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	wt, err := ps.ChangeWatch(id, vault.WatchChange{Hashtags: spec.Hashtags, Schedule: &spec.Schedule, Targets: spec.Targets},
		actor, vault.Owner{UserID: sess.userID})
	if msg, ok := domainMessage(err); ok {
		s.log.Info("account page refused a change", "user", sess.userID, "watch", id, "err", err.Error())
		d.ChangeErr = msg
		s.render(w, http.StatusUnprocessableEntity, watchTmpl, d)
		return
	}
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	s.changed(sess, "changed", wt, false)
	s.redirect(w, d.W.Path+"?done=changed#top") // not the form's #change: the notice is at the top
}

func (s *Service) pauseWatch(w http.ResponseWriter, r *http.Request)  { s.moveWatch(w, r, true) }
func (s *Service) resumeWatch(w http.ResponseWriter, r *http.Request) { s.moveWatch(w, r, false) }

// moveWatch pauses or resumes a watch, then returns to the page the form
// was on ("from": "watch" for the watch's own page, else the page's
// start). A resume the domain refuses (a suspension whose cause is still
// there) shows the watch's page with why.
func (s *Service) moveWatch(w http.ResponseWriter, r *http.Request, pause bool) {
	sess, ok := s.formSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	id := r.PathValue("id")
	move, what := ps.ResumeWatch, "resumed"
	if pause {
		move, what = ps.PauseWatch, "paused"
	}
	wt, changed, err := move(id, actor, vault.Owner{UserID: sess.userID})
	if errors.Is(err, vault.ErrConflict) && !pause {
		d, _, rerr := s.watchPageData(sess, id)
		if rerr != nil {
			s.watchFailed(w, r, sess, rerr)
			return
		}
		s.log.Info("account page refused a resume", "user", sess.userID, "watch", id, "err", err.Error())
		d.MoveErr = "This watch cannot be resumed now. " + d.W.Why
		d.Form.Hashtags, d.Form.Schedule = strings.Join(d.W.Hashtags, " "), d.W.Schedule
		s.render(w, http.StatusConflict, watchTmpl, d)
		return
	}
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	code := what
	switch {
	case !changed:
		code = "unchanged"
	case !pause && wt.State != vault.WatchActive:
		code = "waiting"
	}
	if changed {
		s.changed(sess, what, wt, false)
	}
	path := s.prefix + "/watches/" + url.PathEscape(wt.ID)
	if r.PostForm.Get("from") == "watch" {
		s.redirect(w, path+"?done="+code)
		return
	}
	s.redirect(w, s.prefix+"/?done="+code+"&watch="+url.QueryEscape(wt.ID)+"#watch-"+url.PathEscape(wt.ID))
}

// deleteWatch deletes a watch (its confirmation page asked first).
func (s *Service) deleteWatch(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	wt, err := ps.DeleteWatch(r.PathValue("id"), actor, vault.Owner{UserID: sess.userID})
	if err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	s.changed(sess, "deleted", wt, true)
	s.redirect(w, s.prefix+"/?done=deleted")
}

// reconsent sends the browser to a fresh re-consent link for the user's
// grant at the provider, when it needs one: the consent pages' landing
// page (vault/enroll), bound to the grant's account, as renewal's own
// re-consent links are. Where the access was revoked (the grant revoked,
// or deleted since) and the user still has watches there, the link gives
// access again, bound to the account the user had there (the revoked
// grant's, or the sign-in it left: vault.DB.UnenrollGrant); using it
// resumes those watches. An active grant returns to the page, which
// says so; a provider the user has nothing at is not found.
func (s *Service) reconsent(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	ps := s.cfg.Store
	name := r.PathValue("provider")
	links := s.pages().Links
	req := vault.LinkRequest{UserID: sess.userID, Provider: name, Purpose: vault.PurposeReconsent, CreatedBy: actor}
	g, err := ps.UserGrant(sess.userID, name)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		g = vault.Grant{}
	case err != nil:
		s.watchFailed(w, r, sess, err)
		return
	}
	switch {
	case links == nil:
		s.watchFailed(w, r, sess, &vault.NotFoundError{Kind: "grant", ID: name})
		return
	case g.State == vault.GrantActive:
		s.redirect(w, s.prefix+"/?done=active")
		return
	case g.State == vault.GrantNeedsReconsent:
		req.GrantID, req.Expected = g.ID, g.Subject
	default: // revoked, or gone: give access again, to the watches waiting
		account, ok := s.formerAccount(ps, sess.userID, name, g)
		if !ok {
			s.watchFailed(w, r, sess, &vault.NotFoundError{Kind: "grant", ID: name})
			return
		}
		req.GrantID, req.Expected = g.ID, account
	}
	link, rec, err := links.CreateLink(r.Context(), req)
	if err != nil {
		s.fail(w, r, &failure{reason: reasonInternal, err: err, attrs: []any{"user", sess.userID, "provider", name}})
		return
	}
	s.log.Info("account page made a re-consent link", "user", sess.userID, "provider", name, "enrollment", rec.ID)
	s.redirect(w, link)
}

// formerAccount returns the account a user whose access at provider was
// revoked had there, for a link that gives it again: the revoked grant's
// (g, when there is one), else the sign-in its revocation left
// (User.SignIns; "" when neither says, and any account may consent). ok
// is false when the user has no watch there: nothing to give access for.
func (s *Service) formerAccount(ps PageStore, userID, providerName string, g vault.Grant) (string, bool) {
	ws, err := ps.ListWatches(userID)
	if err != nil || !slices.ContainsFunc(ws, func(w vault.WatchWithCursor) bool { return w.Provider == providerName }) {
		return "", false
	}
	if g.Subject != "" {
		return g.Subject, true
	}
	u, err := ps.User(userID)
	if err != nil {
		return "", true
	}
	for _, si := range u.SignIns {
		if si.Provider == providerName {
			return si.Subject, true
		}
	}
	return "", true
}

// revoke ends tagwatch's access at a provider (Access.Revoke: at the
// provider, then here; the user told), after a recent sign-in and its
// confirmation page.
func (s *Service) revoke(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	name := r.PathValue("provider")
	if !s.requireRecentAuth(w, r, sess, s.prefix+"/grants/"+url.PathEscape(name)+"/revoke") {
		return
	}
	if _, _, err := s.revocableGrant(sess, name); err != nil {
		s.watchFailed(w, r, sess, err)
		return
	}
	if err := s.pages().Access.Revoke(r.Context(), sess.userID, name); err != nil {
		s.fail(w, r, &failure{reason: reasonInternal, err: err, attrs: []any{"user", sess.userID, "provider", name}})
		return
	}
	s.log.Info("account page revoked access", "user", sess.userID, "provider", name)
	s.redirect(w, s.prefix+"/?done=revoked")
}

// deleteData deletes everything kept for the user (Access.DeleteUser,
// which queues the confirmation), after a recent sign-in and its
// confirmation page, then ends every page session of the user.
func (s *Service) deleteData(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok || !s.requireRecentAuth(w, r, sess, s.prefix+"/delete") {
		return
	}
	acc := s.pages().Access
	if acc == nil {
		s.fail(w, r, refuse(reasonNotFound, errors.New("deleting data is not wired")))
		return
	}
	out, err := acc.DeleteUser(r.Context(), sess.userID, actor)
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		s.fail(w, r, &failure{reason: reasonInternal, err: err, attrs: []any{"user", sess.userID}})
		return
	}
	s.log.Info("account page deleted the user's data", "user", sess.userID, "watches", out.Watches, "grants", len(out.Grants),
		"notices", out.Notices)
	// Every page session of the user ends, in every browser, not only
	// this one.
	s.sessions.delete(sessionID(r))
	s.sessions.endUser(sess.userID)
	s.clearSessionCookie(w)
	s.redirect(w, s.prefix+"/deleted")
}
