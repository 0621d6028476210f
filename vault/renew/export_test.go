package renew

import (
	"tagwatch/vault"
	"tagwatch/vault/provider"
)

// Drops returns how often m dropped what it caches of grant id (a
// notification, Forget, a reconnection): a test sees FollowInvalidations
// take effect.
func Drops(m *Manager, id string) uint64 { return m.entry(id).gen.Load() }

// Journal writes res down for ticket t as m does between a refresh's
// answer and its commit (journal.go).
func Journal(m *Manager, t vault.RefreshTicket, res *provider.TokenResult) { m.journal(t, res) }
