package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
)

// The operator type implements the status socket's backend over the
// daemon's vault and components.
var _ statusapi.Backend = (*operator)(nil)

// apiErr maps the vault's and components' errors to the status API's.
func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, notify.ErrNotFound):
		return fmt.Errorf("%w: %v", statusapi.ErrNotFound, err)
	case errors.Is(err, enroll.ErrInvalidRequest), errors.Is(err, enroll.ErrUnknownProvider):
		return fmt.Errorf("%w: %v", statusapi.ErrInvalid, err)
	case errors.Is(err, enroll.ErrLinkUsed), errors.Is(err, vault.ErrExists):
		return fmt.Errorf("%w: %v", statusapi.ErrConflict, err)
	}
	return err
}

// Status reports version, uptime, readiness, counts and the last errors.
func (o *operator) Status(ctx context.Context) (statusapi.Status, error) {
	now := time.Now()
	st := statusapi.Status{Version: Version(), Started: o.d.started, Uptime: now.Sub(o.d.started).Seconds(),
		Ready: o.ready.Load(), Components: map[string]string{}, LastErrors: o.errs.list()}
	c := statusapi.Counts{Grants: map[string]int{}, Watches: map[string]int{}, Outbox: map[string]int{}, Enrollments: map[string]int{}}
	err := o.d.db.View(func(tx *vault.Tx) error {
		if err := tx.Users(func(vault.User) error { c.Users++; return nil }); err != nil {
			return err
		}
		if err := tx.Grants(func(g vault.Grant) error { c.Grants[string(g.State)]++; return nil }); err != nil {
			return err
		}
		if err := tx.Watches(func(w vault.Watch) error { c.Watches[string(w.State)]++; return nil }); err != nil {
			return err
		}
		if err := tx.Outbox(func(r vault.OutboxRow) error { c.Outbox[string(r.State)]++; return nil }); err != nil {
			return err
		}
		return tx.Enrollments(func(e vault.Enrollment) error { c.Enrollments[string(linkState(e, now))]++; return nil })
	})
	if err != nil {
		return st, err
	}
	st.Counts = c
	if err := o.alive(ctx); err != nil {
		st.Components["liveness"] = err.Error()
	} else {
		st.Components["liveness"] = "ok"
	}
	st.Components["vault"] = "ok"
	st.Components["renewal"] = "ok"
	if o.hk().SchedulerAlive == nil {
		st.Components["scheduler"] = "not wired"
	} else {
		st.Components["scheduler"] = "ok"
	}
	return st, nil
}

// linkState is a link's state at now (as enroll.ListLinks computes it).
func linkState(e vault.Enrollment, now time.Time) enroll.LinkState {
	switch {
	case !e.UsedAt.IsZero():
		return enroll.LinkUsed
	case e.Canceled:
		return enroll.LinkCanceled
	case !now.Before(e.ExpiresAt):
		return enroll.LinkExpired
	}
	return enroll.LinkPending
}

// Users lists the users with how many grants and watches each has.
func (o *operator) Users(ctx context.Context) ([]statusapi.User, error) {
	var users []statusapi.User
	err := o.d.db.View(func(tx *vault.Tx) error {
		grants, watches := map[string]int{}, map[string]int{}
		if err := tx.Grants(func(g vault.Grant) error { grants[g.UserID]++; return nil }); err != nil {
			return err
		}
		if err := tx.Watches(func(w vault.Watch) error { watches[w.UserID]++; return nil }); err != nil {
			return err
		}
		return tx.Users(func(u vault.User) error {
			users = append(users, statusapi.User{ID: u.ID, Name: u.Name, Email: u.Email, CreatedAt: u.CreatedAt,
				Grants: grants[u.ID], Watches: watches[u.ID]})
			return nil
		})
	})
	return users, err
}

// grantHealth copies what an operator may see of a grant: never a token.
func grantHealth(g vault.Grant) statusapi.Grant {
	h := statusapi.Grant{ID: g.ID, UserID: g.UserID, Provider: g.Provider, Subject: g.Subject, Username: g.Username,
		Scopes: g.Scopes, State: string(g.State), StateSince: g.StateSince, CreatedAt: g.CreatedAt,
		AccessExpiry: g.AccessExpiry, LastRefresh: g.LastRefreshAt, RefreshCount: g.RefreshCount,
		LastErrorClass: g.LastErrorClass, LastErrorAt: g.LastErrorAt, RefreshInFlight: g.RefreshInFlight,
		LostRotations: g.LostRotations}
	if g.State == vault.GrantNeedsReconsent {
		h.NeedsReconsentSince = g.StateSince
	}
	return h
}

// Grants lists every grant's health.
func (o *operator) Grants(ctx context.Context) ([]statusapi.Grant, error) {
	var out []statusapi.Grant
	err := o.d.db.View(func(tx *vault.Tx) error {
		return tx.Grants(func(g vault.Grant) error { out = append(out, grantHealth(g)); return nil })
	})
	return out, err
}

// Revoke unenrolls a grant: tokens deleted here, revoked at the provider.
func (o *operator) Revoke(ctx context.Context, grantID, actor string) error {
	if err := o.d.db.View(func(tx *vault.Tx) error { _, err := tx.Grant(grantID); return err }); err != nil {
		return apiErr(err)
	}
	if err := o.d.renew.Unenroll(ctx, grantID, actor); err != nil {
		return apiErr(err)
	}
	o.hk().watchesChanged()
	return nil
}

// showTarget hides what a webhook URL's path and query may carry (a token
// in the path is common) and keeps enough to tell targets apart.
func showTarget(t string) string {
	u, err := url.Parse(t)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return t
	}
	if u.Path == "" || u.Path == "/" {
		if u.RawQuery == "" && u.User == nil {
			return t
		}
	}
	sum := sha256.Sum256([]byte(t))
	return u.Scheme + "://" + u.Host + "/…#" + hex.EncodeToString(sum[:4])
}

func showTargets(ts []string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = showTarget(t)
	}
	return out
}

func (o *operator) watchView(w vault.Watch, c vault.Cursor) statusapi.Watch {
	v := statusapi.Watch{ID: w.ID, UserID: w.UserID, Provider: w.Provider, Hashtags: w.Hashtags, Lang: w.Lang,
		IncludeRetweets: w.IncludeRetweets, Schedule: w.Schedule, Targets: showTargets(w.Targets), State: string(w.State),
		SuspendReason: w.SuspendReason, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, LastRunAt: c.LastRunAt,
		LastResult: c.LastResult, LastError: c.LastError, Cursor: c.SinceID, Runs: c.Runs, PostsRead: c.PostsRead, Matches: c.Matches}
	if o.hk().NextRun != nil && w.State == vault.WatchActive {
		if t, ok := o.hk().NextRun(w.ID); ok {
			v.NextRun = t
		}
	}
	return v
}

// Watches lists every watch with its cursor and last run.
func (o *operator) Watches(ctx context.Context) ([]statusapi.Watch, error) {
	var out []statusapi.Watch
	err := o.d.db.View(func(tx *vault.Tx) error {
		return tx.Watches(func(w vault.Watch) error {
			c, err := tx.Cursor(w.ID)
			if err != nil {
				return err
			}
			out = append(out, o.watchView(w, c))
			return nil
		})
	})
	return out, err
}

// checkSpec normalises and checks a watch as enrollment links are checked.
func (o *operator) checkSpec(spec *vault.WatchSpec) error {
	if err := enroll.CheckWatch(spec); err != nil {
		return fmt.Errorf("%w: %v", statusapi.ErrInvalid, err)
	}
	if err := o.d.validateWatch(*spec); err != nil {
		return fmt.Errorf("%w: %v", statusapi.ErrInvalid, err)
	}
	return nil
}

// AddWatch adds a watch for a user with a grant at the provider; it starts
// suspended when the grant is not active.
func (o *operator) AddWatch(ctx context.Context, req statusapi.AddWatch, actor string) (statusapi.Watch, error) {
	spec := vault.WatchSpec{Hashtags: req.Hashtags, Lang: req.Lang, IncludeRetweets: req.IncludeRetweets,
		Schedule: req.Schedule, Targets: req.Targets, Backfill: req.Backfill}
	if req.UserID == "" || req.Provider == "" {
		return statusapi.Watch{}, fmt.Errorf("%w: user_id and provider are required", statusapi.ErrInvalid)
	}
	if err := o.checkSpec(&spec); err != nil {
		return statusapi.Watch{}, err
	}
	now := o.d.db.Now()
	w := vault.Watch{ID: vault.NewID(), UserID: req.UserID, Provider: req.Provider, WatchSpec: spec, State: vault.WatchActive,
		CreatedAt: now, UpdatedAt: now}
	err := o.d.db.Update(func(tx *vault.Tx) error {
		g, err := tx.UserGrant(req.UserID, req.Provider)
		if errors.Is(err, vault.ErrNotFound) {
			return fmt.Errorf("%w: user %q has no grant at %q: enroll them first", statusapi.ErrInvalid, req.UserID, req.Provider)
		}
		if err != nil {
			return err
		}
		if g.State != vault.GrantActive {
			w.State, w.SuspendReason = vault.WatchSuspended, string(g.State)
		}
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		return tx.Audit(vault.AuditEvent{Kind: "watch_added", Actor: actor, UserID: w.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("watch %s: %d hashtags, schedule %q", w.ID, len(w.Hashtags), w.Schedule)})
	})
	if err != nil {
		return statusapi.Watch{}, apiErr(err)
	}
	o.hk().watchesChanged()
	return o.watchView(w, vault.Cursor{WatchID: w.ID}), nil
}

// updateWatch changes a watch in one transaction and tells the scheduler.
func (o *operator) updateWatch(id, actor, kind string, fn func(w *vault.Watch, tx *vault.Tx) error) (statusapi.Watch, error) {
	var w vault.Watch
	var c vault.Cursor
	err := o.d.db.Update(func(tx *vault.Tx) error {
		var err error
		if w, err = tx.Watch(id); err != nil {
			return err
		}
		if err := fn(&w, tx); err != nil {
			return err
		}
		w.UpdatedAt = tx.Now()
		if err := tx.PutWatch(w); err != nil {
			return err
		}
		if c, err = tx.Cursor(id); err != nil {
			return err
		}
		return tx.Audit(vault.AuditEvent{Kind: kind, Actor: actor, UserID: w.UserID, Detail: "watch " + w.ID})
	})
	if err != nil {
		return statusapi.Watch{}, apiErr(err)
	}
	o.hk().watchesChanged()
	return o.watchView(w, c), nil
}

// ChangeWatch changes the fields req sets, checked like a new watch.
func (o *operator) ChangeWatch(ctx context.Context, id string, req statusapi.ChangeWatch, actor string) (statusapi.Watch, error) {
	return o.updateWatch(id, actor, "watch_changed", func(w *vault.Watch, tx *vault.Tx) error {
		spec := w.WatchSpec
		if req.Hashtags != nil {
			spec.Hashtags = req.Hashtags
		}
		if req.Lang != nil {
			spec.Lang = *req.Lang
		}
		if req.IncludeRetweets != nil {
			spec.IncludeRetweets = *req.IncludeRetweets
		}
		if req.Schedule != nil {
			spec.Schedule = *req.Schedule
		}
		if req.Targets != nil {
			spec.Targets = req.Targets
		}
		if err := o.checkSpec(&spec); err != nil {
			return err
		}
		w.WatchSpec = spec
		return nil
	})
}

// PauseWatch pauses an active watch or resumes a paused one. A suspended
// watch waits for its grant: it can be neither.
func (o *operator) PauseWatch(ctx context.Context, id string, pause bool, actor string) (statusapi.Watch, error) {
	kind := "watch_resumed"
	if pause {
		kind = "watch_paused"
	}
	return o.updateWatch(id, actor, kind, func(w *vault.Watch, tx *vault.Tx) error {
		if w.State == vault.WatchSuspended {
			return fmt.Errorf("%w: watch %s is suspended (%s): it resumes when its grant is usable again", statusapi.ErrConflict, w.ID, w.SuspendReason)
		}
		if pause {
			w.State = vault.WatchPaused
			return nil
		}
		g, err := tx.UserGrant(w.UserID, w.Provider)
		if err != nil {
			return err
		}
		if g.State != vault.GrantActive {
			return fmt.Errorf("%w: the grant of watch %s is %s", statusapi.ErrConflict, w.ID, g.State)
		}
		w.State = vault.WatchActive
		return nil
	})
}

// DeleteWatch removes a watch and its cursor.
func (o *operator) DeleteWatch(ctx context.Context, id, actor string) error {
	err := o.d.db.Update(func(tx *vault.Tx) error {
		w, err := tx.Watch(id)
		if err != nil {
			return err
		}
		if err := tx.DeleteWatch(id); err != nil {
			return err
		}
		return tx.Audit(vault.AuditEvent{Kind: "watch_deleted", Actor: actor, UserID: w.UserID, Detail: "watch " + id})
	})
	if err != nil {
		return apiErr(err)
	}
	o.hk().watchesChanged()
	return nil
}

// RunWatch asks the scheduler to run a watch now.
func (o *operator) RunWatch(ctx context.Context, id, actor string) error {
	var w vault.Watch
	if err := o.d.db.View(func(tx *vault.Tx) error { var err error; w, err = tx.Watch(id); return err }); err != nil {
		return apiErr(err)
	}
	if w.State != vault.WatchActive {
		return fmt.Errorf("%w: watch %s is %s", statusapi.ErrConflict, id, w.State)
	}
	if o.hk().RunNow == nil {
		return fmt.Errorf("%w: the scheduler is not running in this daemon", statusapi.ErrUnavailable)
	}
	return apiErr(o.hk().RunNow(ctx, id))
}

func outboxView(r vault.OutboxRow) statusapi.OutboxRow {
	return statusapi.OutboxRow{ID: r.ID, Kind: r.Kind, UserID: r.UserID, WatchID: r.WatchID, Target: showTarget(r.Target),
		State: string(r.State), Attempts: r.Attempts, CreatedAt: r.CreatedAt, NextAttempt: r.NextAttempt, LastError: r.LastError}
}

// Outbox counts the rows per target and lists up to limit rows in state.
func (o *operator) Outbox(ctx context.Context, state string, limit int) (statusapi.Outbox, error) {
	out := statusapi.Outbox{Targets: []statusapi.OutboxTarget{}, Rows: []statusapi.OutboxRow{}}
	byTarget := map[string]*statusapi.OutboxTarget{}
	err := o.d.db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			name := showTarget(r.Target)
			t := byTarget[name]
			if t == nil {
				t = &statusapi.OutboxTarget{Target: name}
				byTarget[name] = t
			}
			switch r.State {
			case vault.OutboxPending:
				t.Pending++
			case vault.OutboxRetrying:
				t.Retrying++
			case vault.OutboxDead:
				t.Dead++
			case vault.OutboxDropped:
				t.Dropped++
			case vault.OutboxDelivered:
				t.Delivered++
			}
			if (r.State == vault.OutboxPending || r.State == vault.OutboxRetrying) && (t.OldestWaiting.IsZero() || r.CreatedAt.Before(t.OldestWaiting)) {
				t.OldestWaiting = r.CreatedAt
			}
			if (state == "all" || string(r.State) == state) && len(out.Rows) < limit {
				out.Rows = append(out.Rows, outboxView(r))
			}
			return nil
		})
	})
	for _, t := range byTarget {
		out.Targets = append(out.Targets, *t)
	}
	sort.Slice(out.Targets, func(i, j int) bool { return out.Targets[i].Target < out.Targets[j].Target })
	return out, err
}

// Replay puts a dead row back in the queue under the same id, due now:
// through the delivery loop when it runs, else in the vault.
func (o *operator) Replay(ctx context.Context, id, actor string) (statusapi.OutboxRow, error) {
	var r vault.OutboxRow
	h := o.hk()
	if h.Replay != nil {
		if err := o.d.db.View(func(tx *vault.Tx) error { var err error; r, err = tx.OutboxRow(id); return err }); err != nil {
			return statusapi.OutboxRow{}, apiErr(err)
		}
		if err := h.Replay(id); err != nil {
			if errors.Is(err, notify.ErrNotDead) {
				return statusapi.OutboxRow{}, fmt.Errorf("%w: notification %s is %s; only dead or dropped ones are replayed", statusapi.ErrConflict, id, r.State)
			}
			return statusapi.OutboxRow{}, apiErr(err)
		}
		err := o.d.db.Update(func(tx *vault.Tx) error {
			var err error
			if r, err = tx.OutboxRow(id); err != nil {
				return err
			}
			return tx.Audit(vault.AuditEvent{Kind: "outbox_replayed", Actor: actor, UserID: r.UserID, Detail: "notification " + id})
		})
		if err != nil {
			return statusapi.OutboxRow{}, apiErr(err)
		}
	} else {
		err := o.d.db.Update(func(tx *vault.Tx) error {
			var err error
			if r, err = tx.OutboxRow(id); err != nil {
				return err
			}
			if r.State != vault.OutboxDead {
				return fmt.Errorf("%w: notification %s is %s; only dead ones are replayed", statusapi.ErrConflict, id, r.State)
			}
			r.State, r.Attempts, r.NextAttempt, r.LastError = vault.OutboxPending, 0, tx.Now(), ""
			if err := tx.PutOutboxRow(r); err != nil {
				return err
			}
			return tx.Audit(vault.AuditEvent{Kind: "outbox_replayed", Actor: actor, UserID: r.UserID, Detail: "notification " + id})
		})
		if err != nil {
			return statusapi.OutboxRow{}, apiErr(err)
		}
	}
	if h.OutboxChanged != nil {
		h.OutboxChanged()
	}
	return outboxView(r), nil
}

// Audit returns up to limit events after seq.
func (o *operator) Audit(ctx context.Context, after uint64, limit int) ([]statusapi.AuditEvent, error) {
	var out []statusapi.AuditEvent
	errFull := errors.New("full")
	err := o.d.db.View(func(tx *vault.Tx) error {
		return tx.AuditTrail(after, func(e vault.AuditEvent) error {
			if len(out) >= limit {
				return errFull
			}
			out = append(out, statusapi.AuditEvent(e))
			return nil
		})
	})
	if errors.Is(err, errFull) {
		err = nil
	}
	return out, err
}

// RecordRequest writes an operator's request to the audit trail.
func (o *operator) RecordRequest(ev statusapi.AuditEvent) error {
	return o.d.db.Update(func(tx *vault.Tx) error {
		return tx.Audit(vault.AuditEvent{Kind: ev.Kind, Actor: ev.Actor, Detail: ev.Detail})
	})
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
		Targets: showTargets(s.Targets), Backfill: s.Backfill}
}

func enrollmentView(e vault.Enrollment, state enroll.LinkState) statusapi.Enrollment {
	return statusapi.Enrollment{ID: e.ID, Purpose: string(e.Purpose), State: string(state), UserID: e.UserID,
		Provider: e.Provider, Expected: e.Expected, Watch: specToAPI(e.Watch), GrantID: e.GrantID, CreatedBy: e.CreatedBy,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, UsedAt: e.UsedAt}
}

// Enroll creates a one-time consent link; the answer is the only place
// the link is ever shown.
func (o *operator) Enroll(ctx context.Context, req statusapi.EnrollRequest, actor string) (statusapi.EnrollResponse, error) {
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return statusapi.EnrollResponse{}, fmt.Errorf("%w: ttl must be a positive duration such as 72h", statusapi.ErrInvalid)
		}
	}
	if req.Watch == nil {
		return statusapi.EnrollResponse{}, fmt.Errorf("%w: a watch is required", statusapi.ErrInvalid)
	}
	link, rec, err := o.d.enroll.CreateLink(ctx, enroll.LinkRequest{UserID: strings.TrimSpace(req.UserID), UserName: req.UserName,
		UserEmail: req.UserEmail, Provider: req.Provider, Expected: req.Expected, Watch: specFromAPI(req.Watch), TTL: ttl,
		CreatedBy: "tagwatchctl " + actor})
	if err != nil {
		return statusapi.EnrollResponse{}, apiErr(err)
	}
	return statusapi.EnrollResponse{Link: link, Enrollment: enrollmentView(rec, enroll.LinkPending)}, nil
}

// Enrollments lists the consent links, newest first.
func (o *operator) Enrollments(ctx context.Context) ([]statusapi.Enrollment, error) {
	links, err := o.d.enroll.ListLinks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]statusapi.Enrollment, len(links))
	for i, l := range links {
		out[i] = enrollmentView(l.Enrollment, l.State)
	}
	return out, nil
}

// CancelEnrollment makes a link unusable.
func (o *operator) CancelEnrollment(ctx context.Context, id, actor string) error {
	return apiErr(o.d.enroll.CancelLink(ctx, id, actor))
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
