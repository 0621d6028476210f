package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/selfservice"
)

// TestExamplesLoad: each example, its placeholders filled as an operator
// does (TestExamplesRefusedUntilEdited: refused before), loads.
func TestExamplesLoad(t *testing.T) {
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
			if _, err := Parse(f, fillPlaceholders(doc)); err != nil {
				t.Errorf("Parse(%s, placeholders filled) = %v", f, err)
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
	keys := leafKeys()
	if len(keys) < 40 {
		t.Fatalf("leafKeys found %d keys, want every key of Config", len(keys))
	}
	for key := range keys {
		tag := key[strings.LastIndexByte(key, '.')+1:]
		if !strings.Contains(text, "\n"+tag+" = ") && !strings.Contains(text, "\n# "+tag+" = ") {
			t.Errorf("configs/tagwatch.toml does not document %s", key)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Enroll.LinkTTL.Duration != 72*time.Hour || cfg.Renewal.Skew.Duration != time.Minute {
		t.Errorf("defaults = %+v", cfg)
	}
	if cfg.Scheduler.MinInterval.Duration != 5*time.Minute || cfg.Scheduler.AppRequestsPerWindow != 450 {
		t.Errorf("scheduler defaults: min_interval %s, app_requests_per_window %d; want 5m, 450",
			cfg.Scheduler.MinInterval, cfg.Scheduler.AppRequestsPerWindow)
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
		// C14: what the daemon refused at start, refused here, by key.
		{"public url with a query", "[http]\npublic_url = \"http://127.0.0.1:18181/tw?x=1\"\n", 2, "http.public_url", "must not have a query"},
		{"public url with a fragment", "[http]\npublic_url = \"https://tw.example.org/#x\"\n", 2, "http.public_url", "fragment"},
		{"link ttl over the max", "[enroll]\nlink_ttl = \"876000h\"\n", 2, "enroll.link_ttl", "must be from 1m to 720h (30 days), got 876000h"},
		{"link ttl under the min", "[enroll]\n\nlink_ttl = \"30s\"\n", 3, "enroll.link_ttl", "must be from 1m to 720h"},
		{"bare number duration", "[daemon]\nshutdown_timeout = 5\n", 2, "daemon.shutdown_timeout", "a bare number has no unit"},
		{"bool duration", "[renewal]\nskew = true\n", 2, "renewal.skew", "must be a duration in quotes"},
		{"bare number in an inline table", "daemon = { state_dir = \"/x\", shutdown_timeout = 5 }\n", 1, "daemon.shutdown_timeout", "no unit"},
		{"wrong type in a provider", "[[provider]]\nname = \"x\"\n[[provider]]\nname = \"y\"\nca_file = 3\n", 5, "provider[1].ca_file", "must be a string, got an integer"},
		{"min interval too short", "[scheduler]\nmin_interval = \"500ms\"\n", 2, "scheduler.min_interval", "must be at least 1s, got 500ms"},
		{"negative app window", "[scheduler]\napp_requests_per_window = -1\n", 2, "scheduler.app_requests_per_window", "must be at least 0"},
		{"relative previous secret", "[[notify.webhook]]\nurl = \"https://h.example.org/x\"\nsecret_file = \"/s\"\nprevious_secret_file = \"old\"\n", 4, "notify.webhook[0].previous_secret_file", "absolute"},
		{"trusted proxy", "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy\"]\n", 2, "http.trusted_proxies", `entry 1: not an address or CIDR prefix: "proxy"`},
		// [account]: the self-service page.
		{"account without sign_in", "[http]\npublic_url = \"https://tw.example.org\"\n\n[account]\nidle_timeout = \"5m\"\n", 4, "account.sign_in", "is required for the page"},
		{"account sign_in not a provider", "[http]\npublic_url = \"https://tw.example.org\"\n[account]\n\nsign_in = [\"corp\"]\n", 5, "account.sign_in", `names "corp", which is not a [[provider]]`},
		{"account sign_in not a list", "[account]\nsign_in = \"corp\"\n", 2, "account.sign_in", "must be a list of strings, got a string"},
		{"account bare number", "[account]\nenabled = false\nrecent_auth = 300\n", 3, "account.recent_auth", "a bare number has no unit"},
		{"account idle under a second", "[account]\nenabled = false\nidle_timeout = \"500ms\"\n", 3, "account.idle_timeout", "must be at least 1s, got 500ms"},
		{"account idle over absolute", "[account]\nenabled = false\nidle_timeout = \"9h\"\n", 3, "account.idle_timeout", "must not be longer than account.absolute_timeout (8h), got 9h"},
		{"account public url http", oidcProvider + "[http]\npublic_url = \"http://tw.example.org\"\n[account]\nsign_in = [\"corp\"]\n", 9, "http.public_url", "must be https"},
		{"account unknown key", "[account]\nsign_in = []\nsignin = [\"corp\"]\n", 3, "account.signin", "unknown key"},
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
			if c.key != "" {
				if want := fmt.Sprintf("/etc/tagwatch/t.toml:%d: %s: ", c.line, c.key); !strings.HasPrefix(err.Error(), want) {
					t.Errorf("Parse error = %q, want it to start with %q", err, want)
				}
			}
		})
	}
}

// oidcProvider is an OpenID provider "corp" of 7 lines, for the
// [account] cases.
const oidcProvider = "[[provider]]\nname = \"corp\"\nkind = \"oidc\"\nissuer = \"https://id.example.org\"\napi_url = \"https://api.example.org\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n"

// TestAccount: the [account] table turns the page on unless enabled =
// false; the defaults are the page's own; the URIs an operator registers
// at the provider are below public_url.
func TestAccount(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		enabled   bool
		signIn    []string
		idle      time.Duration
		base      string // where the page is, when it is on
	}{
		{"no table", "", false, nil, selfservice.DefaultIdleTimeout, ""},
		{"table", "[http]\npublic_url = \"https://tw.example.org/tw/\"\n" + oidcProvider + "[account]\nsign_in = [\"corp\"]\nidle_timeout = \"3s\"\n", true, []string{"corp"}, 3 * time.Second, "https://tw.example.org/tw"},
		{"dotted key", "account.sign_in = [\"corp\"]\nhttp.public_url = \"https://tw.example.org/tw/\"\n" + oidcProvider, true, []string{"corp"}, selfservice.DefaultIdleTimeout, "https://tw.example.org/tw"},
		{"inline table", "account = {sign_in = [\"corp\"]}\nhttp = {public_url = \"https://tw.example.org/tw\"}\n" + oidcProvider, true, []string{"corp"}, selfservice.DefaultIdleTimeout, "https://tw.example.org/tw"},
		{"turned off", "[account]\nenabled = false\nsign_in = [\"nobody\"]\n", false, []string{"nobody"}, selfservice.DefaultIdleTimeout, ""},
		{"turned on", "[http]\nlisten = \"127.0.0.1:18443\"\npublic_url = \"http://127.0.0.1:18443/tw\"\n" + oidcProvider + "[account]\nenabled = true\nsign_in = [\"corp\"]\n", true, []string{"corp"}, selfservice.DefaultIdleTimeout, "http://127.0.0.1:18443/tw"},
		// public_url follows a loopback listen for the page as for the
		// consent pages.
		{"loopback listen", "[http]\nlisten = \"127.0.0.1:18444\"\n" + oidcProvider + "[account]\nsign_in = [\"corp\"]\n", true, []string{"corp"}, selfservice.DefaultIdleTimeout, "http://127.0.0.1:18444"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("a.toml", []byte(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Account
			if a.Enabled != c.enabled || !reflect.DeepEqual(a.SignIn, c.signIn) || a.IdleTimeout.Duration != c.idle ||
				a.AbsoluteTimeout.Duration != selfservice.DefaultAbsoluteTimeout || a.RecentAuth.Duration != selfservice.DefaultRecentAuth {
				t.Errorf("Parse(%q).Account = %+v, want enabled %v, sign_in %q, idle %s and the page's other defaults", c.doc, a, c.enabled, c.signIn, c.idle)
			}
			if !c.enabled {
				return
			}
			if got := cfg.AccountURL(); got != c.base+"/account/" {
				t.Errorf("AccountURL() = %q, want %q", got, c.base+"/account/")
			}
			r, b, p := cfg.AccountRedirectURIs()
			if r != c.base+"/account/callback" || b != c.base+"/account/backchannel-logout" || p != c.base+"/account/signed-out" {
				t.Errorf("AccountRedirectURIs() = %q, %q, %q, want them below %q", r, b, p, c.base+"/account/")
			}
		})
	}
	// A placeholder in sign_in is refused as a placeholder, nothing else.
	_, err := Parse("p.toml", []byte("[http]\npublic_url = \"https://tw.example.org\"\n[account]\nsign_in = [\"<your provider>\"]\n"))
	if err == nil || err.Error() != `p.toml:4: account.sign_in: still holds the example's placeholder "<your provider>": replace it with your own value` {
		t.Errorf("Parse(sign_in placeholder) = %v, want the placeholder alone refused", err)
	}
	// Every error at once.
	_, err = Parse("m.toml", []byte("[account]\nsign_in = [\"a\", \"a\"]\nrecent_auth = \"0s\"\n"))
	for _, want := range []string{`m.toml:2: account.sign_in: names "a", which is not a [[provider]]`, `m.toml:2: account.sign_in: names provider "a" twice`,
		"m.toml:3: account.recent_auth: must be at least 1s, got 0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(several errors) = %v, want it to say %q", err, want)
		}
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

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"", "[daemon]\nstate_dir = \"/x\"\n", "[[provider]]\nname=1\n", "a.b.c = [1, {x=2}]",
		"[daemon]\nshutdown_timeout = 5\n", "daemon = {shutdown_timeout = 5.5, x = {y = [{z = 1}]}}\n",
		"notify.webhook = [{url = 1}, {secret_file = true}]\n", "[enroll]\nlink_ttl = \"876000h\"\n"} {
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

func TestNewSchedulerKeys(t *testing.T) {
	cfg, err := Parse("s.toml", []byte("[scheduler]\nmin_interval = \"1s\"\napp_requests_per_window = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Scheduler.MinInterval.Duration != time.Second || cfg.Scheduler.AppRequestsPerWindow != 0 {
		t.Errorf("Parse = min_interval %s, app_requests_per_window %d; want 1s, 0", cfg.Scheduler.MinInterval, cfg.Scheduler.AppRequestsPerWindow)
	}
}

// TestKeyError: checks of the machine name the key at its line, or at the
// line of its table when the key is not written.
func TestKeyError(t *testing.T) {
	doc := "[keys]\nmaster_key_file = \"/k\"\n\n[[provider]]\nname = \"x\"\nkind = \"x\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n"
	cfg, err := Parse("/etc/t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("read secret file /k: mode 0644")
	for _, c := range []struct {
		key  string
		want string
	}{
		{"keys.master_key_file", "/etc/t.toml:2: keys.master_key_file: read secret file /k: mode 0644"},
		{"provider[0].client_secret_file", "/etc/t.toml:8: provider[0].client_secret_file: read secret file /k: mode 0644"},
		{"provider[0].ca_file", "/etc/t.toml:4: provider[0].ca_file: read secret file /k: mode 0644"},
		{"status.group", "/etc/t.toml: status.group: read secret file /k: mode 0644"},
	} {
		e := cfg.KeyError(c.key, cause)
		if e.Error() != c.want || !errors.Is(e, cause) {
			t.Errorf("KeyError(%q) = %q, want %q wrapping the cause", c.key, e, c.want)
		}
	}
}

func TestSecrets(t *testing.T) {
	doc := `[http]
link_key_credential = "link"
[notify.smtp]
username = "u"
password_file = "/pw"
[[notify.webhook]]
url = "https://h.example.org/x"
secret_credential = "wh"
previous_secret_file = "/old"
[[provider]]
name = "x"
kind = "x"
client_id = "c"
client_secret_file = "/s"
[[provider]]
name = "o"
kind = "oidc"
issuer = "https://id.example.org"
api_url = "https://api.example.org"
client_id = "c"
client_auth = "private_key_jwt"
private_key_credential = "pk"
`
	cfg, err := Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cfg.Secrets() {
		got = append(got, s.Key+"="+s.Source.String())
	}
	want := []string{"http.link_key_credential=credential link", "provider[0].client_secret_file=file /s",
		"provider[1].private_key_credential=credential pk", "notify.webhook[0].secret_credential=credential wh",
		"notify.webhook[0].previous_secret_file=file /old", "notify.smtp.password_file=file /pw"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
	src, key := cfg.MasterKeySource()
	if src.Credential != "master-key" || key != "keys.master_key_credential" {
		t.Errorf("MasterKeySource() = %v, %q; want the credential master-key", src, key)
	}
}

// TestCheckDSN: a connection string is keyword=value pairs or a URL, and
// holds no password in any spelling; the error never shows one.
func TestCheckDSN(t *testing.T) {
	for _, c := range []struct {
		dsn, want string // want "" for ok
	}{
		{"host=/run/postgresql dbname=tagwatch user=tagwatch", ""},
		{"host=db.example.org port=5432 dbname='tag watch' sslmode=verify-full", ""},
		{"  host = /tmp   dbname=x  ", ""},
		{"postgres://tagwatch@db.example.org/tagwatch?sslmode=verify-full", ""},
		{"postgresql:///tagwatch?host=/run/postgresql", ""},
		{"host=/tmp password=hunter2", "holds password="},
		{"host=/tmp PassWord = 'hun ter2'", "holds password="},
		{"dbname='it\\'s' password='a\\'b'", "holds password="},
		{"dbname='it''s'", "is not keyword=value pairs"}, // '' is not an escape in a conninfo string
		{"postgres://u:hunter2@db/x", "holds a password (user:password@)"},
		{"postgres://u@db/x?password=hunter2", "holds a password parameter"},
		{"postgres://u@db/x?PASSWORD=hunter2", "holds a password parameter"},
		{"hunter2", "is not keyword=value pairs"},
		{"host=/tmp dbname='unterminated", "unterminated quoted value for dbname"},
		{"=x", "is not keyword=value pairs"},
		{"postgres://%zz", "is not a valid postgres:// URL"},
	} {
		err := CheckDSN(c.dsn)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckDSN(%q) = %v, want ok", c.dsn, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckDSN(%q) = %v, want %q", c.dsn, err, c.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("CheckDSN(%q) = %v: the error shows the password", c.dsn, err)
		}
	}
}

// FuzzCheckDSN: any string gives an answer, never a panic, and an error
// never carries a password-looking value of the input.
func FuzzCheckDSN(f *testing.F) {
	for _, s := range []string{"host=/tmp password=x", "postgres://u:p@h/d", "a='b\\'c' d=e", "'", "=", "postgres://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		err := CheckDSN(dsn)
		if err != nil && strings.Contains(dsn, "password=SECRETVALUE") && strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("CheckDSN(%q) = %v: shows the password", dsn, err)
		}
	})
}

// TestStorage: [storage] defaults to bbolt; postgres needs a DSN without
// a password, the password comes from a file or credential, and the
// lease and the synchronous policy are checked.
func TestStorage(t *testing.T) {
	cfg, err := Parse("s.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := cfg.Storage; st.Engine != "bbolt" || st.Synchronous != "warn" || st.Lease.Duration != 30*time.Second {
		t.Errorf("default storage = %+v", st)
	}
	good := "[storage]\nengine = \"postgres\"\ndsn = \"host=/run/postgresql dbname=tagwatch user=tagwatch\"\npassword_file = \"/etc/tagwatch/pg\"\nsynchronous = \"refuse\"\nlease = \"10s\"\n[renewal]\ntimeout = \"6s\"\n"
	cfg, err = Parse("s.toml", []byte(good))
	if err != nil || cfg.Storage.Engine != "postgres" || cfg.Storage.PasswordFile != "/etc/tagwatch/pg" || cfg.Storage.Lease.Duration != 10*time.Second {
		t.Fatalf("Parse(postgres) = %+v, %v", cfg.Storage, err)
	}
	for _, c := range []struct{ doc, key, want string }{
		{"[storage]\nengine = \"sqlite\"\n", "storage.engine", "must be one of bbolt, postgres"},
		{"[storage]\nengine = \"postgres\"\n", "storage.dsn", "is required for engine postgres"},
		{"[storage]\nengine = \"postgres\"\ndsn = \"host=/tmp password=hunter2\"\n", "storage.dsn", "holds password="},
		{"[storage]\nsynchronous = \"maybe\"\n", "storage.synchronous", "must be one of warn, refuse"},
		{"[storage]\nlease = \"1s\"\n", "storage.lease", "must be at least 5s"},
		{"[storage]\nengine = \"postgres\"\ndsn = \"host=/tmp\"\nlease = \"22s\"\n", "storage.lease", "must be more than 22.5s (1.5 × renewal.timeout, 15s)"},
		{"[storage]\ndsn = \"host=/tmp\"\n", "storage.dsn", "is set, but storage.engine is \"bbolt\""},
		{"[storage]\npassword_file = \"pg\"\n", "storage.password_file", "must be an absolute path"},
		{"[storage]\npassword_file = \"/a\"\npassword_credential = \"b\"\n", "storage.password_file", "name either storage.password_file or storage.password_credential, not both"},
	} {
		_, err := Parse("s.toml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.key+": "+c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) = %v, want %s: %s", c.doc, err, c.key, c.want)
		}
	}
}
