// Package notify delivers the vault's outbox: every match, and every
// message a user must see, reaches its target at least once.
//
// A Service runs one delivery loop (Run). It reads due rows, sends each
// through the channel its target names (webhook.go, email.go, shoutrrr.go,
// console.go), and afterwards records the outcome in its own transaction:
// delivered only after the target accepted the message, otherwise the next
// attempt of a retry schedule stored in the row (exponential backoff with
// jitter over Config.RetrySpan), then a dead letter that Replay sends again
// under the same id. A crash between the send and the commit sends the row
// again, with the same id, so receivers can de-duplicate.
//
// Sends to one target are bounded by Config.PerTargetConcurrency and never
// wait for another target's sends. Outcomes of many sends are committed
// together (group commit), so the loop is not bound by one fsync per row.
//
// The Service also serves the signed one-click links every message
// carries (Handler, links.go).
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// DB is the part of the vault the Service uses; *vault.DB implements it.
type DB interface {
	View(fn func(tx *vault.Tx) error) error
	Update(fn func(tx *vault.Tx) error) error
}

// Config configures a Service. The zero value of each field is its default.
type Config struct {
	// DB is the vault holding the outbox. Required.
	DB DB
	// PublicURL is the daemon's public base URL, for one-click links. Required.
	PublicURL string
	// LinkKey signs one-click links; at least 32 bytes. Required.
	LinkKey []byte
	// LinkTTL is how long a one-click link works; default 30 days.
	LinkTTL time.Duration
	// Actions carries out one-click links; without it their POST fails.
	Actions Actions

	// RetrySpan is how long a failing row is retried before it becomes a
	// dead letter; default 72h.
	RetrySpan time.Duration
	// BaseDelay is the first retry's delay, doubling each time; default 30s.
	BaseDelay time.Duration
	// MaxDelay caps one delay; default RetrySpan/6.
	MaxDelay time.Duration
	// PruneAfter is how long delivered (and dropped) rows are kept; default 168h.
	PruneAfter time.Duration
	// MaxBacklog is how many undelivered rows one target may hold; newer
	// rows beyond it are dropped with an operator alert. Default 10000.
	MaxBacklog int
	// PerTargetConcurrency bounds sends in flight to one target; default 4.
	PerTargetConcurrency int
	// Timeout bounds one send (webhook request, SMTP session, ...); default 20s.
	Timeout time.Duration
	// AllowPrivateTargets lets targets reach loopback, private and
	// link-local addresses.
	AllowPrivateTargets bool

	// Webhooks are the signing secrets of the webhook URLs users may name.
	Webhooks []WebhookSecret
	// SMTP configures mailto: targets; an empty Host disables them.
	SMTP SMTPConfig
	// Console is where console: targets print; default os.Stdout.
	Console io.Writer
	// Channels replaces the channel of a kind (KindWebhook, ...), for tests.
	Channels map[string]Channel
	// Resolver resolves the hosts of notification URLs; default net.DefaultResolver.
	Resolver *net.Resolver

	// PollInterval bounds how long a row enqueued by another component
	// waits when nobody calls Kick; default 1s.
	PollInterval time.Duration
	// MaintainEvery is how often rows are pruned and backlogs checked;
	// default 1 minute.
	MaintainEvery time.Duration

	// Observer, when set, receives every event, synchronously from the
	// loop's goroutines: it must be quick and safe for concurrent use.
	Observer func(Event)
	// Logger receives the loop's log; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) for retry jitter; default math/rand/v2.
	Jitter func() float64
}

// EventKind says what happened to a notification.
type EventKind string

// Event kinds.
const (
	EventDelivered EventKind = "delivered" // the target accepted the row
	EventFailed    EventKind = "failed"    // an attempt failed; a retry is scheduled
	EventDead      EventKind = "dead"      // retries are exhausted: a dead letter
	EventDisabled  EventKind = "disabled"  // the target said 410 Gone: disabled, its rows dropped
	EventDropped   EventKind = "dropped"   // a row was dropped (disabled target, backlog cap)
	EventBacklog   EventKind = "backlog"   // a target's backlog exceeded MaxBacklog
	EventReplayed  EventKind = "replayed"  // an operator replayed a row
)

// ChannelsConfig is the part of a Config that Reconfigure changes while
// the Service runs: the channels, their secrets and the retry policy. Its
// fields mean what the Config fields of the same names mean, with the
// same defaults.
type ChannelsConfig struct {
	RetrySpan            time.Duration
	BaseDelay            time.Duration
	MaxDelay             time.Duration
	PruneAfter           time.Duration
	MaxBacklog           int
	PerTargetConcurrency int
	Timeout              time.Duration
	AllowPrivateTargets  bool
	Webhooks             []WebhookSecret
	SMTP                 SMTPConfig
}

// channelsOf returns the reconfigurable part of c.
func (c *Config) channelsOf() ChannelsConfig {
	return ChannelsConfig{RetrySpan: c.RetrySpan, BaseDelay: c.BaseDelay, MaxDelay: c.MaxDelay, PruneAfter: c.PruneAfter,
		MaxBacklog: c.MaxBacklog, PerTargetConcurrency: c.PerTargetConcurrency, Timeout: c.Timeout,
		AllowPrivateTargets: c.AllowPrivateTargets, Webhooks: c.Webhooks, SMTP: c.SMTP}
}

// withDefaults fills in the documented defaults.
func (c ChannelsConfig) withDefaults() ChannelsConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetrySpan, 72*time.Hour)
	def(&c.BaseDelay, 30*time.Second)
	def(&c.MaxDelay, c.RetrySpan/6)
	def(&c.PruneAfter, 168*time.Hour)
	def(&c.Timeout, 20*time.Second)
	if c.MaxBacklog <= 0 {
		c.MaxBacklog = 10000
	}
	if c.PerTargetConcurrency <= 0 {
		c.PerTargetConcurrency = 4
	}
	c.Webhooks = slices.Clone(c.Webhooks)
	return c
}

// channelSet is what Reconfigure swaps as a whole: the channels built from
// one ChannelsConfig. It is never changed once published.
type channelSet struct {
	cc       ChannelsConfig // with defaults
	channels map[string]Channel
	web      *webhook
	hasMail  bool
}

// Event is one thing the loop did, for metrics and the demo. It never
// carries a secret: targets appear as TargetKey.
type Event struct {
	Kind     EventKind
	ID       string
	Target   string // TargetKey of the row's target
	Attempts int
	Status   int           // HTTP status of the attempt, when there was one
	Err      string        // why the attempt failed
	Latency  time.Duration // delivered: from enqueue to commit
	Next     time.Time     // failed: when the next attempt is due
	Count    int           // disabled, backlog: rows concerned
}

// Service delivers the outbox. Its methods are safe for concurrent use;
// Run must be called once.
type Service struct {
	cfg       Config // the channel fields are in set, which Reconfigure replaces
	db        DB
	log       *slog.Logger
	now       func() time.Time
	publicURL string
	console   *console
	// set holds the channels and the retry policy. Readers load it once per
	// send, commit or scan, so each of those sees one configuration.
	set atomic.Pointer[channelSet]

	kick     chan struct{}
	slotFree chan string   // a send to this target finished
	settled  chan []string // these ids' outcomes are committed
	commits  chan *outcome // sent, awaiting commit
	running  atomic.Bool

	mu       sync.Mutex
	disabled map[string]bool // targets that answered 410, until replayed
	alerted  map[string]bool // targets over MaxBacklog, alerted once
}

// New checks cfg and builds the channels. It reads no secret files: the
// caller passes secrets in cfg.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("notify: no DB")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("notify: public URL %q is not an absolute http(s) URL", cfg.PublicURL)
	}
	if len(cfg.LinkKey) < 32 {
		return nil, fmt.Errorf("notify: link key is %d bytes, at least 32 are needed", len(cfg.LinkKey))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.LinkTTL, 30*24*time.Hour)
	def(&cfg.PollInterval, time.Second)
	def(&cfg.MaintainEvery, time.Minute)
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	s := &Service{cfg: cfg, db: cfg.DB, log: cfg.Logger, now: cfg.Now, publicURL: strings.TrimRight(cfg.PublicURL, "/"),
		console: &console{w: cfg.Console}, kick: make(chan struct{}, 1), slotFree: make(chan string, 256),
		settled: make(chan []string, 64), commits: make(chan *outcome, 1024),
		disabled: map[string]bool{}, alerted: map[string]bool{}}
	set, err := s.buildChannels(cfg.channelsOf())
	if err != nil {
		return nil, err
	}
	s.set.Store(set)
	return s, nil
}

// buildChannels builds the channels of cc. It changes nothing.
func (s *Service) buildChannels(cc ChannelsConfig) (*channelSet, error) {
	cc = cc.withDefaults()
	set := &channelSet{cc: cc, channels: map[string]Channel{}}
	var err error
	if set.web, err = newWebhook(cc.Webhooks, cc.Timeout, cc.AllowPrivateTargets, s.cfg.Now); err != nil {
		return nil, err
	}
	set.channels[KindWebhook] = set.web
	if cc.SMTP.Host != "" {
		e, err := newEmail(cc.SMTP, cc.Timeout, s.cfg.Now)
		if err != nil {
			return nil, err
		}
		set.channels[KindEmail] = e
		set.hasMail = true
	}
	set.channels[KindShoutrrr] = &shoutrrrChannel{allowPrivate: cc.AllowPrivateTargets, resolver: s.cfg.Resolver}
	set.channels[KindConsole] = s.console
	for k, c := range s.cfg.Channels {
		set.channels[k] = c
		if k == KindEmail {
			set.hasMail = true
		}
	}
	return set, nil
}

// Reconfigure replaces the channels, their secrets and the retry policy
// with those of cc, atomically: a send, a commit or a scan sees either the
// old configuration or the new one, never a mix. The outbox is untouched:
// rows keep their ids, attempts and next attempts (a changed retry policy
// applies from each row's next failure on), and sends in flight finish
// with the channel they started with. When cc does not build (a webhook
// secret too short, a bad SMTP setting), the error comes back and the old
// configuration stays. Safe for concurrent use with everything else.
func (s *Service) Reconfigure(cc ChannelsConfig) error {
	set, err := s.buildChannels(cc)
	if err != nil {
		return fmt.Errorf("notify: reconfigure: %w", err)
	}
	old := s.set.Swap(set)
	// Idle connections of the old webhook client would linger until their
	// timeout; sends in flight keep theirs.
	old.web.client.CloseIdleConnections()
	s.log.Info("notification channels reconfigured", "webhooks", len(set.cc.Webhooks), "mail", set.hasMail,
		"allow_private_targets", set.cc.AllowPrivateTargets)
	s.Kick()
	return nil
}

// ValidateTarget reports whether the Service can deliver to raw: its
// syntax (see ValidateTarget), and that the configuration serves it: a
// webhook URL needs a signing secret in [[notify.webhook]], mailto: needs
// [notify.smtp], and a literal non-public address needs
// allow_private_targets. Call it when a watch is created.
func (s *Service) ValidateTarget(raw string) error {
	kind, err := TargetKind(raw)
	if err != nil {
		return err
	}
	set := s.set.Load()
	switch kind {
	case KindWebhook:
		if _, ok := s.cfg.Channels[KindWebhook]; !ok && !set.web.hasSecret(raw) {
			return fmt.Errorf("webhook %s has no signing secret: the operator must add it to [[notify.webhook]]", TargetLabel(raw))
		}
	case KindEmail:
		if !set.hasMail {
			return errors.New("mail targets need [notify.smtp] to be configured")
		}
	}
	if kind == KindWebhook || (kind == KindShoutrrr && shoutrrrSchemes[schemeOf(raw)]) {
		u, _ := url.Parse(raw)
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !publicAddr(a) && !set.cc.AllowPrivateTargets {
			return fmt.Errorf("target %s: %w (allow_private_targets is off)", TargetLabel(raw), ErrPrivateAddress)
		}
	}
	return nil
}

func schemeOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// Kick wakes the loop to look for due rows now; call it after committing
// new outbox rows. It never blocks.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) emit(ev Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer(ev)
	}
}

// outcome is a finished send awaiting commit.
type outcome struct {
	row   vault.OutboxRow
	err   error
	drop  string // non-empty: drop the row with this reason, nothing was sent
	final bool   // the error can never succeed (corrupt row): dead at once
}

// targetState is the dispatcher's view of one target.
type targetState struct {
	queue  []vault.OutboxRow
	active int
	more   bool // due rows were seen that did not fit the queue
}

// Run delivers until ctx ends, then waits for the sends in flight (they
// are cancelled; their rows stay due and are sent again on the next run)
// and returns nil. It owns every goroutine it starts.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	var sends, aux sync.WaitGroup
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		s.committer()
	}()
	aux.Add(1)
	go func() {
		defer aux.Done()
		s.maintain(ctx)
	}()

	targets := map[string]*targetState{}
	known := map[string]bool{}      // queued, sending or awaiting commit
	targetOf := map[string]string{} // due ids seen but not queued -> target
	timer := time.NewTimer(0)
	defer timer.Stop()

	scan := func() time.Duration {
		queueCap := max(32*s.set.Load().cc.PerTargetConcurrency, 128)
		now := s.now()
		seen := make(map[string]string, len(targetOf))
		var load []string
		planned := map[string]int{} // rows of known targets about to be loaded
		var next time.Time
		var more bool
		err := s.db.View(func(tx *vault.Tx) error {
			next, more = tx.DueOutboxIDs(now, func(id string, _ time.Time) bool {
				if known[id] {
					return true
				}
				if t, ok := targetOf[id]; ok {
					seen[id] = t
					ts := targets[t]
					if ts != nil && len(ts.queue)+planned[t] >= queueCap {
						ts.more = true
						return true
					}
					planned[t]++
				}
				load = append(load, id)
				return len(load) < 4096
			})
			for _, id := range load {
				r, err := tx.OutboxRow(id)
				if err != nil {
					continue
				}
				ts := targets[r.Target]
				if ts == nil {
					ts = &targetState{}
					targets[r.Target] = ts
				}
				seen[id] = r.Target
				if len(ts.queue) >= queueCap {
					ts.more = true
					continue
				}
				known[id] = true
				delete(seen, id)
				ts.queue = append(ts.queue, r)
			}
			return nil
		})
		targetOf = seen
		if err != nil {
			s.log.Error("read due notifications", "err", err)
			return s.cfg.PollInterval
		}
		if len(load) >= 4096 {
			return 0
		}
		wait := s.cfg.PollInterval
		if more {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		return wait
	}
	dispatch := func() {
		perTarget := s.set.Load().cc.PerTargetConcurrency
		for t, ts := range targets {
			disabled := s.isDisabled(t)
			for len(ts.queue) > 0 && (disabled || ts.active < perTarget) {
				r := ts.queue[0]
				ts.queue = ts.queue[1:]
				if disabled {
					s.commits <- &outcome{row: r, drop: "target disabled (410 Gone)"}
					continue
				}
				ts.active++
				sends.Add(1)
				go func() {
					defer sends.Done()
					s.deliver(ctx, r)
				}()
			}
			if len(ts.queue) == 0 && ts.active == 0 && !ts.more {
				delete(targets, t)
			}
		}
	}

	needScan := true
	for ctx.Err() == nil {
		if needScan {
			wait := scan()
			timer.Reset(wait)
			needScan = false
		}
		dispatch()
		select {
		case <-ctx.Done():
		case <-s.kick:
			needScan = true
		case <-timer.C:
			needScan = true
		case t := <-s.slotFree:
			s.freeSlot(targets, t, &needScan)
		case ids := <-s.settled:
			for _, id := range ids {
				delete(known, id)
			}
		}
		// Coalesce whatever else is ready before scanning again.
		for drained := false; !drained; {
			select {
			case t := <-s.slotFree:
				s.freeSlot(targets, t, &needScan)
			case ids := <-s.settled:
				for _, id := range ids {
					delete(known, id)
				}
			default:
				drained = true
			}
		}
	}

	// Shutdown: sends see ctx cancelled; keep draining their signals.
	sendsDone := make(chan struct{})
	go func() {
		sends.Wait()
		close(sendsDone)
	}()
	for waiting := true; waiting; {
		select {
		case <-s.slotFree:
		case <-s.settled:
		case <-sendsDone:
			waiting = false
		}
	}
	close(s.commits)
	for waiting := true; waiting; {
		select {
		case <-s.settled:
		case <-committerDone:
			waiting = false
		}
	}
	aux.Wait()
	return nil
}

func (s *Service) freeSlot(targets map[string]*targetState, t string, needScan *bool) {
	ts := targets[t]
	if ts == nil {
		return
	}
	ts.active--
	if len(ts.queue) < s.set.Load().cc.PerTargetConcurrency && ts.more {
		ts.more = false
		*needScan = true
	}
}

func (s *Service) isDisabled(target string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled[target]
}

// deliver sends one row and hands the outcome to the committer.
func (s *Service) deliver(ctx context.Context, r vault.OutboxRow) {
	m, err := s.message(r)
	final := err != nil
	if err == nil {
		kind, kerr := TargetKind(r.Target)
		set := s.set.Load()
		ch := set.channels[kind]
		switch {
		case kerr != nil:
			err, final = kerr, true
		case ch == nil:
			err = ErrNoChannel
		default:
			sctx, cancel := context.WithTimeout(ctx, set.cc.Timeout)
			err = ch.Send(sctx, m)
			cancel()
		}
	}
	s.slotFree <- r.Target
	if ctx.Err() != nil {
		// Shutting down: whatever happened, the row stays due and is sent
		// again, under the same id, by the next run.
		s.settled <- []string{r.ID}
		return
	}
	s.commits <- &outcome{row: r, err: err, final: final}
}

// message decodes a row into what channels send, opening its sealed
// secret (a consent link) only now.
func (s *Service) message(r vault.OutboxRow) (*Message, error) {
	m := &Message{ID: r.ID, Target: r.Target, Attempt: r.Attempts + 1}
	if err := json.Unmarshal(r.Payload, &m.Notice); err != nil {
		return nil, fmt.Errorf("payload is not a notice: %w", err)
	}
	if m.Notice.Type == "" {
		m.Notice.Type = r.Kind
	}
	if m.Notice.UserID == "" {
		m.Notice.UserID = r.UserID
	}
	if len(r.SealedSecret) > 0 {
		var v secret.Value
		if err := s.db.View(func(tx *vault.Tx) error {
			var err error
			v, err = tx.OpenOutboxSecret(r)
			return err
		}); err != nil {
			return nil, errors.New("sealed secret does not open")
		}
		m.Consent = v
	}
	watch := r.WatchID
	if watch == "" {
		watch = m.Notice.WatchID
	}
	if watch != "" {
		m.PauseURL = s.PauseURL(m.Notice.UserID, watch)
	}
	if m.Notice.Provider != "" && m.Notice.Type != vault.NoticeRevoked {
		m.RevokeURL = s.RevokeURL(m.Notice.UserID, m.Notice.Provider)
	}
	return m, nil
}

// delay returns the nominal delay after the n-th failed attempt.
func (c *ChannelsConfig) delay(n int) time.Duration {
	d := c.BaseDelay
	for i := 1; i < n && d < c.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// exhausted reports whether a row that failed its n-th attempt has been
// retried for RetrySpan: the nominal delays before it add up to the span.
func (c *ChannelsConfig) exhausted(n int) bool {
	var sum time.Duration
	for i := 1; i < n; i++ {
		sum += c.delay(i)
		if sum >= c.RetrySpan {
			return true
		}
	}
	return false
}

// Schedule returns the nominal retry schedule: the delay after each failed
// attempt until the row becomes a dead letter. Jitter of ±25% applies to
// each delay; a longer Retry-After replaces it.
func (s *Service) Schedule() []time.Duration {
	cc := &s.set.Load().cc
	var out []time.Duration
	for n := 1; !cc.exhausted(n); n++ {
		out = append(out, cc.delay(n))
	}
	return out
}

// committer records outcomes, many per transaction, until s.commits closes.
func (s *Service) committer() {
	for first := range s.commits {
		batch := []*outcome{first}
	fill:
		for len(batch) < 512 {
			select {
			case o, ok := <-s.commits:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.commit(batch)
		ids := make([]string, len(batch))
		for i, o := range batch {
			ids[i] = o.row.ID
		}
		s.settled <- ids
	}
}

// commit applies a batch of outcomes in one transaction.
func (s *Service) commit(batch []*outcome) {
	var events []Event
	var logs []func()
	now := s.now()
	cc := &s.set.Load().cc
	err := s.db.Update(func(tx *vault.Tx) error {
		events, logs = events[:0], logs[:0]
		for _, o := range batch {
			cur, err := tx.OutboxRow(o.row.ID)
			if errors.Is(err, vault.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if cur.State != vault.OutboxPending && cur.State != vault.OutboxRetrying {
				continue // dropped or replayed meanwhile
			}
			key := TargetKey(cur.Target)
			if o.drop != "" {
				cur.State, cur.LastError = vault.OutboxDropped, o.drop
				if err := tx.PutOutboxRow(cur); err != nil {
					return err
				}
				events = append(events, Event{Kind: EventDropped, ID: cur.ID, Target: key, Attempts: cur.Attempts, Err: o.drop})
				continue
			}
			cur.Attempts++
			if o.err == nil {
				cur.State, cur.DeliveredAt, cur.LastError = vault.OutboxDelivered, now, ""
				if err := tx.PutOutboxRow(cur); err != nil {
					return err
				}
				events = append(events, Event{Kind: EventDelivered, ID: cur.ID, Target: key, Attempts: cur.Attempts, Latency: now.Sub(cur.CreatedAt)})
				continue
			}
			var se *SendError
			status, wait := 0, time.Duration(0)
			if errors.As(o.err, &se) {
				status, wait = se.Status, se.RetryAfter
			}
			cur.LastError = clip(o.err.Error(), 300)
			switch {
			case errors.Is(o.err, ErrTargetGone):
				n, err := s.disable(tx, cur, now)
				if err != nil {
					return err
				}
				t := cur.Target
				logs = append(logs, func() {
					s.mu.Lock()
					s.disabled[t] = true
					s.mu.Unlock()
					s.log.Warn("notification target disabled: it answered 410 Gone; its undelivered rows were dropped",
						"target", key, "user", cur.UserID, "dropped", n)
				})
				events = append(events, Event{Kind: EventDisabled, ID: cur.ID, Target: key, Attempts: cur.Attempts, Status: status, Count: n})
			case o.final || cc.exhausted(cur.Attempts):
				cur.State = vault.OutboxDead
				if err := tx.PutOutboxRow(cur); err != nil {
					return err
				}
				logs = append(logs, func() {
					s.log.Warn("notification is a dead letter", "id", cur.ID, "target", key, "user", cur.UserID,
						"attempts", cur.Attempts, "err", cur.LastError)
				})
				events = append(events, Event{Kind: EventDead, ID: cur.ID, Target: key, Attempts: cur.Attempts, Status: status, Err: cur.LastError})
			default:
				d := cc.delay(cur.Attempts)
				d = time.Duration(float64(d) * (0.75 + 0.5*s.cfg.Jitter()))
				if wait > d {
					d = wait
				}
				cur.State, cur.NextAttempt = vault.OutboxRetrying, now.Add(d)
				if err := tx.PutOutboxRow(cur); err != nil {
					return err
				}
				events = append(events, Event{Kind: EventFailed, ID: cur.ID, Target: key, Attempts: cur.Attempts, Status: status,
					Err: cur.LastError, Next: cur.NextAttempt})
			}
		}
		return nil
	})
	if err != nil {
		// Nothing was recorded: the rows stay due and are sent again.
		s.log.Error("record delivery outcomes", "rows", len(batch), "err", err)
		return
	}
	for _, f := range logs {
		f()
	}
	for _, ev := range events {
		if ev.Kind == EventFailed {
			s.log.Info("notification attempt failed; retry scheduled", "id", ev.ID, "target", ev.Target,
				"attempts", ev.Attempts, "status", ev.Status, "err", ev.Err, "next", ev.Next)
		}
		s.emit(ev)
	}
}

// disable drops r and every undelivered row for its target, and tells the
// user on their other targets. It returns how many rows were dropped.
func (s *Service) disable(tx *vault.Tx, r vault.OutboxRow, now time.Time) (int, error) {
	var same []vault.OutboxRow
	if err := tx.DueOutbox(time.Unix(0, 1<<62), 0, func(o vault.OutboxRow) bool {
		if o.Target == r.Target && o.ID != r.ID {
			same = append(same, o)
		}
		return true
	}); err != nil {
		return 0, err
	}
	r.State = vault.OutboxDropped
	if err := tx.PutOutboxRow(r); err != nil {
		return 0, err
	}
	for _, o := range same {
		o.State, o.LastError = vault.OutboxDropped, "target disabled (410 Gone)"
		if err := tx.PutOutboxRow(o); err != nil {
			return 0, err
		}
	}
	others := map[string]bool{}
	users := map[string]bool{r.UserID: true}
	for _, o := range same {
		users[o.UserID] = true
	}
	for u := range users {
		if err := tx.UserWatches(u, func(w vault.Watch) error {
			for _, t := range w.Targets {
				if t != r.Target {
					others[u+"\x00"+t] = true
				}
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	for ut := range others {
		u, t, _ := strings.Cut(ut, "\x00")
		payload, err := json.Marshal(vault.Notice{Type: vault.NoticeTargetDisabled, UserID: u, Time: now,
			Message: "Notifications to " + TargetLabel(r.Target) + " were refused for good (410 Gone), so that target was turned off. Ask your operator for a new one."})
		if err != nil {
			return 0, err
		}
		if _, err := tx.Enqueue(vault.OutboxRow{ID: vault.OutboxID(u, vault.NoticeTargetDisabled, r.Target, t, now.String()),
			Kind: vault.NoticeTargetDisabled, UserID: u, Target: t, Payload: payload}); err != nil {
			return 0, err
		}
	}
	return len(same) + 1, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// maintain prunes old rows and caps backlogs every MaintainEvery.
func (s *Service) maintain(ctx context.Context) {
	t := time.NewTicker(s.cfg.MaintainEvery)
	defer t.Stop()
	for {
		if err := s.Maintain(); err != nil {
			s.log.Error("outbox maintenance", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Maintain prunes delivered and dropped rows older than PruneAfter, in
// small transactions, and drops the newest rows of any target holding more
// than MaxBacklog undelivered ones, alerting the operator once per episode.
// Run calls it every MaintainEvery; tests and operators may call it too.
func (s *Service) Maintain() error {
	cc := &s.set.Load().cc
	cutoff := s.now().Add(-cc.PruneAfter)
	var old []string
	if err := s.db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			if (r.State == vault.OutboxDelivered && r.DeliveredAt.Before(cutoff)) ||
				(r.State == vault.OutboxDropped && r.CreatedAt.Before(cutoff)) {
				old = append(old, r.ID)
			}
			return nil
		})
	}); err != nil {
		return fmt.Errorf("notify: prune: %w", err)
	}
	for len(old) > 0 {
		n := min(len(old), 1000)
		if err := s.db.Update(func(tx *vault.Tx) error {
			for _, id := range old[:n] {
				if err := tx.DeleteOutboxRow(id); err != nil && !errors.Is(err, vault.ErrNotFound) {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("notify: prune: %w", err)
		}
		old = old[n:]
	}

	type ref struct {
		id      string
		created time.Time
	}
	backlog := map[string][]ref{}
	if err := s.db.View(func(tx *vault.Tx) error {
		return tx.DueOutbox(time.Unix(0, 1<<62), 0, func(r vault.OutboxRow) bool {
			backlog[r.Target] = append(backlog[r.Target], ref{r.ID, r.CreatedAt})
			return true
		})
	}); err != nil {
		return fmt.Errorf("notify: backlog: %w", err)
	}
	for t, refs := range backlog {
		if len(refs) <= cc.MaxBacklog {
			s.mu.Lock()
			delete(s.alerted, t)
			s.mu.Unlock()
			continue
		}
		sort.Slice(refs, func(i, j int) bool { return refs[i].created.Before(refs[j].created) })
		excess := refs[cc.MaxBacklog:]
		reason := fmt.Sprintf("backlog over max_backlog (%d)", cc.MaxBacklog)
		if err := s.db.Update(func(tx *vault.Tx) error {
			for _, x := range excess {
				r, err := tx.OutboxRow(x.id)
				if err != nil || (r.State != vault.OutboxPending && r.State != vault.OutboxRetrying) {
					continue
				}
				r.State, r.LastError = vault.OutboxDropped, reason
				if err := tx.PutOutboxRow(r); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("notify: backlog: %w", err)
		}
		key := TargetKey(t)
		s.mu.Lock()
		first := !s.alerted[t]
		s.alerted[t] = true
		s.mu.Unlock()
		if first {
			s.log.Error("notification target backlog over max_backlog: newest rows dropped", "target", key,
				"backlog", len(refs), "max_backlog", cc.MaxBacklog, "dropped", len(excess))
		}
		s.emit(Event{Kind: EventBacklog, Target: key, Count: len(excess)})
	}
	return nil
}

// Replay sends a dead (or dropped) row again under the same id, with a
// fresh retry schedule. A target disabled by 410 is enabled again.
// It returns ErrNotFound or ErrNotDead.
func (s *Service) Replay(id string) error {
	var target string
	err := s.db.Update(func(tx *vault.Tx) error {
		r, err := tx.OutboxRow(id)
		if errors.Is(err, vault.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if r.State != vault.OutboxDead && r.State != vault.OutboxDropped {
			return ErrNotDead
		}
		r.State, r.Attempts, r.NextAttempt, r.LastError = vault.OutboxPending, 0, tx.Now(), ""
		target = r.Target
		return tx.PutOutboxRow(r)
	})
	if err != nil {
		return fmt.Errorf("notify: replay %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.disabled, target)
	s.mu.Unlock()
	s.log.Info("notification replayed", "id", id, "target", TargetKey(target))
	s.emit(Event{Kind: EventReplayed, ID: id, Target: TargetKey(target)})
	s.Kick()
	return nil
}

// TargetStatus counts one target's rows by state.
type TargetStatus struct {
	Target    string `json:"target"` // TargetKey: no secrets
	Pending   int    `json:"pending"`
	Retrying  int    `json:"retrying"`
	Dead      int    `json:"dead"`
	Dropped   int    `json:"dropped"`
	Delivered int    `json:"delivered"`
	Disabled  bool   `json:"disabled,omitempty"`
}

// DeadLetter is a row that could not be delivered, for operators.
type DeadLetter struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	UserID    string    `json:"user_id"`
	WatchID   string    `json:"watch_id,omitempty"`
	Target    string    `json:"target"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	LastError string    `json:"last_error"`
}

// Status counts the outbox's rows per target, sorted by target. It reads
// every row: it is for operators, not for hot paths.
func (s *Service) Status() ([]TargetStatus, error) {
	by := map[string]*TargetStatus{}
	s.mu.Lock()
	disabled := make(map[string]bool, len(s.disabled))
	for t := range s.disabled {
		disabled[t] = true
	}
	s.mu.Unlock()
	err := s.db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			st := by[r.Target]
			if st == nil {
				st = &TargetStatus{Target: TargetKey(r.Target), Disabled: disabled[r.Target]}
				by[r.Target] = st
			}
			switch r.State {
			case vault.OutboxPending:
				st.Pending++
			case vault.OutboxRetrying:
				st.Retrying++
			case vault.OutboxDead:
				st.Dead++
			case vault.OutboxDropped:
				st.Dropped++
			case vault.OutboxDelivered:
				st.Delivered++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("notify: status: %w", err)
	}
	out := make([]TargetStatus, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// DeadLetters lists up to limit dead rows (limit <= 0: all), oldest first.
func (s *Service) DeadLetters(limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			if r.State == vault.OutboxDead {
				out = append(out, DeadLetter{ID: r.ID, Kind: r.Kind, UserID: r.UserID, WatchID: r.WatchID,
					Target: TargetKey(r.Target), Attempts: r.Attempts, CreatedAt: r.CreatedAt, LastError: r.LastError})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("notify: dead letters: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
