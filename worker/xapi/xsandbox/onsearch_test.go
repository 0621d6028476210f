package xsandbox

import (
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestOnSearch: Config.OnSearch sees every authenticated search, with its
// user, its query as sent and the sandbox clock's time, rate-limited ones
// included; a search whose token is refused is not seen.
func TestOnSearch(t *testing.T) {
	type seen struct {
		user, query string
		at          time.Time
	}
	var mu sync.Mutex
	var got []seen
	e := newEnv(t, func(c *Config) {
		c.OnSearch = func(user, query string, at time.Time) {
			mu.Lock()
			got = append(got, seen{user, query, at})
			mu.Unlock()
		}
	})
	alice, _ := e.grant("101")
	e.s.SetRateLimit(EndpointSearch, 1, 0, 15*time.Minute)
	if st, _, body := e.get(EndpointSearch, alice, url.Values{"query": {"#golang -is:retweet"}}); st != 200 {
		t.Fatalf("search = %d %s", st, body)
	}
	e.clock.Advance(time.Second)
	if st, _, _ := e.get(EndpointSearch, alice, url.Values{"query": {"#rust"}}); st != 429 {
		t.Fatalf("second search = %d, want 429 (limit 1)", st)
	}
	if st, _, _ := e.get(EndpointSearch, "not-a-token", url.Values{"query": {"#go"}}); st != 401 {
		t.Fatalf("search with a bad token = %d, want 401", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []seen{{"101", "#golang -is:retweet", t0}, {"101", "#rust", t0.Add(time.Second)}}
	if len(got) != len(want) {
		t.Fatalf("OnSearch saw %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].user != want[i].user || got[i].query != want[i].query || !got[i].at.Equal(want[i].at) {
			t.Errorf("OnSearch call %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestOnReuse: Config.OnReuse sees a spent refresh token presented again,
// with its user, when it was spent and now; a first use is not a reuse.
func TestOnReuse(t *testing.T) {
	type seen struct {
		user              string
		rotated, reusedAt time.Time
	}
	var mu sync.Mutex
	var got []seen
	e := newEnv(t, func(c *Config) {
		c.OnReuse = func(user string, rotated, reused time.Time) {
			mu.Lock()
			got = append(got, seen{user, rotated, reused})
			mu.Unlock()
		}
	})
	_, rt := e.grant("101")
	if st, body := e.refresh(rt); st != 200 {
		t.Fatalf("refresh = %d %s", st, body)
	}
	e.clock.Advance(3 * time.Second)
	if st, _ := e.refresh(rt); st != 400 {
		t.Fatalf("refresh with the spent token = %d, want 400", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []seen{{"101", t0, t0.Add(3 * time.Second)}}
	if len(got) != 1 || got[0].user != want[0].user || !got[0].rotated.Equal(want[0].rotated) || !got[0].reusedAt.Equal(want[0].reusedAt) {
		t.Fatalf("OnReuse saw %+v, want %+v", got, want)
	}
}
