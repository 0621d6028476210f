package seal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newKeyring(t testing.TB) (*MasterKey, State, *Keyring) {
	t.Helper()
	m, _, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := Init(m, t0)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(m, st)
	if err != nil {
		t.Fatal(err)
	}
	return m, st, k
}

func TestSealOpenRoundTrip(t *testing.T) {
	_, _, k := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("token"), 100)} {
		env, err := k.Seal(ad, pt)
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != len(pt)+Overhead {
			t.Errorf("len(Seal(%d bytes)) = %d, want %d", len(pt), len(env), len(pt)+Overhead)
		}
		got, err := k.Open(ad, env)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Open(Seal(%q)) = %q, %v", pt, got, err)
		}
	}
}

func TestAssociatedDataBindsPlace(t *testing.T) {
	_, _, k := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	env, err := k.Seal(ad, []byte("rt-secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []AD{
		{Kind: "grant", ID: "g2", Field: "refresh_token"},
		{Kind: "grant", ID: "g1", Field: "access_token"},
		{Kind: "user", ID: "g1", Field: "refresh_token"},
		{Kind: "grant", ID: "g", Field: "1refresh_token"}, // length prefixes keep parts apart
	} {
		if _, err := k.Open(other, env); !errors.Is(err, ErrOpen) {
			t.Errorf("Open(%+v, envelope for %+v) error = %v, want ErrOpen", other, ad, err)
		}
	}
}

func TestTamperedEnvelopes(t *testing.T) {
	_, _, k := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	env, _ := k.Seal(ad, []byte("rt-secret"))
	cases := map[string]struct {
		env  []byte
		want error
	}{
		"empty":         {nil, ErrMalformed},
		"short":         {env[:Overhead-1], ErrMalformed},
		"version":       {append([]byte{2}, env[1:]...), ErrMalformed},
		"unknown key":   {func() []byte { e := bytes.Clone(env); e[4] = 99; return e }(), ErrUnknownKey},
		"flipped nonce": {func() []byte { e := bytes.Clone(env); e[6] ^= 1; return e }(), ErrOpen},
		"flipped body":  {func() []byte { e := bytes.Clone(env); e[len(e)-1] ^= 1; return e }(), ErrOpen},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := k.Open(ad, c.env); !errors.Is(err, c.want) {
				t.Errorf("Open() error = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDistinctNonces(t *testing.T) {
	_, _, k := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	const n = 100000
	seen := make(map[[NonceSize]byte]struct{}, n)
	pt := []byte("the same plaintext every time")
	for i := 0; i < n; i++ {
		env, err := k.Seal(ad, pt)
		if err != nil {
			t.Fatal(err)
		}
		var nonce [NonceSize]byte
		copy(nonce[:], env[5:HeaderSize])
		seen[nonce] = struct{}{}
	}
	if len(seen) != n {
		t.Errorf("%d seals gave %d distinct nonces, want %d", n, len(seen), n)
	}
}

func TestWrongMasterKey(t *testing.T) {
	_, st, _ := newKeyring(t)
	other, _, _ := NewMasterKey()
	if _, err := Open(other, st); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Open(other master) error = %v, want ErrWrongMasterKey", err)
	}
	if _, _, err := st.WithNewKey(other, t0); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("WithNewKey(other master) error = %v, want ErrWrongMasterKey", err)
	}
	if _, err := st.Rewrapped(other, other); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Rewrapped(other master) error = %v, want ErrWrongMasterKey", err)
	}
}

func TestRotationAndRetire(t *testing.T) {
	m, st, k1 := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	old, _ := k1.Seal(ad, []byte("old"))
	st2, id2, err := st.WithNewKey(m, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Open(m, st2)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Active() != id2 || id2 == k1.Active() {
		t.Fatalf("Active() = %d, want new id %d != %d", k2.Active(), id2, k1.Active())
	}
	if got, err := k2.Open(ad, old); err != nil || string(got) != "old" {
		t.Fatalf("new keyring cannot open old record: %q, %v", got, err)
	}
	fresh, _ := k2.Seal(ad, []byte("new"))
	if id, _ := KeyID(fresh); id != id2 {
		t.Errorf("KeyID(new seal) = %d, want %d", id, id2)
	}
	if _, err := st2.WithoutKey(id2); err == nil {
		t.Error("WithoutKey(active) succeeded")
	}
	st3, err := st2.WithoutKey(k1.Active())
	if err != nil {
		t.Fatal(err)
	}
	k3, err := Open(m, st3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k3.Open(ad, old); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open(record of retired key) error = %v, want ErrUnknownKey", err)
	}
	if got := fmt.Sprint(k3.KeyIDs()); got != fmt.Sprint([]uint32{id2}) {
		t.Errorf("KeyIDs() = %s, want [%d]", got, id2)
	}
}

func TestRewrap(t *testing.T) {
	m1, st, k1 := newKeyring(t)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	env, _ := k1.Seal(ad, []byte("rt"))
	m2, _, _ := NewMasterKey()
	st2, err := st.Rewrapped(m1, m2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(m1, st2); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("old master opens rewrapped state: %v", err)
	}
	k2, err := Open(m2, st2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(ad, env); err != nil || string(got) != "rt" {
		t.Errorf("rewrapped keyring Open = %q, %v", got, err)
	}
	if st2.MasterID != m2.ID() || st2.MasterID == st.MasterID {
		t.Errorf("MasterID = %s, want %s", st2.MasterID, m2.ID())
	}
}

func TestStateJSONHasNoRawKeys(t *testing.T) {
	m, st, _ := newKeyring(t)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(m, back); err != nil {
		t.Fatalf("Open(state after JSON) = %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", m, m, m, m); strings.Count(s, "REDACTED") != 4 {
		t.Errorf("master key prints %q", s)
	}
}

func TestParseMasterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 32)
	ok := map[string][]byte{
		"raw":    raw,
		"hex":    []byte(strings.Repeat("ab", 32) + "\n"),
		"base64": []byte("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"),
	}
	var ids []string
	for name, in := range ok {
		m, err := ParseMasterKey(in)
		if err != nil {
			t.Errorf("ParseMasterKey(%s) error = %v", name, err)
			continue
		}
		ids = append(ids, m.ID())
	}
	if len(ids) == 3 && (ids[0] != ids[1] || ids[1] != ids[2]) {
		t.Errorf("same key in three encodings gave ids %v", ids)
	}
	for _, bad := range []string{"", "short", strings.Repeat("zz", 32), "q6urq6ur"} {
		if _, err := ParseMasterKey([]byte(bad)); err == nil {
			t.Errorf("ParseMasterKey(%q) succeeded", bad)
		}
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	_, enc, _ := NewMasterKey()
	good := filepath.Join(dir, "good.key")
	loose := filepath.Join(dir, "loose.key")
	os.WriteFile(good, enc, 0o600)
	os.WriteFile(loose, enc, 0o640)
	os.Chmod(loose, 0o640)
	if _, err := LoadMasterKey(Source{File: good}); err != nil {
		t.Errorf("LoadMasterKey(0600) = %v", err)
	}
	if _, err := LoadMasterKey(Source{File: loose}); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("LoadMasterKey(0640) error = %v, want refusal", err)
	}
	if _, err := LoadMasterKey(Source{File: filepath.Join(dir, "none")}); !errors.Is(err, ErrNoMasterKey) {
		t.Errorf("LoadMasterKey(missing) error = %v, want ErrNoMasterKey", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if _, err := LoadMasterKey(Source{Credential: "good.key"}); err != nil {
		t.Errorf("LoadMasterKey(credential) = %v", err)
	}
	if _, err := LoadMasterKey(Source{Credential: "../good.key"}); err == nil {
		t.Error("LoadMasterKey(credential with path) succeeded")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := LoadMasterKey(Source{Credential: "good.key"}); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Errorf("LoadMasterKey(credential, no dir) error = %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	m, _, _ := NewMasterKey()
	st, _ := Init(m, t0)
	k, _ := Open(m, st)
	ad := AD{Kind: "grant", ID: "g1", Field: "refresh_token"}
	env, _ := k.Seal(ad, []byte("seed"))
	f.Add(env, "g1")
	f.Add([]byte{1, 0, 0, 0, 1}, "g1")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, env []byte, id string) {
		pt, err := k.Open(AD{Kind: "grant", ID: id, Field: "refresh_token"}, env)
		if err == nil && id != "g1" {
			t.Fatalf("Open succeeded for id %q: %q", id, pt)
		}
		_, _ = KeyID(env)
		_, _ = ParseMasterKey(env)
	})
}

func BenchmarkSeal256(b *testing.B) {
	_, _, k := newKeyring(b)
	ad := AD{Kind: "grant", ID: "01JD0000000000000000000000", Field: "refresh_token"}
	pt := bytes.Repeat([]byte{'t'}, 256)
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(ad, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen256(b *testing.B) {
	_, _, k := newKeyring(b)
	ad := AD{Kind: "grant", ID: "01JD0000000000000000000000", Field: "refresh_token"}
	env, _ := k.Seal(ad, bytes.Repeat([]byte{'t'}, 256))
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(ad, env); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDerive(t *testing.T) {
	m1, enc, _ := NewMasterKey()
	again, _ := ParseMasterKey(enc)
	m2, _, _ := NewMasterKey()
	a, b := m1.Derive("links"), m1.Derive("other")
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Errorf("Derive gives %d bytes, distinct per purpose: %v", len(a), !bytes.Equal(a, b))
	}
	if !bytes.Equal(a, again.Derive("links")) || bytes.Equal(a, m2.Derive("links")) {
		t.Error("Derive is not a function of the key alone")
	}
}
