package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault/seal"
)

// certReloader serves the public listener's certificate and reloads it
// from its files on SIGHUP. A reload that fails keeps the old certificate.
// Safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) reload() error {
	// Read as every file of the configuration is (seal.ReadFile): a FIFO
	// or a directory at either path is an error at once, not a hang.
	certPEM, err := seal.ReadFile(c.certFile, seal.MaxFileSize)
	if err != nil {
		return fmt.Errorf("http.tls_cert_file: %w", err)
	}
	keyPEM, err := seal.ReadFile(c.keyFile, seal.MaxSecretSize)
	if err != nil {
		return fmt.Errorf("http.tls_cert_file: key: %w", err)
	}
	defer clear(keyPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("http.tls_cert_file: %w", err)
	}
	c.cert.Store(&cert)
	return nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// listener wraps the public listener in TLS (1.2 or later).
func (c *certReloader) listener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate,
		NextProtos: []string{"http/1.1"}})
}

// proxies decides whose X-Forwarded-* headers are believed: only those of
// a direct peer in the trusted list.
type proxies []netip.Prefix

// parseProxies reads http.trusted_proxies with the configuration's own
// rule (config.HTTP.TrustedPrefixes), the one Parse applies.
func parseProxies(list []string) (proxies, error) {
	ps, err := config.HTTP{TrustedProxies: list}.TrustedPrefixes()
	if err != nil {
		return nil, fmt.Errorf("http.trusted_proxies: %w", err)
	}
	return ps, nil
}

func (ps proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type schemeKey struct{}

// requestScheme is "https" when the request reached the daemon over TLS or
// a trusted proxy said it reached the proxy over TLS.
func requestScheme(r *http.Request) string {
	if s, ok := r.Context().Value(schemeKey{}).(string); ok {
		return s
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// publicHandler puts the proxy rules and HSTS in front of the public pages.
// From a trusted proxy, X-Forwarded-For gives the client's address (the
// right-most address not itself a trusted proxy), X-Forwarded-Proto the
// scheme and X-Forwarded-Host the host. From anyone else these headers are
// removed before the pages see the request, so a spoofed one changes
// nothing. Answers on https carry Strict-Transport-Security.
func publicHandler(next http.Handler, trusted proxies) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err == nil && trusted.trusted(peer.Addr()) {
			if p := lastValue(r.Header.Values("X-Forwarded-Proto")); p == "https" || p == "http" {
				scheme = p
			}
			if h := lastValue(r.Header.Values("X-Forwarded-Host")); h != "" && validHost(h) {
				r.Host = h
			}
			if c, ok := forwardedClient(r.Header.Values("X-Forwarded-For"), trusted); ok {
				r.RemoteAddr = netip.AddrPortFrom(c, 0).String()
			}
		}
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"} {
			r.Header.Del(h)
		}
		if scheme == "https" {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), schemeKey{}, scheme)))
	})
}

// lastValue returns the last comma-separated element of the header's
// values: the one the nearest proxy added.
func lastValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// forwardedClient walks X-Forwarded-For from the right, skipping trusted
// proxies, and returns the first address that is not one.
func forwardedClient(vs []string, trusted proxies) (netip.Addr, bool) {
	var all []string
	for _, v := range vs {
		all = append(all, strings.Split(v, ",")...)
	}
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		if !trusted.trusted(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func validHost(h string) bool {
	if len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !(c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// public is the public listener's handler: the consent pages behind the
// proxy rules and HSTS. (The configuration's check already refused a
// trusted_proxies entry that does not parse.)
func (d *daemon) public() http.Handler {
	ps, err := parseProxies(d.cfg.HTTP.TrustedProxies)
	if err != nil {
		d.log.Error("trusted proxies ignored", "err", err)
		ps = nil
	}
	return publicHandler(d.handler(), ps)
}
