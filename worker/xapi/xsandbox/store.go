package xsandbox

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// User is an X account known to the sandbox.
type User struct {
	// ID is the account's id: a decimal string, as on X.
	ID string
	// Username is the handle without the @.
	Username string
	// Name is the display name.
	Name string
}

// Post is a post to inject with [Server.Post].
type Post struct {
	// AuthorID is the id of the author. It should name a user added with
	// [Server.AddUser]; a post by an unknown author is stored, and a search
	// that expands author_id reports the author as a partial error, as X
	// does for accounts it cannot show.
	AuthorID string
	// Text is the post's text. Hashtags (#word) in it are indexed.
	Text string
	// Lang is the BCP 47 language tag; empty means "en".
	Lang string
	// IsRetweet marks a repost (matched by is:retweet).
	IsRetweet bool
	// CreatedAt is the post's time; the zero value means the sandbox clock's
	// now. Posts older than 7 days by the clock are not found by search.
	CreatedAt time.Time
}

// twitterEpoch is the epoch of X's snowflake ids, in Unix milliseconds.
const twitterEpoch = 1288834974657

// snowflake returns the smallest snowflake id of the millisecond of t.
func snowflake(t time.Time) uint64 {
	ms := t.UnixMilli() - twitterEpoch
	if ms <= 0 {
		return 0
	}
	return uint64(ms) << 22
}

// tagEntry is the posting list of one lower-cased hashtag: positions in
// store.posts, ascending (so ids ascending).
type tagEntry struct {
	id   uint32
	list []int32
}

// post is a stored post. Once appended, a post is never modified, which is
// what lets readers use a snapshot of the slice without a lock.
//
// Apart from text it holds no pointers, so the garbage collector has little
// to scan in a million posts.
type post struct {
	id      uint64
	created int64 // Unix nanoseconds
	text    string
	author  uint32 // index in store.names
	lang    uint32 // index in store.names
	tagOff  uint32 // tag ids are tagArena[tagOff : tagOff+tagN]
	tagN    uint16
	retweet bool
}

// store holds users and posts. Writers take mu; readers take a snapshot
// under mu.RLock and then work without the lock: slices are append-only, so
// the elements a snapshot can see never change.
type store struct {
	mu       sync.RWMutex
	posts    []post
	tagArena []uint32
	tags     map[string]*tagEntry
	names    []string          // interned author ids and langs
	intern   map[string]uint32 // index in names
	lastID   uint64

	users     map[string]User
	profiles  []*User           // by index in names: the user with that id, or nil
	byName    map[string]string // lower-cased username -> id
	userOrder []string
}

func newStore() *store {
	return &store{
		tags:   make(map[string]*tagEntry),
		intern: make(map[string]uint32),
		users:  make(map[string]User),
		byName: make(map[string]string),
	}
}

// validID reports whether s is a decimal id of 1 to 19 digits.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func (st *store) addUser(u User) error {
	if !validID(u.ID) {
		return fmt.Errorf("xsandbox: add user: id %q is not a decimal id", u.ID)
	}
	if u.Username == "" {
		return fmt.Errorf("xsandbox: add user %s: empty username", u.ID)
	}
	if u.Name == "" {
		u.Name = u.Username
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if old, ok := st.users[u.ID]; ok {
		delete(st.byName, strings.ToLower(old.Username))
	} else {
		st.userOrder = append(st.userOrder, u.ID)
	}
	st.users[u.ID] = u
	st.byName[strings.ToLower(u.Username)] = u.ID
	i := st.internLocked(u.ID)
	for int(i) >= len(st.profiles) {
		st.profiles = append(st.profiles, nil)
	}
	st.profiles[i] = &u
	return nil
}

func (st *store) user(id string) (User, bool) {
	st.mu.RLock()
	u, ok := st.users[id]
	st.mu.RUnlock()
	return u, ok
}

func (st *store) userByName(name string) (User, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	id, ok := st.byName[strings.ToLower(strings.TrimPrefix(name, "@"))]
	if !ok {
		return User{}, false
	}
	return st.users[id], true
}

// userList returns up to max users in the order they were added, and the
// total count.
func (st *store) userList(max int) ([]User, int) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	n := min(max, len(st.userOrder))
	out := make([]User, n)
	for i := range n {
		out[i] = st.users[st.userOrder[i]]
	}
	return out, len(st.userOrder)
}

func (st *store) userIDs() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return append([]string(nil), st.userOrder...)
}

func (st *store) internLocked(s string) uint32 {
	if v, ok := st.intern[s]; ok {
		return v
	}
	v := uint32(len(st.names))
	st.names = append(st.names, s)
	st.intern[s] = v
	return v
}

// addLocked stores p and returns its id. st.mu must be held for writing.
func (st *store) addLocked(p Post, now time.Time, tagBuf []string) ([]string, uint64) {
	created := p.CreatedAt
	if created.IsZero() {
		created = now
	}
	id := snowflake(created)
	if id <= st.lastID {
		id = st.lastID + 1
	}
	st.lastID = id
	lang := p.Lang
	if lang == "" {
		lang = "en"
	}
	pos := int32(len(st.posts))
	tagBuf = extractHashtags(p.Text, tagBuf[:0])
	off := uint32(len(st.tagArena))
	for _, t := range tagBuf {
		e := st.tags[t]
		if e == nil {
			e = &tagEntry{id: uint32(len(st.tags))}
			st.tags[t] = e
		}
		e.list = append(e.list, pos)
		st.tagArena = append(st.tagArena, e.id)
	}
	st.posts = append(st.posts, post{
		id:      id,
		created: created.UnixNano(),
		author:  st.internLocked(p.AuthorID),
		text:    p.Text,
		lang:    st.internLocked(strings.ToLower(lang)),
		tagOff:  off,
		tagN:    uint16(len(tagBuf)),
		retweet: p.IsRetweet,
	})
	return tagBuf, id
}

// snapshot is a consistent, lock-free view of the posts.
type snapshot struct {
	posts    []post
	tagArena []uint32
	names    []string
}

// snapshotLocked returns a snapshot; st.mu must be held.
func (st *store) snapshotLocked() snapshot {
	return snapshot{posts: st.posts, tagArena: st.tagArena, names: st.names}
}

// posFrom returns the first position whose id is >= id.
func (sn *snapshot) posFrom(id uint64) int {
	return sort.Search(len(sn.posts), func(i int) bool { return sn.posts[i].id >= id })
}

func (sn *snapshot) hasTag(p *post, id uint32) bool {
	for _, t := range sn.tagArena[p.tagOff : p.tagOff+uint32(p.tagN)] {
		if t == id {
			return true
		}
	}
	return false
}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

// appendWords appends the lower-cased words of s (runs of word characters)
// to dst.
func appendWords(s string, dst []string) []string {
	start := -1
	for i, r := range s {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			dst = append(dst, strings.ToLower(s[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		dst = append(dst, strings.ToLower(s[start:]))
	}
	return dst
}
