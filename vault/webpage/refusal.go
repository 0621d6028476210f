package webpage

import (
	"context"
	"log/slog"
	"net/http"

	"tagwatch/vault/provider"
)

// Refusal is how a request that cannot go on is shown and logged: one row
// of a package's table of reasons (Refusals).
type Refusal struct {
	// Status is the page's HTTP status code (RFC 9110 §15).
	Status int
	// Name is the log line's "reason", in snake_case ("flow_unknown").
	Name string
	// Title and Message are the page's title (and heading) and its lead
	// paragraph.
	Title, Message string
	// Level is the log line's level.
	Level slog.Level
}

// ErrorText is the text of an error refused for t: its Name, then ": "
// and err's text when err is not nil.
func (t Refusal) ErrorText(err error) string {
	if err == nil {
		return t.Name
	}
	return t.Name + ": " + err.Error()
}

// Log writes the log line of a request refused for t: msg at t.Level,
// with "reason" (t.Name), then attrs (slog's alternating keys and
// values), then "err" (err's text) when err is not nil.
func (t Refusal) Log(ctx context.Context, log *slog.Logger, msg string, attrs []any, err error) {
	if log == nil {
		return
	}
	args := append([]any{"reason", t.Name}, attrs...)
	if err != nil {
		args = append(args, "err", err.Error())
	}
	log.Log(ctx, t.Level, msg, args...)
}

// Page returns t's error page, for MessagePage: Kind "error", t's Title
// and Message. Write it with t.Status.
func (t Refusal) Page() *Message {
	return &Message{Page: Page{Title: t.Title}, Kind: "error", Message: t.Message}
}

// Write answers t.Status with t's error page (Page) as it is: the answer
// of last resort, when a page's own template failed.
func (t Refusal) Write(w http.ResponseWriter) {
	if err := Write(w, t.Status, MessagePage, t.Page()); err != nil {
		internalError(w) // a Refusal without a Status
	}
}

// Refusals is a package's table of refusals by its reasons R; the zero R
// is the reason of an unexpected (internal) error.
type Refusals[R comparable] map[R]Refusal

// Of returns the refusal of r, or that of the zero R when the table has
// no row for r (the zero Refusal when it has neither).
func (t Refusals[R]) Of(r R) Refusal {
	if x, ok := t[r]; ok {
		return x
	}
	var internal R
	return t[internal]
}

// ProviderReason chooses the reason a failed exchange with a provider
// (a token request, the identity) is refused for, by provider.ClassOf:
// down when the provider did not answer or failed (ClassTransient: a try
// later may work), unavailable when it refuses tagwatch itself
// (ClassClient: the operator's configuration), op for any other failure
// (the person's answer was refused).
func ProviderReason[R any](err error, op, down, unavailable R) R {
	switch provider.ClassOf(err) {
	case provider.ClassTransient:
		return down
	case provider.ClassClient:
		return unavailable
	}
	return op
}
