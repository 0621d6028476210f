package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"tagwatch/cmd/internal/statusapi"
)

// revokeBackend answers a revocation as the daemon's does, by grant id:
// how far it got at the provider.
type revokeBackend struct{ statusapi.Backend }

func (revokeBackend) Revoke(ctx context.Context, id, actor string) (statusapi.RevokeResult, error) {
	return map[string]statusapi.RevokeResult{
		"confirmed": {RevokedAtProvider: true},
		"queued":    {Queued: true},
		"again":     {AlreadyRevoked: true},
		"local":     {},
	}[id], nil
}

func (revokeBackend) RecordRequest(statusapi.AuditEvent) error { return nil }

// TestRevokeSaysHowFarItGot: tagwatchctl revoke says "revoked at the
// provider" only when the provider confirmed it, and says a queued
// revocation is queued (C15); --json carries the same facts.
func TestRevokeSaysHowFarItGot(t *testing.T) {
	sock := serveBackend(t, revokeBackend{})
	for _, c := range []struct {
		id           string
		want, wantNo string
	}{
		{"confirmed", "the provider confirmed the revocation", "queued"},
		{"queued", "it is queued and the daemon retries it", "confirmed"},
		{"again", "was already revoked; nothing changed", "confirmed"},
		{"local", "the provider was not asked", "confirmed"},
	} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"--socket", sock, "revoke", c.id}, &stdout, &stderr)
		if out := stdout.String(); code != exitOK || !strings.Contains(out, c.want) || strings.Contains(out, c.wantNo) {
			t.Errorf("revoke %s = %d %q %q, want %q and not %q", c.id, code, out, stderr.String(), c.want, c.wantNo)
		}
	}
	var stdout bytes.Buffer
	var r statusapi.RevokeResult
	if code := run([]string{"--socket", sock, "--json", "revoke", "queued"}, &stdout, &stdout); code != exitOK ||
		json.Unmarshal(stdout.Bytes(), &r) != nil || !r.OK || !r.Queued || r.RevokedAtProvider {
		t.Errorf("revoke --json = %d %s, want ok and queued", code, stdout.String())
	}
}
