package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// shoutrrrChannel sends to notification URLs (ntfy://, slack://, ...) with
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

// checkShoutrrrURL parses a notification URL the way the library will.
func checkShoutrrrURL(raw string) error {
	r, err := router.New(nil)
	if err != nil {
		return errors.New("notification URL: library setup failed")
	}
	if _, err := r.Locate(raw); err != nil {
		u, _ := url.Parse(raw)
		scheme := ""
		if u != nil {
			scheme = u.Scheme
		}
		return fmt.Errorf("notification URL for %s is not valid: %s", scheme, redactTarget(err.Error(), raw))
	}
	return nil
}

func (s *shoutrrrChannel) Send(ctx context.Context, m *Message) error {
	u, err := url.Parse(m.Target)
	if err != nil {
		return errors.New("bad notification URL")
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
	rt, err := router.New(nil)
	if err != nil {
		return errors.New("notification library setup failed")
	}
	svc, err := rt.Locate(m.Target)
	if err != nil {
		return fmt.Errorf("notification URL: %s", redactTarget(err.Error(), m.Target))
	}
	text := r.Subject + "\n\n" + r.Text
	done := make(chan error, 1) // buffered: a late answer never blocks the sender
	go func() { done <- svc.Send(text, &types.Params{}) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %s", u.Scheme, redactTarget(err.Error(), m.Target))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: timeout: %w", u.Scheme, context.DeadlineExceeded)
	}
}

// redactTarget removes from msg every part of the notification URL raw
// that may be a secret: the whole URL, its user and password, its path
// segments and query values (tokens live in all of these).
func redactTarget(msg, raw string) string {
	parts := []string{raw}
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			parts = append(parts, u.User.Username())
			if p, ok := u.User.Password(); ok {
				parts = append(parts, p)
			}
		}
		parts = append(parts, u.Host)
		parts = append(parts, strings.Split(u.Path, "/")...)
		for _, vs := range u.Query() {
			parts = append(parts, vs...)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return len(parts[i]) > len(parts[j]) })
	for _, p := range parts {
		if len(p) >= 6 {
			msg = strings.ReplaceAll(msg, p, "REDACTED")
			msg = strings.ReplaceAll(msg, url.PathEscape(p), "REDACTED")
		}
	}
	return clean(msg)
}
