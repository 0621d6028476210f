package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/cmd/internal/statusapi"
	"tagwatch/vault"
	"tagwatch/vault/seal"
	"tagwatch/vault/vaulttest"
)

// doorRow is one watch of the cross-door table.
type doorRow struct {
	name     string
	hashtags []string
	schedule string
	targets  []string
	// want is "" for a watch every door accepts; otherwise a piece of the
	// rule's message that every door's refusal must carry.
	want string
}

func (r doorRow) spec() vault.WatchSpec {
	return vault.WatchSpec{Hashtags: append([]string(nil), r.hashtags...), Schedule: r.schedule, Targets: append([]string(nil), r.targets...)}
}

// Secrets that door rows carry in their targets: no door may show them.
const (
	doorPathSecret  = "S3CR3TPATHxyz"                             // C17: a webhook whose path is its credential
	doorSlackSecret = "XXXXXXXXXXXXXXXXXXXXXXXX"                  // the token part of a Slack webhook URL
	doorHookToken   = "T0KEN"                                     // the configured webhook's path (newSvc)
	doorHookURL     = "https://hooks.example.com/T0KEN/abc?sig=1" // configured in newSvc, with a secret
)

// doorRows is the table every door is fed. The daemon's configuration is
// newSvc's: scheduler.min_interval 1m, one webhook with a secret
// (doorHookURL), no [notify.smtp].
func doorRows() []doorRow {
	ok := func(name string, hashtags []string, schedule string, targets ...string) doorRow {
		return doorRow{name: name, hashtags: hashtags, schedule: schedule, targets: targets}
	}
	no := func(name string, hashtags []string, schedule, want string, targets ...string) doorRow {
		return doorRow{name: name, hashtags: hashtags, schedule: schedule, targets: targets, want: want}
	}
	tags := func(ts ...string) []string { return ts }
	long := func(c string) string { return strings.Repeat(c, 100) }
	const every = "@every 15m"
	floor := "the minimum between runs of one watch is 1m0s (scheduler.min_interval)"
	return []doorRow{
		ok("valid", tags("golang"), every, "console:"),
		// C03: valid syntax that never fires.
		no("C03 30 February", tags("c03"), "0 0 30 2 *", "never fires", "console:"),
		no("C03 31 April", tags("c03"), "0 0 31 4 *", "never fires", "console:"),
		no("C03 31st of short months", tags("c03"), "0 0 31 2,4,6,9,11 *", "never fires", "console:"),
		// C04: X's hashtag grammar, with marks and joiners.
		ok("C04 Devanagari", tags("#भारत"), every, "console:"),
		ok("C04 Tamil", tags("#தமிழ்"), every, "console:"),
		ok("C04 Thai", tags("#สวัสดี"), every, "console:"),
		ok("C04 Persian with ZWNJ", tags("#می\u200cخواهم"), every, "console:"),
		ok("C04 combining acute", tags("#cafe\u0301"), every, "console:"),
		no("C04 digits only", tags("#123"), every, `hashtag "#123" is digits only`, "console:"),
		no("C04 Arabic-Indic digits only", tags("#١٢٣"), every, `hashtag "#١٢٣" is digits only`, "console:"),
		no("C04 hash alone", tags("#"), every, `hashtag "#"`, "console:"),
		// C08: the floor between runs of one watch.
		no("C08 every 0s", tags("c08"), "@every 0s", floor, "console:"),
		no("C08 every -5s", tags("c08"), "@every -5s", floor, "console:"),
		no("C08 every 1ns", tags("c08"), "@every 1ns", floor, "console:"),
		no("C08 six fields", tags("c08"), "* * * * * *", floor, "console:"),
		ok("C08 every 15m", tags("c08"), every, "console:"),
		// C11: what the daemon refuses, every door refuses.
		no("C11 mailto without smtp", tags("c11"), "@every 1m", "needs [notify.smtp]", "mailto:zed@example.com"),
		no("C11 webhook without secret", tags("c11"), "@every 1m", "has no signing secret", "https://hooks.example.com/x"),
		no("C11 query over 512", tags(long("a"), long("b"), long("c"), long("d"), long("e"), long("f")), "@every 1m", "X allows 512", "console:"),
		// C13: chat targets the notifier delivers.
		ok("C13 ntfy", tags("c13"), every, "ntfy://ntfy.example/mytopic"),
		ok("C13 slack webhook", tags("c13"), every, "slack://hook:T00000000-B00000000-"+doorSlackSecret+"@webhook"),
		// C15: the message says what is wrong.
		no("C15 control character", tags("c15"), "@every 15m\x07", "contains a control character", "console:"),
		// C17: a stored target whose path is a secret.
		no("C17 path secret", tags("c17"), every, "has no signing secret", "https://hooks.example.com/services/T0000/B0000/"+doorPathSecret),
		ok("configured webhook", tags("hook"), every, doorHookURL),
	}
}

// verdict is what one door said about one row.
type verdict struct {
	ok  bool
	msg string // the refusal as the door shows it
}

func clientVerdict(err error) verdict {
	if err == nil {
		return verdict{ok: true}
	}
	var ae *statusapi.Error
	if errors.As(err, &ae) {
		return verdict{msg: ae.Message}
	}
	return verdict{msg: err.Error()}
}

// runCLI runs tagwatchd's main in-process.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// rawVault opens a stopped daemon's vault for a test's raw writes: what
// no door would let in, stored the way an older version or another
// configuration could have left it.
func rawVault(t *testing.T, s *svc) *vault.DB {
	t.Helper()
	master, err := seal.LoadMasterKey(seal.Source{File: s.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	db := vaulttest.Open(t, vaulttest.Path(s.dir+"/tagwatch.db"), vaulttest.Master(master))
	return db
}

// putRawLink stores a pending consent link carrying spec as it is, not
// checked by any rule, and returns its token and id.
func putRawLink(t *testing.T, db *vault.DB, user string, spec vault.WatchSpec) (string, string) {
	t.Helper()
	var token string
	var rec vault.Enrollment
	err := db.Update(func(tx *vault.Tx) error {
		var err error
		token, rec, err = tx.CreateEnrollment(vault.Enrollment{UserID: user, Provider: "x", Watch: &spec,
			CreatedBy: "test", ExpiresAt: time.Now().Add(time.Hour)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return token, rec.ID
}

// refusedLinks reads the daemon's JSON log: the error logged with each
// refused consent page request, by link id.
func refusedLinks(logs string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg, Enrollment, Err string
		}
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Msg == "enrollment request refused" && rec.Enrollment != "" {
			out[rec.Enrollment] = rec.Err
		}
	}
	return out
}

// TestDoorsAgree feeds one table of watches, valid and invalid, to every
// door through which a watch enters the vault, and compares: each door
// accepts or refuses each row alike, and a refusal carries the rule's
// message, once. The doors:
//
//   - socket add, socket enroll: a real daemon in-process on a real unix
//     socket, through the statusapi client (tagwatchctl watches add,
//     tagwatchctl enroll);
//   - consent page: a link holding the row's watch (stored raw, as a link
//     sent before the configuration changed is), opened and its button
//     pressed; the verdict is the page's, the message the daemon's log;
//   - offline add, offline enroll: tagwatchd watches add and tagwatchd
//     enroll on the stopped daemon's vault;
//   - check-config (stored watch, pending link): the row stored raw as a
//     watch, and the consent page's links, reported by check-config.
//
// The rule's message is what the rules this configuration gives say
// (offlineRules); each row also names a piece of it (want), so a rule
// that says something else fails too. No door's output shows a secret a
// target carries (C17).
func TestDoorsAgree(t *testing.T) {
	s := newSvc(t, "", false)
	// JSON logs: the consent page's refusals are read back from them.
	raw, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, bytes.Replace(raw, []byte("[daemon]\n"), []byte("[daemon]\nlog_format = \"json\"\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := offlineRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := doorRows()
	// The rule's message for each row, and the table checked against it.
	ruleMsg := make([]string, len(rows))
	for i, r := range rows {
		spec := r.spec()
		err := rules.CheckWatch("x", &spec)
		if (err == nil) != (r.want == "") || err != nil && !strings.Contains(err.Error(), r.want) {
			t.Fatalf("rules.CheckWatch(%s) = %v, want %q", r.name, err, r.want)
		}
		if err != nil {
			ruleMsg[i] = err.Error()
		}
	}

	const (
		doorSocketAdd     = "socket add"
		doorSocketEnroll  = "socket enroll"
		doorConsentPage   = "consent page"
		doorOfflineAdd    = "offline add"
		doorOfflineEnroll = "offline enroll"
		doorCheckWatch    = "check-config (stored watch)"
		doorCheckLink     = "check-config (pending link)"
	)
	got := make([]map[string]verdict, len(rows))
	for i := range got {
		got[i] = map[string]verdict{}
	}
	var shown bytes.Buffer // everything any door showed, for the secret search

	// The running daemon: the socket and the consent page.
	s.start(0)
	s.enrollUser("zed")
	c := statusapi.NewClient(s.socket)
	ctx := context.Background()
	linkIDs := make([]string, len(rows))
	for i, r := range rows {
		ws := statusapi.WatchSpec{Hashtags: r.hashtags, Schedule: r.schedule, Targets: r.targets}
		w, err := c.AddWatch(ctx, statusapi.AddWatch{UserID: "zed", Provider: "x", WatchSpec: ws})
		got[i][doorSocketAdd] = clientVerdict(err)
		json.NewEncoder(&shown).Encode(w)
		er, err := c.Enroll(ctx, statusapi.EnrollRequest{UserID: "zed-link", Provider: "x", Watch: &ws})
		got[i][doorSocketEnroll] = clientVerdict(err)
		json.NewEncoder(&shown).Encode(er.Enrollment)

		token, id := putRawLink(t, s.op.d.db, "zed-page", r.spec())
		linkIDs[i] = id
		b := browse(t)
		link := s.public + "/enroll/" + token
		getCode, _ := doReq(t, b, http.MethodGet, link)
		code, loc := doReq(t, b, http.MethodPost, link)
		switch {
		case getCode == http.StatusOK && code == http.StatusSeeOther && strings.HasPrefix(loc, s.x.URL()):
			got[i][doorConsentPage] = verdict{ok: true}
		case getCode == http.StatusConflict && code == http.StatusConflict:
			got[i][doorConsentPage] = verdict{} // the message is in the log
		default:
			t.Errorf("%s: consent page GET = %d, POST = %d %q; want 200 and a redirect to X, or 409 twice", r.name, getCode, code, loc)
		}
	}
	var all []statusapi.Watch
	all, err = c.Watches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(&shown).Encode(all)
	links, err := c.Enrollments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(&shown).Encode(links)
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	logs := s.logs.String()
	refused := refusedLinks(logs)
	for i := range rows {
		if v, ok := got[i][doorConsentPage]; ok && !v.ok {
			v.msg = refused[linkIDs[i]]
			got[i][doorConsentPage] = v
		}
	}

	// The stopped daemon's vault: a user with a grant for the offline
	// add, and every row stored raw as a watch for check-config.
	db := rawVault(t, s)
	watchIDs := make([]string, len(rows))
	err = db.Update(func(tx *vault.Tx) error {
		if err := tx.PutUser(vault.User{ID: "yan"}); err != nil {
			return err
		}
		if err := tx.PutGrant(vault.Grant{ID: "g-yan", UserID: "yan", Provider: "x", Subject: "2002", State: vault.GrantActive}); err != nil {
			return err
		}
		for i, r := range rows {
			watchIDs[i] = fmt.Sprintf("row-%02d", i)
			w := vault.Watch{ID: watchIDs[i], UserID: "zed", Provider: "x", WatchSpec: r.spec(), State: vault.WatchActive}
			if err := tx.PutWatch(w); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The offline doors.
	for i, r := range rows {
		args := []string{"-config", s.config, "-hashtags", strings.Join(r.hashtags, ","), "-schedule", r.schedule}
		for _, tg := range r.targets {
			args = append(args, "-target", tg)
		}
		for door, cmd := range map[string][]string{
			doorOfflineAdd:    append([]string{"watches", "add", "-user", "yan", "-provider", "x"}, args...),
			doorOfflineEnroll: append([]string{"enroll", "-user", "yan-link", "-provider", "x"}, args...),
		} {
			code, out, errOut := runCLI(cmd...)
			shown.WriteString(out + errOut)
			switch code {
			case 0:
				got[i][door] = verdict{ok: true}
			case 2:
				got[i][door] = verdict{msg: errOut}
			default:
				t.Errorf("%s: %s = %d %q %q, want 0 or 2", r.name, door, code, out, errOut)
			}
		}
	}

	// check-config: one line per refused stored watch or pending link.
	code, out, errOut := runCLI("check-config", "-config", s.config)
	shown.WriteString(out + errOut)
	if code != 1 {
		t.Errorf("check-config = %d, want 1 (stored watches refused)\n%s%s", code, out, errOut)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`^(watch (\S+) of user zed|consent link (\S+) for user zed-page): `).FindStringSubmatch(l); m != nil {
			lines[m[2]+m[3]] = l
		}
	}
	for i := range rows {
		for door, id := range map[string]string{doorCheckWatch: watchIDs[i], doorCheckLink: linkIDs[i]} {
			if l, ok := lines[id]; ok {
				got[i][door] = verdict{msg: l}
			} else {
				got[i][door] = verdict{ok: true}
			}
		}
	}

	// Compare.
	doors := []string{doorSocketAdd, doorSocketEnroll, doorConsentPage, doorOfflineAdd, doorOfflineEnroll, doorCheckWatch, doorCheckLink}
	for i, r := range rows {
		for _, door := range doors {
			v, ok := got[i][door]
			switch {
			case !ok:
				t.Errorf("%s at %s: no verdict", r.name, door)
			case r.want == "" && !v.ok:
				t.Errorf("%s at %s = refused %q, want accepted", r.name, door, v.msg)
			case r.want != "" && v.ok:
				t.Errorf("%s at %s = accepted, want refused with %q", r.name, door, ruleMsg[i])
			case r.want != "" && strings.Count(v.msg, ruleMsg[i]) != 1:
				t.Errorf("%s at %s = refused %q, want the rule's message %q once", r.name, door, v.msg, ruleMsg[i])
			}
		}
	}

	// C17: no door shows a secret a target carries, in its answers, its
	// output or the daemon's log.
	for _, sec := range []string{doorPathSecret, doorSlackSecret, doorHookToken} {
		for where, text := range map[string]string{"door outputs": shown.String(), "daemon log": logs} {
			if strings.Contains(text, sec) {
				t.Errorf("%s show %q, a secret of a target", where, sec)
			}
		}
	}
}

// TestOneClickPauseThenOperatorResume: a watch its user paused with the
// one-click link, whose grant then needs a new consent, goes back to
// suspended (needs_reconsent) when an operator resumes it over the
// socket; not active, not "active with reason needs_reconsent". And the
// socket's refusals name the object (C15).
func TestOneClickPauseThenOperatorResume(t *testing.T) {
	s := newSvc(t, "", false)
	s.start(0)
	s.enrollUser("ada")
	c := statusapi.NewClient(s.socket)
	ctx := context.Background()
	ws, err := c.Watches(ctx)
	if err != nil || len(ws) != 1 {
		t.Fatalf("watches = %+v, %v; want the enrollment's one", ws, err)
	}
	w := ws[0]
	d := s.op.d

	// The user's one-click pause: the signed link's page, then its button.
	b := browse(t)
	link := d.notify.PauseURL(w.UserID, w.ID)
	if code, _ := doReq(t, b, http.MethodGet, link); code != http.StatusOK {
		t.Fatalf("pause link page = %d, want 200", code)
	}
	if code, _ := doReq(t, b, http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("pause link POST = %d, want 200", code)
	}
	if got, err := d.db.Watch(w.ID); err != nil || got.State != vault.WatchPaused {
		t.Fatalf("watch after the one-click pause = %+v, %v; want paused", got.Watch, err)
	}

	// The grant dies (the provider refused its refresh token).
	g, err := d.db.UserGrant("ada", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.db.MarkNeedsReconsent(g.ID, vault.Reconsent{Reason: "invalid_grant", LinkPrefix: s.public + "/enroll/", Actor: "test"}); err != nil {
		t.Fatal(err)
	}

	// An operator resumes it.
	got, err := c.ResumeWatch(ctx, w.ID)
	if err != nil || got.State != string(vault.WatchSuspended) || got.SuspendReason != string(vault.SuspendNeedsReconsent) {
		t.Errorf("ResumeWatch(%s) = state %q reason %q, %v; want suspended, needs_reconsent", w.ID, got.State, got.SuspendReason, err)
	}
	if st, err := d.worker.Status(w.ID); err == nil && st.Scheduled {
		t.Errorf("the scheduler runs the resumed watch, want it held for the consent")
	}

	// The socket names what does not exist, once (tagwatchctl exits 5).
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watches", "pause", "nosuch"}, `watch "nosuch" does not exist`},
		{[]string{"outbox", "replay", "nosuch"}, `notification "nosuch" does not exist`},
		{[]string{"revoke", "nosuch"}, `grant "nosuch" does not exist`},
	} {
		out, code := s.ctl(tc.args...)
		if code != 5 || strings.Count(out, tc.want) != 1 || strings.Contains(out, "not found: ") {
			t.Errorf("tagwatchctl %s = %d %q, want 5 naming %s once", strings.Join(tc.args, " "), code, out, tc.want)
		}
	}
}
