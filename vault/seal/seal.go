// Package seal encrypts tagwatch's secrets at rest.
//
// Records are sealed with AES-256-GCM under a data key, with a fresh random
// 96-bit nonce per seal. An envelope is
//
//	version (1 byte) | key id (4 bytes, big endian) | nonce (12 bytes) | ciphertext and tag
//
// and the associated data binds the record kind, the record id and the
// field, so a ciphertext copied into another record or field fails to open.
//
// Data keys are never stored in the clear: a MasterKey (32 random bytes
// from a file or a systemd credential) wraps each of them, and a check value
// sealed under the master key lets Open tell a wrong master key apart from
// a corrupt vault before anything is written. The persisted form is State;
// the vault stores it and hands it back to Open.
//
// A Keyring is immutable and safe for concurrent use. Rotation produces a new
// State (WithNewKey, WithoutKey, Rewrapped); the caller persists it and then
// opens a new Keyring from it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"
)

const (
	// Version is the envelope format version written by Seal.
	Version byte = 1
	// KeySize is the size of master and data keys in bytes (AES-256).
	KeySize = 32
	// NonceSize is the size of the random GCM nonce in bytes.
	NonceSize = 12
	// HeaderSize is the size of the envelope header before the ciphertext.
	HeaderSize = 1 + 4 + NonceSize
	// Overhead is how much longer an envelope is than its plaintext.
	Overhead = HeaderSize + 16
)

var (
	// ErrWrongMasterKey means the master key does not open the keyring: it is
	// not the key this vault was sealed with.
	ErrWrongMasterKey = errors.New("seal: wrong master key: it does not open this vault's keyring")
	// ErrMalformed means an envelope is too short or has an unknown version.
	ErrMalformed = errors.New("seal: malformed envelope")
	// ErrUnknownKey means an envelope names a data key the keyring does not hold.
	ErrUnknownKey = errors.New("seal: envelope names an unknown data key")
	// ErrOpen means authentication failed: the envelope was altered, or was
	// sealed for another record, field or key.
	ErrOpen = errors.New("seal: envelope does not open: altered, or sealed for another record")
)

// AD is the associated data that binds an envelope to where it is stored.
type AD struct {
	Kind  string // record kind, e.g. "grant"
	ID    string // record id
	Field string // field, e.g. "refresh_token"
}

// appendTo writes an unambiguous encoding of a (length-prefixed parts).
func (a AD) appendTo(b []byte) []byte {
	b = append(b, "tagwatch-seal-v1"...)
	for _, s := range [...]string{a.Kind, a.ID, a.Field} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// DataKey is a data key as stored: wrapped by the master key.
type DataKey struct {
	ID      uint32    `json:"id"`
	Wrapped []byte    `json:"wrapped"`
	Created time.Time `json:"created"`
}

// State is the persisted keyring: no key in it is in the clear.
type State struct {
	// MasterID is a fingerprint of the master key that wraps the data keys.
	MasterID string `json:"master_id"`
	// Check is a constant sealed under the master key; it opens only with
	// the right one.
	Check []byte `json:"check"`
	// Active is the id of the data key new seals use.
	Active uint32 `json:"active"`
	// Keys are the data keys, oldest first.
	Keys []DataKey `json:"keys"`
}

// Key returns the data key with the given id.
func (s State) Key(id uint32) (DataKey, bool) {
	for _, k := range s.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return DataKey{}, false
}

const checkPlaintext = "tagwatch master key check v1"

// Init returns a fresh keyring state with one data key, wrapped by master.
func Init(master *MasterKey, now time.Time) (State, error) {
	check, err := sealWith(master.aead, AD{Kind: "master", Field: "check"}, 0, []byte(checkPlaintext))
	if err != nil {
		return State{}, err
	}
	st := State{MasterID: master.ID(), Check: check}
	st, _, err = st.WithNewKey(master, now)
	return st, err
}

// checkMaster verifies that master opens st.
func (s State) checkMaster(master *MasterKey) error {
	pt, err := openWith(master.aead, AD{Kind: "master", Field: "check"}, s.Check)
	if err != nil || string(pt) != checkPlaintext {
		return ErrWrongMasterKey
	}
	return nil
}

func dataKeyAD(id uint32) AD {
	return AD{Kind: "datakey", ID: fmt.Sprint(id), Field: "key"}
}

// WithNewKey returns a copy of s with a new random data key, wrapped by
// master, made active. The old keys stay so existing records still open.
func (s State) WithNewKey(master *MasterKey, now time.Time) (State, uint32, error) {
	if err := s.checkMaster(master); err != nil {
		return State{}, 0, err
	}
	var id uint32 = 1
	for _, k := range s.Keys {
		if k.ID >= id {
			id = k.ID + 1
		}
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return State{}, 0, fmt.Errorf("seal: new data key: %w", err)
	}
	wrapped, err := sealWith(master.aead, dataKeyAD(id), 0, raw)
	clear(raw)
	if err != nil {
		return State{}, 0, err
	}
	out := s.clone()
	out.Keys = append(out.Keys, DataKey{ID: id, Wrapped: wrapped, Created: now.UTC()})
	out.Active = id
	return out, id, nil
}

// WithoutKey returns a copy of s without data key id. The active key cannot
// be removed; the caller must first make sure no record uses id.
func (s State) WithoutKey(id uint32) (State, error) {
	if id == s.Active {
		return State{}, fmt.Errorf("seal: key %d is active and cannot be retired", id)
	}
	if _, ok := s.Key(id); !ok {
		return State{}, fmt.Errorf("seal: retire key %d: %w", id, ErrUnknownKey)
	}
	out := s.clone()
	out.Keys = out.Keys[:0]
	for _, k := range s.Keys {
		if k.ID != id {
			out.Keys = append(out.Keys, k)
		}
	}
	return out, nil
}

// Rewrapped returns a copy of s whose data keys and check value are wrapped
// by next instead of cur. Records sealed under the data keys are unchanged.
func (s State) Rewrapped(cur, next *MasterKey) (State, error) {
	if err := s.checkMaster(cur); err != nil {
		return State{}, err
	}
	check, err := sealWith(next.aead, AD{Kind: "master", Field: "check"}, 0, []byte(checkPlaintext))
	if err != nil {
		return State{}, err
	}
	out := s.clone()
	out.MasterID = next.ID()
	out.Check = check
	for i, k := range out.Keys {
		raw, err := openWith(cur.aead, dataKeyAD(k.ID), k.Wrapped)
		if err != nil {
			return State{}, fmt.Errorf("seal: unwrap data key %d: %w", k.ID, err)
		}
		w, err := sealWith(next.aead, dataKeyAD(k.ID), 0, raw)
		clear(raw)
		if err != nil {
			return State{}, err
		}
		out.Keys[i].Wrapped = w
	}
	return out, nil
}

func (s State) clone() State {
	out := s
	out.Check = append([]byte(nil), s.Check...)
	out.Keys = make([]DataKey, len(s.Keys))
	for i, k := range s.Keys {
		k.Wrapped = append([]byte(nil), k.Wrapped...)
		out.Keys[i] = k
	}
	return out
}

// Keyring seals and opens records with unwrapped data keys. It is immutable
// and safe for concurrent use.
type Keyring struct {
	active uint32
	aeads  map[uint32]cipher.AEAD
	state  State
}

// Open unwraps st's data keys with master. A master key that does not match
// gives ErrWrongMasterKey; nothing is written either way.
func Open(master *MasterKey, st State) (*Keyring, error) {
	if err := st.checkMaster(master); err != nil {
		return nil, err
	}
	k := &Keyring{active: st.Active, aeads: make(map[uint32]cipher.AEAD, len(st.Keys)), state: st.clone()}
	for _, dk := range st.Keys {
		raw, err := openWith(master.aead, dataKeyAD(dk.ID), dk.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("seal: unwrap data key %d: %w", dk.ID, err)
		}
		a, err := newAEAD(raw)
		clear(raw)
		if err != nil {
			return nil, err
		}
		k.aeads[dk.ID] = a
	}
	if _, ok := k.aeads[st.Active]; !ok {
		return nil, fmt.Errorf("seal: active key %d: %w", st.Active, ErrUnknownKey)
	}
	return k, nil
}

// State returns a copy of the state the keyring was opened from.
func (k *Keyring) State() State { return k.state.clone() }

// Active returns the id of the data key Seal uses.
func (k *Keyring) Active() uint32 { return k.active }

// KeyIDs returns the ids of the data keys the keyring holds, ascending.
func (k *Keyring) KeyIDs() []uint32 {
	ids := make([]uint32, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Seal encrypts plaintext for the place ad names, under the active key.
func (k *Keyring) Seal(ad AD, plaintext []byte) ([]byte, error) {
	return sealWith(k.aeads[k.active], ad, k.active, plaintext)
}

// Open decrypts an envelope sealed for the place ad names. It returns
// ErrMalformed, ErrUnknownKey or ErrOpen, and never panics on any input.
func (k *Keyring) Open(ad AD, envelope []byte) ([]byte, error) {
	id, err := KeyID(envelope)
	if err != nil {
		return nil, err
	}
	a, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w (key %d)", ErrUnknownKey, id)
	}
	return openWith(a, ad, envelope)
}

// KeyID returns the id of the data key an envelope was sealed with.
func KeyID(envelope []byte) (uint32, error) {
	if len(envelope) < Overhead || envelope[0] != Version {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint32(envelope[1:5]), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return a, nil
}

func sealWith(a cipher.AEAD, ad AD, id uint32, plaintext []byte) ([]byte, error) {
	out := make([]byte, HeaderSize, Overhead+len(plaintext))
	out[0] = Version
	binary.BigEndian.PutUint32(out[1:5], id)
	if _, err := rand.Read(out[5:HeaderSize]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	var adBuf [128]byte
	return a.Seal(out, out[5:HeaderSize], plaintext, ad.appendTo(append(adBuf[:0], out[:5]...))), nil
}

func openWith(a cipher.AEAD, ad AD, envelope []byte) ([]byte, error) {
	if len(envelope) < Overhead || envelope[0] != Version {
		return nil, ErrMalformed
	}
	var adBuf [128]byte
	pt, err := a.Open(nil, envelope[5:HeaderSize], envelope[HeaderSize:], ad.appendTo(append(adBuf[:0], envelope[:5]...)))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// fingerprint derives a public, non-reversible id for a key.
func fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("tagwatch key fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}
