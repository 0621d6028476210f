package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("Load(%s) = %v", f, err)
			}
		})
	}
}

// TestReferenceDocumentsEveryKey keeps configs/tagwatch.toml complete: every
// key of Config must be written there.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../../configs/tagwatch.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) {
				walk(prefix+tag+".", ft)
				continue
			}
			if !strings.Contains(text, "\n"+tag+" = ") && !strings.Contains(text, "\n# "+tag+" = ") {
				t.Errorf("configs/tagwatch.toml does not document %s%s", prefix, tag)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Enroll.LinkTTL.Duration != 72*time.Hour || cfg.Renewal.Skew.Duration != time.Minute {
		t.Errorf("defaults = %+v", cfg)
	}
	if got := cfg.DatabasePath(); got != "/var/lib/tagwatch/tagwatch.db" {
		t.Errorf("DatabasePath() = %q", got)
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
		key, msg  string
	}{
		{"unknown key", "[daemon]\nstate_dir = \"/x\"\nstat_dir = \"/y\"\n", 3, "daemon.stat_dir", "unknown key"},
		{"unknown table", "\n[deamon]\nstate_dir = \"/x\"\n", 2, "deamon", "unknown key"},
		{"wrong type", "[scheduler]\n\nworkers = \"many\"\n", 3, "scheduler.workers", ""},
		{"bad duration", "[enroll]\nlink_ttl = \"3 days\"\n", 2, "enroll.link_ttl", "not a duration"},
		{"invalid value", "[daemon]\nlog_level = \"loud\"\n", 2, "daemon.log_level", "must be one of"},
		{"http public url", "[http]\npublic_url = \"http://tagwatch.example.org\"\n", 2, "http.public_url", "must be https"},
		{"provider key", "[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n[[provider]]\nname = \"y\"\nkind = \"oidc\"\nclient_id = \"c\"\nclient_secret_credential = \"s\"\napi_url = \"https://api\"\nissuer = \"http://id.example.org\"\n", 12, "provider[1].issuer", "must be https"},
		{"both secret sources", "[keys]\nmaster_key_file = \"/k\"\nmaster_key_credential = \"k\"\n", 2, "keys.master_key_file", "not both"},
		{"secret missing", "[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\n", 1, "provider[0].client_secret_file", "a secret is required"},
		{"syntax", "[daemon\n", 1, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/tagwatch/t.toml", []byte(c.doc))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", c.doc)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v is not a *config.Error", err)
			}
			if ce.File != "/etc/tagwatch/t.toml" || ce.Line != c.line || (c.key != "" && ce.Key != c.key) || !strings.Contains(ce.Msg, c.msg) {
				t.Errorf("Parse error = %+v (%v), want line %d key %q containing %q", *ce, err, c.line, c.key, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "/etc/tagwatch/t.toml:") {
				t.Errorf("error %q does not start with file:line", err)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.x.com":         true,
		"http://127.0.0.1:8080":     true,
		"http://[::1]:4444/":        true,
		"http://localhost:1":        true,
		"http://api.x.com":          false,
		"ftp://x":                   false,
		"/relative":                 false,
		"https://user:pw@host/":     false,
		"https://h/?q=1":            false,
		"http://127.0.0.1.nip.io/":  false,
		"https://h/#frag":           false,
		"http://169.254.169.254/x":  false,
		"https://x.com/i/oauth2/au": true,
	} {
		if err := CheckURL(raw, true); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestValidateSchedule(t *testing.T) {
	for spec, ok := range map[string]bool{
		"*/15 * * * *":                    true,
		"0 */5 * * * *":                   true,
		"@hourly":                         true,
		"@every 5m":                       true,
		"CRON_TZ=Europe/Berlin 0 9 * * *": true,
		"every minute":                    false,
		"* * *":                           false,
		"CRON_TZ=Mars/Base 0 9 * * *":     false,
	} {
		if _, err := ValidateSchedule(spec); (err == nil) != ok {
			t.Errorf("ValidateSchedule(%q) = %v, want ok=%v", spec, err, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"", "[daemon]\nstate_dir = \"/x\"\n", "[[provider]]\nname=1\n", "a.b.c = [1, {x=2}]"} {
		f.Add([]byte(seed))
	}
	if b, err := os.ReadFile("../../../configs/tagwatch.toml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil && cfg == nil {
			t.Fatal("Parse returned neither config nor error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.toml") {
			t.Fatalf("error %q does not name the file", err)
		}
	})
}
