package vault

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"tagwatch/vault/kv"

	"tagwatch/vault/seal"
)

// KeyStatus describes the keyring without revealing a key.
type KeyStatus struct {
	MasterID string         `json:"master_id"`
	Active   uint32         `json:"active"`
	Keys     []DataKeyUsage `json:"keys"`
}

// DataKeyUsage is one data key and how many sealed fields use it.
type DataKeyUsage struct {
	ID      uint32    `json:"id"`
	Created time.Time `json:"created"`
	Records int       `json:"records"`
}

// sealedField is one sealed value in a record, with where it is bound.
type sealedField struct {
	ad  seal.AD
	env *[]byte
}

// sealedBucket describes a bucket whose records carry sealed fields.
type sealedBucket struct {
	name   []byte
	fields func(raw []byte) (rec any, fields []sealedField, err error)
}

var sealedBuckets = []sealedBucket{
	{bucketGrants, func(raw []byte) (any, []sealedField, error) {
		g := new(Grant)
		if err := json.Unmarshal(raw, g); err != nil {
			return nil, nil, err
		}
		return g, []sealedField{
			{grantAD(g.ID, "refresh_token"), &g.SealedRefresh},
			{grantAD(g.ID, "access_token"), &g.SealedAccess},
		}, nil
	}},
	{bucketOutbox, func(raw []byte) (any, []sealedField, error) {
		r := new(OutboxRow)
		if err := json.Unmarshal(raw, r); err != nil {
			return nil, nil, err
		}
		return r, []sealedField{{seal.AD{Kind: "outbox", ID: r.ID, Field: "secret"}, &r.SealedSecret}}, nil
	}},
	{bucketRevocations, func(raw []byte) (any, []sealedField, error) {
		r := new(Revocation)
		if err := json.Unmarshal(raw, r); err != nil {
			return nil, nil, err
		}
		return r, []sealedField{{seal.AD{Kind: "revocation", ID: r.ID, Field: "refresh_token"}, &r.Sealed}}, nil
	}},
}

// KeyStatus counts, for each data key, the sealed fields that use it.
func (db *DB) KeyStatus() (KeyStatus, error) {
	var ks KeyStatus
	err := db.View(func(tx *Tx) error {
		st := tx.kr.State()
		counts, err := countKeyUse(tx.tx)
		if err != nil {
			return err
		}
		ks = KeyStatus{MasterID: st.MasterID, Active: st.Active}
		for _, k := range st.Keys {
			ks.Keys = append(ks.Keys, DataKeyUsage{ID: k.ID, Created: k.Created, Records: counts[k.ID]})
		}
		return nil
	})
	return ks, err
}

func countKeyUse(btx kv.Tx) (map[uint32]int, error) {
	counts := map[uint32]int{}
	for _, sb := range sealedBuckets {
		err := btx.Bucket(sb.name).ForEach(func(k, v []byte) error {
			_, fields, err := sb.fields(v)
			if err != nil {
				return nil // damaged: FindDamaged reports it
			}
			for _, f := range fields {
				if len(*f.env) == 0 {
					continue
				}
				id, err := seal.KeyID(*f.env)
				if err != nil {
					continue // damaged: FindDamaged reports it
				}
				counts[id]++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// swapKeyring persists st and makes it the keyring in use, in one write
// transaction that also runs extra. Callers hold keyMu exclusively.
func (db *DB) swapKeyring(master *seal.MasterKey, st seal.State, failpoint string, extra func(kv.Tx) error) error {
	kr, err := seal.Open(master, st)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	// engineUpdate, not Update: the caller holds keyMu.
	err = db.engineUpdate(func(btx kv.Tx) error {
		if err := btx.Bucket(bucketMeta).Put(keyKeyring, raw); err != nil {
			return err
		}
		if extra != nil {
			if err := extra(btx); err != nil {
				return err
			}
		}
		db.fail(failpoint + ":before-commit")
		return nil
	})
	if err != nil {
		return err
	}
	db.fail(failpoint + ":after-commit")
	db.kr.Store(kr)
	db.master.Store(master)
	return nil
}

// RotateDataKey makes a new data key active, re-seals every sealed field
// under it in transactions of batch records (default 100), and then
// retires each old key that no record uses any more. It returns the new
// key's id.
func (db *DB) RotateDataKey(actor string, batch int) (uint32, error) {
	if batch <= 0 {
		batch = 100
	}
	db.keyMu.Lock()
	master := db.master.Load()
	st, id, err := db.kr.Load().State().WithNewKey(master, db.now())
	if err == nil {
		err = db.swapKeyring(master, st, "rotate-key", func(btx kv.Tx) error {
			return appendAudit(btx, AuditEvent{Time: db.now(), Kind: AuditKeyRotated, Actor: actor,
				Detail: fmt.Sprintf("data key %d active", id)})
		})
	}
	db.keyMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("vault: rotate data key: %w", err)
	}
	if err := db.Reseal(batch); err != nil {
		return id, err
	}
	if _, err := db.RetireUnusedKeys(actor); err != nil {
		return id, err
	}
	return id, nil
}

// Reseal re-seals, under the active key, every sealed field that uses
// another key, batch records per transaction. Damaged records (a record
// that does not decode, a field that does not open) are left as they are
// (FindDamaged reports them); KeyStatus does not count them. It is safe to run while the
// daemon works and to run again after an interruption.
func (db *DB) Reseal(batch int) error {
	if batch <= 0 {
		batch = 100
	}
	for _, sb := range sealedBuckets {
		var after []byte
		for {
			var done bool
			from := after
			err := db.Update(func(tx *Tx) error {
				// A run again (DB.Update) starts where this batch
				// started, not where a rolled-back run left off: that
				// would skip its records.
				after, done = slices.Clone(from), false
				b := tx.tx.Bucket(sb.name)
				c := b.Cursor()
				k, v := c.First()
				if after != nil {
					k, v = c.Seek(after)
					if k != nil && string(k) == string(after) {
						k, v = c.Next()
					}
				}
				type upd struct {
					key []byte
					rec any
				}
				var updates []upd
				n := 0
				for ; k != nil && n < batch; k, v = c.Next() {
					n++
					after = append(after[:0], k...)
					rec, fields, err := sb.fields(v)
					if err != nil {
						continue // damaged: left as it is, FindDamaged reports it
					}
					changed := false
					for _, f := range fields {
						if len(*f.env) == 0 {
							continue
						}
						id, err := seal.KeyID(*f.env)
						if err != nil {
							continue // damaged: left as it is
						}
						if id == tx.kr.Active() {
							continue
						}
						pt, err := tx.kr.Open(f.ad, *f.env)
						if err != nil {
							continue // damaged: left as it is
						}
						env, err := tx.kr.Seal(f.ad, pt)
						clear(pt)
						if err != nil {
							return err
						}
						*f.env = env
						changed = true
					}
					if changed {
						updates = append(updates, upd{append([]byte(nil), k...), rec})
					}
				}
				done = k == nil
				for _, u := range updates {
					if err := putJSON(b, string(u.key), u.rec); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	return nil
}

// RetireUnusedKeys removes every data key but the active one that no
// sealed field uses, and returns their ids.
func (db *DB) RetireUnusedKeys(actor string) ([]uint32, error) {
	db.keyMu.Lock()
	defer db.keyMu.Unlock()
	var counts map[uint32]int
	if err := db.engineView(func(btx kv.Tx) error {
		var err error
		counts, err = countKeyUse(btx)
		return err
	}); err != nil {
		return nil, err
	}
	st := db.kr.Load().State()
	var retired []uint32
	for _, k := range st.Keys {
		if k.ID == st.Active || counts[k.ID] > 0 {
			continue
		}
		next, err := st.WithoutKey(k.ID)
		if err != nil {
			return retired, err
		}
		st = next
		retired = append(retired, k.ID)
	}
	if len(retired) == 0 {
		return nil, nil
	}
	err := db.swapKeyring(db.master.Load(), st, "retire-key", func(btx kv.Tx) error {
		return appendAudit(btx, AuditEvent{Time: db.now(), Kind: AuditKeyRetired, Actor: actor,
			Detail: fmt.Sprintf("data keys %v retired", retired)})
	})
	if err != nil {
		return nil, fmt.Errorf("vault: retire keys: %w", err)
	}
	return retired, nil
}

// RotateMaster re-wraps every data key under next in one transaction.
// From its commit on, only next opens the vault.
func (db *DB) RotateMaster(next *seal.MasterKey, actor string) error {
	db.keyMu.Lock()
	defer db.keyMu.Unlock()
	cur := db.master.Load()
	st, err := db.kr.Load().State().Rewrapped(cur, next)
	if err != nil {
		return fmt.Errorf("vault: rotate master key: %w", err)
	}
	err = db.swapKeyring(next, st, "rotate-master", func(btx kv.Tx) error {
		return appendAudit(btx, AuditEvent{Time: db.now(), Kind: AuditMasterRotated, Actor: actor,
			Detail: fmt.Sprintf("master key %s replaced by %s", cur.ID(), next.ID())})
	})
	if err != nil {
		return fmt.Errorf("vault: rotate master key: %w", err)
	}
	return nil
}
