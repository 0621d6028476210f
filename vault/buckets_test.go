package vault_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/vaulttest"
)

// schemaBuckets are the buckets a vault of this build's schema (2)
// holds whatever it stores: meta, the first layout's, the sign-in index.
var schemaBuckets = []string{"meta", "users", "grants", "user_grants", "enrollments", "watches", "user_watches",
	"cursors", "outbox", "outbox_due", "audit", "revocations", "sign_ins"}

// allBuckets adds the buckets made on first use (not required).
var allBuckets = append(append([]string(nil), schemaBuckets...), "watch_seen", "rate_windows", "damaged")

// TestOpenRefusesMissingBucket: a real vault file with one of its
// schema's buckets deleted (through bbolt, as an edit by hand or damage
// that leaves the pages sound would) is refused by Open, read-write and
// read-only, with a *BadFileError naming the file and the bucket
// (ErrMissingBucket), and left byte for byte as it was. The meta bucket's
// loss leaves no keyring: not a vault (ErrNoKeyring). Before the vault
// moved onto kv, such a file opened and every read of the bucket failed
// (bbolt's nil bucket); after the move one panicked the daemon
// (FuzzOpenDamagedVault on the branch's CI).
func TestOpenRefusesMissingBucket(t *testing.T) {
	if vault.SchemaVersion != 2 {
		t.Fatalf("SchemaVersion = %d: list the buckets of the new schema in schemaBuckets", vault.SchemaVersion)
	}
	good, master := seedVault(t, t.TempDir(), 3, 0)
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range schemaBuckets {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tagwatch.db")
			writeFile(t, path, img)
			bdb, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(name)) }); err != nil {
				t.Fatal(err)
			}
			if err := bdb.Close(); err != nil {
				t.Fatal(err)
			}
			before := sumFile(t, path)
			for _, ro := range []bool{false, true} {
				db, err := vault.Open(vault.Options{Path: path, Master: master, ReadOnly: ro, Logger: vaulttest.Quiet()})
				if err == nil {
					db.Close()
					t.Fatalf("Open(read-only=%v) of a vault without bucket %q = nil error", ro, name)
				}
				var bad *vault.BadFileError
				if !errors.As(err, &bad) || bad.Path != path {
					t.Errorf("Open(read-only=%v) = %v, want a *BadFileError for %s", ro, err, path)
				}
				want := vault.ErrMissingBucket
				if name == "meta" {
					want = vault.ErrNoKeyring
				}
				if !errors.Is(err, want) {
					t.Errorf("Open(read-only=%v) = %v, want %v", ro, err, want)
				}
				if name != "meta" && !strings.Contains(err.Error(), fmt.Sprintf("lacks the bucket %q, which its schema version 2 requires", name)) {
					t.Errorf("Open(read-only=%v) = %q, want it to name the bucket and the schema version", ro, err)
				}
				if sumFile(t, path) != before {
					t.Errorf("Open(read-only=%v) refused the file but changed it", ro)
				}
			}
		})
	}
}

// TestBucketGoneUnderOpenVault: a bucket of the schema deleted under an
// open vault (a raw transaction here; the file replaced, rows deleted by
// hand in PostgreSQL) fails every method that meets it with
// ErrMissingBucket, a *BadFileError naming the file and the bucket, as a
// read of bbolt's nil bucket did before the move onto kv: never a panic,
// never an answer read from nothing, and a write that fails keeps
// nothing. CheckConsistency names the bucket (InvBuckets).
func TestBucketGoneUnderOpenVault(t *testing.T) {
	good, master := seedVault(t, t.TempDir(), 3, 0)
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range schemaBuckets {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tagwatch.db")
			writeFile(t, path, img)
			db, err := vault.Open(vault.Options{Path: path, Master: master, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			probeGone(t, db, name, func(err error) bool {
				var bad *vault.BadFileError
				return errors.As(err, &bad) && bad.Path == path && errors.Is(err, vault.ErrBadFile) &&
					strings.Contains(err.Error(), fmt.Sprintf("lacks the bucket %q since it was opened", name))
			})
		})
	}
}

// TestFileReplacedUnderOpenVault: the file copied over by a vault that
// lacks a bucket while the store has it open (bbolt reads the new header
// at the next transaction): the reads of that bucket fail with a
// *BadFileError naming it, as before the move onto kv, not with an empty
// answer.
func TestFileReplacedUnderOpenVault(t *testing.T) {
	good, master := seedVault(t, t.TempDir(), 3, 0)
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	writeFile(t, other, img)
	bdb, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("users")) }); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	without, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tagwatch.db")
	writeFile(t, path, img)
	db, err := vault.Open(vault.Options{Path: path, Master: master, Logger: vaulttest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if users, err := db.ListUsers(); err != nil || len(users) != 3 {
		t.Fatalf("ListUsers() = %d users, %v; want 3", len(users), err)
	}
	writeFile(t, path, without)
	users, err := db.ListUsers()
	var bad *vault.BadFileError
	if !errors.As(err, &bad) || bad.Path != path || !errors.Is(err, vault.ErrMissingBucket) || !strings.Contains(err.Error(), `"users"`) {
		t.Errorf("ListUsers() of a file replaced by one without users = %d users, %v; want a *BadFileError naming the bucket", len(users), err)
	}
	if grants, err := db.ListGrants(); err != nil || len(grants) != 3 {
		t.Errorf("ListGrants() = %d grants, %v; want 3 (its buckets are there)", len(grants), err)
	}
}

// TestMissingBucketPostgres: on PostgreSQL (vault/kv/pgkv) a bucket of
// the schema deleted under an open vault fails the methods that meet it
// with ErrMissingBucket naming the store and the bucket, as on a file,
// and Open then refuses the store (the meta bucket's loss: no keyring)
// and changes nothing. A database per bucket.
func TestMissingBucketPostgres(t *testing.T) {
	c := pgtest.Start(t)
	master, _ := vaulttest.NewMaster(t)
	for _, name := range schemaBuckets {
		t.Run(name, func(t *testing.T) {
			b := pgBackend{dsn: c.DSN(c.CreateDB(t)), engine: new(*pgkv.Engine), master: master}
			open := func(ro bool) (*vault.DB, error) {
				e, err := b.open()
				if err != nil {
					t.Fatal(err)
				}
				return vault.Open(vault.Options{Engine: e, Master: master, Create: !ro, ReadOnly: ro, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}})
			}
			db, err := open(false)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				vaulttest.Enroll(t, db, vaulttest.Enrollment{User: fmt.Sprintf("u%d", i)})
			}
			probeGone(t, db, name, func(err error) bool {
				return errors.Is(err, vault.ErrMissingBucket) && strings.Contains(err.Error(), "postgres") &&
					strings.Contains(err.Error(), fmt.Sprintf("%q", name))
			})
			before := digest(t, db)
			db.Close()
			for _, ro := range []bool{false, true} {
				db, err := open(ro)
				if err == nil {
					db.Close()
					t.Fatalf("Open(read-only=%v) of a store without bucket %q = nil error", ro, name)
				}
				want, text := vault.ErrMissingBucket, fmt.Sprintf("lacks the bucket %q, which its schema version 2 requires", name)
				if name == "meta" {
					want, text = vault.ErrNoKeyring, "no keyring"
				}
				if !errors.Is(err, want) || !strings.Contains(err.Error(), "open postgres") || !strings.Contains(err.Error(), text) {
					t.Errorf("Open(read-only=%v) = %v, want %v naming postgres and saying %q", ro, err, want, text)
				}
			}
			e, err := rawOpen(t, b)
			if err != nil {
				t.Fatal(err)
			}
			if after := digestEngine(t, e); after != before {
				t.Errorf("Open refused the store but changed it")
			}
		})
	}
}

// rawOpen opens an engine on b's database only to read it (no vault).
func rawOpen(t *testing.T, b pgBackend) (kv.Engine, error) {
	t.Helper()
	e, err := b.open()
	if err == nil {
		t.Cleanup(func() { e.Close() })
	}
	return e, err
}

// probeGone deletes bucket name under the open vault db and runs its
// methods: none panics; each answers, or fails with ErrMissingBucket as
// named says; those that read the bucket fail; a write that fails keeps
// nothing; CheckConsistency names the bucket (InvBuckets) and nothing
// else.
func probeGone(t *testing.T, db *vault.DB, name string, named func(error) bool) {
	t.Helper()
	if err := vault.RawUpdate(db, func(tx kv.Tx) error { return tx.DeleteBucket([]byte(name)) }); err != nil {
		t.Fatal(err)
	}
	now := db.Now()
	spec := vaulttest.DefaultWatch
	spec.Hashtags = []string{"probe"}
	type probe struct {
		name  string
		write bool
		run   func() error
	}
	probes := []probe{
		{"ListUsers", false, func() error { _, err := db.ListUsers(); return err }},
		{"ListGrants", false, func() error { _, err := db.ListGrants(); return err }},
		{"UserGrants", false, func() error { _, err := db.UserGrants("u0"); return err }},
		{"ListWatches", false, func() error { _, err := db.ListWatches(""); return err }},
		{"ListWatches(u0)", false, func() error { _, err := db.ListWatches("u0"); return err }},
		{"ListLinks", false, func() error { _, err := db.ListLinks(now); return err }},
		{"OutboxTallies", false, func() error { _, err := db.OutboxTallies(); return err }},
		{"DueOutboxIDs", false, func() error {
			_, err := db.DueOutboxIDs(now.Add(time.Hour), func(string) bool { return true })
			return err
		}},
		{"KeyStatus", false, func() error { _, err := db.KeyStatus(); return err }},
		{"DueRevocations", false, func() error { _, err := db.DueRevocations(now); return err }},
		{"UserBySignIn", false, func() error { _, err := db.UserBySignIn("x", "", "sub-u0"); return err }},
		{"AuditTrail", false, func() error { return db.AuditTrail(0, func(vault.AuditEvent) error { return nil }) }},
		{"SchemaVersionOnDisk", false, func() error { _, err := db.SchemaVersionOnDisk(); return err }},
		{"FindDamaged", true, func() error { _, err := db.FindDamaged(); return err }},
		{"RecordAudit", true, func() error { return db.RecordAudit(vault.AuditEvent{Kind: "test", Actor: "test"}) }},
		{"AddWatch", true, func() error {
			_, err := db.AddWatch(vault.NewWatch{UserID: "u0", Provider: "x", Spec: spec}, "test")
			return err
		}},
		{"CreateLink", true, func() error {
			_, _, err := db.CreateLink(vault.LinkRequest{UserID: "u9", Provider: "x", CreatedBy: "test", TTL: time.Hour, Watch: &spec})
			return err
		}},
	}
	failed := 0
	for _, p := range probes {
		var before string
		if p.write {
			before = digest(t, db)
		}
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return p.run()
		}()
		switch {
		case err == nil:
			continue
		case !named(err):
			t.Errorf("%s() without bucket %q = %v, want nil or ErrMissingBucket naming it", p.name, name, err)
		}
		failed++
		if p.write && digest(t, db) != before {
			t.Errorf("%s() without bucket %q failed (%v) but wrote", p.name, name, err)
		}
	}
	if failed == 0 {
		t.Errorf("no method failed without bucket %q", name)
	}
	err := db.CheckConsistency()
	var ce *vault.ConsistencyError
	// A file without its meta bucket has no keyring: the check of its
	// pages, as Open reads them, says so first.
	keyring := name == "meta" && db.Path() != "" && errors.As(err, &ce) && len(ce.Found) == 1 &&
		ce.Found[0].Invariant == vault.InvPages && strings.Contains(ce.Found[0].Problem, "without a tagwatch keyring")
	if !keyring && (!errors.As(err, &ce) || len(ce.Found) != 1 || ce.Found[0].Invariant != vault.InvBuckets || ce.Found[0].Record != fmt.Sprintf("bucket %q", name)) {
		t.Errorf("CheckConsistency() without bucket %q = %v, want one %s problem naming it", name, err, vault.InvBuckets)
	}
}

// digest sums every pair of every bucket of db's store, through a raw
// transaction rolled back.
func digest(t *testing.T, db *vault.DB) string {
	t.Helper()
	var sum string
	errDone := errors.New("done")
	err := vault.RawUpdate(db, func(tx kv.Tx) error {
		sum = sumBuckets(tx)
		return errDone
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	return sum
}

// digestEngine is digest of an engine with no vault open on it.
func digestEngine(t *testing.T, e kv.Engine) string {
	t.Helper()
	var sum string
	if err := e.View(func(tx kv.Tx) error { sum = sumBuckets(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return sum
}

func sumBuckets(tx kv.Tx) string {
	h := sha256.New()
	for _, name := range allBuckets {
		b := tx.Bucket([]byte(name))
		if b == nil {
			fmt.Fprintf(h, "%s: none\n", name)
			continue
		}
		_ = b.ForEach(func(k, v []byte) error {
			fmt.Fprintf(h, "%s %x %x\n", name, k, v)
			return nil
		})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func sumFile(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
