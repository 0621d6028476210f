package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var placeholderLineRE = regexp.MustCompile(`(?m)^(\w+) = "<[^"\n]*>"$`)

// fillPlaceholders does what an operator does to an example: writes a
// value of theirs for every placeholder.
func fillPlaceholders(doc []byte) []byte {
	values := map[string]string{"public_url": "https://tagwatch.example.org", "issuer": "https://id.example.org/",
		"api_url": "https://search.example.org", "client_id": "tagwatch"}
	return placeholderLineRE.ReplaceAllFunc(doc, func(line []byte) []byte {
		key := placeholderLineRE.FindSubmatch(line)[1]
		v, ok := values[string(key)]
		if !ok {
			v = "edited"
		}
		return []byte(string(key) + ` = "` + v + `"`)
	})
}

// TestExamplesRefusedUntilEdited: C16. An unedited example configuration
// is refused, each placeholder named with its line and nothing else said
// about those keys; the same file with the placeholders filled loads.
func TestExamplesRefusedUntilEdited(t *testing.T) {
	files, err := filepath.Glob("../../../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n := len(placeholderLineRE.FindAll(doc, -1))
			if n == 0 {
				t.Fatalf("%s has no placeholder: what does the operator edit?", f)
			}
			_, err = Parse(f, doc)
			if err == nil {
				t.Fatalf("Parse(unedited %s) = ok, want its placeholders refused", f)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != n {
				t.Errorf("Parse(unedited %s) said %d things, want one per placeholder (%d):\n%v", f, len(lines), n, err)
			}
			for _, l := range lines {
				if !regexp.MustCompile(`^` + regexp.QuoteMeta(f) + `:\d+: [a-z_.\[\]0-9]+: still holds the example's placeholder "<.+>": replace it with your own value$`).MatchString(l) {
					t.Errorf("error line %q does not name file:line, the key and the placeholder", l)
				}
			}
			if _, err := Parse(f, fillPlaceholders(doc)); err != nil {
				t.Errorf("Parse(%s with its placeholders filled) = %v", f, err)
			}
		})
	}
}

// TestPlaceholderEveryKey: a placeholder is refused in any string key,
// a list element, an array-of-tables element, a sub-table; a value that
// merely contains angle brackets is not one.
func TestPlaceholderEveryKey(t *testing.T) {
	for _, c := range []struct{ name, doc, key string }{
		{"daemon", "[daemon]\nstate_dir = \"<dir>\"\n", "daemon.state_dir"},
		{"list", "[http]\ntrusted_proxies = [\"127.0.0.1\", \"<your proxy>\"]\n", "http.trusted_proxies"},
		{"provider", "[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n[[provider]]\nname = \"y\"\nkind = \"x\"\nclient_id = \" <id> \"\nclient_secret_file = \"/s\"\n", "provider[1].client_id"},
		{"smtp", "[notify.smtp]\nhost = \"<your mail server>\"\nfrom = \"a@b.c\"\n", "notify.smtp.host"},
		{"webhook", "[[notify.webhook]]\nurl = \"<https://hooks>\"\nsecret_file = \"/s\"\n", "notify.webhook[0].url"},
	} {
		_, err := Parse("p.toml", []byte(c.doc))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, "placeholder") || ce.Line == 0 {
			t.Errorf("%s: Parse = %v, want %s refused as a placeholder at its line", c.name, err, c.key)
		}
	}
	if _, err := Parse("p.toml", []byte("[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"a<b>c\"\nclient_secret_file = \"/s\"\n")); err != nil {
		t.Errorf("a client id with brackets inside = %v, want accepted", err)
	}
}
