package vault_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
	"tagwatch/vault/vaulttest/testfiles"
)

// seedVault writes a closed vault of about size bytes to dir/name: users
// with grants and watches (each consent queues outbox rows and audits),
// then audit events until the file is that large. It returns the path and
// the master key.
func seedVault(t testing.TB, dir string, users, size int) (string, *seal.MasterKey) {
	t.Helper()
	path := filepath.Join(dir, "seed.db")
	master, _ := vaulttest.NewMaster(t)
	db, err := vault.Open(vault.Options{Path: path, Master: master, Create: true, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range users {
		vaulttest.Enroll(t, db, vaulttest.Enrollment{User: fmt.Sprintf("u%d", i)})
	}
	for i := 0; ; i++ {
		if img, err := os.ReadFile(path); err != nil || usedSize(img) >= size {
			break
		}
		if err := db.RecordAudit(vault.AuditEvent{Kind: "test_padding", Actor: "seed", Detail: strings.Repeat("p", 8<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, master
}

// header returns the page size and high-water mark of the header page
// bbolt uses (the valid one with the higher transaction id; both are
// valid in a file bbolt closed).
func header(img []byte) (ps int, hwm uint64) {
	ps = int(binary.NativeEndian.Uint32(img[16+8:]))
	m := 16
	if len(img) >= ps+80 && binary.NativeEndian.Uint64(img[ps+16+48:]) > binary.NativeEndian.Uint64(img[16+48:]) {
		m = ps + 16
	}
	return ps, binary.NativeEndian.Uint64(img[m+40:])
}

// usedSize is what the header says the file holds: page size × high-water
// mark (bbolt may have grown the file past it).
func usedSize(img []byte) int {
	ps, hwm := header(img)
	return ps * int(hwm)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// badPaths makes, in dir, one vault path per kind of thing that is not a
// usable vault file, from the good vault at good: the file cut short at
// many lengths, empty, random bytes, another program's files, a bbolt
// file with both header pages or its freelist damaged, and things that
// are not regular files. want is a piece of the error. C05 and its
// neighbours.
func badPaths(t *testing.T, dir, good string) []badPath {
	t.Helper()
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ps, hwm := header(img)
	used := usedSize(img)
	says := fmt.Sprintf("its header says %d (%d pages of %d bytes)", hwm*uint64(ps), hwm, ps)
	hwm0 := binary.NativeEndian.Uint64(img[16+40:])
	says0 := fmt.Sprintf("its header says %d (%d pages of %d bytes)", hwm0*uint64(ps), hwm0, ps)
	var out []badPath
	file := func(name string, b []byte, want string) {
		p := filepath.Join(dir, name)
		writeFile(t, p, b)
		out = append(out, badPath{name, p, want})
	}
	for _, n := range []int{used / 2, 3 * ps, 2 * ps, 2*ps + ps/2, 1, 100, ps - 1, ps, ps + 1, used - 1} {
		want := fmt.Sprintf("is cut short: %d bytes, %s", n, says)
		if n < ps+80 {
			// Only header page 0 is there, and bbolt would use it.
			want = fmt.Sprintf("is cut short: %d bytes, %s", n, says0)
		}
		switch {
		case n == 1:
			want = "is cut short: 1 byte, too few to hold a vault's header"
		}
		file(fmt.Sprintf("cut-%d", n), img[:n], want)
	}
	file("empty", nil, "is empty (0 bytes)")
	rnd := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	file("random", rnd, "65536 bytes of unrecognised content, no bbolt header")
	file("sqlite", append([]byte("SQLite format 3\x00"), make([]byte, 4080)...), "is not a vault: an SQLite database (4096 bytes)")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(img)
	zw.Close()
	file("gzip", gz.Bytes(), "is not a vault: a gzip-compressed file")
	var zb bytes.Buffer
	z := zip.NewWriter(&zb)
	w, _ := z.Create("tagwatch.db")
	w.Write(img[:4096])
	z.Close()
	file("zip", zb.Bytes(), "is not a vault: a zip archive")
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "tagwatch.db", Mode: 0o600, Size: 4096})
	tw.Write(img[:4096])
	tw.Close()
	file("tar", tb.Bytes(), "is not a vault: a tar archive")
	file("json", []byte(`{"users": [{"id": "u1"}]}`+"\n"), "is not a vault: JSON text (26 bytes)")
	file("toml", []byte("[daemon]\nstate_dir = \"/var/lib/tagwatch\"\n# a configuration, not a vault, long enough to read a header\n"), "is not a vault: a text file")
	file("pem", []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"), "is not a vault: a PEM file")

	// bbolt files that are not tagwatch's.
	foreign := func(name string, buckets ...string) {
		p := filepath.Join(dir, name)
		b, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Update(func(tx *bolt.Tx) error {
			for _, n := range buckets {
				bk, err := tx.CreateBucket([]byte(n))
				if err != nil {
					return err
				}
				bk.Put([]byte("k"), []byte("v"))
			}
			return nil
		})
		b.Close()
		want := "is a bbolt database without a tagwatch keyring, of another program (it holds no buckets)"
		if len(buckets) > 0 {
			want = `(its buckets: "config", "other")`
		}
		out = append(out, badPath{name, p, want})
	}
	foreign("bbolt-other", "other", "config")
	foreign("bbolt-empty")

	// Both header pages fail their checksum.
	metas := bytes.Clone(img)
	metas[16+60]++
	metas[ps+16+60]++
	file("both-metas", metas, "has both header pages damaged: bbolt's meta pages 0 and 1 fail their checksum")
	// The freelist page is a leaf page: bbolt panics "invalid freelist page".
	freelist := bytes.Clone(img)
	for _, m := range []int{16, ps + 16} {
		fl := binary.NativeEndian.Uint64(freelist[m+32:])
		binary.NativeEndian.PutUint16(freelist[int(fl)*ps+8:], 0x02)
	}
	file("freelist-leaf", freelist, "is not a freelist page (flags 0x2)")
	// The root page points past the end (a header rewritten by hand).
	root := bytes.Clone(img)
	for _, m := range []int{16, ps + 16} {
		binary.NativeEndian.PutUint64(root[m+16:], hwm+5)
		h := fnv.New64a()
		h.Write(root[m : m+56])
		binary.NativeEndian.PutUint64(root[m+56:], h.Sum64())
	}
	file("root-beyond", root, fmt.Sprintf("has damaged pages: the header names root page %d, outside the file's %d pages", hwm+5, hwm))

	// Things that are not regular files.
	for _, nf := range vaulttest.NotFiles {
		p := filepath.Join(dir, string(nf.Kind))
		testfiles.Make(t, nf.Kind, p)
		out = append(out, badPath{string(nf.Kind), p, nf.Says})
	}
	return out
}

type badPath struct{ name, path, want string }

// TestOpenIdentifiesWhatIsThere (C05): whatever sits at the vault path is
// identified before anything writes to it or maps it, reported as what it
// is with the path and a hint, and left byte for byte unchanged, for a
// read-write, a creating and a read-only open. Today: a Go panic inside
// bbolt or a fault that kills the process.
func TestOpenIdentifiesWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	good, master := seedVault(t, dir, 12, 1<<20)
	for _, c := range badPaths(t, dir, good) {
		t.Run(c.name, func(t *testing.T) {
			before := testfiles.State(t, c.path)
			for _, o := range []vault.Options{{}, {Create: true}, {ReadOnly: true}} {
				o.Path, o.Master, o.Logger, o.LockTimeout = c.path, master, vaulttest.Quiet(), 100*time.Millisecond
				db, err := vault.Open(o)
				if err == nil {
					db.Close()
					t.Fatalf("Open(create=%v, read-only=%v) = a vault, want an error", o.Create, o.ReadOnly)
				}
				var bad *vault.BadFileError
				if !errors.As(err, &bad) || !errors.Is(err, vault.ErrBadFile) {
					t.Fatalf("Open(create=%v, read-only=%v) = %v, want a *BadFileError", o.Create, o.ReadOnly, err)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "vault file "+c.path+" ") || !strings.Contains(msg, c.want) ||
					!strings.Contains(msg, "tagwatchd has") {
					t.Errorf("Open(create=%v, read-only=%v) = %q, want the path, %q and a hint", o.Create, o.ReadOnly, msg, c.want)
				}
				if got := testfiles.State(t, c.path); got != before {
					t.Fatalf("Open(create=%v) changed %s: %s -> %s", o.Create, c.path, before, got)
				}
			}
		})
	}
	// The good file opens, and stays a working store.
	db, err := vault.Open(vault.Options{Path: good, Master: master, Logger: vaulttest.Quiet()})
	if err != nil {
		t.Fatalf("Open(good) = %v", err)
	}
	defer db.Close()
	if us, err := db.ListUsers(); err != nil || len(us) != 12 {
		t.Errorf("ListUsers = %d, %v; want 12", len(us), err)
	}
	if err := db.CheckConsistency(); err != nil {
		t.Error(err)
	}
}

// TestForeignBboltStillNoKeyring: a bbolt file of another program is a
// *BadFileError that is still ErrNoKeyring.
func TestForeignBboltStillNoKeyring(t *testing.T) {
	p := filepath.Join(t.TempDir(), "other.db")
	b, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	m, _ := vaulttest.NewMaster(t)
	_, err = vault.Open(vault.Options{Path: p, Master: m, Create: true})
	if !errors.Is(err, vault.ErrNoKeyring) || !errors.Is(err, vault.ErrBadFile) {
		t.Errorf("Open(empty bbolt) = %v, want ErrNoKeyring and ErrBadFile", err)
	}
}

// TestOpenWaitsForHolderBeforeIdentifying: a vault another process holds
// is ErrLocked, as before, not identified as damaged.
func TestIdentifyHeldVault(t *testing.T) {
	dir := t.TempDir()
	good, master := seedVault(t, dir, 1, 0)
	db, err := vault.Open(vault.Options{Path: good, Master: master, Logger: vaulttest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, ro := range []bool{false, true} {
		_, err := vault.Open(vault.Options{Path: good, Master: master, ReadOnly: ro, LockTimeout: 50 * time.Millisecond})
		if !errors.Is(err, vault.ErrLocked) {
			t.Errorf("Open(held, read-only=%v) = %v, want ErrLocked", ro, err)
		}
	}
}

// TestFileCutUnderOpenStore: the file cut short while a store has it open
// (an operator's copy over it, a full disk) fails the reads that meet the
// missing pages with a *BadFileError, and the process goes on. Today: a
// SIGBUS that kills the daemon ("fatal error: fault").
func TestFileCutUnderOpenStore(t *testing.T) {
	dir := t.TempDir()
	good, master := seedVault(t, dir, 6, 256<<10)
	for _, ro := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "tagwatch.db")
		img, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, img)
		db, err := vault.Open(vault.Options{Path: path, Master: master, ReadOnly: ro, Logger: vaulttest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		ps, _ := header(img)
		if err := os.Truncate(path, int64(2*ps)); err != nil {
			t.Fatal(err)
		}
		_, err = db.ListUsers()
		if !errors.Is(err, vault.ErrBadFile) || !strings.Contains(err.Error(), "vault file "+path+" could not be read") {
			t.Errorf("ListUsers of a file cut under the store (read-only=%v) = %v, want a *BadFileError", ro, err)
		}
		if err := db.CheckConsistency(); err == nil {
			t.Errorf("CheckConsistency of a file cut under the store (read-only=%v) = nil", ro)
		}
		db.Close()
	}
}
