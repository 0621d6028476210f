package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const sentinel = "sentinel-7f3a9c-token"

func TestSecretsNeverPrint(t *testing.T) {
	values := map[string]any{
		"Value":        New(sentinel),
		"RefreshToken": NewRefreshToken(sentinel),
		"AccessToken":  NewAccessToken(sentinel),
		"ClientSecret": NewClientSecret(sentinel),
		"pointer":      ptr(NewRefreshToken(sentinel)),
		"in struct":    struct{ T AccessToken }{NewAccessToken(sentinel)},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
				if got := fmt.Sprintf(verb, v); strings.Contains(got, sentinel) || strings.Contains(got, fmt.Sprintf("%x", sentinel)) {
					t.Errorf("Sprintf(%q) = %q, leaks the secret", verb, got)
				}
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			if bytes.Contains(b, []byte(sentinel)) {
				t.Errorf("json.Marshal = %s, leaks the secret", b)
			}
			var buf bytes.Buffer
			for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
				slog.New(h).Info("x", "secret", v)
			}
			if strings.Contains(buf.String(), sentinel) {
				t.Errorf("slog output %q leaks the secret", buf.String())
			}
			if !strings.Contains(buf.String(), Redacted) {
				t.Errorf("slog output %q, want %s", buf.String(), Redacted)
			}
		})
	}
}

func TestReveal(t *testing.T) {
	if got := NewRefreshToken(sentinel).Reveal(); got != sentinel {
		t.Errorf("Reveal() = %q, want %q", got, sentinel)
	}
	if !New("").IsZero() || New("x").IsZero() {
		t.Error("IsZero wrong")
	}
	if !New("a").Equal(New("a")) || New("a").Equal(New("b")) {
		t.Error("Equal wrong")
	}
}

func ptr[T any](v T) *T { return &v }
