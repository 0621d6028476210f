package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// c10Enroll enrolls user as X account xid (@username) with a watch of
// hashtag through a consent link, as enrollUserAt does for ada.
func c10Enroll(s *svc, user, xid, username, hashtag string) {
	t := s.t
	t.Helper()
	var er statusapi.EnrollResponse
	s.ctlJSON(&er, "enroll", "--user", user, "--provider", "x", "--hashtags", hashtag, "--schedule", "@every 1m",
		"--target", "console:", "--expect", "@"+username)
	b := browse(t)
	code, loc := doReq(t, b, "POST", er.Link)
	if code != http.StatusSeeOther {
		t.Fatalf("POST landing for %s = %d", user, code)
	}
	s.x.SetAutoApprove(xid)
	defer s.x.SetAutoApprove("")
	if code, loc = doReq(t, b, "GET", loc); code != http.StatusFound {
		t.Fatalf("authorize for %s = %d %q", user, code, loc)
	}
	if code, loc = doReq(t, b, "GET", loc); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/enrolled/") {
		t.Fatalf("callback for %s = %d %q\n%s", user, code, loc, s.logs)
	}
}

// damageWatch puts 0xff over the opening brace of watch id's record in
// the vault file at path (C10), as a disk fault does: the record no
// longer decodes.
func damageWatch(t *testing.T, path, id string) {
	t.Helper()
	vaulttest.Damage(t, path, []byte(`{"id":"`+id+`","user_id"`), vaulttest.OverwriteFirst(0xff))
}

// offlineDamagedWatch is C10 on a stopped daemon's vault (watchesEnv):
// user u1's watch of #golang, added with tagwatchd watches add, then
// damaged (damageWatch). cli runs tagwatchd with e's configuration and
// returns its exit status, stdout and stderr; id is the watch's.
func offlineDamagedWatch(t *testing.T) (e env, cli func(args ...string) (int, string, string), id string) {
	t.Helper()
	e = watchesEnv(t)
	cli = func(args ...string) (int, string, string) { return runCLI(append(args, "-config", e.config)...) }
	code, out, errOut := cli("watches", "add", "-user", "u1", "-provider", "x", "-hashtags", "golang", "-schedule", "@every 15m", "-target", "console:")
	if code != 0 {
		t.Fatalf("watches add = %d %q %q", code, out, errOut)
	}
	id = strings.Fields(out)[1]
	damageWatch(t, e.db, id)
	return e, cli, id
}

// TestDamagedRecordSkippedC10 is C10 through the daemon: a backup copy of
// a working vault in which ada's watch has 0xff over its opening brace and
// cy's grant has a few bytes of its sealed refresh token flipped. Today
// the daemon exits at start (every user down) and status, grants and
// users answer "internal error". Expected: the daemon starts; status,
// users, grants and watches answer; status, `tagwatchctl damaged`, the
// tagwatch_damaged_records metric and one audit event per record name
// both; bea's watch runs and her notification is delivered; ada's and
// cy's watches do not run; `tagwatchctl damaged delete` removes ada's
// watch and `tagwatchctl damaged reset` puts cy's grant to needs_reconsent
// and sends cy a new consent link, leaving a consistent vault.
func TestDamagedRecordSkippedC10(t *testing.T) {
	s := newSvc(t, "", false)
	for _, u := range []xsandbox.User{{ID: "1002", Username: "bea", Name: "Bea"}, {ID: "1003", Username: "cy", Name: "Cy"}} {
		if err := s.x.AddUser(u); err != nil {
			t.Fatal(err)
		}
	}
	s.start(0)
	c10Enroll(s, "ada", "1001", "ada", "golang")
	c10Enroll(s, "bea", "1002", "bea", "rustlang")
	c10Enroll(s, "cy", "1003", "cy", "ziglang")
	watchOf := func() map[string]statusapi.Watch {
		t.Helper()
		var ws []statusapi.Watch
		s.ctlJSON(&ws, "watches", "list")
		out := map[string]statusapi.Watch{}
		for _, w := range ws {
			out[w.UserID] = w
		}
		return out
	}
	var gs []statusapi.Grant
	s.ctlJSON(&gs, "grants")
	grantOf := map[string]string{}
	for _, g := range gs {
		grantOf[g.UserID] = g.ID
	}
	ws := watchOf()
	ada, bea, cy := ws["ada"].ID, ws["bea"].ID, ws["cy"].ID
	if ada == "" || bea == "" || cy == "" || grantOf["cy"] == "" {
		t.Fatalf("watches %+v, grants %+v; want one of each per user", ws, gs)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// The backup copy of C10, damaged on disk.
	path := filepath.Join(s.dir, "tagwatch.db")
	db := rawVault(t, s)
	g, err := db.Grant(grantOf["cy"])
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	damageWatch(t, path, ada)
	sealed := base64.StdEncoding.EncodeToString(g.SealedRefresh)
	vaulttest.Damage(t, path, []byte(sealed[8:20]), func(occ []byte) { copy(occ, bytes.Repeat([]byte("A"), len(occ))) })

	s.start(0) // today: the daemon exits here

	var st statusapi.Status
	s.ctlJSON(&st, "status")
	kinds := map[string]string{}
	for _, d := range st.Damaged {
		kinds[d.Kind] = d.ID
	}
	if len(st.Damaged) != 2 || kinds["watch"] != ada || kinds["grant"] != grantOf["cy"] || !strings.Contains(st.Components["vault"], "2 damaged") {
		t.Errorf("status damaged = %+v, vault %q; want watch %s and grant %s", st.Damaged, st.Components["vault"], ada, grantOf["cy"])
	}
	for _, d := range st.Damaged {
		if d.FirstSeen.IsZero() || d.Problem == "" {
			t.Errorf("damaged record %+v: want when it was first seen and what is wrong", d)
		}
	}
	if out, code := s.ctl("status"); code != 0 || !strings.Contains(out, "watch "+ada+": invalid character") ||
		!strings.Contains(out, "grant "+grantOf["cy"]+": its sealed refresh_token does not open") {
		t.Errorf("tagwatchctl status = %d:\n%s\nwant both damaged records named", code, out)
	}
	for _, args := range [][]string{{"users"}, {"grants"}, {"watches", "list"}, {"enroll", "list"}, {"outbox", "list"}, {"keys", "status"}, {"audit"}} {
		if out, code := s.ctl(args...); code != 0 {
			t.Errorf("tagwatchctl %s = %d: %s", strings.Join(args, " "), code, out)
		}
	}
	if out, code := s.ctl("damaged"); code != 0 || !strings.Contains(out, ada) || !strings.Contains(out, grantOf["cy"]) {
		t.Errorf("tagwatchctl damaged = %d:\n%s", code, out)
	}
	metrics, code := s.ctl("metrics")
	for _, want := range []string{`tagwatch_damaged_records{kind="watch"} 1`, `tagwatch_damaged_records{kind="grant"} 1`, `tagwatch_damaged_records{kind="outbox"} 0`} {
		if code != 0 || !strings.Contains(metrics, want) {
			t.Errorf("metrics want %s:\n%s", want, metrics)
		}
	}
	if out, code := s.ctl("watches", "run", ada); code != exitConflict || !strings.Contains(out, `watch "`+ada+`" is damaged: invalid character`) {
		t.Errorf("tagwatchctl watches run of the damaged watch = %d %q; want %d naming it", code, out, exitConflict)
	}
	ws = watchOf()
	if _, listed := ws["ada"]; listed || !ws["cy"].NextRun.IsZero() || ws["bea"].NextRun.IsZero() {
		t.Errorf("watches = %+v; want ada's left out, cy's not scheduled (its grant is damaged), bea's scheduled", ws)
	}

	// bea keeps working: her watch runs and her notification arrives.
	runs := ws["bea"].Runs
	if out, code := s.ctl("watches", "run", bea); code != 0 {
		t.Fatalf("tagwatchctl watches run bea = %d %s", code, out)
	}
	waitFor(t, 30*time.Second, "bea's first run", func() bool { return watchOf()["bea"].Runs > runs })
	s.x.Post(xsandbox.Post{AuthorID: "1002", Text: "hello #rustlang"})
	runs = watchOf()["bea"].Runs
	if out, code := s.ctl("watches", "run", bea); code != 0 {
		t.Fatalf("tagwatchctl watches run bea = %d %s", code, out)
	}
	// delivered says whether a notice of kind to user was delivered.
	delivered := func(user, kind string) func() bool {
		return func() bool {
			var o statusapi.Outbox
			s.ctlJSON(&o, "outbox", "list", "--state", "delivered")
			return slices.ContainsFunc(o.Rows, func(r statusapi.OutboxRow) bool { return r.UserID == user && r.Kind == kind })
		}
	}
	waitFor(t, 30*time.Second, "bea's match delivered", delivered("bea", vault.NoticeMatch))
	if !strings.Contains(s.logs.String(), "#rustlang") {
		t.Errorf("no console notification of bea's match in the log")
	}

	// Reported once each, however often status looked.
	var events []statusapi.AuditEvent
	s.ctlJSON(&events, "audit", "--all")
	damagedEvents := 0
	for _, ev := range events {
		if ev.Kind == vault.AuditRecordDamaged {
			damagedEvents++
		}
	}
	if damagedEvents != 2 {
		t.Errorf("%d %s audit events, want 2 (one per record)", damagedEvents, vault.AuditRecordDamaged)
	}

	// Repaired: each one record, through the socket.
	if out, code := s.ctl("damaged", "delete", "watch", bea); code != exitConflict {
		t.Errorf("tagwatchctl damaged delete of a healthy watch = %d %q, want %d", code, out, exitConflict)
	}
	if out, code := s.ctl("damaged", "delete", "watch", ada); code != 0 {
		t.Errorf("tagwatchctl damaged delete watch = %d %q", code, out)
	}
	var reset statusapi.GrantReset
	s.ctlJSON(&reset, "damaged", "reset", grantOf["cy"])
	if reset.Grant.State != string(vault.GrantNeedsReconsent) || reset.LinkID == "" || reset.Notices != 1 {
		t.Errorf("tagwatchctl damaged reset = %+v; want needs_reconsent and a link sent", reset)
	}
	waitFor(t, 30*time.Second, "cy's re-consent notice delivered", delivered("cy", vault.NoticeReconsent))
	if out, code := s.ctl("damaged"); code != 0 || !strings.Contains(out, "no damaged records") {
		t.Errorf("tagwatchctl damaged after the repair = %d %q", code, out)
	}
	st = statusapi.Status{}
	s.ctlJSON(&st, "status")
	if len(st.Damaged) != 0 || st.Components["vault"] != "ok" {
		t.Errorf("status after the repair = damaged %+v, vault %q", st.Damaged, st.Components["vault"])
	}
	if w := watchOf()["cy"]; w.State != string(vault.WatchSuspended) || w.SuspendReason != string(vault.SuspendNeedsReconsent) {
		t.Errorf("cy's watch after its grant's reset = %s (%s), want suspended (needs_reconsent)", w.State, w.SuspendReason)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	db = rawVault(t, s)
	if err := db.CheckConsistency(); err != nil {
		t.Errorf("vault after the repair: %v", err)
	}
}

// TestDamagedOffline: `tagwatchd damaged` on a stopped daemon's vault
// whose watch record has 0xff over its opening brace lists it, refuses a
// healthy record (6) and an unknown one (5) as tagwatchctl does, deletes
// the damaged one (audited), and lists none after.
func TestDamagedOffline(t *testing.T) {
	e, cli, id := offlineDamagedWatch(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"damaged"}, 0, "watch  " + id, ""},
		{[]string{"check-config"}, 1, `watch "` + id + `" is damaged: invalid character`, "1 stored record is damaged"},
		{[]string{"damaged", "list"}, 0, "invalid character", ""},
		{[]string{"damaged", "-h"}, 0, "Usage: tagwatchd damaged", ""},
		{[]string{"damaged", "delete", "watch"}, exitUsage, "", "want KIND and ID"},
		{[]string{"damaged", "delete", "watch", "nosuch"}, exitNotFound, "", `tagwatchd: damaged delete: watch "nosuch" does not exist`},
		{[]string{"damaged", "delete", "grant", "g1"}, exitConflict, "", "cannot delete as damaged grant g1: it is not damaged"},
		{[]string{"damaged", "delete", "table", "x"}, exitUsage, "", `unknown kind "table"`},
		{[]string{"damaged", "reset"}, exitUsage, "", "want the GRANT id"},
		{[]string{"damaged", "reset", "g1"}, exitConflict, "", "cannot reset grant g1: it is not damaged"},
		{[]string{"damaged", "reset", "nosuch"}, exitNotFound, "", `grant "nosuch" does not exist`},
		{[]string{"watches", "list"}, 0, "WATCH", ""},
		{[]string{"damaged", "delete", "watch", id}, 0, "watch " + id + " deleted (it was damaged: invalid character", ""},
		{[]string{"damaged"}, 0, "no damaged records", ""},
	} {
		code, out, errOut := cli(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("tagwatchd %s = %d %q %q; want %d, %q, %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}
	db := openEnvVault(t, e)
	n := 0
	err := db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if (ev.Kind == vault.AuditRecordDamaged || ev.Kind == vault.AuditDamagedDeleted) && strings.Contains(ev.Detail, id) {
			n++
		}
		return nil
	})
	// The offline list and check-config only read (TestDamagedListReadsOnly):
	// the deletion is the one event; the daemon's start or status records a find.
	if err != nil || n != 1 {
		t.Errorf("audit: %d damaged-record events for %s, %v; want 1 (deleted once)", n, id, err)
	}
}

// TestStatusReadsDamagedRegister: status, users and the metrics read the
// vault's register of damaged records; only the start (reportDamaged)
// and the damaged listing walk every record. A watch damaged after the
// start is skipped by status's own reading of the watches, which puts it
// in the register, so the same status names it (recorded and audited
// once). Before, every status and users request walked every record,
// opening every sealed field.
func TestStatusReadsDamagedRegister(t *testing.T) {
	var walks atomic.Int64
	master, _ := vaulttest.NewMaster(t)
	path := filepath.Join(t.TempDir(), "tagwatch.db")
	db, err := vault.Open(vault.Options{Path: path, Master: master, Create: true, Logger: vaulttest.Quiet(), Rules: vaulttest.StubRules{},
		Failpoint: func(name string) {
			if name == vault.FailpointDamagedWalk {
				walks.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ada := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "ada"}).Started[0].ID
	vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "bea"})
	if err := reportDamaged(db, vaulttest.Quiet()); err != nil {
		t.Fatal(err)
	}
	o := &operator{d: &daemon{db: db}, errs: newErrorRing(10)}
	m := newMetrics("test")
	m.watchVault(db)
	ask := func() statusapi.Status {
		t.Helper()
		st, err := o.Status(context.Background())
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if _, err := o.Users(context.Background()); err != nil {
			t.Fatalf("Users: %v", err)
		}
		if _, err := m.reg.Gather(); err != nil {
			t.Fatalf("metrics: %v", err)
		}
		return st
	}
	for range 5 {
		if st := ask(); len(st.Damaged) != 0 || st.Components["vault"] != "ok" {
			t.Fatalf("status of a healthy vault = damaged %+v, vault %q", st.Damaged, st.Components["vault"])
		}
	}
	// The disk changes under the running daemon: ada's watch no longer
	// decodes.
	damageWatch(t, path, ada)
	for i := range 5 {
		st := ask()
		if len(st.Damaged) != 1 || st.Damaged[0].Kind != vault.KindWatch || st.Damaged[0].ID != ada || st.Damaged[0].FirstSeen.IsZero() ||
			!strings.Contains(st.Components["vault"], "1 damaged record") {
			t.Fatalf("status %d after the damage = damaged %+v, vault %q; want watch %s, first seen", i, st.Damaged, st.Components["vault"], ada)
		}
	}
	users, err := o.Users(context.Background())
	if err != nil || len(users) != 2 || users[0].ID != "ada" || users[0].DamagedWatches != 1 || users[1].DamagedWatches != 0 {
		t.Errorf("Users() = %+v, %v; want ada with 1 damaged watch, bea with none", users, err)
	}
	if got := walks.Load(); got != 1 {
		t.Errorf("%d walks of every record after the start and 11 status, users and metrics requests; want 1 (the start's)", got)
	}
	n := 0
	if err := db.AuditTrail(0, func(ev vault.AuditEvent) error {
		if ev.Kind == vault.AuditRecordDamaged {
			n++
		}
		return nil
	}); err != nil || n != 1 {
		t.Errorf("%d %s audit events, %v; want 1", n, vault.AuditRecordDamaged, err)
	}
	// The listing still walks: it finds what no reader met.
	if rs, err := o.Damaged(context.Background()); err != nil || len(rs) != 1 || walks.Load() != 2 {
		t.Errorf("Damaged() = %+v, %v after %d walks; want ada's watch, from a second walk", rs, err, walks.Load())
	}
}
