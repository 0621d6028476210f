package vault

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault/kv"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

func newMaster(t testing.TB) *seal.MasterKey {
	t.Helper()
	m, _, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openNew(t testing.TB) (*DB, *seal.MasterKey, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tagwatch.db")
	m := newMaster(t)
	db, err := Open(Options{Path: path, Master: m, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	checkAtCleanup(t, db)
	return db, m, path
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func putGrant(t testing.TB, db *DB, userID, refresh, access string) Grant {
	t.Helper()
	g := Grant{ID: NewID(), UserID: userID, Provider: "x", Subject: "s-" + userID, State: GrantActive, Scopes: []string{"tweet.read"}}
	err := db.Update(func(tx *Tx) error {
		if err := tx.SealTokens(&g, Tokens{Refresh: secret.NewRefreshToken(refresh), Access: secret.NewAccessToken(access)}); err != nil {
			return err
		}
		return tx.PutGrant(g)
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCreateMode(t *testing.T) {
	_, _, path := openNew(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("vault file mode = %04o, want 0600", perm)
	}
}

func TestSecondOpenerFailsFast(t *testing.T) {
	_, m, path := openNew(t)
	start := time.Now()
	_, err := Open(Options{Path: path, Master: m})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "database is locked by another process") {
		t.Fatalf("second Open() error = %v, want ErrLocked", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open() took %v, want under 2 s (the 1 s lock timeout)", elapsed)
	}
}

func TestOpenMissingWithoutCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.db")
	_, err := Open(Options{Path: path, Master: newMaster(t)})
	if !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open(missing) error = %v, want ErrNoVault", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) created the file")
	}
}

func TestWrongMasterKeyLeavesFileUnchanged(t *testing.T) {
	db, _, path := openNew(t)
	putGrant(t, db, "u1", "rt-1", "at-1")
	db.Close()
	before := fileSum(t, path)
	for _, create := range []bool{false, true} {
		_, err := Open(Options{Path: path, Master: newMaster(t), Create: create})
		if !errors.Is(err, seal.ErrWrongMasterKey) {
			t.Fatalf("Open(wrong master, create=%v) error = %v, want ErrWrongMasterKey", create, err)
		}
	}
	if after := fileSum(t, path); after != before {
		t.Errorf("sha256 of vault changed after refused opens: %x -> %x", before, after)
	}
}

func TestNoKeyringNeverMinted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "foreign.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	b.Close()
	before := fileSum(t, path)
	_, err = Open(Options{Path: path, Master: newMaster(t), Create: true})
	if !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Open(foreign file) error = %v, want ErrNoKeyring", err)
	}
	if fileSum(t, path) != before {
		t.Error("Open(foreign file) changed it")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	db, m, path := openNew(t)
	db.engine.Update(func(tx kv.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	db.Close()
	if _, err := Open(Options{Path: path, Master: m}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open(schema 99) error = %v, want ErrNewerSchema", err)
	}
}

func TestMigrationFromVersionZero(t *testing.T) {
	db, m, path := openNew(t)
	// Make the file look like version 0: a keyring, no schema, no buckets.
	db.engine.Update(func(tx kv.Tx) error {
		for _, name := range [][]byte{bucketUsers, bucketGrants, bucketOutbox} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keySchema)
	})
	db.Close()
	db, err := Open(Options{Path: path, Master: m})
	if err != nil {
		t.Fatalf("Open(version 0) = %v", err)
	}
	defer db.Close()
	if v, _ := db.SchemaVersionOnDisk(); v != SchemaVersion {
		t.Errorf("schema after migration = %d, want %d", v, SchemaVersion)
	}
	putGrant(t, db, "u1", "rt", "at")
}

func TestCiphertextCopiedBetweenGrantsFails(t *testing.T) {
	db, _, _ := openNew(t)
	g1 := putGrant(t, db, "u1", "refresh-of-u1", "access-of-u1")
	g2 := putGrant(t, db, "u2", "refresh-of-u2", "access-of-u2")
	err := db.Update(func(tx *Tx) error {
		g2.SealedRefresh = g1.SealedRefresh
		return tx.PutGrant(g2)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *Tx) error {
		g, _ := tx.Grant(g2.ID)
		if tok, err := tx.OpenTokens(g); !errors.Is(err, seal.ErrOpen) {
			t.Errorf("OpenTokens(grant with another grant's ciphertext) = %v, %v; want seal.ErrOpen", tok.Refresh.Reveal(), err)
		}
		g, _ = tx.Grant(g1.ID)
		if tok, err := tx.OpenTokens(g); err != nil || tok.Refresh.Reveal() != "refresh-of-u1" {
			t.Errorf("OpenTokens(g1) = %v, want refresh-of-u1", err)
		}
		return nil
	})
	// The consistency check finds the grant whose token does not open.
	var ce *ConsistencyError
	if err := db.CheckConsistency(); !errors.As(err, &ce) || len(ce.Found) != 1 || ce.Found[0].Invariant != InvSealed ||
		ce.Found[0].Record != fmt.Sprintf("grant %q", g2.ID) {
		t.Errorf("CheckConsistency() = %v, want one %s problem at grant %s", err, InvSealed, g2.ID)
	}
	if err := db.Update(func(tx *Tx) error { return tx.DeleteGrant(g2.ID) }); err != nil {
		t.Fatal(err)
	}
}

func TestNoPlaintextInFile(t *testing.T) {
	db, _, path := openNew(t)
	var sentinels []string
	for i := 0; i < 50; i++ {
		rt := fmt.Sprintf("SENTINEL-RT-%04d-9c1f", i)
		at := fmt.Sprintf("SENTINEL-AT-%04d-9c1f", i)
		sentinels = append(sentinels, rt, at)
		putGrant(t, db, fmt.Sprintf("u%d", i), rt, at)
	}
	db.Update(func(tx *Tx) error {
		return tx.PutRevocation(Revocation{Provider: "x"}, secret.NewRefreshToken("SENTINEL-REVOKE-9c1f"))
	})
	sentinels = append(sentinels, "SENTINEL-REVOKE-9c1f")
	db.Close()
	raw, _ := os.ReadFile(path)
	for _, s := range sentinels {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("vault file contains plaintext %q", s)
		}
	}
	if bytes.Contains(raw, []byte("SENTINEL")) {
		t.Error("vault file contains a sentinel prefix")
	}
}

func TestDataKeyRotation(t *testing.T) {
	db, m, path := openNew(t)
	want := map[string]string{}
	for i := 0; i < 250; i++ {
		rt := fmt.Sprintf("rt-%d", i)
		g := putGrant(t, db, fmt.Sprintf("u%d", i), rt, "at")
		want[g.ID] = rt
	}
	db.Update(func(tx *Tx) error {
		return tx.PutRevocation(Revocation{ID: "rev1", Provider: "x"}, secret.NewRefreshToken("rt-revoke"))
	})
	old := db.kr.Load().Active()
	newID, err := db.RotateDataKey("test", 7)
	if err != nil {
		t.Fatal(err)
	}
	check := func(db *DB) {
		t.Helper()
		db.View(func(tx *Tx) error {
			n := 0
			tx.Grants(func(g Grant) error {
				n++
				for _, env := range [][]byte{g.SealedRefresh, g.SealedAccess} {
					if id, _ := seal.KeyID(env); id != newID {
						t.Errorf("grant %s sealed with key %d, want %d", g.ID, id, newID)
					}
				}
				tok, err := tx.OpenTokens(g)
				if err != nil || tok.Refresh.Reveal() != want[g.ID] {
					t.Errorf("OpenTokens(%s) = %v", g.ID, err)
				}
				return nil
			})
			if n != 250 {
				t.Errorf("%d grants after rotation, want 250", n)
			}
			r, _ := scanOne[Revocation](tx.tx.Bucket(bucketRevocations))
			if tok, err := tx.OpenRevocation(r); err != nil || tok.Reveal() != "rt-revoke" {
				t.Errorf("OpenRevocation = %v", err)
			}
			return nil
		})
	}
	check(db)
	ks, err := db.KeyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys) != 1 || ks.Keys[0].ID != newID || ks.Active != newID || ks.Keys[0].Records != 501 {
		t.Errorf("KeyStatus() = %+v, want only key %d with 501 records (old key %d gone)", ks, newID, old)
	}
	db.Close()
	db2, err := Open(Options{Path: path, Master: m})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	check(db2)
}

func scanOne[T any](b kv.Bucket) (T, error) {
	var out T
	err := scanJSON(b, nil, func(v T) error { out = v; return nil })
	return out, err
}

func TestRotateMaster(t *testing.T) {
	db, m1, path := openNew(t)
	g := putGrant(t, db, "u1", "rt-1", "at-1")
	m2 := newMaster(t)
	if err := db.RotateMaster(m2, "test"); err != nil {
		t.Fatal(err)
	}
	putGrant(t, db, "u2", "rt-2", "at-2")
	db.Close()
	if _, err := Open(Options{Path: path, Master: m1}); !errors.Is(err, seal.ErrWrongMasterKey) {
		t.Errorf("old master after rotation: %v, want ErrWrongMasterKey", err)
	}
	db, err := Open(Options{Path: path, Master: m2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *Tx) error {
		got, _ := tx.Grant(g.ID)
		if tok, err := tx.OpenTokens(got); err != nil || tok.Refresh.Reveal() != "rt-1" {
			t.Errorf("OpenTokens after master rotation = %v", err)
		}
		return nil
	})
}

// TestMasterRotationKilled kills a process in the middle of a master-key
// rotation, before and after the commit, and checks that exactly one of
// the two keys opens the vault.
func TestMasterRotationKilled(t *testing.T) {
	for _, point := range []string{"rotate-master:before-commit", "rotate-master:after-commit"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tagwatch.db")
			m1, enc1, _ := seal.NewMasterKey()
			m2, enc2, _ := seal.NewMasterKey()
			os.WriteFile(filepath.Join(dir, "old.key"), enc1, 0o600)
			os.WriteFile(filepath.Join(dir, "new.key"), enc2, 0o600)
			db, err := Open(Options{Path: path, Master: m1, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			putGrant(t, db, "u1", "rt-1", "at-1")
			db.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), "TAGWATCH_HELPER=rotate-master", "TAGWATCH_HELPER_DIR="+dir, "TAGWATCH_FAILPOINT="+point)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
			}
			opens := 0
			for _, m := range []*seal.MasterKey{m1, m2} {
				db, err := Open(Options{Path: path, Master: m})
				if err == nil {
					opens++
					db.View(func(tx *Tx) error {
						g, _ := tx.UserGrant("u1", "x")
						if tok, err := tx.OpenTokens(g); err != nil || tok.Refresh.Reveal() != "rt-1" {
							t.Errorf("grant does not open after interrupted rotation: %v", err)
						}
						return nil
					})
					db.Close()
				} else if !errors.Is(err, seal.ErrWrongMasterKey) {
					t.Errorf("Open = %v", err)
				}
			}
			if opens != 1 {
				t.Errorf("%d of the old and new master keys open the vault, want exactly 1", opens)
			}
		})
	}
}

func TestHelperProcess(t *testing.T) {
	if os.Getenv("TAGWATCH_HELPER") != "rotate-master" {
		return // only meaningful as a subprocess of TestMasterRotationKilled
	}
	dir := os.Getenv("TAGWATCH_HELPER_DIR")
	m1, err := seal.LoadMasterKey(seal.Source{File: filepath.Join(dir, "old.key")})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := seal.LoadMasterKey(seal.Source{File: filepath.Join(dir, "new.key")})
	if err != nil {
		t.Fatal(err)
	}
	point := os.Getenv("TAGWATCH_FAILPOINT")
	db, err := Open(Options{Path: filepath.Join(dir, "tagwatch.db"), Master: m1, Failpoint: func(name string) {
		if name == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	db.RotateMaster(m2, "test")
	t.Fatal("failpoint not reached")
}

func TestOutboxIdempotentAndDue(t *testing.T) {
	db, _, _ := openNew(t)
	now := time.Now()
	id := OutboxID("u1", "w1", "post1", "match")
	if id != OutboxID("u1", "w1", "post1", "match") || id == OutboxID("u1", "w1", "post2", "match") {
		t.Fatal("OutboxID is not deterministic per parts")
	}
	for i := 0; i < 3; i++ {
		var added bool
		err := db.Update(func(tx *Tx) error {
			var err error
			added, err = tx.Enqueue(OutboxRow{ID: id, Kind: "match", UserID: "u1", Target: "console:", Payload: []byte(`{}`)})
			return err
		})
		if err != nil || added != (i == 0) {
			t.Fatalf("Enqueue #%d = %v, %v; want added only the first time", i, added, err)
		}
	}
	db.Update(func(tx *Tx) error {
		_, err := tx.Enqueue(OutboxRow{ID: "later", Target: "console:", NextAttempt: now.Add(time.Hour), Payload: []byte(`{}`)})
		return err
	})
	var due []string
	db.View(func(tx *Tx) error {
		return tx.DueOutbox(now.Add(time.Minute), 0, func(r OutboxRow) bool { due = append(due, r.ID); return true })
	})
	if len(due) != 1 || due[0] != id {
		t.Errorf("DueOutbox = %v, want [%s]", due, id)
	}
	db.Update(func(tx *Tx) error {
		r, _ := tx.OutboxRow(id)
		r.State, r.DeliveredAt = OutboxDelivered, now
		return tx.PutOutboxRow(r)
	})
	db.View(func(tx *Tx) error {
		at, ok := tx.NextDue()
		if want := now.Add(time.Hour); !ok || at.UnixNano() != want.UnixNano() {
			t.Errorf("NextDue() = %v, %v; want %v", at, ok, now.Add(time.Hour))
		}
		return nil
	})
}

func TestAuditTrail(t *testing.T) {
	db, _, _ := openNew(t)
	db.Update(func(tx *Tx) error {
		tx.Audit(AuditEvent{Kind: AuditGrantStored, UserID: "u1"})
		return tx.Audit(AuditEvent{Kind: AuditGrantRevoked, UserID: "u1"})
	})
	var kinds []string
	db.View(func(tx *Tx) error {
		return tx.AuditTrail(0, func(ev AuditEvent) error { kinds = append(kinds, ev.Kind); return nil })
	})
	want := []string{AuditVaultCreated, AuditGrantStored, AuditGrantRevoked}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("audit kinds = %v, want %v", kinds, want)
	}
}

func TestBackupOpens(t *testing.T) {
	db, m, _ := openNew(t)
	putGrant(t, db, "u1", "rt", "at")
	var buf bytes.Buffer
	if _, err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(path, buf.Bytes(), 0o600)
	cp, err := Open(Options{Path: path, Master: m})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	cp.View(func(tx *Tx) error {
		if _, err := tx.UserGrant("u1", "x"); err != nil {
			t.Errorf("backup lacks the grant: %v", err)
		}
		return nil
	})
}

// BenchmarkStoreGrant stores a grant (seal two tokens, encode, Update with
// fsync) beside a raw bbolt Update of the same number of bytes on the same
// file system: the ratio is the vault's overhead.
func BenchmarkStoreGrant(b *testing.B) {
	db, _, _ := openNew(b)
	g := Grant{ID: NewID(), UserID: "u1", Provider: "x", Subject: "2244994945", State: GrantActive,
		Scopes: []string{"tweet.read", "users.read", "offline.access"}}
	tok := Tokens{Refresh: secret.NewRefreshToken(strings.Repeat("r", 90)), Access: secret.NewAccessToken(strings.Repeat("a", 90))}
	var size int
	b.Run("vault", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			err := db.Update(func(tx *Tx) error {
				if err := tx.SealTokens(&g, tok); err != nil {
					return err
				}
				return tx.PutGrant(g)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		db.View(func(tx *Tx) error { size = len(tx.tx.Bucket(bucketGrants).Get([]byte(g.ID))); return nil })
	})
	b.Run("raw-bbolt", func(b *testing.B) {
		val := bytes.Repeat([]byte{'x'}, size)
		b.ReportAllocs()
		for b.Loop() {
			err := RawBolt(db).Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("raw"))
				if err != nil {
					return err
				}
				return bk.Put([]byte(g.ID), val)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestOpenCreatesStateDirectory: a first start outside systemd, whose
// state directory does not exist yet, creates it (mode 0700) with the
// vault; without Create nothing is made.
func TestOpenCreatesStateDirectory(t *testing.T) {
	master, _, err := seal.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state", "tagwatch")
	path := filepath.Join(dir, "tagwatch.db")
	if _, err := Open(Options{Path: path, Master: master}); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open without Create = %v, want ErrNoVault", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open without Create made %s (%v)", dir, err)
	}
	db, err := Open(Options{Path: path, Master: master, Create: true})
	if err != nil {
		t.Fatalf("Open with Create in a missing directory: %v", err)
	}
	db.Close()
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state directory = %v, %v; want mode 0700", fi, err)
	}
}
