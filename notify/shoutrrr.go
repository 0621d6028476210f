package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/nicholas-fedor/shoutrrr/pkg/format"
	"github.com/nicholas-fedor/shoutrrr/pkg/router"
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
}

// checkShoutrrrURL parses a chat URL with the configuration parser of the
// shoutrrr service that will send it: the same parsing Send's Locate does,
// without the network (matrix logs in when its service is initialised, so
// the service itself is not initialised here). The library is outside
// code run on outside input: a panic in it is a refusal, not a crash.
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
	if err := format.GetServiceConfig(svc).SetURL(u); err != nil {
		return fmt.Errorf("is not a valid %s URL: %s", u.Scheme, redactTarget(err.Error(), raw))
	}
	return nil
}

func (s *shoutrrrChannel) Send(ctx context.Context, m *Message) error {
	u, err := url.Parse(m.Target)
	if err != nil {
		return errors.New("bad chat URL")
	}
	if custom := shoutrrrSchemes[u.Scheme]; custom && !s.allowPrivate {
		if err := checkResolved(ctx, s.resolver, u.Hostname()); err != nil {
			return err
		}
	}
	r, err := render(m)
	if err != nil {
		return err
	}
	text := r.Subject + "\n\n" + r.Text
	// The library takes no context. Locating the service may already talk
	// to the server (matrix logs in), so both run here, bounded by ctx;
	// the library's own client timeouts end the goroutine after a timeout.
	done := make(chan error, 1) // buffered: a late answer never blocks the sender
	go func() {
		rt, err := router.New(nil)
		if err != nil {
			done <- errors.New("chat library setup failed")
			return
		}
		svc, err := rt.Locate(m.Target)
		if err != nil {
			done <- fmt.Errorf("chat URL: %s", redactTarget(err.Error(), m.Target))
			return
		}
		if err := svc.Send(text, &types.Params{}); err != nil {
			done <- errors.New(redactTarget(err.Error(), m.Target))
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", u.Scheme, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: timeout: %w", u.Scheme, context.DeadlineExceeded)
	}
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
