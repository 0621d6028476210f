package boltkv_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/kv/kvtest"
)

// TestContract runs the kv contract against bbolt.
func TestContract(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Engine {
		e, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), boltkv.Options{Timeout: time.Second})
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		return e
	})
}

// TestFile: what only the bbolt engine has, the file, its lock and its
// page check.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	e, err := boltkv.Open(path, boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new file = %v, %v; want mode 0600", fi, err)
	}
	if fi, err := e.File().Stat(); err != nil || fi.Name() != "kv.db" {
		t.Errorf("File().Stat() = %v, %v; want the file", fi, err)
	}
	if _, err := boltkv.Open(path, boltkv.Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, boltkv.ErrTimeout) {
		t.Errorf("second Open() of a held file = %v, want ErrTimeout", err)
	}
	err = e.Update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("a"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		if errs := tx.(kv.Checker).Check(); len(errs) != 0 {
			t.Errorf("Check() of a sound file = %v", errs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.BackupTo(f)
	f.Close()
	if err != nil || n == 0 {
		t.Fatalf("BackupTo() = %d, %v", n, err)
	}
	cp, err := boltkv.Open(backup, boltkv.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	err = cp.View(func(tx kv.Tx) error {
		if v := tx.Bucket([]byte("a")).Get([]byte("k")); string(v) != "v" {
			t.Errorf("the copy holds k = %q, want v", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Update(func(kv.Tx) error { return nil }); err == nil {
		t.Error("Update() of a read-only engine = nil, want an error")
	}
}
