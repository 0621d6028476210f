package webpage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/kv"
)

// TestFlowStore drives a store through a sequence of operations per case:
// single use, the binding (RFC 6749 §10.12), expiry, the cap per group
// with the eviction of that group's oldest, and the full store.
func TestFlowStore(t *testing.T) {
	type op struct {
		do                    string // "add", "take", "peek"
		state, binding, group string
		at                    time.Duration // now, from t0
		ttl                   time.Duration // add: the flow expires at now+ttl (0: an hour)
		want                  error
	}
	add := func(state, group string) op { return op{do: "add", state: state, binding: "b", group: group} }
	take := func(state string, want error) op { return op{do: "take", state: state, binding: "b", want: want} }
	cases := []struct {
		name          string
		max, perGroup int
		ops           []op
		len           int // flows held at the end
	}{
		{"single use", 10, 8, []op{
			add("s1", "g"), take("s1", nil), take("s1", ErrNoFlow),
		}, 0},
		{"unknown state", 10, 8, []op{
			add("s1", "g"), take("s2", ErrNoFlow), take("", ErrNoFlow),
		}, 1},
		{"wrong binding leaves the flow in place", 10, 8, []op{
			add("s1", "g"),
			{do: "take", state: "s1", binding: "b2", want: ErrFlowBinding},
			{do: "take", state: "s1", binding: "", want: ErrFlowBinding},
			{do: "take", state: "s1", binding: "b ", want: ErrFlowBinding},
			{do: "peek", state: "s1", binding: "other", want: ErrFlowBinding},
			take("s1", nil),
		}, 0},
		{"an empty binding never matches", 10, 8, []op{
			{do: "add", state: "s1", binding: "", group: "g"},
			{do: "take", state: "s1", binding: "", want: ErrFlowBinding},
		}, 1},
		{"peek does not spend", 10, 8, []op{
			add("s1", "g"),
			{do: "peek", state: "s1", binding: "b"}, {do: "peek", state: "s1", binding: "b"},
			take("s1", nil),
			{do: "peek", state: "s1", binding: "b", want: ErrNoFlow},
		}, 0},
		{"live until just before it expires", 10, 8, []op{
			{do: "add", state: "s1", binding: "b", group: "g", ttl: time.Minute},
			{do: "peek", state: "s1", binding: "b", at: time.Minute - time.Nanosecond},
			{do: "take", state: "s1", binding: "b", at: time.Minute - time.Nanosecond},
		}, 0},
		{"expired at its expiry, and dropped", 10, 8, []op{
			{do: "add", state: "s1", binding: "b", group: "g", ttl: time.Minute},
			{do: "add", state: "s2", binding: "b", group: "g", ttl: time.Minute},
			{do: "take", state: "s1", binding: "b", at: time.Minute, want: ErrNoFlow},
			{do: "peek", state: "s2", binding: "b", at: time.Hour, want: ErrNoFlow},
			{do: "take", state: "s2", binding: "b", at: time.Hour, want: ErrNoFlow},
		}, 0},
		{"an expired flow needs no binding to be dropped", 10, 8, []op{
			{do: "add", state: "s1", binding: "b", group: "g", ttl: time.Minute},
			{do: "take", state: "s1", binding: "x", at: time.Minute, want: ErrNoFlow},
		}, 0},
		{"cap per group evicts the group's oldest", 10, 2, []op{
			add("s1", "g"), add("s2", "g"), add("s3", "g"),
			take("s1", ErrNoFlow), take("s2", nil), take("s3", nil),
		}, 0},
		{"the oldest is the first added, not the first taken", 10, 2, []op{
			add("s1", "g"), add("s2", "g"), take("s1", nil), add("s3", "g"), add("s4", "g"),
			take("s2", ErrNoFlow), take("s3", nil), take("s4", nil),
		}, 0},
		{"cap per group leaves other groups alone", 10, 2, []op{
			add("b1", "B"), add("a1", "A"), add("a2", "A"), add("b2", "B"), add("a3", "A"),
			take("a1", ErrNoFlow), take("b1", nil), take("b2", nil), take("a2", nil), take("a3", nil),
		}, 0},
		{"cap per group drops expired flows first", 10, 2, []op{
			{do: "add", state: "s1", binding: "b", group: "g", ttl: time.Hour},
			{do: "add", state: "s2", binding: "b", group: "g", ttl: time.Minute},
			{do: "add", state: "s3", binding: "b", group: "g", at: 2 * time.Minute},
			{do: "take", state: "s1", binding: "b", at: 2 * time.Minute},
			{do: "take", state: "s3", binding: "b", at: 2 * time.Minute},
		}, 0},
		{"cap below 1 counts as 1", 10, 0, []op{
			add("s1", "g"), add("s2", "g"), take("s1", ErrNoFlow), take("s2", nil),
		}, 0},
		{"the group is not the binding", 10, 1, []op{
			{do: "add", state: "s1", binding: "b1", group: "g"},
			{do: "add", state: "s2", binding: "b2", group: "g"},
			{do: "take", state: "s1", binding: "b1", want: ErrNoFlow},
			{do: "take", state: "s2", binding: "b2"},
		}, 0},
		{"full store refuses a new group", 3, 8, []op{
			add("s1", "g1"), add("s2", "g2"), add("s3", "g3"),
			{do: "add", state: "s4", binding: "b", group: "g4", want: ErrFlowsFull},
			take("s4", ErrNoFlow), take("s1", nil),
			add("s4", "g4"),
		}, 3},
		{"full store makes room by dropping expired flows", 2, 8, []op{
			{do: "add", state: "s1", binding: "b", group: "g1", ttl: time.Minute},
			add("s2", "g2"),
			{do: "add", state: "s3", binding: "b", group: "g3", at: time.Minute - time.Nanosecond, want: ErrFlowsFull},
			{do: "add", state: "s3", binding: "b", group: "g3", at: time.Minute},
			take("s1", ErrNoFlow), take("s2", nil), take("s3", nil),
		}, 0},
		{"full store, group at its cap: the group's oldest makes room", 2, 2, []op{
			add("s1", "g"), add("s2", "g"), add("s3", "g"),
			take("s1", ErrNoFlow), take("s2", nil), take("s3", nil),
		}, 0},
		{"no room at all", 0, 8, []op{
			{do: "add", state: "s1", binding: "b", group: "g", want: ErrFlowsFull},
			take("s1", ErrNoFlow),
		}, 0},
		{"the same state again replaces its flow", 10, 8, []op{
			add("s1", "g"), add("s1", "g"), take("s1", nil), take("s1", ErrNoFlow),
		}, 0},
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The backend's clock is the operations' clock.
			var now time.Time
			fs := NewFlowStore[string](kv.NewLocalCluster(func() time.Time { return now }), "test", c.max, c.perGroup)
			for i, o := range c.ops {
				now = t0.Add(o.at)
				var err error
				var got string
				switch o.do {
				case "add":
					ttl := o.ttl
					if ttl == 0 {
						ttl = time.Hour
					}
					err = fs.Add(ctx, o.state, o.binding, o.group, "flow "+o.state, now.Add(ttl), now)
				case "take":
					got, err = fs.Take(ctx, o.state, o.binding, now)
				case "peek":
					got, err = fs.Peek(ctx, o.state, o.binding, now)
				}
				if err != o.want {
					t.Fatalf("op %d: %s %q with binding %q = %v, want %v", i, o.do, o.state, o.binding, err, o.want)
				}
				if o.do != "add" && err == nil && got != "flow "+o.state {
					t.Fatalf("op %d: %s %q = %q, want that state's flow", i, o.do, o.state, got)
				}
				if o.do != "add" && err != nil && got != "" {
					t.Fatalf("op %d: %s %q gave %q with %v, want the zero value", i, o.do, o.state, got, err)
				}
			}
			if n := fs.Len(); n != c.len {
				t.Errorf("Len = %d, want %d", n, c.len)
			}
		})
	}
}

// TestFlowStoreConcurrent: Add, Peek and Take from many goroutines (run
// with -race); each flow is taken exactly once.
func TestFlowStoreConcurrent(t *testing.T) {
	fs := NewFlowStore[int](kv.NewLocalCluster(nil), "test", 1000, 8)
	now := time.Now()
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := map[int]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				state := fmt.Sprintf("s%d-%d", g, i)
				if err := fs.Add(ctx, state, "b", state, g*100+i, now.Add(time.Hour), now); err != nil {
					t.Error(err)
					return
				}
				for range 2 {
					if v, err := fs.Take(ctx, state, "b", now); err == nil {
						mu.Lock()
						taken[v]++
						mu.Unlock()
					}
					_, _ = fs.Peek(ctx, state, "b", now)
				}
			}
		}()
	}
	wg.Wait()
	if len(taken) != 400 || fs.Len() != 0 {
		t.Fatalf("%d flows taken, %d left; want 400 and 0", len(taken), fs.Len())
	}
	for v, n := range taken {
		if n != 1 {
			t.Errorf("flow %d taken %d times", v, n)
		}
	}
}

func TestFlowReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{ErrNoFlow, "unknown"},
		{fmt.Errorf("continue page: %w", ErrNoFlow), "unknown"},
		{ErrFlowBinding, "browser"},
		{fmt.Errorf("continue page: %w", ErrFlowBinding), "browser"},
		{ErrFlowsFull, "internal"},
		{errors.New("unknown, expired or used state"), "internal"}, // the text is not the error
	} {
		if got := FlowReason(c.err, "unknown", "browser", "internal"); got != c.want {
			t.Errorf("FlowReason(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestCallbackState: the state of an authorization response, none of
// whose parameters may be repeated (RFC 6749 §3.1).
func TestCallbackState(t *testing.T) {
	for _, c := range []struct {
		query, state, err string
	}{
		{"state=s&code=c&iss=https%3A%2F%2Fop", "s", ""},
		{"state=s&error=access_denied&error_description=no", "s", ""},
		{"state=s&foo=1&foo=2", "s", ""}, // not a response parameter
		{"code=c", "", "no state"},
		{"state=&code=c", "", "no state"},
		{"state=s&state=t", "", "parameter state repeated"},
		{"state=s&code=c&code=d", "", "parameter code repeated"},
		{"state=s&iss=a&iss=b", "", "parameter iss repeated"},
		{"state=s&error=a&error=b", "", "parameter error repeated"},
		{"state=s&error_description=a&error_description=b", "", "parameter error_description repeated"},
		{"state=s&error_uri=a&error_uri=b", "", "parameter error_uri repeated"},
		{"code=c&code=d", "", "parameter code repeated"},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		state, err := CallbackState(q)
		if state != c.state || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("CallbackState(%s) = %q, %v; want %q, %q", c.query, state, err, c.state, c.err)
		}
	}
}

// TestFlowStoreZero: the zero FlowStore refuses every flow, without a
// panic.
func TestFlowStoreZero(t *testing.T) {
	var fs FlowStore[string]
	now := time.Now()
	ctx := context.Background()
	if err := fs.Add(ctx, "s", "b", "g", "v", now.Add(time.Hour), now); err != ErrFlowsFull {
		t.Errorf("Add = %v, want ErrFlowsFull", err)
	}
	if _, err := fs.Take(ctx, "s", "b", now); err != ErrNoFlow {
		t.Errorf("Take = %v, want ErrNoFlow", err)
	}
	if _, err := fs.Peek(ctx, "s", "b", now); err != ErrNoFlow {
		t.Errorf("Peek = %v, want ErrNoFlow", err)
	}
	if fs.Len() != 0 {
		t.Errorf("Len = %d", fs.Len())
	}
	// Without a backend: no flow is stored, and the error says why.
	nb := NewFlowStore[string](nil, "test", 10, 8)
	if err := nb.Add(ctx, "s", "b", "g", "v", now.Add(time.Hour), now); err == nil || errors.Is(err, ErrFlowsFull) || !strings.Contains(err.Error(), "no backend") {
		t.Errorf("Add without a backend = %v, want an error saying there is no backend", err)
	}
	if _, err := nb.Take(ctx, "s", "b", now); err != ErrNoFlow || nb.Len() != 0 {
		t.Errorf("Take without a backend = %v (Len %d), want ErrNoFlow and none held", err, nb.Len())
	}
}
