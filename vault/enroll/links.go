package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tagwatch/vault"
)

// LinkRequest asks for a one-time consent link.
type LinkRequest struct {
	// UserID is the user the grant will belong to. Required.
	UserID string
	// UserName and UserEmail describe a new user; when set they also update
	// an existing one.
	UserName  string
	UserEmail string
	// Provider names the provider the user will consent at. Required.
	Provider string
	// Expected, when set, is the identity that must consent: a subject, a
	// username (with or without @) or an email. Another identity is refused.
	Expected string
	// Watch is the watch a used link starts. Required for PurposeEnroll.
	Watch *vault.WatchSpec
	// Purpose is vault.PurposeEnroll (default) or vault.PurposeReconsent.
	Purpose vault.EnrollmentPurpose
	// GrantID is the grant a re-consent link renews. Required for
	// PurposeReconsent.
	GrantID string
	// TTL is the link's lifetime; default Config.LinkTTL, at most MaxLinkTTL.
	TTL time.Duration
	// CreatedBy names the operator or component asking, for the audit trail
	// and the landing page.
	CreatedBy string
}

// CreateLink stores a one-time consent link and returns it with its record.
// The link, <PublicURL>/enroll/<token>, carries 256 random bits; only their
// hash is stored, so the link cannot be shown again. Errors wrap
// ErrInvalidRequest or ErrUnknownProvider for a bad request.
func (s *Service) CreateLink(ctx context.Context, req LinkRequest) (string, vault.Enrollment, error) {
	if err := ctx.Err(); err != nil {
		return "", vault.Enrollment{}, err
	}
	if err := s.checkLinkRequest(&req); err != nil {
		return "", vault.Enrollment{}, err
	}
	now := s.cfg.Now()
	var (
		token string
		rec   vault.Enrollment
	)
	err := s.cfg.DB.Update(func(tx *vault.Tx) error {
		if req.Purpose == vault.PurposeReconsent {
			g, err := tx.Grant(req.GrantID)
			if errors.Is(err, vault.ErrNotFound) {
				return fmt.Errorf("%w: grant %s does not exist", ErrInvalidRequest, req.GrantID)
			}
			if err != nil {
				return err
			}
			if g.UserID != req.UserID || g.Provider != req.Provider {
				return fmt.Errorf("%w: grant %s belongs to another user or provider", ErrInvalidRequest, req.GrantID)
			}
		}
		u, err := tx.User(req.UserID)
		switch {
		case errors.Is(err, vault.ErrNotFound):
			u = vault.User{ID: req.UserID}
		case err != nil:
			return err
		}
		if req.UserName != "" || req.UserEmail != "" || u.CreatedAt.IsZero() {
			if req.UserName != "" {
				u.Name = req.UserName
			}
			if req.UserEmail != "" {
				u.Email = req.UserEmail
			}
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		var werr error
		token, rec, werr = tx.CreateEnrollment(vault.Enrollment{
			Purpose:   req.Purpose,
			UserID:    req.UserID,
			Provider:  req.Provider,
			Expected:  req.Expected,
			Watch:     req.Watch,
			GrantID:   req.GrantID,
			CreatedBy: req.CreatedBy,
			ExpiresAt: now.Add(req.TTL),
		})
		return werr
	})
	if err != nil {
		return "", vault.Enrollment{}, fmt.Errorf("enroll: create link: %w", err)
	}
	s.log.Info("consent link created", "user", rec.UserID, "provider", rec.Provider, "enrollment", rec.ID,
		"purpose", string(rec.Purpose), "expires", rec.ExpiresAt)
	return s.base.String() + "/enroll/" + token, rec, nil
}

func (s *Service) checkLinkRequest(req *LinkRequest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if req.UserID == "" || len(req.UserID) > 200 || !printable(req.UserID) {
		return bad("user id must be 1 to 200 printable characters")
	}
	if _, ok := s.provider(req.Provider); !ok {
		return fmt.Errorf("%w %q", ErrUnknownProvider, req.Provider)
	}
	if len(req.UserName) > 200 || !printable(req.UserName) {
		return bad("user name must be at most 200 printable characters")
	}
	if req.UserEmail != "" {
		if a, err := mail.ParseAddress(req.UserEmail); err != nil || a.Address != req.UserEmail {
			return bad("user email %q is not a plain mail address", req.UserEmail)
		}
	}
	if len(req.Expected) > 320 || !printable(req.Expected) {
		return bad("expected identity must be at most 320 printable characters")
	}
	if len(req.CreatedBy) > 200 || !printable(req.CreatedBy) {
		return bad("created by must be at most 200 printable characters")
	}
	if req.TTL == 0 {
		req.TTL = s.cfg.LinkTTL
	}
	if req.TTL < time.Minute || req.TTL > MaxLinkTTL {
		return bad("ttl must be between 1m and %s, got %s", MaxLinkTTL, req.TTL)
	}
	switch req.Purpose {
	case "", vault.PurposeEnroll:
		req.Purpose = vault.PurposeEnroll
		if req.Watch == nil {
			return bad("an enrollment link needs the watch it starts")
		}
		if req.GrantID != "" {
			return bad("an enrollment link names no grant")
		}
	case vault.PurposeReconsent:
		if req.GrantID == "" {
			return bad("a re-consent link needs the grant it renews")
		}
	default:
		return bad("unknown purpose %q", req.Purpose)
	}
	if req.Watch != nil {
		w := *req.Watch
		w.Hashtags = slices.Clone(w.Hashtags)
		w.Targets = slices.Clone(w.Targets)
		if err := CheckWatch(&w); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		if s.cfg.ValidateWatch != nil {
			if err := s.cfg.ValidateWatch(w); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
			}
		}
		req.Watch = &w
	}
	return nil
}

// CheckWatch checks what any watch needs and normalises it in place: at
// least one hashtag of letters, digits and underscores (a leading # is
// dropped; duplicates, case-insensitively, are removed), a schedule, and at
// least one notification target (console:, mailto:ADDRESS or an http(s)
// URL). The schedule's syntax and the hashtag limit are the daemon's to
// check (Config.ValidateWatch).
func CheckWatch(w *vault.WatchSpec) error {
	var tags []string
	for _, h := range w.Hashtags {
		h = strings.TrimPrefix(strings.TrimSpace(h), "#")
		if !ValidHashtag(h) {
			return fmt.Errorf("hashtag %q: use 1 to 100 letters, digits or underscores", h)
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return strings.EqualFold(t, h) }) {
			tags = append(tags, h)
		}
	}
	if len(tags) == 0 {
		return errors.New("a watch needs at least one hashtag")
	}
	w.Hashtags = tags
	w.Schedule = strings.TrimSpace(w.Schedule)
	if w.Schedule == "" || len(w.Schedule) > 200 || !printable(w.Schedule) {
		return errors.New("a watch needs a schedule")
	}
	if len(w.Targets) == 0 {
		return errors.New("a watch needs at least one notification target")
	}
	for _, t := range w.Targets {
		if err := checkTarget(t); err != nil {
			return err
		}
	}
	if len(w.Lang) > 35 || !printable(w.Lang) {
		return fmt.Errorf("lang %q is not a language tag", w.Lang)
	}
	return nil
}

// ValidHashtag reports whether h (without #) is a hashtag tagwatch can
// watch: 1 to 100 letters, digits or underscores, not only digits.
func ValidHashtag(h string) bool {
	if h == "" || utf8.RuneCountInString(h) > 100 {
		return false
	}
	digits := true
	for _, r := range h {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			return false
		}
		if !unicode.IsDigit(r) {
			digits = false
		}
	}
	return !digits
}

func checkTarget(t string) error {
	switch {
	case t == "console:":
		return nil
	case strings.HasPrefix(t, "mailto:"):
		addr := strings.TrimPrefix(t, "mailto:")
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr {
			return fmt.Errorf("target %q: not a plain mail address", t)
		}
		return nil
	case strings.HasPrefix(t, "https://"), strings.HasPrefix(t, "http://"):
		u, err := url.Parse(t)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || len(t) > 2000 {
			return fmt.Errorf("target %q: not a webhook URL without credentials", redactTarget(t))
		}
		return nil
	}
	return fmt.Errorf("target %q: use console:, mailto:ADDRESS or a webhook URL", redactTarget(t))
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// LinkState is where a consent link is in its life.
type LinkState string

// Link states.
const (
	LinkPending  LinkState = "pending"
	LinkUsed     LinkState = "used"
	LinkExpired  LinkState = "expired"
	LinkCanceled LinkState = "canceled"
)

// Link is a consent link as operators see it: the record without its hash,
// and its state now.
type Link struct {
	vault.Enrollment
	State LinkState
}

// ListLinks returns every consent link, newest first.
func (s *Service) ListLinks(ctx context.Context) ([]Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	var links []Link
	err := s.cfg.DB.View(func(tx *vault.Tx) error {
		return tx.Enrollments(func(e vault.Enrollment) error {
			e.Hash = ""
			l := Link{Enrollment: e, State: LinkPending}
			switch linkStatus(e, now) {
			case ErrLinkUsed:
				l.State = LinkUsed
			case ErrLinkCanceled:
				l.State = LinkCanceled
			case ErrLinkExpired:
				l.State = LinkExpired
			}
			links = append(links, l)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("enroll: list links: %w", err)
	}
	sort.SliceStable(links, func(i, j int) bool { return links[i].CreatedAt.After(links[j].CreatedAt) })
	return links, nil
}

// CancelLink makes the link with the given id unusable. It returns
// vault.ErrNotFound for an unknown id and ErrLinkUsed for a link already
// used; canceling a canceled or expired link is not an error.
func (s *Service) CancelLink(ctx context.Context, id, by string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.cfg.DB.Update(func(tx *vault.Tx) error {
		e, err := tx.EnrollmentByID(id)
		if err != nil {
			return err
		}
		if !e.UsedAt.IsZero() {
			return ErrLinkUsed
		}
		if e.Canceled {
			return nil
		}
		e.Canceled = true
		if err := tx.PutEnrollment(e); err != nil {
			return err
		}
		return tx.Audit(vault.AuditEvent{Kind: AuditEnrollmentCanceled, Actor: by, UserID: e.UserID, GrantID: e.GrantID,
			Detail: fmt.Sprintf("%s link %s for provider %s canceled", e.Purpose, e.ID, e.Provider)})
	})
	if err != nil {
		return fmt.Errorf("enroll: cancel link %s: %w", id, err)
	}
	s.log.Info("consent link canceled", "enrollment", id)
	return nil
}
