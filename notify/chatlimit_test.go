package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"tagwatch/vault"
)

// chatTargets is one valid target of every chat service tagwatch sends to.
var chatTargets = map[string]string{
	"telegram":   "telegram://123456:ABCdefGHI@telegram?chats=@chan",
	"discord":    "discord://token@123456789012345678",
	"slack":      "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook",
	"pushover":   "pushover://shoutrrr:apptokenapptokenapptokenapptok@userkeyuserkeyuserkeyuserkeyu/?devices=dev",
	"ntfy":       "ntfy://ntfy.example/tagwatch",
	"gotify":     "gotify://gotify.example/Aaaaaaaaaaaaaa1",
	"matrix":     "matrix://user:pass@matrix.example/?rooms=!room:matrix.example",
	"mattermost": "mattermost://mattermost.example/tokentokentoken",
	"rocketchat": "rocketchat://rocket.example/tokenA/tokenB",
	"zulip":      "zulip://bot%40example.com:apikey@zulip.example.com/?stream=general&topic=tagwatch",
	"signal":     "signal://signal.example:8080/+15550000001/+15550000002",
	"smtp":       "smtp://user:pass@smtp.example:587/?from=a@example.com&to=b@example.com",
	"bark":       "bark://:devicekey@bark.example/",
	"pushbullet": "pushbullet://o.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/",
	"lark":       "lark://open.larksuite.com/token?secret=s",
	"wecom":      "wecom://key",
	"teams": "teams://11111111-1111-1111-1111-111111111111@22222222-2222-2222-2222-222222222222/" +
		"33333333333333333333333333333333/44444444-4444-4444-4444-444444444444/V2ext?host=example.webhook.office.com",
	"pagerduty": "pagerduty://events.pagerduty.com/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
}

// TestChatLimitsTable: every chat service tagwatch accepts has a limit with
// its source, and every limit is of a service it accepts.
func TestChatLimitsTable(t *testing.T) {
	schemes := slices.Sorted(maps.Keys(shoutrrrSchemes))
	limits := slices.Sorted(maps.Keys(chatLimits))
	if !slices.Equal(schemes, limits) {
		t.Errorf("chat schemes %v, limits for %v: want the same services", schemes, limits)
	}
	if targets := slices.Sorted(maps.Keys(chatTargets)); !slices.Equal(schemes, targets) {
		t.Errorf("chat schemes %v, test targets for %v: want the same services", schemes, targets)
	}
	for s, l := range chatLimits {
		if len(l.Constraints) == 0 || l.Source == "" {
			t.Errorf("chatLimits[%s] = %+v, want constraints and a source", s, l)
		}
		for _, c := range l.Constraints {
			if c.Max < 1024 {
				t.Errorf("chatLimits[%s] has a limit of %d %s: below the 1024 a post's author and link are sized for", s, c.Max, c.Unit)
			}
		}
		if err := checkShoutrrrURL(chatTargets[s]); err != nil {
			t.Errorf("checkShoutrrrURL(%s) = %v", chatTargets[s], err)
		}
	}
}

// digest is a match notice of n posts whose text is about size
// characters each, made of word and fill; every post has its own link.
func digest(n, size int, word string) vault.Notice {
	nt := vault.Notice{Type: vault.NoticeMatch, UserID: "u1", WatchID: "w1", Provider: "x", Hashtags: []string{"golang"},
		Time: time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC)}
	for i := range n {
		id := fmt.Sprintf("18690000000%08d", i)
		var b strings.Builder
		fmt.Fprintf(&b, "Post %d: ", i)
		for k := utf8.RuneCountInString(b.String()); k < size; k += utf8.RuneCountInString(word) + 1 {
			b.WriteString(word + " ")
		}
		nt.Posts = append(nt.Posts, vault.Post{ID: id, Text: strings.TrimSpace(b.String()), AuthorID: "42",
			AuthorUsername: fmt.Sprintf("gopher%d", i), CreatedAt: time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC),
			URL: "https://x.com/gopher" + fmt.Sprint(i) + "/status/" + id})
	}
	return nt
}

var markerRE = regexp.MustCompile(`^[^\n]* \(([0-9]+)/([0-9]+)\)\n`)

// checkParts checks chat messages against their budget and the notice they
// came from: each fits; each is valid UTF-8; each carries the marker of
// its place when there are several; every post is in exactly one
// message, whole or trimmed with its mark, and its link whole.
func checkParts(t *testing.T, name string, b budget, n vault.Notice, texts []string) {
	t.Helper()
	for i, p := range texts {
		if !b.fits(p) {
			t.Errorf("%s: message %d of %d is %s", name, i+1, len(texts), b.over(p))
		}
		if !utf8.ValidString(p) {
			t.Errorf("%s: message %d is not valid UTF-8", name, i+1)
		}
		if len(texts) > 1 {
			m := markerRE.FindStringSubmatch(p)
			if m == nil || m[1] != fmt.Sprint(i+1) || m[2] != fmt.Sprint(len(texts)) {
				t.Errorf("%s: message %d starts %q, want its marker (%d/%d)", name, i+1, clip(p, 80), i+1, len(texts))
			}
		}
	}
	all := strings.Join(texts, "")
	for _, p := range n.Posts {
		link := "\n" + postURL(p) + "\n"
		if c := strings.Count(all, link); c != 1 {
			t.Errorf("%s: post %s's link is in the messages %d times, want once, whole", name, p.ID, c)
			continue
		}
		in := slices.IndexFunc(texts, func(s string) bool { return strings.Contains(s, link) })
		body := cleanBlock(p.Text)
		if !strings.Contains(texts[in], "@"+p.AuthorUsername) {
			t.Errorf("%s: post %s's author is not with its link", name, p.ID)
		}
		if !strings.Contains(texts[in], body+link) {
			// Trimmed: a prefix of the text, the mark, the link.
			mark := " … (shortened: the whole post is at the link below)" + link
			head := "@" + p.AuthorUsername + " · 2026-03-01 11:58 UTC\n"
			i := strings.Index(texts[in], head)
			j := strings.Index(texts[in], mark)
			if i < 0 || j < 0 || !strings.HasPrefix(body, texts[in][i+len(head):j]) {
				t.Errorf("%s: post %s is neither whole nor trimmed with its mark before its link", name, p.ID)
			}
		}
	}
}

// TestChatDigestEveryService: for every service in the limits table, a
// digest over its limit renders as several messages that each fit it,
// losing no post; a digest that fits is one message, today's text.
func TestChatDigestEveryService(t *testing.T) {
	for s, target := range chatTargets {
		t.Run(s, func(t *testing.T) {
			b, ok := chatBudget(target)
			if !ok {
				t.Fatalf("chatBudget(%s) has no limit", target)
			}
			size := 280
			for _, c := range b.constraints {
				size = max(size, c.Max/10)
			}
			n := digest(20, size, "gopher")
			m := &Message{ID: "row-1", Target: target, Notice: n, PauseURL: "https://tagwatch.example/n/pause/tok",
				RevokeURL: "https://tagwatch.example/n/revoke/tok"}
			parts, err := renderChat(m, b, progress{})
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) < 2 {
				t.Fatalf("renderChat(20 posts of %d characters) = %d message, want several", size, len(parts))
			}
			checkParts(t, s, b, n, texts(parts))
			if last := parts[len(parts)-1].Text; !strings.Contains(last, "Pause this watch: "+m.PauseURL) || !strings.Contains(last, "Notification row-1") {
				t.Errorf("last message lacks the links: %q", clip(last, 300))
			}

			one := &Message{ID: "row-2", Target: target, Notice: digest(1, 100, "gopher")}
			parts, _ = renderChat(one, b, progress{})
			r, _ := render(one)
			if len(parts) != 1 || parts[0].Text != r.Text {
				t.Errorf("renderChat(1 post) = %q, want one message, the text %q", texts(parts), r.Text)
			}
		})
	}
}

func texts(parts []chatPart) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.Text
	}
	return out
}

// TestChatSplitNeighbours: the limits' edge cases, in each unit.
func TestChatSplitNeighbours(t *testing.T) {
	const limit = 1500
	units := []unit{unitBytes, unitRunes, unitUTF16, unitJSON}
	words := map[string]string{
		"ascii":     "gopher",
		"emoji":     "🐹🎉", // 4 bytes, 2 UTF-16 units, 1 rune each
		"cjk":       "囲碁", // 3 bytes, 1 unit each
		"combining": "éé", // e and U+0301
		"json":      `<&">`,
		"flag-zwj":  "👩‍💻",
	}
	for _, u := range units {
		for wname, word := range words {
			b := budget{constraints: []constraint{{limit, u, 0}}}
			t.Run(u.String()+"/"+wname, func(t *testing.T) {
				// Near the limit: 8 posts, each a good part of a message.
				n := digest(8, 300, word)
				parts, _ := renderChat(&Message{ID: "r", Notice: n}, b, progress{})
				checkParts(t, "near", b, n, texts(parts))

				// One huge post: trimmed, at a character boundary.
				huge := digest(1, 25000, word)
				parts, _ = renderChat(&Message{ID: "r", Notice: huge}, b, progress{})
				checkParts(t, "huge", b, huge, texts(parts))
				if !slices.ContainsFunc(parts, func(p chatPart) bool { return p.Trimmed }) {
					t.Errorf("a 25000-character post in messages of %d %s was not trimmed", limit, u)
				}
				for _, p := range parts {
					cut := strings.Index(p.Text, " … (shortened")
					if cut < 0 {
						continue
					}
					before, _ := utf8.DecodeLastRuneInString(p.Text[:cut])
					body := cleanBlock(huge.Posts[0].Text)
					start := strings.Index(p.Text, "UTC\n") + len("UTC\n")
					rest := body[cut-start:]
					next, _ := utf8.DecodeRuneInString(rest)
					if joins(next) {
						t.Errorf("trimmed before %U, which belongs to %U", next, before)
					}
				}
			})
		}
	}

	// Exactly at the limit: one message; one unit over: two.
	t.Run("exact", func(t *testing.T) {
		n := digest(3, 200, "gopher")
		m := &Message{ID: "r", Notice: n}
		r, _ := render(m)
		for _, u := range units {
			size := u.measure(r.Text)
			exact := budget{constraints: []constraint{{size, u, 0}}}
			if parts, _ := renderChat(m, exact, progress{}); len(parts) != 1 || parts[0].Text != r.Text {
				t.Errorf("%s: a text of exactly the limit (%d) = %d messages, want 1, as is", u, size, len(parts))
			}
			under := budget{constraints: []constraint{{size - 1, u, 0}}}
			parts, _ := renderChat(m, under, progress{})
			if len(parts) != 2 {
				t.Errorf("%s: a text one over the limit = %d messages, want 2", u, len(parts))
			}
			checkParts(t, "one over", under, n, texts(parts))
		}
	})
}

// TestChatResumeMatchesSplit: the messages a retry sends after a failure
// at any message are those the first split had there, numbered alike.
func TestChatResumeMatchesSplit(t *testing.T) {
	n := digest(20, 300, "gopher")
	m := &Message{ID: "r", Notice: n, PauseURL: "https://tagwatch.example/n/pause/tok"}
	b, _ := chatBudget(chatTargets["telegram"])
	parts, _ := renderChat(m, b, progress{})
	posts := 0
	for k := 1; k < len(parts); k++ {
		posts += parts[k-1].Posts
		rest, _ := renderChat(m, b, progress{Parts: k, Total: len(parts), Posts: posts})
		if !slices.Equal(texts(rest), texts(parts[k:])) {
			t.Errorf("after %d messages: resumed %q, want %q", k, texts(rest), texts(parts[k:]))
		}
	}
}

// chatServer stands in for a chat service: it records the text of every
// message it accepts, taken from the request as the service reads it.
type chatServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []string
	fail func(n int) bool // refuse the n-th request (from 1) with a 500
	reqs int
}

func newChatServer(t *testing.T, scheme string) *chatServer {
	cs := &chatServer{}
	cs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var j map[string]any
		_ = json.Unmarshal(body, &j)
		str := func(k string) string { s, _ := j[k].(string); return s }
		var text, reply string
		status := http.StatusOK
		switch scheme {
		case "telegram":
			text, reply = str("text"), `{"ok":true,"result":{"message_id":1,"chat":{"id":1,"type":"channel"}}}`
			if r.URL.Path != "/bot123456:ABCdefGHI/sendMessage" || str("chat_id") != "@chan" {
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"ok":false,"error_code":404,"description":"Not Found"}`)
				return
			}
		case "ntfy":
			text, reply = string(body), `{"id":"abc","event":"message","topic":"tagwatch"}`
		case "gotify":
			text, reply = str("message"), `{"id":1,"appid":1,"message":"x","title":"t","priority":0}`
		case "mattermost":
			text, reply = str("text"), "ok"
		case "signal":
			text, reply, status = str("message"), `{"timestamp":"1"}`, http.StatusCreated
		case "bark":
			text, reply = str("body"), `{"code":200,"message":"success","timestamp":1}`
		}
		cs.mu.Lock()
		cs.reqs++
		if cs.fail != nil && cs.fail(cs.reqs) {
			cs.mu.Unlock()
			if scheme == "telegram" {
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, `{"ok":false,"error_code":502,"description":"Bad Gateway"}`)
				return
			}
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		cs.got = append(cs.got, text)
		cs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(cs.srv.Close)
	return cs
}

func (cs *chatServer) texts() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Clone(cs.got)
}

// chatServerTarget is a target of scheme that reaches cs.
func chatServerTarget(t *testing.T, scheme string, cs *chatServer) string {
	host := strings.TrimPrefix(cs.srv.URL, "http://")
	switch scheme {
	case "telegram":
		return chatTargets["telegram"] // with Config.telegramAPI

	case "ntfy":
		return "ntfy://" + host + "/tagwatch?scheme=http"
	case "gotify":
		return "gotify://" + host + "/Aaaaaaaaaaaaaa1?disabletls=yes"
	case "mattermost":
		return "mattermost://" + host + "/tokentokentoken?disabletls=yes"
	case "signal":
		return "signal://" + host + "/+15550000001/+15550000002?disabletls=yes"
	case "bark":
		return "bark://:devicekey@" + host + "/?scheme=http"
	}
	t.Fatalf("no stand-in for %s", scheme)
	return ""
}

// TestChatDeliveryWithinLimits (C07): a digest over a service's limit
// reaches a server standing in for the service as several messages, each
// within the limit, every post once, and the row is delivered. C07's
// input is the first row: a 20-post digest of about 7,400 characters to
// Telegram, which was refused locally on every attempt for 72 hours.
func TestChatDeliveryWithinLimits(t *testing.T) {
	for _, tc := range []struct {
		scheme string
		n      vault.Notice
	}{
		{"telegram", digest(20, 290, "gopher")},
		{"telegram", digest(20, 290, "囲碁🐹")},
		{"telegram", digest(1, 25000, "gopher")},
		{"ntfy", digest(20, 290, "gopher")},
		{"gotify", digest(20, 4000, "gopher")},
		{"mattermost", digest(20, 1000, "gopher")},
		{"signal", digest(20, 290, "gopher")},
		{"bark", digest(20, 290, `"quoted" <gopher>`)},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			cs := newChatServer(t, tc.scheme)
			target := chatServerTarget(t, tc.scheme, cs)
			db := openDB(t, "", nil, nil)
			ev := newEvents()
			s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(),
				Channels: ChannelsConfig{AllowPrivateTargets: true}, Observer: ev.observe, telegramAPI: cs.srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CheckTarget(target); err != nil {
				t.Fatalf("CheckTarget(%s) = %v", target, err)
			}
			run(t, s)
			r, _ := render(&Message{ID: "c07", Notice: tc.n})
			enqueue(t, db, "c07", target, tc.n)
			s.Kick()
			if e := ev.wait(t, "c07", EventDelivered, EventFailed, EventDead); e.Kind != EventDelivered {
				t.Fatalf("digest of %d characters to %s = %+v, want delivered", utf8.RuneCountInString(r.Text), tc.scheme, e)
			}
			got := cs.texts()
			b, _ := chatBudget(target)
			if b.fits(r.Text) || len(got) < 2 {
				t.Fatalf("the server got %d messages for a text of %s; want a text over the limit, split", len(got), b.over(r.Text))
			}
			checkParts(t, tc.scheme, b, tc.n, got)
			if !strings.Contains(got[len(got)-1], "Notification c07") {
				t.Errorf("the last message lacks the footer: %q", clip(got[len(got)-1], 200))
			}
		})
	}
}

// TestChatPartialRetry: when message 2 of a digest fails, the row is
// retried and the retry sends the rest only: the server gets every
// message once. The row's LastError says how far it got.
func TestChatPartialRetry(t *testing.T) {
	cs := newChatServer(t, "telegram")
	cs.fail = func(n int) bool { return n == 2 }
	target := chatServerTarget(t, "telegram", cs)
	clk := newClock()
	db := openDB(t, "", nil, clk.Now)
	ev := newEvents()
	s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Now: clk.Now,
		Jitter: func() float64 { return 0.5 }, Observer: ev.observe, telegramAPI: cs.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	n := digest(20, 290, "gopher")
	enqueue(t, db, "p1", target, n)
	s.Kick()
	if e := ev.wait(t, "p1", EventDelivered, EventFailed, EventDead); e.Kind != EventFailed {
		t.Fatalf("first attempt = %+v, want failed at message 2", e)
	}
	row := getRow(t, db, "p1")
	if p := row.Progress; p.Parts != 1 || p.Total < 2 || p.Posts < 1 {
		t.Errorf("Progress = %+v, want message 1 of several recorded", p)
	}
	if !strings.HasPrefix(row.LastError, "1 of ") || !strings.Contains(row.LastError, "telegram: ") {
		t.Errorf("LastError = %q, want what was delivered and the cause", row.LastError)
	}
	clk.Set(row.NextAttempt.Add(time.Second))
	s.Kick()
	if e := ev.wait(t, "p1", EventDelivered, EventFailed, EventDead); e.Kind != EventDelivered {
		t.Fatalf("retry = %+v, want delivered", e)
	}
	got := cs.texts()
	b, _ := chatBudget(target)
	checkParts(t, "after a retry", b, n, got)
	for i, a := range got {
		for _, c := range got[i+1:] {
			if a == c {
				t.Errorf("the server got a message twice: %q", clip(a, 80))
			}
		}
	}
}

// FuzzChatSplit: whatever the posts and the limit, in every unit, every
// message fits, is valid UTF-8 and carries its marker; every post is in
// exactly one message with its link whole, its text whole or cut at a
// character boundary (not before a combining mark) followed by the mark;
// and a retry after any message sends what the first split had after it.
func FuzzChatSplit(f *testing.F) {
	f.Add(uint8(0), uint16(3000), "Go 1.26 is out! #golang", "second post", "gopher", uint8(20), uint16(1))
	f.Add(uint8(2), uint16(0), "🐹🎉 囲碁 éé", "é\u0301\u0301", "ｇｏ", uint8(3), uint16(400))
	f.Add(uint8(3), uint16(500), `<&">`, "\x00\xff\n\n", "a\nb", uint8(1), uint16(3000))
	f.Add(uint8(5), uint16(100), "👩‍💻", "\u0301x", "", uint8(24), uint16(50))
	f.Fuzz(func(t *testing.T, sel uint8, limit uint16, text1, text2, author string, posts uint8, rep uint16) {
		u := []unit{unitBytes, unitRunes, unitUTF16, unitJSON}[sel%4]
		b := budget{constraints: []constraint{{1024 + int(limit)%2000, u, 0}}}
		if sel&4 != 0 {
			b.constraints = append(b.constraints, constraint{1024 + int(limit)%3000, unitBytes, int(sel>>3) % 16})
		}
		n := vault.Notice{Type: vault.NoticeMatch, UserID: "u1", WatchID: "w1", Hashtags: []string{"golang"}}
		for i := range int(posts) % 12 {
			text := text1
			if i%2 == 1 {
				text = text2
			}
			// Long enough to need a trim in some posts, short enough to
			// keep the target quick.
			text = clipRunes(strings.Repeat(text, 1+int(rep)%(1+i%4*40)), 2500)
			id := fmt.Sprintf("186900000%04d", i)
			n.Posts = append(n.Posts, vault.Post{ID: id, Text: text, AuthorUsername: clipRunes(clean(author), 40) + fmt.Sprint(i),
				CreatedAt: time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC), URL: "https://x.com/u/status/" + id})
		}
		m := &Message{ID: "row-1", Notice: n, PauseURL: "https://tagwatch.example/n/pause/tok"}
		parts, err := renderChat(m, b, progress{})
		if err != nil {
			t.Fatal(err)
		}
		checkParts(t, "fuzz", b, n, texts(parts))
		sum := 0
		for _, p := range parts {
			sum += p.Posts
		}
		if sum != len(n.Posts) {
			t.Errorf("the messages count %d posts, want %d", sum, len(n.Posts))
		}
		for _, p := range n.Posts {
			body := cleanBlock(p.Text)
			link := "\n" + postURL(p) + "\n"
			for _, part := range parts {
				j := strings.Index(part.Text, " … (shortened: the whole post is at the link below)"+link)
				if j < 0 {
					continue
				}
				head := "@" + p.AuthorUsername + " · 2026-03-01 11:58 UTC\n"
				kept := part.Text[strings.Index(part.Text, head)+len(head) : j]
				if r, _ := utf8.DecodeRuneInString(body[len(kept):]); kept != "" && joins(r) {
					t.Errorf("post %s cut before %U, which belongs to the character before it", p.ID, r)
				}
			}
		}
		posted := 0
		for k := 1; k < len(parts) && k < 4; k++ {
			posted += parts[k-1].Posts
			rest, _ := renderChat(m, b, progress{Parts: k, Total: len(parts), Posts: posted})
			if !slices.Equal(texts(rest), texts(parts[k:])) {
				t.Errorf("after %d messages: a retry sends %d messages unlike the first split's %d", k, len(rest), len(parts)-k)
			}
		}
	})
}
