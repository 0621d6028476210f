package notify

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// TestRender: every notice type is worded from its facts, the same way in
// each channel's form (the plain text of console, chat and mail; the HTML
// of mail; the message of a webhook body), and an old row's Message is
// shown only when the row lacks the facts.
func TestRender(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	label := TargetLabel(slackHook)
	for _, tc := range []struct {
		name    string
		n       vault.Notice
		consent string
		want    []string // in the subject+text, the HTML and the webhook message (match: text and HTML only)
		not     []string // nowhere
	}{
		{"match digest", matchNotice("u1", "w1", 2), "",
			[]string{"New posts for #golang", "Go 1.26 is out!", "@gopher"}, []string{"new posts (ids"}},
		{"match, one post", matchNotice("u1", "w1", 1), "", []string{"A new post for #golang"}, nil},
		{"match, old row with a message", vault.Notice{Type: vault.NoticeMatch, UserID: "u1", Hashtags: []string{"golang"},
			Posts: matchNotice("u1", "w1", 1).Posts, Message: "1 new posts (ids 186900000000000000)", Time: at}, "",
			[]string{"A new post for #golang"}, []string{"new posts (ids"}},
		{"enrolled", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", WatchID: "w1", Provider: "x",
			Hashtags: []string{"a", "b"}, Schedule: "@every 15m", Time: at}, "",
			[]string{"tagwatch is watching #a #b", "tagwatch now watches #a #b every 15 minutes."}, nil},
		{"enrolled hourly", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", Hashtags: []string{"a"}, Schedule: "@hourly", Time: at}, "",
			[]string{"tagwatch now watches #a every hour."}, nil},
		{"enrolled, resumed", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", Hashtags: []string{"a"}, Schedule: "@every 15m",
			Resumed: true, Time: at}, "",
			[]string{"tagwatch is watching #a again", "the watch of #a resumes where it stopped"}, []string{"every 15 minutes"}},
		{"enrolled, old row", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", Hashtags: []string{"a"},
			Message: "tagwatch now watches #a on the old schedule.", Time: at}, "",
			[]string{"tagwatch is watching #a", "tagwatch now watches #a on the old schedule."}, nil},
		{"enrolled, facts win over a message", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", Hashtags: []string{"a"},
			Schedule: "@daily", Message: "OLD WORDS", Time: at}, "",
			[]string{"tagwatch now watches #a once a day."}, []string{"OLD WORDS"}},
		{"reconsent", vault.Notice{Type: vault.NoticeReconsent, UserID: "u1", Provider: "x", Hashtags: []string{"a"},
			Reason: "dead_grant", Time: at}, "https://tagwatch.example/enroll/CONSENT",
			[]string{"tagwatch needs your permission again", "can no longer search X for you: X no longer accepts the access tagwatch had",
				"watches of #a are paused"}, nil},
		{"reconsent, scope", vault.Notice{Type: vault.NoticeReconsent, UserID: "u1", Provider: "x", Reason: "scope_reduced: tweet.read", Time: at}, "",
			[]string{"X now gives tagwatch fewer permissions than it needs"}, []string{"tweet.read"}},
		{"reconsent, old row", vault.Notice{Type: vault.NoticeReconsent, UserID: "u1", Provider: "x",
			Message: "tagwatch can no longer act for you (old words).", Time: at}, "",
			[]string{"tagwatch needs your permission again", "(old words)"}, nil},
		{"revoked", vault.Notice{Type: vault.NoticeRevoked, UserID: "u1", Provider: "x", Time: at}, "",
			[]string{"tagwatch's access has ended", "access to your X account was revoked"}, nil},
		{"account deleted", vault.Notice{Type: vault.NoticeAccountDeleted, UserID: "u1", Time: at}, "",
			[]string{"Your tagwatch data was deleted", "As you asked, tagwatch deleted everything it kept for you",
				"your watches have stopped", "access to your accounts was revoked", "the last message tagwatch sends you"},
			[]string{"A message from tagwatch", "news about your watches"}},
		{"target disabled", vault.Notice{Type: vault.NoticeTargetDisabled, UserID: "u1", Target: label, Time: at}, "",
			[]string{"A notification target was turned off", "Notifications to " + label + " were refused for good"},
			[]string{"T0000", "XXXXXXXXXXXX"}},
		{"target disabled, old row", vault.Notice{Type: vault.NoticeTargetDisabled, UserID: "u1",
			Message: "Notifications to somewhere were refused (old words).", Time: at}, "",
			[]string{"(old words)"}, nil},
		{"unknown type, message", vault.Notice{Type: "future_kind", UserID: "u1", Message: "Something new.", Time: at}, "",
			[]string{"A message from tagwatch", "Something new."}, nil},
		{"hostile hashtag", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", Hashtags: []string{"a\nSubject: forged\x1b[31m"},
			Schedule: "@every 1h", Time: at}, "",
			[]string{"#a Subject: forged"}, []string{"\nSubject: forged", "\x1b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{ID: "n1", Target: "console:", Notice: tc.n, Consent: secret.New(tc.consent), Attempt: 1}
			r, err := render(m)
			if err != nil {
				t.Fatal(err)
			}
			body, err := webhookBody(m)
			if err != nil {
				t.Fatal(err)
			}
			var wb WebhookBody
			if err := json.Unmarshal(body, &wb); err != nil {
				t.Fatal(err)
			}
			forms := map[string]string{"text": r.Subject + "\n\n" + r.Text, "html": htmlText(r.HTML)}
			if tc.n.Type != vault.NoticeMatch {
				forms["webhook"] = wb.Data.Message
			}
			for form, got := range forms {
				for _, w := range tc.want {
					if form == "webhook" && !strings.Contains(r.Lead, w) {
						continue // headings and posts are not in the message
					}
					if !strings.Contains(got, w) {
						t.Errorf("%s form = %q, want %q in it", form, got, w)
					}
				}
				for _, w := range tc.not {
					if strings.Contains(got, w) {
						t.Errorf("%s form = %q, has %q", form, got, w)
					}
				}
			}
			if strings.ContainsAny(r.Subject, "\r\n") {
				t.Errorf("subject %q spans lines", r.Subject)
			}
			if tc.consent != "" && (!strings.Contains(r.Text, tc.consent) || !strings.Contains(r.HTML, tc.consent) || wb.Data.ConsentURL != tc.consent) {
				t.Errorf("the consent link is missing from a form")
			}
			if tc.n.Type == vault.NoticeMatch && wb.Data.Message != "" {
				t.Errorf("match webhook message = %q, want none (the posts are the message)", wb.Data.Message)
			}
		})
	}
}

// TestReconsentWords: a re-consent notice says truthfully why, for every
// cause vault/renew and the vault record (Notice.Reason), and never
// blames the user for what X or tagwatch did: tagwatch losing X's answer
// to a renewal (lost_rotation) is tagwatch's doing, not "the permission
// you gave it has ended".
func TestReconsentWords(t *testing.T) {
	for _, tc := range []struct {
		reason, provider, want string
	}{
		{"dead_grant", "x", "can no longer search X for you: X no longer accepts the access tagwatch had."},
		{"lost_rotation", "x", "can no longer search X for you: tagwatch lost the answer from X while renewing its access, " +
			"so it needs your permission again."},
		{"scope_reduced: tweet.read users.read", "x", "can no longer search X for you: X now gives tagwatch fewer permissions than it needs."},
		{"id_token_changed", "x", "can no longer search X for you: X answered for an account other than the one you allowed."},
		{"damaged", "x", "can no longer search X for you: tagwatch could no longer read the access it had stored, " +
			"so it needs your permission again."},
		{"some_future_class", "x", "can no longer search X for you: the access tagwatch had no longer works."},
		{"lost_rotation", "", "tagwatch lost the answer from the provider while renewing its access"},
	} {
		t.Run(tc.reason+"/"+tc.provider, func(t *testing.T) {
			_, lead := words(vault.Notice{Type: vault.NoticeReconsent, UserID: "u1", Provider: tc.provider, Hashtags: []string{"a"}, Reason: tc.reason}, "")
			if !strings.Contains(lead, tc.want) {
				t.Errorf("words(reconsent, %q) lead = %q, want %q in it", tc.reason, lead, tc.want)
			}
			for _, blame := range []string{"you gave", "has ended", "tweet.read"} {
				if strings.Contains(lead, blame) {
					t.Errorf("words(reconsent, %q) lead = %q, has %q", tc.reason, lead, blame)
				}
			}
		})
	}
}

// htmlText undoes the escapes html/template applies to text, so the test
// compares words.
func htmlText(s string) string {
	return strings.NewReplacer("&#39;", "'", "&#34;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(s)
}

func TestCadence(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"@every 15m", "every 15 minutes"},
		{"@every 1m", "every minute"},
		{"@every 90s", "every 90 seconds"},
		{"@every 2h", "every 2 hours"},
		{"@every 1h", "every hour"},
		{"@every 24h", "every day"},
		{"@every 1h30m", "every 90 minutes"},
		{"@hourly", "every hour"},
		{"@daily", "once a day"},
		{"@weekly", "once a week"},
		{"*/5 * * * *", "on the schedule “*/5 * * * *”"},
		{"@every nonsense", "on the schedule “@every nonsense”"},
	} {
		if got := Cadence(tc.in); got != tc.want {
			t.Errorf("Cadence(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestMessageLinks: each notice carries the one-click links that make
// sense for it. The re-consent notice has Pause but no "Revoke tagwatch's
// access" (tagwatch has no working access to revoke); the notice that
// access ended has neither revocation link.
func TestMessageLinks(t *testing.T) {
	db := openDB(t, "", nil, nil)
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		n             vault.Notice
		pause, revoke bool
	}{
		{"match", matchNotice("u1", "w1", 1), true, true},
		{"enrolled", vault.Notice{Type: vault.NoticeEnrolled, UserID: "u1", WatchID: "w1", Provider: "x", Hashtags: []string{"a"},
			Schedule: "@hourly", Time: at}, true, true},
		{"reconsent", vault.Notice{Type: vault.NoticeReconsent, UserID: "u1", WatchID: "w1", Provider: "x", Hashtags: []string{"a"},
			Reason: "dead_grant", Time: at}, true, false},
		{"revoked", vault.Notice{Type: vault.NoticeRevoked, UserID: "u1", WatchID: "w1", Provider: "x", Time: at}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload, err := json.Marshal(tc.n)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.message(vault.OutboxRow{ID: "n1", Kind: tc.n.Type, UserID: tc.n.UserID, WatchID: tc.n.WatchID,
				Target: "console:", Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			if (m.PauseURL != "") != tc.pause || (m.RevokeURL != "") != tc.revoke {
				t.Errorf("message links: pause %q, revoke %q; want pause %v, revoke %v", m.PauseURL, m.RevokeURL, tc.pause, tc.revoke)
			}
			r, err := render(m)
			if err != nil {
				t.Fatal(err)
			}
			for form, body := range map[string]string{"text": r.Text, "html": htmlText(r.HTML)} {
				if strings.Contains(body, "Revoke tagwatch's access") != tc.revoke || strings.Contains(body, "Pause this watch") != tc.pause {
					t.Errorf("%s form shows Revoke %v, Pause %v; want %v, %v:\n%s", form, strings.Contains(body, "Revoke tagwatch's access"),
						strings.Contains(body, "Pause this watch"), tc.revoke, tc.pause, body)
				}
			}
		})
	}
}

// TestRevokedPointsToAccountPage: where users have their own page, the
// notice that access ended says to give it again there, in every form
// (mail and console text, chat, webhook); without one, to ask the
// operator.
func TestRevokedPointsToAccountPage(t *testing.T) {
	n := vault.Notice{Type: vault.NoticeRevoked, UserID: "u1", Provider: "x", Hashtags: []string{"golang"}, Time: time.Now()}
	const page = "https://tagwatch.example.com/account/"
	for _, c := range []struct {
		account, want, not string
	}{
		{page, "give access again on your tagwatch page: " + page, "ask your operator"},
		{"", "ask your operator for a new link", "tagwatch page"},
	} {
		m := &Message{ID: "r1", Target: "console:", Notice: n, AccountURL: c.account}
		r, err := render(m)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := chatBudget(slices.Collect(maps.Values(chatTargets))[0])
		if !ok {
			t.Fatal("no chat budget")
		}
		parts, err := renderChat(m, b, progress{})
		if err != nil {
			t.Fatal(err)
		}
		var chat strings.Builder
		for _, p := range parts {
			chat.WriteString(p.Text)
		}
		for form, text := range map[string]string{"text": r.Text, "html": r.HTML, "chat": chat.String()} {
			if !strings.Contains(text, c.want) || strings.Contains(text, c.not) {
				t.Errorf("%s with account page %q = %q, want %q and not %q", form, c.account, text, c.want, c.not)
			}
		}
	}
}
