package enroll

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"tagwatch/vault"
	"tagwatch/vault/httpsec"
	"tagwatch/vault/provider"
)

// commit stores what a successful callback learnt, in one transaction:
// the link is re-checked and marked used, the user and the grant (sealed
// tokens) are written, the link's watch is created or the user's watches
// suspended for re-consent are resumed, an "enrolled" notice is queued per
// watch target, and the audit trail records it. No network I/O happens
// here. Refusals come back as *failure.
func (s *Service) commit(f *flow, p Provider, tr *provider.TokenResult, id provider.Identity, granted []string) (string, error) {
	var grantID string
	err := s.cfg.DB.Update(func(tx *vault.Tx) error {
		now := tx.Now()
		e, err := tx.Enrollment(f.linkHash)
		if errors.Is(err, vault.ErrNotFound) {
			return refuse(reasonLinkUnknown, errors.New("link deleted during the flow"))
		}
		if err != nil {
			return err
		}
		// The clock of the flow, not the vault's: they are the same in the
		// daemon, and tests move the service's.
		if err := linkStatus(e, s.cfg.Now()); err != nil {
			return linkFailure(err)
		}
		if e.UserID != f.userID || e.Provider != f.provider {
			return fmt.Errorf("link %s changed user or provider during the flow", e.ID)
		}

		u, err := tx.User(e.UserID)
		if errors.Is(err, vault.ErrNotFound) {
			u, err = vault.User{ID: e.UserID}, nil
		}
		if err != nil {
			return err
		}
		if u.Name == "" {
			u.Name = httpsec.Clip(id.Name, 200)
		}
		if err := tx.PutUser(u); err != nil {
			return err
		}

		var old vault.Grant
		if e.Purpose == vault.PurposeReconsent && e.GrantID != "" {
			old, err = tx.Grant(e.GrantID)
		} else {
			old, err = tx.UserGrant(e.UserID, e.Provider)
		}
		switch {
		case errors.Is(err, vault.ErrNotFound):
			old = vault.Grant{}
		case err != nil:
			return err
		case old.UserID != e.UserID || old.Provider != e.Provider:
			return fmt.Errorf("grant %s belongs to another user or provider", old.ID)
		case e.Purpose == vault.PurposeReconsent && old.Subject != "" && old.Subject != id.Subject:
			// Re-consent renews the same account's grant; another account
			// needs a new enrollment link.
			return refuse(reasonWrongAccount, fmt.Errorf("re-consent by subject %q for grant %s of subject %q", id.Subject, old.ID, old.Subject))
		}
		g := vault.Grant{
			ID:              old.ID,
			UserID:          e.UserID,
			Provider:        e.Provider,
			Issuer:          id.Issuer,
			Subject:         id.Subject,
			Username:        id.Username,
			Scopes:          granted,
			State:           vault.GrantActive,
			CreatedAt:       old.CreatedAt,
			StateSince:      now,
			AccessExpiry:    tr.Expiry,
			IDTokenAudience: id.Audience,
		}
		if g.ID == "" {
			g.ID = e.GrantID
		}
		if g.ID == "" {
			g.ID = vault.NewID()
		}
		if g.Issuer == "" {
			g.Issuer = p.Issuer()
		}
		if err := tx.SealTokens(&g, vault.Tokens{Refresh: tr.Refresh, Access: tr.Access}); err != nil {
			return err
		}
		if err := tx.PutGrant(g); err != nil {
			return err
		}
		grantID = g.ID

		e.UsedAt = now
		e.GrantID = g.ID
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}

		var touched, resume []vault.Watch
		resumed := map[string]bool{}
		err = tx.UserWatches(e.UserID, func(w vault.Watch) error {
			if w.Provider == e.Provider && w.State == vault.WatchSuspended && w.SuspendReason == SuspendNeedsReconsent {
				resume = append(resume, w)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, w := range resume {
			w.State, w.SuspendReason = vault.WatchActive, ""
			if err := tx.PutWatch(w); err != nil {
				return err
			}
			touched = append(touched, w)
			resumed[w.ID] = true
		}
		if e.Purpose == vault.PurposeEnroll && e.Watch != nil {
			w := vault.Watch{ID: vault.NewID(), UserID: e.UserID, Provider: e.Provider, WatchSpec: *e.Watch, State: vault.WatchActive}
			if err := tx.PutWatch(w); err != nil {
				return err
			}
			touched = append(touched, w)
		}

		for _, w := range touched {
			n := vault.Notice{Type: vault.NoticeEnrolled, UserID: e.UserID, WatchID: w.ID, Provider: e.Provider,
				Hashtags: w.Hashtags, Time: now, Message: noticeMessage(resumed[w.ID], w)}
			payload, err := json.Marshal(n)
			if err != nil {
				return err
			}
			for _, t := range w.Targets {
				row := vault.OutboxRow{ID: vault.OutboxID(e.UserID, w.ID, e.ID, vault.NoticeEnrolled, t),
					Kind: vault.NoticeEnrolled, UserID: e.UserID, WatchID: w.ID, Target: t, Payload: payload}
				if _, err := tx.Enqueue(row); err != nil {
					return err
				}
			}
		}

		who := id.Subject
		if id.Username != "" {
			who += " (" + id.Username + ")"
		}
		if err := tx.Audit(vault.AuditEvent{Kind: vault.AuditEnrollmentUsed, Actor: httpsec.Clip(who, 200), UserID: e.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("%s link %s used at provider %s; %d watches started or resumed", e.Purpose, e.ID, e.Provider, len(touched))}); err != nil {
			return err
		}
		detail := "new grant"
		if old.ID != "" {
			detail = "grant replaced (was " + string(old.State) + ")"
		}
		return tx.Audit(vault.AuditEvent{Kind: vault.AuditGrantStored, Actor: httpsec.Clip(who, 200), UserID: e.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("%s; scopes %s", detail, httpsec.Clip(strings.Join(granted, " "), 300))})
	})
	if err != nil {
		return "", err
	}
	return grantID, nil
}

func noticeMessage(resumed bool, w vault.Watch) string {
	tags := make([]string, len(w.Hashtags))
	for i, h := range w.Hashtags {
		tags[i] = "#" + h
	}
	if resumed {
		return "tagwatch has access again: the watch of " + strings.Join(tags, " ") + " resumes where it stopped."
	}
	return "tagwatch now watches " + strings.Join(tags, " ") + " " + cadence(w.Schedule) + "."
}
