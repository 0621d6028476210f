// Package vault keeps tagwatch's state: users, grants with their sealed
// tokens, one-time consent links, watches and their cursors, the
// notification outbox, pending revocations and an audit trail of security
// events. It owns the domain's transitions (domain.go) and the storage
// contract (Store); *DB implements it on one bbolt file.
//
// # Layers
//
// Doors (the status socket, the offline subcommands, the consent pages,
// the configuration, the daemon's own reactions) call the domain methods
// of Store. Each method is one whole domain step: it reads, applies the
// transition methods of the records (Watch.Pause, Watch.Resume,
// Watch.Suspend, Watch.Clear, Grant.SetState, Enrollment.Usable) and the
// watch rules (WatchRules), and writes, in one transaction. Doors call
// these methods rather than open read-write transactions of their own; the
// worker and the notifier declare the smaller interfaces they need
// (worker.Store, notify.Outbox), which *DB satisfies. DB.View, DB.Update
// and *Tx remain for the bbolt backend's own wiring and its tests; they
// are not part of the contract.
//
// # The contract
//
// Store lists the methods a backend implements; vault/storetest.Run is
// the suite that proves them, run against *DB on bbolt
// (TestStoreContract), on bbolt with every update run twice
// (TestStoreContractRunTwice) and on PostgreSQL
// (TestStoreContractPostgres: Options.Engine, vault/kv/pgkv). Another
// backend implements every Store method with the promises listed here by
// record, reusing the record types and their transitions (domain.go) and
// the typed errors, and passes the same suite; it keeps the invariants CheckConsistency checks (the Inv*
// constants but InvPages, which is bbolt's). Not part of the contract:
// lifecycle (Open, Close), key management, Backup, CheckConsistency
// itself, View and Update. What holds for every method:
//
//   - Atomic: a method that changes records changes all of them or, on
//     any error, none (one transaction). The exceptions say so:
//     PruneOutbox and DropOutboxBacklog commit in batches.
//   - Durable: a change is on disk (fsynced) when the method returns nil,
//     and survives a crash or a reopen.
//   - Serializable: concurrent calls behave as if run one after another;
//     a method's reads and writes see one state (the batch methods above:
//     each batch does). Every method is safe for concurrent use; callbacks
//     (RunnableWatches, DueOutboxIDs, AuditTrail) must not call the store
//     (CheckWatch, which reads nothing, excepted).
//   - No network I/O inside a method: callers do their HTTP first and
//     commit what they learnt.
//   - Records returned are copies; changing them changes nothing stored.
//   - Errors name the record and branch with errors.Is/As:
//     *NotFoundError (errors.Is ErrNotFound: `watch "x" does not exist`);
//     *TransitionError (errors.Is ErrConflict: the record is not in a
//     state that allows the change, or a fence refused a stale caller);
//     *InvalidError (errors.Is ErrInvalid: a request that breaks a domain
//     rule, or a watch the rules refuse); ErrDuplicateWatch (errors.Is
//     ErrExists); *NeedsConsentError (errors.Is ErrNeedsConsent);
//     *DamagedError (errors.Is ErrDamaged: `watch "x" is damaged:
//     invalid character ...`, a lookup of a record that cannot be used).
//     Anything else is the store's own failure (a closed or damaged
//     file), and nothing was changed.
//   - Damaged records are isolated: a method that scans (RunnableWatches,
//     the List* views, LoadOutbox, DueRevocations, AuditTrail, tallies,
//     pruning, key re-sealing) skips a record that does not decode or
//     whose sealed field does not open, so one damaged record never stops
//     the others; a method that reads that one record answers its
//     *DamagedError and changes nothing.
//   - Actors: methods that take an actor write it to the audit trail in
//     the same transaction as the change.
//
// # Rules (rules.go)
//
// SetRules installs the WatchRules (worker.Rules) every method below that
// stores a watch applies: AddWatch, ChangeWatch, CreateLink and
// CommitConsent store the spec as the rules normalised it, or nothing and
// an *InvalidError naming the watch. CheckWatch applies them without
// storing. A store without rules refuses those methods. Rules are
// configuration, not data: a reopened store needs them set again.
//
// # Watches (watches.go)
//
// AddWatch applies the rules (a watch the rules refuse is *InvalidError,
// nothing stored), refuses a user without a grant at the provider
// (*InvalidError) and a watch the user has already (WatchSpec.Same:
// ErrDuplicateWatch, with the existing watch returned), and stores the
// watch active when the user's grant is active, suspended with the
// grant's cause otherwise. ChangeWatch applies the change and the rules to
// the result, and refuses a change that makes the watch the same as
// another of the user's (ErrDuplicateWatch); the watch's state does not
// change. PauseWatch, ResumeWatch
// move a watch by Watch.Pause and Watch.Resume (against the state of the
// user's grant, read in the same transaction: a paused watch whose grant
// is dead goes back to suspended, never active); they report whether the
// watch changed, and a refused resume is a *TransitionError.
// DeleteWatch removes the watch, its cursor and its seen index together.
// SuspendProviderWatches and ClearProviderWatches apply Watch.Suspend and
// Watch.Clear to every watch of a provider in one transaction (the usage
// cap) and return the ids that changed. Watch and ListWatches read a
// watch with its cursor (ListWatches in id order). Unknown ids:
// *NotFoundError.
//
// Owner scope: AddWatch, ChangeWatch, PauseWatch, ResumeWatch and
// DeleteWatch take an optional Owner, which a door acting for one user
// (the user's page) always passes. The owner check is made in the
// method's own transaction: a watch of another user is answered exactly
// as a missing one (the same *NotFoundError, `watch "x" does not exist`),
// nothing changes and nothing is audited; AddWatch refuses another
// user's grant exactly as a missing grant (*InvalidError). Without an
// Owner (the operator's doors, the daemon's reactions) the methods reach
// every watch; an Owner without a user, or two, is *InvalidError.
// UserWatch(owner, id) reads a watch with its cursor under the same rule.
// RecentMatches(owner, id, n) reads (one read transaction) the last n
// posts a watch queued, newest first, each once across its targets, from
// the watch's match digests in the outbox: they last as long as those
// rows (PruneOutbox); the seen index keeps ids only. An empty owner is
// the operator's read; n < 1 is *InvalidError.
//
// # Consent links and users (consent.go)
//
// CreateLink checks the request (fields, a re-consent link's grant, the
// link's watch against the rules: *InvalidError, *NotFoundError) and then,
// in one transaction, creates or updates the user and stores the link
// under the SHA-256 of a fresh token, which it returns and keeps nowhere.
// CommitConsent consumes a link exactly once: of any number of concurrent
// commits of one link, exactly one succeeds and the others get a
// *TransitionError and change nothing; an expired or canceled link is a
// *TransitionError; the link's watch is checked against the rules again
// (*InvalidError, link left unused). In the same transaction it stores the
// grant (sealed tokens; a revoked grant is replaced, never revived), clears
// the grant causes of the user's watches at the provider, starts the
// link's watch unless the user has the same one (then keeps and resumes
// it: one watch, not two, AuditWatchKept, Enrollment.WatchKept for the
// page), and queues a NoticeEnrolled per target of each watch started or
// resumed with a deterministic id. The account: one grant per user and
// provider; a re-consent must be the grant's subject, and an enrollment
// link signed in as another account than the user's live grant is refused
// (ErrWrongAccount) unless the link named that account (Expected): then
// the grant moves to it (AuditAccountSwitched) and its old token is
// retired as below. The refresh token a consent replaces is retired by
// the provider's rule (Consent.Revocation, from
// provider.Provider.Revocation), in the same transaction: queued exactly
// once for revocation at the provider (a pending revocation with cause
// RevocationReplaced, AuditRevocationQueued) when revoking ends only its
// own grant (RFC 7009; Ory Hydra), or left to expire with
// AuditRevocationSkipped saying why when the provider cannot revoke or
// revoking would end a live grant of the same account (X ends the app's
// whole authorization for the user). CancelLink makes a pending link unusable (a used one:
// *TransitionError; canceling twice changes nothing). Link, LinkByID,
// ListLinks (newest first, without token hashes), User and ListUsers (id
// order) read. RecordConsentRefused appends one audit entry.
// CommitConsent refuses a sign-in link (*InvalidError): it makes no
// grant, whatever the flow brought back.
//
// # Sign-ins (signins.go)
//
// Who may sign in to a user's page: the account of any of the user's
// grants (its subject at its provider, in any state; its issuer must
// match when the grant records one) and the identities bound to the user
// by sign-in links (User.SignIns). One index (the sign-in index, kept in
// the transaction of every change to a grant's account or a user's
// sign-ins, checked by InvSignIns) serves UserBySignIn(provider, issuer,
// subject), a read transaction: the one user it names, *NotFoundError
// (kind "sign-in") for none, *SignInConflictError (ErrSignInConflict)
// for more than one (users sharing an account: never a pick).
// CreateLink with PurposeSignIn makes a link for a user that exists
// (*NotFoundError otherwise) with no watch and no grant (*InvalidError);
// the door checks that its provider is an OpenID Connect provider.
// CommitSignIn consumes it exactly once, as CommitConsent consumes an
// enrollment link, and in the same transaction adds the identity to the
// user's SignIns and to the index, audited (AuditSignInBound,
// AuditEnrollmentUsed); it stores no grant and no token (SignInConsent
// has no field for one). An identity that already signs in another user
// (a sign-in or a grant of theirs) is refused with a
// *SignInConflictError and nothing changes; binding it again to its
// user keeps one.
//
// # Deleting a user (users.go)
//
// DeleteUser deletes a user and everything kept for them in one
// transaction: every live grant unenrolled by UnenrollGrant's own code
// (the refresh token queued for revocation by the provider's rule in
// UserDeletion.Rules, or left to expire, audited), a revoked grant kept
// only while a pending revocation waits for it (its account scrubbed),
// every watch with its cursor and seen index, every link, every outbox
// row (any state), the user with its sign-ins; one NoticeAccountDeleted
// queued per target the user's watches had (the confirmation, atomic
// with the deletion); AuditUserDeleted with counts. In-flight work finds
// nothing (CommitRun: *NotFoundError; SettleOutbox skips the rows; a
// refresh is fenced off). Errors: *NotFoundError for the user;
// *DamagedError when its record or a grant of it is damaged.
//
// # Grants and the refresh protocol (grants.go)
//
// The in-flight marker and its fence (SECURITY.md RT-01, RT-04):
// BeginRefresh commits Grant.RefreshInFlight, with this daemon as its
// Grant.RefreshHolder, before the token request and returns a
// RefreshTicket carrying the refresh token. A marker found set is in
// doubt (a crash, a lost response: it survives a reopen) when the store
// is this process's own (bbolt), when it is this daemon's or no daemon's,
// or when its holder has sent no heartbeat for a lease while this daemon
// has been steady for one (the issue's "a marker left by a dead holder
// treated as in doubt"); then the ticket is a Retry and is counted once
// (LostRotations, an audit entry). Another daemon's marker on a shared
// store is otherwise a live refresh: BeginRefresh gives a
// *RefreshBusyError (ErrRefreshBusy) naming the holder and changes
// nothing, since presenting the same refresh token would be the reuse
// that revokes the token family (RFC 6749 §10.4, RFC 9700 §4.14.2). The
// ticket is a fence: CommitRefresh (new tokens sealed, expiry, marker
// cleared, counters reset) and RecordRefreshFailure (counters; marker
// cleared unless KeepMarker, which keeps it in doubt with no holder)
// store their outcome only while the grant is active, its marker set and
// its refresh token the one the ticket was issued for. Of several tickets
// issued for one refresh token at most one commits; every stale one gets
// a *TransitionError (ErrConflict) and stores nothing. A grant that is
// not active gives *NeedsConsentError at BeginRefresh. Once a change of a
// grant's tokens commits (a refresh, a consent renewing it, a grant
// ended), its id is published on GrantTokensChannel so that every daemon
// drops the access token it caches. MarkNeedsReconsent ends an active grant (needs_reconsent,
// marker cleared, tokens dropped unless kept), suspends the user's
// watches at the provider, creates a re-consent link bound to the grant's
// subject and queues its notice (link sealed in the row), in one
// transaction; a grant not active is left alone (Changed false).
// UnenrollGrant revokes a grant locally (tokens dropped, watches suspended
// revoked, notice queued) and queues its refresh token for revocation at
// the provider, in one transaction; twice changes nothing. Where
// revocation ends the whole account (Unenroll.EndsAccount, X) the token is
// not queued while another live grant holds the same account (users
// sharing one), and the audit entry says so. Grant,
// UserGrant, UserGrants (one user's, provider order), GrantTokens (which
// opens the sealed tokens) and ListGrants (id order, tokens sealed) read.
//
// # Pending revocations (grants.go)
//
// A pending revocation is an unenrolled grant's token or a replaced one
// (Revocation.Cause), with the account it is for. DueRevocations lists
// the ids due at a time; PendingRevocation opens one. SettleRevocation
// deletes it, and an unenrolled grant still revoked that nothing else
// waits for, in one transaction (a replaced token's grant lives on);
// DeferRevocation reschedules it; DropRevocation deletes it unrevoked and
// audits why (the worker found that revoking it now would end a live
// grant of the account). LiveAccountGrants lists the grants a revocation
// ending an account would end. Unknown ids: *NotFoundError.
//
// # Runs (runs.go)
//
// RunInput reads a watch, its cursor and the user's grant state in one
// read transaction. RunnableWatches scans the watches that run, in id
// order, from one read transaction (its callback must not call the
// store, CheckWatch excepted). CommitRun records a run in one
// transaction (concurrent commits may share one, and one fsync: the
// engine's Batch): the new posts go to the outbox as digests (one row
// per target, deterministic ids), into the watch's seen index, and the
// cursor and counters advance (never back).
// All or nothing: a post is queued at most once per watch however often
// a commit is repeated (within SeenRetention); a failed run records its
// error and moves nothing else; a watch deleted meanwhile gives
// *NotFoundError and stores nothing.
//
// # Outbox (delivery.go, outbox_admin.go)
//
// Enqueue adds rows, pending and due (now, or at their NextAttempt), all
// or none; an id already there is left as it is. DueOutboxIDs lists the ids of pending and retrying rows
// due at a time, earliest first (then by id), and returns when the next
// one is due. LoadOutbox reads rows by id as they are now (callers check
// State). SettleOutbox records a batch of outcomes in one transaction,
// all or none (group commit): each outcome applies only while its row is
// still pending or retrying with the Attempts it was read with, so a
// stale outcome is skipped, never applied over a newer decision; a row is
// delivered only once that transaction has committed (at-least-once
// delivery under one id). An outcome that disables its target (410) drops
// the target's other waiting rows and tells the users concerned, in the
// same transaction. ReplayOutbox puts a dead or dropped row back
// under the same id (others: *TransitionError). OpenOutboxSecret opens a
// row's sealed secret. PruneOutbox and DropOutboxBacklog re-check each
// row inside their batch transactions. OutboxRow, OutboxTallies and
// ListOutbox are the operator's views.
//
// # Rate-limit windows (ratewindows.go)
//
// SaveRateWindows stores what providers said about their request windows
// (an endpoint's limit, remaining, reset and hold for one grant) and
// their usage caps (when to probe next), all or none, in one
// transaction: each window replaces the one under its provider, kind,
// endpoint and key, a window saved over (hold and reset past) deletes it,
// and stored windows that are over or do not decode are deleted with it.
// A window without a provider, of an unknown kind, or a rate window
// without an endpoint and key is *InvalidError, nothing saved. Callers
// save when a window changes materially, not per request. RateWindows
// reads the windows not over at the store's clock, ordered by key, from
// one read transaction; a record that does not decode is skipped and
// logged. They survive a reopen: a restarted daemon does not ask before a
// reset it was told of.
//
// # Damaged records (damaged.go)
//
// A record is damaged when its bytes do not decode, it is stored under
// another key than its id, it lacks its user or provider (grants,
// watches) or target (outbox rows), or a sealed field (grant tokens,
// outbox secrets, pending revocations) does not open. Kinds: user,
// grant, watch, cursor, link (named "sha256:" and the start of its token's
// hash), outbox, revocation, audit (named by its sequence number).
// Every reader skips it (above); RunnableWatches also leaves out a watch
// whose cursor or whose user's grant at its provider is damaged, so the
// scheduler runs neither, and renewal of a damaged grant fails for that
// grant only (*DamagedError; its user is not sent a re-consent: the
// damage is the operator's to repair). FindDamaged checks every record
// and returns the damaged ones (kind order, then id); one found for the
// first time is recorded with its time (FirstSeen) and audited once
// (AuditRecordDamaged), in one transaction that also forgets the records
// no longer damaged; when nothing changed it only reads: the daemon's
// start and the operator's listing. A reader that skips a damaged record
// notes it, and DamagedRecords (status, users, metrics) records the noted
// ones the same way, checking only them and the recorded ones, by key,
// never every record.
// DamagedGrants (operator.go) checks the grants alone, recording nothing,
// and names each damaged one's user and provider (from the user_grants
// index, else the record) and what is wrong: the grants and watches
// listings show it with its repair.
// DeleteDamaged removes one damaged record and its index entries in one
// transaction, audited with the actor (AuditDamagedDeleted): a watch
// with its user_watches keys, cursor and seen index; a grant with its
// user_grants key, its user's watches at the provider suspended
// (SuspendNeedsReconsent) until a new consent clears them; an outbox row
// with its due keys; any other kind alone. A healthy record is refused
// (*TransitionError), an unknown one is *NotFoundError, an unknown kind
// *InvalidError. ResetDamagedGrant repairs a grant whose record decodes
// but whose sealed tokens do not open (C10's flipped bytes) the way
// MarkNeedsReconsent ends a dead grant, in one transaction: tokens
// dropped, needs_reconsent, watches suspended, a re-consent link bound to
// its subject queued to the user (AuditDamagedReset); a grant whose
// record does not decode, a revoked or a healthy one is a
// *TransitionError (delete it instead).
//
// # Audit
//
// The audit trail is append-only: each entry gets the next sequence
// number and is written in the transaction of the change it records
// (watch added, changed, paused, resumed, deleted; link created, used,
// canceled, refused; a sign-in bound; a user deleted; grant stored,
// state changed, revoked; lost rotation; notification replayed; keys
// rotated; a replaced refresh token queued for revocation or left to
// expire and why; a link's watch kept; a grant moved to another
// account). It never carries a secret or a
// target. A change that fails appends nothing. RecordAudit appends what
// no other method records (an operator's request as the status socket
// received it). AuditTrail reads the entries after a sequence number,
// oldest first, from one read transaction.
//
// # The bbolt backend
//
// *DB keeps everything in one bbolt file; one process owns it (a second
// opener fails with ErrLocked after Options.LockTimeout). Secrets are
// sealed with vault/seal before they are written; the keyring is stored
// wrapped by the master key, and Open refuses a master key that does not
// open it without writing a byte. Before bbolt opens (or writes, or maps)
// anything, Open identifies what is at the path (identify.go): a file cut
// short (its size against page size × high-water mark of its own header),
// empty, of another program (SQLite, an archive, text, a bbolt file
// without a keyring), with both header pages or any page of its tree or
// freelist damaged, or no file at all (a directory, a FIFO, a socket, a
// device, a symlink loop) is a *BadFileError (ErrBadFile) naming the path,
// what is there and what to do, and the file stays byte for byte as it
// was. View and Update turn a fault or a bbolt panic while reading the
// file (it changed under the process) into that error for the one
// transaction. Each Store method is one bbolt
// transaction (fsynced on commit); bbolt serialises writers, so the
// guarantees above hold across goroutines. CheckConsistency checks the
// file (bbolt's page check) and the store's invariants (the Inv*
// constants); vault/vaulttest runs it after every test that opens a
// vault.
//
// # Storage engines (vault/kv)
//
// The domain code (Tx and every method on it, the DB methods, the
// migrations, key rotation, the damaged-record walks, CheckConsistency's
// invariants) reads and writes through vault/kv: named buckets of ordered
// key/value pairs in closure-scoped transactions, with bbolt's rules for
// order, cursors, sequences and byte-slice lifetimes. bbolt
// (vault/kv/boltkv) is the default engine; PostgreSQL (vault/kv/pgkv,
// given as Options.Engine) passes vault/kv/kvtest and runs every domain
// method, rule and check unchanged. What is about the bbolt file stays
// with the file: identify.go's page walk and contained (Open, View,
// Update, Backup), the file lock (ErrLocked), the copy of the file
// (Backup, through kv.BackupTo) and bbolt's page check (InvPages,
// through kv.Checker); an engine without them skips the check and
// refuses Backup (ErrNotFile). PostgreSQL's engine runs an Update
// closure again after a serialization failure: every closure resets
// what it hands out at its start and defers effects on the process's
// own state until the commit (DB.Update).
package vault
