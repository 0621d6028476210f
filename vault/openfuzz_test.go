package vault_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
)

// FuzzOpenDamagedVault opens mutated copies of a small real vault (users,
// grants, watches, consent links, outbox rows, audit events): cut short at
// any length, with bytes flipped anywhere (header pages, page headers,
// element tables, records). Each open must end in an error that leaves the
// file byte for byte as it was, or in a store that answers a few reads and
// its consistency check with answers or errors: never a panic, never a
// fault.
//
// The input: cut (0: keep the whole file, else the length modulo the
// size), then flips, 5 bytes each: a little-endian offset (modulo the
// size) and the byte to XOR there; readOnly opens without a write lock.
func FuzzOpenDamagedVault(f *testing.F) {
	dir := f.TempDir()
	good, master := seedVault(f, dir, 3, 0)
	img, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	ps, hwm := header(img)
	flip := func(pairs ...int) []byte {
		var b []byte
		for i := 0; i+1 < len(pairs); i += 2 {
			b = binary.LittleEndian.AppendUint32(b, uint32(pairs[i]))
			b = append(b, byte(pairs[i+1]))
		}
		return b
	}
	f.Add(uint32(0), []byte(nil), false)
	for _, cut := range []int{1, 100, ps - 1, ps, 2 * ps, 2*ps + ps/2, len(img) / 2, len(img) - 1} {
		f.Add(uint32(cut), []byte(nil), false)
	}
	for p := 0; p < int(hwm); p++ {
		base := p * ps
		f.Add(uint32(0), flip(base+8, 0x07), false)       // page flags
		f.Add(uint32(0), flip(base+10, 0xff), p%2 == 0)   // element count
		f.Add(uint32(0), flip(base+12, 0x01), false)      // overflow
		f.Add(uint32(0), flip(base, 0x03), false)         // page id
		f.Add(uint32(0), flip(base+16+4, 0x40), p%2 == 1) // first element: pos or ksize
		f.Add(uint32(0), flip(base+16+8, 0x02), false)    // first element: ksize or pgid
		f.Add(uint32(0), flip(base+16+12, 0x80), false)   // first element: vsize
		f.Add(uint32(0), flip(base+ps-40, 0x20), false)   // record bytes near the page's end
		f.Add(uint32(0), flip(base+ps/2, 0x01, base+ps/2+1, 0x7f), true)
	}
	// The root bucket's leaf: each top-level bucket made a plain value
	// (its bucket flag off), or renamed (a letter of its name changed):
	// the pages stay sound and one of the vault's buckets is missing
	// (the CI's find: Open refuses it, ErrMissingBucket).
	if root := rootPage(img, ps); root > 0 && root < int(hwm) {
		base := root * ps
		if binary.NativeEndian.Uint16(img[base+8:]) == 0x02 { // a leaf page
			for i := range int(binary.NativeEndian.Uint16(img[base+10:])) {
				el := base + 16 + 16*i
				f.Add(uint32(0), flip(el, 0x01), false)
				f.Add(uint32(0), flip(el+int(binary.NativeEndian.Uint32(img[el+4:])), 0x20), i%2 == 0)
			}
		}
	}
	// Header pages: freelist and root ids, both pages' checksums.
	f.Add(uint32(0), flip(16+32, 0x01, ps+16+32, 0x01), false)
	f.Add(uint32(0), flip(16+16, 0x01, ps+16+16, 0x01), false)
	f.Add(uint32(0), flip(16+60, 0x01, ps+16+60, 0x01), false)

	f.Fuzz(func(t *testing.T, cut uint32, flips []byte, readOnly bool) {
		b := bytes.Clone(img)
		for i := 0; i+5 <= len(flips); i += 5 {
			off := int(binary.LittleEndian.Uint32(flips[i:]) % uint32(len(b)))
			b[off] ^= flips[i+4]
		}
		if cut != 0 {
			b = b[:int(cut)%len(b)]
		}
		path := filepath.Join(t.TempDir(), "tagwatch.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before := sha256.Sum256(b)
		db, err := vault.Open(vault.Options{Path: path, Master: master, ReadOnly: readOnly, Logger: vaulttest.Quiet()})
		if err != nil {
			after, rerr := os.ReadFile(path)
			if rerr != nil || sha256.Sum256(after) != before {
				t.Fatalf("Open refused the file (%v) but changed it", err)
			}
			var bad *vault.BadFileError
			if errors.As(err, &bad) && bad.Path != path {
				t.Errorf("BadFileError names %q, want %q", bad.Path, path)
			}
			return
		}
		defer db.Close()
		// A few reads of every kind; errors are answers too.
		_, _ = db.ListUsers()
		_, _ = db.ListGrants()
		_, _ = db.ListWatches("")
		_, _ = db.ListLinks(db.Now())
		_, _ = db.OutboxTallies()
		_, _ = db.KeyStatus()
		_ = db.CheckConsistency()
	})
}

// rootPage returns the page id of the root bucket named by the header
// page bbolt uses (the valid one with the higher transaction id).
func rootPage(img []byte, ps int) int {
	m := 16
	if len(img) >= ps+80 && binary.NativeEndian.Uint64(img[ps+16+48:]) > binary.NativeEndian.Uint64(img[16+48:]) {
		m = ps + 16
	}
	return int(binary.NativeEndian.Uint64(img[m+16:]))
}
