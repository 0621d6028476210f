package xsource

import (
	"tagwatch/worker"
	"tagwatch/worker/xapi"
)

// A Source keeps X's rate-limit windows for the worker across restarts.
var _ worker.RateWindowKeeper = (*Source)(nil)

// SearchEndpoint is the X endpoint a watch's searches count against.
func (s *Source) SearchEndpoint() string { return xapi.EndpointSearch }

// ChangedRateWindows returns the X client's windows whose hold began or
// moved since the last call (xapi.Client.ChangedRateWindows); none for a
// rules-only Source.
func (s *Source) ChangedRateWindows() []worker.RateWindow {
	if s.c == nil {
		return nil
	}
	ws := s.c.ChangedRateWindows()
	if len(ws) == 0 {
		return nil
	}
	out := make([]worker.RateWindow, len(ws))
	for i, w := range ws {
		out[i] = worker.RateWindow(w)
	}
	return out
}

// RestoreRateWindows gives the X client windows kept before a restart
// (xapi.Client.RestoreRateWindows).
func (s *Source) RestoreRateWindows(ws []worker.RateWindow) {
	if s.c == nil || len(ws) == 0 {
		return
	}
	in := make([]xapi.RateWindow, len(ws))
	for i, w := range ws {
		in[i] = xapi.RateWindow(w)
	}
	s.c.RestoreRateWindows(in)
}
