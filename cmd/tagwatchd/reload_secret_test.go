package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"tagwatch/cmd/internal/statusapi"
	"tagwatch/notify"
)

// TestReloadErrorShowsNoWebhookSecret: a reload refused for a webhook URL
// (plain http off loopback, the secret in its path) names the key and
// shows the URL only by its notify.TargetLabel, in the ERROR log line, in
// tagwatchctl status's last errors, and at check-config.
func TestReloadErrorShowsNoWebhookSecret(t *testing.T) {
	const secretPath = "T0000/B0000/XXXXXXXXXXXX"
	const hook = "http://hooks.example.com/services/" + secretPath
	s := newSvc(t, "", false)
	s.start(0)
	cfgText, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := string(cfgText) + "\n[[notify.webhook]]\nurl = \"" + hook + "\"\nsecret_file = \"/nonexistent\"\n"
	if err := os.WriteFile(s.config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "notify.webhook[1].url: must be https (http is allowed only on loopback), got " + notify.TargetLabel(hook)

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c := statusapi.NewClient(s.socket)
	waitFor(t, 20*time.Second, "the refused reload in the status's last errors", func() bool {
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range st.LastErrors {
			if e.Message == "reload" {
				return true
			}
		}
		return false
	})
	statusOut, code := s.ctl("status")
	if code != 0 || !strings.Contains(statusOut, want) {
		t.Errorf("tagwatchctl status = %d %q, want the last errors to say %q", code, statusOut, want)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	logs := s.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "msg=reload") {
			line = l
		}
	}
	if !strings.Contains(line, want) {
		t.Errorf("reload's ERROR log line = %q, want it to say %q", line, want)
	}
	code, out, errOut := runCLI("check-config", "-config", s.config)
	if code != exitConfig || !strings.Contains(errOut, want) {
		t.Errorf("check-config = %d %q %q, want %d and %q", code, out, errOut, exitConfig, want)
	}
	for where, text := range map[string]string{"the log": logs, "tagwatchctl status": statusOut, "check-config": out + errOut} {
		if strings.Contains(text, secretPath) {
			t.Errorf("%s shows the webhook's secret path %q", where, secretPath)
		}
	}
}
