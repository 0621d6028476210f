package vault

import (
	"context"
	"strings"
)

// WatchesChannel is the notification channel (kv.Cluster.Publish) on
// which a daemon sharing the store announces, once a change is
// committed, the ids of the watches it created, changed or deleted, so
// that every daemon schedules them as the vault has them now (each daemon
// keeps the whole schedule; claims decide which one runs each fire). The
// payload is the ids, separated by commas, at most maxWatchPayload bytes
// (PostgreSQL's NOTIFY takes less than 8000): more ids go in more
// notifications. Nothing is announced on a store one process owns
// (DB.Shared false): its only daemon made the change itself.
// Notifications are delivered at most once and lost for a daemon not
// connected then, so a subscriber reloads every watch after reconnecting.
const WatchesChannel = "tagwatch_watches"

// maxWatchPayload bounds one notification's payload, in bytes.
const maxWatchPayload = 7000

// watchChanged records that this run of the closure put or deleted watch
// id; the first call defers the announcement to after the commit.
func (tx *Tx) watchChanged(id string) {
	if !tx.db.shared {
		return
	}
	if len(tx.changedWatches) == 0 {
		tx.afterCommit(func() { tx.db.announceWatches(tx.changedWatches) })
	}
	tx.changedWatches = append(tx.changedWatches, id)
}

// announceWatches publishes ids on WatchesChannel. A failed announcement
// is logged, and the commit stands: the other daemons schedule the change
// at their next reload (a reconnection, SIGHUP, or a restart).
func (db *DB) announceWatches(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	for _, payload := range watchPayloads(ids) {
		if err := db.cluster.Publish(ctx, WatchesChannel, payload); err != nil {
			db.log.Warn("cannot tell the other daemons that watches changed; they schedule them at their next reload",
				"watches", strings.Count(payload, ",")+1, "err", err)
			return
		}
	}
}

// watchPayloads joins ids with commas into payloads of at most
// maxWatchPayload bytes, each id once.
func watchPayloads(ids []string) []string {
	var out []string
	var b strings.Builder
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if b.Len() > 0 && b.Len()+1+len(id) > maxWatchPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// ChangedWatchIDs splits a WatchesChannel payload into its watch ids.
func ChangedWatchIDs(payload string) []string {
	var ids []string
	for id := range strings.SplitSeq(payload, ",") {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
