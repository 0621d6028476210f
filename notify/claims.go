package notify

import (
	"context"
	"time"

	"golang.org/x/sync/errgroup"

	"tagwatch/vault"
	"tagwatch/vault/kv"
)

// ClaimKind is the kv.Claim.Kind of an outbox row's delivery attempt: the
// claim's ID is the row's id, its Round the attempt's (claimRound).
const ClaimKind = "outbox"

// Claims is what the notifier needs of the claims of the daemons sharing
// a store (kv.Cluster; *vault.DB's Cluster() gives it): one claim, with
// a lease, on each delivery attempt of each row, so that one daemon
// sends it. See kv.Cluster for the rules. Both methods are safe for
// concurrent use.
type Claims = kv.Claimer

// releaseTimeout bounds the releases of one committed batch.
const releaseTimeout = 10 * time.Second

// releaseParallel bounds the releases of one batch in flight at once: on
// PostgreSQL each is a round trip, and the committer waits for them.
const releaseParallel = 16

// claimRound is the claim's Round of a row's next attempt: the time it is
// due, in Unix nanoseconds. Every daemon reads the same value from the
// row, and it grows with every attempt that ends in a retry (the next
// attempt is due later than this one was) and with a Replay (due now,
// after it died). The attempt count would not do: a Replay restarts it
// at 0, and an attempt that sent nothing does not raise it, so a round
// released done would stay closed to every other daemon.
func claimRound(r vault.OutboxRow) int64 { return r.NextAttempt.UnixNano() }

// claimRow takes the claim on r's next attempt for this daemon (true),
// or says until when to leave r alone: while another daemon holds the
// claim (until its lease would end, by which time it has settled the row
// or died), or, when the store does not answer, until the next poll.
// Without Claims every row is this daemon's.
func (s *Service) claimRow(ctx context.Context, r vault.OutboxRow) (ok bool, leaveUntil time.Time) {
	if s.cfg.Claims == nil {
		return true, time.Time{}
	}
	c := kv.Claim{Kind: ClaimKind, ID: r.ID, Round: claimRound(r), Holder: s.cfg.Holder, Lease: s.cfg.Lease}
	ok, err := s.cfg.Claims.Claim(ctx, c)
	if ctx.Err() == nil {
		s.claimOutage(err)
	}
	switch {
	case err != nil:
		return false, s.now().Add(s.cfg.PollInterval)
	case !ok:
		s.log.Debug("notification claimed by another daemon", "id", r.ID, "attempts", r.Attempts)
		return false, s.now().Add(s.cfg.Lease)
	}
	return true, time.Time{}
}

// releaseClaims releases the claims of a batch's attempts after their
// outcomes were committed (done: the round is over; a retry is a new
// round, due later) or were not (!done: any daemon may send them again at
// once).
func (s *Service) releaseClaims(batch []attempt, done bool) {
	if s.cfg.Claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(releaseParallel)
	for _, a := range batch {
		if !a.claimed {
			continue
		}
		g.Go(func() error { return s.cfg.Claims.Release(ctx, ClaimKind, a.row.ID, s.cfg.Holder, done) })
	}
	s.claimOutage(g.Wait())
}

// releaseOne gives back the claim of an attempt that was not recorded
// (the daemon stops), so another daemon sends the row at once.
func (s *Service) releaseOne(ctx context.Context, r vault.OutboxRow) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	s.claimOutage(s.cfg.Claims.Release(rctx, ClaimKind, r.ID, s.cfg.Holder, false))
}

// claimOutage logs the first failure of the claims after a success at
// Warn, and the first success after a failure at Info: once per outage,
// not once per row.
func (s *Service) claimOutage(err error) {
	if err != nil {
		if s.claimsDown.CompareAndSwap(false, true) {
			s.log.Warn("store does not answer claims: notifications wait until it does", "err", err)
		}
		return
	}
	if s.claimsDown.CompareAndSwap(true, false) {
		s.log.Info("store answers claims again: notifications go on")
	}
}
