package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// TestRateHeldWatchAtEveryDoor: while X's per-user window holds ada's
// runs, `tagwatchctl watches` and the status JSON agree that the watch's
// next run is when it next asks X (the first fire at or after the hold's
// end, not a fire the hold skips), and `tagwatchctl watches run` refuses
// with a conflict (exit 6) naming the hold and until when, instead of
// "queued to run now" and nothing run.
func TestRateHeldWatchAtEveryDoor(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada")
	s.x.SetRateLimit(xsandbox.EndpointSearch, 1, 0, 15*time.Minute)
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	if len(ws) != 1 {
		t.Fatalf("watches = %+v, want one", ws)
	}
	id := ws[0].ID
	for range 3 {
		s.op.d.worker.RunWatch(context.Background(), id)
	}
	s.ctlJSON(&ws, "watches", "list")
	w := ws[0]
	if w.RateLimited == nil {
		t.Fatalf("watch %+v: want it rate limited", w)
	}
	until := w.RateLimited.Until
	if w.NextRun.Before(until) {
		t.Errorf("status next_run = %s during a hold until %s: want when the watch next asks X (at or after the hold's end)", w.NextRun, until)
	}
	out, code := s.ctl("watches", "list")
	if code != 0 || !strings.Contains(out, w.NextRun.UTC().Format("2006-01-02 15:04:05Z")) {
		t.Errorf("tagwatchctl watches = %d\n%s\nwant NEXT RUN %s, as the status JSON says", code, out, w.NextRun.UTC())
	}
	calls := s.x.Stats().APICalls[xsandbox.EndpointSearch]["1001"]
	out, code = s.ctl("watches", "run", id)
	untilText := until.UTC().Format("2006-01-02 15:04:05Z")
	if code != 6 || !strings.Contains(out, "held by a rate limit") || !strings.Contains(out, "until "+untilText) ||
		!strings.Contains(out, "/2/tweets/search/recent at x") || strings.Contains(out, "queued") {
		t.Errorf("tagwatchctl watches run during the hold = %d %q; want a conflict (6) naming the hold until %s", code, out, untilText)
	}
	if n := s.x.Stats().APICalls[xsandbox.EndpointSearch]["1001"]; n != calls {
		t.Errorf("X saw %d searches after the refused run, want %d", n, calls)
	}
}

// TestDamagedGrantShown: a grant whose sealed refresh token no longer
// opens is a row of `tagwatchctl grants` (state damaged, what is wrong,
// the repair commands), its user's watch says why it does not run (held:
// its grant is damaged), and `tagwatchctl users` says that a user has a
// damaged grant or watch besides the ones it counts.
func TestDamagedGrantShown(t *testing.T) {
	s := newSvc(t, "", false)
	if err := s.x.AddUser(xsandbox.User{ID: "1002", Username: "bea", Name: "Bea"}); err != nil {
		t.Fatal(err)
	}
	s.start(0)
	c10Enroll(s, "ada", "1001", "ada", "golang")
	c10Enroll(s, "bea", "1002", "bea", "rustlang")
	var gs []statusapi.Grant
	s.ctlJSON(&gs, "grants")
	var ws []statusapi.Watch
	s.ctlJSON(&ws, "watches", "list")
	grantOf, watchOf := map[string]string{}, map[string]string{}
	for _, g := range gs {
		grantOf[g.UserID] = g.ID
	}
	for _, w := range ws {
		watchOf[w.UserID] = w.ID
	}
	adaG, beaW := grantOf["ada"], watchOf["bea"]
	if adaG == "" || beaW == "" || watchOf["ada"] == "" {
		t.Fatalf("grants %+v, watches %+v", gs, ws)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	db := rawVault(t, s)
	g, err := db.Grant(adaG)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	path := filepath.Join(s.dir, "tagwatch.db")
	sealed := base64.StdEncoding.EncodeToString(g.SealedRefresh)
	vaulttest.Damage(t, path, []byte(sealed[8:20]), func(occ []byte) { copy(occ, bytes.Repeat([]byte("A"), len(occ))) })
	vaulttest.Damage(t, path, []byte(`{"id":"`+beaW+`","user_id"`), vaulttest.OverwriteFirst(0xff))
	s.start(0)

	s.ctlJSON(&gs, "grants")
	i := slices.IndexFunc(gs, func(g statusapi.Grant) bool { return g.ID == adaG })
	reset, del := "tagwatchctl damaged reset "+adaG, "tagwatchctl damaged delete grant "+adaG
	if i < 0 || gs[i].State != "damaged" || gs[i].UserID != "ada" || gs[i].Provider != "x" ||
		!strings.Contains(gs[i].Problem, "does not open") || !slices.Equal(gs[i].Repair, []string{reset, del}) {
		t.Errorf("grants = %+v; want ada's %s damaged at x, with what is wrong and the repair", gs, adaG)
	}
	if out, code := s.ctl("grants"); code != 0 || !strings.Contains(out, adaG) || !strings.Contains(out, "damaged: its sealed") ||
		!strings.Contains(out, reset) || !strings.Contains(out, del) {
		t.Errorf("tagwatchctl grants = %d\n%s\nwant ada's grant damaged, with the repair", code, out)
	}

	s.ctlJSON(&ws, "watches", "list")
	held := "its grant " + adaG + " is damaged (tagwatchctl damaged)"
	if len(ws) != 1 || ws[0].ID != watchOf["ada"] || ws[0].Held != held {
		t.Errorf("watches = %+v; want ada's held: %s", ws, held)
	}
	if out, code := s.ctl("watches", "list"); code != 0 || !strings.Contains(out, "active, held: "+held) {
		t.Errorf("tagwatchctl watches = %d\n%s\nwant ada's watch active, held: %s", code, out, held)
	}

	var st statusapi.Status
	s.ctlJSON(&st, "status")
	if st.Counts.Grants["damaged"] != 1 {
		t.Errorf("status grants = %v, want 1 damaged", st.Counts.Grants)
	}
	var us []statusapi.User
	s.ctlJSON(&us, "users")
	for _, u := range us {
		if (u.ID == "ada") != (u.DamagedGrants == 1) || (u.ID == "bea") != (u.DamagedWatches == 1) {
			t.Errorf("user %+v: want ada's damaged grant and bea's damaged watch counted", u)
		}
	}
	out, code := s.ctl("users")
	if code != 0 {
		t.Fatalf("tagwatchctl users = %d %s", code, out)
	}
	for line := range strings.Lines(out) {
		line = strings.Join(strings.Fields(line), " ") // the columns' padding aside
		switch {
		case strings.HasPrefix(line, "ada ") && !strings.Contains(line, " - 0 (+1 damaged: tagwatchctl damaged) 1 "):
			t.Errorf("tagwatchctl users: ada's line %q: want 0 grants (+1 damaged) and 1 watch", line)
		case strings.HasPrefix(line, "bea ") && !strings.Contains(line, " - 1 0 (+1 damaged: tagwatchctl damaged) "):
			t.Errorf("tagwatchctl users: bea's line %q: want 1 grant and 0 watches (+1 damaged)", line)
		}
	}

	// The repair the rows name leaves a consistent vault.
	for _, args := range [][]string{{"damaged", "reset", adaG}, {"damaged", "delete", "watch", beaW}} {
		if out, code := s.ctl(args...); code != 0 {
			t.Errorf("tagwatchctl %s = %d %s", strings.Join(args, " "), code, out)
		}
	}
	if out, code := s.ctl("grants"); code != 0 || strings.Contains(out, "damaged:") || !strings.Contains(out, "needs_reconsent") {
		t.Errorf("tagwatchctl grants after the repair = %d\n%s", code, out)
	}
}
