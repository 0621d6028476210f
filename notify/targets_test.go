package notify

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tagwatch/vault/secret"
)

func TestTargetKind(t *testing.T) {
	for _, tc := range []struct {
		in, kind string
	}{
		{"https://hooks.example.com/tagwatch", KindWebhook},
		{"http://127.0.0.1:9000/hook", KindWebhook},
		{"http://hooks.example.com/x", ""},
		{"https://user:pw@hooks.example.com/x", ""},
		{"https://hooks.example.com/x#frag", ""},
		{"mailto:ada@example.com", KindEmail},
		{"mailto:ada@example.com?cc=eve@example.com", ""},
		{"mailto:ada@example.com,eve@example.com", ""},
		{"mailto:Ada <ada@example.com>", ""},
		{"console:", KindConsole},
		{"console:elsewhere", ""},
		{"ntfy://ntfy.sh/tagwatch-topic", KindShoutrrr},
		{"ntfy://ntfy.example/mytopic", KindShoutrrr},
		{"telegram://123456:ABCdefGHI@telegram?chats=@chan", KindShoutrrr},
		{"telegram://telegram", ""}, // no token
		{"slack://xoxb:123456789-123456789-abcdefghijklmnopqrstuvwx@C0123456789", KindShoutrrr},
		{"slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook", KindShoutrrr},
		{"slack://T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", KindShoutrrr},
		{"slack://token@channel", ""}, // "token" is not a Slack token: the library refuses to send it
		{"discord://token@123456789012345678", KindShoutrrr},
		{"matrix://user:pass@matrix.example/?rooms=!room:matrix.example", KindShoutrrr}, // parsed, not logged in
		{"generic://hooks.example.com/x", ""},
		{"ftp://example.com/", ""},
		{"https://hooks.example.com/a\nb", ""},
		{"", ""},
	} {
		kind, err := targetKind(tc.in)
		if kind != tc.kind || (err == nil) != (tc.kind != "") {
			t.Errorf("targetKind(%q) = %q, %v; want %q", tc.in, kind, err, tc.kind)
		}
	}
}

// slackHook is C17's input: an incoming-webhook URL whose path is the
// credential.
const slackHook = "https://hooks.example.com/services/T0000/B0000/XXXXXXXXXXXX"

// TestTargetLabel (C17): one function shows every target, with scheme,
// host and fingerprint for URLs and never their path, query or user part.
func TestTargetLabel(t *testing.T) {
	fp := func(raw string) string { return fingerprint(raw) }
	for _, tc := range []struct {
		in, want string
		secrets  []string // parts that must not appear
	}{
		{slackHook, "https://hooks.example.com/…#" + fp(slackHook), []string{"services", "T0000", "B0000", "XXXXXXXXXXXX"}},
		{"https://hooks.example.com/", "https://hooks.example.com/…#" + fp("https://hooks.example.com/"), nil},
		{"https://hooks.example.com/incoming?token=s3cr3t-value", "https://hooks.example.com/…#" + fp("https://hooks.example.com/incoming?token=s3cr3t-value"),
			[]string{"incoming", "token", "s3cr3t"}},
		{"https://user:pw-SECRET@hooks.example.com/x", "https://hooks.example.com/…#" + fp("https://user:pw-SECRET@hooks.example.com/x"),
			[]string{"user", "SECRET"}},
		{"http://127.0.0.1:9000/hook", "http://127.0.0.1:9000/…#" + fp("http://127.0.0.1:9000/hook"), []string{"hook"}},
		{"ntfy://ntfy.example/mytopic", "ntfy://ntfy.example/…#" + fp("ntfy://ntfy.example/mytopic"), []string{"mytopic"}},
		{"ntfy://:tk_SECRET@ntfy.example/topic", "ntfy://ntfy.example/…#" + fp("ntfy://:tk_SECRET@ntfy.example/topic"), []string{"SECRET", "topic"}},
		{"slack://xoxb:123456789-123456789-abcdefghijklmnopqrstuvwx@C0123456789",
			"slack://…#" + fp("slack://xoxb:123456789-123456789-abcdefghijklmnopqrstuvwx@C0123456789"),
			[]string{"xoxb", "123456789", "abcdefghijkl", "C0123456789"}},
		{"slack://T0000/B0000/XXXXXXXXXXXX", "slack://…#" + fp("slack://T0000/B0000/XXXXXXXXXXXX"), []string{"T0000", "B0000", "XXXXXXXXXXXX"}},
		{"telegram://123456:SECRETTOKENabc@telegram?chats=@chan", "telegram://…#" + fp("telegram://123456:SECRETTOKENabc@telegram?chats=@chan"),
			[]string{"SECRETTOKEN", "123456", "chan"}},
		{"mailto:ada@example.com", "mailto:a***@example.com", []string{"ada"}},
		{"mailto:", "mailto:***", nil},
		{"console:", "console:", nil},
		{"ftp://files.example.com/pub/secret", "ftp://…#" + fp("ftp://files.example.com/pub/secret"), []string{"files", "secret"}},
		{"::not a url", "invalid-target#" + fp("::not a url"), []string{"not a url"}},
	} {
		got := TargetLabel(tc.in)
		if got != tc.want {
			t.Errorf("TargetLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, s := range tc.secrets {
			if strings.Contains(got, s) {
				t.Errorf("TargetLabel(%q) = %q, shows %q", tc.in, got, s)
			}
		}
	}
	if a, b := TargetLabel("https://h.example/a"), TargetLabel("https://h.example/b"); a == b {
		t.Errorf("TargetLabel gives %q for two targets that differ in their path, want different fingerprints", a)
	}
}

// TestCheckTarget (C13, C15): every target the notifier can deliver is
// accepted by the config-only checker and by the running service alike,
// with the configuration deciding what needs a secret or a mail server;
// a refusal names the target once, by its label, and repeats no secret.
func TestCheckTarget(t *testing.T) {
	sec, _ := whsec()
	hook := "https://hooks.example.com/services/T0000/B0000/XXXXXXXXXXXX"
	full := ChannelsConfig{Webhooks: []WebhookSecret{{URL: hook, Secret: secret.New(sec)}},
		SMTP: SMTPConfig{Host: "smtp.example.com", From: "tagwatch@example.com"}}
	private := full
	private.AllowPrivateTargets = true
	private.Webhooks = append(private.Webhooks, WebhookSecret{URL: "https://10.0.0.7/hook", Secret: secret.New(sec)})
	bare := ChannelsConfig{}
	for _, tc := range []struct {
		name string
		cc   ChannelsConfig
		in   string
		want string // part of the error; "" for accepted
		is   error
	}{
		{"ntfy (C13)", bare, "ntfy://ntfy.example/mytopic", "", nil},
		{"slack API token (C13)", bare, "slack://xoxb:123456789-123456789-abcdefghijklmnopqrstuvwx@C0123456789", "", nil},
		{"slack webhook token", bare, "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook", "", nil},
		{"slack placeholder", bare, "slack://token@channel", "is not a valid slack URL", nil},
		{"discord", bare, "discord://tokenTOKENtoken@123456789012345678", "", nil},
		{"telegram", bare, "telegram://123456:ABCdefGHI@telegram?chats=@chan", "", nil},
		{"telegram without token", bare, "telegram://telegram", "is not a valid telegram URL", nil},
		{"gotify", bare, "gotify://gotify.example/AzyoeNS.D4iJLVa", "", nil},
		{"console", bare, "console:", "", nil},
		{"webhook with secret", full, hook, "", nil},
		{"webhook without secret", bare, hook, "has no signing secret", nil},
		{"webhook, other path", full, "https://hooks.example.com/services/T0000/B0000/YYYYYYYYYYYY", "has no signing secret", nil},
		{"mail with smtp", full, "mailto:ada@example.com", "", nil},
		{"mail without smtp", bare, "mailto:ada@example.com", "needs [notify.smtp]", nil},
		{"private webhook", func() ChannelsConfig {
			c := private
			c.AllowPrivateTargets = false
			return c
		}(), "https://10.0.0.7/hook", "allow_private_targets is off", ErrPrivateAddress},
		{"private webhook allowed", private, "https://10.0.0.7/hook", "", nil},
		{"private ntfy", bare, "ntfy://192.168.1.2/topic", "allow_private_targets is off", ErrPrivateAddress},
		{"private ntfy allowed", ChannelsConfig{AllowPrivateTargets: true}, "ntfy://192.168.1.2/topic", "", nil},
		{"unknown scheme", bare, "ftp://example.com/x", `scheme "ftp" is not supported`, nil},
		{"generic left out", bare, "generic://hooks.example.com/x", `scheme "generic" is not supported`, nil},
		{"empty", bare, "", `target "": is empty`, nil},
		{"credentials in a webhook", full, "https://user:pw-SECRET@hooks.example.com/x", "must not carry credentials", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checker, err := NewTargetChecker(tc.cc)
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{Outbox: openDB(t, "", nil, nil), PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Channels: tc.cc})
			if err != nil {
				t.Fatal(err)
			}
			for name, check := range map[string]func(string) error{"TargetChecker": checker.CheckTarget, "Service": s.CheckTarget} {
				err := check(tc.in)
				if tc.want == "" {
					if err != nil {
						t.Errorf("%s.CheckTarget(%q) = %v, want nil", name, tc.in, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s.CheckTarget(%q) = %v, want an error with %q", name, tc.in, err, tc.want)
					continue
				}
				var te *TargetError
				if !errors.As(err, &te) {
					t.Errorf("%s.CheckTarget(%q) = %T, want a *TargetError", name, tc.in, err)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s.CheckTarget(%q) = %v, want errors.Is %v", name, tc.in, err, tc.is)
				}
				msg := err.Error()
				if n := strings.Count(msg, "target "); n != 1 || strings.Contains(msg, "notify:") {
					t.Errorf("%s.CheckTarget(%q) = %q: names the target %d times or repeats a prefix, want once", name, tc.in, msg, n)
				}
				if tc.in != "" && !strings.HasPrefix(msg, "target "+TargetLabel(tc.in)+": ") {
					t.Errorf("%s.CheckTarget(%q) = %q, want it to start with the target's label", name, tc.in, msg)
				}
				for _, part := range secretParts(tc.in) {
					if strings.Contains(msg, part) {
						t.Errorf("%s.CheckTarget(%q) = %q, repeats %q", name, tc.in, msg, part)
					}
				}
			}
		})
	}
}

// secretParts returns the parts of a target URL that may be a secret and
// are long enough to be a credential (minSecretPart): user, password,
// path segments, query values.
func secretParts(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= minSecretPart {
			out = append(out, s)
		}
	}
	if u.User != nil {
		add(u.User.Username())
		p, _ := u.User.Password()
		add(p)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		add(seg)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	return out
}

// TestRedactTarget: what the chat library says about a target reaches the
// log and the row with the target as its label and its secret parts cut.
func TestRedactTarget(t *testing.T) {
	tok := "123456:SECRETTOKENabc"
	u := "telegram://" + tok + "@telegram?chats=@chan"
	got := redactTarget("Post https://api.telegram.org/bot"+tok+"/sendMessage: EOF; url "+u, u)
	if strings.Contains(got, "SECRETTOKEN") || strings.Contains(got, "123456") || !strings.Contains(got, TargetLabel(u)) {
		t.Errorf("redactTarget = %q, want the label and no token", got)
	}
	hook := "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook"
	got = redactTarget(`Post "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX": dial tcp: i/o timeout`, hook)
	if strings.Contains(got, "XXXXXXXX") || strings.Contains(got, "T00000000") {
		t.Errorf("redactTarget = %q, leaks a token part", got)
	}
}

var labelShape = regexp.MustCompile(`^(console:|mailto:.*|invalid-target#[0-9a-f]{8}|[a-z][a-z0-9+.-]*://([^/]*/)?…#[0-9a-f]{8})$`)

// FuzzCheckTarget: no target panics the checker (or the chat library it
// calls), and every label has one of the documented shapes; for an
// accepted http(s) target, it is exactly scheme, host and fingerprint.
func FuzzCheckTarget(f *testing.F) {
	for _, s := range []string{slackHook, "ntfy://ntfy.example/mytopic", "slack://token@channel", "console:", "mailto:ada@example.com",
		"telegram://123456:ABCdefGHI@telegram?chats=@chan", "matrix://u:p@m.example/?rooms=!r:m.example", "https://10.0.0.1/x",
		"pushover://shoutrrr:token@userKey", "teams://group@tenant/altId/groupOwner?host=x.webhook.office.com", "bark://:k@b.example",
		"zulip://bot%40example.com:key@zulip.example/?stream=s", "smtp://u:p@smtp.example:587/?from=a@example.com&to=b@example.com",
		"signal://localhost:8080/+1234567890/+0987654321", "pagerduty://events.pagerduty.com/0123456789abcdef0123456789abcdef",
		"lark://open.larksuite.com/token", "wecom://key", "rocketchat://rc.example/a/b", "mattermost://mm.example/token",
		"pushbullet://" + strings.Repeat("t", 34), "gotify://g.example/Aaaaaaaaaaaaaaa", "discord://t@1", "%", "://", ""} {
		f.Add(s)
	}
	checker, err := NewTargetChecker(ChannelsConfig{SMTP: SMTPConfig{Host: "smtp.example.com", From: "t@example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := checker.CheckTarget(raw)
		label := TargetLabel(raw)
		if !labelShape.MatchString(label) {
			t.Fatalf("TargetLabel(%q) = %q, not a documented shape", raw, label)
		}
		if err != nil {
			return
		}
		u, _ := url.Parse(raw)
		if (u.Scheme == "https" || u.Scheme == "http") && label != u.Scheme+"://"+u.Host+"/…#"+fingerprint(raw) {
			t.Fatalf("TargetLabel(%q) = %q, want scheme, host and fingerprint only", raw, label)
		}
	})
}
