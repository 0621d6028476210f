package vault

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"time"
	"unicode/utf8"
)

// Bounds of RecentMatches.
const (
	// MaxRecentMatches is the most matches one RecentMatches call returns.
	MaxRecentMatches = 100
	// MatchExcerptMax is how many characters of a post's text a Match
	// keeps; a longer text is cut there and ends with "…".
	MatchExcerptMax = 200
)

// Match is a post a watch found and queued for notification, as the
// user's page lists it.
type Match struct {
	// PostID is the post's id at the provider; URL its address there
	// (empty when the source gave none).
	PostID string
	URL    string
	// AuthorID and AuthorUsername say who posted it, as far as known.
	AuthorID       string
	AuthorUsername string
	// Excerpt is the start of the post's text (MatchExcerptMax
	// characters at most).
	Excerpt string
	// PostedAt is when the post was made, when the source said.
	PostedAt time.Time
	// QueuedAt is when the run that found it queued it for notification.
	QueuedAt time.Time
	// Delivered is set once one of the watch's targets accepted it.
	Delivered bool
}

// RecentMatches returns the last n posts watch watchID found and queued
// for notification (n at most MaxRecentMatches), newest first (by the
// time they were queued, then by post time), each once, from one read
// transaction. With a non-empty owner, the watch must be owner's: a watch
// of another user is answered exactly as a missing one; an empty owner is
// the operator's read of any watch.
//
// Where they come from: the match digests CommitRun queued in the outbox
// (NoticeMatch rows of the watch, one per target, in any state; a post
// that went to several targets is listed once, Delivered when one took
// it). They live as long as those rows: PruneOutbox deletes settled rows
// older than the daemon's outbox retention, DeleteWatch leaves its
// watch's rows until then, and a row dropped before it was sent still
// lists its posts. The seen index (SeenRetention) keeps post ids only, so
// it is not a source. Reading scans the outbox: its cost grows with the
// rows kept, not with the watch's.
//
// Errors: *InvalidError for n < 1; *NotFoundError naming the watch;
// *DamagedError naming it. Rows that do not decode are skipped.
func (db *DB) RecentMatches(owner, watchID string, n int) ([]Match, error) {
	if n < 1 {
		return nil, &InvalidError{Object: "recent matches", Err: errors.New("ask for at least one")}
	}
	n = min(n, MaxRecentMatches)
	var out []Match
	err := db.View(func(tx *Tx) error {
		out = nil
		if _, err := tx.ownedWatch(watchID, owner, owner != ""); err != nil {
			return err
		}
		// Rows are decoded only when their bytes name the watch as the
		// encoder writes its id; the record check below decides.
		id, err := json.Marshal(watchID)
		if err != nil {
			return err
		}
		needle := append([]byte(`"watch_id":`), id...)
		byPost := map[string]int{}
		return tx.tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			if !bytes.Contains(v, needle) {
				return nil
			}
			r, err := decodeOutbox(k, v)
			if err != nil || r.Kind != NoticeMatch || r.WatchID != watchID {
				return nil
			}
			var notice Notice
			if json.Unmarshal(r.Payload, &notice) != nil {
				return nil
			}
			for _, p := range notice.Posts {
				if p.ID == "" {
					continue
				}
				if i, ok := byPost[p.ID]; ok {
					m := &out[i]
					m.Delivered = m.Delivered || r.State == OutboxDelivered
					if r.CreatedAt.Before(m.QueuedAt) {
						m.QueuedAt = r.CreatedAt
					}
					continue
				}
				byPost[p.ID] = len(out)
				out = append(out, Match{PostID: p.ID, URL: p.URL, AuthorID: p.AuthorID, AuthorUsername: p.AuthorUsername,
					Excerpt: excerpt(p.Text), PostedAt: p.CreatedAt, QueuedAt: r.CreatedAt, Delivered: r.State == OutboxDelivered})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Match) int {
		if c := b.QueuedAt.Compare(a.QueuedAt); c != 0 {
			return c
		}
		if c := b.PostedAt.Compare(a.PostedAt); c != 0 {
			return c
		}
		switch {
		case newer(a.PostID, b.PostID):
			return -1
		case newer(b.PostID, a.PostID):
			return 1
		}
		return cmp.Compare(b.PostID, a.PostID)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// excerpt cuts text to MatchExcerptMax characters.
func excerpt(text string) string {
	if !utf8.ValidString(text) {
		text = string([]rune(text))
	}
	if utf8.RuneCountInString(text) <= MatchExcerptMax {
		return text
	}
	return string([]rune(text)[:MatchExcerptMax-1]) + "…"
}
