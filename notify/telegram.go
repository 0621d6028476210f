package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/telegram"
)

// telegramAPI is Telegram's Bot API.
const telegramAPI = "https://api.telegram.org"

// telegramBot sends telegram:// targets itself, with the library's parsing
// of the URL (telegram.Config, as checkShoutrrrURL checks it) and the
// library's payload: the library's own client (v0.13.2) takes an answer
// it cannot read, or no answer at all, for a success (Client.SendMessage
// returns the error of an unparsable body, which is nil), so a message
// lost on the way would be recorded as delivered; and it has no timeout.
// Answers are classified by what they say (core.telegram.org/bots/api,
// "Making requests"): ok true is delivered; error_code 429 waits
// parameters.retry_after; a refusal of the message itself is permanent;
// anything else, including an unreadable answer, is retried.
type telegramBot struct {
	client *http.Client
	base   string // telegramAPI, or a test's server
	cfg    *telegram.Config
}

func newTelegramBot(target, base string, timeout time.Duration) (*telegramBot, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, errors.New("bad chat URL")
	}
	cfg := &telegram.Config{Preview: true, Notification: true} // the library's defaults
	if err := cfg.SetURL(u); err != nil {
		return nil, fmt.Errorf("chat URL: %s", redactTarget(err.Error(), target))
	}
	return &telegramBot{client: &http.Client{Timeout: timeout}, base: strings.TrimRight(base, "/"), cfg: cfg}, nil
}

// telegramPayload is sendMessage's request, as the library builds it
// (telegram_json.go, createSendMessagePayload) with tagwatch's plain text.
type telegramPayload struct {
	ChatID              string `json:"chat_id"`
	MessageThreadID     *int   `json:"message_thread_id,omitempty"`
	Text                string `json:"text"`
	ParseMode           string `json:"parse_mode,omitempty"`
	DisablePreview      bool   `json:"disable_web_page_preview"`
	DisableNotification bool   `json:"disable_notification"`
}

// telegramAnswer is the Bot API's answer.
type telegramAnswer struct {
	OK          *bool  `json:"ok"`
	ErrorCode   int    `json:"error_code"`
	Description string `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// telegramRefusals are descriptions of a 400 that refuse the message
// itself: sent again, it gets the same answer.
var telegramRefusals = []string{"message is too long", "text must be non-empty", "can't parse entities"}

// send sends text to every chat of the target, in order.
func (t *telegramBot) send(ctx context.Context, text string) error {
	for _, chat := range t.cfg.Chats {
		p := telegramPayload{Text: text, ChatID: chat, DisablePreview: !t.cfg.Preview, DisableNotification: !t.cfg.Notification}
		if id, thread, ok := strings.Cut(chat, ":"); ok {
			if n, err := strconv.Atoi(thread); err == nil {
				p.ChatID, p.MessageThreadID = id, &n
			}
		}
		if t.cfg.Title != "" {
			p.ParseMode = "HTML"
			p.Text = "<b>" + html.EscapeString(t.cfg.Title) + "</b>\n" + html.EscapeString(text)
		}
		if err := t.post(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (t *telegramBot) post(ctx context.Context, p telegramPayload) error {
	body, err := json.Marshal(p)
	if err != nil {
		return permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/bot"+t.cfg.Token+"/sendMessage", bytes.NewReader(body))
	if err != nil {
		return permanent(errors.New("bad telegram token"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return scrubURLError(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var a telegramAnswer
	if err := json.Unmarshal(b, &a); err != nil || a.OK == nil {
		return &SendError{Status: resp.StatusCode, Err: errors.New("the answer is not the Bot API's")}
	}
	if *a.OK && resp.StatusCode == http.StatusOK {
		return nil
	}
	desc := clip(clean(a.Description), 200)
	switch {
	case a.ErrorCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusTooManyRequests:
		return &SendError{Status: http.StatusTooManyRequests, RetryAfter: time.Duration(min(max(a.Parameters.RetryAfter, 0), 7*24*3600)) * time.Second,
			Err: errors.New(desc)}
	case a.ErrorCode == http.StatusBadRequest && containsAny(strings.ToLower(desc), telegramRefusals):
		return &SendError{Status: resp.StatusCode, Err: permanent(errors.New(desc))}
	}
	return &SendError{Status: resp.StatusCode, Err: fmt.Errorf("error %d: %s", a.ErrorCode, desc)}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
