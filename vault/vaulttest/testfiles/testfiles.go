// Package testfiles puts, for tests, each kind of thing that can sit at a
// path and is not a regular file (a directory, a FIFO, a socket, a device,
// a symbolic link loop, a dangling symbolic link) and says what is at a
// path, so a test can check that a door refusing it left it unchanged.
// The vault's identification of its file (package vault), secret files
// (vault/seal) and the daemon's doors (cmd/tagwatchd) are tested on them.
//
// It imports only the standard library, so any test package, vault/seal's
// own included, can use it. Its functions are safe for concurrent use on
// different paths.
package testfiles

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

// Kind is a kind of thing that is not a regular file; its string is a
// name for a subtest or a file.
type Kind string

// The kinds Make puts.
const (
	Directory Kind = "directory"
	FIFO      Kind = "fifo"
	// Socket is a unix socket with a listener, closed by t.Cleanup.
	Socket Kind = "socket"
	// Device is a symbolic link to /dev/null, a character device.
	Device      Kind = "device"
	SymlinkLoop Kind = "symlink loop"
	// Dangling is a symbolic link to DanglingTarget, which does not
	// exist beside it.
	Dangling Kind = "dangling symlink"
)

// DanglingTarget is what a Dangling link points to, as the link holds it
// (relative to the link's directory).
const DanglingTarget = "nonexistent"

// Kinds lists every Kind.
var Kinds = []Kind{Directory, FIFO, Socket, Device, SymlinkLoop, Dangling}

// Make puts a thing of kind k at path, where nothing is, and fails t when
// it cannot.
func Make(t testing.TB, k Kind, path string) {
	t.Helper()
	var err error
	switch k {
	case Directory:
		err = os.Mkdir(path, 0o700)
	case FIFO:
		err = syscall.Mkfifo(path, 0o600)
	case Socket:
		var ln net.Listener
		if ln, err = net.Listen("unix", path); err == nil {
			t.Cleanup(func() { ln.Close() })
		}
	case Device:
		err = os.Symlink("/dev/null", path)
	case SymlinkLoop:
		err = os.Symlink(path, path)
	case Dangling:
		err = os.Symlink(DanglingTarget, path)
	default:
		err = fmt.Errorf("unknown kind %q", k)
	}
	if err != nil {
		t.Fatalf("testfiles: make %s at %s: %v", k, path, err)
	}
}

// State is what a door must not change at path: a regular file's
// sha256, a directory's number of entries, else its kind ("missing" when
// nothing is there). It fails t when a regular file cannot be read.
func State(t testing.TB, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		return "missing"
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("testfiles: %v", err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	case fi.IsDir():
		ents, _ := os.ReadDir(path)
		return fmt.Sprintf("directory of %d", len(ents))
	}
	return fi.Mode().String()
}
