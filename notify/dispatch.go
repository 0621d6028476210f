package notify

import (
	"context"
	"errors"
	"sync"
	"time"

	"tagwatch/vault"
)

// scanBatch bounds the rows one scan reads.
const scanBatch = 4096

// loadChunk bounds the rows one read transaction of a scan loads: the
// rows of each chunk are queued, and their sends start, while the next
// chunk is read.
const loadChunk = 256

// queueBudget is how many rows the queues of all targets hold together
// when that many targets have rows queued: each target's queue holds an
// equal share of it, and never less than 32 sends per target (at least
// 128; queueCap). One busy target thus gets a long queue (few scans),
// many get short ones (bounded memory).
const queueBudget = 4096

// commitBatch bounds the outcomes one transaction records.
const commitBatch = 512

// commitEvery is the least time from the start of one commit of outcomes
// to the start of the next during a burst (at least burstQueued rows
// queued), unless commitBatch outcomes wait: the outcomes of a burst
// share fsyncs (at 5,000 deliveries a second, 50 to a commit), at the
// price of at most this much more time before a delivery is recorded, and
// before a crash would stop redelivering it. Out of bursts, what is
// pending is committed as soon as the last commit is done: a steady
// stream keeps its latency.
const commitEvery = 10 * time.Millisecond

// burstQueued is how many rows waiting in the queues make a burst.
const burstQueued = 32

// dispatcher is one run of the delivery loop. Its state is guarded by mu.
// Three kinds of goroutines share it, and hand work to each other by
// appending to that state and waking the other side, never by a blocking
// channel send, so no buffer size can stall them:
//
//   - the scanner (Run's goroutine, loop) reads due rows into per-target
//     queues, without holding mu while it reads the store;
//   - up to PerTargetConcurrency workers per target (work) take rows from
//     their target's queue and send them one after the other, until the
//     queue is empty; a queue running low asks the scanner for more;
//   - the committer (commitLoop) records the outcomes the workers leave in
//     pending, many per transaction.
//
// A row is in known from the scan that queued it until its outcome is
// committed (or dropped at shutdown), so it is sent by one goroutine at a
// time and never queued twice. A row whose claim another daemon holds
// (Config.Claims) is in elsewhere until that claim's lease would end:
// scans skip it without reading it, so it is not tried again and again.
type dispatcher struct {
	s    *Service
	wake chan struct{} // one-buffered: the loop should look at rescan
	// peek says which target a row is for without reading the whole row,
	// when the outbox can (vault.DB): nil otherwise.
	peek targetPeeker

	mu      sync.Mutex
	commit  *sync.Cond              // on mu: pending grew, or closing was set
	targets map[string]*targetQueue // by raw target
	known   map[string]bool         // ids queued, sending or awaiting commit
	rescan  bool                    // a queue ran low: scan again
	queued  int                     // rows in the queues
	pending []attempt               // outcomes awaiting commit
	closing bool                    // no more outcomes will come
	// elsewhere holds the ids another daemon holds, until when to leave
	// them alone.
	elsewhere map[string]time.Time

	// seen holds the ids seen due but not queued (their target's queue was
	// full), with their target; only the scanner uses it.
	seen map[string]string

	sends sync.WaitGroup // one per worker
	wg    sync.WaitGroup // the committer and maintenance
}

// targetPeeker is what an Outbox may do besides (*vault.DB does): give
// the target of rows, reading only the start of each (vault.DB.OutboxTargets).
// The scanner then reads only the rows their targets' queues have room for.
type targetPeeker interface {
	OutboxTargets(ids []string) ([]string, error)
}

// targetQueue is the dispatcher's view of one target.
type targetQueue struct {
	queue  []vault.OutboxRow
	active int  // workers
	more   bool // due rows were seen that did not fit the queue
}

// attempt is a decided outcome awaiting commit, with what the events need.
type attempt struct {
	out    vault.OutboxOutcome
	row    vault.OutboxRow // as read for sending
	status int             // HTTP status, when there was one
	// claimed: this daemon holds the attempt's claim (Config.Claims),
	// released once the outcome is committed.
	claimed bool
}

func newDispatcher(s *Service) *dispatcher {
	d := &dispatcher{s: s, wake: make(chan struct{}, 1), targets: map[string]*targetQueue{},
		known: map[string]bool{}, seen: map[string]string{}, elsewhere: map[string]time.Time{}}
	d.peek, _ = s.outbox.(targetPeeker)
	d.commit = sync.NewCond(&d.mu)
	return d
}

func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// scanDuty bounds the time the loop spends walking the due index, a
// walk that grows with the rows due and not sent yet (a backlog waiting
// behind its target's full queue): after a walk that took w, the next
// scan waits until scanDuty*w has passed, so walks take at most
// 1/(1+scanDuty) of the loop's time. A walk past a few rows takes
// microseconds and delays nothing.
const scanDuty = 9

// loop scans for due rows, and starts workers for them, until ctx ends.
func (d *dispatcher) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var quiet time.Time // no scan before then (scanDuty)
	want := true        // a scan is wanted
	for {
		if want {
			if wait := time.Until(quiet); wait > 0 {
				timer.Reset(wait) // scan once the quiet time is over
			} else {
				next, walked := d.scan(ctx)
				quiet = time.Now().Add(scanDuty * walked)
				want = false
				timer.Reset(next)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.s.kick:
			want = true
		case <-timer.C:
			want = true
		case <-d.wake:
			d.mu.Lock()
			want = want || d.rescan
			d.rescan = false
			d.mu.Unlock()
		}
	}
}

// queueCap is how many rows one target's queue holds now: its share of
// queueBudget, at least max(32*perTarget, 128). d.mu is held.
func (d *dispatcher) queueCap(perTarget int) int {
	floor := max(32*perTarget, 128) // queueFloor
	return max(floor, d.s.cfg.queueBudget/max(len(d.targets), 1))
}

// load is a row a scan is about to read, with its target when known.
type load struct{ id, target string }

// scan queues due rows that are not known yet, as many per target as its
// queue has room for, and starts workers for them. It returns how long to
// wait before the next scan, and how long it walked the due index. It
// reads the store without holding d.mu.
func (d *dispatcher) scan(ctx context.Context) (next, walked time.Duration) {
	s := d.s
	perTarget := s.set.Load().cc.PerTargetConcurrency
	now := s.now()
	d.mu.Lock()
	for id, until := range d.elsewhere {
		if !now.Before(until) {
			delete(d.elsewhere, id)
		}
	}
	d.mu.Unlock()

	// Walk the due index: known rows are skipped, and so are rows seen
	// before whose target's queue is full, without reading them.
	seen := make(map[string]string, len(d.seen))
	planned := map[string]int{} // rows about to be read, by target
	full := func(t string) bool {
		n := planned[t]
		if q := d.targets[t]; q != nil {
			n += len(q.queue)
		}
		return n >= d.queueCap(perTarget)
	}
	over := map[string]bool{} // targets with due rows left out
	var loads []load
	var unseen []string // ids whose target is not known yet
	t0 := time.Now()
	nextDue, err := s.outbox.DueOutboxIDs(now, func(id string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.known[id] {
			return true
		}
		if _, ok := d.elsewhere[id]; ok {
			return true // another daemon's, for now
		}
		if t, ok := d.seen[id]; ok {
			seen[id] = t
			if full(t) {
				over[t] = true
				return true
			}
			planned[t]++
			loads = append(loads, load{id, t})
		} else {
			unseen = append(unseen, id)
		}
		return len(loads)+len(unseen) < scanBatch
	})
	walked = time.Since(t0)
	cut := len(loads)+len(unseen) >= scanBatch
	if err == nil && len(unseen) > 0 {
		// Which target each new row is for: those whose queue is full are
		// left for a later scan without being read.
		var targets []string
		if d.peek != nil {
			targets, err = d.peek.OutboxTargets(unseen)
		}
		d.mu.Lock()
		for i, id := range unseen {
			t := ""
			if i < len(targets) {
				t = targets[i]
			}
			if t != "" && full(t) {
				seen[id] = t
				over[t] = true
				continue
			}
			planned[t]++
			loads = append(loads, load{id, t})
		}
		d.mu.Unlock()
	}
	for len(loads) > 0 && err == nil {
		chunk := loads[:min(len(loads), loadChunk)]
		loads = loads[len(chunk):]
		ids := make([]string, len(chunk))
		hint := make(map[string]string, len(chunk))
		for i, l := range chunk {
			ids[i] = l.id
			hint[l.id] = l.target
		}
		var rows []vault.OutboxRow
		rows, err = s.outbox.LoadOutbox(ids)
		touched := map[string]*targetQueue{}
		d.mu.Lock()
		for _, r := range rows {
			if (r.State != vault.OutboxPending && r.State != vault.OutboxRetrying) || r.NextAttempt.After(now) {
				continue // settled or replayed since the ids were read
			}
			q := d.targets[r.Target]
			if q == nil {
				q = &targetQueue{}
				d.targets[r.Target] = q
			}
			// A row planned for its target had room when it was planned
			// (queues created since may have shrunk the shares): it is
			// queued, not read in vain. Only a row whose target was not
			// known is checked now.
			if hint[r.ID] != r.Target && len(q.queue) >= d.queueCap(perTarget) {
				seen[r.ID] = r.Target
				over[r.Target] = true
				continue
			}
			d.known[r.ID] = true
			delete(seen, r.ID)
			q.queue = append(q.queue, r)
			d.queued++
			touched[r.Target] = q
		}
		for t, q := range touched {
			if over[t] {
				q.more = true
			}
			d.startLocked(ctx, t, q)
		}
		d.mu.Unlock()
	}
	d.mu.Lock()
	for t := range over {
		q := d.targets[t]
		if q == nil || (len(q.queue) == 0 && q.active == 0) {
			// Its queue emptied while the scan read (the rows planned
			// for it were settled meanwhile): no worker will ask for
			// the rows left out, so look again at once.
			d.rescan = true
			d.poke()
			continue
		}
		q.more = true
	}
	for t, q := range d.targets {
		// A target disabled since its rows were queued, or allowed more
		// sends in flight since (Reconfigure).
		d.startLocked(ctx, t, q)
	}
	d.mu.Unlock()
	d.seen = seen
	if err != nil {
		s.log.Error("read due notifications", "err", err)
		return s.cfg.PollInterval, walked
	}
	if cut {
		return 0, walked
	}
	next = s.cfg.PollInterval
	if !nextDue.IsZero() {
		next = min(next, max(nextDue.Sub(now), time.Millisecond))
	}
	return next, walked
}

// startLocked starts workers for target t's queue q, up to
// PerTargetConcurrency; the rows of a disabled target are dropped without
// a send. d.mu is held.
func (d *dispatcher) startLocked(ctx context.Context, t string, q *targetQueue) {
	perTarget := d.s.set.Load().cc.PerTargetConcurrency
	if len(q.queue) > 0 && d.s.isDisabled(t) {
		d.dropLocked(q)
	}
	for n := min(perTarget-q.active, len(q.queue)); n > 0 && ctx.Err() == nil; n-- {
		q.active++
		d.sends.Add(1)
		go d.work(ctx, t)
	}
	d.forgetLocked(t, q)
}

// dropLocked drops the rows queued for a disabled target, without a send,
// and looks for the rest of its rows at once: nothing else would free a
// slot. d.mu is held.
func (d *dispatcher) dropLocked(q *targetQueue) {
	for _, r := range q.queue {
		d.pending = append(d.pending, attempt{row: r, out: vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts,
			State: vault.OutboxDropped, Error: droppedDisabled}})
	}
	d.queued -= len(q.queue)
	q.queue = nil
	d.commit.Signal()
	if q.more {
		q.more = false
		d.rescan = true
		d.poke()
	}
}

// forgetLocked forgets a target with nothing queued, sending or left to
// read. d.mu is held.
func (d *dispatcher) forgetLocked(t string, q *targetQueue) {
	if len(q.queue) == 0 && q.active == 0 && !q.more {
		delete(d.targets, t)
	}
}

// droppedDisabled is the LastError of rows dropped because their target
// answered 410 Gone before.
const droppedDisabled = "target disabled (410 Gone)"

// work is one worker of target t: it sends the target's queued rows, one
// at a time, until the queue is empty or ctx ends.
func (d *dispatcher) work(ctx context.Context, t string) {
	defer d.sends.Done()
	for {
		r, ok := d.next(ctx, t)
		if !ok {
			return
		}
		d.send(ctx, r)
	}
}

// next takes the next row of t's queue for a worker of t, or says the
// worker is done: the queue is empty, ctx ended, or the target has more
// workers than PerTargetConcurrency allows now (Reconfigure). A queue
// down to half its room, with due rows left out, asks for a scan, so the
// next rows are read while these are sent.
func (d *dispatcher) next(ctx context.Context, t string) (vault.OutboxRow, bool) {
	perTarget := d.s.set.Load().cc.PerTargetConcurrency
	disabled := d.s.isDisabled(t)
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.targets[t]
	if disabled && len(q.queue) > 0 {
		d.dropLocked(q)
	}
	if q.more && len(q.queue) <= d.queueCap(perTarget)/2 {
		q.more = false
		d.rescan = true
		d.poke()
	}
	if len(q.queue) == 0 || ctx.Err() != nil || q.active > perTarget {
		q.active--
		d.forgetLocked(t, q)
		return vault.OutboxRow{}, false
	}
	r := q.queue[0]
	q.queue[0] = vault.OutboxRow{}
	q.queue = q.queue[1:]
	d.queued--
	return r, true
}

// send claims one row (Config.Claims), sends it and hands its outcome to
// the committer. A row another daemon holds is left to it.
func (d *dispatcher) send(ctx context.Context, r vault.OutboxRow) {
	claimed, leaveUntil := d.s.claimRow(ctx, r)
	if !claimed {
		d.mu.Lock()
		delete(d.known, r.ID)
		d.elsewhere[r.ID] = leaveUntil
		d.mu.Unlock()
		return
	}
	final, err := d.s.sendOnce(ctx, r)
	// Shutting down: a send that failed may have failed because of it; it
	// is not recorded, and the row is sent again, under the same id, by
	// the next run (or at once by another daemon: its claim is given
	// back). A delivery that made it is recorded.
	record := err == nil || ctx.Err() == nil
	var a attempt
	if record {
		a = d.s.decide(r, err, final)
		a.claimed = d.s.cfg.Claims != nil
	} else if d.s.cfg.Claims != nil {
		d.s.releaseOne(ctx, r)
	}
	d.mu.Lock()
	if record {
		d.pending = append(d.pending, a)
		d.commit.Signal()
	} else {
		delete(d.known, r.ID)
	}
	d.mu.Unlock()
}

// commitLoop records pending outcomes, up to commitBatch per transaction
// and one transaction per commitEvery, until closeCommits was called and
// nothing is pending.
func (d *dispatcher) commitLoop() {
	var last time.Time // when the last commit started
	for {
		d.mu.Lock()
		for len(d.pending) == 0 && !d.closing {
			d.commit.Wait()
		}
		if len(d.pending) == 0 {
			d.mu.Unlock()
			return
		}
		if wait := commitEvery - time.Since(last); wait > 0 && d.queued >= burstQueued && len(d.pending) < commitBatch && !d.closing {
			// Let the outcomes of the moment gather into this commit.
			d.mu.Unlock()
			time.Sleep(wait)
			d.mu.Lock()
		}
		last = time.Now()
		n := min(len(d.pending), commitBatch)
		batch := d.pending[:n:n]
		d.pending = d.pending[n:]
		if len(d.pending) == 0 {
			d.pending = nil
		}
		d.mu.Unlock()

		d.s.settle(batch)

		d.mu.Lock()
		for _, a := range batch {
			delete(d.known, a.row.ID)
		}
		d.mu.Unlock()
	}
}

// closeCommits tells the committer that no more outcomes will come: it
// records what is pending and returns.
func (d *dispatcher) closeCommits() {
	d.mu.Lock()
	d.closing = true
	d.commit.Broadcast()
	d.mu.Unlock()
}

// sendOnce sends one row through its channel. final says the row can
// never be sent (its payload or target is corrupt): it is a dead letter at
// once.
func (s *Service) sendOnce(ctx context.Context, r vault.OutboxRow) (final bool, err error) {
	m, err := s.message(r)
	if err != nil {
		return true, permanent(err)
	}
	kind, err := targetKind(r.Target)
	if err != nil {
		return true, permanent(err)
	}
	set := s.set.Load()
	ch := set.channels[kind]
	if ch == nil {
		return false, ErrNoChannel
	}
	sctx, cancel := context.WithTimeout(ctx, set.cc.Timeout)
	defer cancel()
	err = ch.Send(sctx, m)
	var pe *partialError
	if err != nil && m.Delivered.Parts > 0 && !errors.As(err, &pe) {
		// Nothing more went out this time: keep what went before.
		err = &partialError{progress: m.Delivered, Err: err}
	}
	return false, err
}

// settle records a batch of outcomes in one transaction, then logs and
// emits what was recorded. When the transaction fails nothing was
// recorded: the rows stay due and are sent again.
func (s *Service) settle(batch []attempt) {
	outs := make([]vault.OutboxOutcome, len(batch))
	byID := make(map[string]attempt, len(batch))
	for i, a := range batch {
		outs[i] = a.out
		byID[a.out.ID] = a
	}
	settled, err := s.outbox.SettleOutbox(outs)
	// The claims are released once the outcomes are committed, never
	// before: a daemon dying in between leaves them to run out, and the
	// rows are sent again.
	s.releaseClaims(batch, err == nil)
	if err != nil {
		s.log.Error("record delivery outcomes", "rows", len(batch), "err", err)
		return
	}
	now := s.now()
	for _, st := range settled {
		r, a := st.Row, byID[st.Row.ID]
		label := TargetLabel(r.Target)
		ev := Event{ID: r.ID, Target: label, Attempts: r.Attempts, Status: a.status, Err: r.LastError}
		switch {
		case r.State == vault.OutboxDelivered:
			ev.Kind, ev.Latency = EventDelivered, now.Sub(r.CreatedAt)
		case r.State == vault.OutboxRetrying:
			ev.Kind, ev.Next = EventFailed, r.NextAttempt
			s.log.Info("notification attempt failed; retry scheduled", "id", r.ID, "target", label, "user", r.UserID,
				"attempts", r.Attempts, "status", a.status, "err", r.LastError, "next", r.NextAttempt)
		case r.State == vault.OutboxDead:
			ev.Kind = EventDead
			s.log.Warn("notification is a dead letter", "id", r.ID, "target", label, "user", r.UserID,
				"attempts", r.Attempts, "status", a.status, "err", r.LastError)
		case a.out.DisableTarget:
			ev.Kind, ev.Count = EventDisabled, st.Dropped
			s.mu.Lock()
			s.disabled[r.Target] = true
			s.mu.Unlock()
			s.log.Warn("notification target disabled: it answered 410 Gone; its undelivered rows were dropped",
				"target", label, "user", r.UserID, "dropped", st.Dropped, "users_told", st.Told)
		default:
			ev.Kind = EventDropped
		}
		s.emit(ev)
	}
}
