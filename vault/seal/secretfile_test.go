package seal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tagwatch/vault/vaulttest/testfiles"
)

// TestReadSecretFileMessages: each error names the secret's file once
// (not "file P: open P: ..."), a credential outside systemd says so, and
// a missing file is still os.ErrNotExist.
func TestReadSecretFileMessages(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	for _, c := range []struct {
		src  Source
		want string
	}{
		{Source{File: missing}, "read secret file " + missing + ": stat: no such file or directory"},
		{Source{File: open}, "read secret file " + open + ": has mode 0644, readable by group or others; run chmod 600 " + open},
		{Source{File: dir}, "read secret file " + dir + ": is a directory, not a regular file"},
		{Source{Credential: "master-key"}, "credential master-key: $CREDENTIALS_DIRECTORY is not set, so this is not running under systemd with LoadCredential="},
	} {
		_, err := ReadSecretFile(c.src)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ReadSecretFile(%v) = %v, want %q", c.src, err, c.want)
		}
	}
	if _, err := ReadSecretFile(Source{File: missing}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadSecretFile(missing) = %v, want os.ErrNotExist", err)
	}
}

// TestSecretPathNotAFile: a secret path that is not a regular file is an
// error at once, naming the path and what is there; a FIFO is never
// opened, so the read does not wait for a writer (today it blocks
// forever). A file larger than a secret may be is refused, not cut. The
// same for ReadFile (CA bundles, certificates, the configuration) and for
// a credential.
func TestSecretPathNotAFile(t *testing.T) {
	dir := t.TempDir()
	at := func(k testfiles.Kind, name string) string {
		p := filepath.Join(dir, name)
		testfiles.Make(t, k, p)
		return p
	}
	sub, fifo, sock := at(testfiles.Directory, "directory"), at(testfiles.FIFO, "fifo"), at(testfiles.Socket, "socket")
	dev, loop := at(testfiles.Device, "device"), at(testfiles.SymlinkLoop, "loop")
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxSecretSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	for _, c := range []struct {
		name, path, want string
	}{
		{"directory", sub, "is a directory, not a regular file"},
		{"fifo", fifo, "is a named pipe (FIFO), not a regular file"},
		{"socket", sock, "is a socket, not a regular file"},
		{"device", dev, "is a character device, not a regular file"},
		{"symlink loop", loop, "stat: too many levels of symbolic links"},
		{"too large", big, fmt.Sprintf("is %d bytes, more than the %d this file may hold", MaxSecretSize+1, MaxSecretSize)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadSecretFile(Source{File: c.path})
			if want := "read secret file " + c.path + ": " + c.want; err == nil || err.Error() != want {
				t.Errorf("ReadSecretFile = %v, want %q", err, want)
			}
			_, err = ReadSecretFile(Source{Credential: filepath.Base(c.path)})
			if want := "read secret credential " + filepath.Base(c.path) + ": "; err == nil || !strings.HasPrefix(err.Error(), want) ||
				!strings.HasSuffix(err.Error(), c.want) {
				t.Errorf("ReadSecretFile(credential) = %v, want %q...%q", err, want, c.want)
			}
			_, err = ReadFile(c.path, MaxSecretSize)
			if want := "read " + c.path + ": " + c.want; err == nil || err.Error() != want {
				t.Errorf("ReadFile = %v, want %q", err, want)
			}
			if _, err := LoadMasterKey(Source{File: c.path}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("LoadMasterKey = %v, want %q", err, c.want)
			}
		})
	}
}
