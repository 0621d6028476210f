package kv

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"
)

// LocalCluster is the Cluster of a store one process owns (bbolt): the
// same rules, kept in memory and lost at exit, which is what they are
// for: a restarted process is a new holder, and every claim and flow of
// its previous life is gone with it. Now is its clock (default
// time.Now). Create it with NewLocalCluster.
type LocalCluster struct {
	now func() time.Time

	mu      sync.Mutex
	claims  map[[2]string]*localClaim
	daemons map[string]Daemon
	flows   map[string]localFlow
	subs    map[string]map[*localSub]struct{}
}

type localClaim struct {
	round  int64
	holder string
	until  time.Time
	done   bool
}

type localFlow struct {
	value   []byte
	expires time.Time
}

type localSub struct{ ch chan string }

var _ Cluster = (*LocalCluster)(nil)

// NewLocalCluster returns an empty LocalCluster on clock now (nil:
// time.Now).
func NewLocalCluster(now func() time.Time) *LocalCluster {
	if now == nil {
		now = time.Now
	}
	return &LocalCluster{now: now, claims: map[[2]string]*localClaim{}, daemons: map[string]Daemon{},
		flows: map[string]localFlow{}, subs: map[string]map[*localSub]struct{}{}}
}

// Claim implements Cluster. A holder whose claim has ended (released,
// or expired) holds it no more: a round it finished is refused to it as
// to any other.
func (l *LocalCluster) Claim(_ context.Context, c Claim) (bool, error) {
	if err := c.Check(); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := [2]string{c.Kind, c.ID}
	if cl := l.claims[k]; cl != nil {
		running := now.Before(cl.until)
		held := running && cl.holder == c.Holder
		free := !running && (cl.round < c.Round || !cl.done)
		if !held && !free {
			return false, nil
		}
	}
	l.claims[k] = &localClaim{round: c.Round, holder: c.Holder, until: now.Add(c.Lease)}
	return true, nil
}

// Release implements Cluster.
func (l *LocalCluster) Release(_ context.Context, kind, id, holder string, done bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cl := l.claims[[2]string{kind, id}]; cl != nil && cl.holder == holder {
		cl.until, cl.done = l.now(), done
	}
	return nil
}

// Heartbeat implements Cluster; a zero d.Started at the first call
// becomes the time of that call.
func (l *LocalCluster) Heartbeat(_ context.Context, d Daemon) error {
	if d.ID == "" {
		return errors.New("kv: a heartbeat needs the daemon's id")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d.Heartbeat, d.Holds = l.now(), nil
	if old, ok := l.daemons[d.ID]; ok {
		d.Started = old.Started
	} else if d.Started.IsZero() {
		d.Started = d.Heartbeat
	}
	l.daemons[d.ID] = d
	for id, o := range l.daemons {
		if d.Heartbeat.Sub(o.Heartbeat) >= DaemonRetention {
			delete(l.daemons, id)
		}
	}
	return nil
}

// Alive implements Cluster.
func (l *LocalCluster) Alive(_ context.Context, id string, lease time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.daemons[id]
	return ok && l.now().Sub(d.Heartbeat) < lease, nil
}

// Leave implements Cluster.
func (l *LocalCluster) Leave(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.daemons, id)
	now := l.now()
	for _, cl := range l.claims {
		if cl.holder == id && now.Before(cl.until) {
			cl.until, cl.done = now, false
		}
	}
	return nil
}

// Daemons implements Cluster.
func (l *LocalCluster) Daemons(_ context.Context) ([]Daemon, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := make([]Daemon, 0, len(l.daemons))
	for _, d := range l.daemons {
		d.Holds = map[string]int{}
		for k, cl := range l.claims {
			if cl.holder == d.ID && now.Before(cl.until) {
				d.Holds[k[0]]++
			}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Daemon) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// PutFlow implements Cluster.
func (l *LocalCluster) PutFlow(_ context.Context, key string, value []byte, expires time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	maps.DeleteFunc(l.flows, func(_ string, f localFlow) bool { return !now.Before(f.expires) })
	l.flows[key] = localFlow{value: slices.Clone(value), expires: expires}
	return nil
}

// TakeFlow implements Cluster.
func (l *LocalCluster) TakeFlow(_ context.Context, key string) ([]byte, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.flows[key]
	delete(l.flows, key)
	if !ok || !l.now().Before(f.expires) {
		return nil, false, nil
	}
	return f.value, true, nil
}

// Publish implements Cluster.
func (l *LocalCluster) Publish(_ context.Context, channel, payload string) error {
	if err := CheckChannel(channel); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs[channel] {
		select {
		case s.ch <- payload:
		default: // a subscriber that does not keep up loses it, as with NOTIFY's full queue
		}
	}
	return nil
}

// Subscribe implements Cluster.
func (l *LocalCluster) Subscribe(ctx context.Context, channel string, fn func(string), _ func()) error {
	if err := CheckChannel(channel); err != nil {
		return err
	}
	s := &localSub{ch: make(chan string, 1024)}
	l.mu.Lock()
	if l.subs[channel] == nil {
		l.subs[channel] = map[*localSub]struct{}{}
	}
	l.subs[channel][s] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs[channel], s)
		l.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case p := <-s.ch:
			fn(p)
		}
	}
}
