package notify

import (
	"context"
	"errors"
	"sync"
	"time"

	"tagwatch/vault"
)

// scanBatch bounds the ids one scan reads.
const scanBatch = 4096

// commitBatch bounds the outcomes one transaction records.
const commitBatch = 512

// dispatcher is one run of the delivery loop. Its state is guarded by mu;
// its goroutines (the loop in Run's goroutine, one per send, the
// committer) hand work to each other by appending to that state and
// waking the other side, never by a blocking channel send, so no buffer
// size can stall it: a send finishing while the committer is busy and
// the loop is scanning just leaves its outcome in pending.
//
// A row is in known from the scan that queued it until its outcome is
// committed (or dropped at shutdown), so it is sent by one goroutine at a
// time and never queued twice. A row whose claim another daemon holds
// (Config.Claims) is in elsewhere until that claim's lease would end:
// scans skip it without reading it, so it is not tried again and again.
type dispatcher struct {
	s    *Service
	wake chan struct{} // one-buffered: the loop should look at rescan

	mu      sync.Mutex
	commit  *sync.Cond              // on mu: pending grew, or closing was set
	targets map[string]*targetQueue // by raw target
	known   map[string]bool         // ids queued, sending or awaiting commit
	seen    map[string]string       // ids seen due but not queued -> their target
	rescan  bool                    // a full queue drained: scan again
	pending []attempt               // outcomes awaiting commit
	closing bool                    // no more outcomes will come
	// elsewhere holds the ids another daemon holds, until when to leave
	// them alone.
	elsewhere map[string]time.Time

	sends sync.WaitGroup // one per send goroutine
	wg    sync.WaitGroup // the committer and maintenance
}

// targetQueue is the dispatcher's view of one target.
type targetQueue struct {
	queue  []vault.OutboxRow
	active int  // sends in flight
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
	d.commit = sync.NewCond(&d.mu)
	return d
}

func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// loop scans for due rows and starts sends until ctx ends.
func (d *dispatcher) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	scan := true
	for {
		if scan {
			timer.Reset(d.scan())
			scan = false
		}
		d.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.s.kick:
			scan = true
		case <-timer.C:
			scan = true
		case <-d.wake:
			d.mu.Lock()
			scan, d.rescan = d.rescan, false
			d.mu.Unlock()
		}
	}
}

// scan queues due rows that are not known yet, at most queueCap per
// target, and returns how long to wait before the next scan.
func (d *dispatcher) scan() time.Duration {
	s := d.s
	queueCap := max(32*s.set.Load().cc.PerTargetConcurrency, 128)
	now := s.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[string]string, len(d.seen))
	planned := map[string]int{} // rows of targets with a known queue about to be loaded
	var load []string
	for id, until := range d.elsewhere {
		if !now.Before(until) {
			delete(d.elsewhere, id)
		}
	}
	next, err := s.outbox.DueOutboxIDs(now, func(id string) bool {
		if d.known[id] {
			return true
		}
		if _, ok := d.elsewhere[id]; ok {
			return true // another daemon's, for now
		}
		if t, ok := d.seen[id]; ok {
			// Seen before and left out: skip it without reading it again
			// while its target's queue is full.
			seen[id] = t
			if q := d.targets[t]; q != nil && len(q.queue)+planned[t] >= queueCap {
				q.more = true
				return true
			}
			planned[t]++
		}
		load = append(load, id)
		return len(load) < scanBatch
	})
	if err == nil {
		var rows []vault.OutboxRow
		rows, err = s.outbox.LoadOutbox(load)
		for _, r := range rows {
			if (r.State != vault.OutboxPending && r.State != vault.OutboxRetrying) || r.NextAttempt.After(now) {
				continue // settled or replayed since the ids were read
			}
			q := d.targets[r.Target]
			if q == nil {
				q = &targetQueue{}
				d.targets[r.Target] = q
			}
			if len(q.queue) >= queueCap {
				seen[r.ID] = r.Target
				q.more = true
				continue
			}
			d.known[r.ID] = true
			delete(seen, r.ID)
			q.queue = append(q.queue, r)
		}
	}
	d.seen = seen
	if err != nil {
		s.log.Error("read due notifications", "err", err)
		return s.cfg.PollInterval
	}
	if len(load) >= scanBatch {
		return 0
	}
	wait := s.cfg.PollInterval
	if !next.IsZero() {
		wait = min(wait, max(next.Sub(now), time.Millisecond))
	}
	return wait
}

// dispatch starts sends from the queues, up to PerTargetConcurrency per
// target; rows of a disabled target are dropped without a send.
func (d *dispatcher) dispatch(ctx context.Context) {
	perTarget := d.s.set.Load().cc.PerTargetConcurrency
	d.mu.Lock()
	defer d.mu.Unlock()
	for t, q := range d.targets {
		disabled := d.s.isDisabled(t)
		for len(q.queue) > 0 && (disabled || q.active < perTarget) {
			r := q.queue[0]
			q.queue = q.queue[1:]
			if disabled {
				d.pending = append(d.pending, attempt{row: r, out: vault.OutboxOutcome{ID: r.ID, Attempts: r.Attempts,
					State: vault.OutboxDropped, Error: droppedDisabled}})
				d.commit.Signal()
				continue
			}
			q.active++
			d.sends.Add(1)
			go func() {
				defer d.sends.Done()
				d.send(ctx, r)
			}()
		}
		if disabled && q.more {
			// Nothing will free a slot: look for the rest of its rows now.
			q.more = false
			d.rescan = true
			d.poke()
		}
		if len(q.queue) == 0 && q.active == 0 && !q.more {
			delete(d.targets, t)
		}
	}
}

// droppedDisabled is the LastError of rows dropped because their target
// answered 410 Gone before.
const droppedDisabled = "target disabled (410 Gone)"

// send claims one row (Config.Claims), sends it and hands its outcome to
// the committer. A row another daemon holds is left to it.
func (d *dispatcher) send(ctx context.Context, r vault.OutboxRow) {
	claimed, leaveUntil := d.s.claimRow(ctx, r)
	if !claimed {
		d.leave(r, leaveUntil)
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
	perTarget := d.s.set.Load().cc.PerTargetConcurrency
	d.mu.Lock()
	if q := d.targets[r.Target]; q != nil {
		q.active--
		if q.more && len(q.queue) < perTarget {
			q.more = false
			d.rescan = true
		}
	}
	if record {
		d.pending = append(d.pending, a)
		d.commit.Signal()
	} else {
		delete(d.known, r.ID)
	}
	d.mu.Unlock()
	d.poke()
}

// leave forgets a row this loop did not send because another daemon
// holds it (or the store did not answer its claim), until leaveUntil.
func (d *dispatcher) leave(r vault.OutboxRow, leaveUntil time.Time) {
	perTarget := d.s.set.Load().cc.PerTargetConcurrency
	d.mu.Lock()
	if q := d.targets[r.Target]; q != nil {
		q.active--
		if q.more && len(q.queue) < perTarget {
			q.more = false
			d.rescan = true
		}
	}
	delete(d.known, r.ID)
	d.elsewhere[r.ID] = leaveUntil
	d.mu.Unlock()
	d.poke()
}

// commitLoop records pending outcomes, up to commitBatch per transaction,
// until closeCommits was called and nothing is pending.
func (d *dispatcher) commitLoop() {
	for {
		d.mu.Lock()
		for len(d.pending) == 0 && !d.closing {
			d.commit.Wait()
		}
		if len(d.pending) == 0 {
			d.mu.Unlock()
			return
		}
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
