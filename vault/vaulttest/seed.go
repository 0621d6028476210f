package vaulttest

import (
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// DefaultWatch is the watch Enroll starts when Enrollment.Watch is nil.
var DefaultWatch = vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 15m", Targets: []string{"console:"}}

// Enrollment says whom Enroll enrolls, and with what.
type Enrollment struct {
	// User is the user's id. Required.
	User string
	// Provider is the provider; default "x".
	Provider string
	// Subject is who consents at the provider; default "sub-" + User.
	Subject, Username string
	// Watch is the watch the consent link carries; default DefaultWatch.
	Watch *vault.WatchSpec
	// Refresh and Access are the tokens the consent stores; default
	// "rt-" + User and "at-" + User.
	Refresh, Access string
	// AccessExpiry is the access token's expiry; default two hours from
	// time.Now (set it when the store runs on a Clock).
	AccessExpiry time.Time
	// Scopes are the scopes granted; default tweet.read users.read
	// offline.access.
	Scopes []string
}

// Enroll gives a user a grant and a watch the way the consent pages do,
// through the store's own methods: CreateLink with the watch, then
// CommitConsent with the tokens. It fails t on any error and returns what
// the consent did (Grant, Link, Started). Like a real consent it queues
// one NoticeEnrolled per target of the watch.
func Enroll(t testing.TB, s vault.Store, e Enrollment) vault.ConsentResult {
	t.Helper()
	if e.Provider == "" {
		e.Provider = "x"
	}
	if e.Subject == "" {
		e.Subject = "sub-" + e.User
	}
	w := DefaultWatch
	if e.Watch != nil {
		w = *e.Watch
	}
	w.Hashtags, w.Targets = append([]string(nil), w.Hashtags...), append([]string(nil), w.Targets...)
	if e.Refresh == "" {
		e.Refresh = "rt-" + e.User
	}
	if e.Access == "" {
		e.Access = "at-" + e.User
	}
	if e.AccessExpiry.IsZero() {
		e.AccessExpiry = time.Now().Add(2 * time.Hour)
	}
	if e.Scopes == nil {
		e.Scopes = []string{"tweet.read", "users.read", "offline.access"}
	}
	_, link, err := s.CreateLink(vault.LinkRequest{UserID: e.User, Provider: e.Provider, Watch: &w, CreatedBy: "vaulttest"})
	if err != nil {
		t.Fatalf("vaulttest: enroll %s: %v", e.User, err)
	}
	res, err := s.CommitConsent(vault.Consent{LinkHash: link.Hash, LinkID: link.ID, UserID: e.User, Provider: e.Provider,
		Subject: e.Subject, Username: e.Username, Scopes: e.Scopes, AccessExpiry: e.AccessExpiry,
		Tokens: vault.Tokens{Refresh: secret.NewRefreshToken(e.Refresh), Access: secret.NewAccessToken(e.Access)}})
	if err != nil {
		t.Fatalf("vaulttest: enroll %s: %v", e.User, err)
	}
	return res
}
