package xapi

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

// c04 are the hashtags of case C04 (../shared/cases/C04-hashtag-scripts.md)
// as users write them, and the NFC tag each must become.
var c04 = []struct {
	name, in, want string
}{
	{"devanagari", "#भारत", "भारत"},
	{"tamil with virama", "#தமிழ்", "தமிழ்"},
	{"thai with vowel marks", "#สวัสดี", "สวัสดี"},
	{"persian with ZWNJ", "#می\u200cخواهم", "می\u200cخواهم"},
	{"café in NFD", "#cafe\u0301", "caf\u00e9"},
}

func TestNormalizeHashtag(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "golang", "golang"},
		{"hash and spaces", "  #GoLang \t", "GoLang"},
		{"full-width hash", "＃タグ", "タグ"},
		{"underscore and digits", "#go_1", "go_1"},
		{"digit first", "#1st", "1st"},
		{"café in NFC", "café", "café"},
		{"ZWJ inside", "#क\u094d\u200dष", "क\u094d\u200dष"},
		{"katakana middle dot", "#ジョン・スミス", "ジョン・スミス"},
		{"hebrew geresh", "#צ׳יפס", "צ׳יפס"},
		{"middle dot", "#l·l", "l·l"},
		{"marks only", "#\u0301", "\u0301"},
		{"100 characters", strings.Repeat("é", 100), strings.Repeat("é", 100)},
		{"100 characters after NFC", strings.Repeat("e\u0301", 100), strings.Repeat("é", 100)},
	}
	for _, c := range c04 {
		tests = append(tests, struct{ name, in, want string }{"C04 " + c.name, c.in, c.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeHashtag(tc.in)
			if got != tc.want || err != nil {
				t.Errorf("NormalizeHashtag(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestNormalizeHashtagErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"hash alone", "#", `hashtag "#" is empty`},
		{"nothing", "  ", `hashtag "#" is empty`},
		{"digits", "#123", `hashtag "#123" is digits only: X does not treat it as a hashtag`},
		{"digits without hash", "123", `hashtag "#123" is digits only: X does not treat it as a hashtag`},
		{"arabic-indic digits", "#١٢٣", `hashtag "#١٢٣" is digits only: X does not treat it as a hashtag`},
		{"devanagari digits", "#१२३", `hashtag "#१२३" is digits only: X does not treat it as a hashtag`},
		{"underscore only", "#_", `hashtag "#_" has no letter: X does not treat it as a hashtag`},
		{"digits and underscore", "#1_2", `hashtag "#1_2" has no letter: X does not treat it as a hashtag`},
		{"space inside", "#a b", `hashtag "#a b" contains U+0020 (a space), which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"no-break space inside", "#a\u00a0b", `hashtag "#a\u00a0b" contains U+00A0 (a space), which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"tab inside", "#a\tb", `hashtag "#a\tb" contains U+0009 (a control character), which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"NUL", "#a\x00", `hashtag "#a\x00" contains U+0000 (a control character), which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"hyphen", "#go-lang", `hashtag "#go-lang" contains U+002D "-", which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"second hash", "##go", `hashtag "##go" contains U+0023 "#", which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"query syntax", "x) OR (#y", `hashtag "#x) OR (#y" contains U+0029 ")", which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"zero width space", "#a\u200bb", `hashtag "#a\u200bb" contains U+200B (an invisible formatting character), which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"emoji", "#go🚀", `hashtag "#go🚀" contains U+1F680 "🚀", which X does not allow in a hashtag (letters, marks, digits, '_' and joiners)`},
		{"leading ZWNJ", "#\u200cabc", `hashtag "#\u200cabc" starts with U+200C (zero width non-joiner): a joiner belongs between two characters of a tag`},
		{"trailing ZWJ", "#abc\u200d", `hashtag "#abc\u200d" ends with U+200D (zero width joiner): a joiner belongs between two characters of a tag`},
		{"keycap", "#\ufe0f\u20e3", "hashtag \"#\ufe0f\u20e3\" starts with U+FE0F (emoji variation selector): X reads '#' followed by it as the keycap emoji, not a hashtag"},
		{"keycap without selector", "#\u20e3", "hashtag \"#\u20e3\" starts with U+20E3 (combining enclosing keycap): X reads '#' followed by it as the keycap emoji, not a hashtag"},
		{"invalid UTF-8", "#a\xffb", `hashtag "#a\xffb" is not valid UTF-8`},
		{"101 characters", strings.Repeat("a", 101), `hashtag "#` + strings.Repeat("a", 101) + `" is 101 characters long: the limit is 100`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeHashtag(tc.in)
			var he *HashtagError
			if err == nil || err.Error() != tc.want || !errors.As(err, &he) {
				t.Errorf("NormalizeHashtag(%q) = %q, %v; want error %s", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestBuildQueryHashtagScripts is case C04 at the query builder: every
// hashtag is accepted and carried into the query in NFC.
func TestBuildQueryHashtagScripts(t *testing.T) {
	for _, c := range c04 {
		t.Run(c.name, func(t *testing.T) {
			got, err := BuildQuery(QuerySpec{Hashtags: []string{c.in}})
			if want := "#" + c.want + " -is:retweet"; got != want || err != nil {
				t.Errorf("BuildQuery(%q) = %q, %v; want %q, nil", c.in, got, err, want)
			}
		})
	}
	all := make([]string, len(c04))
	want := make([]string, len(c04))
	for i, c := range c04 {
		all[i], want[i] = c.in, "#"+c.want
	}
	got, err := BuildQuery(QuerySpec{Hashtags: all, Lang: "fa"})
	if w := "(" + strings.Join(want, " OR ") + ") -is:retweet lang:fa"; got != w || err != nil {
		t.Errorf("BuildQuery(%q) = %q, %v; want %q, nil", all, got, err, w)
	}
	if !norm.NFC.IsNormalString(got) {
		t.Errorf("BuildQuery(%q) = %q, not NFC", all, got)
	}
}

// staticToken is a TokenSource with one access token.
type staticToken string

func (s staticToken) Token(context.Context) (secret.AccessToken, error) {
	return secret.NewAccessToken(string(s)), nil
}

func (s staticToken) Invalidate(context.Context, secret.AccessToken) (secret.AccessToken, error) {
	return secret.AccessToken{}, ErrUnauthorized
}

// TestSearchHashtagScripts is case C04 from the query to the posts: the
// query BuildQuery makes of each hashtag as a user writes it finds the
// post that carries it in the X sandbox, in whichever normalisation form
// the post was written (café in NFD, as typed on some keyboards, is found
// by a watch on "café" in NFC, and the other way round).
func TestSearchHashtagScripts(t *testing.T) {
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	if err := sb.AddUser(xsandbox.User{ID: "101", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	at, _, err := sb.Grant("101", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, post, watch string
	}{
		{"devanagari", "Jai #भारत", "भारत"},
		{"tamil", "வணக்கம் #தமிழ்", "#தமிழ்"},
		{"thai", "#สวัสดี ครับ", "สวัสดี"},
		{"persian with ZWNJ", "نوشت: #می\u200cخواهم", "#می\u200cخواهم"},
		{"NFD post, NFC watch", "un #cafe\u0301 noir", "caf\u00e9"},
		{"NFC post, NFD watch", "un #caf\u00e9 noir", "#cafe\u0301"},
		{"upper case post", "#CAF\u00c9!", "café"},
	}
	c := New(Config{BaseURL: sb.URL(), Retries: -1})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := sb.Post(xsandbox.Post{AuthorID: "101", Text: tc.post})
			q, err := BuildQuery(QuerySpec{Hashtags: []string{tc.watch}})
			if err != nil {
				t.Fatalf("BuildQuery(%q) = %v", tc.watch, err)
			}
			p, err := c.Search(context.Background(), staticToken(at), "101", SearchRequest{Query: q, SinceID: prevID(t, id)})
			if err != nil {
				t.Fatalf("Search(%q) = %v", q, err)
			}
			if len(p.Posts) != 1 || p.Posts[0].ID != id {
				t.Errorf("Search(%q) after post %q = %+v, want post %s", q, tc.post, p.Posts, id)
			}
		})
	}
}

// prevID returns the id just before id, so that since_id=prevID(id) asks
// for id and newer.
func prevID(t *testing.T, id string) string {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("post id %q: %v", id, err)
	}
	return strconv.FormatUint(n-1, 10)
}

// TestBuildQueryHashtagErrors: C04's neighbours at the query builder say
// what is wrong with the tag as written.
func TestBuildQueryHashtagErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"digits only", []string{"go", "#123"}, `xapi: hashtag "#123" is digits only: X does not treat it as a hashtag`},
		{"other digits", []string{"١٢٣"}, `xapi: hashtag "#١٢٣" is digits only: X does not treat it as a hashtag`},
		{"hash alone", []string{"#"}, `xapi: hashtag "#" is empty`},
		{"too long tag", []string{strings.Repeat("x", 101)}, `xapi: hashtag "#` + strings.Repeat("x", 101) + `" is 101 characters long: the limit is 100`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildQuery(QuerySpec{Hashtags: tc.in})
			var he *HashtagError
			if err == nil || err.Error() != tc.want || !errors.As(err, &he) {
				t.Errorf("BuildQuery(%q) = %q, %v; want error %s", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestBuildQueryLengthNFC: the 512-character limit counts the NFC form
// that is sent, and the error says by how much the query is over.
func TestBuildQueryLengthNFC(t *testing.T) {
	// 5 tags of 100 é in NFD are 1000 code points as written, but
	// 5*101 + 4*4 + 2 + 12 = 535 in the query.
	tags := make([]string, 5)
	for i := range tags {
		tags[i] = strings.Repeat("e\u0301", 99) + string(rune('a'+i))
	}
	_, err := BuildQuery(QuerySpec{Hashtags: tags})
	if !errors.Is(err, ErrQueryTooLong) || !strings.Contains(err.Error(), "535-character") || !strings.Contains(err.Error(), "by 23 characters") {
		t.Errorf("BuildQuery(5 NFD tags) = %v, want ErrQueryTooLong for 535 characters, 23 over", err)
	}
	// 4 such tags fit: 4*101 + 3*4 + 2 + 12 = 430.
	q, err := BuildQuery(QuerySpec{Hashtags: tags[:4]})
	if err != nil || !norm.NFC.IsNormalString(q) {
		t.Errorf("BuildQuery(4 NFD tags) = %q, %v; want an NFC query", q, err)
	}
}

// FuzzNormalizeHashtag: no input panics; an accepted tag is its own
// normal form, is NFC, has no '#', and is never digits only.
func FuzzNormalizeHashtag(f *testing.F) {
	for _, s := range []string{"#golang", "#", "", "#123", "#١٢٣", "#a b", "#\u200cabc", "#abc\u200d", "#\ufe0f\u20e3",
		"＃タグ", "##go", "#a\xffb", "#e\u0301\u0301", "\u0344", "a\u0387b"} {
		f.Add(s)
	}
	for _, c := range c04 {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeHashtag(in)
		if err != nil {
			var he *HashtagError
			if !errors.As(err, &he) || !strings.HasPrefix(err.Error(), "hashtag ") {
				t.Fatalf("NormalizeHashtag(%q) error %v is not a *HashtagError", in, err)
			}
			return
		}
		again, err := NormalizeHashtag(out)
		if again != out || err != nil {
			t.Fatalf("NormalizeHashtag(%q) = %q, but NormalizeHashtag(%q) = %q, %v", in, out, out, again, err)
		}
		if !norm.NFC.IsNormalString(out) {
			t.Fatalf("NormalizeHashtag(%q) = %q, not NFC", in, out)
		}
		if strings.ContainsAny(out, "#＃ \t\n") {
			t.Fatalf("NormalizeHashtag(%q) = %q, holds a hash sign or space", in, out)
		}
		digits := true
		for _, r := range out {
			if !unicode.Is(unicode.Nd, r) {
				digits = false
			}
		}
		if digits {
			t.Fatalf("NormalizeHashtag(%q) = %q, digits only", in, out)
		}
		if q, err := BuildQuery(QuerySpec{Hashtags: []string{in}, IncludeRetweets: true}); q != "#"+out || err != nil {
			t.Fatalf("BuildQuery(%q) = %q, %v; want %q", in, q, err, "#"+out)
		}
	})
}
