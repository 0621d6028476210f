package selfservice

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"tagwatch/vault/provider"
)

// signRaw signs header and claims exactly as given (RS256, testKey): the
// fuzzer's bytes reach the claim checks, not only the signature check.
func signRaw(header, claims []byte) string {
	in := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, testKey(), crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// hydraToken is the header and claims Ory Hydra v2.3.0 sent
// (vault/hydratest/testdata/logout_token_claims.json), made current for op.
func hydraToken(t testing.TB, op *fakeOP) (header, claims map[string]any) {
	b, err := os.ReadFile("../hydratest/testdata/logout_token_claims.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Header map[string]any `json:"header"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Header["kid"] = testKID
	rec.Claims["iss"], rec.Claims["aud"], rec.Claims["iat"], rec.Claims["jti"] = op.srv.URL, []string{testClientID}, time.Now().Unix(), rand.Text()
	return rec.Header, rec.Claims
}

// TestHydraRecordedShape: the logout token Hydra sent, with its own claim
// names and header, is accepted (signed with the test key, made current).
func TestHydraRecordedShape(t *testing.T) {
	t.Parallel()
	e, op := fakeEnv(t, Config{}, false)
	h, c := hydraToken(t, op)
	if p := e.postLogout(tokenForm(signJWT(testKey(), h, c))); p.status != http.StatusOK {
		t.Errorf("Hydra's recorded logout token shape = %v, want 200", p)
	}
}

// FuzzLogoutToken: whatever the header and claims of a logout token (signed
// with the provider's key, so they reach every claim check) or whatever
// the posted string, the endpoint never panics, answers 200 or 400 with
// no-store, and accepts only a token that meets every rule.
func FuzzLogoutToken(f *testing.F) {
	e, op := fakeEnv(f, Config{}, false)
	h := e.svc.Handler()
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	hh, hc := hydraToken(f, op)
	f.Add(enc(hh), enc(hc), "")
	valid := logoutClaims(op)
	f.Add(enc(map[string]any{"alg": "RS256", "kid": testKID, "typ": "logout+jwt"}), enc(valid), "")
	f.Add(enc(map[string]any{"alg": "RS256", "kid": testKID}), enc(map[string]any{"iss": op.srv.URL, "aud": testClientID, "iat": time.Now().Unix(),
		"jti": "j", "events": map[string]any{provider.BackChannelLogoutEvent: map[string]any{}}, "sub": "alice", "nonce": "n"}), "")
	f.Add([]byte(`{"alg":"RS256","kid":"`+testKID+`","typ":["JWT"]}`), []byte(`{"iss":"`+op.srv.URL+`","aud":[],"events":null}`), "")
	f.Add([]byte(`{"alg":"none"}`), []byte(`{}`), "")
	f.Add([]byte(nil), []byte(nil), "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add([]byte(nil), []byte(nil), "a.b.c.d")
	f.Add([]byte(nil), []byte(nil), "")
	f.Fuzz(func(t *testing.T, header, claims []byte, raw string) {
		tok := raw
		if len(header) > 0 || len(claims) > 0 {
			tok = signRaw(header, claims)
		}
		req := httptest.NewRequest(http.MethodPost, Prefix+"/backchannel-logout", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("answer %d without Cache-Control no-store", rec.Code)
		}
		switch rec.Code {
		case http.StatusBadRequest:
			var body struct{ Error, Description string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "invalid_request" {
				t.Fatalf("400 with body %q, want a JSON invalid_request", rec.Body.String())
			}
			return
		case http.StatusOK:
		default:
			t.Fatalf("status %d, want 200 or 400", rec.Code)
		}
		// Accepted: every rule must hold.
		var hd map[string]any
		var c map[string]json.RawMessage
		if json.Unmarshal(header, &hd) != nil || json.Unmarshal(claims, &c) != nil {
			t.Fatalf("accepted a token whose header or claims are not JSON objects: %q %q", header, claims)
		}
		if typ, ok := hd["typ"]; ok {
			s, _ := typ.(string)
			if s = strings.TrimPrefix(strings.ToLower(s), "application/"); s != "jwt" && s != "logout+jwt" && typ != nil {
				t.Fatalf("accepted typ %v", typ)
			}
		}
		str := func(k string) string {
			var s string
			_ = json.Unmarshal(c[k], &s)
			return s
		}
		var aud any
		_ = json.Unmarshal(c["aud"], &aud)
		var iat float64
		_ = json.Unmarshal(c["iat"], &iat)
		var events map[string]json.RawMessage
		_ = json.Unmarshal(c["events"], &events)
		var ev map[string]any
		_, hasNonce := c["nonce"]
		if str("iss") != op.srv.URL || !strings.Contains(string(c["aud"]), `"`+testClientID+`"`) || str("jti") == "" ||
			json.Unmarshal(events[provider.BackChannelLogoutEvent], &ev) != nil || ev == nil || hasNonce ||
			str("sub") == "" && str("sid") == "" || time.Since(time.Unix(int64(iat), 0)) > 3*time.Minute+time.Minute {
			t.Fatalf("accepted a logout token that breaks a rule: header %s claims %s", header, claims)
		}
	})
}
