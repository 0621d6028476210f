package renewtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// EditTokenAnswers is an http.RoundTripper that edits a token endpoint's
// JSON answers on their way back, so a provider's server (the sandbox, a
// crafted issuer) answers as another provider does: every 200 answer to a
// request whose path ends in /token is decoded, given to Edit and sent on
// re-encoded. Other answers pass as they are. For Options.Transport, or a
// provider's HTTP client.
type EditTokenAnswers struct {
	// Base carries the requests; default http.DefaultTransport.
	Base http.RoundTripper
	// Edit changes an answer's JSON object in place.
	Edit func(answer map[string]any)
}

// RoundTrip implements http.RoundTripper. An answer that does not decode
// as a JSON object is an error.
func (a EditTokenAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	base := a.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/token") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	a.Edit(m)
	body, _ = json.Marshal(m)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}
