package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// newJournalHandler returns a slog handler for stderr under systemd: one
// logfmt line per record, prefixed with the syslog priority of its level
// (<3> error, <4> warning, <6> info, <7> debug), which journald turns into
// the entry's PRIORITY. The time is left out: journald stamps each line.
// Values are quoted as slog's text handler quotes them, so a hashtag or a
// post with a newline cannot start a line of its own.
func newJournalHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	o := slog.HandlerOptions{}
	if opts != nil {
		o = *opts
	}
	replace := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if replace != nil {
			return replace(groups, a)
		}
		return a
	}
	return slog.NewTextHandler(&priorityWriter{w: w}, &o)
}

// priorityWriter prefixes each line the text handler writes (one Write
// per record, which starts with level=LEVEL) with its syslog priority.
type priorityWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	prio := byte('6')
	if rest, ok := bytes.CutPrefix(b, []byte("level=")); ok {
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		var l slog.Level
		if l.UnmarshalText(rest[:end]) == nil {
			prio = priority(l)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	line := make([]byte, 0, len(b)+3)
	line = append(line, '<', prio, '>')
	line = append(line, b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// priority maps a slog level to a syslog priority digit.
func priority(l slog.Level) byte {
	switch {
	case l >= slog.LevelError:
		return '3'
	case l >= slog.LevelWarn:
		return '4'
	case l >= slog.LevelInfo:
		return '6'
	}
	return '7'
}

// errorRing keeps the last error records the daemon logged, for the status
// endpoint. Safe for concurrent use.
type errorRing struct {
	mu   sync.Mutex
	max  int
	errs []statusapi.ErrorEntry
}

func newErrorRing(max int) *errorRing { return &errorRing{max: max} }

func (r *errorRing) add(e statusapi.ErrorEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, e)
	if len(r.errs) > r.max {
		r.errs = r.errs[len(r.errs)-r.max:]
	}
}

// list returns the entries newest first.
func (r *errorRing) list() []statusapi.ErrorEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]statusapi.ErrorEntry, len(r.errs))
	for i, e := range r.errs {
		out[len(r.errs)-1-i] = e
	}
	return out
}

// handler wraps h so that error records are also kept in the ring.
func (r *errorRing) handler(h slog.Handler) slog.Handler { return &ringHandler{h: h, ring: r} }

type ringHandler struct {
	h     slog.Handler
	ring  *errorRing
	attrs []slog.Attr
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelError {
		var b bytes.Buffer
		// The attributes are rendered by slog's text handler, which
		// honours LogValuer: secrets show as REDACTED.
		th := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{}
			}
			return a
		}}).WithAttrs(h.attrs)
		_ = th.Handle(ctx, rec)
		t := rec.Time
		if t.IsZero() {
			t = time.Now()
		}
		h.ring.add(statusapi.ErrorEntry{Time: t, Message: rec.Message, Detail: string(bytes.TrimSpace(b.Bytes()))})
	}
	return h.h.Handle(ctx, rec)
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ringHandler{h: h.h.WithAttrs(as), ring: h.ring, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	// Groups are rare in this daemon; the ring keeps the attributes flat.
	return &ringHandler{h: h.h.WithGroup(name), ring: h.ring, attrs: h.attrs}
}
