package vault

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"tagwatch/vault/kv"
)

// bucketSeen is the per-watch index of posts already queued: key
// watch id | 0 | post id (8 bytes, big endian), value the Unix second it
// was recorded. Created on first use, so no schema migration is needed.
var bucketSeen = []byte("watch_seen")

// SeenRetention is how long a post stays in a watch's seen index: X's
// 7-day search window and a day of margin. A post older than that cannot
// be returned by recent search again.
const SeenRetention = 8 * 24 * time.Hour

// maxPrunePerCommit bounds the seen entries one commit deletes, so a
// commit stays small however long a watch was idle.
const maxPrunePerCommit = 1000

// Run results recorded in Cursor.LastResult.
const (
	RunOK       = "ok"
	RunBaseline = "baseline"
	RunFailed   = "failed"
)

// RunCommit is the result of one watch run, committed with DB.CommitRun.
type RunCommit struct {
	WatchID string
	// StartedAt is when the run's first search was sent; it becomes
	// Cursor.LastRunAt (a later run without a since_id searches from it).
	StartedAt time.Time
	// NewSinceID is the first page's newest_id; empty keeps the cursor.
	// The cursor never moves back.
	NewSinceID string
	// Failed runs record Error and move nothing else: no outbox rows, no
	// cursor, no seen posts.
	Failed bool
	Error  string
	// Result is recorded in Cursor.LastResult; default RunOK or RunFailed.
	Result    string
	Truncated bool
	// PostsRead is how many posts the searches returned (what X bills).
	PostsRead int
	// Posts are the matches, newest first. Each is queued at most once per
	// watch, ever (within SeenRetention).
	Posts []Post
	// MaxPerDigest is how many posts one outbox row carries; default 20.
	MaxPerDigest int
}

// RunOutcome is what CommitRun did.
type RunOutcome struct {
	// Queued is how many posts were new to the watch and queued.
	Queued int
	// Duplicates is how many posts the seen index had already.
	Duplicates int
	// Rows is how many outbox rows were added (digests times targets).
	Rows int
	// Cursor is the watch's cursor as committed.
	Cursor Cursor
}

// RunInput is what a run of a watch reads before it searches: the watch,
// its cursor and the state of the user's grant at the watch's provider, as
// of one read transaction.
type RunInput struct {
	Watch  Watch
	Cursor Cursor
	// GrantID is the id of the user's grant at the watch's provider; empty
	// when the user has none (then GrantState is empty too).
	GrantID    string
	GrantState GrantState
}

// RunInput reads a watch, its cursor and its user's grant at the watch's
// provider in one read transaction, so a run sees one consistent state.
// A user without a grant is not an error (GrantID is empty). Errors:
// *NotFoundError when the watch does not exist; *DamagedError when the
// watch, its cursor or the grant is damaged (the run must not go on);
// storage errors otherwise.
func (db *DB) RunInput(watchID string) (RunInput, error) {
	var in RunInput
	err := db.View(func(tx *Tx) error {
		in = RunInput{}
		var err error
		if in.Watch, err = tx.watch(watchID); err != nil {
			return err
		}
		if in.Cursor, err = tx.Cursor(watchID); err != nil {
			return err
		}
		g, err := tx.UserGrant(in.Watch.UserID, in.Watch.Provider)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		if err := tx.grantSealed(g); err != nil {
			return err
		}
		in.GrantID, in.GrantState = g.ID, g.State
		return nil
	})
	if err != nil {
		return RunInput{}, err
	}
	return in, nil
}

// RunnableWatches calls fn, in watch id order, with every watch the
// scheduler should run (Watch.Runs: active, or suspended by a usage cap)
// and its cursor. It reads in one read transaction, so fn sees one
// consistent state, and holds that transaction while fn runs: fn must be
// quick and must not call the DB (a write from fn could wait for the read
// to end), CheckWatch excepted: it applies the rules and reads nothing, so
// a caller may check each watch as it comes instead of holding them all.
// Damaged watches, watches whose cursor is damaged and watches whose
// user's grant at their provider is damaged are left out: they do not run
// until an operator deletes the damaged record (FindDamaged reports
// them). An error from fn stops the scan and is returned as is.
func (db *DB) RunnableWatches(fn func(WatchWithCursor) error) error {
	return db.View(func(tx *Tx) error {
		grantDamaged := map[string]bool{} // by user|0|provider
		return tx.Watches(func(w Watch) error {
			if !w.Runs() {
				return nil
			}
			c, err := tx.Cursor(w.ID)
			if errors.Is(err, ErrDamaged) {
				return nil
			}
			if err != nil {
				return err
			}
			k := string(pair(w.UserID, w.Provider))
			bad, known := grantDamaged[k]
			if !known {
				g, err := tx.UserGrant(w.UserID, w.Provider)
				if err == nil {
					err = tx.grantSealed(g)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					tx.db.noteDamaged(err)
				}
				bad = errors.Is(err, ErrDamaged)
				grantDamaged[k] = bad
			}
			if bad {
				return nil
			}
			return fn(WatchWithCursor{Watch: w, Cursor: c})
		})
	})
}

func seenKey(watchID string, id uint64) []byte {
	k := make([]byte, 0, len(watchID)+9)
	k = append(k, watchID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

// CommitRun records a run in one transaction: the new posts go into the
// outbox as digests (up to MaxPerDigest posts per row, one row per target,
// with deterministic ids), the posts into the watch's seen index, and the
// cursor and its counters advance. Either all of it is stored or none, so
// a crash before the commit repeats the search from the old cursor and a
// post is never queued twice. A failed run (RunCommit.Failed) records its
// result and error in the cursor and moves nothing else. Errors:
// *NotFoundError (errors.Is ErrNotFound) when the watch was deleted
// meanwhile, with nothing stored; an error naming a post id that is not a
// decimal number, with nothing stored.
//
// Concurrent commits may share one transaction and one fsync (DB.batch):
// a million watches run hundreds of times a second.
func (db *DB) CommitRun(c RunCommit) (RunOutcome, error) {
	var out RunOutcome
	err := db.batch(func(tx *Tx) error {
		var err error
		out, err = tx.CommitRun(c)
		return err
	})
	return out, err
}

// CommitRun is DB.CommitRun inside a transaction.
func (tx *Tx) CommitRun(c RunCommit) (RunOutcome, error) {
	var out RunOutcome
	w, err := tx.watch(c.WatchID)
	if err != nil {
		return out, err
	}
	cur, err := tx.Cursor(c.WatchID)
	if err != nil {
		return out, err
	}
	now := tx.Now()
	cur.Runs++
	cur.LastRunAt = c.StartedAt
	if cur.LastRunAt.IsZero() {
		cur.LastRunAt = now
	}
	cur.LastError = c.Error
	cur.LastResult = c.Result
	if c.Failed {
		if cur.LastResult == "" {
			cur.LastResult = RunFailed
		}
		out.Cursor = cur
		return out, tx.PutCursor(cur)
	}
	if cur.LastResult == "" {
		cur.LastResult = RunOK
	}
	cur.Started = true
	cur.LastTruncated = c.Truncated
	cur.PostsRead += int64(c.PostsRead)
	if newer(c.NewSinceID, cur.SinceID) {
		cur.SinceID = c.NewSinceID
	}

	seen, err := tx.tx.CreateBucketIfNotExists(bucketSeen)
	if err != nil {
		return out, err
	}
	stamp := binary.BigEndian.AppendUint64(nil, uint64(now.Unix()))
	var fresh []Post
	for _, p := range c.Posts {
		id, err := strconv.ParseUint(p.ID, 10, 64)
		if err != nil {
			return out, fmt.Errorf("vault: commit run of watch %s: post id %q: %w", c.WatchID, p.ID, err)
		}
		k := seenKey(c.WatchID, id)
		if seen.Get(k) != nil {
			out.Duplicates++
			continue
		}
		if err := seen.Put(k, stamp); err != nil {
			return out, err
		}
		fresh = append(fresh, p)
	}
	if err := pruneSeen(seen, c.WatchID, now.Add(-SeenRetention)); err != nil {
		return out, err
	}
	out.Queued = len(fresh)
	cur.Matches += int64(len(fresh))

	per := c.MaxPerDigest
	if per <= 0 {
		per = 20
	}
	// Oldest first, so digests read in the order posts were made.
	for i, j := 0, len(fresh)-1; i < j; i, j = i+1, j-1 {
		fresh[i], fresh[j] = fresh[j], fresh[i]
	}
	for start := 0; start < len(fresh); start += per {
		chunk := fresh[start:min(start+per, len(fresh))]
		ids := make([]string, len(chunk))
		for i, p := range chunk {
			ids[i] = p.ID
		}
		// Facts only: notify/render.go words the digest.
		n := Notice{Type: NoticeMatch, UserID: w.UserID, WatchID: w.ID, Provider: w.Provider, Hashtags: w.Hashtags,
			Posts: chunk, Time: now}
		payload, err := json.Marshal(n)
		if err != nil {
			return out, err
		}
		for _, target := range w.Targets {
			added, err := tx.Enqueue(OutboxRow{ID: OutboxID(w.UserID, w.ID, target, NoticeMatch, strings.Join(ids, ",")),
				Kind: NoticeMatch, UserID: w.UserID, WatchID: w.ID, Target: target, Payload: payload})
			if err != nil {
				return out, err
			}
			if added {
				out.Rows++
			}
		}
	}
	out.Cursor = cur
	return out, tx.PutCursor(cur)
}

// newer reports whether post id a is larger than b. Post ids are
// unsigned 64-bit decimal numbers (X's snowflakes, at most 20 digits); an
// a that is not one is never newer, and any id is newer than a b that is
// not one (empty, or a stored cursor that was damaged), so a bad cursor
// is replaced by the next good one instead of holding the watch back for
// ever.
func newer(a, b string) bool {
	x, err := strconv.ParseUint(a, 10, 64)
	if err != nil || a[0] == '+' {
		return false
	}
	y, err := strconv.ParseUint(b, 10, 64)
	if err != nil || b[0] == '+' {
		return true
	}
	return x > y
}

// pruneSeen deletes the oldest entries of a watch's seen index recorded
// before cutoff. Post ids grow with time, so the old entries are at the
// front of the watch's range.
func pruneSeen(b kv.Bucket, watchID string, cutoff time.Time) error {
	prefix := append([]byte(watchID), 0)
	c := b.Cursor()
	limit := uint64(cutoff.Unix())
	n := 0
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxPrunePerCommit; k, v = c.Seek(prefix) {
		if len(v) != 8 || binary.BigEndian.Uint64(v) >= limit {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
		n++
	}
	return nil
}

// Seen reports whether post id was queued for the watch (within
// SeenRetention).
func (tx *Tx) Seen(watchID, postID string) bool {
	b := tx.tx.Bucket(bucketSeen)
	id, err := strconv.ParseUint(postID, 10, 64)
	if b == nil || err != nil {
		return false
	}
	return b.Get(seenKey(watchID, id)) != nil
}

// SeenCount returns how many posts a watch's seen index holds.
func (tx *Tx) SeenCount(watchID string) int {
	b := tx.tx.Bucket(bucketSeen)
	if b == nil {
		return 0
	}
	prefix := append([]byte(watchID), 0)
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// DeleteSeen drops a watch's seen index; call it with DeleteWatch.
func (tx *Tx) DeleteSeen(watchID string) error {
	b := tx.tx.Bucket(bucketSeen)
	if b == nil {
		return nil
	}
	prefix := append([]byte(watchID), 0)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (tx *Tx) setProviderWatches(provider string, change func(*Watch) bool) ([]string, error) {
	var changed []Watch
	err := tx.Watches(func(w Watch) error {
		if w.Provider == provider && change(&w) {
			changed = append(changed, w)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(changed))
	for _, w := range changed {
		if err := tx.PutWatch(w); err != nil {
			return nil, err
		}
		ids = append(ids, w.ID)
	}
	return ids, nil
}
