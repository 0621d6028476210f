package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"tagwatch/notify"
	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xsource"
)

// e2eOpts are the e2e mode's flags.
type e2eOpts struct {
	Watches  int           `json:"watches"`
	PerUser  int           `json:"per_user"`
	Schedule string        `json:"schedule"`
	Hooks    int           `json:"hooks"`
	Warm     time.Duration `json:"warm"`
	Measure  time.Duration `json:"measure"`
	Drain    time.Duration `json:"drain"`
	Lead     time.Duration `json:"lead"`
	Ahead    time.Duration `json:"ahead"`
	Notify   bool          `json:"notify"`
	Workers  int           `json:"workers"`

	// Files to write: profiles of this process's window and load, of the
	// peer's window, the result as JSON; dir holds the vault.
	cpuProfile, memProfile, loadProfile, peerProfile string
	jsonOut, dir                                     string
	quiet                                            bool // no report on stdout (tests)
}

func (o *e2eOpts) flags(fs *flag.FlagSet) {
	fs.IntVar(&o.Watches, "watches", 1_000_000, "watches in all")
	fs.IntVar(&o.PerUser, "per-user", 10, "watches per user (each user has one grant)")
	fs.StringVar(&o.Schedule, "schedule", "@every 1h", "every watch's schedule (an @every schedule)")
	fs.IntVar(&o.Hooks, "hooks", 8, "webhook URLs at the receiver; a user's watches notify one of them")
	fs.DurationVar(&o.Warm, "warm", 20*time.Second, "from the first post to the measured window")
	fs.DurationVar(&o.Measure, "measure", 3*time.Minute, "the measured window")
	fs.DurationVar(&o.Drain, "drain", 2*time.Second, "after the last post's fire, at least this for the last runs and deliveries (then until all are in, a minute at most)")
	fs.DurationVar(&o.Lead, "lead", 2*time.Second, "a post is made this long before its watch's fire")
	fs.DurationVar(&o.Ahead, "ahead", 0, "seeded last runs are each watch's last fire before seeding plus this (0: 30s + 90µs a watch, longer than seeding and the load)")
	fs.BoolVar(&o.Notify, "notify", true, "run the notifier, delivering to the peer's webhook receiver")
	fs.IntVar(&o.Workers, "workers", 0, "scheduler.workers (0: the default)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the measured process's CPU profile of the window here")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the measured process's heap profile at the window's end here")
	fs.StringVar(&o.loadProfile, "loadprofile", "", "write the measured process's CPU profile of the load of the watches here")
	fs.StringVar(&o.peerProfile, "peerprofile", "", "write the peer's CPU profile of the window here")
	fs.StringVar(&o.jsonOut, "json", "", "also write the result as JSON here")
	fs.StringVar(&o.dir, "dir", "", "directory for the vault file (default a new one under $TMPDIR, removed after)")
}

// e2eResult is one run's figures.
type e2eResult struct {
	Opts    e2eOpts `json:"opts"`
	Users   int     `json:"users"`
	Machine string  `json:"machine"`
	// Seeding (the peer) and the daemon's load of the watches.
	SeedX      time.Duration `json:"seed_x"`
	SeedVault  time.Duration `json:"seed_vault"`
	VaultMiB   float64       `json:"vault_mib"`
	Load       time.Duration `json:"load"`
	RSSLoadMiB float64       `json:"rss_load_mib"`
	// The measured window.
	Window      time.Duration `json:"window"`
	Scheduled   float64       `json:"scheduled_per_s"` // fires due per second
	Sustained   float64       `json:"sustained_per_s"` // of those, runs committed per second
	CPU         float64       `json:"cpu"`             // share of one core
	PeerCPU     float64       `json:"peer_cpu"`
	CPUPerRun   time.Duration `json:"cpu_per_run"`
	RSSPeakMiB  float64       `json:"rss_peak_mib"`   // VmHWM over the process's life, load included
	RSSSteadMiB float64       `json:"rss_steady_mib"` // the largest VmRSS seen in the window
	RSSAnonMiB  float64       `json:"rss_anon_mib"`   // of it, anonymous memory (heap, stacks)
	RSSFileMiB  float64       `json:"rss_file_mib"`   // of it, file pages (the vault's memory map)
	RSSGrowMiB  float64       `json:"rss_grow_mib"`   // VmRSS at the window's end minus at its start
	FileGrowMiB float64       `json:"file_grow_mib"`  // of it, the vault's map
	HeapMiB     float64       `json:"heap_mib"`       // live heap at the window's end
	FireLag     lagStats      `json:"fire_lag"`       // due to run start (the engine and the limits)
	DueToRow    lagStats      `json:"due_to_row"`     // due to outbox row: what tagwatch adds
	PostToRow   lagStats      `json:"post_to_row"`    // post made to outbox row
	PostToHook  lagStats      `json:"post_to_hook"`   // post made to webhook received
	// Over the whole run (every post, not only the window's).
	Posts       int `json:"posts"`
	Queued      int `json:"queued"`
	Missed      int `json:"missed"`
	Duplicated  int `json:"duplicated"`
	Delivered   int `json:"delivered"`
	DeliverDups int `json:"deliver_dups"`
	Undelivered int `json:"undelivered"`
	BadSigs     int `json:"bad_sigs"`
	PostLate    int `json:"post_late"` // made at or after their fire: its run cannot see them
	Runs        int `json:"runs"`
	Failed      int `json:"failed"`
	CatchUps    int `json:"catch_ups"`
	Other       int `json:"other"`
	Searches    int `json:"searches"`
	Refreshes   int `json:"refreshes"`
	Limited     int `json:"limited"`
	Unauth      int `json:"unauth"`
	Renewals    int `json:"renewals"`
}

// MarshalJSON writes l as [p50, p99, max] in nanoseconds (the sweep's
// results).
func (l lagStats) MarshalJSON() ([]byte, error) {
	return json.Marshal([3]time.Duration{l.p50, l.p99, l.max})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (l *lagStats) UnmarshalJSON(b []byte) error {
	var v [3]time.Duration
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	l.p50, l.p99, l.max = v[0], v[1], v[2]
	return nil
}

func benchE2E(args []string) error {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	var o e2eOpts
	o.flags(fs)
	sweep := fs.String("sweep", "", "comma-separated watch counts: run the bench once per count, each in a process of its own, and write a table and a chart")
	chart := fs.String("chart", "e2e-sweep.png", "with -sweep: the chart's PNG file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sweep != "" {
		return runSweep(args, *sweep, *chart)
	}
	res, err := runE2E(o)
	if err != nil {
		return err
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if res.Missed > 0 || res.Duplicated > 0 {
		return fmt.Errorf("%d posts missed, %d duplicated", res.Missed, res.Duplicated)
	}
	return nil
}

// peerConn is the bench's end of the peer's pipes.
type peerConn struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	enc *json.Encoder
	dec *json.Decoder
}

// startPeer runs this program again as the peer (e2epeer.go).
func startPeer() (*peerConn, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, peerMode)
	cmd.Env = append(os.Environ(), peerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &peerConn{cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(out)}, nil
}

func (p *peerConn) call(req peerRequest) (peerReply, error) {
	var rep peerReply
	if err := p.enc.Encode(req); err != nil {
		return rep, fmt.Errorf("peer %s: %w", req.Op, err)
	}
	if err := p.dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("peer %s: %w", req.Op, err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("peer %s: %s", req.Op, rep.Err)
	}
	return rep, nil
}

func (p *peerConn) close() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// limitedHandler passes the first n records to h and counts the rest.
type limitedHandler struct {
	slog.Handler
	n, seen *atomic.Int64
}

func (h limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.seen.Add(1) > h.n.Load() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h limitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return limitedHandler{h.Handler.WithAttrs(as), h.n, h.seen}
}

func (h limitedHandler) WithGroup(g string) slog.Handler {
	return limitedHandler{h.Handler.WithGroup(g), h.n, h.seen}
}

// runE2E seeds through the peer, runs the daemon's parts in this process
// against the peer's sandbox and receiver, measures a window, and checks
// every post the peer made against the outbox and the deliveries.
func runE2E(o e2eOpts) (*e2eResult, error) {
	if o.Watches <= 0 || o.PerUser <= 0 {
		return nil, errors.New("e2e: -watches and -per-user must be positive")
	}
	if o.Watches < o.PerUser {
		return nil, fmt.Errorf("e2e: -watches %d is fewer than -per-user %d: no user would have a watch", o.Watches, o.PerUser)
	}
	every, err := everyOf(o.Schedule)
	if err != nil {
		return nil, err
	}
	if o.Ahead <= 0 {
		o.Ahead = 30*time.Second + time.Duration(o.Watches)*90*time.Microsecond
	}
	res := &e2eResult{Opts: o, Users: (o.Watches + o.PerUser - 1) / o.PerUser, Machine: machine()}
	say := func(format string, a ...any) {
		if !o.quiet {
			fmt.Printf(format, a...)
		}
	}
	say("machine: %s\nload average before: %s\n", res.Machine, loadavg())
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tagwatch-e2e"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	vaultPath := filepath.Join(dir, fmt.Sprintf("e2e-%d.db", o.Watches))
	_ = os.Remove(vaultPath)
	master, raw, err := seal.NewMasterKey()
	if err != nil {
		return nil, err
	}
	hk := make([]byte, 32)
	_, _ = rand.Read(hk)
	whsec := "whsec_" + base64.StdEncoding.EncodeToString(hk)
	const skew = time.Minute

	peer, err := startPeer()
	if err != nil {
		return nil, err
	}
	defer peer.close()
	tSeed := time.Now()
	seeded, err := peer.call(peerRequest{Op: "seed", Plan: seedPlan{Watches: o.Watches, PerUser: o.PerUser, Schedule: o.Schedule,
		Hooks: o.Hooks, HookSecret: whsec, VaultPath: vaultPath, Master: raw, Ahead: o.Ahead, Skew: skew}})
	if err != nil {
		return nil, err
	}
	res.SeedX, res.SeedVault, res.VaultMiB = seeded.SeedX, seeded.SeedVault, float64(seeded.VaultBytes)/(1<<20)
	say("seeding (in the peer, not measured): %d users and grants in the sandbox in %s; vault of %d users, grants and %d watches in %s (%.0f MiB)\n",
		res.Users, res.SeedX.Round(time.Millisecond), res.Users, o.Watches, res.SeedVault.Round(time.Millisecond), res.VaultMiB)

	// The daemon's parts, wired as cmd/tagwatchd wires them.
	var logSeen, logMax atomic.Int64
	logMax.Store(20)
	logger := slog.New(limitedHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), &logMax, &logSeen})
	db, err := vault.Open(vault.Options{Path: vaultPath, Master: master, Logger: logger})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	sbURL := seeded.SandboxURL
	prov, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: benchClientID,
		ClientSecret: secret.NewClientSecret(benchClientSecret), RedirectURL: "http://127.0.0.1:1/cb",
		AuthURL: sbURL + "/i/oauth2/authorize", TokenURL: sbURL + "/2/oauth2/token", RevokeURL: sbURL + "/2/oauth2/revoke",
		APIURL: sbURL, Logger: slog.New(slog.DiscardHandler)}) // it warns of plain http on loopback: known
	if err != nil {
		return nil, err
	}
	var renewals, delivered, rows, matches atomic.Int64
	mgr := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": prov}, Skew: skew, PublicURL: "http://127.0.0.1:1",
		Logger: logger, Observer: func(ev renew.Event) {
			if ev.Kind == renew.EventRenewed {
				renewals.Add(1)
			}
		}})
	var hooks []notify.WebhookSecret
	for _, u := range seeded.HookURLs {
		hooks = append(hooks, notify.WebhookSecret{URL: u, Secret: secret.New(whsec)})
	}
	cc := notify.ChannelsConfig{AllowPrivateTargets: true, Webhooks: hooks}
	var targets worker.Targets
	var ns *notify.Service
	if o.Notify {
		ns, err = notify.New(notify.Config{Outbox: db, PublicURL: "http://127.0.0.1:1", LinkKey: master.Derive("tagwatch one-click links"),
			Channels: cc, Console: io.Discard, Logger: logger, Observer: func(ev notify.Event) {
				if ev.Kind == notify.EventDelivered {
					delivered.Add(1)
				}
			}})
		if err != nil {
			return nil, err
		}
		targets = ns
	} else if targets, err = notify.NewTargetChecker(cc); err != nil {
		return nil, err
	}
	minInterval := time.Duration(0) // the daemon's default
	if every < worker.DefaultMinInterval {
		minInterval = -1
	}
	db.SetRules(worker.Rules{Sources: map[string]worker.Source{"x": xsource.New(nil)}, Targets: targets, MinInterval: minInterval})

	var (
		inWindow, stopping     atomic.Bool
		winStart, winEnd       atomic.Int64
		runs, failed, catchUps atomic.Int64
		other, winRuns         atomic.Int64
		lagMu                  sync.Mutex
		fireLags               []time.Duration
	)
	w, err := worker.New(worker.Config{DB: db,
		Sources: map[string]worker.Source{"x": xsource.New(xapi.New(xapi.Config{BaseURL: prov.APIURL()}))},
		Tokens:  func(id string) worker.TokenSource { return mgr.Source(id) }, Workers: o.Workers,
		MinInterval: minInterval, AppRequestsPerWindow: -1, Logger: logger,
		Observer: func(ev worker.Event) {
			if ev.Rows > 0 && ns != nil {
				ns.Kick()
			}
			if ev.Reason == "catch_up" {
				catchUps.Add(1)
			}
			switch ev.Kind {
			case worker.EventRun:
				runs.Add(1)
				rows.Add(int64(ev.Rows))
				matches.Add(int64(ev.Matches))
				due := ev.Time.Add(-ev.Lag).UnixNano()
				if due >= winStart.Load() && due < winEnd.Load() {
					winRuns.Add(1)
				}
				if inWindow.Load() {
					lagMu.Lock()
					fireLags = append(fireLags, ev.Lag)
					lagMu.Unlock()
				}
			case worker.EventRunFailed:
				if stopping.Load() {
					break // cancelled by the stop
				}
				if failed.Add(1) <= 3 {
					fmt.Fprintln(os.Stderr, "run failed:", ev.Err)
				}
			default:
				other.Add(1)
			}
		}})
	if err != nil {
		return nil, err
	}
	winStart.Store(1<<63 - 1)
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopping.Store(true)
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	defer stop() // before db.Close: deferred later, runs first
	loadStart := time.Now()
	var lprof *os.File
	if o.loadProfile != "" {
		if lprof, err = os.Create(o.loadProfile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(lprof); err != nil {
			return nil, err
		}
	}
	g.Go(func() error {
		if err := mgr.FollowInvalidations(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	g.Go(func() error { return mgr.Run(gctx) })
	if ns != nil {
		g.Go(func() error { return ns.Run(gctx) })
	}
	g.Go(func() error { return w.Run(gctx) })
	for w.Engine().Stats().Entries < o.Watches {
		if gctx.Err() != nil {
			return nil, fmt.Errorf("e2e: the daemon stopped while loading: %w", stop())
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Load = time.Since(loadStart)
	if lprof != nil {
		pprof.StopCPUProfile()
		_ = lprof.Close()
	}
	res.RSSLoadMiB, _ = rssMiB()
	say("load: %d watches scheduled in %s (RSS %.0f MiB)\n", o.Watches, res.Load.Round(time.Millisecond), res.RSSLoadMiB)
	if time.Since(tSeed) > o.Ahead {
		say("warning: seeding and the load took longer than -ahead (%s): watches due meanwhile catch up\n", o.Ahead)
	}

	// Posting: one post per fire from now, lead before it.
	from := time.Now()
	mStart := from.Add(o.Warm)
	mEnd := mStart.Add(o.Measure)
	planned, err := peer.call(peerRequest{Op: "post", From: from, Until: mEnd, Lead: o.Lead})
	if err != nil {
		return nil, err
	}
	say("posting: %d posts planned, one %s before each fire due until the window's end\n", planned.Planned, o.Lead)
	winStart.Store(mStart.UnixNano())
	winEnd.Store(mEnd.UnixNano())

	time.Sleep(time.Until(mStart))
	var prof *os.File
	if o.cpuProfile != "" {
		if prof, err = os.Create(o.cpuProfile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			return nil, err
		}
	}
	pm0, err := peer.call(peerRequest{Op: "mark", Action: "start", Profile: o.peerProfile})
	if err != nil {
		return nil, err
	}
	cpu0, t0 := cpuTime(), time.Now()
	inWindow.Store(true)
	rss0, _ := rssMiB()
	_, file0 := rssSplit()
	var rssMax, rss1, file1 float64
	for time.Now().Before(mEnd) {
		time.Sleep(min(time.Second, time.Until(mEnd)))
		rss1, _ = rssMiB()
		_, file1 = rssSplit()
		if rss1 > rssMax {
			rssMax = rss1
			res.RSSAnonMiB, res.RSSFileMiB = rssSplit()
		}
	}
	res.RSSGrowMiB, res.FileGrowMiB = rss1-rss0, file1-file0
	inWindow.Store(false)
	cpu1, t1 := cpuTime(), time.Now()
	pm1, err := peer.call(peerRequest{Op: "mark", Action: "stop"})
	if err != nil {
		return nil, err
	}
	if prof != nil {
		pprof.StopCPUProfile()
		_ = prof.Close()
	}
	res.Window = t1.Sub(t0)
	res.CPU = (cpu1 - cpu0).Seconds() / res.Window.Seconds()
	res.PeerCPU = (pm1.CPU - pm0.CPU).Seconds() / res.Window.Seconds()
	res.RSSSteadMiB = rssMax
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return nil, err
		}
		runtime.GC()
		_ = pprof.WriteHeapProfile(f)
		_ = f.Close()
	}

	// The last fires' runs and deliveries: at least Lead+Drain, and until
	// every planned post is queued and every row delivered (a minute more
	// at most: a post still missing then is missed).
	time.Sleep(o.Lead + o.Drain)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if matches.Load() >= int64(planned.Planned) && (ns == nil || delivered.Load() >= rows.Load()) {
			break
		}
	}
	_, res.RSSPeakMiB = rssMiB()
	if err := stop(); err != nil {
		return nil, err
	}
	fin, err := peer.call(peerRequest{Op: "finish"})
	if err != nil {
		return nil, err
	}
	res.Runs, res.Failed, res.CatchUps, res.Other = int(runs.Load()), int(failed.Load()), int(catchUps.Load()), int(other.Load())
	res.Renewals = int(renewals.Load())
	res.Sustained = float64(winRuns.Load()) / mEnd.Sub(mStart).Seconds()
	res.Searches, res.Refreshes, res.Limited, res.Unauth = fin.Searches, fin.Refreshes, fin.Limited, fin.Unauth
	res.BadSigs, res.PostLate = fin.BadSigs, fin.PostLate
	res.FireLag = percentiles(fireLags)
	if res.CPUPerRun = 0; winRuns.Load() > 0 {
		res.CPUPerRun = time.Duration(float64(cpu1-cpu0) / float64(winRuns.Load()))
	}
	if err := check(db, res, fin, mStart, mEnd); err != nil {
		return nil, err
	}
	if !o.quiet {
		res.print()
	}
	return res, nil
}

// check reads the outbox and the peer's ledger and deliveries: every post
// queued exactly once, delivered, and the lags of the posts whose fire was
// in the window.
func check(db *vault.DB, res *e2eResult, fin peerReply, mStart, mEnd time.Time) error {
	rowAt := make(map[int64]time.Time, len(fin.Posts))
	count := make(map[int64]int, len(fin.Posts))
	err := db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			if r.Kind != vault.NoticeMatch {
				return nil
			}
			var n vault.Notice
			if err := json.Unmarshal(r.Payload, &n); err != nil {
				return err
			}
			for _, p := range n.Posts {
				var id int64
				if _, err := fmt.Sscan(p.ID, &id); err != nil {
					return err
				}
				count[id]++
				if t, ok := rowAt[id]; !ok || r.CreatedAt.Before(t) {
					rowAt[id] = r.CreatedAt
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	got := make(map[int64]int64, len(fin.Deliveries)) // post -> first received
	dnum := make(map[int64]int64, len(fin.Deliveries))
	for _, d := range fin.Deliveries {
		if n, ok := dnum[d[0]]; ok && n != d[2] {
			res.DeliverDups++
		}
		dnum[d[0]] = d[2]
		if t, ok := got[d[0]]; !ok || d[1] < t {
			got[d[0]] = d[1]
		}
	}
	var toRow, dueRow, toHook []time.Duration
	scheduled := 0
	res.Posts = len(fin.Posts)
	for _, p := range fin.Posts {
		id, made, fire := p[0], time.Unix(0, p[2]), time.Unix(0, p[3])
		n := count[id]
		switch {
		case n == 0:
			res.Missed++
		case n > 1:
			res.Duplicated++
		}
		if n > 0 {
			res.Queued++
		}
		recv, delivered := got[id]
		if delivered {
			res.Delivered++
		} else if n > 0 && res.Opts.Notify {
			res.Undelivered++
		}
		if fire.Before(mStart) || !fire.Before(mEnd) {
			continue
		}
		scheduled++
		if n > 0 {
			toRow = append(toRow, rowAt[id].Sub(made))
			dueRow = append(dueRow, rowAt[id].Sub(fire))
		}
		if delivered {
			toHook = append(toHook, time.Unix(0, recv).Sub(made))
		}
	}
	w := mEnd.Sub(mStart).Seconds()
	res.Scheduled = float64(scheduled) / w
	res.PostToRow, res.DueToRow, res.PostToHook = percentiles(toRow), percentiles(dueRow), percentiles(toHook)
	return nil
}

func (r *e2eResult) print() {
	o := r.Opts
	fmt.Printf("e2e: %d watches (%d users x %d) on %s; window %s after a warm-up of %s\n", o.Watches, r.Users, o.PerUser, o.Schedule,
		r.Window.Round(time.Second), o.Warm)
	fmt.Printf("runs: %.1f/s scheduled, %.1f/s run (of those due in the window); %d runs in all, %d failed, %d catch-up, %d other events\n",
		r.Scheduled, r.Sustained, r.Runs, r.Failed, r.CatchUps, r.Other)
	fmt.Printf("CPU of the daemon's process: %.1f%% of a core (%s per run); the peer (sandbox, posts, receiver): %.1f%%\n",
		100*r.CPU, r.CPUPerRun.Round(time.Microsecond), 100*r.PeerCPU)
	fmt.Printf("RSS of the daemon's process: %.0f MiB at most in the window (%.0f anonymous, %.0f of the vault file's map), %.0f MiB peak over its life (after the load: %.0f MiB); heap %.0f MiB\n",
		r.RSSSteadMiB, r.RSSAnonMiB, r.RSSFileMiB, r.RSSPeakMiB, r.RSSLoadMiB, r.HeapMiB)
	fmt.Printf("RSS over the window: %+.0f MiB (the vault's map %+.0f MiB: outbox rows and seen posts written)\n", r.RSSGrowMiB, r.FileGrowMiB)
	fmt.Printf("fire lag (due to run start): p50 %s p99 %s max %s\n", r.FireLag.p50, r.FireLag.p99, r.FireLag.max)
	fmt.Printf("due to outbox row (what tagwatch adds): p50 %s p99 %s max %s\n", r.DueToRow.p50, r.DueToRow.p99, r.DueToRow.max)
	fmt.Printf("post to outbox row (post made %s before its fire): p50 %s p99 %s max %s\n", o.Lead, r.PostToRow.p50, r.PostToRow.p99, r.PostToRow.max)
	if o.Notify {
		fmt.Printf("post to webhook received: p50 %s p99 %s max %s\n", r.PostToHook.p50, r.PostToHook.p99, r.PostToHook.max)
	}
	fmt.Printf("posts: %d made, %d queued, %d missed, %d duplicated; %d delivered, %d delivered twice, %d undelivered, %d bad signatures; %d made too late for their fire\n",
		r.Posts, r.Queued, r.Missed, r.Duplicated, r.Delivered, r.DeliverDups, r.Undelivered, r.BadSigs, r.PostLate)
	fmt.Printf("sandbox: %d searches, %d refreshes (%d renewals here), %d 429s, %d 401s\n", r.Searches, r.Refreshes, r.Renewals, r.Limited, r.Unauth)
	fmt.Printf("load average after: %s\n", loadavg())
}
