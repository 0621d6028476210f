package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// grantsBackend answers GET /v1/grants with its grants.
type grantsBackend struct {
	statusapi.Backend
	grants []statusapi.Grant
}

func (b grantsBackend) Grants(context.Context) ([]statusapi.Grant, error) { return b.grants, nil }

// TestGrantsTimes: every time in tagwatchctl grants is UTC with its Z,
// "2026-11-30 09:48:36Z": the needs_reconsent since and the refresh in
// flight since as much as the access expiry.
func TestGrantsTimes(t *testing.T) {
	since := time.Date(2026, 11, 30, 10, 48, 36, 0, time.FixedZone("CET", 3600))
	inFlight := time.Date(2026, 11, 30, 9, 50, 1, 0, time.UTC)
	sock := serveBackend(t, grantsBackend{grants: []statusapi.Grant{{ID: "g1", UserID: "ada", Provider: "x", Subject: "1001",
		Username: "ada", State: "needs_reconsent", NeedsReconsentSince: since, RefreshInFlight: inFlight,
		AccessExpiry: time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)}}})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--socket", sock, "grants"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("grants = %d %q %q", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"needs_reconsent since 2026-11-30 09:48:36Z", "since 2026-11-30 09:50:01Z", "2026-11-30 11:00:00Z ("} {
		if !strings.Contains(out, want) {
			t.Errorf("grants =\n%s\nwant %q in it", out, want)
		}
	}
	// No time without its zone: each date-time is followed by Z.
	if m := regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?(\z|[^:\dZ])`).FindString(out); m != "" {
		t.Errorf("grants shows a time without Z (%q):\n%s", m, out)
	}
}
