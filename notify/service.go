// Package notify delivers the vault's outbox: every match, and every
// message a user must see, reaches its target at least once.
//
// A Service runs one delivery loop (Run). It reads due rows, sends each
// through the channel its target names (webhook.go, email.go, shoutrrr.go,
// console.go), and afterwards records the outcome: delivered only after
// the target accepted the message, otherwise the next attempt of a retry
// schedule (retry.go: exponential backoff with jitter over
// ChannelsConfig.RetrySpan), then a dead letter that Replay sends again
// under the same id. A crash between the send and the commit sends the row
// again, with the same id, so receivers can de-duplicate.
//
// The package is split along its concerns:
//
//   - dispatch.go: the loop (a dispatcher with its own goroutines: the
//     scanner, up to PerTargetConcurrency workers per target, the
//     committer), per-target queues and group commit.
//   - retry.go: what an attempt's result means for the row.
//   - maintain.go: pruning and backlog caps.
//   - channel.go and one file per channel; targets.go: which targets exist,
//     how they are checked (CheckTarget, TargetChecker) and shown
//     (TargetLabel).
//   - render.go: every word a user reads; limits.go: how long a message
//     each chat service takes, and in which unit; split.go: cutting a
//     chat message into messages that fit.
//   - claims.go: sharing the outbox with other daemons on the same store
//     (Config.Claims): one daemon sends each attempt.
//   - operator.go: the operator's views of the outbox and Replay.
//   - links.go: the signed one-click links every message carries.
//
// The store is reached only through the Outbox interface, which *vault.DB
// implements (and, when the outbox can, OutboxTargets: see targetPeeker);
// notify never opens a transaction of its own.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"tagwatch/vault"
	"tagwatch/vault/secret"
)

// Outbox is the part of the store the notifier uses; *vault.DB implements
// it. Each method is one step with its own atomicity, documented on the
// vault.DB method of the same name; none takes a transaction.
type Outbox interface {
	// DueOutboxIDs calls fn with the id of each pending or retrying row
	// due at or before now, earliest first, until fn returns false, and
	// returns when the earliest row due later is due (zero: none, or
	// stopped).
	DueOutboxIDs(now time.Time, fn func(id string) bool) (time.Time, error)
	// LoadOutbox returns the rows with those ids that exist, as they are now.
	LoadOutbox(ids []string) ([]vault.OutboxRow, error)
	// OpenOutboxSecret opens a row's sealed secret (a consent link).
	OpenOutboxSecret(r vault.OutboxRow) (secret.Value, error)
	// SettleOutbox records a batch of outcomes in one transaction, each
	// fenced by the attempt count it was decided on, and returns those
	// it recorded.
	SettleOutbox(outcomes []vault.OutboxOutcome) ([]vault.OutboxSettled, error)
	// ReplayOutbox puts a dead or dropped row back in the queue, with an
	// audit entry naming actor.
	ReplayOutbox(id, actor string) (vault.OutboxRow, error)
	// PruneOutbox deletes delivered and dropped rows older than cutoff.
	PruneOutbox(cutoff time.Time) (int, error)
	// DropOutboxBacklog drops the newest waiting rows of every target
	// beyond maxWaiting, and returns the targets that were over.
	DropOutboxBacklog(maxWaiting int, reason string) ([]vault.OutboxBacklog, error)
	// OutboxTallies counts every target's rows by state.
	OutboxTallies() ([]vault.OutboxTally, error)
	// ListOutbox lists rows in a state ("" for all), oldest first.
	ListOutbox(state vault.OutboxState, limit int) ([]vault.OutboxRow, error)
}

// Config configures a Service. The zero value of each field is its default.
type Config struct {
	// Outbox is the store holding the outbox (a *vault.DB). Required.
	Outbox Outbox
	// PublicURL is the daemon's public base URL, for one-click links. Required.
	PublicURL string
	// AccountURL is the users' own page (vault/selfservice), "" when the
	// daemon serves none: the notice that access ended points there to
	// give it again.
	AccountURL string
	// LinkKey signs one-click links; at least 32 bytes. Required.
	LinkKey []byte
	// LinkTTL is how long a one-click link works; default 30 days.
	LinkTTL time.Duration
	// Actions carries out one-click links; without it their POST fails.
	Actions Actions

	// Channels are the channels, their secrets and the retry policy: what
	// Reconfigure replaces while the Service runs.
	Channels ChannelsConfig
	// Console is where console: targets print; default os.Stdout.
	Console io.Writer
	// Resolver resolves the hosts of chat URLs; default net.DefaultResolver.
	Resolver *net.Resolver

	// PollInterval bounds how long a row enqueued by another component
	// waits when nobody calls Kick; default 1s.
	PollInterval time.Duration
	// MaintainEvery is how often rows are pruned and backlogs checked;
	// default 1 minute.
	MaintainEvery time.Duration

	// Claims, when set, shares the outbox with the other daemons on the
	// same store: before sending a due row, the loop claims its attempt
	// (kind ClaimKind, the row's id, the round claimRound) under Holder
	// for Lease, and after its outcome is committed releases it done. A
	// row another daemon holds is left alone until that claim's lease
	// would end; a daemon that dies mid-send leaves its claim to run out,
	// and another sends the row again after the lease, under the same id
	// (at least once). The daemon passes the vault's (vault.DB.Cluster,
	// Holder, Lease) when the store is shared (vault.DB.Shared). Nil:
	// every due row is this loop's.
	Claims Claims
	// Holder is this daemon's id among those sharing the store; required
	// with Claims.
	Holder string
	// Lease is how long a claim holds; default 30 s (storage.lease).
	Lease time.Duration

	// Observer, when set, receives every event, synchronously from the
	// loop's goroutines: it must be quick and safe for concurrent use.
	Observer func(Event)
	// Logger receives the loop's log; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) for retry jitter; default
	// math/rand/v2. It is called from the send goroutines: it must be
	// safe for concurrent use.
	Jitter func() float64

	// telegramAPI is where Telegram's Bot API is (tests); default
	// https://api.telegram.org.
	telegramAPI string
	// queueBudget is the queues' budget (tests); default queueBudget.
	queueBudget int
}

// EventKind says what happened to a notification.
type EventKind string

// Event kinds.
const (
	EventDelivered EventKind = "delivered" // the target accepted the row
	EventFailed    EventKind = "failed"    // an attempt failed; a retry is scheduled
	EventDead      EventKind = "dead"      // retries are exhausted: a dead letter
	EventDisabled  EventKind = "disabled"  // the target said 410 Gone: disabled, its rows dropped
	EventDropped   EventKind = "dropped"   // a row was dropped (disabled target)
	EventBacklog   EventKind = "backlog"   // a target's backlog exceeded MaxBacklog; its newest rows were dropped
	EventReplayed  EventKind = "replayed"  // an operator replayed a row
)

// Event is one thing the loop did, for metrics and the demo. It never
// carries a secret: targets appear as their TargetLabel.
type Event struct {
	Kind     EventKind
	ID       string
	Target   string // TargetLabel of the row's target
	Attempts int
	Status   int           // HTTP status of the attempt, when there was one
	Err      string        // why the attempt failed
	Latency  time.Duration // delivered: from enqueue to commit
	Next     time.Time     // failed: when the next attempt is due
	Count    int           // disabled, backlog: rows concerned
}

// Service delivers the outbox, checks targets and serves the operator's
// views of the outbox. Its methods are safe for concurrent use; Run must
// be called at most once. Every method but Run works without a running
// loop (on a stopped daemon's vault, say).
type Service struct {
	cfg       Config // cfg.Channels is the initial configuration; set holds the current one
	outbox    Outbox
	log       *slog.Logger
	now       func() time.Time
	publicURL string
	links     *linkSigner // signs with cfg.LinkKey
	console   *console
	// set holds the channels and the retry policy. Readers load it once per
	// send, decision or scan, so each of those sees one configuration.
	set atomic.Pointer[channelSet]

	kick    chan struct{} // one-buffered: a scan is wanted
	running atomic.Bool

	// claimsDown is set from a failed claim to the next success (claims.go).
	claimsDown atomic.Bool

	mu       sync.Mutex
	disabled map[string]bool // targets that answered 410, until replayed
	alerted  map[string]bool // targets over MaxBacklog, alerted once per episode
}

// New checks cfg and builds the channels. It reads no secret files: the
// caller passes secrets in cfg.Channels.
func New(cfg Config) (*Service, error) {
	if cfg.Outbox == nil {
		return nil, errors.New("notify: no outbox")
	}
	if cfg.Claims != nil && cfg.Holder == "" {
		return nil, errors.New("notify: Claims need a Holder (this daemon's id)")
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
	def(&cfg.Lease, 30*time.Second)
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
	if cfg.queueBudget <= 0 {
		cfg.queueBudget = queueBudget
	}
	s := &Service{cfg: cfg, outbox: cfg.Outbox, log: cfg.Logger, now: cfg.Now, publicURL: strings.TrimRight(cfg.PublicURL, "/"),
		links:   newLinkSigner(cfg.LinkKey),
		console: &console{w: cfg.Console}, kick: make(chan struct{}, 1), disabled: map[string]bool{}, alerted: map[string]bool{}}
	set, err := s.buildChannels(cfg.Channels)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	s.set.Store(set)
	return s, nil
}

func (s *Service) buildChannels(cc ChannelsConfig) (*channelSet, error) {
	return buildChannels(cc, channelEnv{now: s.now, resolver: s.cfg.Resolver, console: s.console, telegramAPI: s.cfg.telegramAPI})
}

// Reconfigure replaces the channels, their secrets and the retry policy
// with those of cc, atomically: a send, a decision or a scan sees either
// the old configuration or the new one, never a mix. The outbox is
// untouched: rows keep their ids, attempts and next attempts (a changed
// retry policy applies from each row's next failure on), and sends in
// flight finish with the channel they started with. When cc does not
// build (a webhook secret too short, a bad SMTP setting), the error comes
// back and the old configuration stays.
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

// CheckTarget reports whether the Service, as configured now, can deliver
// to raw: its syntax (for chat URLs, parsed by the library that sends
// them), and that the configuration serves it: a webhook URL needs a
// signing secret in [[notify.webhook]], mailto: needs [notify.smtp], and a
// literal non-public address needs allow_private_targets. A
// TargetChecker built from the same ChannelsConfig gives the same answer.
// Errors are *TargetError: they name the target once, by its TargetLabel.
func (s *Service) CheckTarget(raw string) error { return s.set.Load().checkTarget(raw) }

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

// Run delivers until ctx ends, then waits for the sends in flight (they
// are cancelled; a send that failed that way is not recorded, so its row
// stays due and is sent again, under the same id, by the next run),
// records the outcomes it has, and returns nil. It owns every goroutine it
// starts and returns only when all of them have.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	d := newDispatcher(s)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.commitLoop()
	}()
	go func() {
		defer d.wg.Done()
		s.maintainEvery(ctx)
	}()
	d.loop(ctx)
	d.sends.Wait()
	d.closeCommits()
	d.wg.Wait()
	return nil
}

func (s *Service) isDisabled(target string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled[target]
}

// message decodes a row into what channels send, opening its sealed
// secret (a consent link) only now.
func (s *Service) message(r vault.OutboxRow) (*Message, error) {
	m := &Message{ID: r.ID, Target: r.Target, Attempt: r.Attempts + 1}
	// encoding/json's rules, decoded in a third of its time: every
	// delivery decodes its notice (vault/outboxjson.go says more).
	if err := jsonv1.Unmarshal(r.Payload, &m.Notice); err != nil {
		return nil, errors.New("payload is not a notice")
	}
	if m.Notice.Type == "" {
		m.Notice.Type = r.Kind
	}
	if m.Notice.UserID == "" {
		m.Notice.UserID = r.UserID
	}
	m.Delivered = rowProgress(r, len(m.Notice.Posts))
	if len(r.SealedSecret) > 0 {
		v, err := s.outbox.OpenOutboxSecret(r)
		if err != nil {
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
	// A revocation link only where there is access to give up: not in
	// the notice that access ended, nor in the one that asks for a new
	// consent because tagwatch has none that works (its Pause link stays).
	if m.Notice.Provider != "" && m.Notice.Type != vault.NoticeRevoked && m.Notice.Type != vault.NoticeReconsent {
		m.RevokeURL = s.RevokeURL(m.Notice.UserID, m.Notice.Provider)
	}
	m.AccountURL = s.cfg.AccountURL
	return m, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
