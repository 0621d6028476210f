package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestPublicURLFollowsListen: left out (or empty), http.public_url is
// http.listen's own address when this machine's browsers reach it there
// (trial 14: listen = "127.0.0.1:8180" alone kept consent links and the
// callback on http://127.0.0.1:8080, and check-config said ok).
func TestPublicURLFollowsListen(t *testing.T) {
	for _, c := range []struct{ http, want string }{
		{"", "http://127.0.0.1:8080"},
		{`listen = "127.0.0.1:8180"`, "http://127.0.0.1:8180"},
		{`listen = "127.0.0.1:8180"` + "\npublic_url = \"\"", "http://127.0.0.1:8180"},
		{`listen = "[::1]:8180"`, "http://[::1]:8180"},
		{`listen = "localhost:8180"`, "http://localhost:8180"},
		{`listen = "127.0.0.1:8443"` + "\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"", "https://127.0.0.1:8443"},
		// Every interface: this machine reaches it on loopback.
		{`listen = "0.0.0.0:8180"`, "http://127.0.0.1:8180"},
		{`listen = ":8180"`, "http://127.0.0.1:8180"},
		{`listen = "[::]:8180"`, "http://[::1]:8180"},
		// Written: kept.
		{`listen = "127.0.0.1:8180"` + "\npublic_url = \"https://tw.example.org\"", "https://tw.example.org"},
		{`listen = "127.0.0.1:8180"` + "\npublic_url = \"http://localhost:8180/tw/\"", "http://localhost:8180/tw/"},
	} {
		doc := "[http]\n" + c.http + "\n"
		cfg, err := Parse("t.toml", []byte(doc))
		if err != nil {
			t.Errorf("Parse(%q) = %v", doc, err)
			continue
		}
		if cfg.HTTP.PublicURL != c.want {
			t.Errorf("Parse(%q).HTTP.PublicURL = %q, want %q", doc, cfg.HTTP.PublicURL, c.want)
		}
	}
}

// TestPublicURLMissesListen: a loopback public_url on another port than
// a loopback (or every-interface) listen reaches no tagwatchd: refused,
// naming both keys and their lines, unless http.trusted_proxies names
// loopback (a local proxy or tunnel forwards that port). A listen off
// loopback gives no public_url to follow: it must be written.
func TestPublicURLMissesListen(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      string // the whole error, "" for none
	}{
		{"both written", "[http]\nlisten = \"127.0.0.1:8180\"\npublic_url = \"http://127.0.0.1:8080\"\n",
			`t.toml:3: http.public_url: "http://127.0.0.1:8080" is port 8080 on loopback, but http.listen (line 2) is "127.0.0.1:8180": ` +
				`consent links and the callback would not reach tagwatchd; set public_url to "http://127.0.0.1:8180" or leave it out ` +
				`(on loopback it follows listen), or, for a proxy or tunnel on port 8080, list 127.0.0.1 in http.trusted_proxies`},
		{"listen left out", "\n[http]\npublic_url = \"http://localhost:9000/\"\n",
			`t.toml:3: http.public_url: "http://localhost:9000/" is port 9000 on loopback, but http.listen (not set, the default) is "127.0.0.1:8080": ` +
				`consent links and the callback would not reach tagwatchd; set public_url to "http://127.0.0.1:8080" or leave it out ` +
				`(on loopback it follows listen), or, for a proxy or tunnel on port 9000, list 127.0.0.1 in http.trusted_proxies`},
		{"the scheme's port", "[http]\nlisten = \"0.0.0.0:8180\"\npublic_url = \"https://localhost\"\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n",
			`t.toml:3: http.public_url: "https://localhost" is port 443 on loopback, but http.listen (line 2) is "0.0.0.0:8180": ` +
				`consent links and the callback would not reach tagwatchd; set public_url to "https://127.0.0.1:8180" or leave it out ` +
				`(on loopback it follows listen), or, for a proxy or tunnel on port 443, list 127.0.0.1 in http.trusted_proxies`},
		{"a local proxy", "[http]\nlisten = \"127.0.0.1:8180\"\npublic_url = \"https://localhost:8443\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n", ""},
		{"same port", "[http]\nlisten = \"127.0.0.1:80\"\npublic_url = \"http://localhost\"\n", ""},
		{"public off loopback", "[http]\nlisten = \"127.0.0.1:8180\"\npublic_url = \"https://tw.example.org\"\n", ""},
		{"port picked at start", "[http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:8080\"\n", ""},
		{"listen off loopback", "[http]\nlisten = \"192.0.2.7:8180\"\n",
			`t.toml:1: http.public_url: must be set: http.listen (line 2) is "192.0.2.7:8180", not a loopback address and port it could follow; ` +
				`name the https URL users' browsers reach tagwatchd at`},
		{"listen by service name", "[http]\nlisten = \"127.0.0.1:http\"\n",
			`t.toml:1: http.public_url: must be set: http.listen (line 2) is "127.0.0.1:http", not a loopback address and port it could follow; ` +
				`name the https URL users' browsers reach tagwatchd at`},
		{"listen off loopback, public_url written", "[http]\nlisten = \"192.0.2.7:8180\"\npublic_url = \"https://tw.example.org\"\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(c.doc))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("Parse(%q) = %v,\nwant %s", c.doc, err, first(c.want, "no error"))
			}
			var ce *Error
			if c.want != "" && (!errors.As(err, &ce) || ce.Key != "http.public_url") {
				t.Errorf("Parse(%q) = %#v, want an *Error naming http.public_url", c.doc, err)
			}
		})
	}
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// TestReferencePublicURL: configs/tagwatch.toml says that public_url
// follows listen, so an operator who changes listen knows to leave it out.
func TestReferencePublicURL(t *testing.T) {
	ref, err := os.ReadFile("../../../configs/tagwatch.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("t.toml", fillPlaceholders([]byte(strings.Replace(string(ref), `listen = "127.0.0.1:8080"`, `listen = "127.0.0.1:8180"`, 1))))
	if err != nil {
		t.Fatalf("configs/tagwatch.toml with listen changed alone: %v", err)
	}
	if cfg.HTTP.PublicURL != "http://127.0.0.1:8180" {
		t.Errorf("configs/tagwatch.toml with listen changed alone: public_url = %q, want http://127.0.0.1:8180", cfg.HTTP.PublicURL)
	}
}
