package notify

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/telegram"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/zulip"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// Targets whose configuration the chat library refuses only when it sends
// (or that break a limit of the service on a part tagwatch does not
// write): they could never be sent.
var unsendable = []struct {
	name, target, want string
}{
	{"zulip at an address", "zulip://bot%40example.com:apikey@127.0.0.1:9/?stream=general", "host name with a domain"},
	{"zulip topic too long", "zulip://bot%40example.com:apikey@zulip.example.com/?stream=general&topic=" + strings.Repeat("t", 61),
		"topic exceeds max length"},
	{"lark elsewhere", "lark://lark.example.com/token", "invalid host"},
	{"teams elsewhere", "teams://11111111-1111-1111-1111-111111111111@22222222-2222-2222-2222-222222222222/" +
		"33333333333333333333333333333333/44444444-4444-4444-4444-444444444444/V2ext?host=example.com", "invalid webhook URL"},
	{"pushover title too long", chatTargets["pushover"] + "&title=" + strings.Repeat("t", 251), "at most 250"},
	{"discord title too long", chatTargets["discord"] + "?title=" + strings.Repeat("t", 257), "at most 256"},
	{"telegram title too long", chatTargets["telegram"] + "&title=" + strings.Repeat("t", 1025), "at most 1024"},
}

// TestCheckTargetRefusesUnsendable: the doors refuse what could never be
// sent, with the reason.
func TestCheckTargetRefusesUnsendable(t *testing.T) {
	c, err := NewTargetChecker(ChannelsConfig{AllowPrivateTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range unsendable {
		err := c.CheckTarget(tc.target)
		var te *TargetError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckTarget = %v, want a *TargetError saying %q", tc.name, err, tc.want)
		}
	}
}

// TestLocalRefusalsDeadAtOnce (C07's kind): a row that can never be sent
// as it is (its target is refused by the library before any request, the
// receiver says the body is too large, the mail server's SIZE is
// exceeded) is a dead letter after its first attempt, with the reason as
// its LastError and a warning in the log, instead of being retried for 72
// hours. A transient failure is still retried.
func TestLocalRefusalsDeadAtOnce(t *testing.T) {
	sec, _ := whsec()
	tooLarge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	defer tooLarge.Close()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()

	cert, pool := testCert(t)
	mb := &mailbox{user: "tagwatch", pass: "sm-pass-Zq81x"}
	srv := smtp.NewServer(mb)
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.MaxMessageBytes = 2048 // advertised as SIZE 2048
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	db := openDB(t, "", nil, nil)
	var logs logBuffer
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: ev.observe,
		Logger: logs.logger(), Channels: ChannelsConfig{AllowPrivateTargets: true, Timeout: 5 * time.Second,
			Webhooks: []WebhookSecret{{URL: tooLarge.URL + "/hook", Secret: secret.New(sec)}, {URL: busy.URL + "/hook", Secret: secret.New(sec)}},
			SMTP: SMTPConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Username: mb.user,
				Password: secret.New(mb.pass), From: "tagwatch@example.org", RootCAs: pool}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	type row struct {
		name, target, want string
	}
	rows := []row{
		{"webhook 413", tooLarge.URL + "/hook", "the receiver takes no body of"},
		{"mail over SIZE", "mailto:ada@example.com", "the server takes at most 2048 (SIZE)"},
		{"chat URL that does not parse", "telegram://telegram", "not a valid telegram URL"},
	}
	for _, u := range unsendable {
		rows = append(rows, row{u.name, u.target, u.want})
	}
	for i, tc := range rows {
		id := "dead-" + string(rune('a'+i))
		enqueue(t, db, id, tc.target, matchNotice("u1", "w1", 20))
		s.Kick()
		e := ev.wait(t, id, EventDead, EventFailed, EventDelivered)
		r := getRow(t, db, id)
		if e.Kind != EventDead || r.State != vault.OutboxDead || r.Attempts != 1 ||
			!strings.Contains(r.LastError, "cannot be sent as it is") || !strings.Contains(r.LastError, tc.want) {
			t.Errorf("%s: %s after %d attempts, LastError %q; want dead after 1, saying it cannot be sent as it is: %q",
				tc.name, r.State, r.Attempts, r.LastError, tc.want)
		}
		if !strings.Contains(logs.String(), "id="+id) {
			t.Errorf("%s: the log does not name the dead letter", tc.name)
		}
	}
	view, err := s.Outbox("dead", 100)
	if err != nil || len(view.Rows) != len(rows) {
		t.Errorf("Outbox(dead) = %d rows, %v; want the %d refused rows, visible to operators", len(view.Rows), err, len(rows))
	}
	for _, e := range view.Rows {
		if !strings.Contains(e.LastError, "cannot be sent as it is") {
			t.Errorf("operators see %s's reason as %q", e.ID, e.LastError)
		}
	}

	enqueue(t, db, "busy", busy.URL+"/hook", matchNotice("u1", "w1", 1))
	s.Kick()
	if e := ev.wait(t, "busy", EventDead, EventFailed, EventDelivered); e.Kind != EventFailed {
		t.Errorf("503: %+v, want failed and retried", e)
	}
}

// TestLibraryRefusalsArePermanent: the library's errors for what it
// refuses before any request are permanent; its others are not.
func TestLibraryRefusalsArePermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{telegram.ErrMessageTooLong, true},
		{zulip.ErrMessageTooLong, true},
		{errors.New("Post https://api.telegram.org/…: connection refused"), false},
		{zulip.ErrResponseStatusFailure, false},
	} {
		if got := isLocalRefusal(tc.err); got != tc.want {
			t.Errorf("isLocalRefusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLibraryPanicIsAnError: a panic in the chat library (zulip's on a
// failed request) is an error of the send, not the end of the daemon, and
// says nothing of the target's secrets.
func TestLibraryPanicIsAnError(t *testing.T) {
	target := "zulip://bot%40example.com:SECRETKEY123@zulip.example.com/?stream=general"
	err := callLibrary(target, func() error {
		var res *http.Response
		defer func() { _ = res.Body.Close() }()
		panic("send " + target)
	})
	if err == nil || strings.Contains(err.Error(), "SECRETKEY123") || !strings.Contains(err.Error(), "chat library failed") {
		t.Errorf("callLibrary(panicking) = %v, want an error without the key", err)
	}
}
