package notify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// testCert makes a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// mailbox is a go-smtp backend that requires TLS and AUTH PLAIN.
type mailbox struct {
	user, pass string
	mu         sync.Mutex
	msgs       []received
}

type received struct {
	from, to string
	tls      bool
	authed   bool
	data     []byte
}

type session struct {
	mb   *mailbox
	c    *smtp.Conn
	cur  received
	auth bool
}

func (mb *mailbox) NewSession(c *smtp.Conn) (smtp.Session, error) { return &session{mb: mb, c: c}, nil }

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.mb.user || pass != s.mb.pass {
			return errors.New("invalid credentials")
		}
		s.auth = true
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.auth {
		return smtp.ErrAuthRequired
	}
	s.cur.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.cur.to = to; return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.cur.tls = s.c.TLSConnectionState()
	s.cur.authed, s.cur.data = s.auth, b
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, s.cur)
	s.mb.mu.Unlock()
	return nil
}
func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

// TestEmailDelivery sends real mail to a real SMTP server on loopback,
// over STARTTLS and over implicit TLS, with AUTH, and checks headers and
// parts; a reconsent notice carries its consent link in the mail and
// nowhere in the log.
func TestEmailDelivery(t *testing.T) {
	cert, pool := testCert(t)
	for _, security := range []string{"starttls", "tls"} {
		t.Run(security, func(t *testing.T) {
			mb := &mailbox{user: "tagwatch", pass: "sm-pass-Zq81x"}
			srv := smtp.NewServer(mb)
			srv.Domain = "localhost"
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
			var ln net.Listener
			var err error
			if security == "tls" {
				ln, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
			} else {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })
			port := ln.Addr().(*net.TCPAddr).Port

			db := openDB(t, "", nil, nil)
			var logs logBuffer
			ev := newEvents()
			s, err := New(Config{Outbox: db, PublicURL: "https://tagwatch.example", LinkKey: linkKey(), Observer: ev.observe,
				Logger: logs.logger(), Channels: ChannelsConfig{SMTP: SMTPConfig{Host: "127.0.0.1", Port: port, Security: security,
					Username: mb.user, Password: secret.New(mb.pass), From: "tagwatch <tagwatch@example.org>", RootCAs: pool}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CheckTarget("mailto:ada@example.com"); err != nil {
				t.Fatalf("CheckTarget(mailto) = %v", err)
			}
			run(t, s)
			enqueue(t, db, "m1", "mailto:ada@example.com", matchNotice("u1", "w1", 2))
			const consent = "https://tagwatch.example/enroll/CONSENT-LINK-SENTINEL-7731"
			payload := []byte(`{"type":"reconsent_needed","user_id":"u1","provider":"x","hashtags":["golang"],"message":"allow again","time":"2026-03-01T12:00:00Z"}`)
			enqueueSealed(t, db, vault.OutboxRow{ID: "m2", Kind: vault.NoticeReconsent, UserID: "u1", Target: "mailto:ada@example.com",
				Payload: payload}, secret.New(consent))
			s.Kick()
			for _, id := range []string{"m1", "m2"} {
				if e := ev.wait(t, id, EventDelivered, EventFailed); e.Kind != EventDelivered {
					t.Fatalf("%s: %+v, want delivered", id, e)
				}
			}
			mb.mu.Lock()
			msgs := append([]received(nil), mb.msgs...)
			mb.mu.Unlock()
			if len(msgs) != 2 {
				t.Fatalf("server received %d messages, want 2", len(msgs))
			}
			for i, m := range msgs {
				if !m.tls || !m.authed || m.from != "tagwatch@example.org" || m.to != "ada@example.com" {
					t.Errorf("message %d: tls %v auth %v from %q to %q", i, m.tls, m.authed, m.from, m.to)
				}
				msg, err := mail.ReadMessage(bytes.NewReader(m.data))
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				h := msg.Header
				subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
				mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
				if mt != "multipart/alternative" || h.Get("From") == "" || h.Get("Date") == "" || subject == "" ||
					!strings.HasSuffix(h.Get("Message-Id"), "@example.org>") {
					t.Errorf("message %d headers = %v", i, h)
				}
				parts := map[string]string{}
				mr := multipart.NewReader(msg.Body, params["boundary"])
				for {
					p, err := mr.NextPart()
					if err != nil {
						break
					}
					ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
					b, _ := io.ReadAll(p) // multipart decodes quoted-printable
					parts[ct] = string(b)
				}
				text, html := parts["text/plain"], parts["text/html"]
				if text == "" || html == "" {
					t.Fatalf("message %d parts = %v, want text/plain and text/html", i, len(parts))
				}
				if strings.Contains(h.Get("Message-Id"), "m1") {
					unsub := h.Get("List-Unsubscribe")
					if !strings.HasPrefix(unsub, "<https://tagwatch.example/n/pause/") || h.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
						t.Errorf("List-Unsubscribe = %q / %q, want the signed pause link with one-click", unsub, h.Get("List-Unsubscribe-Post"))
					}
					if !strings.Contains(text, "Go 1.26 is out!") || !strings.Contains(text, "@gopher") ||
						!strings.Contains(text, "https://x.com/gopher/status/") || !strings.Contains(html, "Open the post") ||
						!strings.Contains(subject, "#golang") {
						t.Errorf("match mail: subject %q text %q", subject, text)
					}
				} else if !strings.Contains(text, consent) || !strings.Contains(html, consent) {
					t.Errorf("reconsent mail does not carry the consent link: %q", text)
				}
			}
			if l := logs.String(); strings.Contains(l, consent) || strings.Contains(l, mb.pass) {
				t.Errorf("log carries a secret:\n%s", l)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		mb := &mailbox{user: "tagwatch", pass: "right"}
		srv := smtp.NewServer(mb)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		e, err := newEmail(SMTPConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Username: "tagwatch",
			Password: secret.New("wrong-pass-Q9"), From: "t@example.org", RootCAs: pool}, 5*time.Second, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		err = e.Send(t.Context(), &Message{ID: "x", Target: "mailto:a@example.com", Notice: matchNotice("u", "w", 1)})
		if err == nil || strings.Contains(err.Error(), "wrong-pass-Q9") {
			t.Errorf("Send with a wrong password = %v, want an error without the password", err)
		}
	})
}
