package sched

// item is a heap slot: a fire time and the entry (with its generation) it
// is for. Items are never searched for: an item whose entry has since taken
// another fire time, or was removed, is stale, and is dropped when it
// reaches the top or when the heap is compacted. So sifting touches the
// heap's own memory only, never the entries.
type item struct {
	next int64
	idx  int32
	gen  uint32
}

// heapPad puts the four children of a node in one 64-byte cache line: the
// heap starts at the fourth 16-byte item of its storage, so node i's
// children, at 4i+1..4i+4, sit at 4(i+1)..4(i+1)+3 of the storage, whose
// large allocations are page-aligned.
const heapPad = 3

// fireHeap is a 4-ary min-heap of fire times.
type fireHeap struct {
	store []item
	a     []item // store[heapPad:]
}

func (h *fireHeap) len() int { return len(h.a) }

func (h *fireHeap) push(it item) {
	if h.store == nil {
		h.store = make([]item, heapPad, heapPad+64)
	}
	h.store = append(h.store, it)
	h.a = h.store[heapPad:]
	h.up(len(h.a) - 1)
}

// pop removes the top item.
func (h *fireHeap) pop() {
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.store = h.store[:heapPad+last]
	h.a = h.store[heapPad:]
	if last > 0 {
		h.down(0)
	}
}

// setTop gives the top item a later fire time.
func (h *fireHeap) setTop(next int64) {
	h.a[0].next = next
	h.down(0)
}

func (h *fireHeap) up(i int) {
	a := h.a
	it := a[i]
	for i > 0 {
		p := (i - 1) / 4
		if a[p].next <= it.next {
			break
		}
		a[i] = a[p]
		i = p
	}
	a[i] = it
}

func (h *fireHeap) down(i int) {
	a := h.a
	n := len(a)
	it := a[i]
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		if end := min(c+4, n); end == c+4 {
			// The common case, a full group of four, without bounds checks.
			g := a[c : c+4 : c+4]
			mn := g[0].next
			if g[1].next < mn {
				m, mn = c+1, g[1].next
			}
			if g[2].next < mn {
				m, mn = c+2, g[2].next
			}
			if g[3].next < mn {
				m = c + 3
			}
		} else {
			for j := c + 1; j < end; j++ {
				if a[j].next < a[m].next {
					m = j
				}
			}
		}
		if a[m].next >= it.next {
			break
		}
		a[i] = a[m]
		i = m
	}
	a[i] = it
}

// filter keeps the items keep says yes to and restores the heap order.
func (h *fireHeap) filter(keep func(item) bool) {
	w := 0
	for _, it := range h.a {
		if keep(it) {
			h.a[w] = it
			w++
		}
	}
	h.store = h.store[:heapPad+w]
	if cap(h.store) > 2*len(h.store)+1024 {
		h.store = append(make([]item, 0, len(h.store)+len(h.store)/8), h.store...)
	}
	h.a = h.store[heapPad:]
	if w > 1 {
		for i := (w - 2) / 4; i >= 0; i-- {
			h.down(i)
		}
	}
}
