package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// Channel kinds, the first part of every target URL.
const (
	KindWebhook  = "webhook"  // https://... (http:// on loopback for development)
	KindEmail    = "email"    // mailto:someone@example.com
	KindShoutrrr = "shoutrrr" // ntfy://, gotify://, slack://, telegram://, ...
	KindConsole  = "console"  // console:
)

var (
	// ErrTargetGone means the target said it is gone for good (HTTP 410):
	// the target is disabled and its rows are dropped.
	ErrTargetGone = errors.New("notify: target is gone")
	// ErrPrivateAddress means a target resolved to a loopback, private,
	// link-local or otherwise non-public address and the operator has not
	// allowed such targets.
	ErrPrivateAddress = errors.New("notify: target address is not public")
	// ErrNoChannel means no channel is configured for the target's kind
	// (mail without [notify.smtp], a webhook URL without a signing secret).
	ErrNoChannel = errors.New("notify: no channel configured for target")
	// ErrNotFound means no outbox row has the given id.
	ErrNotFound = errors.New("notify: no such notification")
	// ErrNotDead means Replay was asked for a row that is not a dead letter.
	ErrNotDead = errors.New("notify: notification is not a dead letter")
)

// SendError is a failed delivery the target answered: its HTTP status (0
// when there was none) and how long it asked us to wait (Retry-After).
type SendError struct {
	Status     int
	RetryAfter time.Duration
	Err        error
}

func (e *SendError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("status %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

func (e *SendError) Unwrap() error { return e.Err }

// Message is what a channel sends: one outbox row, decoded, with the links
// it carries. It holds a secret (the consent link) only in Consent.
type Message struct {
	// ID is the outbox row's id: the webhook-id, the Message-ID, the same
	// on every retry.
	ID     string
	Target string
	Notice vault.Notice
	// Consent is the one-time consent link of a reconsent_needed notice,
	// opened from the row at send time. Never log it.
	Consent secret.Value
	// PauseURL and RevokeURL are signed one-click links; empty when the
	// notice has no watch (pause) or no provider (revoke).
	PauseURL  string
	RevokeURL string
	// Attempt counts from 1.
	Attempt int
}

// Channel delivers messages to one kind of target. Send returns nil only
// once the target accepted the message; a *SendError or any other error
// is retried, except ErrTargetGone, which disables the target.
// Implementations are safe for concurrent use.
type Channel interface {
	Send(ctx context.Context, m *Message) error
}

// shoutrrrSchemes are the notification URL schemes passed to shoutrrr. The
// value says whether the URL's host is a server the user chose (checked
// against private addresses before each send) rather than a vendor's
// fixed endpoint, where the host part carries a token or a channel.
// Services whose library code uses a client without a timeout (generic,
// opsgenie, notifiarr, googlechat, ifttt, join) are left out: a hung send
// would leak a goroutine nobody owns. Webhooks cover "generic" better.
var shoutrrrSchemes = map[string]bool{
	"ntfy": true, "gotify": true, "matrix": true, "mattermost": true, "rocketchat": true,
	"zulip": true, "signal": true, "smtp": true, "bark": true,
	"discord": false, "slack": false, "telegram": false, "teams": false, "pushover": false,
	"pushbullet": false, "lark": false, "wecom": false, "pagerduty": false,
}

// TargetKind returns the channel kind a target URL is for, or an error
// when the target is not a valid notification URL. It does not look at
// configuration; Service.ValidateTarget does.
func TargetKind(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty target")
	}
	if len(raw) > 2048 {
		return "", errors.New("target is longer than 2048 bytes")
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("target contains control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("target is not a URL")
	}
	switch u.Scheme {
	case "console":
		return KindConsole, nil
	case "mailto":
		if u.Opaque == "" || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("mailto target must be a single address without headers, like mailto:someone@example.com")
		}
		addr, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return "", fmt.Errorf("mailto target: bad escape")
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Name != "" || strings.ContainsAny(addr, ",;") {
			return "", fmt.Errorf("mailto target must name one address, got %q", TargetLabel(raw))
		}
		return KindEmail, nil
	case "https", "http":
		if u.Host == "" || u.Opaque != "" {
			return "", fmt.Errorf("webhook target must be an absolute URL")
		}
		if u.User != nil {
			return "", fmt.Errorf("webhook target must not carry credentials")
		}
		if u.Fragment != "" {
			return "", fmt.Errorf("webhook target must not have a fragment")
		}
		if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("webhook target must be https (http only on loopback), got %q", TargetLabel(raw))
		}
		return KindWebhook, nil
	}
	if _, ok := shoutrrrSchemes[u.Scheme]; ok {
		if err := checkShoutrrrURL(raw); err != nil {
			return "", err
		}
		return KindShoutrrr, nil
	}
	return "", fmt.Errorf("target scheme %q is not supported (https webhooks, mailto:, console:, or a notification URL such as ntfy:// or slack://)", u.Scheme)
}

// ValidateTarget reports whether raw is a notification target tagwatch can
// deliver to, looking at its syntax only. Call it when a watch is created;
// Service.ValidateTarget also checks that the configuration can serve it.
// The error never repeats a secret the URL may carry.
func ValidateTarget(raw string) error {
	_, err := TargetKind(raw)
	return err
}

// TargetLabel renders a target for logs, status and pages without the
// secrets notification URLs often carry in their user, path or query:
// "ntfy://ntfy.example.com/…" or "mailto:a***@example.com".
func TargetLabel(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "invalid-target"
	}
	switch u.Scheme {
	case "console":
		return "console:"
	case "mailto":
		local, domain, ok := strings.Cut(u.Opaque, "@")
		if !ok || local == "" {
			return "mailto:***"
		}
		return "mailto:" + local[:1] + "***@" + domain
	case "https", "http":
		s := u.Scheme + "://" + u.Host + u.EscapedPath()
		if u.RawQuery != "" {
			s += "?…"
		}
		return s
	}
	if b := shoutrrrSchemes[u.Scheme]; b {
		return u.Scheme + "://" + u.Hostname() + "/…"
	}
	return u.Scheme + "://…"
}

// TargetKey is a short stable key for a target: its label plus a hash of
// the full URL, so two targets that share a label stay apart in status.
func TargetKey(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return TargetLabel(raw) + " #" + hex.EncodeToString(h[:4])
}

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
