package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
)

// Tx is a transaction on the vault, valid only inside the View or Update
// closure that received it. Records it returns are copies.
type Tx struct {
	// tx is the storage engine's transaction (vault/kv).
	tx kv.Tx
	db *DB
	kr *seal.Keyring
	// committed are what afterCommit deferred: run, in order, once this
	// run of an Update closure has committed (never for a run rolled
	// back, nor in a View).
	committed []func()
	// changedWatches are the ids of the watches this run of the closure
	// put or deleted, announced after the commit (watchChanged).
	changedWatches []string
}

// afterCommit defers f until the transaction has committed: changes to
// the process's own state (the damaged-record register in memory) that
// must not happen for a run that is rolled back, or run again (DB.Update).
func (tx *Tx) afterCommit(f func()) { tx.committed = append(tx.committed, f) }

// Now returns the vault's clock reading.
func (tx *Tx) Now() time.Time { return tx.db.now() }

func putJSON(b kv.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// scanJSON calls fn for each record under prefix, skipping those that do
// not decode (damaged.go: FindDamaged reports them).
func scanJSON[T any](b kv.Bucket, prefix []byte, fn func(T) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var rec T
		if err := json.Unmarshal(v, &rec); err != nil {
			continue
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func pair(a, b string) []byte { return []byte(a + "\x00" + b) }

// --- users

// User returns the user with the given id, ErrNotFound, or a
// *DamagedError naming it.
func (tx *Tx) User(id string) (User, error) {
	return getRecord(tx, bucketUsers, id, decodeUser)
}

// PutUser creates or replaces a user, keeping the sign-in index in step
// with its SignIns.
func (tx *Tx) PutUser(u User) error {
	if u.ID == "" {
		return fmt.Errorf("vault: put user: empty id")
	}
	old, err := tx.User(u.ID)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrDamaged) {
		return err
	}
	return tx.putUser(old, u)
}

// putUser is PutUser with the record it replaces already read (the zero
// User when there is none).
func (tx *Tx) putUser(old, u User) error {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = tx.Now()
	}
	if err := tx.reindexUser(old, u); err != nil {
		return err
	}
	return putJSON(tx.tx.Bucket(bucketUsers), u.ID, u)
}

// deleteUser removes a user's record and its sign-in index entries.
func (tx *Tx) deleteUser(u User) error {
	if err := tx.reindexUser(u, User{}); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketUsers).Delete([]byte(u.ID))
}

// Users calls fn for every user in id order, skipping damaged ones.
func (tx *Tx) Users(fn func(User) error) error {
	return scanRecords(tx, bucketUsers, decodeUser, fn)
}

// --- grants

func grantAD(id, field string) seal.AD { return seal.AD{Kind: "grant", ID: id, Field: field} }

// Grant returns the grant with the given id, ErrNotFound, or a
// *DamagedError naming it when its record does not decode (its sealed
// fields are not opened here: OpenTokens, or DB.Grant, checks them).
func (tx *Tx) Grant(id string) (Grant, error) {
	return getRecord(tx, bucketGrants, id, decodeGrant)
}

// UserGrant returns the user's grant at a provider, or ErrNotFound.
func (tx *Tx) UserGrant(userID, provider string) (Grant, error) {
	id := tx.tx.Bucket(bucketUserGrants).Get(pair(userID, provider))
	if id == nil {
		return Grant{}, ErrNotFound
	}
	return tx.Grant(string(id))
}

// PutGrant creates or replaces a grant's record (sealed fields as they are
// in g) and indexes it by user and provider.
func (tx *Tx) PutGrant(g Grant) error {
	if g.ID == "" || g.UserID == "" || g.Provider == "" {
		return fmt.Errorf("vault: put grant: id, user and provider are required")
	}
	now := tx.Now()
	if g.CreatedAt.IsZero() {
		g.CreatedAt = now
	}
	if g.StateSince.IsZero() {
		g.StateSince = now
	}
	g.UpdatedAt = now
	// The record it replaces, for the sign-in index; one that does not
	// decode left no entry to remove (deleteDamaged scans for it).
	old, _ := decodeGrant([]byte(g.ID), tx.tx.Bucket(bucketGrants).Get([]byte(g.ID)))
	if err := tx.reindexGrant(old, g); err != nil {
		return err
	}
	if err := putJSON(tx.tx.Bucket(bucketGrants), g.ID, g); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketUserGrants).Put(pair(g.UserID, g.Provider), []byte(g.ID))
}

// DeleteGrant removes a grant and its index entry.
func (tx *Tx) DeleteGrant(id string) error {
	g, err := tx.Grant(id)
	if err != nil {
		return err
	}
	ug := tx.tx.Bucket(bucketUserGrants)
	if cur := ug.Get(pair(g.UserID, g.Provider)); string(cur) == id {
		if err := ug.Delete(pair(g.UserID, g.Provider)); err != nil {
			return err
		}
	}
	if err := tx.reindexGrant(g, Grant{}); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketGrants).Delete([]byte(id))
}

// Grants calls fn for every grant in id order, skipping those whose
// record does not decode.
func (tx *Tx) Grants(fn func(Grant) error) error {
	return scanRecords(tx, bucketGrants, decodeGrant, fn)
}

// SealTokens seals t into g's sealed fields, bound to g.ID. A zero token
// clears its field.
func (tx *Tx) SealTokens(g *Grant, t Tokens) error {
	var err error
	g.SealedRefresh, err = tx.sealString(grantAD(g.ID, "refresh_token"), t.Refresh.Value)
	if err != nil {
		return err
	}
	g.SealedAccess, err = tx.sealString(grantAD(g.ID, "access_token"), t.Access.Value)
	return err
}

// OpenTokens opens g's sealed tokens. A field that does not open gives a
// *DamagedError naming the grant (errors.Is seal.ErrOpen too).
func (tx *Tx) OpenTokens(g Grant) (Tokens, error) {
	rt, err := tx.openString(grantAD(g.ID, "refresh_token"), g.SealedRefresh)
	if err != nil {
		return Tokens{}, damaged(KindGrant, []byte(g.ID), "its sealed refresh_token does not open: %w", err)
	}
	at, err := tx.openString(grantAD(g.ID, "access_token"), g.SealedAccess)
	if err != nil {
		return Tokens{}, damaged(KindGrant, []byte(g.ID), "its sealed access_token does not open: %w", err)
	}
	return Tokens{Refresh: secret.RefreshToken{Value: rt}, Access: secret.AccessToken{Value: at}}, nil
}

func (tx *Tx) sealString(ad seal.AD, v secret.Value) ([]byte, error) {
	if v.IsZero() {
		return nil, nil
	}
	return tx.kr.Seal(ad, []byte(v.Reveal()))
}

func (tx *Tx) openString(ad seal.AD, env []byte) (secret.Value, error) {
	if len(env) == 0 {
		return secret.Value{}, nil
	}
	pt, err := tx.kr.Open(ad, env)
	if err != nil {
		return secret.Value{}, err
	}
	return secret.New(string(pt)), nil
}

// --- enrollments

// HashLinkToken returns the hex SHA-256 of a one-time link token: the only
// form in which the vault keeps it.
func HashLinkToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewLinkToken returns a fresh one-time link token: 256 random bits,
// base64url without padding.
func NewLinkToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("vault: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// CreateEnrollment stores e under the hash of a fresh link token and
// returns the token, which is not kept anywhere: the caller hands it out
// once. e.ID, e.CreatedAt and the audit entry are filled in here.
func (tx *Tx) CreateEnrollment(e Enrollment) (string, Enrollment, error) {
	if e.UserID == "" || e.Provider == "" || e.ExpiresAt.IsZero() {
		return "", Enrollment{}, fmt.Errorf("vault: create enrollment: user, provider and expiry are required")
	}
	token := NewLinkToken()
	e.Hash = HashLinkToken(token)
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Purpose == "" {
		e.Purpose = PurposeEnroll
	}
	e.CreatedAt = tx.Now()
	if err := tx.PutEnrollment(e); err != nil {
		return "", Enrollment{}, err
	}
	err := tx.Audit(AuditEvent{Kind: AuditEnrollmentCreated, Actor: e.CreatedBy, UserID: e.UserID, GrantID: e.GrantID,
		Detail: fmt.Sprintf("%s link %s for provider %s, expires %s", e.Purpose, e.ID, e.Provider, e.ExpiresAt.UTC().Format(time.RFC3339))})
	return token, e, err
}

// EnrollmentByID returns the enrollment with the given public id.
func (tx *Tx) EnrollmentByID(id string) (Enrollment, error) {
	var found Enrollment
	err := tx.Enrollments(func(e Enrollment) error {
		if e.ID == id {
			found = e
			return errStop
		}
		return nil
	})
	if err == errStop {
		return found, nil
	}
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{}, ErrNotFound
}

var errStop = errors.New("stop")

// Enrollment returns the enrollment whose token hashes to hash,
// ErrNotFound, or a *DamagedError naming it.
func (tx *Tx) Enrollment(hash string) (Enrollment, error) {
	return getRecord(tx, bucketEnrollments, hash, decodeLink)
}

// PutEnrollment creates or replaces an enrollment.
func (tx *Tx) PutEnrollment(e Enrollment) error {
	if len(e.Hash) != 64 {
		return fmt.Errorf("vault: put enrollment: hash must be 64 hex characters")
	}
	return putJSON(tx.tx.Bucket(bucketEnrollments), e.Hash, e)
}

// DeleteEnrollment removes an enrollment (DeleteUser).
func (tx *Tx) DeleteEnrollment(hash string) error {
	return tx.tx.Bucket(bucketEnrollments).Delete([]byte(hash))
}

// Enrollments calls fn for every enrollment, skipping damaged ones.
func (tx *Tx) Enrollments(fn func(Enrollment) error) error {
	return scanRecords(tx, bucketEnrollments, decodeLink, fn)
}

// --- watches and cursors

// Watch returns the watch with the given id, ErrNotFound, or a
// *DamagedError naming it.
func (tx *Tx) Watch(id string) (Watch, error) {
	return getRecord(tx, bucketWatches, id, decodeWatch)
}

// PutWatch creates or replaces a watch.
func (tx *Tx) PutWatch(w Watch) error {
	if w.ID == "" || w.UserID == "" {
		return fmt.Errorf("vault: put watch: id and user are required")
	}
	now := tx.Now()
	if w.CreatedAt.IsZero() {
		w.CreatedAt = now
	}
	w.UpdatedAt = now
	if err := putJSON(tx.tx.Bucket(bucketWatches), w.ID, w); err != nil {
		return err
	}
	tx.watchChanged(w.ID)
	return tx.tx.Bucket(bucketUserWatches).Put(pair(w.UserID, w.ID), nil)
}

// DeleteWatch removes a watch, its cursor and its seen-posts index.
func (tx *Tx) DeleteWatch(id string) error {
	w, err := tx.Watch(id)
	if err != nil {
		return err
	}
	if err := tx.DeleteSeen(id); err != nil {
		return err
	}
	tx.watchChanged(id)
	if err := tx.tx.Bucket(bucketUserWatches).Delete(pair(w.UserID, w.ID)); err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketCursors).Delete([]byte(id)); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketWatches).Delete([]byte(id))
}

// Watches calls fn for every watch in id order, skipping damaged ones.
func (tx *Tx) Watches(fn func(Watch) error) error {
	return scanRecords(tx, bucketWatches, decodeWatch, fn)
}

// UserWatches calls fn for each of a user's watches, skipping damaged
// ones.
func (tx *Tx) UserWatches(userID string, fn func(Watch) error) error {
	c := tx.tx.Bucket(bucketUserWatches).Cursor()
	prefix := pair(userID, "")
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		w, err := tx.Watch(string(k[len(prefix):]))
		if errors.Is(err, ErrDamaged) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(w); err != nil {
			return err
		}
	}
	return nil
}

// Cursor returns a watch's cursor; a watch that never ran has the zero
// Cursor (with WatchID set) and no error. A damaged cursor gives the zero
// Cursor and a *DamagedError naming it.
func (tx *Tx) Cursor(watchID string) (Cursor, error) {
	c, err := getRecord(tx, bucketCursors, watchID, decodeCursor)
	if err != nil {
		c = Cursor{WatchID: watchID}
	}
	if errors.Is(err, ErrNotFound) {
		return c, nil
	}
	return c, err
}

// PutCursor stores a watch's cursor.
func (tx *Tx) PutCursor(c Cursor) error {
	return putJSON(tx.tx.Bucket(bucketCursors), c.WatchID, c)
}

// --- audit

// Audit appends an event to the audit trail.
func (tx *Tx) Audit(ev AuditEvent) error {
	if ev.Time.IsZero() {
		ev.Time = tx.Now()
	}
	return appendAudit(tx.tx, ev)
}

// count says n things in an audit detail: "1 target", "2 targets".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func appendAudit(etx kv.Tx, ev AuditEvent) error {
	b := etx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.Seq = seq
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), raw)
}

// AuditTrail calls fn for every event after seq, oldest first, skipping
// damaged ones (FindDamaged reports them).
func (tx *Tx) AuditTrail(after uint64, fn func(AuditEvent) error) error {
	c := tx.tx.Bucket(bucketAudit).Cursor()
	for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil; k, v = c.Next() {
		ev, err := decodeAudit(k, v)
		if err != nil {
			tx.db.noteDamaged(err)
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// --- pending revocations

// PutRevocation stores a refresh token to revoke later, sealed under its
// own id.
func (tx *Tx) PutRevocation(r Revocation, token secret.RefreshToken) error {
	if r.ID == "" {
		r.ID = NewID()
	}
	if !token.IsZero() {
		env, err := tx.sealString(seal.AD{Kind: "revocation", ID: r.ID, Field: "refresh_token"}, token.Value)
		if err != nil {
			return err
		}
		r.Sealed = env
	}
	return putJSON(tx.tx.Bucket(bucketRevocations), r.ID, r)
}

// OpenRevocation returns the refresh token a pending revocation holds.
func (tx *Tx) OpenRevocation(r Revocation) (secret.RefreshToken, error) {
	v, err := tx.openString(seal.AD{Kind: "revocation", ID: r.ID, Field: "refresh_token"}, r.Sealed)
	return secret.RefreshToken{Value: v}, err
}

// Revocation returns the pending revocation with the given id,
// ErrNotFound, or a *DamagedError naming it.
func (tx *Tx) Revocation(id string) (Revocation, error) {
	return getRecord(tx, bucketRevocations, id, decodeRevocation)
}

// DeleteRevocation removes a pending revocation.
func (tx *Tx) DeleteRevocation(id string) error {
	return tx.tx.Bucket(bucketRevocations).Delete([]byte(id))
}

// Revocations calls fn for every pending revocation, skipping damaged
// ones.
func (tx *Tx) Revocations(fn func(Revocation) error) error {
	return scanRecords(tx, bucketRevocations, decodeRevocation, fn)
}
