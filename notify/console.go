package notify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// console prints messages to the daemon's output, for the demo and for
// debugging. User text is stripped of control characters, so a post
// cannot forge log lines or send terminal escapes. It prints a consent
// link when the message carries one: that is the delivery the target
// asked for.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) Send(_ context.Context, m *Message) error {
	r, err := render(m)
	if err != nil {
		return permanent(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "── tagwatch notification %s (%s, attempt %d) ──\n", m.ID, m.Notice.Type, m.Attempt)
	for _, l := range strings.Split(strings.TrimRight(r.Text, "\n"), "\n") {
		b.WriteString("│ " + l + "\n")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = io.WriteString(c.w, b.String())
	return err
}
