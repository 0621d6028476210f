package statusapi

import "time"

// Windows of a RateHold.
const (
	// HoldPerUser: the provider's own rate-limit window of the endpoint
	// for the user is spent (its answers said so, or it answered 429).
	HoldPerUser = "per_user"
	// HoldFairShare: the user has used their fair share of the
	// provider's app-wide request window (scheduler.app_requests_per_window).
	HoldFairShare = "app_fair_share"
)

// RateHold is a rate limit holding a user's runs at a provider, without a
// request, until it resets: in Watch.RateLimited and Status.RateLimits.
type RateHold struct {
	Provider string `json:"provider"`
	// UserID is the user held; empty for a window kept from before a
	// restart whose user the daemon has not seen run since.
	UserID string `json:"user_id,omitempty"`
	// Endpoint is the provider's endpoint the window counts (X:
	// /2/tweets/search/recent).
	Endpoint string `json:"endpoint"`
	// Window is HoldPerUser or HoldFairShare.
	Window string `json:"window"`
	// Until is when the user's runs go on again.
	Until time.Time `json:"until"`
}

// UsageCap is a provider's usage cap while it is in force: the provider
// answered that the app's usage cap is reached, so its watches are
// suspended and make no request; one run probes it at NextProbe, and the
// first probe that gets through resumes them all. An operator's manual
// run of one of its watches (POST /v1/watches/{id}/run) probes at once.
// In Status.UsageCaps and Watch.UsageCap.
type UsageCap struct {
	Provider string `json:"provider"`
	// Watches is how many of the provider's watches the cap suspends
	// (in Status.UsageCaps; 0 in Watch.UsageCap).
	Watches int `json:"watches,omitempty"`
	// NextProbe is when the probe asks the provider: the first run of
	// one of the provider's watches at or after the planned time, the
	// earliest NextRun of its watches (Watch.NextRun).
	NextProbe time.Time `json:"next_probe"`
	// Probing is true while a probe is asking the provider.
	Probing bool `json:"probing,omitempty"`
}
