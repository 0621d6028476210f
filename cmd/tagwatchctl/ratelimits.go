package main

import (
	"fmt"
	"io"
	"strings"

	"tagwatch/cmd/internal/statusapi"
)

// windowText names a hold's window for operators.
func windowText(window string) string {
	switch window {
	case statusapi.HoldPerUser:
		return "the provider's per-user window"
	case statusapi.HoldFairShare:
		return "the user's fair share of the app-wide window"
	}
	return window + " window"
}

// holdText is a rate-limit hold as the watches table shows it: "rate
// limited until 2026-11-26 12:15:01Z (the provider's per-user window of
// /2/tweets/search/recent at x)".
func holdText(h statusapi.RateHold) string {
	return fmt.Sprintf("rate limited until %s (%s of %s at %s)", h.Until.UTC().Format("2006-01-02 15:04:05Z"),
		windowText(h.Window), h.Endpoint, h.Provider)
}

// printRateLimits writes status's "rate limited:" section: one line per
// hold, naming the provider, the endpoint, the user, the window and until
// when. Nothing when no rate limit holds a run.
func printRateLimits(w io.Writer, hs []statusapi.RateHold) {
	if len(hs) == 0 {
		return
	}
	fmt.Fprintln(w, "rate limited:")
	for _, h := range hs {
		user := h.UserID
		if user == "" {
			user = "(a user not seen since the restart)"
		}
		fmt.Fprintf(w, "  %s %s  user %s  %s  until %s\n", h.Provider, h.Endpoint, user, windowText(h.Window), when(h.Until))
	}
}

// printUsageCaps writes status's "usage capped:" section: one line per
// provider whose usage cap is in force, with how many watches it
// suspends, the next probe and how to probe now. Nothing when no cap is
// in force.
func printUsageCaps(w io.Writer, cs []statusapi.UsageCap) {
	if len(cs) == 0 {
		return
	}
	fmt.Fprintln(w, "usage capped:")
	for _, c := range cs {
		probe := "next probe " + when(c.NextProbe)
		if c.Probing {
			probe = "probing now"
		}
		fmt.Fprintf(w, "  %s  %s suspended  %s; tagwatchctl watches run WATCH probes now\n", c.Provider,
			plural(c.Watches, "watch", "watches"), probe)
	}
}

// nextRunText is a watch's NEXT RUN: when(t), and ", probe" in the
// parentheses while its provider's usage cap holds it (the run is the
// cap's probe): "2026-11-30 10:52:09Z (in 59m58s, probe)".
func nextRunText(w statusapi.Watch) string {
	s := when(w.NextRun)
	if w.UsageCap != nil && strings.HasSuffix(s, ")") {
		s = strings.TrimSuffix(s, ")") + ", probe)"
	}
	return s
}

// plural is "1 watch", "2 watches".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
