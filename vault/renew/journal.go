package renew

import (
	"context"
	"encoding/json"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// The rotation journal: on a store several daemons share, a refresh's
// answer is written down the moment it arrives, in one statement
// (vault.DB.PutFlow: sealed with the vault's keyring, in the cluster's
// flow table), before the commit of the full refresh (CommitRefresh, a
// transaction of several statements). A daemon killed between the two
// leaves the answer behind, and the daemon that finds its marker in
// doubt commits the journaled tokens instead of presenting the spent
// refresh token again (which X answers by revoking the whole token
// family: X_API.md). What is left unprotected is the time from the
// provider's rotation to that one statement (the answer on the wire, its
// parsing, one round trip to the database), which no client can close: a
// process killed inside it has lost the only copy of the new token.
//
// On a store one process owns (bbolt) the journal would live in that
// process's memory, which a kill loses: it is not written.

// journalTTL is how long a journaled answer is kept: longer than the
// patience of the commit it backs (commitPatience), so that a daemon
// still trying to commit after a database outage has it too.
const journalTTL = commitPatience + time.Hour

// journalEntry is a journaled answer (sealed by PutFlow).
type journalEntry struct {
	Access   string        `json:"access_token"`
	Refresh  string        `json:"refresh_token,omitempty"`
	Expiry   time.Time     `json:"expiry"`
	Lifetime time.Duration `json:"lifetime"`
	Scopes   []string      `json:"scopes,omitempty"`
}

// journalKey names the answer to ticket t: the grant, and the fence of
// the refresh token the request presented (a new one at every rotation),
// so that only a retry of that same request finds it.
func journalKey(t vault.RefreshTicket) string {
	return "rotation_" + t.Grant.ID + "_" + t.Fence[:min(len(t.Fence), 64)]
}

// journal writes res down for ticket t. A failure is logged: the commit
// that follows is what counts; the journal only narrows the window.
func (m *Manager) journal(t vault.RefreshTicket, res *provider.TokenResult) {
	if !m.db.Shared() {
		return
	}
	b, err := json.Marshal(journalEntry{Access: res.Access.Reveal(), Refresh: res.Refresh.Reveal(), Expiry: res.Expiry,
		Lifetime: res.Lifetime, Scopes: res.Scopes})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
		err = m.db.PutFlow(ctx, journalKey(t), b, m.now().Add(journalTTL))
		cancel()
	}
	if err != nil {
		m.log.Warn("cannot journal a refresh's answer before its commit", "grant", t.Grant.ID, "err", err)
	}
}

// recover takes the journaled answer to the request whose outcome ticket
// t (a retry) is in doubt about, if the daemon that made it wrote one
// down before it stopped. ok is false when there is none: then the retry
// with the stored token is all there is.
func (m *Manager) recover(t vault.RefreshTicket) (*provider.TokenResult, bool) {
	if !m.db.Shared() {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	b, ok, err := m.db.TakeFlow(ctx, journalKey(t))
	if err != nil {
		m.log.Warn("cannot read the journal of a refresh in doubt; retrying with the stored token", "grant", t.Grant.ID, "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	var j journalEntry
	if err := json.Unmarshal(b, &j); err != nil || j.Access == "" {
		m.log.Warn("a journaled refresh answer does not read; retrying with the stored token", "grant", t.Grant.ID)
		return nil, false
	}
	res := &provider.TokenResult{Access: secret.NewAccessToken(j.Access), Expiry: j.Expiry, Lifetime: j.Lifetime, Scopes: j.Scopes}
	if j.Refresh != "" {
		res.Refresh = secret.NewRefreshToken(j.Refresh)
	}
	return res, true
}

// forget removes the journaled answer of t once its commit is done.
func (m *Manager) forget(t vault.RefreshTicket) {
	if !m.db.Shared() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	_, _, _ = m.db.TakeFlow(ctx, journalKey(t))
}
