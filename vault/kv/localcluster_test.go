package kv_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"tagwatch/vault/kv"
	"tagwatch/vault/kv/kvtest"
)

// clock is a fake clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestLocalCluster: the in-memory cluster of a store one process owns
// passes the contract of kv.Cluster, on a fake clock, the same instance
// as both handles.
func TestLocalCluster(t *testing.T) {
	kvtest.RunCluster(t, func(t *testing.T) kvtest.Clusters {
		c := &clock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
		l := kv.NewLocalCluster(c.Now)
		return kvtest.Clusters{A: l, B: l, Now: c.Now, Advance: c.Advance}
	})
}

// TestLocalClusterLeaseEdge: a lease ends exactly at its end (the clock
// at claim + lease), not a tick later: the boundary PostgreSQL's
// "until <= now()" draws too.
func TestLocalClusterLeaseEdge(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	l := kv.NewLocalCluster(c.Now)
	ctx := t.Context()
	cl := kv.Claim{Kind: "watch", ID: "w1", Round: 1, Holder: "d1", Lease: time.Second}
	if ok, err := l.Claim(ctx, cl); !ok || err != nil {
		t.Fatalf("Claim(%+v) = %v, %v; want true", cl, ok, err)
	}
	other := cl
	other.Holder = "d2"
	c.Advance(time.Second - time.Nanosecond)
	if ok, err := l.Claim(ctx, other); ok || err != nil {
		t.Fatalf("Claim(%+v) a nanosecond before the lease ends = %v, %v; want false", other, ok, err)
	}
	c.Advance(time.Nanosecond)
	if ok, err := l.Claim(ctx, other); !ok || err != nil {
		t.Fatalf("Claim(%+v) as the lease ends = %v, %v; want true", other, ok, err)
	}
}

// TestLocalClusterForgetsDeadDaemons: a daemon silent for
// kv.DaemonRetention is removed at the next heartbeat; one silent for
// less stays.
func TestLocalClusterForgetsDeadDaemons(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	l := kv.NewLocalCluster(c.Now)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Heartbeat(ctx, kv.Daemon{ID: "old"}))
	c.Advance(2 * time.Minute)
	must(l.Heartbeat(ctx, kv.Daemon{ID: "newer"}))
	c.Advance(kv.DaemonRetention - time.Minute)
	must(l.Heartbeat(ctx, kv.Daemon{ID: "live"}))
	ds, err := l.Daemons(ctx)
	must(err)
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if len(ids) != 2 || ids[0] != "newer" || ids[1] != "live" {
		t.Errorf("daemons = %q, want [newer live] (old silent for over %s)", ids, kv.DaemonRetention)
	}
}
