package vaulttest_test

import (
	"slices"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/vaulttest"
)

// TestStubRules: the stub normalises what it accepts and names what it
// refuses.
func TestStubRules(t *testing.T) {
	r := vaulttest.StubRules{Refuse: []string{"nope", "refused:"}}
	for _, tc := range []struct {
		name     string
		in       vault.WatchSpec
		wantTags []string
		wantErr  string
	}{
		{"normalised", vault.WatchSpec{Hashtags: []string{" #Go ", "go", "rust_1"}, Schedule: " @hourly ", Targets: []string{"console:"}},
			[]string{"Go", "rust_1"}, ""},
		{"digits only", vault.WatchSpec{Hashtags: []string{"#123"}, Schedule: "@hourly", Targets: []string{"console:"}}, nil, `hashtag "123": needs a letter`},
		{"punctuation", vault.WatchSpec{Hashtags: []string{"go-lang"}, Schedule: "@hourly", Targets: []string{"console:"}}, nil,
			`hashtag "go-lang": use letters, digits or underscores`},
		{"refused hashtag", vault.WatchSpec{Hashtags: []string{"nope"}, Schedule: "@hourly", Targets: []string{"console:"}}, nil, `hashtag "nope" is refused`},
		{"refused target", vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly", Targets: []string{"refused:"}}, nil,
			`target "refused:": no channel delivers to it`},
		{"no schedule", vault.WatchSpec{Hashtags: []string{"go"}, Targets: []string{"console:"}}, nil, "a watch needs a schedule"},
		{"no target", vault.WatchSpec{Hashtags: []string{"go"}, Schedule: "@hourly"}, nil, "a watch needs at least one notification target"},
		{"no hashtag", vault.WatchSpec{Schedule: "@hourly", Targets: []string{"console:"}}, nil, "a watch needs at least one hashtag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.Hashtags = slices.Clone(tc.in.Hashtags)
			err := r.CheckWatch("x", &got)
			switch {
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("CheckWatch(%v) = %v, want %q", tc.in.Hashtags, err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || !slices.Equal(got.Hashtags, tc.wantTags) || got.Schedule != "@hourly"):
				t.Errorf("CheckWatch(%v) = %v, %v %q; want %v @hourly", tc.in.Hashtags, err, got.Hashtags, got.Schedule, tc.wantTags)
			}
		})
	}
}

// TestClock: the zero clock reads T0; Advance and Set move it.
func TestClock(t *testing.T) {
	var c vaulttest.Clock
	if got := c.Now(); !got.Equal(vaulttest.T0) {
		t.Errorf("zero Clock.Now() = %v, want T0 %v", got, vaulttest.T0)
	}
	c.Advance(time.Hour)
	if got := c.Now(); !got.Equal(vaulttest.T0.Add(time.Hour)) {
		t.Errorf("Now() after Advance(1h) = %v, want %v", got, vaulttest.T0.Add(time.Hour))
	}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.Set(at)
	if got := c.Now(); !got.Equal(at) {
		t.Errorf("Now() after Set = %v, want %v", got, at)
	}
}

// TestEnroll: Enroll stores a grant and its watch through a consent link,
// and the vault stays consistent (Open's check runs after this test).
func TestEnroll(t *testing.T) {
	db := vaulttest.Open(t)
	res := vaulttest.Enroll(t, db, vaulttest.Enrollment{User: "zed"})
	if res.Grant.State != vault.GrantActive || len(res.Started) != 1 || res.Started[0].State != vault.WatchActive {
		t.Fatalf("Enroll = grant %s, started %v; want an active grant and watch", res.Grant.State, res.Started)
	}
	_, tok, err := db.GrantTokens(res.Grant.ID)
	if err != nil || tok.Refresh.Reveal() != "rt-zed" || tok.Access.Reveal() != "at-zed" {
		t.Errorf("GrantTokens = %v; want rt-zed / at-zed", err)
	}
}
