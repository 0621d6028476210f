package worker

import (
	"strings"
	"sync"
	"time"
)

// fairShare splits each provider's app-wide request window (X: 450
// searches per 15 minutes for the whole app) among the users who have
// watches scheduled there, so one user's watches cannot spend it for
// everyone. A user's share is the window's budget divided by the users
// with scheduled watches at the provider, and at least one request. A run
// is admitted while its user has used less than their share and the window
// is not spent; otherwise it is held until the window resets, and the
// other users' runs go on.
//
// A window opens with the first request after the previous one ended and
// lasts Config.AppWindow (the provider's own window, like X's, starts with
// a request). A run is charged one request when admitted and its pages
// when it ends; a run that made no request is refunded.
//
// Safe for concurrent use.
type fairShare struct {
	limit  int // requests per window; <= 0: no limit
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	// watches are the scheduled watches, each to its (user, provider)
	// in refs: a million watches are ten to a user, and a string and an
	// index a watch is what the table costs (about 40 bytes, not the
	// 115 a pair of strings a watch took).
	watches map[string]uint32
	refs    []refCount
	refIdx  map[watchRef]uint32
	free    []uint32
	provs   map[string]*provWindow
}

type watchRef struct{ user, provider string }

// refCount is a (user, provider) and how many scheduled watches name it.
type refCount struct {
	watchRef
	n int
}

// provWindow is one provider's window.
type provWindow struct {
	users map[string]int // scheduled watches per user
	end   time.Time      // the window's end; zero: none open
	total int
	used  map[string]int
	held  map[string]bool // users told they are held in this window
}

func newFairShare(limit int, window time.Duration, now func() time.Time) *fairShare {
	return &fairShare{limit: limit, window: window, now: now, watches: map[string]uint32{}, refIdx: map[watchRef]uint32{},
		provs: map[string]*provWindow{}}
}

func (f *fairShare) prov(name string) *provWindow {
	p := f.provs[name]
	if p == nil {
		p = &provWindow{users: map[string]int{}, used: map[string]int{}, held: map[string]bool{}}
		f.provs[name] = p
	}
	return p
}

// track records that a watch is scheduled for user at provider.
func (f *fairShare) track(watchID, user, provider string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := watchRef{user, provider}
	if i, ok := f.watches[watchID]; ok {
		if f.refs[i].watchRef == ref {
			return
		}
		f.dropLocked(watchID, i)
	}
	i, ok := f.refIdx[ref]
	if !ok {
		// Own the strings: callers' may be views of bigger buffers.
		ref = watchRef{strings.Clone(user), strings.Clone(provider)}
		if n := len(f.free); n > 0 {
			i, f.free = f.free[n-1], f.free[:n-1]
			f.refs[i] = refCount{watchRef: ref}
		} else {
			i = uint32(len(f.refs))
			f.refs = append(f.refs, refCount{watchRef: ref})
		}
		f.refIdx[ref] = i
	}
	f.refs[i].n++
	f.watches[strings.Clone(watchID)] = i
	f.prov(provider).users[f.refs[i].user]++
}

// scheduledAt returns the watches scheduled at provider, by id, with
// their users.
func (f *fairShare) scheduledAt(provider string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for id, i := range f.watches {
		if r := f.refs[i]; r.provider == provider {
			out[id] = r.user
		}
	}
	return out
}

// untrack records that a watch left the schedule.
func (f *fairShare) untrack(watchID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.watches[watchID]; ok {
		f.dropLocked(watchID, i)
	}
}

func (f *fairShare) dropLocked(watchID string, i uint32) {
	delete(f.watches, watchID)
	ref := f.refs[i].watchRef
	p := f.prov(ref.provider)
	if p.users[ref.user]--; p.users[ref.user] <= 0 {
		delete(p.users, ref.user)
	}
	if f.refs[i].n--; f.refs[i].n == 0 {
		delete(f.refIdx, ref)
		f.refs[i] = refCount{}
		f.free = append(f.free, i)
	}
}

// roll starts a new window when the current one is over.
func (p *provWindow) roll(now time.Time) {
	if !p.end.IsZero() && now.Before(p.end) {
		return
	}
	p.end = time.Time{}
	p.total = 0
	clear(p.used)
	clear(p.held)
}

// share returns a user's share of the window.
func (f *fairShare) share(p *provWindow, user string) int {
	n := len(p.users)
	if p.users[user] == 0 {
		n++ // a run of a watch not in the schedule (RunWatch, RunNow)
	}
	return max(1, f.limit/n)
}

// admit asks for one request of user at provider. It returns true and
// charges it, or false with when the window resets, and first true the
// first time the user is held in this window (to log it once).
func (f *fairShare) admit(provider, user string) (ok bool, reset time.Time, first bool) {
	if f.limit <= 0 {
		return true, time.Time{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	p := f.prov(provider)
	p.roll(now)
	if p.total >= f.limit || p.used[user] >= f.share(p, user) {
		first = !p.held[user]
		p.held[user] = true
		return false, p.end, first
	}
	if p.end.IsZero() {
		p.end = now.Add(f.window)
	}
	p.total++
	p.used[user]++
	return true, p.end, false
}

// charge adds n requests (negative: a refund) to an admitted run of user
// at provider, in the window it was admitted in (a window that ended
// meanwhile is not charged).
func (f *fairShare) charge(provider, user string, reset time.Time, n int) {
	if f.limit <= 0 || n == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.prov(provider)
	if !p.end.Equal(reset) {
		return
	}
	p.total = max(0, p.total+n)
	p.used[user] = max(0, p.used[user]+n)
}

// usage returns what user has used of their share at provider, the share,
// and the window's total, for tests and logs.
func (f *fairShare) usage(provider, user string) (used, share, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.prov(provider)
	p.roll(f.now())
	return p.used[user], f.share(p, user), p.total
}
