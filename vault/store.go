package vault

import (
	"time"

	"tagwatch/vault/secret"
)

// Store is the storage contract: the domain methods through which every
// door and component changes or reads tagwatch's records. Each method is
// one whole domain step, atomic on its own (the package documentation
// lists what each promises: atomicity, ordering, errors). It takes no
// transaction and names no storage engine, so a second backend (a later
// PostgreSQL one) implements these methods, not bbolt's cursors.
//
// *DB is the bbolt backend. A backend passes vault/storetest.Run, the
// suite that proves the promises below; consumers keep declaring the
// smaller interfaces they need (worker.Store, notify.Outbox), which every
// Store satisfies.
//
// Lifecycle (open, Close), key management (KeyStatus, RotateDataKey,
// RotateMaster, Reseal, RetireUnusedKeys), Backup and the raw
// transactions (View, Update) are not part of the contract: they belong
// to the bbolt backend and to the offline tools that wire it.
type Store interface {
	// Rules: what a valid watch is (see WatchRules).

	// SetRules replaces the rules the watch and link methods apply.
	SetRules(r WatchRules)
	// CheckWatch applies the rules without storing anything.
	CheckWatch(provider string, spec *WatchSpec) error

	// Watches.

	AddWatch(req NewWatch, actor string, owner ...Owner) (Watch, error)
	ChangeWatch(id string, c WatchChange, actor string, owner ...Owner) (Watch, error)
	PauseWatch(id, actor string, owner ...Owner) (Watch, bool, error)
	ResumeWatch(id, actor string, owner ...Owner) (Watch, bool, error)
	DeleteWatch(id, actor string, owner ...Owner) (Watch, error)
	Watch(id string) (WatchWithCursor, error)
	UserWatch(owner, id string) (WatchWithCursor, error)
	ListWatches(userID string) ([]WatchWithCursor, error)
	RecentMatches(owner, watchID string, n int) ([]Match, error)
	SuspendProviderWatches(provider string, r SuspendReason) ([]string, error)
	ClearProviderWatches(provider string, r SuspendReason) ([]string, error)

	// Users and consent links.

	User(id string) (User, error)
	ListUsers() ([]User, error)
	CreateLink(req LinkRequest) (string, Enrollment, error)
	Link(hash string) (Enrollment, error)
	LinkByID(id string) (Enrollment, error)
	ListLinks(now time.Time) ([]LinkView, error)
	CancelLink(id, actor string) error
	RecordConsentRefused(userID, linkID, provider, detail string) error
	CommitConsent(c Consent) (ConsentResult, error)
	CommitSignIn(c SignInConsent) (SignInResult, error)
	UserBySignIn(provider, issuer, subject string) (User, error)
	DeleteUser(userID string, d UserDeletion) (DeleteUserOutcome, error)

	// Grants and the refresh protocol.

	Grant(id string) (Grant, error)
	UserGrant(userID, provider string) (Grant, error)
	UserGrants(userID string) ([]Grant, error)
	GrantTokens(id string) (Grant, Tokens, error)
	ListGrants() ([]Grant, error)
	BeginRefresh(id, actor string) (RefreshTicket, error)
	CommitRefresh(t RefreshTicket, r RefreshResult) (Grant, error)
	RecordRefreshFailure(t RefreshTicket, f RefreshFailure) error
	MarkNeedsReconsent(grantID string, r Reconsent) (ReconsentOutcome, error)
	UnenrollGrant(grantID string, u Unenroll) (UnenrollOutcome, error)

	// Pending revocations.

	PendingRevocation(id string) (Revocation, secret.RefreshToken, error)
	DueRevocations(now time.Time) ([]string, error)
	SettleRevocation(id, actor string) error
	DeferRevocation(id string, next time.Time, counted bool) (Revocation, error)
	DropRevocation(id, actor, why string) error
	LiveAccountGrants(provider, subject, except string) ([]string, error)

	// Runs.

	RunInput(watchID string) (RunInput, error)
	RunnableWatches(fn func(WatchWithCursor) error) error
	CommitRun(c RunCommit) (RunOutcome, error)

	// Outbox: delivery, maintenance, operator views.

	Enqueue(rows ...OutboxRow) (int, error)
	DueOutboxIDs(now time.Time, fn func(id string) bool) (time.Time, error)
	LoadOutbox(ids []string) ([]OutboxRow, error)
	OpenOutboxSecret(r OutboxRow) (secret.Value, error)
	SettleOutbox(outcomes []OutboxOutcome) ([]OutboxSettled, error)
	ReplayOutbox(id, actor string) (OutboxRow, error)
	OutboxRow(id string) (OutboxRow, error)
	PruneOutbox(cutoff time.Time) (int, error)
	DropOutboxBacklog(maxWaiting int, reason string) ([]OutboxBacklog, error)
	OutboxTallies() ([]OutboxTally, error)
	ListOutbox(state OutboxState, limit int) ([]OutboxRow, error)

	// Audit trail.

	AuditTrail(after uint64, fn func(AuditEvent) error) error
	RecordAudit(ev AuditEvent) error

	// Damaged records (damaged.go): found, reported once, deleted.

	FindDamaged() ([]DamagedRecord, error)
	DamagedRecords() ([]DamagedRecord, error)
	DamagedGrants() ([]DamagedGrant, error)
	DeleteDamaged(kind, id, actor string) (DamagedRecord, error)
	ResetDamagedGrant(id string, r Reconsent) (ReconsentOutcome, error)

	// Providers' rate-limit windows and usage caps.

	SaveRateWindows(ws ...RateWindow) error
	RateWindows() ([]RateWindow, error)
}

var _ Store = (*DB)(nil)
