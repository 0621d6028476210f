package vaulttest

import (
	"bytes"
	"os"
	"testing"
)

// Damage changes a closed vault file on disk the way a disk fault or a
// hand-edited backup does: it finds every occurrence of find in the file
// (bbolt keeps a record's bytes whole in its page; stale copies in free
// pages are found too) and lets mutate change each in place (mutate gets
// the len(find) bytes of one occurrence). It fails t when find does not
// occur, and returns how many occurrences it changed.
//
// Damage the bytes of a record's value, never a key or a page header: the
// point is a healthy file holding one damaged record.
func Damage(t testing.TB, path string, find []byte, mutate func(occurrence []byte)) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("vaulttest: damage %s: %v", path, err)
	}
	n := 0
	for i := 0; ; {
		j := bytes.Index(raw[i:], find)
		if j < 0 {
			break
		}
		mutate(raw[i+j : i+j+len(find)])
		n++
		i += j + len(find)
	}
	if n == 0 {
		t.Fatalf("vaulttest: damage %s: %q does not occur in the file", path, find)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("vaulttest: damage %s: %v", path, err)
	}
	if err := os.WriteFile(path, raw, info.Mode().Perm()); err != nil {
		t.Fatalf("vaulttest: damage %s: %v", path, err)
	}
	return n
}

// OverwriteFirst returns a Damage mutation that overwrites the first
// bytes of an occurrence with b: OverwriteFirst(0xff) puts 0xff over a
// record's opening brace.
func OverwriteFirst(b ...byte) func([]byte) {
	return func(occ []byte) { copy(occ, b) }
}
