// Package secret holds the types tagwatch uses for credentials: refresh
// tokens, access tokens, client secrets and key material. Each prints
// REDACTED through fmt (every verb), log/slog and encoding/json, so a secret
// that reaches a log line, an error or a status answer by mistake shows
// nothing. The value itself is reached only through Reveal.
//
// Values are immutable and safe for concurrent use.
package secret

import (
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what every secret prints instead of its value.
const Redacted = "REDACTED"

// Value is a secret string. The zero Value is empty.
type Value struct{ v string }

// New wraps s as a secret.
func New(s string) Value { return Value{v: s} }

// Reveal returns the secret itself. Call it only where the value is sent
// to the party it belongs to (a token endpoint, an Authorization header) or
// sealed.
func (v Value) Reveal() string { return v.v }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.v == "" }

// Equal reports whether two secrets hold the same value.
func (v Value) Equal(o Value) bool { return v.v == o.v }

// String returns Redacted.
func (Value) String() string { return Redacted }

// GoString returns Redacted, for %#v.
func (Value) GoString() string { return Redacted }

// Format prints Redacted for every verb, so %v, %+v, %#v, %s, %q and %x
// never show the value.
func (Value) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// LogValue returns Redacted for log/slog.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes Redacted: a secret is never serialised in the clear.
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes Redacted, for encoders that use encoding.TextMarshaler.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// RefreshToken is an OAuth 2.0 refresh token: whoever holds it can act as
// the user until it is revoked.
type RefreshToken struct{ Value }

// AccessToken is an OAuth 2.0 bearer access token.
type AccessToken struct{ Value }

// ClientSecret is an OAuth 2.0 client secret or a webhook signing secret.
type ClientSecret struct{ Value }

// NewRefreshToken wraps s.
func NewRefreshToken(s string) RefreshToken { return RefreshToken{New(s)} }

// NewAccessToken wraps s.
func NewAccessToken(s string) AccessToken { return AccessToken{New(s)} }

// NewClientSecret wraps s.
func NewClientSecret(s string) ClientSecret { return ClientSecret{New(s)} }
