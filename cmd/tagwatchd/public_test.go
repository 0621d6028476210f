package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tagwatch/notify"
	"tagwatch/vault/renew"
	"tagwatch/worker"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial, and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "tagwatch test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// TestTLSListener serves the public pages over TLS from the configured
// files and picks up a new certificate on SIGHUP.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	s := newSvc(t, fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q", certFile, keyFile), true)
	s.start(0)

	get := func(trust *x509.Certificate) (*http.Response, error) {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		return c.Get(s.public + "/healthz")
	}
	resp, err := get(first)
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET /healthz over TLS = %d %q", resp.StatusCode, body)
	}
	// Plain HTTP on the TLS port is not served.
	if r, err := http.Get(strings.Replace(s.public, "https://", "http://", 1) + "/healthz"); err == nil && r.StatusCode == 200 {
		t.Error("plain HTTP answered 200 on the TLS listener")
	}

	// The daemon's public handler (the pages behind the proxy rules):
	// HSTS on https, and spoofed forwarding headers from an address that
	// is not a trusted proxy change nothing.
	pages := httptest.NewTLSServer(s.op.d.public())
	defer pages.Close()
	plainPBody, plainPHdr := doGet(t, pages.Client(), pages.URL+"/healthz", nil)
	pbody, phdr := doGet(t, pages.Client(), pages.URL+"/healthz", spoof)
	if pbody != plainPBody || fmt.Sprint(phdr) != fmt.Sprint(plainPHdr) || phdr.Get("Strict-Transport-Security") == "" {
		t.Errorf("daemon pages: spoofed %q %v, plain %q %v, want the same with HSTS", pbody, phdr, plainPBody, plainPHdr)
	}

	// SIGHUP reloads the certificate files.
	second := writeCert(t, certFile, keyFile, 2)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := get(second)
		if err == nil {
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 2 {
				t.Errorf("serial after reload = %v", resp.TLS.PeerCertificates[0].SerialNumber)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not served after SIGHUP: %v\n%s", err, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken certificate file keeps the one being served.
	os.WriteFile(certFile, []byte("garbage"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if resp, err := get(second); err != nil {
		t.Errorf("after a reload of a broken file: %v", err)
	} else {
		resp.Body.Close()
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.logs.String(), "http.tls_cert_file") {
		t.Error("the failed reload was not logged")
	}
}

// echo reports what the pages would see of a request.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "remote=%s host=%s scheme=%s xff=%q xfp=%q xfh=%q fwd=%q\n", strings.Split(r.RemoteAddr, ":")[0], r.Host,
		requestScheme(r), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("Forwarded"))
})

func doGet(t *testing.T, c *http.Client, u string, hdr map[string]string) (string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	resp.Header.Del("Date")
	return string(b), resp.Header
}

var spoof = map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.example",
	"Forwarded": "for=203.0.113.9;proto=https"}

func TestProxyHeaders(t *testing.T) {
	untrusted, _ := parseProxies([]string{"10.0.0.0/8", "192.0.2.1"})
	t.Run("spoofed over TLS from an untrusted address changes nothing", func(t *testing.T) {
		srv := httptest.NewTLSServer(publicHandler(echo, untrusted))
		defer srv.Close()
		plainBody, plainHdr := doGet(t, srv.Client(), srv.URL, nil)
		body, hdr := doGet(t, srv.Client(), srv.URL, spoof)
		if body != plainBody || fmt.Sprint(hdr) != fmt.Sprint(plainHdr) {
			t.Errorf("with spoofed headers:\n%s%v\nwithout:\n%s%v", body, hdr, plainBody, plainHdr)
		}
		if !strings.Contains(body, "remote=127.0.0.1 ") || !strings.Contains(body, "scheme=https") || !strings.Contains(body, `xff=""`) {
			t.Errorf("pages saw %s", body)
		}
		if hdr.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS on https")
		}
	})
	t.Run("spoofed https over plain HTTP from an untrusted address", func(t *testing.T) {
		srv := httptest.NewServer(publicHandler(echo, untrusted))
		defer srv.Close()
		plainBody, plainHdr := doGet(t, srv.Client(), srv.URL, nil)
		body, hdr := doGet(t, srv.Client(), srv.URL, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
		if body != plainBody || fmt.Sprint(hdr) != fmt.Sprint(plainHdr) || hdr.Get("Strict-Transport-Security") != "" || !strings.Contains(body, "scheme=http ") {
			t.Errorf("spoofed https: %s %v, want the plain answer %s %v without HSTS", body, hdr, plainBody, plainHdr)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		trusted, _ := parseProxies([]string{"127.0.0.1", "10.0.0.0/8"})
		srv := httptest.NewServer(publicHandler(echo, trusted))
		defer srv.Close()
		body, hdr := doGet(t, srv.Client(), srv.URL, map[string]string{"X-Forwarded-Proto": "https",
			"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.2.3", "X-Forwarded-Host": "tagwatch.example.com"})
		// The right-most address that is not a trusted proxy is the client.
		if !strings.Contains(body, "remote=203.0.113.9 ") || !strings.Contains(body, "host=tagwatch.example.com") ||
			!strings.Contains(body, "scheme=https") || !strings.Contains(body, `xff=""`) {
			t.Errorf("pages saw %s", body)
		}
		if hdr.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS for https at the proxy")
		}
		body, _ = doGet(t, srv.Client(), srv.URL, map[string]string{"X-Forwarded-Host": "evil.example/&x=<y>"})
		if strings.Contains(body, "evil") {
			t.Errorf("a malformed forwarded host was believed: %s", body)
		}
	})
}

func TestJournalHandler(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(newJournalHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Debug("d")
	l.Info("i", "hashtag", "go\n<3>level=ERROR msg=forged")
	l.Warn("w")
	l.Error("e", "n", 1)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{"<7>level=DEBUG msg=d", `<6>level=INFO msg=i hashtag="go\n<3>level=ERROR msg=forged"`, "<4>level=WARN msg=w", "<3>level=ERROR msg=e n=1"}
	if len(lines) != len(want) {
		t.Fatalf("journal lines = %q, want %q", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, lines[i], want[i])
		}
	}
}

func TestErrorRing(t *testing.T) {
	r := newErrorRing(2)
	l := slog.New(r.handler(slog.NewTextHandler(io.Discard, nil))).With("component", "x")
	l.Info("not kept")
	l.Error("first", "err", "a")
	l.Error("second", "err", "b")
	l.Error("third", "err", "c")
	got := r.list()
	if len(got) != 2 || got[0].Message != "third" || got[1].Message != "second" || got[0].Detail != "component=x err=c" {
		t.Errorf("ring = %+v, want third and second, newest first, with attributes", got)
	}
}

func TestMetricsObservers(t *testing.T) {
	m := newMetrics("test")
	m.observeWorker(worker.Event{Kind: worker.EventRun, Lag: 2 * time.Second, PostsRead: 7})
	m.observeWorker(worker.Event{Kind: worker.EventRunFailed, Lag: time.Second})
	m.observeWorker(worker.Event{Kind: worker.EventSkipped})
	m.observeRateLimit("search", 42)
	m.observeNotify(notify.Event{Kind: notify.EventDelivered, Target: "https:hooks.example.com#ab12"})
	m.observeRenew(renew.Event{Kind: renew.EventNeedsReconsent})
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tagwatch_watch_runs_total{result="ok"} 1`, `tagwatch_watch_runs_total{result="failed"} 1`,
		`tagwatch_watch_runs_total{result="skipped"} 1`, "tagwatch_posts_read_total 7", "tagwatch_fire_lag_seconds_count 2",
		`tagwatch_x_rate_limit_remaining{endpoint="search"} 42`, `tagwatch_deliveries_total{channel="https",result="delivered"} 1`,
		`tagwatch_refreshes_total{result="needs_reconsent"} 1`, `tagwatch_build_info{version="test"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
