package selfservice

import (
	"net/http"
	"testing"
	"time"

	"tagwatch/vault/vaulttest"
	"tagwatch/vault/webpage"
)

// TestSessionStore: the lifetimes, the renewal hint, pruning and the
// bound.
func TestSessionStore(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	idle, abs := 15*time.Minute, 8*time.Hour
	var everyTen []time.Duration
	for d := 10 * time.Minute; d < abs; d += 10 * time.Minute {
		everyTen = append(everyTen, d)
	}
	cases := []struct {
		name  string
		touch []time.Duration // lookups after the sign-in, in order
		at    time.Duration
		want  sessionState
	}{
		{"just signed in", nil, 0, sessionLive},
		{"idle just short", nil, idle - time.Nanosecond, sessionLive},
		{"idle reached", nil, idle, sessionExpired},
		{"kept alive by use", []time.Duration{10 * time.Minute, 20 * time.Minute}, 34 * time.Minute, sessionLive},
		{"absolute reached though used", everyTen, abs, sessionExpired},
		{"hint just short of twice absolute", nil, 2*abs - time.Nanosecond, sessionExpired},
		{"hint gone at twice absolute", nil, 2 * abs, sessionUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSessionStore(idle, abs, 10)
			id := s.create(session{userID: "ada", provider: "corp"}, t0)
			for _, d := range c.touch {
				if _, st := s.lookup(id, t0.Add(d)); st != sessionLive {
					t.Fatalf("lookup at +%v = %v, want live", d, st)
				}
			}
			sess, st := s.lookup(id, t0.Add(c.at))
			if st != c.want {
				t.Errorf("lookup at +%v = %v, want %v", c.at, st, c.want)
			}
			if (st == sessionLive || st == sessionExpired) && (sess.userID != "ada" || sess.provider != "corp") {
				t.Errorf("lookup at +%v = %+v, want ada's session at corp", c.at, sess)
			}
		})
	}

	t.Run("ids", func(t *testing.T) {
		s := newSessionStore(idle, abs, 10)
		a, b := s.create(session{userID: "ada"}, t0), s.create(session{userID: "ada"}, t0)
		if a == b || !webpage.WellFormed(a) || !webpage.WellFormed(b) {
			t.Errorf("ids %q, %q: want two distinct 32-byte random ids", a, b)
		}
		for _, id := range []string{"", "short", a[:42] + "!", a + "x"} {
			if _, st := s.lookup(id, t0); st != sessionNone {
				t.Errorf("lookup(%q) = %v, want none", id, st)
			}
		}
		s.delete(a)
		if _, st := s.lookup(a, t0); st != sessionUnknown {
			t.Errorf("deleted id = %v, want unknown", st)
		}
		if _, st := s.lookup(b, t0); st != sessionLive {
			t.Errorf("the other id = %v, want live", st)
		}
	})

	t.Run("bound", func(t *testing.T) {
		s := newSessionStore(idle, abs, 3)
		ids := make([]string, 3)
		for i := range ids {
			ids[i] = s.create(session{userID: "u"}, t0.Add(time.Duration(i)*time.Minute))
		}
		s.lookup(ids[0], t0.Add(5*time.Minute)) // the first is now the most recently used
		s.create(session{userID: "u"}, t0.Add(6*time.Minute))
		if s.len() != 3 {
			t.Errorf("len = %d, want 3", s.len())
		}
		if _, st := s.lookup(ids[1], t0.Add(6*time.Minute)); st != sessionUnknown {
			t.Errorf("least recently used = %v, want evicted", st)
		}
		// Expired sessions go before live ones.
		s = newSessionStore(idle, abs, 3)
		old := s.create(session{userID: "u"}, t0)
		live1 := s.create(session{userID: "u"}, t0.Add(time.Hour))
		live2 := s.create(session{userID: "u"}, t0.Add(time.Hour))
		s.create(session{userID: "u"}, t0.Add(time.Hour))
		for id, want := range map[string]sessionState{old: sessionUnknown, live1: sessionLive, live2: sessionLive} {
			if _, st := s.lookup(id, t0.Add(time.Hour)); st != want {
				t.Errorf("after eviction: %v, want %v", st, want)
			}
		}
	})

	t.Run("endUser", func(t *testing.T) {
		s := newSessionStore(idle, abs, 100)
		a1 := s.create(session{userID: "ada", issuer: "https://a", subject: "alice"}, t0)
		a2 := s.create(session{userID: "ada", provider: "x", subject: "1001"}, t0)
		a3 := s.create(session{userID: "ada", issuer: "https://a", subject: "alice"}, t0.Add(-idle-time.Second)) // a hint
		bob := s.create(session{userID: "bob", issuer: "https://a", subject: "bob"}, t0)
		if n := s.endUser("ada"); n != 3 {
			t.Errorf("endUser(ada) = %d, want 3", n)
		}
		for _, id := range []string{a1, a2, a3} {
			if _, st := s.lookup(id, t0); st != sessionUnknown {
				t.Errorf("ada's session is %v after endUser, want unknown", st)
			}
		}
		if _, st := s.lookup(bob, t0); st != sessionLive {
			t.Errorf("bob's session is %v after endUser(ada), want live", st)
		}
		if n := s.endUser("ada"); n != 0 {
			t.Errorf("endUser(ada) again = %d, want 0", n)
		}
	})

	t.Run("endMatching", func(t *testing.T) {
		s := newSessionStore(idle, abs, 100)
		mk := func(iss, sub, sid string) string {
			return s.create(session{userID: "u", issuer: iss, subject: sub, sid: sid}, t0)
		}
		a := mk("https://a", "alice", "s1")
		b := mk("https://a", "alice", "s2")
		c := mk("https://a", "bob", "s3")
		d := mk("https://b", "alice", "s1")
		x := mk("", "alice", "")
		steps := []struct {
			iss, sub, sid string
			ended         int
			gone          []string
		}{
			{"https://a", "bob", "s1", 0, nil}, // sid and sub must both match
			{"https://a", "", "s1", 1, []string{a}},
			{"https://a", "", "s1", 0, nil},
			{"https://c", "alice", "", 0, nil},
			{"", "alice", "", 0, nil}, // no issuer: nothing (X sessions have none)
			{"https://a", "alice", "", 1, []string{b}},
		}
		for _, st := range steps {
			if n := s.endMatching(st.iss, st.sub, st.sid); n != st.ended {
				t.Errorf("endMatching(%q, %q, %q) = %d, want %d", st.iss, st.sub, st.sid, n, st.ended)
			}
			for _, id := range st.gone {
				if _, got := s.lookup(id, t0); got != sessionUnknown {
					t.Errorf("after endMatching(%q, %q, %q): a session that matched is %v", st.iss, st.sub, st.sid, got)
				}
			}
		}
		for _, id := range []string{c, d, x} {
			if _, got := s.lookup(id, t0); got != sessionLive {
				t.Errorf("a session no token named is %v, want live", got)
			}
		}
	})
}

func (st sessionState) String() string {
	return [...]string{"none", "unknown", "expired", "live"}[st]
}

// TestNew: what New refuses, and where a public URL with a path puts the
// page.
func TestNew(t *testing.T) {
	t.Parallel()
	op := newFakeOP(t, false)
	p := newProvider(t, "corp", op.srv.URL, testClientID, testSecret, &tokenCounter{base: http.DefaultTransport})
	db := vaulttest.Open(t)
	good := func() Config {
		return Config{Store: db, Providers: map[string]Provider{"corp": p}, PublicURL: "https://tagwatch.example.com/tw/"}
	}
	s, err := New(good())
	if err != nil {
		t.Fatal(err)
	}
	if s.prefix != "/tw/account" || s.callbackURL != "https://tagwatch.example.com/tw/account/callback" ||
		s.signedOutURL != "https://tagwatch.example.com/tw/account/signed-out" || s.providers().single != "corp" {
		t.Errorf("New(%s): prefix %q callback %q signed-out %q single %q", good().PublicURL, s.prefix, s.callbackURL, s.signedOutURL, s.providers().single)
	}
	for name, edit := range map[string]func(*Config){
		"no store":          func(c *Config) { c.Store = nil },
		"no provider":       func(c *Config) { c.Providers = nil },
		"a nil provider":    func(c *Config) { c.Providers["other"] = nil },
		"plain http":        func(c *Config) { c.PublicURL = "http://tagwatch.example.com" },
		"a query":           func(c *Config) { c.PublicURL = "https://tagwatch.example.com/?a=b" },
		"not absolute":      func(c *Config) { c.PublicURL = "/account" },
		"negative idle":     func(c *Config) { c.IdleTimeout = -time.Second },
		"negative recent":   func(c *Config) { c.RecentAuth = -time.Second },
		"negative flow ttl": func(c *Config) { c.FlowTTL = -time.Second },
		"negative absolute": func(c *Config) { c.AbsoluteTimeout = -time.Second },
		"negative exchange": func(c *Config) { c.ExchangeTimeout = -time.Second },
	} {
		c := good()
		c.Providers = map[string]Provider{"corp": p}
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("New with %s = nil error, want one", name)
		}
	}
}

// TestSetProviders: the page signs in with the set SetProviders gave
// last (a provider the daemon rebuilt on SIGHUP); a set it refuses
// leaves the one in use.
func TestSetProviders(t *testing.T) {
	t.Parallel()
	op := newFakeOP(t, false)
	tokens := &tokenCounter{base: http.DefaultTransport}
	first := newProvider(t, "corp", op.srv.URL, testClientID, testSecret, tokens)
	s, err := New(Config{Store: vaulttest.Open(t), Providers: map[string]Provider{"corp": first}, PublicURL: "https://tagwatch.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	second := newProvider(t, "corp", op.srv.URL, testClientID, testSecret, tokens)
	ps := map[string]Provider{"corp": second}
	if err := s.SetProviders(ps); err != nil {
		t.Fatal(err)
	}
	ps["corp"] = first // the set was copied
	if s.provider("corp") != second || s.providers().single != "corp" {
		t.Errorf("after SetProviders, provider(corp) is not the new one (single %q)", s.providers().single)
	}
	for name, bad := range map[string]map[string]Provider{
		"none": nil, "nil": {"corp": nil}, "unknown kind": {"corp": kindOnly{kind: "saml"}},
	} {
		if err := s.SetProviders(bad); err == nil {
			t.Errorf("SetProviders(%s) = nil, want an error", name)
		}
		if s.provider("corp") != second {
			t.Errorf("SetProviders(%s) replaced the set in use", name)
		}
	}
}

// kindOnly is a Provider of some kind whose other methods are never
// called (SetProviders refuses it first).
type kindOnly struct {
	Provider
	kind string
}

func (k kindOnly) Kind() string { return k.kind }
