// Package vaulttest opens real vaults for tests, one bbolt file in
// t.TempDir() each (or on a storage engine the test opens: Engine), and
// checks every one after its test: when the test
// ends, Open's cleanup runs DB.CheckConsistency (bbolt's page check and
// the store's invariants, vault.Inv*) and fails the test with a message
// naming each broken invariant and its record, the way bbolt's own test
// helper runs Check after every test. It then closes the vault.
//
// Every test package that opens a vault uses Open, so a test that leaves
// the store in a state no domain method makes fails where it did so,
// not in production. The check runs after the test's later cleanups
// (t.Cleanup is last in, first out), so stop goroutines that write to the
// vault in cleanups registered after Open, or before the test returns.
//
// A test that closes its vault (to reopen it, or to hand the file to a
// child process) is checked too: the cleanup reopens the file with the
// same master key. When it cannot (another handle still holds the lock,
// the test rotated the master key), it logs why the file was not checked.
//
// Everything here is safe for concurrent use by the goroutines of one
// test.
package vaulttest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/seal"
)

// T0 is the default start of a test Clock: a fixed instant, so tests read
// the same on every run.
var T0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// Option configures Open.
type Option func(*config)

type config struct {
	path     string
	master   *seal.MasterKey
	now      func() time.Time
	rules    vault.WatchRules
	logger   *slog.Logger
	tolerate map[vault.Invariant]string
	engine   func() (kv.Engine, error)
}

// Path opens (creating it when missing) the file at p instead of a new
// one in t.TempDir(): a test that reopens a vault, or opens one a child
// process wrote.
func Path(p string) Option { return func(c *config) { c.path = p } }

// Engine opens the vault on the storage engine open returns
// (vault.Options.Engine) instead of a file: a PostgreSQL database, a
// wrapped engine. The check after the test calls open again when the
// test closed the vault, so open must return a new engine on the same
// store each time.
func Engine(open func() (kv.Engine, error)) Option { return func(c *config) { c.engine = open } }

// Master opens the vault with m; default a new master key (NewMaster).
func Master(m *seal.MasterKey) Option { return func(c *config) { c.master = m } }

// Now is the vault's clock; default time.Now. Use a Clock to move time.
func Now(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Rules are the vault's watch rules; default StubRules{}. Rules(nil)
// opens a vault without rules (its watch methods refuse to work).
func Rules(r vault.WatchRules) Option {
	return func(c *config) { c.rules = r }
}

// Logger receives the vault's log; default a discarding logger.
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Tolerate lets the check pass records that break inv, for a test that
// stores on purpose a state no domain method makes (to prove a
// component's defence against it). why is logged; say what the test
// needs. Every other invariant is still checked.
func Tolerate(inv vault.Invariant, why string) Option {
	return func(c *config) {
		if c.tolerate == nil {
			c.tolerate = map[vault.Invariant]string{}
		}
		c.tolerate[inv] = why
	}
}

// NewMaster returns a new master key and its encoded form (for a child
// process or a key file).
func NewMaster(t testing.TB) (*seal.MasterKey, []byte) {
	t.Helper()
	m, enc, err := seal.NewMasterKey()
	if err != nil {
		t.Fatalf("vaulttest: new master key: %v", err)
	}
	return m, enc
}

// Quiet is a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Open opens a vault for t (by default a new file in t.TempDir(), a new
// master key, time.Now, StubRules) and registers a cleanup that checks
// its consistency and closes it. It fails the test at once when the vault
// does not open.
func Open(t testing.TB, opts ...Option) *vault.DB {
	t.Helper()
	c := config{rules: StubRules{}, logger: Quiet()}
	for _, o := range opts {
		o(&c)
	}
	if c.path == "" && c.engine == nil {
		c.path = filepath.Join(t.TempDir(), "tagwatch.db")
	}
	name := c.path
	if c.engine != nil {
		name = "the vault on its engine"
	}
	if c.master == nil {
		c.master, _ = NewMaster(t)
	}
	vo := vault.Options{Path: c.path, Master: c.master, Create: true, Now: c.now, Logger: c.logger, Rules: c.rules}
	if c.engine != nil {
		e, err := c.engine()
		if err != nil {
			t.Fatalf("vaulttest: open the engine: %v", err)
		}
		vo.Path, vo.Engine = "", e
	}
	db, err := vault.Open(vo)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	t.Cleanup(func() {
		check(t, db, c)
		if err := db.Close(); err != nil {
			t.Errorf("vaulttest: close %s: %v", name, err)
		}
	})
	return db
}

// check is the cleanup's check: of db, or of its file reopened when the
// test closed db.
func check(t testing.TB, db *vault.DB, c config) {
	t.Helper()
	err := db.CheckConsistency()
	if errors.Is(err, kv.ErrClosed) {
		opts := vault.Options{Path: c.path, Master: c.master, LockTimeout: 100 * time.Millisecond, Logger: Quiet()}
		if c.engine != nil {
			e, eerr := c.engine()
			if eerr != nil {
				t.Errorf("vaulttest: open the engine again to check it: %v", eerr)
				return
			}
			opts.Engine = e
		}
		again, oerr := vault.Open(opts)
		switch {
		case errors.Is(oerr, vault.ErrLocked):
			t.Logf("vaulttest: %s not checked: another handle holds it", c.path)
			return
		case errors.Is(oerr, seal.ErrWrongMasterKey), errors.Is(oerr, vault.ErrNoVault):
			t.Logf("vaulttest: %s not checked: %v", c.path, oerr)
			return
		case oerr != nil:
			t.Errorf("vaulttest: reopen %s to check it: %v", c.path, oerr)
			return
		}
		defer again.Close()
		err = again.CheckConsistency()
	}
	name := c.path
	if c.engine != nil {
		name = "the vault on its engine"
	}
	report(t, name, err, c)
}

func report(t testing.TB, path string, err error, c config) {
	t.Helper()
	var ce *vault.ConsistencyError
	if !errors.As(err, &ce) {
		if err != nil {
			t.Errorf("vaulttest: check %s: %v", path, err)
		}
		return
	}
	var b strings.Builder
	n := 0
	for _, i := range ce.Found {
		if why, ok := c.tolerate[i.Invariant]; ok {
			t.Logf("vaulttest: tolerated (%s): %s", why, i)
			continue
		}
		n++
		b.WriteString("\n\t")
		b.WriteString(i.String())
	}
	if n > 0 {
		t.Errorf("vaulttest: consistency check of %s after %s: %d problems:%s", path, t.Name(), n, b.String())
	}
}

// Clock is a settable clock for a vault and the components around it.
// The zero Clock reads T0. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading at.
func NewClock(at time.Time) *Clock { return &Clock{now: at} }

// Now returns the clock's reading.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		return T0
	}
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		c.now = T0
	}
	c.now = c.now.Add(d)
}

// Set moves the clock to at.
func (c *Clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// StubRules is a small hand-written vault.WatchRules for tests that need
// rules but not tagwatch's real ones (worker.Rules): hashtags are trimmed,
// lose a leading '#', must be letters, digits or '_' with a letter among
// them, and are deduplicated case-insensitively; a watch needs a hashtag,
// a schedule and a target; Refuse lists hashtags and targets refused (a
// channel the configuration no longer has). Safe for concurrent use.
type StubRules struct {
	Refuse []string
}

var _ vault.WatchRules = StubRules{}

// CheckWatch implements vault.WatchRules.
func (r StubRules) CheckWatch(provider string, w *vault.WatchSpec) error {
	var tags []string
	for _, h := range w.Hashtags {
		h = strings.TrimPrefix(strings.TrimSpace(h), "#")
		letter := false
		for _, c := range h {
			if !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' {
				return fmt.Errorf("hashtag %q: use letters, digits or underscores", h)
			}
			letter = letter || unicode.IsLetter(c)
		}
		if !letter {
			return fmt.Errorf("hashtag %q: needs a letter", h)
		}
		if slices.Contains(r.Refuse, h) {
			return fmt.Errorf("hashtag %q is refused", h)
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return strings.EqualFold(t, h) }) {
			tags = append(tags, h)
		}
	}
	if len(tags) == 0 {
		return errors.New("a watch needs at least one hashtag")
	}
	w.Hashtags = tags
	if w.Schedule = strings.TrimSpace(w.Schedule); w.Schedule == "" {
		return errors.New("a watch needs a schedule")
	}
	if len(w.Targets) == 0 {
		return errors.New("a watch needs at least one notification target")
	}
	for _, t := range w.Targets {
		if t == "" || slices.Contains(r.Refuse, t) {
			return fmt.Errorf("target %q: no channel delivers to it", t)
		}
	}
	return nil
}
