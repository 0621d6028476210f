package vault

import (
	bolt "go.etcd.io/bbolt"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/boltkv"
)

// RawUpdate runs fn in a raw read-write transaction of db's storage
// engine, around the domain methods: the test-only hook through which the
// consistency check's tests break an invariant on purpose. Nothing
// outside this package's tests can reach it.
func RawUpdate(db *DB, fn func(tx kv.Tx) error) error { return db.engine.Update(fn) }

// RawBolt returns the bbolt handle under db, for the tests about the file
// itself (its pages); nil when db is on another engine.
func RawBolt(db *DB) *bolt.DB {
	if e, ok := db.engine.(*boltkv.Engine); ok {
		return e.Bolt()
	}
	return nil
}

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
