package seal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{Source{File: missing}, "read secret file " + missing + ": open: no such file or directory"},
		{Source{File: open}, "read secret file " + open + ": has mode 0644, readable by group or others; run chmod 600 " + open},
		{Source{File: dir}, "read secret file " + dir + ": is not a regular file"},
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
