package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault/seal"
	"tagwatch/vault/selfservice"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

// The sandbox's fixed names: the printed [[provider]] block stays valid
// across restarts (same address, client id and secret file).
const (
	sandboxListen     = "127.0.0.1:8099"
	sandboxClientID   = "tagwatch-sandbox"
	sandboxSecretName = "x-client-secret"
	// sandboxFirstID is the X id of the first -users account; the next
	// ones follow, so ids are the same at every start with the same -users.
	sandboxFirstID = 1001
)

// cmdSandbox is `tagwatchd sandbox`: the X sandbox on its own, on
// loopback, until SIGINT or SIGTERM.
func cmdSandbox(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runSandbox(ctx, args, stdout, stderr, nil)
}

// sandboxOptions are the flags of tagwatchd sandbox, parsed and checked.
type sandboxOptions struct {
	listen    string
	dir       string
	users     []xsandbox.User
	rate      float64
	hashtags  []string
	redirects []string
	tokenTTL  time.Duration
}

func sandboxFlags(fs *flag.FlagSet) func() (sandboxOptions, error) {
	listen := fs.String("listen", sandboxListen, "loopback address to serve on (127.0.0.1:PORT or [::1]:PORT)")
	dir := fs.String("dir", defaultSandboxDir(), "state directory: the client secret is kept there (mode 0600)")
	users := fs.String("users", "ada,bea", "the sandbox's accounts, comma-separated usernames (ids from 1001 in order)")
	rate := fs.Float64("rate", 1, "posts a second the generator writes (0 posts nothing)")
	hashtags := fs.String("hashtags", "golang,rust,bbolt", "hashtags the generated posts carry, comma-separated")
	public := config.Default().HTTP.PublicURL
	redirect := fs.String("redirect", public+"/callback,"+public+selfservice.Prefix+"/callback",
		"the daemon's callback URLs the sandbox accepts, comma-separated (http.public_url + /callback for consents, + /account/callback for signing in to the user's page)")
	tokenTTL := fs.Duration("token-ttl", xsandbox.DefaultAccessTokenTTL, "lifetime of access tokens (X's is 2h)")
	return func() (sandboxOptions, error) {
		o := sandboxOptions{listen: *listen, rate: *rate, tokenTTL: *tokenTTL}
		var err error
		if err = xsandbox.CheckLoopback(o.listen); err != nil {
			return o, fmt.Errorf("-listen: %w", err)
		}
		if o.dir, err = filepath.Abs(*dir); err != nil || *dir == "" {
			return o, fmt.Errorf("-dir: %q is not a usable directory path", *dir)
		}
		if o.users, err = parseSandboxUsers(*users); err != nil {
			return o, fmt.Errorf("-users: %w", err)
		}
		if o.hashtags, err = parseSandboxHashtags(*hashtags); err != nil {
			return o, fmt.Errorf("-hashtags: %w", err)
		}
		if o.redirects, err = parseSandboxRedirects(*redirect); err != nil {
			return o, fmt.Errorf("-redirect: %w", err)
		}
		if !(o.rate >= 0 && o.rate <= 1000) { // NaN too
			return o, fmt.Errorf("-rate: must be from 0 to 1000 posts a second, got %v", *rate)
		}
		if o.tokenTTL < 10*time.Second || o.tokenTTL > 24*time.Hour {
			return o, fmt.Errorf("-token-ttl: must be from 10s to 24h, got %s", o.tokenTTL)
		}
		return o, nil
	}
}

// defaultSandboxDir is where the sandbox keeps its client secret unless
// -dir says otherwise: the user's configuration directory, so the secret
// (and the block printed with it) survives a reboot.
func defaultSandboxDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "tagwatch-sandbox")
	}
	return "tagwatch-sandbox"
}

// usernameRE is X's rule for a username: 1 to 15 letters, digits or _.
var usernameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,15}$`)

// parseSandboxUsers parses -users: "ada,bea" or "@ada, @bea"; each
// account gets the id sandboxFirstID+i and a display name from its
// username.
func parseSandboxUsers(s string) ([]xsandbox.User, error) {
	var out []xsandbox.User
	seen := map[string]bool{}
	for i, f := range strings.Split(s, ",") {
		name := strings.TrimPrefix(strings.TrimSpace(f), "@")
		if !usernameRE.MatchString(name) {
			return nil, fmt.Errorf("account %d: %q is not an X username (1 to 15 letters, digits or _)", i+1, strings.TrimSpace(f))
		}
		if seen[strings.ToLower(name)] {
			return nil, fmt.Errorf("account @%s is named twice", name)
		}
		seen[strings.ToLower(name)] = true
		out = append(out, xsandbox.User{ID: strconv.Itoa(sandboxFirstID + i), Username: name,
			Name: strings.ToUpper(name[:1]) + name[1:]})
	}
	if len(out) > 50 {
		return nil, fmt.Errorf("%d accounts; at most 50", len(out))
	}
	return out, nil
}

// parseSandboxHashtags parses -hashtags: "golang,#rust"; "" is none.
// Each must be a hashtag a watch may carry (xapi.NormalizeHashtag, the
// rule tagwatch checks watches with), so what the sandbox posts can be
// watched.
func parseSandboxHashtags(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			return nil, fmt.Errorf("an empty hashtag in %q", s)
		}
		t, err := xapi.NormalizeHashtag(f)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.TrimPrefix(t, "#"))
	}
	return out, nil
}

// parseSandboxRedirects parses -redirect: absolute http(s) URLs, comma-
// separated, each matched exactly by the sandbox as X matches the
// callback URLs an app registered.
func parseSandboxRedirects(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		u, err := url.Parse(f)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an absolute http(s) callback URL", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// sandboxSecret returns the client secret kept in dir, creating dir (0700)
// and a new secret (0600) the first time.
func sandboxSecret(dir string) (path, secret string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("sandbox directory %s: %w", dir, err)
	}
	path = filepath.Join(dir, sandboxSecretName)
	b, err := seal.ReadSecretFile(seal.Source{File: path})
	switch {
	case err == nil:
		return path, strings.TrimSpace(string(b)), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", fmt.Errorf("sandbox client secret: %w", err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // never fails (crypto/rand documents it)
	secret = base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("sandbox client secret: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return "", "", fmt.Errorf("sandbox client secret %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("sandbox client secret %s: %w", path, err)
	}
	return path, secret, nil
}

// sandboxProviderBlock is the [[provider]] table that points tagwatchd at
// the sandbox at base.
func sandboxProviderBlock(base, secretFile string) string {
	return fmt.Sprintf(`[[provider]]
name = "x"
kind = "x"
client_id = %q
client_auth = "client_secret_basic"
client_secret_file = %q
api_url = %q
auth_url = %q
token_url = %q
revoke_url = %q
`, sandboxClientID, secretFile, base, base+string(xsandbox.EndpointAuthorize), base+string(xsandbox.EndpointToken),
		base+string(xsandbox.EndpointRevoke))
}

// runSandbox is tagwatchd sandbox until ctx is done; ready, when not nil,
// is called with the running server once the block is printed (tests).
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(*xsandbox.Server)) error {
	fs := flag.NewFlagSet("tagwatchd sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := sandboxFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{exitUsage, fmt.Errorf("sandbox: unexpected argument %q", fs.Arg(0))}
	}
	o, err := opts()
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("sandbox: %w", err)}
	}
	secretFile, secret, err := sandboxSecret(o.dir)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	// The control page's actions, one line each, and the sandbox's errors
	// go to stderr (the sandbox never logs a token or a secret).
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sb, err := xsandbox.Start(xsandbox.Config{Addr: o.listen, ClientID: sandboxClientID, ClientSecret: secret,
		RedirectURIs: o.redirects, AccessTokenTTL: o.tokenTTL, AppName: "tagwatch", Logger: logger})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer sb.Close()
	for _, u := range o.users {
		if err := sb.AddUser(u); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	var genWait func()
	if o.rate > 0 && len(o.hashtags) > 0 {
		genWait, err = sb.StartGenerator(ctx, xsandbox.Generator{Rate: o.rate, Hashtags: o.hashtags})
		if err != nil {
			return &exitError{exitUsage, fmt.Errorf("sandbox: -hashtags or -rate: %w", err)}
		}
	}

	block := sandboxProviderBlock(sb.URL(), secretFile)
	if err := os.WriteFile(filepath.Join(o.dir, "provider.toml"), []byte(block), 0o600); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "X sandbox (tagwatch %s) at %s: not x.com, no real account involved.\n", Version(), sb.URL())
	fmt.Fprintf(&b, "Paste this into your tagwatch configuration (also written to %s):\n\n", filepath.Join(o.dir, "provider.toml"))
	b.WriteString(block)
	fmt.Fprintf(&b, "\nAccounts (pick one on the sandbox's sign-in page; tagwatchctl enroll --expect @NAME):\n")
	for _, u := range o.users {
		fmt.Fprintf(&b, "  @%-15s id %s\n", u.Username, u.ID)
	}
	fmt.Fprintf(&b, "Callback URLs accepted: %s\n", strings.Join(o.redirects, " "))
	if genWait != nil {
		posts := "posts"
		if o.rate == 1 {
			posts = "post"
		}
		fmt.Fprintf(&b, "Posting %g %s a second with #%s.\n", o.rate, posts, strings.Join(o.hashtags, " #"))
	} else {
		b.WriteString("Posting nothing (-rate 0 or no -hashtags).\n")
	}
	fmt.Fprintf(&b, "Control page (revoke a user, lose a token answer, rate limits, usage cap): %s%s (its actions are logged on stderr)\n",
		sb.URL(), xsandbox.ControlPath)
	b.WriteString("Stop with Ctrl-C.\n")
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		return err
	}
	if ready != nil {
		ready(sb)
	}
	<-ctx.Done()
	sb.Close()
	if genWait != nil {
		genWait()
	}
	fmt.Fprintln(stdout, "X sandbox stopped.")
	return nil
}
