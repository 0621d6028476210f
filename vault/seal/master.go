package seal

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"tagwatch/vault/secret"
)

// MasterKey wraps the vault's data keys. It prints REDACTED through fmt,
// slog and encoding/json. Safe for concurrent use.
type MasterKey struct {
	aead cipher.AEAD
	id   string
	// derive is a subkey for Derive, so the raw key is not kept.
	derive [32]byte
}

// ErrNoMasterKey means no master key was found where the configuration says.
var ErrNoMasterKey = errors.New("seal: no master key")

// NewMasterKey returns a master key of 32 random bytes and its encoded form
// for a key file or a systemd credential.
func NewMasterKey() (*MasterKey, []byte, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, fmt.Errorf("seal: new master key: %w", err)
	}
	enc := []byte(base64.StdEncoding.EncodeToString(raw) + "\n")
	m, err := ParseMasterKey(enc)
	clear(raw)
	return m, enc, err
}

// ParseMasterKey reads a master key: 32 bytes as base64 or hex text (one
// line, surrounding white space ignored) or as 32 raw bytes.
func ParseMasterKey(b []byte) (*MasterKey, error) {
	var raw []byte
	text := strings.TrimSpace(string(b))
	switch {
	case len(b) == KeySize && !isText(b):
		raw = append([]byte(nil), b...)
	case len(text) == 2*KeySize:
		r, err := hex.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("seal: master key: 64 characters but not hex")
		}
		raw = r
	default:
		r, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(r) != KeySize {
			return nil, fmt.Errorf("seal: master key: want 32 bytes as base64 (44 characters), hex (64) or raw, got %d bytes of input", len(b))
		}
		raw = r
	}
	defer clear(raw)
	a, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	m := &MasterKey{aead: a, id: fingerprint(raw)}
	h := hmac.New(sha256.New, raw)
	h.Write([]byte("tagwatch derive v1"))
	copy(m.derive[:], h.Sum(nil))
	return m, nil
}

// Derive returns a 32-byte key for purpose, derived from the master key
// (HMAC-SHA256), such as the key that signs one-click links when none is
// configured. It changes when the master key is rotated.
func (m *MasterKey) Derive(purpose string) []byte {
	h := hmac.New(sha256.New, m.derive[:])
	h.Write([]byte(purpose))
	return h.Sum(nil)
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// ID returns a fingerprint of the key that is safe to show.
func (m *MasterKey) ID() string { return m.id }

// String returns REDACTED.
func (m *MasterKey) String() string { return secret.Redacted }

// Format prints REDACTED for every verb.
func (m *MasterKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, secret.Redacted) }

// LogValue returns REDACTED.
func (m *MasterKey) LogValue() slog.Value { return slog.StringValue(secret.Redacted) }

// MarshalJSON returns "REDACTED".
func (m *MasterKey) MarshalJSON() ([]byte, error) { return []byte(`"` + secret.Redacted + `"`), nil }

// Source says where a secret comes from: a file, or a systemd credential
// (a file under $CREDENTIALS_DIRECTORY). Exactly one should be set.
type Source struct {
	File       string
	Credential string
}

// IsZero reports whether no source is named.
func (s Source) IsZero() bool { return s.File == "" && s.Credential == "" }

// String describes the source without its contents.
func (s Source) String() string {
	if s.Credential != "" {
		return "credential " + s.Credential
	}
	return "file " + s.File
}

// Path resolves the source to a file path. A credential needs
// $CREDENTIALS_DIRECTORY, which systemd sets for LoadCredential=.
func (s Source) Path() (string, error) {
	switch {
	case s.File != "" && s.Credential != "":
		return "", fmt.Errorf("secret source names both file %s and credential %s: choose one", s.File, s.Credential)
	case s.File != "":
		return s.File, nil
	case s.Credential != "":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", fmt.Errorf("credential %s: $CREDENTIALS_DIRECTORY is not set, so this is not running under systemd with LoadCredential= (run it from its unit, or name a file instead)", s.Credential)
		}
		if strings.ContainsAny(s.Credential, "/\\") || s.Credential == ".." || s.Credential == "." {
			return "", fmt.Errorf("credential name %q must be a plain name", s.Credential)
		}
		return filepath.Join(dir, s.Credential), nil
	default:
		return "", errors.New("no secret source: name a file or a credential")
	}
}

// MaxSecretSize bounds a secret file: a key, a client secret, a PEM
// private key. A larger file is refused, not cut.
const MaxSecretSize = 64 << 10

// ReadSecretFile reads a secret from src. It is the one way tagwatch reads
// a secret file (master key, client secrets, private keys, link key,
// webhook and SMTP secrets). A path that is not a regular file (a
// directory, a FIFO, a socket, a device) is an error at once: a FIFO is
// never opened, so never waited on. A file readable by group or others is
// refused, because a secret there is already shared; one larger than
// MaxSecretSize is refused. A missing file wraps os.ErrNotExist.
func ReadSecretFile(src Source) ([]byte, error) {
	p, err := src.Path()
	if err != nil {
		return nil, err
	}
	// src names a file once; a credential's path is worth showing.
	at := p + " "
	if src.Credential == "" {
		at = ""
	}
	b, err := readRegular(p, at, MaxSecretSize, true)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", src, err)
	}
	return b, nil
}

// MaxFileSize bounds a file ReadFile reads for tagwatch's configuration:
// a CA bundle, a certificate, the configuration itself.
const MaxFileSize = 4 << 20

// ReadFile reads a file of the configuration that is not a secret (a CA
// bundle, a certificate, the configuration itself) as ReadSecretFile
// reads a secret, without the mode check: a path that is not a regular
// file is an error at once, and a file larger than limit is refused.
// Errors name the path; a missing file wraps os.ErrNotExist.
func ReadFile(path string, limit int64) ([]byte, error) {
	b, err := readRegular(path, "", limit, false)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readRegular reads the regular file p of at most limit bytes; private
// refuses a mode readable by group or others. at prefixes what is said of
// the file ("" when the caller names p itself). The stat comes first, so
// that nothing but a regular file is opened; the open is non-blocking
// and checked again, should something else have been put there since.
func readRegular(p, at string, limit int64, private bool) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, withoutPath(err)
	}
	if what := NotRegular(fi.Mode()); what != "" {
		return nil, fmt.Errorf("%sis %s, not a regular file", at, what)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, withoutPath(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, withoutPath(err)
	}
	if what := NotRegular(fi.Mode()); what != "" {
		return nil, fmt.Errorf("%sis %s, not a regular file", at, what)
	}
	if perm := fi.Mode().Perm(); private && perm&0o077 != 0 {
		return nil, fmt.Errorf("%shas mode %04o, readable by group or others; run chmod 600 %s", at, perm, p)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%sis %d bytes, more than the %d this file may hold", at, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, withoutPath(err)
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("%sis more than the %d bytes this file may hold", at, limit)
	}
	return b, nil
}

// NotRegular names what a file of mode m is when it is not a regular file
// ("a directory", "a named pipe (FIFO)"), or returns "" for a regular file.
func NotRegular(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return fmt.Sprintf("not a regular file (mode %v)", m)
}

// withoutPath drops the path from an *os.PathError whose path the message
// already names: "open: no such file or directory", not
// "file P: open P: no such file or directory". errors.Is still holds.
func withoutPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// LoadMasterKey reads and parses the master key from src. A missing key is
// ErrNoMasterKey.
func LoadMasterKey(src Source) (*MasterKey, error) {
	b, err := ReadSecretFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoMasterKey, src)
	}
	if err != nil {
		return nil, err
	}
	defer clear(b)
	m, err := ParseMasterKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return m, nil
}
