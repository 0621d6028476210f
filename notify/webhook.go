package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tagwatch/vault/httpsec"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// WebhookSecret is the signing secret of one webhook target URL. Secret
// (and Previous, during a rotation) is either Standard Webhooks' "whsec_"
// followed by base64, or the raw secret; either way at least 24 bytes.
type WebhookSecret struct {
	URL      string
	Secret   secret.Value
	Previous secret.Value
}

// WebhookBody is the JSON body of every webhook delivery (Content-Type
// application/json), in Standard Webhooks' shape:
//
//	{
//	  "type": "match",                       // match | enrolled | reconsent_needed | access_revoked | target_disabled
//	  "timestamp": "2026-01-02T15:04:05Z",   // when the event happened (RFC 3339)
//	  "data": {
//	    "id": "9f2c…",                       // the delivery id, also the webhook-id header
//	    "user_id": "u1", "watch_id": "w1", "provider": "x",
//	    "hashtags": ["golang"],
//	    "posts": [{"id": "1869…", "text": "…", "author_id": "12", "author_username": "gopher",
//	               "created_at": "2026-01-02T15:00:00Z", "url": "https://x.com/gopher/status/1869…"}],
//	    "post_ids": ["1869…"],               // a digest lists the ids of the posts it carries
//	    "schedule": "@every 15m",            // enrolled: the watch's schedule
//	    "resumed": true,                     // enrolled: a suspended watch resumed
//	    "reason": "dead_grant",              // reconsent_needed: why; target_disabled: the target's label
//	    "message": "…",                      // non-match events: what happened, in words (render.go)
//	    "consent_url": "https://…",          // reconsent_needed only: the one-time link
//	    "pause_url": "https://…",            // signed one-click links
//	    "revoke_url": "https://…"           // not in access_revoked and reconsent_needed (no access to revoke)
//	  }
//	}
//
// Receivers verify the webhook-signature header (Standard Webhooks: "v1,"
// and base64 HMAC-SHA256 of "webhook-id.webhook-timestamp.body"; during a
// secret rotation two signatures separated by a space) and de-duplicate by
// webhook-id, which is the same on every retry.
type WebhookBody struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      WebhookData `json:"data"`
}

// WebhookData is the data member of WebhookBody.
type WebhookData struct {
	ID         string        `json:"id"`
	UserID     string        `json:"user_id"`
	WatchID    string        `json:"watch_id,omitempty"`
	Provider   string        `json:"provider,omitempty"`
	Hashtags   []string      `json:"hashtags,omitempty"`
	Posts      []WebhookPost `json:"posts,omitempty"`
	PostIDs    []string      `json:"post_ids,omitempty"`
	Schedule   string        `json:"schedule,omitempty"`
	Resumed    bool          `json:"resumed,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Message    string        `json:"message,omitempty"`
	ConsentURL string        `json:"consent_url,omitempty"`
	PauseURL   string        `json:"pause_url,omitempty"`
	RevokeURL  string        `json:"revoke_url,omitempty"`
}

// WebhookPost is one post in WebhookData.
type WebhookPost struct {
	ID             string    `json:"id"`
	Text           string    `json:"text"`
	AuthorID       string    `json:"author_id,omitempty"`
	AuthorUsername string    `json:"author_username,omitempty"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	URL            string    `json:"url,omitempty"`
}

// webhookBody renders m as the documented JSON body: the notice's facts,
// and for events other than matches their words (render.go).
func webhookBody(m *Message) ([]byte, error) {
	n := m.Notice
	b := WebhookBody{Type: n.Type, Timestamp: n.Time.UTC(), Data: WebhookData{ID: m.ID, UserID: n.UserID,
		WatchID: n.WatchID, Provider: n.Provider, Hashtags: n.Hashtags, Schedule: n.Schedule, Resumed: n.Resumed,
		Reason: n.Reason, PauseURL: m.PauseURL, RevokeURL: m.RevokeURL, ConsentURL: m.Consent.Reveal()}}
	if n.Type != vault.NoticeMatch {
		_, b.Data.Message = words(n, m.AccountURL)
	}
	for _, p := range n.Posts {
		b.Data.Posts = append(b.Data.Posts, WebhookPost{ID: p.ID, Text: p.Text, AuthorID: p.AuthorID,
			AuthorUsername: p.AuthorUsername, CreatedAt: p.CreatedAt, URL: postURL(p)})
		b.Data.PostIDs = append(b.Data.PostIDs, p.ID)
	}
	return json.Marshal(b)
}

// webhook is the Standard Webhooks channel.
type webhook struct {
	client  *http.Client
	secrets map[string][][]byte // target URL -> signing keys, newest first
	now     func() time.Time
}

// newWebhook builds the channel. Its transport vets every address it
// connects to (net.Dialer.Control), so a name that resolves to a private
// address is refused at connect time, not only when the watch is created;
// it uses no proxy (a proxy would connect on our behalf) and follows no
// redirects (3xx is a failed delivery).
func newWebhook(secrets []WebhookSecret, timeout time.Duration, allowPrivate bool, now func() time.Time) (*webhook, error) {
	w := &webhook{secrets: map[string][][]byte{}, now: now}
	for _, s := range secrets {
		var keys [][]byte
		for i, v := range []secret.Value{s.Secret, s.Previous} {
			if v.IsZero() {
				if i == 0 {
					return nil, fmt.Errorf("webhook %s: no secret", TargetLabel(s.URL))
				}
				continue
			}
			k, err := parseWebhookSecret(v)
			if err != nil {
				return nil, fmt.Errorf("webhook %s: %w", TargetLabel(s.URL), err)
			}
			keys = append(keys, k)
		}
		w.secrets[s.URL] = keys
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = guardControl
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	w.client = &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return w, nil
}

// guardControl refuses connections to addresses that are not public. It
// runs after name resolution, on the address actually dialled.
func guardControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, address)
	}
	if !publicAddr(ap.Addr()) {
		return ErrPrivateAddress
	}
	return nil
}

// parseWebhookSecret decodes a "whsec_" secret or takes a raw one.
func parseWebhookSecret(v secret.Value) ([]byte, error) {
	s := strings.TrimSpace(v.Reveal())
	var k []byte
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		var err error
		if k, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return nil, errors.New("secret starts with whsec_ but is not base64")
		}
	} else {
		k = []byte(s)
	}
	if len(k) < 24 {
		return nil, fmt.Errorf("secret is %d bytes, at least 24 are needed", len(k))
	}
	return k, nil
}

// hasSecret reports whether target has a signing secret.
func (w *webhook) hasSecret(target string) bool { return len(w.secrets[target]) > 0 }

// sign returns the webhook-signature header value for id, ts and body.
func sign(keys [][]byte, id string, ts int64, body []byte) string {
	var sigs []string
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		fmt.Fprintf(mac, "%s.%d.", id, ts)
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

func (w *webhook) Send(ctx context.Context, m *Message) error {
	keys := w.secrets[m.Target]
	if len(keys) == 0 {
		return ErrNoChannel
	}
	body, err := webhookBody(m)
	if err != nil {
		return permanent(err)
	}
	ts := w.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.Target, bytes.NewReader(body))
	if err != nil {
		return permanent(errors.New("bad webhook URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tagwatch-webhook/1")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sign(keys, m.ID, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return scrubURLError(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusGone:
		return &SendError{Status: c, Err: ErrTargetGone}
	case c == http.StatusRequestEntityTooLarge:
		// The receiver says the body is too large: the same body again
		// gets the same answer. An operator can replay it once the
		// receiver takes more.
		return &SendError{Status: c, Err: permanent(fmt.Errorf("the receiver takes no body of %d bytes", len(body)))}
	case c >= 300 && c < 400:
		return &SendError{Status: c, Err: errors.New("redirect refused")}
	default:
		return &SendError{Status: c, RetryAfter: httpsec.RetryAfter(resp.Header, w.now(), 7*24*time.Hour), Err: errors.New(http.StatusText(c))}
	}
}

// scrubURLError drops the URL (which may carry a token in its path or
// query) from a transport error, keeping its cause.
func scrubURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if errors.Is(err, ErrPrivateAddress) {
			return ErrPrivateAddress
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timeout: %w", context.DeadlineExceeded)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("timeout: %w", context.DeadlineExceeded)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			return fmt.Errorf("%s: %w", oe.Op, oe.Err)
		}
	}
	return errors.New("request failed")
}
