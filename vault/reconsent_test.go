package vault

import (
	"testing"
	"time"
)

// TestReconsentDefaults: the one defaulting of a Reconsent that
// MarkNeedsReconsent and ResetDamagedGrant share: LinkTTL defaults to
// DefaultLinkTTL, a link prefix is required and its absence is named
// with the operation; nothing else is changed.
func TestReconsentDefaults(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Reconsent
		want Reconsent
		err  string
	}{
		{"ttl defaulted", Reconsent{LinkPrefix: "https://p/enroll/", Actor: "a", Reason: "r"},
			Reconsent{LinkPrefix: "https://p/enroll/", LinkTTL: DefaultLinkTTL, Actor: "a", Reason: "r"}, ""},
		{"negative ttl defaulted", Reconsent{LinkPrefix: "p", LinkTTL: -time.Hour}, Reconsent{LinkPrefix: "p", LinkTTL: DefaultLinkTTL}, ""},
		{"ttl kept", Reconsent{LinkPrefix: "p", LinkTTL: time.Hour, KeepTokens: true}, Reconsent{LinkPrefix: "p", LinkTTL: time.Hour, KeepTokens: true}, ""},
		{"no prefix", Reconsent{LinkTTL: time.Hour}, Reconsent{}, "vault: op: no link prefix"},
	} {
		got, err := c.in.defaults("op")
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: defaults() = %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: defaults() = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}
