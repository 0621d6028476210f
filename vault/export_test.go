package vault

import bolt "go.etcd.io/bbolt"

// RawUpdate runs fn in a raw bbolt read-write transaction on db: the
// test-only hook through which the consistency check's tests break an
// invariant on purpose. Nothing outside this package's tests can reach it.
func RawUpdate(db *DB, fn func(tx *bolt.Tx) error) error { return db.bolt.Update(fn) }

// Bucket names, for RawUpdate.
var (
	BucketWatches     = bucketWatches
	BucketUserWatches = bucketUserWatches
	BucketGrants      = bucketGrants
	BucketUserGrants  = bucketUserGrants
	BucketCursors     = bucketCursors
	BucketSeen        = bucketSeen
	BucketOutbox      = bucketOutbox
	BucketOutboxDue   = bucketOutboxDue
	BucketRevocations = bucketRevocations
	BucketSignIns     = bucketSignIns
	BucketMeta        = bucketMeta
	KeySchema         = keySchema
)

// SignInKey is the sign-in index's key of (provider, subject, user,
// source).
var SignInKey = signInKey

// DueKey is the outbox due index's key of a row.
var DueKey = dueKey

// SeenKey is the seen index's key of a post of a watch.
var SeenKey = seenKey
