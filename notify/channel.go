package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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

// Errors of a send. Their text is recorded as a row's LastError and reads
// after a target's label, so it neither names the target nor says
// "notify:".
var (
	// ErrTargetGone means the target said it is gone for good (HTTP 410):
	// the target is disabled and its rows are dropped.
	ErrTargetGone = errors.New("the target is gone for good")
	// ErrPrivateAddress means a target resolved to a loopback, private,
	// link-local or otherwise non-public address and the operator has not
	// allowed such targets.
	ErrPrivateAddress = errors.New("the address is not public")
	// ErrNoChannel means no channel is configured for the target's kind
	// (mail without [notify.smtp], a webhook URL without a signing secret).
	ErrNoChannel = errors.New("no channel is configured for the target")
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

// PermanentError is a failure that no retry can change: the message or
// its target can never be sent as it is (the target does not parse, names
// a service tagwatch does not send to, or the library refuses the message
// or its configuration before sending anything; a receiver that says the
// body is too large). The row becomes a dead letter at once, with the
// reason as its LastError, instead of being retried for RetrySpan.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return "cannot be sent as it is: " + e.Err.Error() }

// Unwrap returns the reason.
func (e *PermanentError) Unwrap() error { return e.Err }

// permanent marks err as a *PermanentError (once).
func permanent(err error) error {
	var pe *PermanentError
	if err == nil || errors.As(err, &pe) {
		return err
	}
	return &PermanentError{Err: err}
}

// progress is how much of a notification sent as several chat messages
// has been delivered: Parts of Total messages, carrying its first Posts
// posts. The outbox row keeps it (vault.OutboxRow.Progress) so the next
// attempt, or an operator's replay, sends only the rest.
type progress = vault.OutboxProgress

// partialError is a failed attempt after some messages of the row were
// delivered. decide records its progress with the row's outcome. A
// message accepted just before a crash or a timeout, before its progress
// was recorded, is sent again (at least once, as a row is).
type partialError struct {
	progress
	Err error
}

func (e *partialError) Error() string {
	return fmt.Sprintf("%d of %d messages delivered (%d posts); %v", e.Parts, e.Total, e.Posts, e.Err)
}

func (e *partialError) Unwrap() error { return e.Err }

// rowProgress is the progress a row records, for a notification of posts
// posts; a progress that does not fit the row (a payload changed under
// it) is no progress: every message is sent.
func rowProgress(r vault.OutboxRow, posts int) progress {
	if p := r.Progress; p.Partial() && p.Posts <= posts {
		return p
	}
	return progress{}
}

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
	// notice has no watch (pause), or no provider or no access to revoke
	// (revoke: not in access_revoked and reconsent_needed notices).
	PauseURL  string
	RevokeURL string
	// AccountURL is the user's own page (Config.AccountURL), "" when the
	// daemon serves none.
	AccountURL string
	// Attempt counts from 1.
	Attempt int
	// Delivered is what earlier attempts delivered of a notification sent
	// as several chat messages; its next attempt sends the rest.
	Delivered progress
}

// Channel delivers messages to one kind of target. Send returns nil only
// once the target accepted the message; a *SendError or any other error
// is retried, except ErrTargetGone, which disables the target, and a
// *PermanentError, which makes the row a dead letter at once.
// Implementations are safe for concurrent use.
type Channel interface {
	Send(ctx context.Context, m *Message) error
}

// ChannelsConfig is the channels, their secrets and the retry policy: the
// part of a Config that Reconfigure replaces while the Service runs, and
// what NewTargetChecker checks targets against. The zero value of each
// field is its default.
type ChannelsConfig struct {
	// RetrySpan is how long a failing row is retried before it becomes a
	// dead letter; default 72h.
	RetrySpan time.Duration
	// BaseDelay is the first retry's delay, doubling each time; default 30s.
	BaseDelay time.Duration
	// MaxDelay caps one delay; default RetrySpan/6.
	MaxDelay time.Duration
	// PruneAfter is how long delivered (and dropped) rows are kept; default 168h.
	PruneAfter time.Duration
	// MaxBacklog is how many undelivered rows one target may hold; newer
	// rows beyond it are dropped with an operator alert. Default 10000.
	MaxBacklog int
	// PerTargetConcurrency bounds sends in flight to one target; default 4.
	PerTargetConcurrency int
	// Timeout bounds one send (webhook request, SMTP session, ...); default 20s.
	Timeout time.Duration
	// AllowPrivateTargets lets targets reach loopback, private and
	// link-local addresses.
	AllowPrivateTargets bool
	// Webhooks are the signing secrets of the webhook URLs users may name.
	Webhooks []WebhookSecret
	// SMTP configures mailto: targets; an empty Host disables them.
	SMTP SMTPConfig
}

// withDefaults fills in the documented defaults.
func (c ChannelsConfig) withDefaults() ChannelsConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetrySpan, 72*time.Hour)
	def(&c.BaseDelay, 30*time.Second)
	// A span under 6ns would give a zero cap and retries that never add
	// up to the span: cap at the span itself then.
	def(&c.MaxDelay, cmp.Or(c.RetrySpan/6, c.RetrySpan))
	def(&c.PruneAfter, 168*time.Hour)
	def(&c.Timeout, 20*time.Second)
	if c.MaxBacklog <= 0 {
		c.MaxBacklog = 10000
	}
	if c.PerTargetConcurrency <= 0 {
		c.PerTargetConcurrency = 4
	}
	c.Webhooks = slices.Clone(c.Webhooks)
	return c
}

// channelSet is what Reconfigure swaps as a whole: the channels built from
// one ChannelsConfig. It is never changed once published.
type channelSet struct {
	cc       ChannelsConfig // with defaults
	channels map[string]Channel
	web      *webhook
	hasMail  bool
}

// channelEnv is what the channels take from the Service rather than from
// a ChannelsConfig.
type channelEnv struct {
	now         func() time.Time
	resolver    *net.Resolver
	console     *console
	telegramAPI string // Config.telegramAPI
}

// buildChannels builds the channels of cc. It sends nothing; it reads
// only the SMTP CA file, when one is named. Errors name the setting.
func buildChannels(cc ChannelsConfig, env channelEnv) (*channelSet, error) {
	cc = cc.withDefaults()
	set := &channelSet{cc: cc, channels: map[string]Channel{}}
	var err error
	if set.web, err = newWebhook(cc.Webhooks, cc.Timeout, cc.AllowPrivateTargets, env.now); err != nil {
		return nil, err
	}
	set.channels[KindWebhook] = set.web
	if cc.SMTP.Host != "" {
		e, err := newEmail(cc.SMTP, cc.Timeout, env.now)
		if err != nil {
			return nil, err
		}
		set.channels[KindEmail] = e
		set.hasMail = true
	}
	set.channels[KindShoutrrr] = &shoutrrrChannel{allowPrivate: cc.AllowPrivateTargets, resolver: env.resolver,
		timeout: cc.Timeout, telegramAPI: env.telegramAPI}
	set.channels[KindConsole] = env.console
	return set, nil
}
