// Package statusapi is tagwatchd's operator surface: HTTP with JSON over a
// unix socket (default /run/tagwatch/status.sock), in the manner of
// Tailscale's LocalAPI. It holds the wire types, the server side (a Handler
// over a Backend the daemon implements, with a SO_PEERCRED check on every
// connection) and the Go client tagwatchctl uses.
//
// Paths are versioned (/v1/...). Reading needs root, the daemon's own uid
// or membership of the operator group; anything that changes state (every
// method but GET and HEAD) needs root or a uid on the write list, and is
// written to the audit trail with the peer's uid. Requests carrying an
// Origin header are refused, so a browser tricked into talking to the
// socket through a proxy gets nothing. No answer ever carries a secret: the
// wire types have no field for one.
//
// This package must not import the vault, bbolt or anything that opens the
// database: tagwatchctl links it.
package statusapi

import (
	"fmt"
	"time"
)

// Version is the API version, the first element of every path.
const Version = "v1"

// DefaultSocket is where tagwatchd listens by default.
const DefaultSocket = "/run/tagwatch/status.sock"

// Status is the daemon's overall state: GET /v1/status.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Uptime in seconds, at the time of the answer.
	Uptime float64 `json:"uptime_seconds"`
	// Ready is true once the vault's key check passed and every listener is
	// bound; Components says how each part is doing.
	Ready      bool              `json:"ready"`
	Components map[string]string `json:"components,omitempty"`
	Counts     Counts            `json:"counts"`
	// LastErrors are the most recent errors the daemon logged, newest first.
	LastErrors []ErrorEntry `json:"last_errors,omitempty"`
	// Damaged are the stored records the daemon cannot use and skips
	// (damaged.go); empty when every record is sound.
	Damaged []DamagedRecord `json:"damaged,omitempty"`
	// RateLimits are the rate limits holding users' runs now (the
	// provider's per-user windows, the app-wide fair share), by provider
	// and user.
	RateLimits []RateHold `json:"rate_limits,omitempty"`
	// UsageCaps are the providers whose usage cap is in force (their
	// watches suspended until a probe gets through), from the scheduler's
	// state, which a restart keeps.
	UsageCaps []UsageCap `json:"usage_caps,omitempty"`
}

// Counts are the sizes of the vault's collections, by state.
type Counts struct {
	Users  int            `json:"users"`
	Grants map[string]int `json:"grants"`
	// Watches counts the watches by state and, under "invalid", those the
	// daemon's current rules refuse (Watch.Invalid; each is counted in its
	// state too).
	Watches     map[string]int `json:"watches"`
	Outbox      map[string]int `json:"outbox"`
	Enrollments map[string]int `json:"enrollments"`
}

// ErrorEntry is one error the daemon logged.
type ErrorEntry struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	// Detail is the error text, with non-secret context.
	Detail string `json:"detail,omitempty"`
}

// User is a person tagwatch acts for: GET /v1/users.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Grants    int       `json:"grants"`
	Watches   int       `json:"watches"`
	// DamagedGrants and DamagedWatches count the user's grants and
	// watches the daemon cannot use (damaged records, not in Grants and
	// Watches): tagwatchctl damaged lists and repairs them.
	DamagedGrants  int `json:"damaged_grants,omitempty"`
	DamagedWatches int `json:"damaged_watches,omitempty"`
}

// GrantDamaged is the State of a grant the daemon cannot use: its record
// does not decode or its sealed tokens do not open (Grant.Problem says
// which; Grant.Repair the commands that repair it).
const GrantDamaged = "damaged"

// Grant is a grant's health, never its tokens: GET /v1/grants.
type Grant struct {
	ID           string    `json:"id"`
	UserID       string    `json:"user_id"`
	Provider     string    `json:"provider"`
	Subject      string    `json:"subject"`
	Username     string    `json:"username,omitempty"`
	Scopes       []string  `json:"scopes"`
	State        string    `json:"state"`
	StateSince   time.Time `json:"state_since"`
	CreatedAt    time.Time `json:"created_at"`
	AccessExpiry time.Time `json:"access_expiry,omitzero"`
	// LastRefresh is when a refresh last succeeded.
	LastRefresh    time.Time `json:"last_refresh,omitzero"`
	RefreshCount   int       `json:"refresh_count"`
	LastErrorClass string    `json:"last_error_class,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	// RefreshInFlight is when the refresh now in flight started (zero when
	// none is); set at start-up it means the daemon died during one.
	RefreshInFlight time.Time `json:"refresh_in_flight,omitzero"`
	// RefreshHolder is the daemon (its id, as `tagwatchctl daemons` lists
	// it) whose refresh the marker stands for; empty when none is in
	// flight, or when its outcome is unknown and the next refresh, on any
	// daemon, is the retry (vault.Grant.RefreshHolder).
	RefreshHolder string `json:"refresh_holder,omitempty"`
	LostRotations int    `json:"lost_rotations,omitempty"`
	// NeedsReconsentSince is set while the grant waits for a new consent.
	NeedsReconsentSince time.Time `json:"needs_reconsent_since,omitzero"`
	// Problem is, for a damaged grant (State GrantDamaged), what is
	// wrong; only ID, UserID, Provider, State, Problem and Repair are
	// set then (nothing else of it can be read).
	Problem string `json:"problem,omitempty"`
	// Repair are the commands that repair a damaged grant.
	Repair []string `json:"repair,omitempty"`
}

// Watch is a watch with its schedule and how its runs went: GET /v1/watches.
type Watch struct {
	ID              string   `json:"id"`
	UserID          string   `json:"user_id"`
	Provider        string   `json:"provider"`
	Hashtags        []string `json:"hashtags"`
	Lang            string   `json:"lang,omitempty"`
	IncludeRetweets bool     `json:"include_retweets,omitempty"`
	Schedule        string   `json:"schedule"`
	// Targets are where notifications go; webhook URLs are shown without
	// their path and query (which often carry a token), with a short hash
	// that tells two URLs of one host apart.
	Targets       []string  `json:"targets"`
	State         string    `json:"state"`
	SuspendReason string    `json:"suspend_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// NextRun is when the watch next asks its provider: the scheduler's
	// next fire or, while a rate limit holds its user's runs
	// (RateLimited) or its provider's usage cap holds it (UsageCap), the
	// first fire at or after the hold's end or the planned probe (the
	// fires before it ask nothing). Zero when it is not scheduled (paused,
	// suspended for its grant, refused, its grant damaged) or the
	// scheduler is not running.
	NextRun    time.Time `json:"next_run,omitzero"`
	LastRunAt  time.Time `json:"last_run_at,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	// Cursor is the since_id the next run resumes from.
	Cursor    string `json:"cursor,omitempty"`
	Runs      int64  `json:"runs"`
	PostsRead int64  `json:"posts_read"`
	Matches   int64  `json:"matches"`
	// Invalid is set when the daemon's current rules refuse the watch (it
	// was stored under other rules: a lower scheduler.min_interval, a
	// channel since removed): the rule's message, such as `schedule
	// "@every 5m" runs every 5m0s; the minimum between runs of one watch is
	// 20m0s (scheduler.min_interval)`. Such a watch is not scheduled and
	// not run, whatever its state, until the rules or the watch change.
	Invalid string `json:"invalid,omitempty"`
	// RateLimited is set while a rate limit holds the runs of the watch's
	// user at its provider: which window, which endpoint, until when.
	RateLimited *RateHold `json:"rate_limited,omitempty"`
	// UsageCap is set while its provider's usage cap holds the watch
	// (suspended by it, or active and added since): its next run is the
	// probe (NextRun).
	UsageCap *UsageCap `json:"usage_cap,omitempty"`
	// Held says why the watch does not run until an operator repairs
	// something, whatever its state: "its grant g1 is damaged (tagwatchctl
	// damaged)" while its user's grant at its provider is damaged.
	Held string `json:"held,omitempty"`
}

// WatchSpec is what a watch does, as operators write it.
type WatchSpec struct {
	Hashtags        []string `json:"hashtags"`
	Lang            string   `json:"lang,omitempty"`
	IncludeRetweets bool     `json:"include_retweets,omitempty"`
	Schedule        string   `json:"schedule"`
	Targets         []string `json:"targets"`
	Backfill        bool     `json:"backfill,omitempty"`
}

// AddWatch asks for a new watch of a user who has a grant at Provider:
// POST /v1/watches.
type AddWatch struct {
	UserID   string `json:"user_id"`
	Provider string `json:"provider"`
	WatchSpec
}

// ChangeWatch changes the fields that are set: PATCH /v1/watches/{id}.
type ChangeWatch struct {
	Hashtags        []string `json:"hashtags,omitempty"`
	Lang            *string  `json:"lang,omitempty"`
	IncludeRetweets *bool    `json:"include_retweets,omitempty"`
	Schedule        *string  `json:"schedule,omitempty"`
	Targets         []string `json:"targets,omitempty"`
}

// Outbox is the notification queue: GET /v1/outbox.
type Outbox struct {
	Targets []OutboxTarget `json:"targets"`
	// Rows are the rows in the state asked for (?state=dead by default).
	Rows []OutboxRow `json:"rows"`
}

// OutboxTarget counts one target's rows by state.
type OutboxTarget struct {
	Target    string `json:"target"`
	Pending   int    `json:"pending"`
	Retrying  int    `json:"retrying"`
	Dead      int    `json:"dead"`
	Dropped   int    `json:"dropped"`
	Delivered int    `json:"delivered"`
	// OldestWaiting is the creation time of the oldest pending or retrying row.
	OldestWaiting time.Time `json:"oldest_waiting,omitzero"`
}

// OutboxRow is one notification without its payload or sealed secret.
type OutboxRow struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	UserID      string    `json:"user_id"`
	WatchID     string    `json:"watch_id,omitempty"`
	Target      string    `json:"target"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// AuditEvent is one entry of the audit trail: GET /v1/audit.
type AuditEvent struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Actor   string    `json:"actor,omitempty"`
	UserID  string    `json:"user_id,omitempty"`
	GrantID string    `json:"grant_id,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// AuditQuery selects audit events: GET /v1/audit?after=N&before=M&limit=L&newest=true.
// The events are those with a sequence number above After and, when Before
// is set, below Before; when more than Limit match, Newest takes the
// newest Limit of them, else the oldest. Either way they come oldest first.
type AuditQuery struct {
	After  uint64
	Before uint64 // 0: no upper bound
	Limit  int    // 1 to MaxAuditLimit; 0 for the default, 100
	Newest bool
}

// MaxAuditLimit is the most events one GET /v1/audit returns.
const MaxAuditLimit = 10000

// EnrollRequest asks for a one-time consent link: POST /v1/enrollments.
type EnrollRequest struct {
	UserID    string `json:"user_id"`
	UserName  string `json:"user_name,omitempty"`
	UserEmail string `json:"user_email,omitempty"`
	Provider  string `json:"provider"`
	// Expected, when set, is the identity that must consent.
	Expected string     `json:"expected,omitempty"`
	Watch    *WatchSpec `json:"watch,omitempty"`
	// SignIn asks for a sign-in link: it binds the identity that signs
	// in with it to the user (an existing one), for the user's page, at
	// an OpenID Connect provider; it carries no watch and makes no grant.
	SignIn bool `json:"sign_in,omitempty"`
	// TTL is the link's lifetime as a Go duration ("72h"); empty for the
	// configured default.
	TTL string `json:"ttl,omitempty"`
}

// EnrollResponse carries the new link. The link is shown this once: the
// daemon keeps only its hash.
type EnrollResponse struct {
	Link       string     `json:"link"`
	Enrollment Enrollment `json:"enrollment"`
}

// Enrollment is a consent link without its token: GET /v1/enrollments.
type Enrollment struct {
	ID        string     `json:"id"`
	Purpose   string     `json:"purpose"`
	State     string     `json:"state"`
	UserID    string     `json:"user_id"`
	Provider  string     `json:"provider"`
	Expected  string     `json:"expected,omitempty"`
	Watch     *WatchSpec `json:"watch,omitempty"`
	GrantID   string     `json:"grant_id,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    time.Time  `json:"used_at,omitzero"`
}

// Keys describes the keyring without revealing a key: GET /v1/keys.
type Keys struct {
	MasterID string    `json:"master_id"`
	Active   uint32    `json:"active"`
	DataKeys []DataKey `json:"data_keys"`
}

// DataKey is one data key and how many sealed fields use it.
type DataKey struct {
	ID      uint32    `json:"id"`
	Created time.Time `json:"created"`
	Records int       `json:"records"`
}

// RotateResult is the answer of POST /v1/keys/rotate.
type RotateResult struct {
	Active uint32 `json:"active"`
}

// Done is the answer of a change that has nothing else to say.
type Done struct {
	OK bool `json:"ok"`
}

// RevokeResult answers POST /v1/grants/{id}/revoke. The grant is revoked
// here whenever the answer is 2xx (tokens deleted, the user's watches at
// its provider suspended, the user told); the other fields say how far
// the revocation at the provider got. It has Done's ok field, so clients
// that read Done still read it.
type RevokeResult struct {
	OK bool `json:"ok"`
	// RevokedAtProvider: the provider confirmed the revocation of the
	// refresh token (RFC 7009).
	RevokedAtProvider bool `json:"revoked_at_provider,omitempty"`
	// Queued: the provider could not be reached or refused; the
	// revocation stays queued, sealed, and the daemon retries it.
	Queued bool `json:"queued,omitempty"`
	// AlreadyRevoked: the grant was revoked before; nothing changed.
	AlreadyRevoked bool `json:"already_revoked,omitempty"`
}

// Error is the body of every answer that is not 2xx.
type Error struct {
	// Code is a stable word for scripts: bad_request, forbidden,
	// not_found, conflict, unavailable, too_large, internal.
	Code    string `json:"code"`
	Message string `json:"error"`
	// Status is the HTTP status; not on the wire.
	Status int `json:"-"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}
