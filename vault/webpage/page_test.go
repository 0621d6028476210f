package webpage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"tagwatch/vault/provider"
)

type testPage struct {
	Page
	Name string
}

// TestWrite: the page carries Style and the page's own rules in a style
// element whose nonce is the CSP's, fresh each time.
func TestWrite(t *testing.T) {
	tmpl := template.Must(Parse("t", "p.own{color:red}", `{{define "head"}}<meta name="x" content="y">
{{end}}<p class="own">Hello {{.Name}}</p>
`))
	var nonces []string
	for range 2 {
		w := httptest.NewRecorder()
		d := &testPage{Page: Page{Title: "A <title>"}, Name: "<b>"}
		if err := Write(w, http.StatusTeapot, tmpl, d); err != nil {
			t.Fatal(err)
		}
		body := w.Body.String()
		m := regexp.MustCompile(`<style nonce="([A-Za-z0-9_-]{24})">`).FindStringSubmatch(body)
		if w.Code != http.StatusTeapot || m == nil || m[1] != d.Nonce {
			t.Fatalf("status %d, nonce %q in the page, %q in the data:\n%s", w.Code, m, d.Nonce, body)
		}
		nonces = append(nonces, d.Nonce)
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'nonce-"+d.Nonce+"'") {
			t.Errorf("CSP %q lacks the page's nonce", csp)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", w.Header())
		}
		for _, want := range []string{Style + "p.own{color:red}</style>", `<meta name="x" content="y">` + "\n<title>A &lt;title&gt; · tagwatch</title>",
			`<p class="own">Hello &lt;b&gt;</p>`, `<p class="brand"><span>#</span> tagwatch</p>`, "</main></body></html>\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q:\n%s", want, body)
			}
		}
	}
	if nonces[0] == nonces[1] {
		t.Errorf("the same nonce twice: %s", nonces[0])
	}
}

// TestWriteFails: a template that fails writes nothing, so that the
// caller can answer otherwise; no template or no data is an error too.
func TestWriteFails(t *testing.T) {
	bad := template.Must(Parse("bad", "", `{{.Missing}}`))
	for name, call := range map[string]func(http.ResponseWriter) error{
		"failing template": func(w http.ResponseWriter) error { return Write(w, 200, bad, &testPage{}) },
		"no template":      func(w http.ResponseWriter) error { return Write(w, 200, nil, &testPage{}) },
		"no data":          func(w http.ResponseWriter) error { return Write(w, 200, MessagePage, nil) },
		"a nil page":       func(w http.ResponseWriter) error { return Write(w, 200, MessagePage, (*Message)(nil)) },
		"status 0":         func(w http.ResponseWriter) error { return Write(w, 0, MessagePage, &Message{}) },
	} {
		w := httptest.NewRecorder()
		if err := call(w); err == nil || w.Body.Len() != 0 || len(w.Header()) != 0 {
			t.Errorf("%s: err %v, wrote %d bytes and headers %v; want an error and nothing written", name, err, w.Body.Len(), w.Header())
		}
	}
	if _, err := Parse("broken", "", `{{if}}`); err == nil {
		t.Error("Parse of a broken body: no error")
	}
}

// TestPageTemplates: the shell has no page rules without style and no
// "head" without a define; no template text hides in Style.
func TestPageTemplates(t *testing.T) {
	if strings.Contains(Style, "{{") || strings.Contains(continueStyle, "{{") {
		t.Error("a stylesheet holds template text")
	}
	w := httptest.NewRecorder()
	if err := Write(w, 200, template.Must(Parse("plain", "", "")), &testPage{Page: Page{Title: "T"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.Body.String(), `nofollow">`+"\n<title>T · tagwatch</title><style nonce=") || !strings.Contains(w.Body.String(), Style+"</style>") {
		t.Errorf("plain page:\n%s", w.Body.String())
	}
}

func TestMessagePage(t *testing.T) {
	cases := []struct {
		name string
		m    Message
		want []string
		not  []string
	}{
		{"error", Message{Page: Page{Title: "No"}, Kind: "error", Message: "It <failed>."},
			[]string{`<div class="badge error" aria-hidden="true">!</div>`, "<h1>No</h1>", `<p class="lead">It &lt;failed&gt;.</p>`},
			[]string{"<h2>", "<dl", "<ul", `class="muted"`, "<a "}},
		{"ok with lines and a note", Message{Page: Page{Title: "Yes"}, Kind: "ok", Message: "m", Lines: []string{"#go, hourly"}, Note: "n"},
			[]string{`<div class="badge ok" aria-hidden="true">✓</div>`, `<ul class="plain"><li>#go, hourly</li></ul>`, `<p class="muted">n</p>`},
			[]string{"<dl", "<a "}},
		{"list with a title", Message{Kind: "error", ListTitle: "Not granted", List: []Term{{"tweet.read", "Read posts."}}},
			[]string{`<h2>Not granted</h2><dl class="rows"><div><dt>tweet.read</dt><dd>Read posts.</dd></div></dl>`}, nil},
		{"list without a title", Message{Kind: "error", List: []Term{{"a", "b"}}},
			[]string{`<dl class="rows"><div><dt>a</dt><dd>b</dd></div></dl>`}, []string{"<h2>"}},
		{"back link", Message{Kind: "ok", Back: "/account/", BackText: "Back to your tagwatch page"},
			[]string{`<p><a href="/account/">Back to your tagwatch page</a></p>`}, nil},
		{"a back link is never a script", Message{Kind: "ok", Back: "javascript:alert(1)", BackText: "x"},
			[]string{`<a href="#ZgotmplZ">`}, []string{"javascript:"}},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		if err := Write(w, 200, MessagePage, &c.m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body := w.Body.String()
		for _, s := range c.want {
			if !strings.Contains(body, s) {
				t.Errorf("%s: page lacks %q:\n%s", c.name, s, body)
			}
		}
		for _, s := range c.not {
			if strings.Contains(body[strings.Index(body, "</style>"):], s) {
				t.Errorf("%s: page has %q:\n%s", c.name, s, body)
			}
		}
	}
}

func TestRefusal(t *testing.T) {
	rs := Refusals[int]{
		0: {Status: 500, Name: "internal", Title: "Broken", Message: "Try later.", Level: slog.LevelError},
		3: {Status: 400, Name: "flow_unknown", Title: "Expired", Message: "Start again.", Level: slog.LevelWarn},
	}
	if got := rs.Of(3); got.Name != "flow_unknown" {
		t.Errorf("Of(3) = %+v", got)
	}
	if got := rs.Of(7); got.Name != "internal" {
		t.Errorf("Of(7), no such row = %+v, want internal's", got)
	}
	if got := (Refusals[int]{}).Of(1); got != (Refusal{}) {
		t.Errorf("Of of an empty table = %+v, want the zero Refusal", got)
	}
	t3 := rs.Of(3)
	if s := t3.ErrorText(nil); s != "flow_unknown" {
		t.Errorf("ErrorText(nil) = %q", s)
	}
	if s := t3.ErrorText(errors.New("state s")); s != "flow_unknown: state s" {
		t.Errorf("ErrorText = %q", s)
	}

	// Log: reason first, then the caller's attributes, then err.
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t3.Log(context.Background(), log, "request refused", []any{"status", 400, "path", "/callback"}, errors.New("boom"))
	t3.Log(context.Background(), log, "request refused", nil, nil)
	t3.Log(context.Background(), nil, "no logger: nothing, no panic", nil, nil)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s", buf.String())
	}
	first := regexp.MustCompile(`"time":"[^"]*",`).ReplaceAllString(lines[0], "")
	if want := `{"level":"WARN","msg":"request refused","reason":"flow_unknown","status":400,"path":"/callback","err":"boom"}`; first != want {
		t.Errorf("log line\n %s\nwant\n %s", first, want)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil || rec["err"] != nil || rec["reason"] != "flow_unknown" {
		t.Errorf("log line without err: %s", lines[1])
	}

	w := httptest.NewRecorder()
	(Refusal{}).Write(w)
	if w.Code != 500 || w.Body.String() != "internal error\n" {
		t.Errorf("Write of the zero Refusal: %d %q, want the plain 500", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	rs.Of(0).Write(w)
	if body := w.Body.String(); w.Code != 500 || !strings.Contains(body, "<h1>Broken</h1>") || !strings.Contains(body, `<p class="lead">Try later.</p>`) ||
		!strings.Contains(body, `class="badge error"`) || w.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("Write: %d %v\n%s", w.Code, w.Header(), body)
	}
}

func TestProviderReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&provider.Error{Class: provider.ClassTransient}, "down"},
		{context.DeadlineExceeded, "down"},
		{&provider.Error{Class: provider.ClassClient}, "unavailable"},
		{&provider.Error{Class: provider.ClassProtocol}, "op"},
		{&provider.Error{Class: provider.ClassDeadGrant}, "op"},
		{errors.New("bad id token"), "op"},
		{nil, "op"},
	} {
		if got := ProviderReason(c.err, "op", "down", "unavailable"); got != c.want {
			t.Errorf("ProviderReason(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestRoutes: each pattern's handler, the 405 handler for another method
// on a pattern's path, the 404 handler elsewhere; and the page headers on
// every answer, the mux's own redirects included.
func TestRoutes(t *testing.T) {
	say := func(s string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(s)) }
	}
	mux := http.NewServeMux()
	Routes(mux, map[string]http.HandlerFunc{
		"GET /p/{id}":  say("get"),
		"POST /p/{id}": say("post"),
		"POST /q":      say("q"),
		"/any":         say("any"),
	}, say("405"), say("404"))
	h := WithHeaders(mux)
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/p/1", "get"}, {"HEAD", "/p/1", "get"}, {"POST", "/p/1", "post"}, {"PUT", "/p/1", "405"},
		{"POST", "/q", "q"}, {"GET", "/q", "405"}, {"DELETE", "/any", "any"},
		{"GET", "/", "404"}, {"GET", "/p", "404"}, {"GET", "/q/x", "404"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if got := w.Body.String(); got != c.want || w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s %s = %q (headers %v), want %q with the page headers", c.method, c.path, got, w.Header(), c.want)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/p/../q", nil))
	if w.Code/100 != 3 || w.Header().Get("Location") != "/q" || w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("the mux's redirect: %d %v", w.Code, w.Header())
	}

	bare := http.NewServeMux()
	Routes(bare, map[string]http.HandlerFunc{"GET /r": say("r")}, nil, nil)
	w = httptest.NewRecorder()
	bare.ServeHTTP(w, httptest.NewRequest("POST", "/r", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Body.String() == "405" {
		t.Errorf("without a 405 handler: %d %q, want the mux's own 405", w.Code, w.Body.String())
	}
}

// TestRandomString: RandomString(32) is always WellFormed, and differs
// each time; WellFormed refuses any other length or alphabet.
func TestRandomString(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		v := RandomString(32)
		if !WellFormed(v) || seen[v] {
			t.Fatalf("RandomString(32) = %q: well formed %v, seen before %v", v, WellFormed(v), seen[v])
		}
		seen[v] = true
	}
	for _, v := range []string{"", RandomString(31), RandomString(33), strings.Repeat("a", 42) + "=", strings.Repeat("a", 42) + "+",
		strings.Repeat("a", 42) + "/", strings.Repeat("é", 21) + "a"} {
		if WellFormed(v) {
			t.Errorf("WellFormed(%q) = true", v)
		}
	}
}
