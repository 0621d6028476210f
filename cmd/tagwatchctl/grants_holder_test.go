package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
)

// TestGrantsRefreshHolder: a refresh in flight names the daemon that
// holds it; a marker no daemon holds says its outcome is unknown.
func TestGrantsRefreshHolder(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 50, 1, 0, time.UTC)
	sock := serveBackend(t, grantsBackend{grants: []statusapi.Grant{
		{ID: "g1", UserID: "ada", Provider: "x", Subject: "1001", State: "active", RefreshInFlight: at, RefreshHolder: "d7f3a9"},
		{ID: "g2", UserID: "bob", Provider: "x", Subject: "1002", State: "active", RefreshInFlight: at},
		{ID: "g3", UserID: "cy", Provider: "x", Subject: "1003", State: "active"},
	}})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--socket", sock, "grants"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("grants = %d %q %q", code, stdout.String(), stderr.String())
	}
	lines := map[string]string{}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for id, want := range map[string]string{"g1": "since 2026-11-30 09:50:01Z on daemon d7f3a9",
		"g2": "since 2026-11-30 09:50:01Z, outcome unknown"} {
		if !strings.Contains(lines[id], want) {
			t.Errorf("grants row %s = %q, want %q in it", id, lines[id], want)
		}
	}
	if strings.Contains(lines["g3"], "daemon") || strings.Contains(lines["g3"], "since") {
		t.Errorf("grants row g3 = %q, want no refresh in flight", lines["g3"])
	}
}
