package main

import (
	"fmt"
	"io"

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
