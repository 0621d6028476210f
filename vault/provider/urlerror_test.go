package provider_test

import (
	"errors"
	"strings"
	"testing"

	"tagwatch/vault/provider"
)

// TestCheckURLShowsNoUserPart: CheckURL's refusals are *URLError, and no
// message shows a URL's user part, even for a URL that does not parse.
func TestCheckURLShowsNoUserPart(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"https://u:pw@id.example.org/x", `must not carry credentials in its user part, got "https://id.example.org/x"`},
		{"http://u@id.example.org/", `must not carry credentials in its user part, got "http://id.example.org/"`},
		{"//u:pw@id.example.org/x", `must be an absolute URL, got "//id.example.org/x"`},
		{"https://u:pw@id.example.org:port/x", `must be an absolute URL, got "https://id.example.org:port/x"`},
		{"https:u:pw@id.example.org", `must be an absolute URL, got "https:id.example.org"`},
		{"http://id.example.org/", `must be https (http is allowed only on loopback), got "http://id.example.org/"`},
		{"ftp://id.example.org/", `must be https, got "ftp://id.example.org/"`},
		{"https://id.example.org/#frag", `must not have a fragment, got "https://id.example.org/#frag"`},
	} {
		err := provider.CheckURL(c.raw)
		var ue *provider.URLError
		if !errors.As(err, &ue) || err.Error() != c.want {
			t.Errorf("CheckURL(%q) = %v, want *URLError %q", c.raw, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("CheckURL(%q) = %q, shows the user part", c.raw, err)
		}
	}
}
