package vault

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"tagwatch/vault/kv"
)

// This file isolates damaged records: one record whose bytes no longer
// decode (a disk fault, a byte overwritten in a restored backup), whose
// key and id disagree, or whose sealed field no longer opens. Such a
// record is skipped by every scan (the other users keep working), a
// lookup of it answers a *DamagedError naming it, FindDamaged reports it
// (recorded once, audited once), and DeleteDamaged removes it with its
// index entries so an operator can repair the store without a hex editor.
//
// The register (bucket "damaged") is what the daemon knows: FindDamaged
// walks every record into it (the start, the operator's listing); a
// reader that skips a damaged record notes it (noteDamaged) and
// DamagedRecords, the view of status, users and metrics, takes the noted
// ones in, checking only those and the registered ones, by key.

// ErrDamaged means a stored record cannot be used: it does not decode, is
// stored under another key than its id, lacks a field every record of its
// kind has, or holds a sealed field that does not open. Errors carrying
// it are *DamagedError.
var ErrDamaged = errors.New("vault: record is damaged")

// Record kinds, as DamagedError.Kind, DamagedRecord.Kind and the
// operator's `damaged delete <kind> <id>` name them.
const (
	KindUser       = "user"
	KindGrant      = "grant"
	KindWatch      = "watch"
	KindCursor     = "cursor"
	KindLink       = "link"
	KindOutbox     = "outbox"
	KindRevocation = "revocation"
	KindAudit      = "audit"
)

// DamagedKinds lists the record kinds in the order FindDamaged reports
// them.
var DamagedKinds = []string{KindUser, KindGrant, KindWatch, KindCursor, KindLink, KindOutbox, KindRevocation, KindAudit}

// Audit event kinds of damaged records.
const (
	// AuditRecordDamaged: FindDamaged met a damaged record for the first
	// time (one event per record, however often it is met).
	AuditRecordDamaged = "record_damaged"
	// AuditDamagedDeleted: an operator deleted a damaged record
	// (DeleteDamaged).
	AuditDamagedDeleted = "damaged_record_deleted"
)

// DamagedError names a damaged record and what is wrong with it:
// `watch "w1" is damaged: invalid character 'ÿ' looking for beginning of
// value`. errors.Is(err, ErrDamaged) is true for it. It never carries a
// record's bytes, so no secret.
type DamagedError struct {
	// Kind is one of the Kind* constants.
	Kind string
	// ID is the record's key: a watch, grant, user, outbox or revocation
	// id, a cursor's watch id, a link's token hash (never the token), an
	// audit event's sequence number.
	ID string
	// Err says what is wrong.
	Err error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s %q is damaged: %v", e.Kind, e.ID, e.Err)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Unwrap returns what is wrong (a JSON error, seal.ErrOpen).
func (e *DamagedError) Unwrap() error { return e.Err }

func damaged(kind string, key []byte, format string, args ...any) error {
	return &DamagedError{Kind: kind, ID: string(key), Err: fmt.Errorf(format, args...)}
}

// --- decoding, one function per kind: every reader goes through these.

// decodeAs decodes raw into a T stored under key and checks that it is
// stored under its own id (id returns it; "" skips the check) and has
// what every record of its kind has (need returns what is missing).
func decodeAs[T any](kind string, key, raw []byte, id func(*T) string, need func(*T) string) (T, error) {
	var rec T
	if err := json.Unmarshal(raw, &rec); err != nil {
		var zero T
		return zero, &DamagedError{Kind: kind, ID: string(key), Err: err}
	}
	if got := id(&rec); got != string(key) {
		var zero T
		return zero, damaged(kind, key, "it is stored under another key than its id %q", got)
	}
	if need != nil {
		if missing := need(&rec); missing != "" {
			var zero T
			return zero, damaged(kind, key, "it has no %s", missing)
		}
	}
	return rec, nil
}

func decodeUser(k, v []byte) (User, error) {
	return decodeAs(KindUser, k, v, func(u *User) string { return u.ID }, nil)
}

func decodeGrant(k, v []byte) (Grant, error) {
	return decodeAs(KindGrant, k, v, func(g *Grant) string { return g.ID }, func(g *Grant) string {
		switch {
		case g.UserID == "":
			return "user"
		case g.Provider == "":
			return "provider"
		}
		return ""
	})
}

func decodeWatch(k, v []byte) (Watch, error) {
	return decodeAs(KindWatch, k, v, func(w *Watch) string { return w.ID }, func(w *Watch) string {
		switch {
		case w.UserID == "":
			return "user"
		case w.Provider == "":
			return "provider"
		}
		return ""
	})
}

func decodeCursor(k, v []byte) (Cursor, error) {
	c, err := decodeAs(KindCursor, k, v, func(c *Cursor) string {
		if c.WatchID == "" { // written before cursors named their watch
			return string(k)
		}
		return c.WatchID
	}, nil)
	c.WatchID = string(k)
	return c, err
}

func decodeLink(k, v []byte) (Enrollment, error) {
	e, err := decodeAs(KindLink, k, v, func(e *Enrollment) string { return e.Hash }, nil)
	if de, ok := err.(*DamagedError); ok {
		de.ID = linkID(k)
	}
	return e, err
}

// linkID names a link by the start of its token's hash, as
// linkNotFound does: "sha256:" and 12 hex digits.
func linkID(hash []byte) string {
	if len(hash) > 12 {
		hash = hash[:12]
	}
	return "sha256:" + string(hash)
}

// linkKey finds the one link key an operator's "sha256:<prefix>" names.
func linkKey(tx *Tx, id string) ([]byte, error) {
	prefix, ok := strings.CutPrefix(id, "sha256:")
	if !ok || prefix == "" {
		return nil, fmt.Errorf("a link's id is sha256: and the start of its token's hash, not %q", id)
	}
	var found []byte
	c := tx.tx.Bucket(bucketEnrollments).Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
		if found != nil {
			return nil, fmt.Errorf("%q names more than one link: give more of the hash", id)
		}
		found = append([]byte(nil), k...)
	}
	return found, nil
}

func decodeOutbox(k, v []byte) (OutboxRow, error) {
	return decodeAs(KindOutbox, k, v, func(r *OutboxRow) string { return r.ID }, func(r *OutboxRow) string {
		if r.Target == "" {
			return "target"
		}
		return ""
	})
}

func decodeRevocation(k, v []byte) (Revocation, error) {
	return decodeAs(KindRevocation, k, v, func(r *Revocation) string { return r.ID }, nil)
}

// auditID is an audit event's key as people say it: its sequence number.
func auditID(k []byte) string {
	if len(k) != 8 {
		return "0x" + hex.EncodeToString(k)
	}
	return strconv.FormatUint(binary.BigEndian.Uint64(k), 10)
}

func decodeAudit(k, v []byte) (AuditEvent, error) {
	id := []byte(auditID(k))
	return decodeAs(KindAudit, id, v, func(ev *AuditEvent) string { return strconv.FormatUint(ev.Seq, 10) }, nil)
}

// The sealed fields of a record that decodes: each must open, bound to
// its record, with the keyring.

func (tx *Tx) grantSealed(g Grant) error {
	for _, f := range []struct {
		name string
		env  []byte
	}{{"refresh_token", g.SealedRefresh}, {"access_token", g.SealedAccess}} {
		if _, err := tx.openString(grantAD(g.ID, f.name), f.env); err != nil {
			return damaged(KindGrant, []byte(g.ID), "its sealed %s does not open: %w", f.name, err)
		}
	}
	return nil
}

func (tx *Tx) outboxSealed(r OutboxRow) error {
	if _, err := tx.OpenOutboxSecret(r); err != nil {
		return damaged(KindOutbox, []byte(r.ID), "its sealed secret does not open: %w", err)
	}
	return nil
}

func (tx *Tx) revocationSealed(r Revocation) error {
	if _, err := tx.OpenRevocation(r); err != nil {
		return damaged(KindRevocation, []byte(r.ID), "its sealed refresh token does not open: %w", err)
	}
	return nil
}

// getRecord reads the record under key: ErrNotFound when there is none,
// a *DamagedError when it is damaged (noted in the log once).
func getRecord[T any](tx *Tx, bucket []byte, key string, decode func(k, v []byte) (T, error)) (T, error) {
	raw := tx.tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		var zero T
		return zero, ErrNotFound
	}
	rec, err := decode([]byte(key), raw)
	if err != nil {
		tx.db.noteDamaged(err)
	}
	return rec, err
}

// scanRecords calls fn for every record of a bucket in key order, skipping
// the damaged ones (each noted in the log once; FindDamaged reports
// them). An error from fn stops the scan and is returned as is.
func scanRecords[T any](tx *Tx, bucket []byte, decode func(k, v []byte) (T, error), fn func(T) error) error {
	b := tx.tx.Bucket(bucket)
	if b == nil {
		return nil // an optional bucket not made yet (a required one is never nil: buckets.go)
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			continue // a nested bucket, not a record
		}
		rec, err := decode(k, v)
		if err != nil {
			tx.db.noteDamaged(err)
			continue
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// noteDamaged logs a damaged record the first time this process meets
// it and notes it for the register: the next DamagedRecords records it
// (and audits it) if the register does not hold it yet.
func (db *DB) noteDamaged(err error) {
	var de *DamagedError
	if !errors.As(err, &de) {
		return
	}
	key := string(damagedKey(de.Kind, de.ID))
	if _, seen := db.damagedLogged.LoadOrStore(key, true); !seen {
		db.log.Error("vault: damaged record skipped; see `tagwatchctl damaged`", "kind", de.Kind, "id", de.ID, "err", de.Err)
		db.damagedMet.Store(key, true)
	}
}

// forgetDamaged forgets that this process met the record under register
// key: when it is damaged again, it is logged and noted again.
func (db *DB) forgetDamaged(key []byte) {
	db.damagedLogged.Delete(string(key))
	db.damagedMet.Delete(string(key))
}

// --- the kinds, for the walk and the repair

type damageKind struct {
	name   string
	bucket []byte
	// check returns the record's *DamagedError, or nil.
	check func(tx *Tx, k, v []byte) error
	// key turns an operator's id into the record's key (nil: none).
	key func(tx *Tx, id string) ([]byte, error)
	// id names the record under key as DamagedError.ID does.
	id func(key []byte) string
}

func plainKey(_ *Tx, id string) ([]byte, error) { return []byte(id), nil }

func plainID(key []byte) string { return string(key) }

var damageKinds = []damageKind{
	{KindUser, bucketUsers, func(_ *Tx, k, v []byte) error { _, err := decodeUser(k, v); return err }, plainKey, plainID},
	{KindGrant, bucketGrants, func(tx *Tx, k, v []byte) error {
		g, err := decodeGrant(k, v)
		if err != nil {
			return err
		}
		return tx.grantSealed(g)
	}, plainKey, plainID},
	{KindWatch, bucketWatches, func(_ *Tx, k, v []byte) error { _, err := decodeWatch(k, v); return err }, plainKey, plainID},
	{KindCursor, bucketCursors, func(_ *Tx, k, v []byte) error { _, err := decodeCursor(k, v); return err }, plainKey, plainID},
	{KindLink, bucketEnrollments, func(_ *Tx, k, v []byte) error { _, err := decodeLink(k, v); return err }, linkKey, linkID},
	{KindOutbox, bucketOutbox, func(tx *Tx, k, v []byte) error {
		r, err := decodeOutbox(k, v)
		if err != nil {
			return err
		}
		return tx.outboxSealed(r)
	}, plainKey, plainID},
	{KindRevocation, bucketRevocations, func(tx *Tx, k, v []byte) error {
		r, err := decodeRevocation(k, v)
		if err != nil {
			return err
		}
		return tx.revocationSealed(r)
	}, plainKey, plainID},
	{KindAudit, bucketAudit, func(_ *Tx, k, v []byte) error { _, err := decodeAudit(k, v); return err }, func(_ *Tx, id string) ([]byte, error) {
		seq, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("an audit event's id is its sequence number, not %q", id)
		}
		return binary.BigEndian.AppendUint64(nil, seq), nil
	}, func(k []byte) string { return auditID(k) }},
}

func damageKindOf(name string) (damageKind, bool) {
	i := slices.IndexFunc(damageKinds, func(k damageKind) bool { return k.name == name })
	if i < 0 {
		return damageKind{}, false
	}
	return damageKinds[i], true
}

// bucketDamaged is the register of damaged records found: key kind | 0 |
// id, value a DamagedRecord. Created on first use (no schema migration).
var bucketDamaged = []byte("damaged")

func damagedKey(kind, id string) []byte { return []byte(kind + "\x00" + id) }

// DamagedRecord is one damaged record as FindDamaged reports it.
type DamagedRecord struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Problem is what is wrong with it (DamagedError.Err's text).
	Problem string `json:"problem"`
	// FirstSeen is when FindDamaged first found it (the zero time on a
	// read-only vault that never recorded it).
	FirstSeen time.Time `json:"first_seen"`
	// UserID is the user it belongs to, when its record or an index says.
	UserID string `json:"user_id,omitempty"`
}

func (r DamagedRecord) String() string {
	return fmt.Sprintf("%s %q is damaged: %s", r.Kind, r.ID, r.Problem)
}

// FailpointDamagedWalk is the Options.Failpoint name called at the start
// of every walk of all records (FindDamaged): tests count the walks.
const FailpointDamagedWalk = "damaged:walk"

// walkDamaged checks every record of every kind and returns the damaged
// ones in DamagedKinds order, then by key.
func (tx *Tx) walkDamaged() []DamagedRecord {
	tx.db.fail(FailpointDamagedWalk)
	var out []DamagedRecord
	for _, kind := range damageKinds {
		c := tx.tx.Bucket(kind.bucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				continue
			}
			err := kind.check(tx, k, v)
			var de *DamagedError
			if !errors.As(err, &de) {
				continue
			}
			out = append(out, DamagedRecord{Kind: de.Kind, ID: de.ID, Problem: de.Err.Error(), UserID: tx.damagedOwner(kind.name, k, v)})
		}
	}
	return out
}

// damagedOwner names the user a damaged record belongs to, from what of
// it still decodes or from the indexes; "" when nothing says.
func (tx *Tx) damagedOwner(kind string, k, v []byte) string {
	var owner struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(v, &owner) == nil && owner.UserID != "" {
		return owner.UserID
	}
	switch kind {
	case KindGrant:
		if user, _, ok := tx.grantIndex(string(k)); ok {
			return user
		}
	case KindWatch, KindCursor:
		if users := tx.watchIndex(string(k)); len(users) > 0 {
			return users[0]
		}
	}
	return ""
}

// grantIndex finds the user_grants key pointing at grant id.
func (tx *Tx) grantIndex(id string) (user, provider string, ok bool) {
	c := tx.tx.Bucket(bucketUserGrants).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if string(v) == id {
			return splitPair(k)
		}
	}
	return "", "", false
}

// watchIndex finds the users whose user_watches keys name watch id.
func (tx *Tx) watchIndex(id string) []string {
	var users []string
	suffix := []byte("\x00" + id)
	c := tx.tx.Bucket(bucketUserWatches).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if bytes.HasSuffix(k, suffix) && bytes.IndexByte(k[:len(k)-len(suffix)], 0) < 0 {
			users = append(users, string(k[:len(k)-len(suffix)]))
		}
	}
	return users
}

// FindDamaged checks every stored record (users, grants with their sealed
// tokens, watches, cursors, consent links, outbox rows with their sealed
// secrets, pending revocations, audit events) and returns the damaged
// ones, in DamagedKinds order and then by id. A record found for the
// first time is recorded with the time (DamagedRecord.FirstSeen) and
// audited once (AuditRecordDamaged, actor "tagwatchd"), in one read-write
// transaction that also forgets the records no longer damaged (deleted
// or repaired); when nothing changed it only reads. A read-only vault is
// only read (FirstSeen as recorded, or zero). It reads every record: it is
// for the daemon's start, the operator's listing and the offline check,
// not a hot path (status reads DamagedRecords). Errors: only the store's
// own.
func (db *DB) FindDamaged() ([]DamagedRecord, error) {
	var (
		out     []DamagedRecord
		changed bool
	)
	err := db.View(func(tx *Tx) error {
		out, changed = tx.registerDamaged(false)
		return nil
	})
	if err != nil || !changed || db.readOnly {
		return out, err
	}
	err = db.Update(func(tx *Tx) error {
		out, _ = tx.registerDamaged(true)
		return nil
	})
	return out, err
}

// DamagedRecords returns the damaged records the daemon knows of, in
// DamagedKinds order and then by id, without walking every record: the
// register FindDamaged keeps, with the records readers skipped since
// (ListWatches, ListGrants, a run...). Only those are checked, by key: a
// record newly met is recorded with the time and audited once, as
// FindDamaged does; one no longer damaged (deleted, repaired) is
// forgotten; when nothing changed it only reads. A read-only vault is
// only read. It is the view of status, users and metrics, cheap enough
// for every request; a record no reader has met since the last
// FindDamaged is not in it. Errors: only the store's own.
func (db *DB) DamagedRecords() ([]DamagedRecord, error) {
	var met []string
	db.damagedMet.Range(func(k, _ any) bool {
		met = append(met, k.(string))
		return true
	})
	var (
		out     []DamagedRecord
		changed bool
	)
	err := db.View(func(tx *Tx) error {
		out, changed = tx.reconcileDamaged(tx.checkDamaged(met), false)
		return nil
	})
	if err == nil && changed && !db.readOnly {
		err = db.Update(func(tx *Tx) error {
			out, _ = tx.reconcileDamaged(tx.checkDamaged(met), true)
			return nil
		})
	}
	if err == nil && !db.readOnly {
		for _, k := range met {
			db.damagedMet.Delete(k)
		}
	}
	return out, err
}

// checkDamaged checks, by key, the records of the register and those
// under the register keys met, and returns the damaged ones in
// DamagedKinds order, then by id. A record gone is not damaged.
func (tx *Tx) checkDamaged(met []string) []DamagedRecord {
	keys := map[string]bool{}
	for _, k := range met {
		keys[k] = true
	}
	for _, r := range tx.damagedRegister() {
		keys[string(damagedKey(r.Kind, r.ID))] = true
	}
	var out []DamagedRecord
	for k := range keys {
		name, id, _ := strings.Cut(k, "\x00")
		kind, ok := damageKindOf(name)
		if !ok {
			continue
		}
		key, err := kind.key(tx, id)
		if err != nil || key == nil {
			continue
		}
		raw := tx.tx.Bucket(kind.bucket).Get(key)
		if raw == nil {
			continue
		}
		var de *DamagedError
		if !errors.As(kind.check(tx, key, raw), &de) {
			continue
		}
		out = append(out, DamagedRecord{Kind: de.Kind, ID: de.ID, Problem: de.Err.Error(), UserID: tx.damagedOwner(kind.name, key, raw)})
	}
	sortDamaged(out)
	return out
}

// sortDamaged puts rs in DamagedKinds order, then by id.
func sortDamaged(rs []DamagedRecord) {
	order := func(kind string) int { return slices.Index(DamagedKinds, kind) }
	slices.SortFunc(rs, func(a, b DamagedRecord) int {
		if c := order(a.Kind) - order(b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func (tx *Tx) damagedRegister() []DamagedRecord {
	var out []DamagedRecord
	b := tx.tx.Bucket(bucketDamaged)
	if b == nil {
		return nil
	}
	_ = b.ForEach(func(k, v []byte) error {
		var r DamagedRecord
		if json.Unmarshal(v, &r) == nil && string(damagedKey(r.Kind, r.ID)) == string(k) {
			out = append(out, r)
		}
		return nil
	})
	sortDamaged(out)
	return out
}

// registerDamaged walks the records and compares them with the register;
// with write it brings the register up to date (auditing each new
// record). It reports whether the register was out of date.
func (tx *Tx) registerDamaged(write bool) ([]DamagedRecord, bool) {
	return tx.reconcileDamaged(tx.walkDamaged(), write)
}

// reconcileDamaged compares the damaged records found (all there are, as
// far as the caller checked) with the register; with write it brings the
// register up to date: a record new to it is recorded with the time and
// audited, a registered one not found is forgotten. It reports whether
// the register was out of date.
func (tx *Tx) reconcileDamaged(found []DamagedRecord, write bool) ([]DamagedRecord, bool) {
	known := map[string]DamagedRecord{}
	for _, r := range tx.damagedRegister() {
		known[string(damagedKey(r.Kind, r.ID))] = r
	}
	var reg kv.Bucket
	if write {
		var err error
		if reg, err = tx.tx.CreateBucketIfNotExists(bucketDamaged); err != nil {
			write = false
		}
	}
	changed := false
	now := tx.Now()
	for i, r := range found {
		key := damagedKey(r.Kind, r.ID)
		prev, ok := known[string(key)]
		delete(known, string(key))
		if ok {
			found[i].FirstSeen = prev.FirstSeen
			if prev.Problem == r.Problem && prev.UserID == r.UserID {
				continue
			}
		} else if !tx.db.readOnly {
			found[i].FirstSeen = now
		}
		changed = true
		if !write {
			continue
		}
		if putJSON(reg, string(key), found[i]) != nil {
			continue
		}
		if !ok {
			_ = tx.Audit(AuditEvent{Kind: AuditRecordDamaged, Actor: "tagwatchd", UserID: r.UserID, GrantID: grantOf(r),
				Detail: r.String() + "; it is skipped until an operator deletes it (tagwatchctl damaged)"})
		}
	}
	for k := range known {
		changed = true
		if write && reg.Delete([]byte(k)) == nil {
			tx.afterCommit(func() { tx.db.forgetDamaged([]byte(k)) })
		}
	}
	return found, changed
}

func grantOf(r DamagedRecord) string {
	if r.Kind == KindGrant {
		return r.ID
	}
	return ""
}

// DeleteDamaged removes one damaged record and its index entries, in one
// transaction, and audits it (AuditDamagedDeleted, with actor): the
// operator's repair of a record tagwatch cannot use. By kind:
//
//   - watch: the watch, its user_watches keys, its cursor and its seen
//     index (as DeleteWatch);
//   - grant: the grant and the user_grants key pointing at it; the user's
//     watches at its provider are suspended (SuspendNeedsReconsent) until
//     the user consents again through a new link (tagwatchctl enroll);
//   - cursor: the cursor only (the watch's next run starts afresh, as a
//     new watch's does; its seen index still keeps a post from being
//     queued twice);
//   - outbox: the row and its due index entries;
//   - user, link, revocation, audit: the record.
//
// id is the record's key as DamagedRecord.ID shows it. Errors:
// *InvalidError for an unknown kind or an id of the wrong form;
// *NotFoundError when no such record exists; *TransitionError
// (ErrConflict) when the record is not damaged (use the ordinary
// commands for a healthy record). Nothing is changed then.
func (db *DB) DeleteDamaged(kind, id, actor string) (DamagedRecord, error) {
	var out DamagedRecord
	k, ok := damageKindOf(kind)
	if !ok {
		return out, &InvalidError{Object: "damaged record", Err: fmt.Errorf("unknown kind %q (one of %s)", kind, strings.Join(DamagedKinds, ", "))}
	}
	err := db.Update(func(tx *Tx) error {
		out = DamagedRecord{}
		key, err := k.key(tx, id)
		if err != nil {
			return &InvalidError{Object: "damaged record", Err: err}
		}
		raw := tx.tx.Bucket(k.bucket).Get(key)
		if raw == nil {
			return notFound(kind, id)
		}
		var de *DamagedError
		if !errors.As(k.check(tx, key, raw), &de) {
			return &TransitionError{Kind: kind, ID: id, Action: "delete as damaged", State: "not damaged",
				Why: "use the ordinary commands for a record that is not damaged"}
		}
		out = DamagedRecord{Kind: kind, ID: id, Problem: de.Err.Error(), UserID: tx.damagedOwner(kind, key, raw)}
		if reg := tx.tx.Bucket(bucketDamaged); reg != nil {
			var prev DamagedRecord
			if v := reg.Get(damagedKey(kind, id)); v != nil && json.Unmarshal(v, &prev) == nil {
				out.FirstSeen = prev.FirstSeen
			}
			if err := reg.Delete(damagedKey(kind, id)); err != nil {
				return err
			}
		}
		tx.afterCommit(func() { db.forgetDamaged(damagedKey(kind, id)) })
		extra, err := tx.deleteDamaged(kind, key, raw)
		if err != nil {
			return err
		}
		return tx.Audit(AuditEvent{Kind: AuditDamagedDeleted, Actor: actor, UserID: out.UserID, GrantID: grantOf(out),
			Detail: out.String() + "; deleted" + extra})
	})
	if err != nil {
		return DamagedRecord{}, err
	}
	return out, nil
}

// deleteDamaged removes the record under key of kind and what indexes it,
// and says what else it changed.
func (tx *Tx) deleteDamaged(kind string, key, raw []byte) (string, error) {
	id := string(key)
	var owner struct {
		UserID   string `json:"user_id"`
		Provider string `json:"provider"`
	}
	_ = json.Unmarshal(raw, &owner)
	extra := ""
	switch kind {
	case KindWatch:
		if err := tx.DeleteSeen(id); err != nil {
			return "", err
		}
		if err := tx.tx.Bucket(bucketCursors).Delete(key); err != nil {
			return "", err
		}
		for _, user := range tx.watchIndex(id) {
			if err := tx.tx.Bucket(bucketUserWatches).Delete(pair(user, id)); err != nil {
				return "", err
			}
		}
		extra = " with its cursor and seen index"
	case KindUser:
		// Its sign-ins cannot be read: the index entries naming the user
		// as bound by a sign-in link go with it.
		if err := tx.unindexWhere(func(p [4]string) bool {
			return p[2] == id && strings.HasPrefix(p[3], signInFromLink)
		}); err != nil {
			return "", err
		}
	case KindGrant:
		if err := tx.unindexWhere(func(p [4]string) bool { return p[3] == signInFromGrant+id }); err != nil {
			return "", err
		}
		user, provider, indexed := tx.grantIndex(id)
		if !indexed {
			user, provider = owner.UserID, owner.Provider
		}
		if indexed {
			if err := tx.tx.Bucket(bucketUserGrants).Delete(pair(user, provider)); err != nil {
				return "", err
			}
		}
		if indexed {
			var changed []Watch
			err := tx.UserWatches(user, func(w Watch) error {
				if w.Provider == provider && w.Suspend(SuspendNeedsReconsent) {
					changed = append(changed, w)
				}
				return nil
			})
			if err != nil {
				return "", err
			}
			for _, w := range changed {
				if err := tx.PutWatch(w); err != nil {
					return "", err
				}
			}
			extra = fmt.Sprintf("; %s of user %s at %s suspended until a new consent", count(len(changed), "watch", "watches"), user, provider)
		}
	case KindOutbox:
		due := tx.tx.Bucket(bucketOutboxDue)
		var stale [][]byte
		c := due.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) >= 8 && string(k[8:]) == id {
				stale = append(stale, append([]byte(nil), k...))
			}
		}
		for _, k := range stale {
			if err := due.Delete(k); err != nil {
				return "", err
			}
		}
	}
	b := tx.tx.Bucket(bucketByKind(kind))
	return extra, b.Delete(key)
}

func bucketByKind(kind string) []byte {
	k, _ := damageKindOf(kind)
	return k.bucket
}

// AuditDamagedReset: an operator reset a grant whose sealed tokens no
// longer open (ResetDamagedGrant).
const AuditDamagedReset = "damaged_grant_reset"

// ResetDamagedGrant repairs a grant whose record decodes but whose sealed
// tokens do not open, in one transaction: the tokens are dropped (the
// damaged bytes go with them), the grant moves to needs_reconsent (an
// active one; one waiting already stays so) with LastErrorClass
// "damaged", and, as MarkNeedsReconsent does, the user's watches at its
// provider are suspended, a re-consent link bound to the grant's subject
// is created and its notice queued (r: LinkPrefix required, LinkTTL,
// Actor; r.Reason is "damaged", r.KeepTokens is ignored). The audit
// trail records it (AuditDamagedReset). Errors: *NotFoundError; *TransitionError
// (ErrConflict) when the grant is not damaged, when its record does not
// decode (nothing says whose it is: delete it with DeleteDamaged and send
// a new link), or when it is revoked (delete it); nothing is changed then.
func (db *DB) ResetDamagedGrant(id string, r Reconsent) (ReconsentOutcome, error) {
	var out ReconsentOutcome
	r, err := r.defaults("reset damaged grant")
	if err != nil {
		return out, err
	}
	r.Reason, r.KeepTokens = "damaged", false // the damaged bytes go with the tokens
	err = db.Update(func(tx *Tx) error {
		out = ReconsentOutcome{}
		raw := tx.tx.Bucket(bucketGrants).Get([]byte(id))
		if raw == nil {
			return notFound(KindGrant, id)
		}
		refuse := func(state, why string) error {
			return &TransitionError{Kind: KindGrant, ID: id, Action: "reset", State: state, Why: why}
		}
		g, err := decodeGrant([]byte(id), raw)
		if err != nil {
			return refuse("damaged beyond its tokens ("+errors.Unwrap(err).Error()+")",
				"delete it (damaged delete grant "+id+") and send the user a new link")
		}
		sealErr := tx.grantSealed(g)
		if sealErr == nil {
			return refuse("not damaged", "reset is for a grant whose tokens do not open")
		}
		if g.State == GrantRevoked {
			return refuse("revoked", "delete it (damaged delete grant "+id+")")
		}
		from := g.State
		link, notices, targets, err := tx.toNeedsReconsent(&g, r)
		if err != nil {
			return err
		}
		if reg := tx.tx.Bucket(bucketDamaged); reg != nil {
			if err := reg.Delete(damagedKey(KindGrant, id)); err != nil {
				return err
			}
		}
		tx.afterCommit(func() { db.forgetDamaged(damagedKey(KindGrant, id)) })
		out = ReconsentOutcome{Changed: true, Grant: g, Link: link, Notices: notices}
		var de *DamagedError
		errors.As(sealErr, &de)
		return tx.Audit(AuditEvent{Kind: AuditDamagedReset, Actor: r.Actor, UserID: g.UserID, GrantID: g.ID,
			Detail: fmt.Sprintf("grant %q was damaged (%v): tokens dropped, %s -> needs_reconsent; re-consent link %s queued to %s",
				id, de.Err, from, link.ID, count(targets, "target", "targets"))})
	})
	if err != nil {
		return ReconsentOutcome{}, err
	}
	return out, nil
}
