package sched

// item is a heap slot: the fire time next to the entry's index, so sifting
// touches only the heap's own memory.
type item struct {
	next int64
	idx  int32
}

// fireHeap is a 4-ary min-heap of fire times. The entries' heap positions
// are kept in step through the pos callback's slice.
type fireHeap struct {
	items []item
}

func (h *fireHeap) len() int { return len(h.items) }

func (h *fireHeap) push(e *Engine, it item) {
	h.items = append(h.items, it)
	h.up(e, len(h.items)-1)
}

// remove deletes the item at position i.
func (h *fireHeap) remove(e *Engine, i int) {
	last := len(h.items) - 1
	e.entries[h.items[i].idx].heap = -1
	if i != last {
		h.items[i] = h.items[last]
		e.entries[h.items[i].idx].heap = int32(i)
	}
	h.items = h.items[:last]
	if i != last {
		h.fix(e, i)
	}
}

// fix restores the order after the item at i changed its time.
func (h *fireHeap) fix(e *Engine, i int) {
	if !h.up(e, i) {
		h.down(e, i)
	}
}

func (h *fireHeap) up(e *Engine, i int) bool {
	it := h.items[i]
	moved := false
	for i > 0 {
		p := (i - 1) / 4
		if h.items[p].next <= it.next {
			break
		}
		h.items[i] = h.items[p]
		e.entries[h.items[i].idx].heap = int32(i)
		i, moved = p, true
	}
	h.items[i] = it
	e.entries[it.idx].heap = int32(i)
	return moved
}

func (h *fireHeap) down(e *Engine, i int) {
	n := len(h.items)
	it := h.items[i]
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		for j := c + 1; j < c+4 && j < n; j++ {
			if h.items[j].next < h.items[m].next {
				m = j
			}
		}
		if h.items[m].next >= it.next {
			break
		}
		h.items[i] = h.items[m]
		e.entries[h.items[i].idx].heap = int32(i)
		i = m
	}
	h.items[i] = it
	e.entries[it.idx].heap = int32(i)
}
