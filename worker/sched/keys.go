package sched

import "math"

// The engine's memory holds no pointer per entry, so the garbage collector
// never scans a million of them: keys live in one byte arena, entries refer
// to them by offset, and the key index is an open-addressing table of
// entry numbers. A 26-byte key costs its bytes plus 4 to 8 bytes of table.

// maxKeyLen is the longest key an entry may have (its length is a uint16).
const maxKeyLen = math.MaxUint16

// arena holds every entry's key bytes back to back. A removed key's bytes
// are garbage until compact copies the live ones to a new arena.
type arena struct {
	b       []byte
	garbage int
}

// keyTable maps a key's hash to its entry by linear probing; a slot holds
// the entry's index plus one, zero when empty. Deletion shifts the probe
// chain back, so there are no tombstones.
type keyTable struct {
	slots []int32
	n     int
}

// keyOf returns entry i's key bytes (a view of the arena: copy to keep).
func (e *Engine) keyOf(en *entry) []byte {
	return e.keys.b[en.keyOff : en.keyOff+uint32(en.keyLen)]
}

// keyString returns entry i's key as a new string.
func (e *Engine) keyString(en *entry) string { return string(e.keyOf(en)) }

// storeKey appends key to the arena and returns its offset, compacting
// first when removed keys are most of it.
func (e *Engine) storeKey(key string) uint32 {
	a := &e.keys
	if a.garbage > 1<<16 && a.garbage > len(a.b)/2 {
		e.compactKeys()
	}
	if len(a.b)+len(key) > math.MaxUint32 {
		// Offsets are 32 bits: 4 GiB of live keys is far past any node.
		panic("sched: key arena past 4 GiB")
	}
	off := uint32(len(a.b))
	a.b = append(a.b, key...)
	return off
}

// compactKeys copies the live keys to a new arena, dropping removed ones.
func (e *Engine) compactKeys() {
	live := len(e.keys.b) - e.keys.garbage
	b := make([]byte, 0, live+live/8)
	for i := range e.entries {
		en := &e.entries[i]
		if en.flags&flagLive == 0 {
			continue
		}
		off := uint32(len(b))
		b = append(b, e.keyOf(en)...)
		en.keyOff = off
	}
	e.keys = arena{b: b}
}

func (t *keyTable) mask() uint32 { return uint32(len(t.slots) - 1) }

// find returns the entry with key (hash h) and the slot holding it, or
// -1 and the empty slot where it would go.
func (e *Engine) find(key string, h uint32) (idx int32, slot uint32) {
	t := &e.index
	if len(t.slots) == 0 {
		return -1, 0
	}
	m := t.mask()
	for s := h & m; ; s = (s + 1) & m {
		v := t.slots[s]
		if v == 0 {
			return -1, s
		}
		en := &e.entries[v-1]
		if en.hash == h && int(en.keyLen) == len(key) && string(e.keyOf(en)) == key {
			return v - 1, s
		}
	}
}

// lookup returns the entry with key, or -1.
func (e *Engine) lookup(key string) int32 {
	i, _ := e.find(key, e.hashKey(key))
	return i
}

// indexAdd puts entry i (whose hash is set and whose key is not in the
// table) in the table, growing it past a load of 3/4.
func (e *Engine) indexAdd(i int32) {
	t := &e.index
	if (t.n+1)*4 > len(t.slots)*3 {
		e.indexGrow()
	}
	m := t.mask()
	s := e.entries[i].hash & m
	for t.slots[s] != 0 {
		s = (s + 1) & m
	}
	t.slots[s] = i + 1
	t.n++
}

func (e *Engine) indexGrow() {
	t := &e.index
	old := t.slots
	t.slots = make([]int32, max(64, 2*len(old)))
	m := t.mask()
	for _, v := range old {
		if v == 0 {
			continue
		}
		s := e.entries[v-1].hash & m
		for t.slots[s] != 0 {
			s = (s + 1) & m
		}
		t.slots[s] = v
	}
}

// indexDelete empties slot s and moves later members of its probe chain
// back so every key stays reachable from its home slot.
func (e *Engine) indexDelete(s uint32) {
	t := &e.index
	m := t.mask()
	i := s
	for j := (s + 1) & m; t.slots[j] != 0; j = (j + 1) & m {
		home := e.entries[t.slots[j]-1].hash & m
		// The member at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = 0
	t.n--
}

// fnv64a is FNV-1a over b: the phase hash, the same as hash/fnv's New64a
// so phases do not move between versions (every daemon of a cluster fires
// a watch at the same time).
func fnv64a(b []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return h
}
