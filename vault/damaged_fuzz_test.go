package vault

import (
	"errors"
	"log/slog"
	"testing"
)

// FuzzDecodeRecord: any bytes stored as any kind of record give a record
// or a *DamagedError of that kind, never a panic; the scans skip what is
// damaged and FindDamaged names it. Each input is stored under one key in
// every record bucket inside a transaction that is rolled back, so the
// target is quick.
func FuzzDecodeRecord(f *testing.F) {
	for _, seed := range []string{`{"id":"k","user_id":"u","provider":"x"}`, `{"watch_id":"k"}`, `{"seq":1}`,
		`{"id":"k","target":"console:","state":"pending","sealed_secret":"AAAA"}`,
		`{"id":"k","user_id":"u","provider":"x","state":"active","sealed_refresh":"AQID"}`,
		`{"id":"k","user_id":"u","provider":"x","state":"active","hashtags":["a"],"schedule":"@hourly","targets":["console:"]}`,
		"\xff", "", "null", `{"hash":"k"}`, `[]`, `{"id":1}`, `{"id":"k","sealed":"` + "\x00" + `"}`} {
		f.Add(seed)
	}
	db, _, _ := openNew(f)
	db.log = slog.New(slog.DiscardHandler)
	decoders := map[string]func(k, v []byte) error{
		KindUser:       func(k, v []byte) error { _, err := decodeUser(k, v); return err },
		KindGrant:      func(k, v []byte) error { _, err := decodeGrant(k, v); return err },
		KindWatch:      func(k, v []byte) error { _, err := decodeWatch(k, v); return err },
		KindCursor:     func(k, v []byte) error { _, err := decodeCursor(k, v); return err },
		KindLink:       func(k, v []byte) error { _, err := decodeLink(k, v); return err },
		KindOutbox:     func(k, v []byte) error { _, err := decodeOutbox(k, v); return err },
		KindRevocation: func(k, v []byte) error { _, err := decodeRevocation(k, v); return err },
		KindAudit:      func(k, v []byte) error { _, err := decodeAudit(k, v); return err },
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for kind, dec := range decoders {
			err := dec([]byte("k"), []byte(raw))
			var de *DamagedError
			if err != nil && (!errors.As(err, &de) || de.Kind != kind || !errors.Is(err, ErrDamaged)) {
				t.Fatalf("decode %s %q = %v, want a record or a *DamagedError of its kind", kind, raw, err)
			}
		}
		err := db.Update(func(tx *Tx) error {
			for _, k := range damageKinds {
				key := []byte("k")
				if k.name == KindAudit {
					key = []byte("\x00\x00\x00\x00\x00\x00\x00\x01")
				}
				if err := tx.tx.Bucket(k.bucket).Put(key, []byte(raw)); err != nil {
					return err
				}
			}
			if err := tx.tx.Bucket(bucketUserWatches).Put(pair("u", "k"), nil); err != nil {
				return err
			}
			if err := tx.tx.Bucket(bucketUserGrants).Put(pair("u", "x"), []byte("k")); err != nil {
				return err
			}
			for _, d := range tx.walkDamaged() {
				if d.Problem == "" || !slicesContains(DamagedKinds, d.Kind) {
					t.Fatalf("walkDamaged() = %+v", d)
				}
			}
			none := func(any) error { return nil }
			steps := []error{
				tx.Users(func(u User) error { return none(u) }),
				tx.Grants(func(g Grant) error { _, _ = tx.OpenTokens(g); return tx.grantSealed(g) }),
				tx.Watches(func(w Watch) error { return none(w) }),
				tx.UserWatches("u", func(w Watch) error { return none(w) }),
				tx.Enrollments(func(e Enrollment) error { return none(e) }),
				tx.Outbox(func(r OutboxRow) error { return tx.outboxSealed(r) }),
				tx.Revocations(func(r Revocation) error { return tx.revocationSealed(r) }),
				tx.AuditTrail(0, func(ev AuditEvent) error { return none(ev) }),
			}
			for _, err := range steps {
				if err != nil && !errors.Is(err, ErrDamaged) {
					t.Fatalf("a scan of %q = %v", raw, err)
				}
			}
			for _, lookup := range []func() error{
				func() error { _, err := tx.User("k"); return err },
				func() error { _, err := tx.UserGrant("u", "x"); return err },
				func() error { _, err := tx.Cursor("k"); return err },
				func() error { _, err := tx.Enrollment("k"); return err },
				func() error { _, err := tx.OutboxRow("k"); return err },
				func() error { _, err := tx.Revocation("k"); return err },
			} {
				if err := lookup(); err != nil && !errors.Is(err, ErrDamaged) {
					t.Fatalf("a lookup of %q = %v, want a record or ErrDamaged", raw, err)
				}
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
