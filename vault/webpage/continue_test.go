package webpage

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteContinuePage(t *testing.T) {
	target := "https://op.example/oauth2/auth?client_id=c&redirect_uri=https%3A%2F%2Frp.example%2Fcb&state=s&scope=openid+profile"
	w := httptest.NewRecorder()
	WriteContinuePage(w, target, "Hydra")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "form-action 'self';") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
		t.Errorf("CSP %q", csp)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers %v", h)
	}
	esc := strings.ReplaceAll(target, "&", "&amp;")
	body := w.Body.String()
	for _, want := range []string{`<meta http-equiv="refresh" content="0;url=` + esc + `">` + "\n<title>Continue to Hydra · tagwatch</title>",
		`<a class="button" href="` + esc + `">Continue to Hydra</a>`, Style + continueStyle + "</style>", "<p>Taking you to Hydra…</p>"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<form") {
		t.Errorf("body has a script or a form:\n%s", body)
	}
	for _, bad := range []string{"javascript:alert(1)", "/relative", "https://x.example/\"><script>", "ftp://x.example/"} {
		w := httptest.NewRecorder()
		WriteContinuePage(w, bad, "X")
		if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), bad) {
			t.Errorf("target %q: %d %q", bad, w.Code, w.Body.String())
		}
	}
	w = httptest.NewRecorder()
	WriteContinuePage(w, "https://op.example:8443/logout", "")
	if !strings.Contains(w.Body.String(), "Continue to op.example:8443</a>") {
		t.Errorf("without a label, the link names the host:\n%s", w.Body.String())
	}
}
