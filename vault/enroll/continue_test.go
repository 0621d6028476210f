package enroll

import (
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

var continueRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]*)">`)

// ContinueTarget checks a continue page (status, headers, body) and
// returns where its meta refresh sends the browser; the page's link must
// go to the same place. For the tests of both packages.
func ContinueTarget(t testing.TB, status int, h http.Header, body string) string {
	t.Helper()
	if status != http.StatusOK || h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self';") {
		t.Fatalf("continue page = %d, headers %v: %.300s", status, h, body)
	}
	m := continueRefresh.FindStringSubmatch(body)
	if m == nil || strings.Contains(body, "<script") || strings.Contains(body, "<form") {
		t.Fatalf("continue page without its meta refresh, or with a script or form: %s", body)
	}
	if !strings.Contains(body, `href="`+m[1]+`">Continue to `) {
		t.Fatalf("continue page's link does not go where its refresh does: %s", body)
	}
	return html.UnescapeString(m[1])
}

// continueOf serves the continue page rec's 303 names, with rec's
// cookies, and returns its target.
func continueOf(t testing.TB, h http.Handler, rec *httptest.ResponseRecorder) string {
	t.Helper()
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/continue?state=") {
		t.Fatalf("POST = %d Location %q, want 303 to the continue page", rec.Code, loc)
	}
	req := httptest.NewRequest(http.MethodGet, loc, nil)
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	cr := httptest.NewRecorder()
	h.ServeHTTP(cr, req)
	return ContinueTarget(t, cr.Code, cr.Header(), cr.Body.String())
}
