package config

import (
	"strings"
	"testing"

	"tagwatch/notify"
)

// TestURLErrorsShowNoSecret: a configuration error about a webhook URL
// shows the URL only by notify.TargetLabel (its path, query and user part
// are its credential), and one about a provider endpoint or the public
// URL never shows a user part. The same text reaches check-config, the
// start, the reload's log line and tagwatchctl status, so it is checked
// here, where it is made.
func TestURLErrorsShowNoSecret(t *testing.T) {
	const (
		path  = "T0000/B0000/XXXXXXXXXXXX"
		user  = "hookuser"
		pass  = "hookpass"
		query = "sig=QUERYSECRET"
	)
	hook := func(url string) string {
		return "[[notify.webhook]]\nurl = \"" + url + "\"\nsecret_file = \"/s\"\n"
	}
	endpoint := func(key, url string) string {
		return "[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n" + key + " = \"" + url + "\"\n"
	}
	cases := []struct {
		name, doc, key, msg string
		label               string // the URL as the message must show it, "" for no label
	}{
		{"webhook http off loopback", hook("http://hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must be https (http is allowed only on loopback)", "http://hooks.example.com/services/" + path},
		{"webhook with credentials", hook("https://" + user + ":" + pass + "@hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must not carry credentials", "https://" + user + ":" + pass + "@hooks.example.com/services/" + path},
		{"webhook with a user only", hook("https://" + user + "@hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must not carry credentials", "https://" + user + "@hooks.example.com/services/" + path},
		{"webhook with a fragment", hook("https://hooks.example.com/services/" + path + "?" + query + "#f"), "notify.webhook[0].url",
			"must not have a fragment", "https://hooks.example.com/services/" + path + "?" + query + "#f"},
		{"webhook without a scheme", hook("hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must be an absolute URL", "hooks.example.com/services/" + path},
		{"webhook of another scheme", hook("ftp://hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must be https", "ftp://hooks.example.com/services/" + path},
		{"webhook relative with credentials", hook("//" + user + ":" + pass + "@hooks.example.com/services/" + path), "notify.webhook[0].url",
			"must be an absolute URL", "//" + user + ":" + pass + "@hooks.example.com/services/" + path},
		{"token url with credentials", endpoint("token_url", "https://"+user+":"+pass+"@api.example.com/oauth2/token"), "provider[0].token_url",
			`must not carry credentials in its user part, got "https://api.example.com/oauth2/token"`, ""},
		{"issuer relative with credentials", endpoint("issuer", "//"+user+":"+pass+"@id.example.org/"), "provider[0].issuer",
			`must be an absolute URL, got "//id.example.org/"`, ""},
		{"auth url with credentials that does not parse", endpoint("auth_url", "https://"+user+":"+pass+"@api.example.com:port/x"), "provider[0].auth_url",
			`must be an absolute URL, got "https://api.example.com:port/x"`, ""},
		{"revoke url with a user, plain http", endpoint("revoke_url", "http://"+user+"@api.example.com/r"), "provider[0].revoke_url",
			"must not carry credentials", ""},
		{"public url with credentials", "[http]\npublic_url = \"https://" + user + ":" + pass + "@tw.example.org\"\n", "http.public_url",
			`must not carry credentials in its user part, got "https://tw.example.org"`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/tagwatch/t.toml", []byte(c.doc))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", c.doc)
			}
			got := err.Error()
			if !strings.Contains(got, c.key+": "+c.msg) {
				t.Errorf("Parse(%q) = %q, want %q", c.doc, got, c.key+": "+c.msg)
			}
			if c.label != "" && !strings.HasSuffix(got, ", got "+notify.TargetLabel(c.label)) {
				t.Errorf("Parse(%q) = %q, want the URL shown as %s", c.doc, got, notify.TargetLabel(c.label))
			}
			for _, s := range []string{path, user, pass, query} {
				if strings.Contains(got, s) {
					t.Errorf("Parse(%q) = %q, shows %q", c.doc, got, s)
				}
			}
		})
	}
}
