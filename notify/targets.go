package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// A target is where a watch's notifications go, written as a URL:
//
//	console:                              the daemon's output (demo, debugging)
//	mailto:someone@example.com            mail through [notify.smtp]
//	https://hooks.example.com/...         a Standard Webhooks endpoint with a signing secret
//	ntfy://ntfy.example/topic, slack://…  a chat service, sent with shoutrrr (shoutrrrSchemes)
//
// Every door that accepts a target (the status socket, the offline
// subcommands, the consent links, the configuration check) checks it with
// CheckTarget, which is the code the notifier delivers with: a target it
// accepts is one the notifier can send to. Every place that shows or logs
// a target does it with TargetLabel.

// TargetLabel is how a target is shown and logged everywhere: never a
// secret, enough to tell targets apart.
//
//   - http(s): scheme, host and a fingerprint, "https://hooks.example.com/…#1a2b3c4d".
//     The path, query and user part are never shown: incoming-webhook URLs
//     keep their credential in the path.
//   - chat URLs of a server the user chose (ntfy, gotify, matrix, ...): the
//     same shape, "ntfy://ntfy.example/…#1a2b3c4d".
//   - chat URLs of a vendor (slack, discord, telegram, ...), whose host
//     part is a token or a channel: scheme and fingerprint, "slack://…#1a2b3c4d".
//   - mailto: the first letter of the address and its domain,
//     "mailto:a***@example.com".
//   - console: as is, "console:".
//
// The fingerprint is the first 4 bytes of the SHA-256 of the whole target,
// in hex: stable, and different for targets that differ anywhere. A target
// that is not a URL is "invalid-target#" and its fingerprint.
func TargetLabel(raw string) string {
	fp := fingerprint(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "invalid-target#" + fp
	}
	switch u.Scheme {
	case "console":
		return "console:"
	case "mailto":
		addr, err := url.PathUnescape(u.Opaque)
		if err != nil {
			addr = u.Opaque
		}
		local, domain, ok := strings.Cut(addr, "@")
		if !ok || local == "" || domain == "" {
			return "mailto:***"
		}
		first, _ := firstRune(local)
		return "mailto:" + clean(first) + "***@" + clean(domain)
	case "https", "http":
		return u.Scheme + "://" + clean(u.Host) + "/…#" + fp
	}
	if shoutrrrSchemes[u.Scheme] {
		return u.Scheme + "://" + clean(u.Host) + "/…#" + fp
	}
	return clean(u.Scheme) + "://…#" + fp
}

func fingerprint(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:4])
}

func firstRune(s string) (string, int) {
	for i, r := range s {
		if i == 0 {
			return string(r), len(string(r))
		}
	}
	return "", 0
}

// TargetError says why a target is refused. Its message names the target
// once, by its TargetLabel, and never repeats a secret the target carries:
// `target https://hooks.example.com/…#1a2b3c4d: has no signing secret: ...`.
// Callers add what they were doing, not the target again.
type TargetError struct {
	// Label is the target's TargetLabel.
	Label string
	// Err says what is wrong; errors.Is(err, ErrPrivateAddress) and the
	// like see through.
	Err error
}

func (e *TargetError) Error() string { return "target " + e.Label + ": " + e.Err.Error() }

// Unwrap returns what is wrong.
func (e *TargetError) Unwrap() error { return e.Err }

func targetErr(raw string, err error) error {
	label := TargetLabel(raw)
	if raw == "" {
		label = `""`
	}
	return &TargetError{Label: label, Err: err}
}

// Target syntax errors, wrapped in a *TargetError.
var (
	errEmptyTarget = errors.New("is empty")
	errNoSecret    = errors.New("has no signing secret: the operator must add it to [[notify.webhook]]")
	errNoSMTP      = errors.New("needs [notify.smtp] to be configured for mail")
)

// targetKind returns the channel kind of a target, or why it is not a
// valid target; the error does not name the target (the caller wraps it
// in a *TargetError). It looks at syntax only: for chat URLs, with the
// configuration parser of the shoutrrr service that will send it.
func targetKind(raw string) (string, error) {
	if raw == "" {
		return "", errEmptyTarget
	}
	if len(raw) > 2048 {
		return "", errors.New("is longer than 2048 bytes")
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("contains control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", errors.New("is not a URL (console:, mailto:ADDRESS, an https webhook or a chat URL such as ntfy:// or slack://)")
	}
	switch u.Scheme {
	case "console":
		if raw != "console:" {
			return "", errors.New(`must be exactly "console:"`)
		}
		return KindConsole, nil
	case "mailto":
		if u.Opaque == "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			return "", errors.New("must be a single address without headers, like mailto:someone@example.com")
		}
		addr, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return "", errors.New("has a bad %-escape")
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Name != "" || a.Address != addr {
			return "", errors.New("must name one address without a display name, like mailto:someone@example.com")
		}
		return KindEmail, nil
	case "https", "http":
		switch {
		case u.Host == "" || u.Opaque != "":
			return "", errors.New("must be an absolute URL")
		case u.User != nil:
			return "", errors.New("must not carry credentials in its user part")
		case u.Fragment != "":
			return "", errors.New("must not have a fragment")
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			return "", errors.New("must be https (http only on loopback)")
		}
		return KindWebhook, nil
	}
	if _, ok := shoutrrrSchemes[u.Scheme]; ok {
		if err := checkShoutrrrURL(raw); err != nil {
			return "", err
		}
		return KindShoutrrr, nil
	}
	return "", fmt.Errorf("scheme %q is not supported (console:, mailto:, https webhooks, or a chat URL: %s)",
		clip(u.Scheme, 32), strings.Join(slices.Sorted(maps.Keys(shoutrrrSchemes)), ", "))
}

// checkTarget reports whether the channels of set can deliver to raw:
// its syntax (targetKind), and that the configuration serves it: a webhook
// URL needs a signing secret in [[notify.webhook]], mailto: needs
// [notify.smtp], and a literal non-public address needs
// allow_private_targets. Errors are *TargetError.
func (set *channelSet) checkTarget(raw string) error {
	kind, err := targetKind(raw)
	if err != nil {
		return targetErr(raw, err)
	}
	switch kind {
	case KindWebhook:
		if !set.web.hasSecret(raw) {
			return targetErr(raw, errNoSecret)
		}
	case KindEmail:
		if !set.hasMail {
			return targetErr(raw, errNoSMTP)
		}
	}
	if kind == KindWebhook || (kind == KindShoutrrr && shoutrrrSchemes[schemeOf(raw)]) {
		u, _ := url.Parse(raw)
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !publicAddr(a) && !set.cc.AllowPrivateTargets {
			return targetErr(raw, fmt.Errorf("%w (allow_private_targets is off)", ErrPrivateAddress))
		}
	}
	return nil
}

func schemeOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// TargetChecker checks targets against one configuration of the channels
// without a running Service: for the doors that work on a stopped daemon's
// vault (offline subcommands, the configuration check). It applies the
// same code as Service.CheckTarget. Safe for concurrent use.
type TargetChecker struct {
	set *channelSet
}

// NewTargetChecker builds the channels of cc, as New and Reconfigure do,
// without sending anything: a webhook secret too short or an SMTP setting
// that does not build is an error here as it is at start.
func NewTargetChecker(cc ChannelsConfig) (*TargetChecker, error) {
	set, err := buildChannels(cc, channelEnv{now: time.Now, resolver: net.DefaultResolver, console: &console{w: io.Discard}})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	return &TargetChecker{set: set}, nil
}

// CheckTarget reports whether a notifier with the checker's configuration
// can deliver to raw (see Service.CheckTarget). Errors are *TargetError.
func (c *TargetChecker) CheckTarget(raw string) error { return c.set.checkTarget(raw) }

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// mailAddress returns the address of a mailto: target.
func mailAddress(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	addr, err := url.PathUnescape(u.Opaque)
	if err != nil {
		return "", err
	}
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

// publicAddr reports whether ip is a public unicast address: not
// loopback, private (RFC 1918, fc00::/7), link-local, shared (100.64/10),
// unspecified, multicast or documentation space.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// checkResolved resolves host and refuses it when any of its addresses is
// not public. It is the pre-send check for channels whose libraries do not
// let us vet the address they connect to.
func checkResolved(ctx context.Context, r *net.Resolver, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(a) {
			return ErrPrivateAddress
		}
		return nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return ErrPrivateAddress
		}
	}
	return nil
}
