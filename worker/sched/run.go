package sched

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"time"
)

// How the engine runs (the Run goroutine only waits for the end):
//
//   - Every idle worker waits on the same ticker (and on e.wake, and on its
//     own channel). A tick wakes one of them, which makes a pass: it
//     dispatches every due fire into runq, then takes runs from runq itself
//     until it is empty. A pass of cheap runs costs one goroutine wake-up,
//     and the ticker is never re-armed while fires keep coming (re-arming a
//     Go timer wakes the runtime's poller thread).
//   - A worker busy with a slow run does not hold the others up: the next
//     tick wakes another idle worker, whose pass gives each run that waited
//     through a whole pass a worker of its own (helpWorkers). So runs spread
//     over as many workers as they need, at most Config.Resolution late.
//   - A run put in runq from outside a pass (RunNow, a coalesced run, a
//     queued one let go) wakes a worker when none is awake, or asks for a
//     pass through e.wake.
//   - A worker that finds a fire already due before it parks (ticks go
//     unheard while every worker is busy) makes a pass first.

// wakeWorker sees that a run just put in runq gets a worker.
func (e *Engine) wakeWorker() {
	if e.passing || len(e.idle) == 0 {
		return // the passing worker takes it, or every worker is busy and will
	}
	if e.awake == 0 {
		e.wakeOne()
		return
	}
	e.poke()
}

// poke asks an idle worker for a pass now.
func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// wakeOne wakes the worker that parked last, counting it awake.
func (e *Engine) wakeOne() {
	w := e.idle[len(e.idle)-1]
	e.idle = e.idle[:len(e.idle)-1]
	e.awake++
	e.wakeCh[w] <- struct{}{}
}

// unidle counts worker w awake after a tick, a poke or the end woke it
// rather than its own channel. If a waker took it off the idle list
// meanwhile, the waker counted it and left a wake-up in its channel, which
// it takes.
func (e *Engine) unidle(w int32) {
	for k, v := range e.idle {
		if v == w {
			e.idle = append(e.idle[:k], e.idle[k+1:]...)
			e.awake++
			return
		}
	}
	<-e.wakeCh[w]
}

// helpWorkers gives each run that was already in runq at the previous pass
// (its workers are busy) a parked worker. It reports whether runs wait.
func (e *Engine) helpWorkers() bool {
	waiting := len(e.runq) - e.runqHead
	if waiting > 0 && e.deq < e.enqPass {
		for n := waiting; n > 0 && len(e.idle) > 0; n-- {
			e.wakeOne()
		}
	}
	e.enqPass = e.enq
	return waiting > 0
}

// Run fires entries until ctx ends, then waits for the runs in progress
// (their ctx ends too) and returns nil. It must be called once; a second
// call returns an error.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("sched: Run called twice")
	}
	e.started, e.running = true, true
	e.awake = e.cfg.Workers
	e.wakeCh = make([]chan struct{}, e.cfg.Workers)
	for w := range e.wakeCh {
		e.wakeCh[w] = make(chan struct{}, 1)
	}
	e.ticker = time.NewTicker(e.cfg.Resolution)
	e.period = e.cfg.Resolution
	e.drain(&e.waitAll)
	e.mu.Unlock()

	var wg sync.WaitGroup
	for w := range e.cfg.Workers {
		wg.Go(func() { e.work(ctx, int32(w)) })
	}
	<-ctx.Done()
	e.mu.Lock()
	e.stop()
	e.mu.Unlock()
	wg.Wait()
	e.ticker.Stop()
	return nil
}

// stop makes the workers finish the runs in runq and return.
func (e *Engine) stop() {
	if e.stopping {
		return
	}
	e.running, e.stopping = false, true
	for len(e.idle) > 0 {
		e.wakeOne()
	}
}

// work is worker w: it takes runs from runq, makes a pass when a tick (or
// a poke) wakes it, and parks in between, until the engine stops and runq
// is empty.
func (e *Engine) work(ctx context.Context, w int32) {
	e.mu.Lock()
	for {
		for e.runqHead < len(e.runq) {
			j := e.runq[e.runqHead]
			e.runq[e.runqHead] = job{}
			e.deq++
			if e.runqHead++; e.runqHead == len(e.runq) {
				e.runq, e.runqHead = e.runq[:0], 0
			}
			e.mu.Unlock()
			panicked := e.runJob(ctx, j)
			e.mu.Lock()
			if panicked {
				e.stats.Panics++
			}
			e.done(j)
		}
		if e.stopping {
			e.mu.Unlock()
			return
		}
		if e.heap.len() > 0 && e.heap.a[0].next <= e.now() {
			e.pass()
			continue
		}
		e.idle = append(e.idle, w)
		e.awake--
		e.mu.Unlock()
		pass := false
		select {
		case <-e.wakeCh[w]: // the waker counted w awake
			e.mu.Lock()
		case <-e.ticker.C:
			e.mu.Lock()
			e.unidle(w)
			pass = true
		case <-e.wake:
			e.mu.Lock()
			e.unidle(w)
			pass = true
		case <-ctx.Done():
			e.mu.Lock()
			e.unidle(w)
			e.stop()
		}
		if pass && !e.stopping {
			e.pass()
		}
	}
}

// pass dispatches every entry that is due, sees that waiting runs get
// workers, and sets the ticker for the next pass.
func (e *Engine) pass() {
	now := e.now()
	e.passing = true
	for e.heap.len() > 0 && e.heap.a[0].next <= now {
		it := e.heap.a[0]
		if !e.live(it) {
			e.heap.pop()
			continue
		}
		en := &e.entries[it.idx]
		scheduled := it.next
		reason := Scheduled
		if en.flags&flagCatchUp != 0 {
			en.flags &^= flagCatchUp
			reason = CatchUp
		}
		next := e.nextFire(en, scheduled, now, reason == CatchUp)
		if floor := int64(e.cfg.MinInterval); floor > 0 && next-scheduled < floor && next != math.MaxInt64 {
			next = e.fireAfter(en, scheduled+floor-1)
		}
		en.next = next
		if next == math.MaxInt64 {
			en.flags &^= flagInHeap
			e.inHeap--
			e.heap.pop()
		} else {
			e.heap.setTop(next)
		}
		e.dispatch(it.idx, scheduled, reason)
	}
	e.passing = false
	wait := time.Hour
	if e.heap.len() > 0 {
		wait = time.Duration(e.heap.a[0].next - now)
	}
	if e.helpWorkers() {
		wait = min(wait, e.cfg.Resolution)
	}
	e.setPeriod(wait)
}

// setPeriod paces the ticker for a next fire wait from now: every
// Config.Resolution while fires come that soon (then the ticker is left
// alone), else one tick when the next is due.
func (e *Engine) setPeriod(wait time.Duration) {
	if e.ticker == nil {
		return
	}
	p := e.cfg.Resolution
	if wait > 2*p {
		p = wait
	}
	if p != e.period || p != e.cfg.Resolution {
		e.ticker.Reset(p)
		e.period = p
	}
}

// runJob runs one job and reports whether it panicked (recovered and
// logged).
func (e *Engine) runJob(ctx context.Context, j job) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			e.log.Error("sched job panicked", "key", j.f.Key, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	e.cfg.Job(ctx, j.f)
	return false
}
