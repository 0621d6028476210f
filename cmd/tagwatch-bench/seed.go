package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker/sched"
	"tagwatch/worker/xapi/xsandbox"
)

// The sandbox's registered app, as the bench's provider is configured.
const (
	benchClientID     = "tagwatch"
	benchClientSecret = "s3cret"
)

// seedPlan is what the peer seeds: Watches watches, PerUser to a user,
// each on Schedule, in the vault file at VaultPath (created with the
// master key Master), their users' grants in the sandbox too.
type seedPlan struct {
	Watches  int    `json:"watches"`
	PerUser  int    `json:"per_user"`
	Schedule string `json:"schedule"`
	// Hooks is how many webhook URLs the receiver serves; each user's
	// watches notify one of them.
	Hooks      int    `json:"hooks"`
	HookSecret string `json:"hook_secret"` // whsec_...
	VaultPath  string `json:"vault_path"`
	Master     []byte `json:"master"`
	// Ahead is how long after seeding the bench expects the daemon to
	// have loaded every watch: each watch's last run is its last fire
	// before then, so the load finds none missed (no catch-up).
	Ahead time.Duration `json:"ahead"`
	// Skew is the renewal's skew: the vault's access expiries are spread
	// so the grants renew evenly from a minute after Ahead on.
	Skew time.Duration `json:"skew"`
}

// watchKey, userKey and hashtagOf name watch i, user u and watch i's
// hashtag; ids are fixed-width so the vault's keys are in seeding order.
func watchKey(i int) string  { return fmt.Sprintf("w%07d", i) }
func userKey(u int) string   { return fmt.Sprintf("u%07d", u) }
func hashtagOf(i int) string { return fmt.Sprintf("t%07d", i) }

// xidOf is user u's X id.
func xidOf(u int) string { return strconv.Itoa(1_000_000 + u) }

// everyOf returns the interval of an `@every` schedule.
func everyOf(spec string) (time.Duration, error) {
	s, err := sched.CheckSchedule(spec, 0)
	if err != nil {
		return 0, err
	}
	cd, ok := s.(cron.ConstantDelaySchedule)
	if !ok {
		return 0, fmt.Errorf("schedule %q: the bench needs an @every schedule", spec)
	}
	return cd.Delay, nil
}

type seedStats struct {
	xids     []string
	x, vault time.Duration
	bytes    int64
}

// seedAll adds the plan's users and their grants to the sandbox, then
// writes the vault: per user its record and its active grant sealed with
// the tokens the sandbox issued, and its watches (one hashtag each, on
// the plan's schedule, notifying the user's webhook URL, with a cursor as
// after a run at the watch's last fire: since_id a post made at seeding,
// so no search reaches before it). lastFire(i, t) is watch i's last fire
// at or before t.
func seedAll(sb *xsandbox.Server, plan seedPlan, hooks []string, lastFire func(i int, t time.Time) time.Time) (seedStats, error) {
	var st seedStats
	if plan.Watches <= 0 || plan.PerUser <= 0 {
		return st, errors.New("seed: watches and watches per user must be positive")
	}
	users := (plan.Watches + plan.PerUser - 1) / plan.PerUser
	t0 := time.Now()
	st.xids = make([]string, users)
	type toks struct{ access, refresh string }
	tk := make([]toks, users)
	for u := range users {
		xid := xidOf(u)
		st.xids[u] = xid
		if err := sb.AddUser(xsandbox.User{ID: xid, Username: "u" + xid}); err != nil {
			return st, err
		}
		at, rt, err := sb.Grant(xid, nil)
		if err != nil {
			return st, err
		}
		tk[u] = toks{at, rt}
	}
	// Every later post's id is above it.
	mark := sb.Post(xsandbox.Post{AuthorID: st.xids[0], Text: "seeded"})
	st.x = time.Since(t0)

	t1 := time.Now()
	master, err := seal.ParseMasterKey(plan.Master)
	if err != nil {
		return st, err
	}
	db, err := vault.Open(vault.Options{Path: plan.VaultPath, Master: master, Create: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return st, err
	}
	ref := t1.Add(plan.Ahead)
	// The sandbox's tokens live DefaultAccessTokenTTL from now; the vault
	// is told they expire earlier, evenly from 30 s after a skew on, so
	// renewals (due a skew before expiry, made by the user's first run
	// after) run at their steady rate (users per token lifetime) from the
	// daemon's start, instead of all together two hours from now.
	spreadFrom := plan.Skew + 30*time.Second
	spread := xsandbox.DefaultAccessTokenTTL - spreadFrom - time.Minute
	const usersPerTx = 1000
	for b := 0; b < users; b += usersPerTx {
		err := db.Update(func(tx *vault.Tx) error {
			for u := b; u < min(b+usersPerTx, users); u++ {
				xid, uid := st.xids[u], userKey(u)
				frac := float64(hash64(uid)%1_000_000) / 1_000_000
				g := vault.Grant{ID: "g" + xid, UserID: uid, Provider: "x", Subject: xid, Scopes: provider.XScopes,
					State: vault.GrantActive, AccessExpiry: t1.Add(spreadFrom + time.Duration(frac*float64(spread)))}
				if err := tx.PutUser(vault.User{ID: uid}); err != nil {
					return err
				}
				if err := tx.SealTokens(&g, vault.Tokens{Refresh: secret.NewRefreshToken(tk[u].refresh), Access: secret.NewAccessToken(tk[u].access)}); err != nil {
					return err
				}
				if err := tx.PutGrant(g); err != nil {
					return err
				}
				for i := u * plan.PerUser; i < min((u+1)*plan.PerUser, plan.Watches); i++ {
					wid := watchKey(i)
					if err := tx.PutWatch(vault.Watch{ID: wid, UserID: uid, Provider: "x", State: vault.WatchActive,
						WatchSpec: vault.WatchSpec{Hashtags: []string{hashtagOf(i)}, Schedule: plan.Schedule, Targets: []string{hooks[u%len(hooks)]}}}); err != nil {
						return err
					}
					if err := tx.PutCursor(vault.Cursor{WatchID: wid, SinceID: mark, Started: true, LastRunAt: lastFire(i, ref),
						LastResult: vault.RunOK, Runs: 1}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			_ = db.Close()
			return st, err
		}
	}
	if err := db.Close(); err != nil {
		return st, err
	}
	st.vault = time.Since(t1)
	if fi, err := os.Stat(plan.VaultPath); err == nil {
		st.bytes = fi.Size()
	}
	return st, nil
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// seedUsers adds n users to the sandbox (X ids 1000000 on) and, in db,
// each one's user record, an active grant sealed with the tokens the
// sandbox issued, and one watch of its own hashtag ("tag" + its id) on
// schedule, to the console; in transactions of 500 users. It returns the
// users' X ids.
func seedUsers(db *vault.DB, sb *xsandbox.Server, n int, schedule string) ([]string, error) {
	xids := make([]string, n)
	for b := 0; b < n; b += 500 {
		err := db.Update(func(tx *vault.Tx) error {
			for i := b; i < min(b+500, n); i++ {
				xid := strconv.Itoa(1_000_000 + i)
				xids[i] = xid
				if err := sb.AddUser(xsandbox.User{ID: xid, Username: "u" + xid}); err != nil {
					return err
				}
				at, rt, err := sb.Grant(xid, nil)
				if err != nil {
					return err
				}
				uid := "user" + xid
				g := vault.Grant{ID: "g" + xid, UserID: uid, Provider: "x", Subject: xid, Scopes: provider.XScopes,
					State: vault.GrantActive, AccessExpiry: time.Now().Add(2 * time.Hour)}
				if err := tx.PutUser(vault.User{ID: uid}); err != nil {
					return err
				}
				if err := tx.SealTokens(&g, vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken(at)}); err != nil {
					return err
				}
				if err := tx.PutGrant(g); err != nil {
					return err
				}
				if err := tx.PutWatch(vault.Watch{ID: "w" + xid, UserID: uid, Provider: "x", State: vault.WatchActive,
					WatchSpec: vault.WatchSpec{Hashtags: []string{"tag" + xid}, Schedule: schedule, Targets: []string{"console:"}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return xids, nil
}
