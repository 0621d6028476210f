package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// SMTPConfig configures mail delivery for mailto: targets. Mail is sent
// with the standard library's net/smtp (frozen but complete for a
// submission client: STARTTLS, implicit TLS, AUTH PLAIN), which keeps the
// dependency list short.
type SMTPConfig struct {
	// Host is the submission server; empty disables mail.
	Host string
	// Port; default 587 for starttls, 465 for tls, 25 for none.
	Port int
	// Security is "starttls" (default), "tls" (implicit TLS) or "none"
	// (plain text, refused unless Host is loopback).
	Security string
	// Username and Password authenticate with AUTH PLAIN, only over TLS
	// (or to loopback).
	Username string
	Password secret.Value
	// From is the sender address.
	From string
	// CAFile is an extra PEM bundle to trust for the server's certificate.
	CAFile string
	// RootCAs, when set, replaces the system roots (tests).
	RootCAs *x509.CertPool
}

type email struct {
	cfg     SMTPConfig
	from    *mail.Address
	tls     *tls.Config
	timeout time.Duration
	now     func() time.Time
}

func newEmail(c SMTPConfig, timeout time.Duration, now func() time.Time) (*email, error) {
	if c.Security == "" {
		c.Security = "starttls"
	}
	if c.Port == 0 {
		c.Port = map[string]int{"starttls": 587, "tls": 465, "none": 25}[c.Security]
	}
	switch c.Security {
	case "starttls", "tls":
	case "none":
		if !isLoopbackHost(c.Host) {
			return nil, fmt.Errorf("smtp: security none is allowed only on loopback, not %s", c.Host)
		}
	default:
		return nil, fmt.Errorf("smtp: security must be starttls, tls or none, got %q", c.Security)
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("smtp: from %q: %w", c.From, err)
	}
	roots := c.RootCAs
	if roots == nil && c.CAFile != "" {
		pem, err := seal.ReadFile(c.CAFile, seal.MaxFileSize) // a FIFO there: an error, not a hang
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smtp: %s holds no PEM certificate", c.CAFile)
		}
	}
	return &email{cfg: c, from: from, timeout: timeout, now: now,
		tls: &tls.Config{ServerName: c.Host, RootCAs: roots, MinVersion: tls.VersionTLS12}}, nil
}

func (e *email) Send(ctx context.Context, m *Message) error {
	to, err := mailAddress(m.Target)
	if err != nil {
		return permanent(fmt.Errorf("mail target: %w", err))
	}
	msg, err := e.compose(m, to)
	if err != nil {
		return permanent(err)
	}
	deadline := e.now().Add(e.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	addr := net.JoinHostPort(e.cfg.Host, strconv.Itoa(e.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp: dial: %w", errors.Unwrap(err))
	}
	defer conn.Close()
	// net/smtp takes no context: the connection's deadline bounds it, and
	// cancelling ctx (shutdown) closes the connection.
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if e.cfg.Security == "tls" {
		tc := tls.Client(conn, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp: tls: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.cfg.Host)
	if err != nil {
		return fmt.Errorf("smtp: greeting: %w", err)
	}
	defer c.Close()
	if e.cfg.Security == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("smtp: server does not offer STARTTLS")
		}
		if err := c.StartTLS(e.tls); err != nil {
			return fmt.Errorf("smtp: starttls: %w", err)
		}
	}
	if e.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.cfg.Username, e.cfg.Password.Reveal(), e.cfg.Host)); err != nil {
			return fmt.Errorf("smtp: auth as %s: %w", e.cfg.Username, smtpErr(err))
		}
	}
	if ok, size := c.Extension("SIZE"); ok {
		// RFC 1870: the server says the largest message it takes; a
		// larger one is refused whatever the attempt.
		if limit, err := strconv.ParseInt(strings.TrimSpace(size), 10, 64); err == nil && limit > 0 && int64(len(msg)) > limit {
			return permanent(fmt.Errorf("smtp: the message is %d bytes, the server takes at most %d (SIZE)", len(msg), limit))
		}
	}
	if err := c.Mail(e.from.Address); err != nil {
		return fmt.Errorf("smtp: mail from: %w", smtpErr(err))
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: rcpt: %w", smtpErr(err))
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: data: %w", smtpErr(err))
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: data: %w", smtpErr(err))
	}
	_ = c.Quit()
	return nil
}

// smtpErr keeps a server's reply code and text (never our credentials,
// which are not echoed by AUTH PLAIN replies).
func smtpErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Errorf("%d %s", te.Code, clean(te.Msg))
	}
	return err
}

// compose builds the RFC 5322 message: multipart/alternative with a text
// and an HTML part, List-Unsubscribe (RFC 2369) pointing at the signed
// pause link, with RFC 8058 one-click POST.
func (e *email) compose(m *Message, to string) ([]byte, error) {
	r, err := render(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	domain := e.from.Address[strings.LastIndexByte(e.from.Address, '@')+1:]
	h := []string{
		"From: " + e.from.String(),
		"To: <" + to + ">",
		"Subject: " + mime.QEncoding.Encode("utf-8", r.Subject),
		"Date: " + e.now().Format(time.RFC1123Z),
		"Message-ID: <" + m.ID + "@" + domain + ">",
		"MIME-Version: 1.0",
		"Auto-Submitted: auto-generated",
		"X-Tagwatch-Notification: " + m.ID,
		"Content-Type: multipart/alternative; boundary=" + mw.Boundary(),
	}
	if unsub := m.PauseURL; unsub != "" {
		h = append(h, "List-Unsubscribe: <"+unsub+">", "List-Unsubscribe-Post: List-Unsubscribe=One-Click")
	}
	var out bytes.Buffer
	for _, l := range h {
		if strings.ContainsAny(l, "\r\n") {
			return nil, errors.New("header contains a line break")
		}
		out.WriteString(l + "\r\n")
	}
	out.WriteString("\r\n")
	for _, p := range []struct{ typ, body string }{{"text/plain", r.Text}, {"text/html", r.HTML}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {p.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, err
		}
		qw := quotedprintable.NewWriter(pw)
		if _, err := qw.Write([]byte(strings.ReplaceAll(p.body, "\n", "\r\n"))); err != nil {
			return nil, err
		}
		qw.Close()
	}
	mw.Close()
	out.Write(b.Bytes())
	return out.Bytes(), nil
}
