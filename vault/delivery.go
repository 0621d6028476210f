package vault

import (
	"bytes"
	"encoding/binary"
	"time"
)

// DueOutboxIDs calls fn with the id and due time of each pending or
// retrying row due at or before now, earliest first, without decoding the
// rows, until fn returns false. It returns when the first row due after
// now is due, and false when there is none (or fn stopped the scan, in
// which case more rows may be due now and the caller should look again).
// It is the delivery loop's cheap way to see what is due while most due
// rows are already queued in memory.
func (tx *Tx) DueOutboxIDs(now time.Time, fn func(id string, due time.Time) bool) (time.Time, bool) {
	c := tx.tx.Bucket(bucketOutboxDue).Cursor()
	end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	k, _ := c.First()
	for ; len(k) >= 8 && bytes.Compare(k[:8], end) <= 0; k, _ = c.Next() {
		if !fn(string(k[8:]), time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))) {
			return time.Time{}, false
		}
	}
	if len(k) < 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), true
}
