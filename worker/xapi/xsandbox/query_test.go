package xsandbox

import (
	"slices"
	"strings"
	"testing"
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
			t.Errorf("parseQuery(%q) = %s, want an error", tt.in, n)
		case tt.want != "" && err != nil:
			t.Errorf("parseQuery(%q) = %v, want %s", tt.in, err, tt.want)
		case err == nil && n.String() != tt.want:
			t.Errorf("parseQuery(%q) = %s, want %s", tt.in, n, tt.want)
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
	}
	for _, tt := range tests {
		if got := extractHashtags(tt.text, nil); !slices.Equal(got, tt.want) {
			t.Errorf("extractHashtags(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

// FuzzParseQuery checks that the parser never panics and that a parsed
// query renders to a canonical form that parses to itself.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"#a", "#a OR (#b -is:retweet) lang:en", `"x y" -#z`, "((#a OR #b) #c)", "-", "#a --b", "＃x"} {
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
