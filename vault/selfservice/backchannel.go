package selfservice

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"tagwatch/vault/provider"
)

// This file is OpenID Connect Back-Channel Logout 1.0's relying party
// side (section 2.5 to 2.8): the provider posts a logout token when a
// person's session there ends, and the page sessions of that provider
// session end here. Only page sessions: signing out is not unenrolling;
// grants and watches are untouched.

// maxSeenLogoutTokens bounds the logout token ids remembered for the
// replay check. Each is kept only while its token could be accepted
// (minutes), so the bound is reached only by a flood of valid tokens.
const maxSeenLogoutTokens = 100000

// errTooMany is a valid logout token refused because the replay check is
// full.
var errTooMany = errors.New("too many logout tokens at once")

// replayStore remembers logout token ids (by issuer) until their tokens
// stop being accepted. Safe for concurrent use.
type replayStore struct {
	mu        sync.Mutex
	until     map[string]time.Time
	max       int
	nextPrune int
}

func newReplayStore(max int) *replayStore {
	return &replayStore{until: map[string]time.Time{}, max: max, nextPrune: 1024}
}

// first records (issuer, jti) until until and reports whether it is new:
// false for a replay. errTooMany when the store is full of ids still
// needed.
func (s *replayStore) first(issuer, jti string, until, now time.Time) (bool, error) {
	k := issuer + "\x00" + jti
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.until[k]; ok && now.Before(u) {
		return false, nil
	}
	if len(s.until) >= s.nextPrune || len(s.until) >= s.max {
		for k, u := range s.until {
			if !now.Before(u) {
				delete(s.until, k)
			}
		}
		s.nextPrune = max(1024, 2*len(s.until))
		if len(s.until) >= s.max {
			return false, errTooMany
		}
	}
	s.until[k] = until
	return true, nil
}

// logoutError answers a back-channel logout request that failed: status,
// Cache-Control no-store and the JSON error of section 2.8.
func logoutError(w http.ResponseWriter, status int, description string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{"invalid_request", description})
}

// backchannelLogout verifies the logout token posted (section 2.6, with
// the departure provider.VerifyLogoutToken names: Hydra sends no exp),
// refuses a replayed one (a jti seen before, remembered as long as its
// token could be accepted), and ends the page sessions with the token's
// issuer and sid (and sub, when it has both), or issuer and sub. 200 and
// no-store when the token is valid, whether or not a session matched;
// 400 with no-store and {"error":"invalid_request",...} otherwise.
func (s *Service) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	bad := func(description string, err error) {
		attrs := []any{"why", description}
		if err != nil {
			attrs = append(attrs, "err", err.Error())
		}
		s.log.Warn("back-channel logout refused", attrs...)
		logoutError(w, http.StatusBadRequest, description)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		bad("the request is not a form (application/x-www-form-urlencoded)", nil)
		return
	}
	if err := r.ParseForm(); err != nil {
		bad("the form does not parse", err)
		return
	}
	tokens := r.PostForm["logout_token"]
	if len(tokens) != 1 {
		bad("want exactly one logout_token", nil)
		return
	}
	raw := tokens[0]
	if len(raw) > maxLogoutToken {
		bad("the logout token is too large", nil)
		return
	}
	candidates, ok := s.logoutProviders(raw)
	if !ok {
		bad("the logout token is not a JWT with an iss", nil)
		return
	}
	if len(candidates) == 0 {
		bad("the logout token's issuer is not a provider that signs people in here", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ExchangeTimeout)
	defer cancel()
	var (
		lt    provider.LogoutToken
		name  string
		first error
	)
	for _, n := range candidates {
		t, err := s.provider(n).VerifyLogoutToken(ctx, raw)
		if err == nil {
			lt, name, first = t, n, nil
			break
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		var pe *provider.Error
		if errors.As(first, &pe) && pe.Description != "" {
			bad(pe.Description, nil)
			return
		}
		bad("the logout token is not valid", first)
		return
	}
	// Remembered until the token stops being accepted by the provider's
	// clock, and at least as long from now by the page's: a replay check
	// must not depend on two clocks agreeing.
	now := s.cfg.Now()
	until := lt.Until
	if span := lt.Until.Sub(lt.IssuedAt); until.Before(now.Add(span)) {
		until = now.Add(span)
	}
	fresh, err := s.seen.first(lt.Issuer, lt.ID, until, now)
	if err != nil {
		bad(err.Error(), nil)
		return
	}
	if !fresh {
		bad("the logout token was used before (jti replayed)", nil)
		return
	}
	n := s.sessions.endMatching(lt.Issuer, lt.Subject, lt.SessionID)
	s.log.Info("back-channel logout", "provider", name, "sessions_ended", n, "by_sid", lt.SessionID != "")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// maxLogoutToken bounds the size of a logout token; real ones are about
// one kilobyte (provider.VerifyLogoutToken has the same bound).
const maxLogoutToken = 16 << 10

// logoutProviders returns the OpenID providers whose issuer is the iss
// the token claims (not yet verified: it only chooses whose keys verify
// it), in name order; false when the token is not a JWT with an iss.
func (s *Service) logoutProviders(raw string) ([]string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer == "" {
		return nil, false
	}
	var names []string
	for _, n := range s.providers().names {
		if p := s.provider(n); p.Kind() == provider.KindOIDC && p.Issuer() == c.Issuer {
			names = append(names, n)
		}
	}
	return names, true
}
