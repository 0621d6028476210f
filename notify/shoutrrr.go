package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nicholas-fedor/shoutrrr/pkg/format"
	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/discord"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/lark"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/signal"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/teams"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/telegram"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/wecom"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/zulip"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/gotify"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/pushover"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// shoutrrrSchemes are the chat URL schemes passed to shoutrrr
// (github.com/nicholas-fedor/shoutrrr). The value says whether the URL's
// host is a server the user chose (checked against private addresses
// before each send, and shown in TargetLabel) rather than a vendor's fixed
// endpoint, where the host part carries a token or a channel.
// Services whose library code uses a client without a timeout (generic,
// opsgenie, notifiarr, googlechat, ifttt, join) are left out: a hung send
// would leak a goroutine nobody owns. Webhooks cover "generic" better.
// Three allowed ones have no timeout of their own either (zulip and bark
// use http.DefaultClient, signal a client without one): their sends are
// bounded by ChannelsConfig.Timeout, but a hung one's goroutine lingers.
// Telegram is sent by tagwatch's own client (telegram.go).
var shoutrrrSchemes = map[string]bool{
	"ntfy": true, "gotify": true, "matrix": true, "mattermost": true, "rocketchat": true,
	"zulip": true, "signal": true, "smtp": true, "bark": true,
	"discord": false, "slack": false, "telegram": false, "teams": false, "pushover": false,
	"pushbullet": false, "lark": false, "wecom": false, "pagerduty": false,
}

// shoutrrrChannel sends to chat URLs (ntfy://, slack://, ...) with
// github.com/nicholas-fedor/shoutrrr, the maintained fork of
// containrrr/shoutrrr (which has had no release since 2022).
//
// The library dials on its own, so the private-address guard cannot run at
// connect time here: for schemes whose host is a server the user chose,
// the host is resolved and checked just before each send (a DNS rebinding
// window remains; operators who need the strict guard offer webhooks).
type shoutrrrChannel struct {
	allowPrivate bool
	resolver     *net.Resolver
	timeout      time.Duration // of one request, where tagwatch makes it (Telegram)
	telegramAPI  string        // Telegram's Bot API; "" is telegramAPI
}

// checkShoutrrrURL parses a chat URL with the configuration parser of the
// shoutrrr service that will send it: the same parsing Send's Locate does,
// without the network (matrix logs in when its service is initialised, so
// the service itself is not initialised here), then applies the checks the
// library makes only when it sends (checkSendConfig). The library is
// outside code run on outside input: a panic in it is a refusal, not a
// crash.
func checkShoutrrrURL(raw string) (err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("is not a valid %s URL", u.Scheme)
		}
	}()
	rt, err := router.New(nil)
	if err != nil {
		return errors.New("chat library setup failed")
	}
	svc, err := rt.NewService(u.Scheme)
	if err != nil {
		return fmt.Errorf("scheme %q is not supported", u.Scheme)
	}
	cfg := format.GetServiceConfig(svc)
	if err := cfg.SetURL(u); err != nil {
		return fmt.Errorf("is not a valid %s URL: %s", u.Scheme, redactTarget(err.Error(), raw))
	}
	if err := checkSendConfig(cfg); err != nil {
		return fmt.Errorf("is not a valid %s URL: %s", u.Scheme, redactTarget(err.Error(), raw))
	}
	return nil
}

// zulipHost is the host rule zulip.go applies when it sends (hostValidator).
var zulipHost = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,}$`)

// checkSendConfig makes the checks that the library makes of a URL's
// configuration only when it sends, and the limits a service sets on the
// parts of a URL tagwatch does not write (titles): a URL that breaks them
// could never be sent, so it is refused when the target is checked, and a
// row that carries one (stored before the rule) is a dead letter at once.
func checkSendConfig(cfg types.ServiceConfig) error {
	switch c := cfg.(type) {
	case *zulip.Config:
		if !zulipHost.MatchString(c.Host) {
			return fmt.Errorf("%w: the library sends only to a host name with a domain, not %q", zulip.ErrInvalidHost, c.Host)
		}
		if n := utf8.RuneCountInString(c.Topic); n > 60 {
			return fmt.Errorf("%w: %d characters, at most 60", zulip.ErrTopicTooLong, n)
		}
	case *lark.Config:
		if c.Host != "open.larksuite.com" && c.Host != "open.feishu.cn" {
			return lark.ErrInvalidHost
		}
		if c.Path == "" {
			return lark.ErrNoPath
		}
	case *wecom.Config:
		if c.Key == "" {
			return wecom.ErrKeyRequired
		}
	case *teams.Config:
		if c.Host == "" {
			return teams.ErrMissingHost
		}
		if err := teams.ValidateWebhookURL(teams.BuildWebhookURL(c.Host, c.Group, c.Tenant, c.AltID, c.GroupOwner, c.ExtraID)); err != nil {
			return err
		}
	case *pushover.Config:
		if n := utf8.RuneCountInString(c.Title); n > 250 {
			return fmt.Errorf("title is %d characters, Pushover takes at most 250", n)
		}
	case *discord.Config:
		if n := unitUTF16.measure(c.Title); n > 256 {
			return fmt.Errorf("title is %d characters, a Discord embed title takes at most 256", n)
		}
	case *telegram.Config:
		// The title is sent in every message (limits.go): keep most of
		// the message for the posts.
		if n := unitUTF16.measure(c.Title); n > 1024 {
			return fmt.Errorf("title is %d characters, tagwatch allows at most 1024 (Telegram's whole message is 4096)", n)
		}
	}
	return nil
}

// sendParams are the parameters each message is sent with through the
// library, which keep tagwatch's plain text as it is: Discord's library
// sends it as one message rather than one embed per line (its splitLines
// drops or repeats lines of longer texts). (Telegram, sent by telegram.go,
// always gets plain text, whatever parsemode the URL names.)
var sendParams = map[string]types.Params{
	"discord": {"splitlines": "No"},
}

// localRefusals are the library's errors for a message or configuration
// it refuses before any request: no retry can change the answer.
var localRefusals = []error{
	telegram.ErrMessageTooLong,
	zulip.ErrMessageTooLong, zulip.ErrTopicTooLong, zulip.ErrInvalidHost,
	lark.ErrLargeMessage, lark.ErrInvalidHost, lark.ErrNoPath, lark.ErrMissingHost,
	wecom.ErrLargeMessage, wecom.ErrKeyRequired,
	teams.ErrMissingHost, teams.ErrInvalidWebhookURL, teams.ErrInvalidHostFormat, teams.ErrInvalidWebhookComponents,
	teams.ErrInvalidPartLength, teams.ErrMissingExtraID,
	discord.ErrEmptyMessage, discord.ErrInvalidURLPrefix, discord.ErrInvalidScheme, discord.ErrInvalidHost,
	discord.ErrEmptyURL, discord.ErrMalformedURL,
	gotify.ErrEmptyMessage, gotify.ErrInvalidToken, gotify.ErrServiceNotInitialized,
	signal.ErrNoRecipients,
}

func isLocalRefusal(err error) bool {
	for _, r := range localRefusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// Send renders m into messages that fit the target's service (renderChat)
// and sends them in order. When one fails, the error says how many went
// before it (a *partialError), and the next attempt of the row sends the
// rest only: the outbox row is one notification, its messages are sent
// once each. Refusals that no retry can change (the URL does not parse,
// the library refuses the message or its configuration before sending)
// are *PermanentError.
func (s *shoutrrrChannel) Send(ctx context.Context, m *Message) error {
	u, err := url.Parse(m.Target)
	if err != nil {
		return permanent(errors.New("bad chat URL"))
	}
	if err := checkShoutrrrURL(m.Target); err != nil {
		return permanent(fmt.Errorf("chat URL %w", err))
	}
	if custom := shoutrrrSchemes[u.Scheme]; custom && !s.allowPrivate {
		if err := checkResolved(ctx, s.resolver, u.Hostname()); err != nil {
			return err
		}
	}
	b, ok := chatBudget(m.Target)
	if !ok {
		return permanent(fmt.Errorf("%s: no message limit is known for this service", u.Scheme))
	}
	parts, err := renderChat(m, b, m.Delivered)
	if err != nil {
		return permanent(err)
	}
	for i, p := range parts {
		if !b.fits(p.Text) {
			// renderChat cuts to fit; this is the guard that nothing the
			// library or the service would refuse goes out.
			return permanent(fmt.Errorf("%s: message %d is %s", u.Scheme, m.Delivered.Parts+i+1, b.over(p.Text)))
		}
	}
	params := types.Params{}
	maps.Copy(params, sendParams[u.Scheme])

	// The library takes no context. Locating the service may already talk
	// to the server (matrix logs in), so both run here, bounded by ctx;
	// the library's own client timeouts end the goroutine after a timeout.
	// The goroutine reports each message sent; it sends no message after
	// Send has returned.
	results := make(chan error, len(parts)+1) // buffered: a late answer never blocks the sender
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		err := callLibrary(m.Target, func() error {
			send, err := s.sender(ctx, m.Target, params)
			if err != nil {
				return err
			}
			for _, p := range parts {
				select {
				case <-stop:
					return nil
				default:
				}
				if err := send(p.Text); err != nil {
					return err
				}
				results <- nil
			}
			return nil
		})
		if err != nil {
			results <- err
		}
	}()
	done := m.Delivered
	done.Total = m.Delivered.Parts + len(parts)
	fail := func(err error) error {
		err = fmt.Errorf("%s: %w", u.Scheme, err)
		if done.Parts > 0 {
			return &partialError{progress: done, Err: err}
		}
		return err
	}
	for i := 0; i < len(parts); i++ {
		select {
		case err := <-results:
			if err != nil {
				return fail(err)
			}
			done.Parts++
			done.Posts += parts[i].Posts
		case <-ctx.Done():
			return fail(fmt.Errorf("timeout: %w", context.DeadlineExceeded))
		}
	}
	return nil
}

// sender returns the function that sends one message to target: the
// library's service, located (matrix logs in here), or for Telegram
// tagwatch's own client (telegram.go). Its errors are redacted, and
// *PermanentError when the library refused the message or its
// configuration before any request.
func (s *shoutrrrChannel) sender(ctx context.Context, target string, params types.Params) (func(string) error, error) {
	if schemeOf(target) == "telegram" {
		bot, err := newTelegramBot(target, cmp.Or(s.telegramAPI, telegramAPI), s.timeout)
		if err != nil {
			return nil, err
		}
		return func(text string) error { return bot.send(ctx, text) }, nil
	}
	rt, err := router.New(nil)
	if err != nil {
		return nil, errors.New("chat library setup failed")
	}
	svc, err := rt.Locate(target)
	if err != nil {
		return nil, fmt.Errorf("chat URL: %s", redactTarget(err.Error(), target))
	}
	return func(text string) error {
		if err := svc.Send(text, &params); err != nil {
			msg := errors.New(redactTarget(err.Error(), target))
			if isLocalRefusal(err) {
				return permanent(msg)
			}
			return msg
		}
		return nil
	}, nil
}

// callLibrary runs fn, which calls the chat library, and turns a panic in
// it into an error: the library is outside code, and some of its services
// panic on a failed request (zulip closes the body of a response it did
// not get).
func callLibrary(target string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("chat library failed: %s", redactTarget(fmt.Sprint(p), target))
		}
	}()
	return fn()
}

// minSecretPart is the length from which a part of a target is taken for
// a secret in redactTarget: tokens are longer, and shorter parts are
// mostly words the library's own message uses too ("slack", "token").
const minSecretPart = 6

// redactTarget makes msg, a message from the chat library about the
// target raw, safe to log and store: the target itself becomes its
// TargetLabel, and every other part of it that may be a secret (its user
// and password, the host of a vendor's URL, path segments, query values,
// and the pieces of each that libraries rebuild other URLs from) becomes
// "…". Control characters are removed.
func redactTarget(msg, raw string) string {
	const mark = "\x00\x01\x00" // no part of a URL can match it
	msg = strings.ReplaceAll(msg, raw, mark)
	var parts []string
	add := func(p string) {
		for _, q := range []string{p, url.PathEscape(p), url.QueryEscape(p)} {
			if len(q) >= minSecretPart && !slices.Contains(parts, q) {
				parts = append(parts, q)
			}
		}
		for _, piece := range strings.FieldsFunc(p, func(r rune) bool { return strings.ContainsRune(":-/,@", r) }) {
			if len(piece) >= minSecretPart && !slices.Contains(parts, piece) {
				parts = append(parts, piece)
			}
		}
	}
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			add(u.User.Username())
			if p, ok := u.User.Password(); ok {
				add(p)
			}
			add(u.User.String())
		}
		if !shoutrrrSchemes[u.Scheme] {
			add(u.Host)
		}
		add(u.Opaque)
		add(u.Path)
		for _, seg := range strings.Split(u.Path, "/") {
			add(seg)
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
		add(u.RawQuery)
		add(u.Fragment)
	}
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	for _, p := range parts {
		msg = strings.ReplaceAll(msg, p, "…")
	}
	return clean(strings.ReplaceAll(msg, mark, TargetLabel(raw)))
}
