package renew

// Drops returns how often m dropped what it caches of grant id (a
// notification, Forget, a reconnection): a test sees FollowInvalidations
// take effect.
func Drops(m *Manager, id string) uint64 { return m.entry(id).gen.Load() }
