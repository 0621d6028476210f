package xsandbox

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"#golang", "#golang"},
		{"#GoLang", "#golang"},
		{"  #a   #b  ", "#a #b"},
		{"#a OR #b", "#a OR #b"},
		{"#a #b OR #c", "(#a #b) OR #c"},
		{"#a (#b OR #c)", "#a (#b OR #c)"},
		{"#a -is:retweet lang:EN", "#a -is:retweet lang:en"},
		{"#a -(#b OR #c)", "#a -(#b OR #c)"},
		{`"Hello World" #x`, `"hello world" #x`},
		{"golang", "golang"},
		{"c++ OR #go", "c OR #go"},
		{"#日本語", "#日本語"},
		{"#CAFE\u0301", "#caf\u00e9"},
		{"#می\u200cخواهم OR #भारत", "#می\u200cخواهم OR #भारत"},
		{"#١٢٣", ""},
		{"#_", ""},
		{"#\ufe0f\u20e3", ""},
		{"#a#b", ""},
		{"lang:pt-BR #a", "lang:pt-br #a"},
		{"((#a))", "#a"},
		{"", ""},
		{"   ", ""},
		{"#", ""},
		{"#123", ""},
		{"#go-lang", ""},
		{"(#a", ""},
		{"#a)", ""},
		{"#a OR", ""},
		{"OR #a", ""},
		{"#a OR OR #b", ""},
		{"-", ""},
		{"- #a", ""},
		{"#a --#b", ""},
		{"-is:retweet", ""},
		{"lang:en", ""},
		{"-#a", ""},
		{"#a OR lang:en", ""},
		{"is:reply #a", ""},
		{"foo:bar #a", ""},
		{"lang:e #a", ""},
		{`"unterminated #a`, ""},
		{`"" #a`, ""},
		{"#a ()", ""},
		{"!!!", ""},
		{strings.Repeat("#a ", 170) + "#bc", ""},
		{strings.Repeat("(", 40) + "#a" + strings.Repeat(")", 40), ""},
	}
	for _, tt := range tests {
		n, err := parseQuery(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("parseQuery(%+q) = %+q, want an error", tt.in, n)
		case tt.want != "" && err != nil:
			t.Errorf("parseQuery(%+q) = %v, want %+q", tt.in, err, tt.want)
		case err == nil && n.String() != tt.want:
			t.Errorf("parseQuery(%+q) = %+q, want %+q", tt.in, n, tt.want)
		}
	}
	if _, err := parseQuery(strings.Repeat("#a ", 170) + "#b"); err != nil {
		t.Errorf("parseQuery(512 chars) = %v, want ok", err)
	}
}

func TestExtractHashtags(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"no tags", nil},
		{"#Go and #go and #GO", []string{"go"}},
		{"a#b #c_d #123 #4x", []string{"c_d", "4x"}},
		{"(#paren) end#no #é_t.", []string{"paren", "é_t"}},
		{"＃fullwidth", []string{"fullwidth"}},
		// C04: marks (Indic vowel signs and viramas are Mc/Mn), ZWNJ, NFD.
		{"#भारत #தமிழ் #สวัสดี", []string{"भारत", "தமிழ்", "สวัสดี"}},
		{"نوشت: #می\u200cخواهم!", []string{"می\u200cخواهم"}},
		{"#cafe\u0301 and #CAF\u00c9", []string{"caf\u00e9"}},
		{"#١٢٣ #१२३ #_ #1_2", nil},
		{"AT&#T x#y ##dbl", []string{"dbl"}},
		{"#a#b #c＃d #http://x #e.", []string{"e"}},
		{"#\ufe0f\u20e3 \ufe0f#ok #ジョン・スミス", []string{"ok", "ジョン・スミス"}},
		{"#go-lang", []string{"go"}},
	}
	for _, tt := range tests {
		if got := extractHashtags(tt.text, nil); !slices.Equal(got, tt.want) {
			t.Errorf("extractHashtags(%+q) = %+q, want %+q", tt.text, got, tt.want)
		}
	}
}

// FuzzParseQuery checks that the parser never panics and that a parsed
// query renders to a canonical form that parses to itself.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"#a", "#a OR (#b -is:retweet) lang:en", `"x y" -#z`, "((#a OR #b) #c)", "-", "#a --b", "＃x",
		"#cafe\u0301", "#CAF\u00c9", "#می\u200cخواهم", "#भारत OR #தமிழ்", "#\u0130", "#\u212b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		n, err := parseQuery(q)
		if err != nil {
			return
		}
		s := n.String()
		n2, err := parseQuery(s)
		if err != nil {
			t.Fatalf("parseQuery(%q) ok, but its rendering %q fails: %v", q, s, err)
		}
		if n2.String() != s {
			t.Fatalf("rendering is not canonical: %q -> %q -> %q", q, s, n2.String())
		}
	})
}

// FuzzExtractHashtags: no text panics the scanner, and every hashtag it
// finds is a query operator that looks up the same key, so a post is found
// by a query for each of its tags.
func FuzzExtractHashtags(f *testing.F) {
	for _, s := range []string{"#a", "a#b #c_d #123 #4x", "#cafe\u0301 #CAF\u00c9", "نوشت: #می\u200cخواهم!",
		"#\ufe0f\u20e3", "&#x ##y", "#a#b #c://", "#\u0130\u0307", "#\xff", "#ab\u0301\u0327"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, tag := range extractHashtags(text, nil) {
			if utf8.RuneCountInString(tag) >= maxQueryLen {
				continue // too long for any query
			}
			n, err := parseQuery("#" + tag)
			if err != nil || n.kind != nodeTag || n.value != tag {
				t.Fatalf("extractHashtags(%q) found %q, but parseQuery(%q) = %v, %v", text, tag, "#"+tag, n, err)
			}
		}
	})
}

// TestSearchHashtagScripts is case C04 at the sandbox: posts with hashtags
// in scripts with combining marks or joiners are found by the NFC query
// tagwatch sends, whatever form the post was written in.
func TestSearchHashtagScripts(t *testing.T) {
	e := newEnv(t)
	a, _ := e.grant("101")
	posts := []string{
		"Jai #भारत",
		"வணக்கம் #தமிழ்",
		"#สวัสดี ครับ",
		"نوشت: #می\u200cخواهم",
		"un #cafe\u0301 noir", // NFD
		"un #CAF\u00c9 crème", // NFC, upper case
		"#cafe sans accent",
		"#می #خواهم", // the two halves are other tags
	}
	ids := make([]string, len(posts))
	for i, p := range posts {
		e.clock.Advance(time.Second)
		ids[i] = e.s.Post(Post{AuthorID: "102", Text: p})
	}
	tests := []struct {
		query string
		want  []int // indexes into ids, newest first
	}{
		{"#भारत -is:retweet", []int{0}},
		{"#தமிழ் -is:retweet", []int{1}},
		{"#สวัสดี -is:retweet", []int{2}},
		{"#می\u200cخواهم -is:retweet", []int{3}},
		{"#caf\u00e9 -is:retweet", []int{5, 4}},  // the query tagwatch sends (NFC)
		{"#cafe\u0301 -is:retweet", []int{5, 4}}, // an NFD query finds the same posts
		{"#cafe", []int{6}},
		{"#می", []int{7}},
	}
	for _, tt := range tests {
		r := e.search(a, url.Values{"query": {tt.query}})
		var want []string
		for _, i := range tt.want {
			want = append(want, ids[i])
		}
		if got := r.ids(); !slices.Equal(got, want) {
			t.Errorf("search(%+q) = %v, want %v", tt.query, got, want)
		}
	}
}
