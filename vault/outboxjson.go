package vault

import (
	"bytes"
	"encoding/json"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// The delivery loop reads every outbox row at least twice (to send it, to
// settle it), and decoding was the larger part of the store's cost per
// delivery. Outbox rows are therefore read (Tx.OutboxRow, Tx.Outbox) with
// the JSON v2 project's implementation of encoding/json's rules
// (github.com/go-json-experiment/json/v1, what encoding/json becomes in
// the standard library's jsonv2 experiment): the same rows, in less than
// half the time. Records are still written by encoding/json, and a record
// the fast decoder does not accept is decoded again by decodeOutbox, so a
// damaged row is named as FindDamaged names it (TestOutboxFastDecode,
// FuzzOutboxFastDecode: both decoders agree).

// decodeOutboxFast is decodeOutbox, faster for records that decode.
func decodeOutboxFast(k, v []byte) (OutboxRow, error) {
	var r OutboxRow
	if jsonv1.Unmarshal(v, &r) != nil || r.ID != string(k) || r.Target == "" {
		return decodeOutbox(k, v)
	}
	return r, nil
}

// targetKey is how a record's target starts. encoding/json writes an
// OutboxRow's fields in their order, and the fields before Target are
// strings, in which a quote is always escaped (\"): the first occurrence
// is the record's own.
var targetKey = []byte(`,"target":"`)

// peekTarget returns the target of a stored outbox record: found after
// targetKey when the value has no escapes, otherwise by decoding the
// record; "" when neither gives one.
func peekTarget(raw []byte) string {
	if i := bytes.Index(raw, targetKey); i >= 0 {
		v := raw[i+len(targetKey):]
		if j := bytes.IndexByte(v, '"'); j >= 0 && bytes.IndexByte(v[:j], '\\') < 0 {
			return string(v[:j])
		}
	}
	var r struct {
		Target string `json:"target"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	return r.Target
}
