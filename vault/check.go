package vault

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tagwatch/vault/kv"
)

// Invariant names one rule of the store that CheckConsistency checks.
type Invariant string

// The invariants CheckConsistency checks. Every domain method keeps them;
// a record found breaking one was written around the methods (a raw
// transaction), by a bug, or damaged on disk.
const (
	// InvPages: the storage engine's own check of its structure
	// (kv.Checker; bbolt: the file's pages as Open reads them, then
	// bbolt.Tx.Check): no page freed twice, none unreachable and not
	// freed, keys in order.
	// When it fails nothing else is checked (walking a damaged tree can
	// fault).
	InvPages Invariant = "pages"
	// InvBuckets: every bucket the schema requires is there (the meta
	// bucket and those the migrations create; buckets.go). Open refuses
	// a store without one; one gone under the open vault (the file
	// replaced, rows deleted by hand) fails every transaction that meets
	// it with ErrMissingBucket. When it fails nothing else is checked.
	InvBuckets Invariant = "buckets"
	// InvRecords: every record decodes, is stored under its own id and
	// has what every record of its kind has (the records FindDamaged
	// reports as damaged; audit events included).
	InvRecords Invariant = "records"
	// InvOutboxDue: the due index matches the rows: every pending or
	// retrying row is indexed at its NextAttempt, and nothing else is.
	InvOutboxDue Invariant = "outbox_due"
	// InvUserWatches: every user_watches key points at an existing watch
	// of that user, and every watch has its key.
	InvUserWatches Invariant = "user_watches"
	// InvUserGrants: every user_grants key points at a grant of that user
	// at that provider, and every grant that is not revoked is the one its
	// key points at (a revoked grant may have been replaced by a new
	// consent while its revocation is pending).
	InvUserGrants Invariant = "user_grants"
	// InvWatchState: a watch's state is active, paused or suspended; an
	// active watch has no suspend reason, a suspended one a known reason,
	// a paused one a known reason or none.
	InvWatchState Invariant = "watch_state"
	// InvWatchGrant: every watch that runs (Watch.Runs: active, or
	// suspended by the usage cap, whose runs are the cap's probes) belongs
	// to a user whose grant at the watch's provider is active.
	InvWatchGrant Invariant = "watch_grant"
	// InvWatchIndexes: every cursor and every seen-index prefix belongs to
	// an existing watch.
	InvWatchIndexes Invariant = "watch_indexes"
	// InvRevocations: every pending revocation of an unenrolled grant
	// names a grant that exists and is revoked (a replaced token's,
	// RevocationReplaced, names the grant that lives on with a new one).
	InvRevocations Invariant = "revocations"
	// InvSignIns: the sign-in index matches the records: every entry
	// names a grant that holds that account (provider, subject, user,
	// issuer) or a user with that sign-in, and every grant with a
	// subject and every user's sign-in has its entry; no identity is
	// bound by sign-in links to two users. Entries of records that do
	// not decode are left to InvRecords.
	InvSignIns Invariant = "sign_ins"
	// InvSealed: every sealed field (grant tokens, outbox secrets, pending
	// revocations) opens with the keyring, bound to its record.
	InvSealed Invariant = "sealed"
)

// Inconsistency is one broken invariant at one record.
type Inconsistency struct {
	Invariant Invariant
	// Record names the record as people say it: `watch "01h..."`,
	// `notification "9f..."`, `user_grants key zed/x`.
	Record string
	// Problem says what is wrong with it.
	Problem string
}

func (i Inconsistency) String() string {
	return fmt.Sprintf("%s: %s: %s", i.Invariant, i.Record, i.Problem)
}

// ConsistencyError is what CheckConsistency found: every inconsistency,
// in the order the check met them.
type ConsistencyError struct {
	// Path is the database file (the engine's name, Options.Engine).
	Path  string
	Found []Inconsistency
}

func (e *ConsistencyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vault: %s is inconsistent (%d problems):", e.Path, len(e.Found))
	for _, i := range e.Found {
		b.WriteString("\n\t")
		b.WriteString(i.String())
	}
	return b.String()
}

// errRollback ends the check's transaction without committing.
var errRollback = errors.New("rollback")

// maxInconsistencies bounds what one check reports.
const maxInconsistencies = 100

// CheckConsistency checks the file's pages (bbolt's own check) and then
// tagwatch's invariants (the Inv* constants), and returns nil or a
// *ConsistencyError listing at most 100 inconsistencies, each naming its
// record. It writes nothing. It runs in one read-write transaction
// (rolled back; bbolt's page check is only safe against concurrent
// writers that way; a read-only vault gets a read transaction), so it
// sees one state and holds off writers while it reads every record: it is for tests (vault/vaulttest runs it after each
// one) and for an operator's check of a stopped daemon's file, not for a
// hot path. Other errors are the store's own (a closed database).
func (db *DB) CheckConsistency() error {
	var found []Inconsistency
	run := db.Update
	if db.readOnly {
		// No writer can run meanwhile: bbolt's shared lock keeps them out.
		run = db.View
	}
	err := run(func(tx *Tx) error {
		found = nil
		c := &checker{tx: tx}
		c.run()
		found = c.found
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return fmt.Errorf("vault: check %s: %w", db.name, err)
	}
	if len(found) > 0 {
		return &ConsistencyError{Path: db.name, Found: found}
	}
	return nil
}

type checker struct {
	tx    *Tx
	found []Inconsistency
}

func (c *checker) add(inv Invariant, record, format string, args ...any) {
	if len(c.found) < maxInconsistencies {
		c.found = append(c.found, Inconsistency{Invariant: inv, Record: record, Problem: fmt.Sprintf(format, args...)})
	}
}

func (c *checker) run() {
	// The pages as Open checks them first, read without bbolt's map: a
	// file cut or damaged under the store would fault bbolt's check.
	if err := c.tx.db.filePages(); err != nil {
		c.add(InvPages, "file", "%v", err)
		return
	}
	// The engine's own check of its structure (bbolt: Tx.Check of the
	// pages), when it has one.
	if ch, ok := engineTx(c.tx.tx).(kv.Checker); ok {
		for _, err := range ch.Check() {
			c.add(InvPages, "file", "%v", err)
		}
	}
	if len(c.found) > 0 {
		return
	}
	// Asked of the engine's own transaction: the vault's (a schemaTx)
	// would fail the check's transaction at the first bucket missing.
	for _, name := range missingBuckets(engineTx(c.tx.tx), SchemaVersion) {
		c.add(InvBuckets, fmt.Sprintf("bucket %q", name), "is missing (schema version %d requires it)", SchemaVersion)
	}
	if len(c.found) > 0 {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.add(InvPages, "file", "reading the records panicked: %v", r)
		}
	}()
	users := decode(c, bucketUsers, "user", decodeUser)
	decode(c, bucketEnrollments, "consent link", decodeLink)
	decode(c, bucketAudit, "audit event", decodeAudit)
	watches := c.watches()
	grants := c.grants()
	c.signIns(users, grants)
	c.userWatches(watches)
	c.userGrants(grants)
	c.watchGrants(watches, grants)
	c.watchIndexes(watches)
	c.outbox()
	c.revocations(grants)
	// Records come out of maps: sort, so a report reads the same twice.
	slices.SortStableFunc(c.found, func(a, b Inconsistency) int {
		return cmp.Or(cmp.Compare(a.Invariant, b.Invariant), cmp.Compare(a.Record, b.Record))
	})
}

// decode reads every record of a bucket into a map by key with the
// readers' own decoding (damaged.go), reporting the damaged ones.
func decode[T any](c *checker, bucket []byte, kind string, dec func(k, v []byte) (T, error)) map[string]T {
	out := map[string]T{}
	_ = c.tx.tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		rec, err := dec(k, v)
		var de *DamagedError
		if errors.As(err, &de) {
			c.add(InvRecords, fmt.Sprintf("%s %q", kind, k), "is damaged: %v", de.Err)
			return nil
		}
		out[string(k)] = rec
		return nil
	})
	return out
}

func (c *checker) watches() map[string]Watch {
	ws := decode(c, bucketWatches, "watch", decodeWatch)
	for id, w := range ws {
		rec := fmt.Sprintf("watch %q", id)
		switch {
		case !w.SuspendReason.Valid():
			c.add(InvWatchState, rec, "has an unknown suspend reason %q", w.SuspendReason)
		case w.State == WatchActive && w.SuspendReason != SuspendNone:
			c.add(InvWatchState, rec, "is active with suspend reason %q", w.SuspendReason)
		case w.State == WatchSuspended && w.SuspendReason == SuspendNone:
			c.add(InvWatchState, rec, "is suspended without a reason")
		case w.State != WatchActive && w.State != WatchPaused && w.State != WatchSuspended:
			c.add(InvWatchState, rec, "has an unknown state %q", w.State)
		}
	}
	return ws
}

func (c *checker) grants() map[string]Grant {
	gs := decode(c, bucketGrants, "grant", decodeGrant)
	for id, g := range gs {
		for _, f := range []struct {
			name string
			env  []byte
		}{{"refresh_token", g.SealedRefresh}, {"access_token", g.SealedAccess}} {
			if _, err := c.tx.openString(grantAD(g.ID, f.name), f.env); err != nil {
				c.add(InvSealed, fmt.Sprintf("grant %q", id), "sealed %s does not open: %v", f.name, err)
			}
		}
	}
	return gs
}

// splitPair splits a user\0x index key.
func splitPair(k []byte) (string, string, bool) {
	a, b, ok := bytes.Cut(k, []byte{0})
	return string(a), string(b), ok
}

func (c *checker) userWatches(watches map[string]Watch) {
	indexed := map[string]bool{}
	_ = c.tx.tx.Bucket(bucketUserWatches).ForEach(func(k, _ []byte) error {
		user, id, ok := splitPair(k)
		rec := fmt.Sprintf("user_watches key %s/%s", user, id)
		w, exists := watches[id]
		switch {
		case !ok:
			c.add(InvUserWatches, fmt.Sprintf("user_watches key %q", k), "is not user\\0watch")
		case !exists:
			c.add(InvUserWatches, rec, "points at watch %q, which does not exist", id)
		case w.UserID != user:
			c.add(InvUserWatches, rec, "points at watch %q of user %q", id, w.UserID)
		default:
			indexed[id] = true
		}
		return nil
	})
	for id, w := range watches {
		if !indexed[id] && w.UserID != "" {
			c.add(InvUserWatches, fmt.Sprintf("watch %q", id), "has no user_watches key for user %q", w.UserID)
		}
	}
}

func (c *checker) userGrants(grants map[string]Grant) {
	current := map[string]bool{}
	_ = c.tx.tx.Bucket(bucketUserGrants).ForEach(func(k, v []byte) error {
		user, prov, ok := splitPair(k)
		rec := fmt.Sprintf("user_grants key %s/%s", user, prov)
		g, exists := grants[string(v)]
		switch {
		case !ok:
			c.add(InvUserGrants, fmt.Sprintf("user_grants key %q", k), "is not user\\0provider")
		case !exists:
			c.add(InvUserGrants, rec, "points at grant %q, which does not exist", v)
		case g.UserID != user || g.Provider != prov:
			c.add(InvUserGrants, rec, "points at grant %q of %s/%s", v, g.UserID, g.Provider)
		default:
			current[g.ID] = true
		}
		return nil
	})
	for id, g := range grants {
		if !current[id] && g.State != GrantRevoked {
			c.add(InvUserGrants, fmt.Sprintf("grant %q", id), "is %s but user_grants %s/%s does not point at it", g.State, g.UserID, g.Provider)
		}
	}
}

func (c *checker) watchGrants(watches map[string]Watch, grants map[string]Grant) {
	ug := c.tx.tx.Bucket(bucketUserGrants)
	for id, w := range watches {
		if !w.Runs() {
			continue
		}
		rec := fmt.Sprintf("watch %q", id)
		gid := ug.Get(pair(w.UserID, w.Provider))
		g, ok := grants[string(gid)]
		switch {
		case gid == nil || !ok:
			c.add(InvWatchGrant, rec, "is %s but user %q has no grant at %q", w.StateText(), w.UserID, w.Provider)
		case g.State != GrantActive:
			c.add(InvWatchGrant, rec, "is %s but grant %q of user %q at %q is %s", w.StateText(), g.ID, w.UserID, w.Provider, g.State)
		}
	}
}

func (c *checker) watchIndexes(watches map[string]Watch) {
	_ = c.tx.tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
		if _, ok := watches[string(k)]; !ok {
			c.add(InvWatchIndexes, fmt.Sprintf("cursor %q", k), "belongs to no watch")
		}
		if _, err := decodeCursor(k, v); err != nil {
			c.add(InvRecords, fmt.Sprintf("cursor %q", k), "is damaged: %v", errors.Unwrap(err))
		}
		return nil
	})
	seen := c.tx.tx.Bucket(bucketSeen)
	if seen == nil {
		return
	}
	orphans := map[string]int{}
	_ = seen.ForEach(func(k, _ []byte) error {
		id, post, ok := bytes.Cut(k, []byte{0})
		if !ok || len(post) != 8 {
			c.add(InvWatchIndexes, fmt.Sprintf("watch_seen key %q", k), "is not watch\\0post id (8 bytes)")
			return nil
		}
		if _, ok := watches[string(id)]; !ok {
			orphans[string(id)]++
		}
		return nil
	})
	for id, n := range orphans {
		c.add(InvWatchIndexes, fmt.Sprintf("watch_seen prefix %q", id), "holds %d posts of a watch that does not exist", n)
	}
}

func (c *checker) outbox() {
	rows := decode(c, bucketOutbox, "notification", decodeOutbox)
	indexed := map[string]time.Time{}
	_ = c.tx.tx.Bucket(bucketOutboxDue).ForEach(func(k, _ []byte) error {
		if len(k) < 8 {
			c.add(InvOutboxDue, fmt.Sprintf("outbox_due key %x", k), "is shorter than its 8-byte time")
			return nil
		}
		at, id := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), string(k[8:])
		rec := fmt.Sprintf("outbox_due key %s/%s", at.UTC().Format(time.RFC3339Nano), id)
		r, ok := rows[id]
		switch {
		case !ok:
			c.add(InvOutboxDue, rec, "points at notification %q, which does not exist", id)
		case !r.waiting():
			c.add(InvOutboxDue, rec, "indexes notification %q, which is %s", id, r.State)
		case !r.NextAttempt.Equal(at):
			c.add(InvOutboxDue, rec, "indexes notification %q at another time than its next attempt %s", id,
				r.NextAttempt.UTC().Format(time.RFC3339Nano))
		default:
			if _, twice := indexed[id]; twice {
				c.add(InvOutboxDue, rec, "indexes notification %q a second time", id)
			}
			indexed[id] = at
		}
		return nil
	})
	for id, r := range rows {
		rec := fmt.Sprintf("notification %q", id)
		if _, ok := indexed[id]; r.waiting() && !ok {
			c.add(InvOutboxDue, rec, "is %s but not in the due index at its next attempt %s", r.State,
				r.NextAttempt.UTC().Format(time.RFC3339Nano))
		}
		switch r.State {
		case OutboxPending, OutboxRetrying, OutboxDelivered, OutboxDead, OutboxDropped:
		default:
			c.add(InvRecords, rec, "has an unknown state %q", r.State)
		}
		if _, err := c.tx.OpenOutboxSecret(r); err != nil {
			c.add(InvSealed, rec, "sealed secret does not open: %v", err)
		}
	}
}

func (c *checker) revocations(grants map[string]Grant) {
	revs := decode(c, bucketRevocations, "pending revocation", decodeRevocation)
	for id, r := range revs {
		rec := fmt.Sprintf("pending revocation %q", id)
		g, ok := grants[r.GrantID]
		switch {
		case r.Cause == RevocationReplaced:
			// A replaced token's grant lives on, in any state, or is gone.
		case !ok:
			c.add(InvRevocations, rec, "names grant %q, which does not exist", r.GrantID)
		case g.State != GrantRevoked:
			c.add(InvRevocations, rec, "names grant %q, which is %s, not revoked", r.GrantID, g.State)
		}
		if _, err := c.tx.OpenRevocation(r); err != nil {
			c.add(InvSealed, rec, "sealed refresh token does not open: %v", err)
		}
	}
}

func (c *checker) signIns(users map[string]User, grants map[string]Grant) {
	b := c.tx.tx.Bucket(bucketSignIns) // never nil: InvBuckets holds
	present := map[signInEntry]bool{}
	stored := func(bucket []byte, id string) bool { return c.tx.tx.Bucket(bucket).Get([]byte(id)) != nil }
	_ = b.ForEach(func(k, v []byte) error {
		parts, ok := parseSignInKey(k)
		if !ok {
			c.add(InvSignIns, fmt.Sprintf("sign_ins key %x", k), "is not provider, subject, user, source")
			return nil
		}
		e := signInEntry{parts[0], parts[1], parts[2], parts[3], string(v)}
		present[e] = true
		rec := fmt.Sprintf("sign_ins key %s/%s/%s/%s", e.provider, e.subject, e.user, e.source)
		if id, ok := strings.CutPrefix(e.source, signInFromGrant); ok {
			g, exists := grants[id]
			switch {
			case !exists && stored(bucketGrants, id):
				// Damaged: InvRecords reports it.
			case !exists:
				c.add(InvSignIns, rec, "names grant %q, which does not exist", id)
			default:
				if want, ok := grantEntry(g); !ok || want != e {
					c.add(InvSignIns, rec, "names grant %q, which is user %q's account %q at %q (issuer %q)", id, g.UserID, g.Subject, g.Provider, g.Issuer)
				}
			}
			return nil
		}
		issuer, ok := strings.CutPrefix(e.source, signInFromLink)
		u, exists := users[e.user]
		switch {
		case !ok:
			c.add(InvSignIns, rec, "has an unknown source")
		case !exists && stored(bucketUsers, e.user):
		case !exists:
			c.add(InvSignIns, rec, "names user %q, who does not exist", e.user)
		case issuer != e.issuer || !slices.ContainsFunc(u.SignIns, func(s SignIn) bool { return linkEntry(u.ID, s) == e }):
			c.add(InvSignIns, rec, "names a sign-in user %q does not have", e.user)
		}
		return nil
	})
	for id, g := range grants {
		if e, ok := grantEntry(g); ok && !present[e] {
			c.add(InvSignIns, fmt.Sprintf("grant %q", id), "account %q at %q is not in the sign-in index", g.Subject, g.Provider)
		}
	}
	bound := map[signInEntry]string{}
	for id, u := range users {
		for _, s := range u.SignIns {
			e := linkEntry(u.ID, s)
			if !present[e] {
				c.add(InvSignIns, fmt.Sprintf("user %q", id), "sign-in %q at %q is not in the sign-in index", s.Subject, s.Provider)
			}
			e.user = ""
			if other, ok := bound[e]; ok && other != id {
				a, b := min(id, other), max(id, other)
				c.add(InvSignIns, fmt.Sprintf("user %q", b), "sign-in %q at %q is bound to user %q too", s.Subject, s.Provider, a)
			}
			bound[e] = id
		}
	}
}
