package vault_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/vaulttest"
)

// recorder is a testing.TB whose failures and cleanups the test keeps, so
// a test can prove that vaulttest's fixture fails a test (and says why)
// without failing itself.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Logf(string, ...any) {}

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// finish runs the cleanups, last in first out, as the testing package
// does at the end of a test, and returns the failures they reported.
func (r *recorder) finish() string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
	return strings.Join(r.errs, "\n")
}

// checkSeed is a store in which every kind of record exists, made through
// the domain methods only: zed enrolled (grant, watch, enrolled notices),
// a run committed (cursor, seen index, a match digest), one notification
// delivered, and amy enrolled and unenrolled (a revoked grant, a pending
// revocation, a suspended watch).
type checkSeed struct {
	zed, amy vault.ConsentResult
	match    string // id of a pending match row
	done     string // id of a delivered row
	revID    string
}

func seedForCheck(t *testing.T, db *vault.DB) checkSeed {
	t.Helper()
	var s checkSeed
	s.zed = vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed"})
	s.amy = vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "amy",
		Watch: &vault.WatchSpec{Hashtags: []string{"rust"}, Schedule: "@hourly", Targets: []string{"mailto:amy@example.com"}}})
	w := s.zed.Started[0]
	if _, err := db.CommitRun(vault.RunCommit{WatchID: w.ID, NewSinceID: "12", Posts: []vault.Post{{ID: "12"}, {ID: "11"}}}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.ListOutbox(vault.OutboxPending, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		switch r.Kind {
		case vault.NoticeMatch:
			s.match = r.ID
		case vault.NoticeEnrolled:
			if r.UserID == "zed" && s.done == "" {
				s.done = r.ID
			}
		}
	}
	if _, err := db.SettleOutbox([]vault.OutboxOutcome{{ID: s.done, State: vault.OutboxDelivered, Sent: true}}); err != nil {
		t.Fatal(err)
	}
	out, err := db.UnenrollGrant(s.amy.Grant.ID, vault.Unenroll{Actor: "test", Revoke: true})
	if err != nil || out.RevocationID == "" {
		t.Fatalf("UnenrollGrant = %+v, %v", out, err)
	}
	s.revID = out.RevocationID
	if s.match == "" || s.done == "" {
		t.Fatalf("seed has no match row (%q) or no delivered row (%q)", s.match, s.done)
	}
	return s
}

// rewrite decodes the JSON record at key of bucket into a T, lets change
// edit it, and stores it back as is, around every domain method.
func rewrite[T any](btx kv.Tx, bucket []byte, key string, change func(*T)) error {
	b := btx.Bucket(bucket)
	var rec T
	if err := json.Unmarshal(b.Get([]byte(key)), &rec); err != nil {
		return err
	}
	change(&rec)
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

func pairKey(a, b string) []byte { return []byte(a + "\x00" + b) }

// TestCheckConsistency breaks each invariant of the store through the
// test-only hook, on a store made consistent by the domain methods, and
// proves that DB.CheckConsistency names the invariant and the record, and
// that vaulttest's cleanup fails the test with that message. The
// untouched seed passes.
func TestCheckConsistency(t *testing.T) {
	cases := []struct {
		name string
		// breakIt breaks the store; inv and record are what the check
		// must report.
		breakIt func(s checkSeed) func(kv.Tx) error
		inv     vault.Invariant
		record  func(s checkSeed) string
	}{
		{"pending row missing from the due index", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				var r vault.OutboxRow
				json.Unmarshal(btx.Bucket(vault.BucketOutbox).Get([]byte(s.match)), &r)
				return btx.Bucket(vault.BucketOutboxDue).Delete(vault.DueKey(r.NextAttempt, r.ID))
			}
		}, vault.InvOutboxDue, func(s checkSeed) string { return fmt.Sprintf("notification %q", s.match) }},
		{"delivered row in the due index", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketOutboxDue).Put(vault.DueKey(vaulttest.T0, s.done), nil)
			}
		}, vault.InvOutboxDue, func(s checkSeed) string { return "/" + s.done }},
		{"row indexed at another time", func(s checkSeed) func(kv.Tx) error {
			return rewriteRow(s.match, func(r *vault.OutboxRow) { r.NextAttempt = r.NextAttempt.Add(time.Hour) })
		}, vault.InvOutboxDue, func(s checkSeed) string { return "/" + s.match }},
		{"user_watches key of a watch that does not exist", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketUserWatches).Put(pairKey("zed", "nosuch"), nil)
			}
		}, vault.InvUserWatches, func(checkSeed) string { return "user_watches key zed/nosuch" }},
		{"user_watches key of another user's watch", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketUserWatches).Put(pairKey("amy", s.zed.Started[0].ID), nil)
			}
		}, vault.InvUserWatches, func(s checkSeed) string { return "user_watches key amy/" + s.zed.Started[0].ID }},
		{"watch without its user_watches key", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketUserWatches).Delete(pairKey("zed", s.zed.Started[0].ID))
			}
		}, vault.InvUserWatches, func(s checkSeed) string { return fmt.Sprintf("watch %q", s.zed.Started[0].ID) }},
		{"user_grants key of another provider", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketUserGrants).Put(pairKey("zed", "corp"), []byte(s.zed.Grant.ID))
			}
		}, vault.InvUserGrants, func(checkSeed) string { return "user_grants key zed/corp" }},
		{"user_grants key of a grant that does not exist", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketUserGrants).Put(pairKey("bob", "x"), []byte("nosuch"))
			}
		}, vault.InvUserGrants, func(checkSeed) string { return "user_grants key bob/x" }},
		{"active grant without its user_grants key", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error { return btx.Bucket(vault.BucketUserGrants).Delete(pairKey("zed", "x")) }
		}, vault.InvUserGrants, func(s checkSeed) string { return fmt.Sprintf("grant %q", s.zed.Grant.ID) }},
		{"active watch, dead grant", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return rewrite(btx, vault.BucketGrants, s.zed.Grant.ID, func(g *vault.Grant) { g.State = vault.GrantNeedsReconsent })
			}
		}, vault.InvWatchGrant, func(s checkSeed) string { return fmt.Sprintf("watch %q", s.zed.Started[0].ID) }},
		{"active watch with a suspend reason", func(s checkSeed) func(kv.Tx) error {
			return rewriteWatch(s.zed.Started[0].ID, func(w *vault.Watch) { w.SuspendReason = vault.SuspendNeedsReconsent })
		}, vault.InvWatchState, func(s checkSeed) string { return fmt.Sprintf("watch %q", s.zed.Started[0].ID) }},
		{"suspended watch without a reason", func(s checkSeed) func(kv.Tx) error {
			return rewriteWatch(s.amy.Started[0].ID, func(w *vault.Watch) { w.SuspendReason = vault.SuspendNone })
		}, vault.InvWatchState, func(s checkSeed) string { return fmt.Sprintf("watch %q", s.amy.Started[0].ID) }},
		{"seen index of a deleted watch", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketSeen).Put(vault.SeenKey("gone", 7), []byte("12345678"))
			}
		}, vault.InvWatchIndexes, func(checkSeed) string { return `watch_seen prefix "gone"` }},
		{"cursor of a deleted watch", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketCursors).Put([]byte("gone"), []byte(`{"watch_id":"gone"}`))
			}
		}, vault.InvWatchIndexes, func(checkSeed) string { return `cursor "gone"` }},
		{"sealed token that does not open", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return rewrite(btx, vault.BucketGrants, s.zed.Grant.ID, func(g *vault.Grant) { g.SealedRefresh[len(g.SealedRefresh)-1] ^= 1 })
			}
		}, vault.InvSealed, func(s checkSeed) string { return fmt.Sprintf("grant %q", s.zed.Grant.ID) }},
		{"sealed token bound to another record", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				var zed vault.Grant
				json.Unmarshal(btx.Bucket(vault.BucketGrants).Get([]byte(s.zed.Grant.ID)), &zed)
				return rewriteRow(s.match, func(r *vault.OutboxRow) { r.SealedSecret = zed.SealedAccess })(btx)
			}
		}, vault.InvSealed, func(s checkSeed) string { return fmt.Sprintf("notification %q", s.match) }},
		{"revocation of an active grant", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return rewrite(btx, vault.BucketRevocations, s.revID, func(r *vault.Revocation) { r.GrantID = s.zed.Grant.ID })
			}
		}, vault.InvRevocations, func(s checkSeed) string { return fmt.Sprintf("pending revocation %q", s.revID) }},
		{"grant's account not in the sign-in index", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return rewrite(btx, vault.BucketGrants, s.zed.Grant.ID, func(g *vault.Grant) { g.Subject = "someone-else" })
			}
		}, vault.InvSignIns, func(s checkSeed) string { return fmt.Sprintf("grant %q", s.zed.Grant.ID) }},
		{"sign-in index entry of a sign-in the user does not have", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketSignIns).Put(vault.SignInKey("corp", "ghost", "amy", "sign-in:https://idp"), []byte("https://idp"))
			}
		}, vault.InvSignIns, func(checkSeed) string { return "sign_ins key corp/ghost/amy/sign-in:https://idp" }},
		{"sign-in index entry of a grant that does not exist", func(checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				return btx.Bucket(vault.BucketSignIns).Put(vault.SignInKey("x", "sub-zed", "zed", "grant:nosuch"), nil)
			}
		}, vault.InvSignIns, func(checkSeed) string { return "sign_ins key x/sub-zed/zed/grant:nosuch" }},
		{"record that does not decode (C10)", func(s checkSeed) func(kv.Tx) error {
			return func(btx kv.Tx) error {
				b := btx.Bucket(vault.BucketWatches)
				raw := append([]byte(nil), b.Get([]byte(s.amy.Started[0].ID))...)
				raw[0] = 0xff
				return b.Put([]byte(s.amy.Started[0].ID), raw)
			}
		}, vault.InvRecords, func(s checkSeed) string { return fmt.Sprintf("watch %q", s.amy.Started[0].ID) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			db := vaulttest.Open(rec)
			s := seedForCheck(t, db)
			if err := db.CheckConsistency(); err != nil {
				t.Fatalf("CheckConsistency() of the seed = %v, want nil", err)
			}
			if err := vault.RawUpdate(db, tc.breakIt(s)); err != nil {
				t.Fatal(err)
			}
			want := tc.record(s)
			err := db.CheckConsistency()
			ce, ok := err.(*vault.ConsistencyError)
			found := false
			for _, i := range func() []vault.Inconsistency {
				if ok {
					return ce.Found
				}
				return nil
			}() {
				found = found || i.Invariant == tc.inv && strings.Contains(i.Record, want)
			}
			if !found {
				t.Fatalf("CheckConsistency() = %v, want a %s problem at %s", err, tc.inv, want)
			}
			msg := rec.finish()
			named := false
			for _, line := range strings.Split(msg, "\n") {
				line = strings.TrimSpace(line)
				named = named || strings.HasPrefix(line, string(tc.inv)+": ") && strings.Contains(line, want)
			}
			if !strings.Contains(msg, "vaulttest: consistency check of "+db.Path()) || !named {
				t.Errorf("vaulttest cleanup reported %q, want the file and %s: %s", msg, tc.inv, want)
			}
		})
	}

	t.Run("consistent store passes", func(t *testing.T) {
		rec := &recorder{TB: t}
		db := vaulttest.Open(rec)
		seedForCheck(t, db)
		if msg := rec.finish(); msg != "" {
			t.Errorf("vaulttest cleanup of a consistent store reported %q, want nothing", msg)
		}
	})

	t.Run("tolerated invariant", func(t *testing.T) {
		rec := &recorder{TB: t}
		db := vaulttest.Open(rec, vaulttest.Tolerate(vault.InvWatchGrant, "the test proves a defence"))
		s := seedForCheck(t, db)
		vault.RawUpdate(db, func(btx kv.Tx) error {
			return rewrite(btx, vault.BucketGrants, s.zed.Grant.ID, func(g *vault.Grant) { g.State = vault.GrantNeedsReconsent })
		})
		if msg := rec.finish(); msg != "" {
			t.Errorf("vaulttest cleanup with %s tolerated reported %q, want nothing", vault.InvWatchGrant, msg)
		}
	})

	t.Run("closed by the test", func(t *testing.T) {
		rec := &recorder{TB: t}
		db := vaulttest.Open(rec)
		s := seedForCheck(t, db)
		vault.RawUpdate(db, func(btx kv.Tx) error {
			return btx.Bucket(vault.BucketUserWatches).Delete(pairKey("zed", s.zed.Started[0].ID))
		})
		db.Close()
		if msg := rec.finish(); !strings.Contains(msg, string(vault.InvUserWatches)) {
			t.Errorf("vaulttest cleanup of a closed, broken store reported %q, want %s", msg, vault.InvUserWatches)
		}
	})

	t.Run("read-only vault", func(t *testing.T) {
		master, _ := vaulttest.NewMaster(t)
		db := vaulttest.Open(t, vaulttest.Master(master))
		seedForCheck(t, db)
		db.Close()
		ro, err := vault.Open(vault.Options{Path: db.Path(), Master: master, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if err := ro.CheckConsistency(); err != nil {
			t.Errorf("CheckConsistency() of a read-only vault = %v, want nil", err)
		}
	})

	t.Run("damaged page", func(t *testing.T) {
		rec := &recorder{TB: t}
		master, _ := vaulttest.NewMaster(t)
		db := vaulttest.Open(rec, vaulttest.Master(master))
		seedForCheck(t, db)
		// Enough rows that the outbox has pages of its own.
		var rows []vault.OutboxRow
		for i := range 200 {
			rows = append(rows, vault.OutboxRow{ID: fmt.Sprintf("row-%03d", i), Kind: vault.NoticeMatch, UserID: "zed",
				Target: "console:", Payload: json.RawMessage(`{"type":"match","posts":[{"id":"1","text":"` + strings.Repeat("x", 100) + `"}]}`)})
		}
		if _, err := db.Enqueue(rows...); err != nil {
			t.Fatal(err)
		}
		var root, pageSize int
		vault.RawBolt(db).View(func(btx *bolt.Tx) error {
			root, pageSize = int(btx.Bucket(vault.BucketOutbox).Root()), btx.DB().Info().PageSize
			return nil
		})
		if root == 0 {
			t.Fatal("the outbox bucket is still inline")
		}
		// Damaged under the open store (Open refuses a file whose pages
		// are damaged: vault/identify.go): bbolt maps the file shared, so
		// the store reads the damage.
		f, err := os.OpenFile(db.Path(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The page header's flags (after its 8-byte id): no page type.
		if _, err := f.WriteAt([]byte{0xff, 0xff}, int64(root*pageSize+8)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		err = db.CheckConsistency()
		ce, ok := err.(*vault.ConsistencyError)
		if !ok || len(ce.Found) == 0 || ce.Found[0].Invariant != vault.InvPages {
			t.Fatalf("CheckConsistency() of a damaged page = %v, want a %s problem", err, vault.InvPages)
		}
		if msg := rec.finish(); !strings.Contains(msg, string(vault.InvPages)+": file: ") {
			t.Errorf("vaulttest cleanup reported %q, want %s", msg, vault.InvPages)
		}
	})
}

func rewriteRow(id string, change func(*vault.OutboxRow)) func(kv.Tx) error {
	return func(btx kv.Tx) error { return rewrite(btx, vault.BucketOutbox, id, change) }
}

func rewriteWatch(id string, change func(*vault.Watch)) func(kv.Tx) error {
	return func(btx kv.Tx) error { return rewrite(btx, vault.BucketWatches, id, change) }
}
