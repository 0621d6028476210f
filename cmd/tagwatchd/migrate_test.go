package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/worker/xapi/xsandbox"
)

// rawStore is a whole store, bucket by bucket: every pair as stored and
// each bucket's sequence, read through kv, not through the vault.
type rawStore struct {
	pairs []string // "bucket\x00key\x00value"
	seqs  []string // "bucket=seq"
}

func readRaw(t *testing.T, e kv.Engine) rawStore {
	t.Helper()
	var r rawStore
	err := e.View(func(tx kv.Tx) error {
		r = rawStore{}
		names, err := tx.(kv.BucketLister).Buckets()
		if err != nil {
			return err
		}
		for _, n := range names {
			b := tx.Bucket(n)
			r.seqs = append(r.seqs, fmt.Sprintf("%s=%d", n, b.(kv.Sequencer).Sequence()))
			if err := b.ForEach(func(k, v []byte) error {
				r.pairs = append(r.pairs, string(n)+"\x00"+string(k)+"\x00"+string(v))
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the store: %v", err)
	}
	return r
}

// rawBolt reads a bbolt file's store (read-only).
func rawBolt(t *testing.T, path string) rawStore {
	t.Helper()
	e, err := boltkv.Open(path, boltkv.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer e.Close()
	return readRaw(t, e)
}

// rawPG reads a PostgreSQL database's store.
func rawPG(t *testing.T, dsn string) rawStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return readRaw(t, e)
}

// sameRaw fails t when got is not want, naming the first difference.
func sameRaw(t *testing.T, what string, got, want rawStore) {
	t.Helper()
	if !slices.Equal(got.seqs, want.seqs) {
		t.Errorf("%s: sequences %v, want %v", what, got.seqs, want.seqs)
	}
	if len(got.pairs) != len(want.pairs) {
		t.Errorf("%s: %d pairs, want %d", what, len(got.pairs), len(want.pairs))
	}
	for i := range min(len(got.pairs), len(want.pairs)) {
		if got.pairs[i] != want.pairs[i] {
			b, k, _ := strings.Cut(want.pairs[i], "\x00")
			k, _, _ = strings.Cut(k, "\x00")
			t.Errorf("%s: pair %d differs (want bucket %q key %q)", what, i, b, k)
			return
		}
	}
}

// configVariant writes the configuration base changed by edit next to it
// and returns its path.
func configVariant(t *testing.T, base, name string, edit func(string) string) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(base), name)
	if err := os.WriteFile(path, []byte(edit(string(mustRead(t, base)))), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// onPostgres adds a [storage] table naming dsn.
func onPostgres(dsn string) func(string) string {
	return func(c string) string {
		return c + fmt.Sprintf("\n[storage]\nengine = \"postgres\"\ndsn = %q\n", dsn)
	}
}

// onFile names another bbolt file as the vault.
func onFile(path string) func(string) string {
	return func(c string) string {
		return strings.Replace(c, "[daemon]\n", fmt.Sprintf("[daemon]\ndatabase = %q\n", path), 1)
	}
}

// TestMigrateRoundTrip: a vault a real daemon filled (a grant refreshed,
// a watch run with a match delivered, a dead letter, a pending consent
// link, the audit trail) is copied from its bbolt file into an empty
// PostgreSQL database and from there into a new bbolt file: every
// bucket, key, value and sequence equal to the original's, no token in
// the clear in the database or in what migrate prints. Refused, each
// leaving the target as it was: a source a running daemon holds (bbolt
// file; PostgreSQL with a live heartbeat), a non-empty database, an
// existing file, a master key that is not the vault's. Then the issue's
// "done when": a daemon started on the migrated database with the same
// master key keeps refreshing the grant (rotating refresh tokens, the
// sandbox revoking the family on any reuse) and runs the watch, without a
// re-consent.
func TestMigrateRoundTrip(t *testing.T) {
	c := pgtest.Start(t)
	s := newSvc(t, "", false)
	s.x.SetReuseRevokesFamily(true)
	s.start(200 * time.Millisecond)
	s.enrollUser("ada")
	var grants []statusapi.Grant
	s.ctlJSON(&grants, "grants")
	if len(grants) != 1 {
		t.Fatalf("grants = %+v", grants)
	}
	g := grants[0]
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 {
		t.Fatalf("watches = %+v", ws)
	}
	wid := ws[0].ID
	watch := func() statusapi.Watch {
		var ws []statusapi.Watch
		s.ctlJSON(&ws, "watches", "list")
		for _, w := range ws {
			if w.ID == wid {
				return w
			}
		}
		t.Fatalf("watch %s is gone: %+v", wid, ws)
		return statusapi.Watch{}
	}
	grant := func() statusapi.Grant {
		var gs []statusapi.Grant
		s.ctlJSON(&gs, "grants")
		if len(gs) != 1 || gs[0].ID != g.ID {
			t.Fatalf("grants = %+v, want %s only", gs, g.ID)
		}
		return gs[0]
	}
	matches := func() int {
		var o statusapi.Outbox
		s.ctlJSON(&o, "outbox", "list", "--state", "delivered")
		n := 0
		for _, r := range o.Rows {
			if r.UserID == "ada" && r.Kind == vault.NoticeMatch {
				n++
			}
		}
		return n
	}
	// runMatch runs the watch once for the baseline, posts, runs it again
	// and waits for the match's delivery.
	runMatch := func(text string) {
		t.Helper()
		for _, post := range []bool{false, true} {
			if post {
				s.x.Post(xsandbox.Post{AuthorID: "1001", Text: text})
			}
			runs, delivered := watch().Runs, matches()
			if out, code := s.ctl("watches", "run", wid); code != 0 {
				t.Fatalf("tagwatchctl watches run = %d %s", code, out)
			}
			waitFor(t, 30*time.Second, "a run of the watch", func() bool { return watch().Runs > runs })
			if post {
				waitFor(t, 30*time.Second, "the match delivered", func() bool { return matches() > delivered })
			}
		}
	}
	// refresh asks for the grant's token n times, each after the last
	// one was due: the sandbox's access tokens live 3 s, and the 2 s skew
	// is capped at half that (as TestService).
	refresh := func(n int) {
		t.Helper()
		for i := range n {
			time.Sleep(1600 * time.Millisecond)
			if _, err := s.op.d.renew.Source(g.ID).Token(context.Background()); err != nil {
				t.Fatalf("token %d: %v\n%s", i, err, s.logs)
			}
		}
	}
	runMatch("before the move #golang")
	if err := s.op.d.db.Update(func(tx *vault.Tx) error {
		if _, err := tx.Enqueue(vault.OutboxRow{ID: "dead1", Kind: vault.NoticeMatch, UserID: "ada", Target: "console:", Payload: []byte(`{}`)}); err != nil {
			return err
		}
		r, err := tx.OutboxRow("dead1")
		if err != nil {
			return err
		}
		r.State, r.Attempts, r.LastError = vault.OutboxDead, 9, "410 gone"
		return tx.PutOutboxRow(r)
	}); err != nil {
		t.Fatal(err)
	}
	var link statusapi.EnrollResponse
	s.ctlJSON(&link, "enroll", "--user", "bea", "--provider", "x", "--hashtags", "rust", "--schedule", "@hourly", "--target", "console:")
	refresh(1)

	base := s.config // the daemon's, on its bbolt file
	pgDSN := c.DSN(c.CreateDB(t))
	toPG := configVariant(t, base, "pg.toml", onPostgres(pgDSN))
	var printed strings.Builder
	migrate := func(from, to string) (int, string, string) {
		t.Helper()
		code, out, errOut := runCLI("storage", "migrate", "-from", from, "-to", to)
		printed.WriteString(out + errOut)
		return code, out, errOut
	}
	empty := func(dsn string) {
		t.Helper()
		if r := rawPG(t, dsn); len(r.seqs) != 0 {
			t.Errorf("the target database holds %v after a refusal, want nothing", r.seqs)
		}
	}

	// The daemon holds its file: refused, the target untouched.
	if code, out, errOut := migrate(base, toPG); code != exitConflict || !strings.Contains(errOut, "is in use: a running daemon holds it") {
		t.Errorf("migrate from a running daemon's file = %d %q %q, want %d saying it is in use", code, out, errOut, exitConflict)
	}
	empty(pgDSN)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	refreshes := grantCount(t, s)
	original := rawBolt(t, filepath.Join(s.dir, "tagwatch.db"))
	if len(original.pairs) < 20 {
		t.Fatalf("only %d pairs in the vault: it was not filled", len(original.pairs))
	}

	// A master key that is not the vault's: refused before a byte is
	// written (78), the file not created, the database left empty.
	otherKey := filepath.Join(filepath.Dir(s.config), "other.key")
	if code, out, errOut := runCLI("keys", "generate", otherKey); code != 0 {
		t.Fatalf("keys generate = %d %q %q", code, out, errOut)
	}
	withKey := func(next func(string) string) func(string) string {
		return func(c string) string { return strings.Replace(next(c), s.keyFile, otherKey, 1) }
	}
	wrongFile := filepath.Join(t.TempDir(), "wrong.db")
	for _, to := range []string{
		configVariant(t, base, "wrong-pg.toml", withKey(onPostgres(pgDSN))),
		configVariant(t, base, "wrong-file.toml", withKey(onFile(wrongFile))),
	} {
		if code, out, errOut := migrate(base, to); code != exitConfig || !strings.Contains(errOut, "wrong master key") ||
			!strings.Contains(errOut, "nothing was written") {
			t.Errorf("migrate with another master key = %d %q %q, want %d", code, out, errOut, exitConfig)
		}
	}
	empty(pgDSN)
	if _, err := os.Lstat(wrongFile); !os.IsNotExist(err) {
		t.Errorf("a refused migrate left %s: %v", wrongFile, err)
	}

	// bbolt -> PostgreSQL.
	code, out, errOut := migrate(base, toPG)
	if code != 0 {
		t.Fatalf("migrate to PostgreSQL = %d %q %q", code, out, errOut)
	}
	for _, want := range []string{"copied the vault file " + filepath.Join(s.dir, "tagwatch.db"), "to the PostgreSQL database " + pgDSN,
		"verified: every bucket, key, value and sequence", "vault: 2 users, 1 grant, 1 watch, 2 consent links, 3 outbox rows,", "records  sequence\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate said\n%s\nwant %q in it", out, want)
		}
	}
	sameRaw(t, "bbolt -> PostgreSQL", rawPG(t, pgDSN), original)
	if code, out, errOut := migrate(base, toPG); code != exitConflict ||
		!strings.Contains(errOut, "the PostgreSQL database "+pgDSN+" is not empty: it holds ") || !strings.Contains(errOut, "meta: 2 records") {
		t.Errorf("migrate into the filled database = %d %q %q, want %d naming it and its buckets", code, out, errOut, exitConflict)
	}
	sameRaw(t, "PostgreSQL after a refused migrate", rawPG(t, pgDSN), original)

	// PostgreSQL -> a new bbolt file, and not over an existing one.
	back := filepath.Join(t.TempDir(), "state", "back.db")
	toFile := configVariant(t, base, "back.toml", onFile(back))
	if code, out, errOut := migrate(toPG, toFile); code != 0 {
		t.Fatalf("migrate back to a file = %d %q %q", code, out, errOut)
	}
	sameRaw(t, "bbolt -> PostgreSQL -> bbolt", rawBolt(t, back), original)
	bboltCheck(t, back)
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new file = %v, %v; want mode 0600", fi, err)
	}
	fileSum := sum(t, back)
	if code, out, errOut := migrate(toPG, toFile); code != exitConflict || !strings.Contains(errOut, back+" exists; migrate writes a new file only") {
		t.Errorf("migrate over an existing file = %d %q %q, want %d", code, out, errOut, exitConflict)
	}
	if sum(t, back) != fileSum {
		t.Error("a refused migrate changed the existing file")
	}
	for _, tok := range s.tokens.all() {
		if strings.Contains(printed.String(), tok) {
			t.Errorf("migrate printed a token")
		}
		for _, p := range rawPG(t, pgDSN).pairs {
			if strings.Contains(p, tok) {
				t.Errorf("the database holds a token in the clear")
			}
		}
	}

	// The migrated daemon: same master key, the PostgreSQL vault. It
	// keeps the grant (refreshing it, rotating its refresh token) and runs
	// the watch; nobody consents again.
	consents := s.x.Stats().Consents
	s.config = toPG
	s.start(200 * time.Millisecond)
	if s.op.d.db.Path() != "" {
		t.Fatalf("the daemon runs on %q, want PostgreSQL", s.op.d.db.Path())
	}
	refresh(3)
	if got := grant().RefreshCount; got < refreshes+3 {
		t.Errorf("refresh count on PostgreSQL = %d, want at least %d (%d when migrated, and 3 more)", got, refreshes+3, refreshes)
	}
	runMatch("after the move #golang")

	// While it runs, its database is in use: refused (its heartbeat).
	thirdFile := filepath.Join(t.TempDir(), "third.db")
	if code, out, errOut := migrate(toPG, configVariant(t, base, "third.toml", onFile(thirdFile))); code != exitConflict ||
		!strings.Contains(errOut, "is in use by 1 daemon: ") || !strings.Contains(errOut, "stop every daemon on it first") {
		t.Errorf("migrate from a database a daemon runs on = %d %q %q, want %d naming it", code, out, errOut, exitConflict)
	}
	if _, err := os.Lstat(thirdFile); !os.IsNotExist(err) {
		t.Errorf("a refused migrate left %s: %v", thirdFile, err)
	}

	got := grant()
	st := s.x.Stats()
	if got.State != "active" || !got.NeedsReconsentSince.IsZero() || got.LostRotations != 0 ||
		st.Consents != consents || st.RefreshReuses != 0 || st.FamilyRevocations != 0 {
		t.Errorf("after the move: grant %+v, sandbox %d consents (had %d), %d reuses, %d families revoked; want active, no re-consent, no reuse",
			got, st.Consents, consents, st.RefreshReuses, st.FamilyRevocations)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// grantCount is the refresh count of the only grant in a stopped
// daemon's bbolt vault.
func grantCount(t *testing.T, s *svc) int {
	t.Helper()
	db := rawVault(t, s)
	defer db.Close()
	gs, err := db.ListGrants()
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants = %v, %v", gs, err)
	}
	return gs[0].RefreshCount
}

// TestMigrateRefusals: what migrate refuses before it writes anything,
// on bbolt files: usage (no target, the same configuration twice, two
// configurations naming one file), a source with a damaged record (it
// names the record and the command that repairs it), a source that is
// not there. The source is left byte for byte, no target file appears.
// And a new file gets its directory's owner (the daemon's, under
// StateDirectory=) when migrate runs as root.
func TestMigrateRefusals(t *testing.T) {
	e, _, id := offlineDamagedWatch(t)
	before := sum(t, e.db)
	target := filepath.Join(t.TempDir(), "state", "new.db")
	variant := func(name string, edit func(string) string) string {
		return configVariant(t, e.config, name, edit)
	}
	toNew := variant("new.toml", onFile(target))
	sameFile := variant("same.toml", onFile(e.db))
	missing := variant("missing.toml", onFile(filepath.Join(t.TempDir(), "nothing.db")))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-from", e.config}, exitUsage, "want -to NEW.toml"},
		{[]string{"-from", e.config, "-to", e.config}, exitUsage, "-from and -to are the same file"},
		{[]string{"-from", e.config, "-to", sameFile}, exitUsage, "both name the vault file " + e.db},
		{[]string{"-from", e.config, "-to", toNew, "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"-from", missing, "-to", toNew}, exitFailure, "there is no vault at "},
		{[]string{"-from", e.config, "-to", toNew}, exitFailure, `watch "` + id + `": is damaged`},
		{[]string{"-from", e.config, "-to", filepath.Join(e.dir, "nosuch.toml")}, exitConfig, "nosuch.toml"},
	} {
		code, out, errOut := runCLI(append([]string{"storage", "migrate"}, tc.args...)...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("storage migrate %q = %d %q %q, want %d saying %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if _, _, errOut := runCLI("storage", "migrate", "-from", e.config, "-to", toNew); !strings.Contains(errOut, "nothing was written: repair the source first (tagwatchd damaged list -config "+e.config+")") {
		t.Errorf("migrate of a damaged vault said %q, want the repair", errOut)
	}
	if code, _, errOut := runCLI("storage"); code != exitUsage || !strings.Contains(errOut, "storage: want a subcommand: migrate") {
		t.Errorf("tagwatchd storage = %d %q", code, errOut)
	}
	if code, out, _ := runCLI("storage", "migrate", "-h"); code != 0 {
		t.Errorf("tagwatchd storage migrate -h = %d %q", code, out)
	}
	if sum(t, e.db) != before {
		t.Error("a refused migrate changed the source")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("a refused migrate left %s: %v", target, err)
	}

	// Repaired, it goes through; the new file is its directory owner's.
	if code, out, errOut := runCLI("damaged", "delete", "watch", id, "-config", e.config); code != 0 {
		t.Fatalf("damaged delete = %d %q %q", code, out, errOut)
	}
	owner := os.Geteuid()
	if owner == 0 {
		owner = 65534 // nobody: the daemon's dynamic user
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Dir(target), owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errOut := runCLI("storage", "migrate", "-from", e.config, "-to", toNew); code != 0 || !strings.Contains(out, "vault: 1 user, 1 grant, 0 watches") {
		t.Fatalf("migrate of the repaired vault = %d %q %q", code, out, errOut)
	}
	sameRaw(t, "bbolt -> bbolt", rawBolt(t, target), rawBolt(t, e.db))
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new file is owned by %d with mode %v, want %d and 0600", st.Uid, fi.Mode().Perm(), owner)
	}
}
