package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/worker"
)

// The operator type implements the status socket's backend. It is a door:
// it turns each request into one call of the domain (the vault's methods,
// enroll.Service.CreateLink, renew.Manager.Unenroll, the notifier's outbox
// views and Replay), maps the domain's errors once (apiErr) and shows
// targets only through notify.TargetLabel. It opens no transaction of its
// own.
var _ statusapi.Backend = (*operator)(nil)

// apiErr maps the domain's errors to the status API's, once (classify):
// the answer's message is the domain's own text, which names the object
// (`watch "nosuch" does not exist`), without the prefixes of the layers
// that wrapped it.
func apiErr(err error) error {
	kind, shown := classify(err)
	switch kind {
	case refusalNotFound:
		return fmt.Errorf("%w: %w", statusapi.ErrNotFound, shown)
	case refusalInvalid:
		return fmt.Errorf("%w: %w", statusapi.ErrInvalid, shown)
	case refusalConflict:
		return fmt.Errorf("%w: %w", statusapi.ErrConflict, shown)
	}
	return err
}

// Status reports version, uptime, readiness, counts, the last errors (but
// the alerts of usage caps that lifted since: currentErrors), the rate
// limits holding users' runs now (RateLimits, from the worker's table of
// holds) and the providers' usage caps in force (UsageCaps, from the
// worker's state, which a restart restores from the vault: usageCaps).
// Counts.Watches counts the watches by state and, under "invalid", those
// the current rules refuse (not scheduled, not run).
func (o *operator) Status(ctx context.Context) (statusapi.Status, error) {
	now := time.Now()
	st := statusapi.Status{Version: Version(), Started: o.d.started, Uptime: now.Sub(o.d.started).Seconds(),
		Ready: o.ready.Load(), Components: map[string]string{}, LastErrors: o.errs.list()}
	c, err := o.counts()
	if err != nil {
		return st, err
	}
	st.Counts = c
	if err := o.alive(ctx); err != nil {
		st.Components["liveness"] = err.Error()
	} else {
		st.Components["liveness"] = "ok"
	}
	if o.hk().RateHolds != nil {
		st.RateLimits = o.hk().RateHolds()
	}
	if st.UsageCaps, err = o.usageCaps(); err != nil {
		return st, err
	}
	st.LastErrors = o.currentErrors(st.LastErrors, st.UsageCaps)
	st.Components["vault"] = "ok"
	if err := o.statusDamaged(&st); err != nil { // damaged.go
		return st, err
	}
	st.Components["renewal"] = "ok"
	if o.hk().SchedulerAlive == nil {
		st.Components["scheduler"] = "not wired"
	} else {
		st.Components["scheduler"] = "ok"
	}
	return st, nil
}

// usageCaps lists the usage caps in force (the worker's), each with how
// many of its provider's watches it suspends (read from the vault only
// when a cap is in force).
func (o *operator) usageCaps() ([]statusapi.UsageCap, error) {
	if o.hk().UsageCaps == nil {
		return nil, nil
	}
	caps := o.hk().UsageCaps()
	if len(caps) == 0 {
		return nil, nil
	}
	watches, err := o.d.db.ListWatches("")
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, w := range watches {
		if w.State == vault.WatchSuspended && w.SuspendReason == vault.SuspendUsageCapped {
			n[w.Provider]++
		}
	}
	for i := range caps {
		caps[i].Watches = n[caps[i].Provider]
	}
	return caps, nil
}

// currentErrors is errs without the usage-cap alerts (worker.UsageCapAlert)
// of providers whose cap is not in force now (caps): such a cap lifted
// after the alert (a probe got through, or an operator resumed the
// provider), so it is no current error. Without the scheduler's view of
// the caps every error stays.
func (o *operator) currentErrors(errs []statusapi.ErrorEntry, caps []statusapi.UsageCap) []statusapi.ErrorEntry {
	if o.hk().UsageCaps == nil {
		return errs
	}
	capped := map[string]bool{}
	for _, c := range caps {
		capped[c.Provider] = true
	}
	return slices.DeleteFunc(errs, func(e statusapi.ErrorEntry) bool {
		return e.Message == worker.UsageCapAlert && !capped[detailAttr(e.Detail, "provider")]
	})
}

// detailAttr is the value of key in an ErrorEntry.Detail (slog's text
// form, key=value separated by spaces), or "". It is for values that are
// never quoted, such as provider names (config: [a-z][a-z0-9_-]*).
func detailAttr(detail, key string) string {
	for _, f := range strings.Fields(detail) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// usageCapsByProvider are the usage caps in force, by provider, read once
// for a listing of watches.
func (o *operator) usageCapsByProvider() map[string]statusapi.UsageCap {
	if o.hk().UsageCaps == nil {
		return nil
	}
	out := map[string]statusapi.UsageCap{}
	for _, c := range o.hk().UsageCaps() {
		out[c.Provider] = c
	}
	return out
}

// counts sizes the vault's collections by state, through the vault's read
// methods (each its own read transaction: the counts are a moment's view,
// not one snapshot).
func (o *operator) counts() (statusapi.Counts, error) {
	db := o.d.db
	c := statusapi.Counts{Grants: map[string]int{}, Watches: map[string]int{}, Outbox: map[string]int{}, Enrollments: map[string]int{}}
	users, err := db.ListUsers()
	if err != nil {
		return c, err
	}
	c.Users = len(users)
	grants, err := db.ListGrants()
	if err != nil {
		return c, err
	}
	for _, g := range grants {
		c.Grants[string(g.State)]++
	}
	// ListGrants has just put every grant it skipped into the register:
	// count from it rather than opening every grant's sealed fields again.
	damaged, err := db.DamagedRecords()
	if err != nil {
		return c, err
	}
	for _, r := range damaged {
		if r.Kind == vault.KindGrant {
			c.Grants[statusapi.GrantDamaged]++
		}
	}
	watches, err := db.ListWatches("")
	if err != nil {
		return c, err
	}
	for _, w := range watches {
		c.Watches[string(w.State)]++
		// Refused by the current rules: not scheduled, not run (and
		// counted in its state too).
		if worker.Refused(db, w.Watch) != nil {
			c.Watches["invalid"]++
		}
	}
	tallies, err := db.OutboxTallies()
	if err != nil {
		return c, err
	}
	add := func(state vault.OutboxState, n int) {
		if n > 0 {
			c.Outbox[string(state)] += n
		}
	}
	for _, t := range tallies {
		add(vault.OutboxPending, t.Pending)
		add(vault.OutboxRetrying, t.Retrying)
		add(vault.OutboxDead, t.Dead)
		add(vault.OutboxDropped, t.Dropped)
		add(vault.OutboxDelivered, t.Delivered)
	}
	links, err := db.ListLinks(db.Now())
	if err != nil {
		return c, err
	}
	for _, l := range links {
		c.Enrollments[string(l.State)]++
	}
	return c, nil
}

// Users lists the users with how many grants and watches each has, and
// how many of each are damaged (vault.DB.DamagedRecords, read after the
// listings that skip them: left out of the counts, listed by tagwatchctl
// damaged).
func (o *operator) Users(ctx context.Context) ([]statusapi.User, error) {
	db := o.d.db
	grants, err := db.ListGrants()
	if err != nil {
		return nil, err
	}
	watches, err := db.ListWatches("")
	if err != nil {
		return nil, err
	}
	users, err := db.ListUsers()
	if err != nil {
		return nil, err
	}
	damaged, err := db.DamagedRecords()
	if err != nil {
		return nil, err
	}
	perGrant, perWatch := map[string]int{}, map[string]int{}
	badGrant, badWatch := map[string]int{}, map[string]int{}
	for _, g := range grants {
		perGrant[g.UserID]++
	}
	for _, w := range watches {
		perWatch[w.UserID]++
	}
	for _, r := range damaged {
		switch r.Kind {
		case vault.KindGrant:
			badGrant[r.UserID]++
		case vault.KindWatch:
			badWatch[r.UserID]++
		}
	}
	out := make([]statusapi.User, 0, len(users))
	for _, u := range users {
		out = append(out, statusapi.User{ID: u.ID, Name: u.Name, Email: u.Email, CreatedAt: u.CreatedAt,
			Grants: perGrant[u.ID], Watches: perWatch[u.ID], DamagedGrants: badGrant[u.ID], DamagedWatches: badWatch[u.ID]})
	}
	return out, nil
}

// grantHealth copies what an operator may see of a grant: never a token.
func grantHealth(g vault.Grant) statusapi.Grant {
	h := statusapi.Grant{ID: g.ID, UserID: g.UserID, Provider: g.Provider, Subject: g.Subject, Username: g.Username,
		Scopes: g.Scopes, State: string(g.State), StateSince: g.StateSince, CreatedAt: g.CreatedAt,
		AccessExpiry: g.AccessExpiry, LastRefresh: g.LastRefreshAt, RefreshCount: g.RefreshCount,
		LastErrorClass: g.LastErrorClass, LastErrorAt: g.LastErrorAt, RefreshInFlight: g.RefreshInFlight, RefreshHolder: g.RefreshHolder,
		LostRotations: g.LostRotations}
	if g.State == vault.GrantNeedsReconsent {
		h.NeedsReconsentSince = g.StateSince
	}
	return h
}

// Grants lists every grant's health, the damaged ones too
// (vault.DB.DamagedGrants: state "damaged", what is wrong and the
// commands that repair it), in id order.
func (o *operator) Grants(ctx context.Context) ([]statusapi.Grant, error) {
	grants, err := o.d.db.ListGrants()
	if err != nil {
		return nil, err
	}
	dgs, err := o.d.db.DamagedGrants()
	if err != nil {
		return nil, err
	}
	out := make([]statusapi.Grant, 0, len(grants)+len(dgs))
	for _, g := range grants {
		out = append(out, grantHealth(g))
	}
	for _, g := range dgs {
		out = append(out, damagedGrantView(g))
	}
	slices.SortFunc(out, func(a, b statusapi.Grant) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// damagedGrantView is a damaged grant as the grants listing shows it:
// whose, where, what is wrong and the repair (tagwatchctl damaged).
func damagedGrantView(g vault.DamagedGrant) statusapi.Grant {
	return statusapi.Grant{ID: g.ID, UserID: g.UserID, Provider: g.Provider, State: statusapi.GrantDamaged, Problem: g.Problem,
		Repair: []string{"tagwatchctl damaged reset " + g.ID, "tagwatchctl damaged delete grant " + g.ID}}
}

// damagedGrantOf indexes the damaged grants by user and provider: the
// watches of that user at that provider do not run (watchView says why).
func (o *operator) damagedGrantOf() (map[[2]string]string, error) {
	dgs, err := o.d.db.DamagedGrants()
	if err != nil {
		return nil, err
	}
	out := make(map[[2]string]string, len(dgs))
	for _, g := range dgs {
		out[[2]string{g.UserID, g.Provider}] = g.ID
	}
	return out, nil
}

// heldByDamage says why a watch does not run while its user's grant at its
// provider is damaged; "" when it is not.
func heldByDamage(w vault.Watch, damagedGrants map[[2]string]string) string {
	if id, ok := damagedGrants[[2]string{w.UserID, w.Provider}]; ok {
		return fmt.Sprintf("its grant %s is damaged (tagwatchctl damaged)", id)
	}
	return ""
}

// Revoke unenrolls a grant (renew.Manager.Unenroll): tokens deleted here
// and the watches suspended at once; the answer says whether the provider
// confirmed the revocation or it is queued and retried.
func (o *operator) Revoke(ctx context.Context, grantID, actor string) (statusapi.RevokeResult, error) {
	res, err := o.d.renew.Unenroll(ctx, grantID, actor)
	if err != nil {
		return statusapi.RevokeResult{}, apiErr(err)
	}
	if !res.AlreadyRevoked {
		o.hk().watchesChanged()
		o.d.notify.Kick() // the user is told
	}
	return statusapi.RevokeResult{RevokedAtProvider: res.RevokedAtProvider, Queued: res.Queued, AlreadyRevoked: res.AlreadyRevoked}, nil
}

// targetLabels shows targets as notify.TargetLabel does.
func targetLabels(ts []string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = notify.TargetLabel(t)
	}
	return out
}

// watchView is what operators see of a watch: its fields (targets as
// notify.TargetLabel shows them), its cursor, when the scheduler fires it
// next, when the current rules refuse it (worker.Refused, as the
// scheduler and check-config decide), the rule's message in Invalid, and
// the rate limit holding its user's runs at its provider in RateLimited,
// its provider's usage cap in UsageCap (NextRun is then the watch's next
// probe: worker.Status), and in Held why it does not run while its grant
// is damaged (damagedGrants, from damagedGrantOf).
//
// caps are the usage caps in force by provider (usageCapsByProvider).
func (o *operator) watchView(w vault.Watch, c vault.Cursor, damagedGrants map[[2]string]string, caps map[string]statusapi.UsageCap) statusapi.Watch {
	v := statusapi.Watch{ID: w.ID, UserID: w.UserID, Provider: w.Provider, Hashtags: w.Hashtags, Lang: w.Lang,
		IncludeRetweets: w.IncludeRetweets, Schedule: w.Schedule, Targets: targetLabels(w.Targets), State: string(w.State),
		SuspendReason: string(w.SuspendReason), CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, LastRunAt: c.LastRunAt,
		LastResult: c.LastResult, LastError: c.LastError, Cursor: c.SinceID, Runs: c.Runs, PostsRead: c.PostsRead, Matches: c.Matches}
	if o.hk().NextRun != nil && w.Runs() {
		if t, ok := o.hk().NextRun(w.ID); ok {
			v.NextRun = t
		}
	}
	if o.hk().Held != nil && w.Runs() {
		if h, ok := o.hk().Held(w.UserID, w.Provider); ok {
			v.RateLimited = &h
		}
	}
	if c, ok := caps[w.Provider]; ok && w.Runs() {
		v.UsageCap = &c
	}
	if why := worker.Refused(o.d.db, w); why != nil {
		v.Invalid = why.Error()
	}
	v.Held = heldByDamage(w, damagedGrants)
	return v
}

// changedView is the view of a watch a change returned, with its cursor
// read afterwards (a watch deleted meanwhile shows without one).
func (o *operator) changedView(w vault.Watch) statusapi.Watch {
	c := vault.Cursor{WatchID: w.ID}
	if wc, err := o.d.db.Watch(w.ID); err == nil {
		c = wc.Cursor
	}
	dg, err := o.damagedGrantOf()
	if err != nil {
		o.d.log.Warn("damaged grants not read: the watch is shown without them", "watch", w.ID, "err", err)
	}
	return o.watchView(w, c, dg, o.usageCapsByProvider())
}

// Watches lists every watch with its cursor and last run, the rule's
// message for each one the current rules refuse and why each one whose
// grant is damaged does not run (watchView).
func (o *operator) Watches(ctx context.Context) ([]statusapi.Watch, error) {
	ws, err := o.d.db.ListWatches("")
	if err != nil {
		return nil, err
	}
	dg, err := o.damagedGrantOf()
	if err != nil {
		return nil, err
	}
	caps := o.usageCapsByProvider()
	out := make([]statusapi.Watch, len(ws))
	for i, w := range ws {
		out[i] = o.watchView(w.Watch, w.Cursor, dg, caps)
	}
	return out, nil
}

// AddWatch adds a watch for a user with a grant at the provider
// (vault.DB.AddWatch: checked by the rules; suspended when the grant is
// not active).
func (o *operator) AddWatch(ctx context.Context, req statusapi.AddWatch, actor string) (statusapi.Watch, error) {
	spec := vault.WatchSpec{Hashtags: req.Hashtags, Lang: req.Lang, IncludeRetweets: req.IncludeRetweets,
		Schedule: req.Schedule, Targets: req.Targets, Backfill: req.Backfill}
	w, err := o.d.db.AddWatch(vault.NewWatch{UserID: req.UserID, Provider: req.Provider, Spec: spec}, actor)
	if errors.Is(err, vault.ErrDuplicateWatch) {
		return statusapi.Watch{}, fmt.Errorf("%w: user %q already has this watch at %q: watch %s", statusapi.ErrConflict,
			req.UserID, req.Provider, w.ID)
	}
	if err != nil {
		return statusapi.Watch{}, apiErr(err)
	}
	o.hk().watchesChanged()
	return o.changedView(w), nil
}

// ChangeWatch changes the fields req sets (vault.DB.ChangeWatch: the
// result is checked by the rules).
func (o *operator) ChangeWatch(ctx context.Context, id string, req statusapi.ChangeWatch, actor string) (statusapi.Watch, error) {
	w, err := o.d.db.ChangeWatch(id, vault.WatchChange{Hashtags: req.Hashtags, Lang: req.Lang, IncludeRetweets: req.IncludeRetweets,
		Schedule: req.Schedule, Targets: req.Targets}, actor)
	if err != nil {
		return statusapi.Watch{}, apiErr(err)
	}
	o.hk().watchesChanged()
	return o.changedView(w), nil
}

// PauseWatch pauses a watch, or resumes it (vault.DB.PauseWatch and
// ResumeWatch: a paused watch whose grant needs consent resumes into
// suspended, not active). Resuming a watch the usage cap suspended is a
// conflict that says when its next probe is and how to probe now
// (cappedResumeError).
func (o *operator) PauseWatch(ctx context.Context, id string, pause bool, actor string) (statusapi.Watch, error) {
	move := o.d.db.ResumeWatch
	if pause {
		move = o.d.db.PauseWatch
	}
	w, changed, err := move(id, actor)
	if err != nil {
		if !pause {
			err = o.cappedResumeError(id, err)
		}
		return statusapi.Watch{}, apiErr(err)
	}
	if changed {
		o.hk().watchesChanged()
	}
	return o.changedView(w), nil
}

// DeleteWatch removes a watch and its cursor (vault.DB.DeleteWatch).
func (o *operator) DeleteWatch(ctx context.Context, id, actor string) error {
	if _, err := o.d.db.DeleteWatch(id, actor); err != nil {
		return apiErr(err)
	}
	o.hk().watchesChanged()
	return nil
}

// cappedResumeError is the vault's refusal err to resume watch id when
// its provider's usage cap suspended it, told the way operators act on
// it: it resumes by itself when a probe gets through, the provider's next
// probe is at T (in D: as status and the watches' NEXT RUN say), and
// `tagwatchctl watches run ID` probes now. Any other error comes back as
// it is.
func (o *operator) cappedResumeError(id string, err error) error {
	var te *vault.TransitionError
	if !errors.As(err, &te) {
		return err
	}
	w, rerr := o.d.db.Watch(id)
	if rerr != nil || w.State != vault.WatchSuspended || w.SuspendReason != vault.SuspendUsageCapped {
		return err
	}
	next := "no probe is planned while the scheduler is not running"
	if c, ok := o.usageCapsByProvider()[w.Provider]; ok && !c.NextProbe.IsZero() {
		t := c.NextProbe
		next = "the next probe is at " + t.UTC().Format("2006-01-02 15:04:05Z") + " (in " +
			max(time.Until(t), 0).Round(time.Second).String() + ")"
	}
	out := *te
	out.Why = fmt.Sprintf("the usage cap of %s is reached: the watch resumes by itself, with every watch the cap suspended, "+
		"when a probe gets through; %s; `tagwatchctl watches run %s` probes now", w.Provider, next, id)
	return &out
}

// RunWatch asks the scheduler to run a watch now: an active watch, or one
// the usage cap suspended, whose manual run is the cap's probe, at once
// (worker.RunNow: if the provider answers, its watches resume; if it is
// still capped, they stay suspended and the next probe is planned a probe
// interval on).
func (o *operator) RunWatch(ctx context.Context, id, actor string) error {
	w, err := o.d.db.Watch(id)
	if err != nil {
		return apiErr(err)
	}
	if !w.Runs() {
		return apiErr(&vault.TransitionError{Kind: "watch", ID: id, Action: "run", State: w.StateText(),
			Why: "only active watches run, and those the usage cap suspended (as its probe)"})
	}
	if o.hk().RunNow == nil {
		return fmt.Errorf("%w: the scheduler is not running in this daemon", statusapi.ErrUnavailable)
	}
	return apiErr(o.hk().RunNow(ctx, id))
}

// Outbox is the notifier's own view of the outbox (notify.Service.Outbox).
func (o *operator) Outbox(ctx context.Context, state string, limit int) (statusapi.Outbox, error) {
	v, err := o.d.notify.Outbox(state, limit)
	if err != nil {
		return statusapi.Outbox{}, apiErr(err)
	}
	out := statusapi.Outbox{Targets: make([]statusapi.OutboxTarget, len(v.Targets)), Rows: make([]statusapi.OutboxRow, len(v.Rows))}
	for i, t := range v.Targets {
		out.Targets[i] = statusapi.OutboxTarget(t)
	}
	for i, r := range v.Rows {
		out.Rows[i] = statusapi.OutboxRow(r)
	}
	return out, nil
}

// Replay queues a dead or dropped notification again under the same id
// (notify.Service.Replay, which audits it and wakes the delivery loop).
func (o *operator) Replay(ctx context.Context, id, actor string) (statusapi.OutboxRow, error) {
	e, err := o.d.notify.Replay(id, actor)
	if err != nil {
		return statusapi.OutboxRow{}, apiErr(err)
	}
	return statusapi.OutboxRow(e), nil
}

// Audit returns the events q selects, oldest first (see
// statusapi.AuditQuery). The newest ones are found by reading the trail
// from q.After on and keeping the last q.Limit.
func (o *operator) Audit(ctx context.Context, q statusapi.AuditQuery) ([]statusapi.AuditEvent, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	// ring holds the last q.Limit events read; n counts them all.
	ring := make([]statusapi.AuditEvent, 0, min(q.Limit, 1024))
	n := 0
	errFull := errors.New("full")
	err := o.d.db.AuditTrail(q.After, func(e vault.AuditEvent) error {
		switch {
		case q.Before > 0 && e.Seq >= q.Before:
			return errFull
		case len(ring) < q.Limit:
			ring = append(ring, statusapi.AuditEvent(e))
		case q.Newest:
			ring[n%q.Limit] = statusapi.AuditEvent(e)
		default:
			return errFull
		}
		n++
		return nil
	})
	if errors.Is(err, errFull) {
		err = nil
	}
	if n > q.Limit {
		i := n % q.Limit
		ring = append(append(make([]statusapi.AuditEvent, 0, q.Limit), ring[i:]...), ring[:i]...)
	}
	return ring, err
}

// RecordRequest writes an operator's request to the audit trail
// (vault.DB.RecordAudit).
func (o *operator) RecordRequest(ev statusapi.AuditEvent) error {
	return o.d.db.RecordAudit(vault.AuditEvent{Kind: ev.Kind, Actor: ev.Actor, Detail: ev.Detail})
}

func specFromAPI(s *statusapi.WatchSpec) *vault.WatchSpec {
	if s == nil {
		return nil
	}
	return &vault.WatchSpec{Hashtags: s.Hashtags, Lang: s.Lang, IncludeRetweets: s.IncludeRetweets, Schedule: s.Schedule,
		Targets: s.Targets, Backfill: s.Backfill}
}

func specToAPI(s *vault.WatchSpec) *statusapi.WatchSpec {
	if s == nil {
		return nil
	}
	return &statusapi.WatchSpec{Hashtags: s.Hashtags, Lang: s.Lang, IncludeRetweets: s.IncludeRetweets, Schedule: s.Schedule,
		Targets: targetLabels(s.Targets), Backfill: s.Backfill}
}

func enrollmentView(e vault.Enrollment, state vault.LinkState) statusapi.Enrollment {
	return statusapi.Enrollment{ID: e.ID, Purpose: string(e.Purpose), State: string(state), UserID: e.UserID,
		Provider: e.Provider, Expected: e.Expected, Watch: specToAPI(e.Watch), GrantID: e.GrantID, CreatedBy: e.CreatedBy,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, UsedAt: e.UsedAt}
}

// Enroll creates a one-time consent link (enroll.Service.CreateLink, which
// checks the link and its watch by the vault's rules); the answer is the
// only place the link is ever shown.
func (o *operator) Enroll(ctx context.Context, req statusapi.EnrollRequest, actor string) (statusapi.EnrollResponse, error) {
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return statusapi.EnrollResponse{}, fmt.Errorf("%w: ttl must be a positive duration such as 72h", statusapi.ErrInvalid)
		}
	}
	purpose := vault.PurposeEnroll
	if req.SignIn {
		purpose = vault.PurposeSignIn
	}
	link, rec, err := o.d.enroll.CreateLink(ctx, vault.LinkRequest{UserID: strings.TrimSpace(req.UserID), UserName: req.UserName,
		UserEmail: req.UserEmail, Provider: req.Provider, Expected: req.Expected, Watch: specFromAPI(req.Watch), TTL: ttl,
		Purpose: purpose, CreatedBy: "tagwatchctl " + actor})
	if err != nil {
		return statusapi.EnrollResponse{}, apiErr(err)
	}
	return statusapi.EnrollResponse{Link: link, Enrollment: enrollmentView(rec, vault.LinkPending)}, nil
}

// Enrollments lists the consent links, newest first (vault.DB.ListLinks).
func (o *operator) Enrollments(ctx context.Context) ([]statusapi.Enrollment, error) {
	links, err := o.d.db.ListLinks(o.d.db.Now())
	if err != nil {
		return nil, err
	}
	out := make([]statusapi.Enrollment, len(links))
	for i, l := range links {
		out[i] = enrollmentView(l.Enrollment, l.State)
	}
	return out, nil
}

// CancelEnrollment makes a link unusable (vault.DB.CancelLink).
func (o *operator) CancelEnrollment(ctx context.Context, id, actor string) error {
	return apiErr(o.d.db.CancelLink(id, actor))
}

// Keys describes the keyring.
func (o *operator) Keys(ctx context.Context) (statusapi.Keys, error) {
	ks, err := o.d.db.KeyStatus()
	if err != nil {
		return statusapi.Keys{}, err
	}
	k := statusapi.Keys{MasterID: ks.MasterID, Active: ks.Active, DataKeys: []statusapi.DataKey{}}
	for _, d := range ks.Keys {
		k.DataKeys = append(k.DataKeys, statusapi.DataKey(d))
	}
	return k, nil
}

// RotateKeys makes a new data key active, re-seals every record under it
// and retires the old keys no record uses. It runs while the daemon works.
func (o *operator) RotateKeys(ctx context.Context, actor string) (statusapi.RotateResult, error) {
	id, err := o.d.db.RotateDataKey(actor, 100)
	if err != nil {
		return statusapi.RotateResult{}, err
	}
	o.d.log.Info("data key rotated", "key", id, "actor", actor)
	return statusapi.RotateResult{Active: id}, nil
}

// Backup streams a consistent copy of the vault.
func (o *operator) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return o.d.db.Backup(w)
}

var _ statusapi.DaemonsBackend = (*operator)(nil)

// Daemons lists the daemons sharing the store (kv.Cluster.Daemons: the
// registry their heartbeats keep), each with the claims it holds now by
// kind (watch runs: worker.ClaimKind; notifications: notify.ClaimKind),
// whether its last heartbeat is within storage.lease (kv.Cluster.Alive,
// on the store's clock), and this daemon marked Self. On a store one
// daemon owns (bbolt) the list is this daemon alone, holding no claims:
// it runs everything without them.
func (o *operator) Daemons(ctx context.Context) ([]statusapi.Daemon, error) {
	cl := o.d.db.Cluster()
	ds, err := cl.Daemons(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: the registry of daemons: %w", statusapi.ErrUnavailable, err)
	}
	out := make([]statusapi.Daemon, 0, len(ds))
	for _, d := range ds {
		alive, err := cl.Alive(ctx, d.ID, o.d.db.Lease())
		if err != nil {
			return nil, fmt.Errorf("%w: the registry of daemons: %w", statusapi.ErrUnavailable, err)
		}
		v := statusapi.Daemon{ID: d.ID, Host: d.Host, PID: d.PID, Version: d.Version, Started: d.Started,
			Heartbeat: d.Heartbeat, Alive: alive, Self: d.ID == o.d.db.Holder(),
			Watches: d.Holds[worker.ClaimKind], Outbox: d.Holds[notify.ClaimKind]}
		for k, n := range d.Holds {
			if n > 0 {
				if v.Holds == nil {
					v.Holds = map[string]int{}
				}
				v.Holds[k] = n
			}
		}
		out = append(out, v)
	}
	return out, nil
}
