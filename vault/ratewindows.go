package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"tagwatch/vault/kv"
)

// bucketRateWindows holds what providers said about their request windows
// and usage caps (RateWindow), keyed by RateWindow.key. Created on first
// use, so no schema migration is needed.
var bucketRateWindows = []byte("rate_windows")

// Kinds of RateWindow.
const (
	// WindowRateLimit is an endpoint's rate-limit window for one user's
	// grant (X: x-rate-limit-* headers).
	WindowRateLimit = "rate_limit"
	// WindowUsageCap is a provider's usage cap: NotBefore is when the
	// worker may next probe whether it has lifted.
	WindowUsageCap = "usage_cap"
)

// maxWindowField bounds the text fields of a RateWindow.
const maxWindowField = 256

// RateWindow is what a provider last said about one of its request
// windows (remaining, reset) or its usage cap, kept so that a restarted
// daemon does not ask before a reset it was told of. Times are on the
// daemon's clock (the worker converts the provider's).
type RateWindow struct {
	Provider string `json:"provider"`
	// Kind is WindowRateLimit or WindowUsageCap.
	Kind string `json:"kind"`
	// Endpoint is the provider's endpoint (X: /2/tweets/search/recent);
	// required for WindowRateLimit.
	Endpoint string `json:"endpoint,omitempty"`
	// Key is the source's key of the window's owner (the grant id);
	// required for WindowRateLimit, empty for WindowUsageCap.
	Key string `json:"key,omitempty"`
	// UserID is the user the grant belongs to, for operators; may be
	// empty.
	UserID string `json:"user_id,omitempty"`
	// Limit and Remaining are as the provider last reported them; -1
	// when it did not say.
	Limit     int `json:"limit"`
	Remaining int `json:"remaining"`
	// Reset is when the window ends; zero when not known.
	Reset time.Time `json:"reset,omitzero"`
	// NotBefore is when the endpoint may next be called for the owner (a
	// usage cap: probed); zero when it may be now.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Observed is when the provider said it.
	Observed time.Time `json:"observed"`
}

// Over reports whether the window says nothing any more at now: its hold
// and its reset are both past.
func (w RateWindow) Over(now time.Time) bool {
	return !w.NotBefore.After(now) && !w.Reset.After(now)
}

func (w RateWindow) key() []byte {
	return []byte(w.Provider + "\x00" + w.Kind + "\x00" + w.Endpoint + "\x00" + w.Key)
}

func (w RateWindow) label() string {
	if w.Kind == WindowUsageCap {
		return fmt.Sprintf("usage cap of provider %q", w.Provider)
	}
	return fmt.Sprintf("rate window of provider %q, endpoint %q, key %q", w.Provider, w.Endpoint, w.Key)
}

func (w RateWindow) check() error {
	var why string
	switch {
	case w.Provider == "":
		why = "has no provider"
	case w.Kind != WindowRateLimit && w.Kind != WindowUsageCap:
		why = fmt.Sprintf("has an unknown kind %q", w.Kind)
	case w.Kind == WindowRateLimit && (w.Endpoint == "" || w.Key == ""):
		why = "needs an endpoint and a key"
	case w.Kind == WindowUsageCap && (w.Endpoint != "" || w.Key != ""):
		why = "is the provider's: no endpoint, no key"
	case len(w.Provider) > maxWindowField || len(w.Endpoint) > maxWindowField || len(w.Key) > maxWindowField || len(w.UserID) > maxWindowField:
		why = fmt.Sprintf("has a field longer than %d bytes", maxWindowField)
	case strings.ContainsRune(w.Provider+w.Kind+w.Endpoint+w.Key, 0):
		why = "has a NUL byte in its provider, endpoint or key"
	default:
		return nil
	}
	return &InvalidError{Object: w.label(), Err: errors.New(why)}
}

// SaveRateWindows stores windows in one transaction: each replaces the
// one stored under its provider, kind, endpoint and key; a window that is
// over at the store's clock (RateWindow.Over) is deleted instead (a usage
// cap lifted, a hold ended). Stored windows that are over, or that do not
// decode, are deleted in the same transaction. Callers save when a window
// changes materially (it becomes spent, its hold moves, a cap is seen or
// lifted), not on every request. Errors: *InvalidError naming the window
// (nothing saved), or the store's own.
func (db *DB) SaveRateWindows(ws ...RateWindow) error {
	for _, w := range ws {
		if err := w.check(); err != nil {
			return err
		}
	}
	now := db.now()
	return db.Update(func(tx *Tx) error {
		b, err := tx.tx.CreateBucketIfNotExists(bucketRateWindows)
		if err != nil {
			return err
		}
		for _, w := range ws {
			if w.Over(now) {
				if err := b.Delete(w.key()); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(w)
			if err != nil {
				return fmt.Errorf("%s: %w", w.label(), err)
			}
			if err := b.Put(w.key(), v); err != nil {
				return err
			}
		}
		return pruneRateWindows(b, now)
	})
}

func pruneRateWindows(b kv.Bucket, now time.Time) error {
	var stale [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var w RateWindow
		if json.Unmarshal(v, &w) != nil || w.Over(now) {
			stale = append(stale, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// RateWindows returns the stored windows that are not over at the
// store's clock, ordered by provider, kind, endpoint and key, from one
// read transaction. A record that does not decode is skipped and logged
// (the next SaveRateWindows deletes it): it only costs a request the
// provider may refuse. Errors: only the store's own.
func (db *DB) RateWindows() ([]RateWindow, error) {
	now := db.now()
	var out []RateWindow
	err := db.View(func(tx *Tx) error {
		out = nil
		b := tx.tx.Bucket(bucketRateWindows)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var w RateWindow
			if err := json.Unmarshal(v, &w); err != nil {
				db.log.Warn("vault: a stored rate window does not decode: skipped", "key", strings.ReplaceAll(string(k), "\x00", "/"), "err", err)
				return nil
			}
			if !w.Over(now) {
				out = append(out, w)
			}
			return nil
		})
	})
	return out, err
}
