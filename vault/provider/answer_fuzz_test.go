package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
)

// cannedTransport answers every request in memory with one status,
// Content-Type and body; cutAt >= 0 makes the body fail after that many
// bytes, as a connection that closes mid-body does.
type cannedTransport struct {
	status int
	ctype  string
	body   []byte
	cutAt  int
}

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body io.Reader = bytes.NewReader(c.body)
	if c.cutAt >= 0 {
		body = io.MultiReader(bytes.NewReader(c.body[:c.cutAt]), errReader{io.ErrUnexpectedEOF})
	}
	h := http.Header{}
	if c.ctype != "" {
		h.Set("Content-Type", c.ctype)
	}
	return &http.Response{StatusCode: c.status, Status: http.StatusText(c.status), Header: h, Body: io.NopCloser(body), Request: r,
		ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1}, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

const fuzzRT = "rt-fuzz-secret-value"

// refreshWith makes one refresh against an in-memory token endpoint.
func refreshWith(t *testing.T, c cannedTransport, now time.Time) (*provider.TokenResult, error) {
	hc := &http.Client{Transport: c, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "c",
		ClientSecret: secret.NewClientSecret("s"), RedirectURL: redirect, TokenURL: "https://token.example/", HTTPClient: hc,
		Now: func() time.Time { return now }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p.Refresh(context.Background(), secret.NewRefreshToken(fuzzRT))
}

// FuzzTokenAnswer feeds token endpoint answers (status, Content-Type,
// body) to a refresh. Whatever they are, nothing panics, and:
//   - a token comes only from a 2xx, with a positive, bounded lifetime;
//   - a dead grant is said (an error code), never inferred, and is never
//     ambiguous;
//   - 429 and 5xx are transient, never a dead grant;
//   - a 2xx without a usable token and without an error code is a lost
//     answer (ambiguous);
//   - the same answer cut short on the wire is transient and ambiguous;
//   - an RFC 6749 5.2 invalid_grant body under the same status (unless 429
//     or 5xx) is a dead grant, whatever its description;
//   - no error shows the refresh token presented.
func FuzzTokenAnswer(f *testing.F) {
	for _, s := range tokenShapes {
		f.Add(s.status, s.ctype, []byte(s.body))
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		tr, err := refreshWith(t, cannedTransport{status: status, ctype: ctype, body: body, cutAt: -1}, now)
		if err == nil {
			if status < 200 || status > 299 || tr.Access.IsZero() || tr.Lifetime < time.Second ||
				tr.Lifetime > 10*365*24*time.Hour || !tr.Expiry.Equal(now.Add(tr.Lifetime)) || (tr.NoExpiresIn && tr.Lifetime != 5*time.Minute) {
				t.Fatalf("HTTP %d %q %q: token with lifetime %v, expiry %v, no expires_in %v", status, ctype, body, tr.Lifetime, tr.Expiry, tr.NoExpiresIn)
			}
		} else {
			pe := answerError(t, status, ctype, body, err)
			switch {
			case pe.Class != provider.ClassDeadGrant && pe.Class != provider.ClassTransient && pe.Class != provider.ClassClient && pe.Class != provider.ClassProtocol:
				t.Fatalf("HTTP %d %q %q: class %q", status, ctype, body, pe.Class)
			case pe.Class == provider.ClassDeadGrant && (pe.Ambiguous || pe.Code == ""):
				t.Fatalf("HTTP %d %q %q: dead grant, ambiguous %v, code %q: a dead grant must be said and never ambiguous", status, ctype, body, pe.Ambiguous, pe.Code)
			case (status == 429 || status >= 500) && pe.Class != provider.ClassTransient:
				t.Fatalf("HTTP %d %q %q: class %s, want transient", status, ctype, body, pe.Class)
			case status < 300 && pe.Code == "" && !pe.Ambiguous:
				t.Fatalf("HTTP %d %q %q: %v: a 2xx without a token nor an error code must be ambiguous", status, ctype, body, err)
			}
		}

		if len(body) > 0 {
			_, err := refreshWith(t, cannedTransport{status: status, ctype: ctype, body: body, cutAt: len(body) / 2}, now)
			if pe := answerError(t, status, ctype, body, err); pe.Class != provider.ClassTransient || !pe.Ambiguous {
				t.Fatalf("HTTP %d %q %q cut short: %v, want transient and ambiguous", status, ctype, body, err)
			}
		}

		if status != 429 && status < 500 {
			desc, _ := json.Marshal(string(body))
			grant := []byte(`{"error":"invalid_grant","error_description":` + string(desc) + `}`)
			_, err := refreshWith(t, cannedTransport{status: status, ctype: "application/json", body: grant, cutAt: -1}, now)
			if pe := answerError(t, status, ctype, grant, err); pe.Class != provider.ClassDeadGrant {
				t.Fatalf("HTTP %d invalid_grant with description %q: %v, want a dead grant", status, body, err)
			}
		}
	})
}

// answerError checks that err is a *provider.Error without the refresh
// token in its text and returns it.
func answerError(t *testing.T, status int, ctype string, body []byte, err error) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("HTTP %d %q %q: %v, want a *provider.Error", status, ctype, body, err)
	}
	if strings.Contains(err.Error(), fuzzRT) && !bytes.Contains(body, []byte(fuzzRT)) {
		t.Fatalf("HTTP %d %q %q: error %q shows the refresh token", status, ctype, body, err)
	}
	return pe
}
