package selfservice

import (
	"crypto/sha256"
	"sync"
	"time"

	"tagwatch/vault/webpage"
)

// session is a signed-in person's page session, kept server side. The
// browser holds only its id (SessionCookie); the map holds the id's
// SHA-256, so a memory dump or a timing difference in the map shows no
// usable id.
type session struct {
	key [32]byte
	// userID is the tagwatch user signed in; provider the provider's name,
	// issuer its OpenID issuer ("" for X) and subject the account there.
	userID, provider, issuer, subject string
	// account names the account for people: "@name" at X, the ID
	// token's preferred_username or email, else the subject.
	account string
	// sid is the provider's session id from the latest ID token (a new
	// login at the provider, as max_age or prompt=login cause, gives a new
	// one): what back-channel logout tokens name.
	sid string
	// authTime is when the person last authenticated at the provider
	// (the ID token's auth_time; an X sign-in's own time); zero when the
	// provider did not say.
	authTime time.Time
	created  time.Time
	lastSeen time.Time
	// notice is said once on the next page (a renewal during a POST: "You
	// were signed in again; nothing was changed.").
	notice string
}

// sessionState is what a session id names.
type sessionState int

const (
	// sessionNone: no cookie, or one that is not an id.
	sessionNone sessionState = iota
	// sessionUnknown: a well-formed id this process does not know (from
	// before a restart, ended, or made up).
	sessionUnknown
	// sessionExpired: a session whose idle or absolute lifetime ended,
	// kept as a renewal hint (provider, user).
	sessionExpired
	// sessionLive: a session in use.
	sessionLive
)

// sessionStore holds sessions by the SHA-256 of their id. Safe for
// concurrent use; lookups return copies.
type sessionStore struct {
	mu             sync.Mutex
	byKey          map[[32]byte]*session
	idle, absolute time.Duration
	max            int
	nextPrune      int
}

func newSessionStore(idle, absolute time.Duration, max int) *sessionStore {
	return &sessionStore{byKey: map[[32]byte]*session{}, idle: idle, absolute: absolute, max: max, nextPrune: 1024}
}

func (s *sessionStore) live(x *session, now time.Time) bool {
	return now.Before(x.created.Add(s.absolute)) && now.Before(x.lastSeen.Add(s.idle))
}

// kept reports whether x is still worth keeping: live, or an expired
// session within its hint time (twice the absolute lifetime).
func (s *sessionStore) kept(x *session, now time.Time) bool {
	return now.Before(x.created.Add(2 * s.absolute))
}

// create stores a new session made of x (its key, created and lastSeen
// set here) and returns its id.
func (s *sessionStore) create(x session, now time.Time) string {
	id := webpage.RandomString(32)
	x.key = sha256.Sum256([]byte(id))
	x.created, x.lastSeen = now, now
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byKey) >= s.nextPrune || len(s.byKey) >= s.max {
		s.pruneLocked(now)
	}
	s.byKey[x.key] = &x
	return id
}

// pruneLocked drops sessions past their hint time; when the store is
// still full, expired ones; when still full, the least recently used.
func (s *sessionStore) pruneLocked(now time.Time) {
	for k, x := range s.byKey {
		if !s.kept(x, now) {
			delete(s.byKey, k)
		}
	}
	if len(s.byKey) >= s.max {
		for k, x := range s.byKey {
			if !s.live(x, now) {
				delete(s.byKey, k)
			}
		}
	}
	for len(s.byKey) >= s.max {
		var oldest *session
		for _, x := range s.byKey {
			if oldest == nil || x.lastSeen.Before(oldest.lastSeen) {
				oldest = x
			}
		}
		delete(s.byKey, oldest.key)
	}
	s.nextPrune = max(1024, 2*len(s.byKey))
}

// lookup returns what id names. A live session is touched (its idle
// lifetime starts again) and returned with sessionLive; an expired one
// within its hint time is returned with sessionExpired and not touched.
func (s *sessionStore) lookup(id string, now time.Time) (session, sessionState) {
	if !webpage.WellFormed(id) {
		return session{}, sessionNone
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.byKey[k]
	switch {
	case x == nil:
		return session{}, sessionUnknown
	case s.live(x, now):
		x.lastSeen = now
		return *x, sessionLive
	case s.kept(x, now):
		return *x, sessionExpired
	}
	delete(s.byKey, k)
	return session{}, sessionUnknown
}

// delete ends the session id names, if any.
func (s *sessionStore) delete(id string) {
	if !webpage.WellFormed(id) {
		return
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byKey, k)
}

// takeNotice returns the session's notice and clears it.
func (s *sessionStore) takeNotice(key [32]byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.byKey[key]
	if x == nil {
		return ""
	}
	n := x.notice
	x.notice = ""
	return n
}

// endMatching ends the sessions a logout token names, live or kept as
// hints: issuer and sid (and subject, when given too), or issuer and
// subject when there is no sid. It returns how many it ended.
func (s *sessionStore) endMatching(issuer, subject, sid string) int {
	if issuer == "" || subject == "" && sid == "" {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, x := range s.byKey {
		if x.issuer != issuer {
			continue
		}
		if sid != "" && x.sid != sid || subject != "" && x.subject != subject {
			continue
		}
		delete(s.byKey, k)
		n++
	}
	return n
}

// endUser ends every session of the user, live or kept as a hint, in
// every browser: their data is gone. It returns how many it ended.
func (s *sessionStore) endUser(userID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, x := range s.byKey {
		if x.userID == userID {
			delete(s.byKey, k)
			n++
		}
	}
	return n
}

// len returns the number of sessions kept.
func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}
