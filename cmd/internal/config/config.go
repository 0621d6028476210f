// Package config loads tagwatchd's TOML configuration.
//
// Decoding is strict: an unknown key, a value of the wrong type or an
// invalid value is an error that names the file, the line and the key
// ("file:line: key: what is wrong"; see Error). Secrets never appear in the
// file: it names a file path or a systemd credential (a file under
// $CREDENTIALS_DIRECTORY) for each of them.
//
// Parse applies every rule that needs only the file. The rules that need
// the machine (secret files, the TLS pair, the operator group) are
// applied by tagwatchd's start-up check, which check-config runs too; its
// errors name their key through Config.KeyError.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/provider"
	"tagwatch/vault/seal"
	"tagwatch/vault/selfservice"
)

// DefaultPath is where tagwatchd looks for its configuration.
const DefaultPath = "/etc/tagwatch/tagwatch.toml"

// Duration is a time.Duration written as a Go duration string ("90s",
// "72h"). A bare number is refused: it has no unit.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like 90s, 15m, 72h): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Config is the whole configuration.
type Config struct {
	// Path is the file the configuration was read from.
	Path string `toml:"-"`
	// keys are the keys written in the file, for KeyError.
	keys map[string]written

	Daemon    Daemon     `toml:"daemon"`
	Keys      Keys       `toml:"keys"`
	HTTP      HTTP       `toml:"http"`
	Status    Status     `toml:"status"`
	Enroll    Enroll     `toml:"enroll"`
	Renewal   Renewal    `toml:"renewal"`
	Scheduler Scheduler  `toml:"scheduler"`
	Notify    Notify     `toml:"notify"`
	Account   Account    `toml:"account"`
	Storage   Storage    `toml:"storage"`
	Providers []Provider `toml:"provider"`
}

// Storage says where the vault lives: the embedded bbolt file (the
// default; one daemon owns it) or a PostgreSQL database that several
// daemons share.
type Storage struct {
	// Engine is "bbolt" (daemon.database, or tagwatch.db in
	// daemon.state_dir) or "postgres".
	Engine string `toml:"engine"`
	// DSN is the PostgreSQL connection string, keyword=value
	// ("host=/run/postgresql dbname=tagwatch user=tagwatch") or a
	// postgres:// URL, with no password in it: the password is a secret
	// (PasswordFile or PasswordCredential), as every other secret is.
	// Required for postgres.
	DSN string `toml:"dsn"`
	// PasswordFile or PasswordCredential (a systemd credential name) hold
	// the database password; neither for peer or certificate
	// authentication.
	PasswordFile       string `toml:"password_file"`
	PasswordCredential string `toml:"password_credential"`
	// Synchronous is what the start does when the server has a standby
	// but commits are not synchronous (a failover could then lose a
	// rotated refresh token; see README's operator section): "warn"
	// (default) or "refuse".
	Synchronous string `toml:"synchronous"`
	// Lease is how long a daemon holds a watch or outbox row it claimed
	// before another may take it over: default 30s, at least 5s.
	Lease Duration `toml:"lease"`
}

// MinLease is the least storage.lease may be.
const MinLease = 5 * time.Second

// Daemon holds process-wide settings.
type Daemon struct {
	StateDir        string   `toml:"state_dir"`
	Database        string   `toml:"database"`
	LockTimeout     Duration `toml:"lock_timeout"`
	LogFormat       string   `toml:"log_format"`
	LogLevel        string   `toml:"log_level"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
}

// Keys says where the master key comes from.
type Keys struct {
	MasterKeyFile       string `toml:"master_key_file"`
	MasterKeyCredential string `toml:"master_key_credential"`
}

// HTTP configures the public listener for consent and link pages.
type HTTP struct {
	// Listen is the address the pages are served on. Default
	// 127.0.0.1:8080.
	Listen string `toml:"listen"`
	// PublicURL is the URL users' browsers reach the pages at: consent
	// links, one-click links and the OAuth callback (PublicURL/callback,
	// which each provider must accept) point there; https except on
	// loopback. Left out or empty, Parse sets it from Listen when this
	// machine reaches Listen on loopback: http://<Listen> (https with
	// TLSCertFile), 127.0.0.1 or [::1] for every interface (0.0.0.0:8180,
	// [::]:8180); any other Listen needs it written. A loopback PublicURL
	// on another port than such a Listen is refused (it reaches no
	// tagwatchd), unless TrustedProxies names a loopback address: a local
	// proxy or tunnel forwards that port.
	PublicURL      string   `toml:"public_url"`
	TLSCertFile    string   `toml:"tls_cert_file"`
	TLSKeyFile     string   `toml:"tls_key_file"`
	TrustedProxies []string `toml:"trusted_proxies"`
	// LinkKeyFile and LinkKeyCredential name the key that signs one-click
	// pause and revoke links; empty derives it from the master key.
	LinkKeyFile       string `toml:"link_key_file"`
	LinkKeyCredential string `toml:"link_key_credential"`
}

// Status configures the operator socket.
type Status struct {
	Socket        string `toml:"socket"`
	Group         string `toml:"group"`
	WriteUIDs     []int  `toml:"write_uids"`
	MetricsListen string `toml:"metrics_listen"`
}

// Enroll configures one-time consent links.
type Enroll struct {
	LinkTTL Duration `toml:"link_ttl"`
}

// Renewal configures access-token renewal.
type Renewal struct {
	// Skew is how long before its expiry an access token is refreshed,
	// capped at half the token's own lifetime (renew.Config.Skew).
	Skew       Duration `toml:"skew"`
	Timeout    Duration `toml:"timeout"`
	MaxBackoff Duration `toml:"max_backoff"`
}

// Scheduler configures watch runs.
type Scheduler struct {
	Workers                int      `toml:"workers"`
	MaxPages               int      `toml:"max_pages"`
	PerUserConcurrency     int      `toml:"per_user_concurrency"`
	PerProviderConcurrency int      `toml:"per_provider_concurrency"`
	CatchUpWindow          Duration `toml:"catch_up_window"`
	MaxHashtags            int      `toml:"max_hashtags"`
	RunTimeout             Duration `toml:"run_timeout"`
	// MinInterval is the shortest time between two runs of one watch: a
	// schedule that fires more often is refused, naming this floor.
	// Default DefaultMinInterval; at least MinMinInterval.
	MinInterval Duration `toml:"min_interval"`
	// AppRequestsPerWindow is the search requests the whole app may make
	// to one provider per XRateWindow (X counts recent search per app as
	// well as per user); the scheduler shares it fairly among users. 0
	// means no app-wide budget. Default XAppRequestsPerWindow.
	AppRequestsPerWindow int `toml:"app_requests_per_window"`
}

// Scheduler defaults and bounds.
const (
	// DefaultMinInterval is scheduler.min_interval's default.
	DefaultMinInterval = 5 * time.Minute
	// MinMinInterval is the least scheduler.min_interval may be.
	MinMinInterval = time.Second
	// XRateWindow is the length of X's rate-limit windows.
	XRateWindow = 15 * time.Minute
	// XAppRequestsPerWindow is X's app-level limit of GET
	// /2/tweets/search/recent: 450 requests per 15-minute window (the
	// per-user limit is 300).
	XAppRequestsPerWindow = 450
)

// Notify configures the outbox and its channels.
type Notify struct {
	RetrySpan            Duration `toml:"retry_span"`
	MaxPerDigest         int      `toml:"max_per_digest"`
	PruneAfter           Duration `toml:"prune_after"`
	MaxBacklog           int      `toml:"max_backlog"`
	PerTargetConcurrency int      `toml:"per_target_concurrency"`
	WebhookTimeout       Duration `toml:"webhook_timeout"`
	AllowPrivateTargets  bool     `toml:"allow_private_targets"`
	SMTP                 SMTP     `toml:"smtp"`
	Webhooks             []Hook   `toml:"webhook"`
}

// SMTP configures outgoing mail.
type SMTP struct {
	Host               string `toml:"host"`
	Port               int    `toml:"port"`
	Security           string `toml:"security"`
	Username           string `toml:"username"`
	PasswordFile       string `toml:"password_file"`
	PasswordCredential string `toml:"password_credential"`
	From               string `toml:"from"`
	CAFile             string `toml:"ca_file"`
}

// Hook names the signing secret of a webhook target.
type Hook struct {
	URL              string `toml:"url"`
	SecretFile       string `toml:"secret_file"`
	SecretCredential string `toml:"secret_credential"`
	// PreviousSecretFile is the secret being rotated out: during a rotation
	// deliveries carry both signatures.
	PreviousSecretFile string `toml:"previous_secret_file"`
}

// Account configures the self-service page (vault/selfservice): the
// public listener's /account/, where people sign in and see and steer
// their own watches. It is served only when Enabled.
type Account struct {
	// Enabled turns the page on. Writing the [account] table turns it on
	// (Parse sets Enabled when the file writes the table and not this
	// key); enabled = false keeps the table and turns the page off.
	Enabled bool `toml:"enabled"`
	// SignIn names the [[provider]]s people may sign in with, by name: an
	// OpenID provider (silent renewal with prompt=none) or X (a sign-in
	// at X every time). Required when Enabled.
	SignIn []string `toml:"sign_in"`
	// IdleTimeout and AbsoluteTimeout end a page session not used for
	// so long, and so long after its sign-in; RecentAuth is how recent a
	// sign-in must be to revoke access or delete data. Defaults
	// selfservice.DefaultIdleTimeout, DefaultAbsoluteTimeout,
	// DefaultRecentAuth; each at least MinAccountTimeout.
	IdleTimeout     Duration `toml:"idle_timeout"`
	AbsoluteTimeout Duration `toml:"absolute_timeout"`
	RecentAuth      Duration `toml:"recent_auth"`
}

// MinAccountTimeout is the least each of the [account] durations may be:
// a second (max_age and auth_time count seconds).
const MinAccountTimeout = time.Second

// AccountURL returns the page's address, public_url + "/account/".
func (c *Config) AccountURL() string { return c.publicBase() + selfservice.Prefix + "/" }

// AccountRedirectURIs returns what each sign-in provider must have
// registered for the page, all below public_url: the redirect URI
// (/account/callback), the back-channel logout URI
// (/account/backchannel-logout, OpenID providers) and the post-logout
// redirect URI (/account/signed-out, RP-initiated logout).
func (c *Config) AccountRedirectURIs() (redirect, backchannelLogout, postLogout string) {
	base := c.publicBase() + selfservice.Prefix
	return base + "/callback", base + "/backchannel-logout", base + "/signed-out"
}

func (c *Config) publicBase() string { return strings.TrimRight(c.HTTP.PublicURL, "/") }

// Provider is an OAuth 2.0 or OpenID Connect provider users consent at.
type Provider struct {
	Name                   string   `toml:"name"`
	Kind                   string   `toml:"kind"`
	Issuer                 string   `toml:"issuer"`
	ClientID               string   `toml:"client_id"`
	ClientAuth             string   `toml:"client_auth"`
	ClientSecretFile       string   `toml:"client_secret_file"`
	ClientSecretCredential string   `toml:"client_secret_credential"`
	PrivateKeyFile         string   `toml:"private_key_file"`
	PrivateKeyCredential   string   `toml:"private_key_credential"`
	Scopes                 []string `toml:"scopes"`
	APIURL                 string   `toml:"api_url"`
	AuthURL                string   `toml:"auth_url"`
	TokenURL               string   `toml:"token_url"`
	RevokeURL              string   `toml:"revoke_url"`
	CAFile                 string   `toml:"ca_file"`
}

// Default returns the configuration with every default filled in;
// HTTP.PublicURL is the one that follows the default HTTP.Listen.
func Default() Config {
	return Config{
		Daemon: Daemon{StateDir: "/var/lib/tagwatch", LockTimeout: Duration{time.Second},
			LogFormat: "text", LogLevel: "info", ShutdownTimeout: Duration{30 * time.Second}},
		Keys:   Keys{},
		HTTP:   HTTP{Listen: "127.0.0.1:8080", PublicURL: "http://127.0.0.1:8080"},
		Status: Status{Socket: "/run/tagwatch/status.sock"},
		Enroll: Enroll{LinkTTL: Duration{vault.DefaultLinkTTL}},
		Renewal: Renewal{Skew: Duration{60 * time.Second}, Timeout: Duration{15 * time.Second},
			MaxBackoff: Duration{10 * time.Minute}},
		Scheduler: Scheduler{Workers: 32, MaxPages: 5, PerUserConcurrency: 1, PerProviderConcurrency: 64,
			CatchUpWindow: Duration{5 * time.Minute}, MaxHashtags: 10, RunTimeout: Duration{2 * time.Minute},
			MinInterval: Duration{DefaultMinInterval}, AppRequestsPerWindow: XAppRequestsPerWindow},
		Notify: Notify{RetrySpan: Duration{72 * time.Hour}, MaxPerDigest: 20, PruneAfter: Duration{7 * 24 * time.Hour},
			MaxBacklog: 10000, PerTargetConcurrency: 4, WebhookTimeout: Duration{20 * time.Second},
			SMTP: SMTP{Port: 587, Security: "starttls"}},
		Account: Account{IdleTimeout: Duration{selfservice.DefaultIdleTimeout},
			AbsoluteTimeout: Duration{selfservice.DefaultAbsoluteTimeout}, RecentAuth: Duration{selfservice.DefaultRecentAuth}},
		Storage: Storage{Engine: "bbolt", Synchronous: "warn", Lease: Duration{30 * time.Second}},
	}
}

// DatabasePath returns the vault's file: Database, or tagwatch.db in StateDir.
func (c *Config) DatabasePath() string {
	if c.Daemon.Database != "" {
		return c.Daemon.Database
	}
	return filepath.Join(c.Daemon.StateDir, "tagwatch.db")
}

// Provider returns the provider with the given name.
func (c *Config) Provider(name string) (Provider, bool) {
	for _, p := range c.Providers {
		if p.Name == name {
			return p, true
		}
	}
	return Provider{}, false
}

// Error is a configuration error at a place in a file. It reads
// "file:line: key: what is wrong"; the line is left out when the key is
// not written in the file (a default that the rest of the file makes
// invalid) and the file when the configuration was not read from one.
type Error struct {
	File string
	Line int // 0 when the key is not written in the file
	Key  string
	Msg  string
	// Err is the cause, when the error comes from a check of the machine
	// (a secret file, the TLS pair); Msg is its text.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Key)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// KeyError returns err as an *Error naming key ("provider[0].ca_file") at
// its line in the file, or at the line of the table that holds it when the
// key is not written. Checks of the machine (secret files, the TLS pair,
// the operator group) report through it.
func (c *Config) KeyError(key string, err error) *Error {
	return &Error{File: c.Path, Line: lineOfKey(c.keys, key), Key: key, Msg: err.Error(), Err: err}
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	// As tagwatch reads every file it is given: a FIFO or a directory at
	// path is an error at once, not a hang.
	data, err := seal.ReadFile(path, seal.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data, naming the file as path in errors.
// Every error is an *Error, or errors.Join of several.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.Path = path
	cfg.keys = scanKeys(data)
	// Durations first: the decoder hands a bare number to
	// Duration.UnmarshalText without saying where it was.
	if errs := cfg.checkDurationKinds(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Empty until the file says, then listenURL's: it follows listen.
	cfg.HTTP.PublicURL = ""
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, decodeError(path, cfg.keys, err)
	}
	// The [account] table turns the page on unless it says otherwise.
	if cfg.written("account") && !cfg.written("account.enabled") {
		cfg.Account.Enabled = true
	}
	if cfg.HTTP.PublicURL == "" {
		cfg.HTTP.PublicURL, _ = listenURL(cfg.HTTP.Listen, cfg.HTTP.TLSCertFile != "")
	}
	var errs []error
	for _, fe := range withPlaceholders(cfg.placeholders(), cfg.validate()) {
		errs = append(errs, &Error{File: path, Line: lineOfKey(cfg.keys, fe.key), Key: fe.key, Msg: fe.msg})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// written reports whether the file writes key, or a key below it
// ("account" for [account], account.sign_in = ..., account = {...}).
func (c *Config) written(key string) bool {
	for k := range c.keys {
		if k == key || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// leafKeys returns every key a Config can hold (tables walked, arrays of
// tables written "[]": "notify.webhook[].url") with its Go type.
func leafKeys() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			ft, name := f.Type, prefix+tag
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft, name = ft.Elem(), name+"[]"
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) {
				walk(name+".", ft)
				continue
			}
			out[name] = ft
		}
	}
	walk("", reflect.TypeOf(Config{}))
	return out
}

// durationKeys are the keys of Config whose values are Durations, with
// array indexes written "[]": "daemon.shutdown_timeout".
var durationKeys = func() map[string]bool {
	out := map[string]bool{}
	for k, t := range leafKeys() {
		if t == reflect.TypeOf(Duration{}) {
			out[k] = true
		}
	}
	return out
}()

var indexRE = regexp.MustCompile(`\[\d+\]`)

// checkDurationKinds refuses a duration written as anything but a string.
func (c *Config) checkDurationKinds() []error {
	var errs []error
	for k, w := range c.keys {
		if !durationKeys[indexRE.ReplaceAllString(k, "[]")] || w.kind == unstable.String {
			continue
		}
		msg := "must be a duration in quotes, like \"90s\", \"15m\" or \"72h\""
		if w.kind == unstable.Integer || w.kind == unstable.Float {
			msg += "; a bare number has no unit"
		}
		errs = append(errs, &Error{File: c.Path, Line: w.line, Key: k, Msg: msg})
	}
	slices.SortFunc(errs, func(a, b error) int { return a.(*Error).Line - b.(*Error).Line })
	return errs
}

var mismatchRE = regexp.MustCompile(`^toml: cannot decode TOML (\w+) into struct field \S+ of type (\S+)$`)

// humanDecodeMessage says a type mismatch in the file's terms: "must be
// a string, got an integer", not the Go field and type.
func humanDecodeMessage(msg string) string {
	m := mismatchRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want, ok := map[string]string{"string": "a string", "int": "an integer", "bool": "true or false",
		"[]string": "a list of strings", "[]int": "a list of integers"}[m[2]]
	if !ok {
		want = "a table"
	}
	return fmt.Sprintf("must be %s, got %s %s", want, article(m[1]), m[1])
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func decodeError(path string, keys map[string]written, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		var errs []error
		for i := range sm.Errors {
			de := &sm.Errors[i]
			row, _ := de.Position()
			errs = append(errs, &Error{File: path, Line: row, Key: strings.Join(de.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		// The key written on the line names array elements by index
		// ("provider[1].ca_file"); the decoder's does not.
		key := keyAtLine(keys, row)
		if key == "" {
			key = strings.Join(de.Key(), ".")
		}
		return &Error{File: path, Line: row, Key: key, Msg: humanDecodeMessage(de.Error())}
	}
	return &Error{File: path, Msg: err.Error()}
}

type fieldErr struct{ key, msg string }

var (
	nameRE       = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	credentialRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,255}$`)
)

func (c *Config) validate() []fieldErr {
	var errs []fieldErr
	add := func(key, format string, args ...any) {
		errs = append(errs, fieldErr{key, fmt.Sprintf(format, args...)})
	}
	positive := func(key string, d Duration) {
		if d.Duration <= 0 {
			add(key, "must be a positive duration, got %s", d.Duration)
		}
	}
	atLeast := func(key string, v, min int) {
		if v < min {
			add(key, "must be at least %d, got %d", min, v)
		}
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}
	secretSource := func(fileKey, file, credKey, cred string, required bool) {
		switch {
		case file != "" && cred != "":
			add(fileKey, "name either %s or %s, not both", fileKey, credKey)
		case file != "" && !filepath.IsAbs(file):
			add(fileKey, "must be an absolute path, got %q", file)
		case cred != "" && !credentialRE.MatchString(cred):
			add(credKey, "must be a systemd credential name (letters, digits, _ . @ -), got %q", cred)
		case required && file == "" && cred == "":
			add(fileKey, "a secret is required: set %s or %s", fileKey, credKey)
		}
	}

	if c.Daemon.StateDir == "" || !filepath.IsAbs(c.Daemon.StateDir) {
		add("daemon.state_dir", "must be an absolute path, got %q", c.Daemon.StateDir)
	}
	if c.Daemon.Database != "" && !filepath.IsAbs(c.Daemon.Database) {
		add("daemon.database", "must be an absolute path, got %q", c.Daemon.Database)
	}
	positive("daemon.lock_timeout", c.Daemon.LockTimeout)
	positive("daemon.shutdown_timeout", c.Daemon.ShutdownTimeout)
	oneOf("daemon.log_format", c.Daemon.LogFormat, "text", "json", "journal")
	oneOf("daemon.log_level", c.Daemon.LogLevel, "debug", "info", "warn", "error")

	secretSource("keys.master_key_file", c.Keys.MasterKeyFile, "keys.master_key_credential", c.Keys.MasterKeyCredential, false)

	_, _, listenErr := net.SplitHostPort(c.HTTP.Listen)
	if listenErr != nil {
		add("http.listen", "must be host:port, got %q", c.HTTP.Listen)
	}
	// Empty: Parse found no listen to follow (listenURL).
	if c.HTTP.PublicURL == "" {
		if listenErr == nil {
			add("http.public_url", "must be set: http.listen %s is %q, not a loopback address and port it could follow; "+
				"name the https URL users' browsers reach tagwatchd at", c.where("http.listen"), c.HTTP.Listen)
		}
	} else if err := enroll.CheckPublicURL(c.HTTP.PublicURL); err != nil {
		add("http.public_url", "%v", err)
	} else if msg := c.publicURLMissesListen(); msg != "" {
		add("http.public_url", "%s", msg)
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		add("http.tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	if _, err := c.HTTP.TrustedPrefixes(); err != nil {
		add("http.trusted_proxies", "%v", err)
	}
	secretSource("http.link_key_file", c.HTTP.LinkKeyFile, "http.link_key_credential", c.HTTP.LinkKeyCredential, false)

	if c.Status.Socket == "" || !filepath.IsAbs(c.Status.Socket) {
		add("status.socket", "must be an absolute path, got %q", c.Status.Socket)
	}
	for _, uid := range c.Status.WriteUIDs {
		if uid < 0 {
			add("status.write_uids", "uid %d is negative", uid)
		}
	}
	if c.Status.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.Status.MetricsListen); err != nil {
			add("status.metrics_listen", "must be host:port, got %q", c.Status.MetricsListen)
		}
	}

	if d := c.Enroll.LinkTTL.Duration; d < vault.MinLinkTTL || d > vault.MaxLinkTTL {
		// The bounds of every link's lifetime (tagwatchctl enroll --ttl too).
		add("enroll.link_ttl", "must be from %s to %s (%d days), got %s", shortDuration(vault.MinLinkTTL),
			shortDuration(vault.MaxLinkTTL), vault.MaxLinkTTL/(24*time.Hour), shortDuration(d))
	}
	positive("renewal.skew", c.Renewal.Skew)
	positive("renewal.timeout", c.Renewal.Timeout)
	positive("renewal.max_backoff", c.Renewal.MaxBackoff)

	atLeast("scheduler.workers", c.Scheduler.Workers, 1)
	atLeast("scheduler.max_pages", c.Scheduler.MaxPages, 1)
	atLeast("scheduler.per_user_concurrency", c.Scheduler.PerUserConcurrency, 1)
	atLeast("scheduler.per_provider_concurrency", c.Scheduler.PerProviderConcurrency, 1)
	atLeast("scheduler.max_hashtags", c.Scheduler.MaxHashtags, 1)
	positive("scheduler.catch_up_window", c.Scheduler.CatchUpWindow)
	positive("scheduler.run_timeout", c.Scheduler.RunTimeout)
	if d := c.Scheduler.MinInterval.Duration; d < MinMinInterval {
		add("scheduler.min_interval", "must be at least %s, got %s", MinMinInterval, d)
	}
	atLeast("scheduler.app_requests_per_window", c.Scheduler.AppRequestsPerWindow, 0)

	positive("notify.retry_span", c.Notify.RetrySpan)
	positive("notify.prune_after", c.Notify.PruneAfter)
	atLeast("notify.max_per_digest", c.Notify.MaxPerDigest, 1)
	atLeast("notify.max_backlog", c.Notify.MaxBacklog, 1)
	atLeast("notify.per_target_concurrency", c.Notify.PerTargetConcurrency, 1)
	if t := c.Notify.WebhookTimeout.Duration; t < 15*time.Second || t > 30*time.Second {
		add("notify.webhook_timeout", "must be between 15s and 30s, got %s", t)
	}
	if s := c.Notify.SMTP; s.Host != "" {
		oneOf("notify.smtp.security", s.Security, "starttls", "tls", "none")
		if s.Port < 1 || s.Port > 65535 {
			add("notify.smtp.port", "must be a TCP port, got %d", s.Port)
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			add("notify.smtp.from", "must be a mail address, got %q", s.From)
		}
		secretSource("notify.smtp.password_file", s.PasswordFile, "notify.smtp.password_credential", s.PasswordCredential, s.Username != "")
	}
	for i, h := range c.Notify.Webhooks {
		key := fmt.Sprintf("notify.webhook[%d]", i)
		if err := CheckWebhookURL(h.URL); err != nil {
			add(key+".url", "%v", err)
		}
		secretSource(key+".secret_file", h.SecretFile, key+".secret_credential", h.SecretCredential, true)
		if h.PreviousSecretFile != "" && !filepath.IsAbs(h.PreviousSecretFile) {
			add(key+".previous_secret_file", "must be an absolute path, got %q", h.PreviousSecretFile)
		}
	}

	errs = append(errs, c.validateAccount()...)

	st := c.Storage
	oneOf("storage.engine", st.Engine, "bbolt", "postgres")
	oneOf("storage.synchronous", st.Synchronous, "warn", "refuse")
	if st.Lease.Duration < MinLease {
		add("storage.lease", "must be at least %s, got %s", MinLease, st.Lease.Duration)
	} else if st.Engine == "postgres" && 3*c.Renewal.Timeout.Duration >= 2*st.Lease.Duration {
		// A daemon cut off from the database may still be waiting for
		// its token request up to renewal.timeout after its last
		// heartbeat, which came up to lease/3 before: the others must not
		// take its refresh over before (vault.DB.BeginRefresh).
		add("storage.lease", "must be more than %s (1.5 × renewal.timeout, %s) with engine \"postgres\", so that no daemon takes over a refresh another is still waiting for; got %s",
			c.Renewal.Timeout.Duration*3/2, c.Renewal.Timeout.Duration, st.Lease.Duration)
	}
	switch {
	case st.Engine == "postgres" && strings.TrimSpace(st.DSN) == "":
		add("storage.dsn", "is required for engine postgres, such as \"host=/run/postgresql dbname=tagwatch user=tagwatch\"")
	case st.Engine != "postgres" && (st.DSN != "" || st.PasswordFile != "" || st.PasswordCredential != ""):
		add("storage.dsn", "is set, but storage.engine is %q: the vault would be the bbolt file, not this database; write engine = \"postgres\", or remove the PostgreSQL settings", st.Engine)
	case st.DSN != "":
		if err := CheckDSN(st.DSN); err != nil {
			add("storage.dsn", "%v", err)
		}
	}
	secretSource("storage.password_file", st.PasswordFile, "storage.password_credential", st.PasswordCredential, false)

	seen := map[string]bool{}
	for i, p := range c.Providers {
		key := fmt.Sprintf("provider[%d]", i)
		if !nameRE.MatchString(p.Name) {
			add(key+".name", "must be a short lower-case name (a-z, 0-9, _ -), got %q", p.Name)
		} else if seen[p.Name] {
			add(key+".name", "provider %q is defined twice", p.Name)
		}
		seen[p.Name] = true
		oneOf(key+".kind", p.Kind, "x", "oidc")
		if p.ClientID == "" {
			add(key+".client_id", "is required")
		}
		auth := p.ClientAuth
		if auth == "" {
			auth = "client_secret_basic"
		}
		oneOf(key+".client_auth", auth, "client_secret_basic", "client_secret_post", "private_key_jwt")
		if auth == "private_key_jwt" {
			secretSource(key+".private_key_file", p.PrivateKeyFile, key+".private_key_credential", p.PrivateKeyCredential, true)
		} else {
			secretSource(key+".client_secret_file", p.ClientSecretFile, key+".client_secret_credential", p.ClientSecretCredential, true)
		}
		if p.Kind == "oidc" {
			if p.Issuer == "" {
				add(key+".issuer", "is required for kind oidc")
			}
			if p.APIURL == "" {
				add(key+".api_url", "is required for kind oidc: name the X-v2-compatible API its access tokens are for")
			}
		}
		for _, u := range []struct{ k, v string }{{"issuer", p.Issuer}, {"api_url", p.APIURL},
			{"auth_url", p.AuthURL}, {"token_url", p.TokenURL}, {"revoke_url", p.RevokeURL}} {
			if u.v == "" {
				continue
			}
			if err := CheckURL(u.v, true); err != nil {
				add(key+"."+u.k, "%v", err)
			}
		}
		if p.CAFile != "" && !filepath.IsAbs(p.CAFile) {
			add(key+".ca_file", "must be an absolute path, got %q", p.CAFile)
		}
	}
	return errs
}

// validateAccount applies the [account] rules: its durations whenever the
// table is written; with the page on, the providers people sign in with
// (each a [[provider]], at least one). The page needs no public_url of
// its own: it is below the one the consent pages use, which follows a
// loopback listen and must be written for any other (validate).
func (c *Config) validateAccount() []fieldErr {
	var errs []fieldErr
	add := func(key, format string, args ...any) {
		errs = append(errs, fieldErr{key, fmt.Sprintf(format, args...)})
	}
	a := c.Account
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"account.idle_timeout", a.IdleTimeout.Duration}, {"account.absolute_timeout", a.AbsoluteTimeout.Duration},
		{"account.recent_auth", a.RecentAuth.Duration}} {
		if d.v < MinAccountTimeout {
			add(d.key, "must be at least %s, got %s", MinAccountTimeout, d.v)
		}
	}
	if a.IdleTimeout.Duration > a.AbsoluteTimeout.Duration && a.AbsoluteTimeout.Duration >= MinAccountTimeout {
		add("account.idle_timeout", "must not be longer than account.absolute_timeout (%s), got %s",
			shortDuration(a.AbsoluteTimeout.Duration), shortDuration(a.IdleTimeout.Duration))
	}
	if !a.Enabled {
		return errs
	}
	if len(a.SignIn) == 0 {
		add("account.sign_in", "is required for the page: name the [[provider]]s people sign in with, such as [\"corp\"]")
	}
	seen := map[string]bool{}
	for _, name := range a.SignIn {
		switch _, ok := c.Provider(name); {
		case isPlaceholder(name):
			// reported as a placeholder
		case seen[name]:
			add("account.sign_in", "names provider %q twice", name)
		case !ok:
			add("account.sign_in", "names %q, which is not a [[provider]] of this file", name)
		}
		seen[name] = true
	}
	return errs
}

// listenURL is the URL this machine's browsers reach a listener at:
// http://listen (https with TLS) for a loopback address, 127.0.0.1 or
// [::1] for every interface; false for any other address (another
// machine's browsers reach it by a name only the operator knows) or a
// port that is not a number.
func listenURL(listen string, tls bool) (string, bool) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	} else if !IsLoopbackHost(host) {
		return "", false
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), true
}

// publicURLMissesListen says why a loopback public_url on another port
// than a listener this machine reaches on loopback reaches no tagwatchd;
// "" when it does, or when a trusted proxy on loopback may forward that
// port (a local TLS proxy, an SSH tunnel), or when the port is picked at
// start (0).
func (c *Config) publicURLMissesListen() string {
	own, ok := listenURL(c.HTTP.Listen, c.HTTP.TLSCertFile != "")
	_, lport, _ := net.SplitHostPort(c.HTTP.Listen)
	u, err := url.Parse(c.HTTP.PublicURL)
	if !ok || lport == "0" || err != nil || !IsLoopbackHost(u.Hostname()) {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port == lport {
		return ""
	}
	prefixes, _ := c.HTTP.TrustedPrefixes()
	for _, p := range prefixes {
		if p.Contains(netip.IPv6Loopback()) || p.Contains(netip.AddrFrom4([4]byte{127, 0, 0, 1})) {
			return ""
		}
	}
	return fmt.Sprintf("%q is port %s on loopback, but http.listen %s is %q: consent links and the callback would not reach tagwatchd; "+
		"set public_url to %q or leave it out (on loopback it follows listen), or, for a proxy or tunnel on port %s, "+
		"list 127.0.0.1 in http.trusted_proxies", c.HTTP.PublicURL, port, c.where("http.listen"), c.HTTP.Listen, own, port)
}

// where says where key is written, for a message about another key:
// "(line 3)", or "(not set, the default)".
func (c *Config) where(key string) string {
	if w, ok := c.keys[key]; ok {
		return fmt.Sprintf("(line %d)", w.line)
	}
	return "(not set, the default)"
}

// CheckURL applies provider.CheckURL (absolute, https except on loopback,
// no credentials or fragment) to an endpoint URL (a provider's issuer,
// token_url, ...) and, when strict, refuses a query too. Endpoint URLs
// carry no secret by contract; the messages show the URL without its
// user part all the same (provider.WithoutUser).
func CheckURL(raw string, strict bool) error {
	if err := provider.CheckURL(raw); err != nil {
		return err
	}
	if u, _ := url.Parse(raw); strict && u.RawQuery != "" {
		return fmt.Errorf("must not have a query, got %q", raw)
	}
	return nil
}

// CheckWebhookURL applies provider.CheckURL to a webhook target's URL
// (notify.webhook[].url). An incoming-webhook URL keeps its credential in
// its path, query or user part, so the message shows it only as
// notify.TargetLabel does: `must be https (http is allowed only on
// loopback), got http://hooks.example.com/…#1a2b3c4d`.
func CheckWebhookURL(raw string) error {
	err := provider.CheckURL(raw)
	var ue *provider.URLError
	if errors.As(err, &ue) {
		return fmt.Errorf("%s, got %s", ue.Problem, notify.TargetLabel(raw))
	}
	if err != nil {
		return fmt.Errorf("is not a valid URL, got %s", notify.TargetLabel(raw))
	}
	return nil
}

// TrustedPrefixes returns TrustedProxies as prefixes: an address stands
// for itself alone (an IPv4-mapped IPv6 address for its IPv4 address), a
// CIDR prefix for its network. An entry that is neither is an error.
func (h HTTP) TrustedPrefixes() ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for i, s := range h.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: not an address or CIDR prefix: %q", i, s)
		}
		a = a.Unmap()
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps, nil
}

// MasterKeySource returns where the master key is, and the key that says
// so: keys.master_key_file, keys.master_key_credential, or, with neither
// set, the credential "master-key" (DefaultMasterKeyCredential).
func (c *Config) MasterKeySource() (seal.Source, string) {
	switch {
	case c.Keys.MasterKeyFile != "":
		return seal.Source{File: c.Keys.MasterKeyFile}, "keys.master_key_file"
	case c.Keys.MasterKeyCredential != "":
		return seal.Source{Credential: c.Keys.MasterKeyCredential}, "keys.master_key_credential"
	}
	return seal.Source{Credential: DefaultMasterKeyCredential}, "keys.master_key_credential"
}

// DefaultMasterKeyCredential is the credential the master key is read
// from when the configuration names none (LoadCredential=master-key:...).
const DefaultMasterKeyCredential = "master-key"

// Secret is a secret the configuration names: the key that names it and
// where it is.
type Secret struct {
	Key    string
	Source seal.Source
}

// Secrets returns every secret the daemon reads at start besides the
// master key (MasterKeySource), each with the key that names it: the
// link key, the providers' client secrets or private keys, the webhook
// signing secrets (and those being rotated out) and the SMTP password.
func (c *Config) Secrets() []Secret {
	var out []Secret
	add := func(fileKey, file, credKey, cred string) {
		switch {
		case file != "":
			out = append(out, Secret{fileKey, seal.Source{File: file}})
		case cred != "":
			out = append(out, Secret{credKey, seal.Source{Credential: cred}})
		}
	}
	add("http.link_key_file", c.HTTP.LinkKeyFile, "http.link_key_credential", c.HTTP.LinkKeyCredential)
	for i, p := range c.Providers {
		key := fmt.Sprintf("provider[%d]", i)
		if p.ClientAuth == provider.AuthPrivateKeyJWT {
			add(key+".private_key_file", p.PrivateKeyFile, key+".private_key_credential", p.PrivateKeyCredential)
		} else {
			add(key+".client_secret_file", p.ClientSecretFile, key+".client_secret_credential", p.ClientSecretCredential)
		}
	}
	for i, h := range c.Notify.Webhooks {
		key := fmt.Sprintf("notify.webhook[%d]", i)
		add(key+".secret_file", h.SecretFile, key+".secret_credential", h.SecretCredential)
		add(key+".previous_secret_file", h.PreviousSecretFile, "", "")
	}
	s := c.Notify.SMTP
	add("notify.smtp.password_file", s.PasswordFile, "notify.smtp.password_credential", s.PasswordCredential)
	add("storage.password_file", c.Storage.PasswordFile, "storage.password_credential", c.Storage.PasswordCredential)
	return out
}

// StoragePassword returns where the database password comes from, and
// the key that names it; a zero Source when neither is written (peer or
// certificate authentication).
func (c *Config) StoragePassword() (seal.Source, string) {
	switch {
	case c.Storage.PasswordFile != "":
		return seal.Source{File: c.Storage.PasswordFile}, "storage.password_file"
	case c.Storage.PasswordCredential != "":
		return seal.Source{Credential: c.Storage.PasswordCredential}, "storage.password_credential"
	}
	return seal.Source{}, ""
}

// shortDuration writes d without zero minutes and seconds: "720h", "1m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool { return provider.IsLoopbackHost(host) }

// CheckDSN checks a PostgreSQL connection string as storage.dsn takes it:
// keyword=value pairs (values in single quotes when they hold spaces,
// with \' and \\ escapes) or a postgres:// or postgresql:// URL, and no
// password in it, in any spelling (password=, a URL's user:password@, a
// password query parameter): the password is a secret file or credential,
// never configuration. The error names what is wrong, never the value of
// a password. It reads no environment and never panics.
// Source: PostgreSQL 15 documentation, 34.1.1 "Connection Strings".
func CheckDSN(dsn string) error {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return errors.New("is not a valid postgres:// URL")
		}
		if _, has := u.User.Password(); has {
			return errors.New("holds a password (user:password@): put it in storage.password_file or storage.password_credential")
		}
		for k := range u.Query() {
			if strings.EqualFold(k, "password") {
				return errors.New("holds a password parameter: put it in storage.password_file or storage.password_credential")
			}
		}
		return nil
	}
	keys, err := dsnKeywords(dsn)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k == "password" {
			return errors.New("holds password=: put it in storage.password_file or storage.password_credential")
		}
	}
	return nil
}

// dsnKeywords returns the keywords of a keyword=value connection string,
// lower case, or an error naming the first thing that is not a pair.
func dsnKeywords(dsn string) ([]string, error) {
	var keys []string
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return keys, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("is not keyword=value pairs or a postgres:// URL (at byte %d)", len(dsn)-len(s)+1)
		}
		key := strings.TrimRight(s[:eq], " \t")
		if strings.ContainsAny(key, " \t'\\") {
			return nil, fmt.Errorf("is not keyword=value pairs or a postgres:// URL (at byte %d)", len(dsn)-len(s)+1)
		}
		keys = append(keys, strings.ToLower(key))
		s = strings.TrimLeft(s[eq+1:], " \t")
		if strings.HasPrefix(s, "'") {
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '\'' {
					break
				}
			}
			if i >= len(s) {
				return nil, fmt.Errorf("has an unterminated quoted value for %s", clip(key, 40))
			}
			s = s[i+1:]
			continue
		}
		end := strings.IndexAny(s, " \t\n\r\f\v")
		if end < 0 {
			return keys, nil
		}
		s = s[end:]
	}
}

// clip is s cut to at most n bytes, for an error message.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
