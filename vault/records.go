package vault

import (
	"encoding/json"
	"time"

	"tagwatch/vault/secret"
)

// User is a person tagwatch acts for.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// SignIns are the identities bound to the user by sign-in links
	// (CommitSignIn), besides the accounts of the user's grants, that
	// may sign in to the user's page (UserBySignIn).
	SignIns []SignIn `json:"sign_ins,omitempty"`
}

// SignIn is an identity at a provider bound to a user by a sign-in link:
// who signed in (a verified ID token's iss and sub), not a grant. No
// token is kept for it.
type SignIn struct {
	// Provider is the provider's name, as grants and links use it.
	Provider string `json:"provider"`
	// Issuer and Subject are the ID token's iss and sub.
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject"`
	// Username is the ID token's preferred_username, for people; never
	// used to match.
	Username string `json:"username,omitempty"`
	// BoundAt is when the link was used.
	BoundAt time.Time `json:"bound_at"`
}

// GrantState is where a grant is in its lifecycle.
type GrantState string

// Grant states.
const (
	GrantActive         GrantState = "active"
	GrantNeedsReconsent GrantState = "needs_reconsent"
	GrantRevoked        GrantState = "revoked"
)

// Grant is a user's consent at one provider: the refresh token (sealed) and
// the cached access token (sealed) with its absolute expiry.
type Grant struct {
	ID       string     `json:"id"`
	UserID   string     `json:"user_id"`
	Provider string     `json:"provider"`
	Issuer   string     `json:"issuer,omitempty"`
	Subject  string     `json:"subject"`
	Username string     `json:"username,omitempty"`
	Scopes   []string   `json:"scopes"`
	State    GrantState `json:"state"`

	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StateSince time.Time `json:"state_since"`

	// AccessExpiry is the cached access token's absolute expiry.
	AccessExpiry time.Time `json:"access_expiry,omitzero"`
	// IDTokenAudience is the audience of the ID token at enrollment; an ID
	// token from a refresh must keep iss, sub and aud.
	IDTokenAudience []string `json:"id_token_aud,omitempty"`

	RefreshCount    int       `json:"refresh_count"`
	LastRefreshAt   time.Time `json:"last_refresh_at,omitzero"`
	LastErrorClass  string    `json:"last_error_class,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
	TransientErrors int       `json:"transient_errors,omitempty"`
	// RefreshInFlight is set (to when it started, by its holder's clock)
	// from the commit before a call to the token endpoint until the commit
	// of its result. Found set by a later refresh, it means the request's
	// outcome is unknown (its daemon died, or the answer was lost), unless
	// RefreshHolder is another daemon that is still alive
	// (DB.BeginRefresh).
	RefreshInFlight time.Time `json:"refresh_in_flight,omitzero"`
	// RefreshHolder is the daemon (DB.Holder, kv.Daemon.ID) whose request
	// the marker stands for; "" when no request is in flight any more
	// (RecordRefreshFailure with KeepMarker handed the unknown outcome
	// over) or the marker predates the field.
	RefreshHolder string `json:"refresh_holder,omitempty"`
	// InFlightRetried is set when the refresh in flight is the one retry
	// allowed after a lost response.
	InFlightRetried bool `json:"in_flight_retried,omitempty"`
	// LostRotations counts refreshes whose response was lost (crash or
	// timeout) and had to be retried.
	LostRotations int `json:"lost_rotations,omitempty"`

	SealedRefresh []byte `json:"sealed_refresh,omitempty"`
	SealedAccess  []byte `json:"sealed_access,omitempty"`
}

// Tokens are a grant's secrets in the clear. They only exist in memory.
type Tokens struct {
	Refresh secret.RefreshToken
	Access  secret.AccessToken
}

// WatchState is where a watch is in its lifecycle.
type WatchState string

// Watch states.
const (
	WatchActive    WatchState = "active"
	WatchPaused    WatchState = "paused"
	WatchSuspended WatchState = "suspended"
)

// WatchSpec is what a watch does: the part an enrollment link carries and
// operators change.
type WatchSpec struct {
	Hashtags        []string `json:"hashtags"`
	Lang            string   `json:"lang,omitempty"`
	IncludeRetweets bool     `json:"include_retweets,omitempty"`
	Schedule        string   `json:"schedule"`
	Targets         []string `json:"targets"`
	// Backfill asks the first run to read the recent past instead of
	// starting from now.
	Backfill bool `json:"backfill,omitempty"`
}

// Watch is a user's standing search.
type Watch struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Provider string `json:"provider"`
	WatchSpec
	State WatchState `json:"state"`
	// SuspendReason is why a suspended watch waits, or, on a paused
	// watch, the suspension it would go back to if resumed.
	SuspendReason SuspendReason `json:"suspend_reason,omitempty"`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`
}

// Cursor is where a watch's next run resumes, and how its last run went.
type Cursor struct {
	WatchID       string    `json:"watch_id"`
	SinceID       string    `json:"since_id,omitempty"`
	Started       bool      `json:"started"`
	LastRunAt     time.Time `json:"last_run_at,omitzero"`
	LastResult    string    `json:"last_result,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastTruncated bool      `json:"last_truncated,omitempty"`
	Runs          int64     `json:"runs"`
	PostsRead     int64     `json:"posts_read"`
	Matches       int64     `json:"matches"`
}

// EnrollmentPurpose says what a consent link is for.
type EnrollmentPurpose string

// Enrollment purposes.
const (
	PurposeEnroll    EnrollmentPurpose = "enroll"
	PurposeReconsent EnrollmentPurpose = "reconsent"
	// PurposeSignIn: the link binds the identity that signs in with it
	// to its user (User.SignIns), for the user's page; it carries no
	// watch and makes no grant (CommitSignIn).
	PurposeSignIn EnrollmentPurpose = "sign-in"
)

// Enrollment is a one-time consent link. Only a hash of its token is kept.
type Enrollment struct {
	// Hash is the hex SHA-256 of the link token; it is the record's key.
	Hash     string            `json:"hash"`
	ID       string            `json:"id"`
	Purpose  EnrollmentPurpose `json:"purpose"`
	UserID   string            `json:"user_id"`
	Provider string            `json:"provider"`
	// Expected, when set, names the identity that must consent: a subject,
	// a username or an email.
	Expected  string     `json:"expected,omitempty"`
	Watch     *WatchSpec `json:"watch,omitempty"`
	GrantID   string     `json:"grant_id,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    time.Time  `json:"used_at,omitzero"`
	Canceled  bool       `json:"canceled,omitempty"`
	// WatchID is the watch a used enrollment link started, or kept when
	// the user had the same one already (WatchKept).
	WatchID   string `json:"watch_id,omitempty"`
	WatchKept bool   `json:"watch_kept,omitempty"`
}

// OutboxState is where a notification is in its lifecycle.
type OutboxState string

// Outbox states.
const (
	OutboxPending   OutboxState = "pending"
	OutboxRetrying  OutboxState = "retrying"
	OutboxDelivered OutboxState = "delivered"
	OutboxDead      OutboxState = "dead"
	OutboxDropped   OutboxState = "dropped"
)

// OutboxRow is one notification to deliver to one target. Its ID is
// deterministic for what it carries, so a repeated enqueue is a no-op and
// every retry reuses it.
type OutboxRow struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"`
	UserID      string          `json:"user_id"`
	WatchID     string          `json:"watch_id,omitempty"`
	Target      string          `json:"target"`
	Payload     json.RawMessage `json:"payload"`
	State       OutboxState     `json:"state"`
	Attempts    int             `json:"attempts"`
	CreatedAt   time.Time       `json:"created_at"`
	NextAttempt time.Time       `json:"next_attempt"`
	DeliveredAt time.Time       `json:"delivered_at,omitzero"`
	LastError   string          `json:"last_error,omitempty"`
	// Progress is how much of a row sent as several messages (a chat
	// digest split to fit its service's message limit) the target has
	// accepted; the next attempt sends the rest. Zero: nothing yet.
	Progress OutboxProgress `json:"progress,omitzero"`
	// SealedSecret holds what the message must carry but the database must
	// not keep in the clear, such as a one-time consent link. Open it with
	// DB.OpenOutboxSecret.
	SealedSecret []byte `json:"sealed_secret,omitempty"`
}

// OutboxProgress is how much of a row delivered as several messages its
// target has accepted: the first Parts of Total messages, carrying the
// first Posts posts of the notice. SettleOutbox keeps it only while it is
// partial (0 < Parts < Total); anything else is stored as the zero value.
type OutboxProgress struct {
	Parts int `json:"parts"`
	Total int `json:"total"`
	Posts int `json:"posts"`
}

// Partial reports whether p records some, but not all, messages of a row.
func (p OutboxProgress) Partial() bool {
	return p.Parts > 0 && p.Parts < p.Total && p.Posts >= 0
}

// Audit event kinds.
const (
	AuditVaultCreated      = "vault_created"
	AuditKeyRotated        = "key_rotated"
	AuditKeyRetired        = "key_retired"
	AuditMasterRotated     = "master_key_rotated"
	AuditEnrollmentCreated = "enrollment_created"
	AuditEnrollmentUsed    = "enrollment_used"
	AuditEnrollmentRefused = "enrollment_refused"
	AuditGrantStored       = "grant_stored"
	AuditGrantState        = "grant_state"
	AuditGrantRevoked      = "grant_revoked"
	AuditLostRotation      = "lost_rotation"
)

// AuditEvent is one entry of the security audit trail. It never carries a
// secret.
type AuditEvent struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Actor   string    `json:"actor,omitempty"`
	UserID  string    `json:"user_id,omitempty"`
	GrantID string    `json:"grant_id,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Revocation is a refresh token still to be revoked at its provider: an
// unenrolled grant's, or one a new consent replaced (Cause). The token
// stays sealed.
type Revocation struct {
	ID       string          `json:"id"`
	Provider string          `json:"provider"`
	GrantID  string          `json:"grant_id"`
	Cause    RevocationCause `json:"cause,omitempty"`
	// Subject is the account the token is for, so that a revocation that
	// would end the whole account (RevocationRule.EndsAccount) can be
	// checked again when it is attempted.
	Subject     string    `json:"subject,omitempty"`
	Sealed      []byte    `json:"sealed"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	CreatedAt   time.Time `json:"created_at"`
}

// Notice kinds: what a user is told.
const (
	NoticeMatch          = "match"
	NoticeEnrolled       = "enrolled"
	NoticeReconsent      = "reconsent_needed"
	NoticeRevoked        = "access_revoked"
	NoticeTargetDisabled = "target_disabled"
	// NoticeAccountDeleted confirms that a user's data was deleted
	// (DeleteUser); it is queued to the targets the user's watches had.
	NoticeAccountDeleted = "account_deleted"
)

// Notice is the payload of an outbox row: the facts a channel renders
// into words (notify/render.go), never the words themselves. A secret it
// must carry (a consent link) is in the row's SealedSecret, not here.
type Notice struct {
	Type     string   `json:"type"`
	UserID   string   `json:"user_id"`
	WatchID  string   `json:"watch_id,omitempty"`
	Provider string   `json:"provider,omitempty"`
	Hashtags []string `json:"hashtags,omitempty"`
	Posts    []Post   `json:"posts,omitempty"`
	// Schedule is the watch's schedule (NoticeEnrolled), rendered as a
	// cadence in words.
	Schedule string `json:"schedule,omitempty"`
	// Resumed says a NoticeEnrolled resumed a suspended watch rather than
	// starting a new one.
	Resumed bool `json:"resumed,omitempty"`
	// Reason is the cause of a NoticeReconsent (the grant's error class).
	Reason string `json:"reason,omitempty"`
	// Target is the label (notify.TargetLabel, never the raw URL) of the
	// target a NoticeTargetDisabled is about.
	Target string `json:"target,omitempty"`
	// Message is what rows written before notices carried facts only
	// held; it is shown when a row has nothing else to render.
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// Post is a matching post as notifications show it.
type Post struct {
	ID             string    `json:"id"`
	Text           string    `json:"text"`
	AuthorID       string    `json:"author_id,omitempty"`
	AuthorUsername string    `json:"author_username,omitempty"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	URL            string    `json:"url,omitempty"`
}
