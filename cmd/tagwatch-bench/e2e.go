package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
	"tagwatch/worker/xsource"
)

func benchE2E(args []string) error {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	users := fs.Int("users", 10_000, "users, one watch each")
	dur := fs.Duration("dur", 3*time.Minute, "run time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Printf("machine: %s\nload average before: %s\n", machine(), loadavg())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:1/cb"}})
	if err != nil {
		return err
	}
	defer sb.Close()
	// X's app-wide 450 searches per 15 minutes cannot serve 10,000 users a
	// minute; the bench measures tagwatch, so only the per-user limit stays.
	sb.SetRateLimit(xsandbox.EndpointSearch, 300, 0, 15*time.Minute)
	prov, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret("s3cret"), RedirectURL: "http://127.0.0.1:1/cb",
		AuthURL: sb.URL() + "/i/oauth2/authorize", TokenURL: sb.URL() + "/2/oauth2/token", RevokeURL: sb.URL() + "/2/oauth2/revoke",
		APIURL: sb.URL(), Logger: quiet})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tagwatch-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	master, _, _ := seal.NewMasterKey()
	db, err := vault.Open(vault.Options{Path: filepath.Join(dir, "v.db"), Master: master, Create: true, Logger: quiet})
	if err != nil {
		return err
	}
	defer db.Close()
	mgr := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": prov}, PublicURL: "http://127.0.0.1:1", Logger: quiet})

	setup := time.Now()
	xids, err := seedUsers(db, sb, *users, "@every 1m")
	if err != nil {
		return err
	}
	fmt.Printf("setup: %d users, grants and watches in %s\n", *users, time.Since(setup).Round(time.Millisecond))

	var runs, failed, other atomic.Int64
	var perSec sync.Map
	w, err := worker.New(worker.Config{DB: db, Sources: map[string]worker.Source{"x": xsource.New(xapi.New(xapi.Config{BaseURL: prov.APIURL()}))},
		Tokens: func(id string) worker.TokenSource { return mgr.Source(id) }, Workers: 32, PerProviderConcurrency: 64,
		CatchUpWindow: time.Minute, MinInterval: time.Minute, AppRequestsPerWindow: -1, Logger: quiet,
		Observer: func(ev worker.Event) {
			switch ev.Kind {
			case worker.EventRun:
				runs.Add(1)
				s := ev.Time.Unix()
				v, _ := perSec.LoadOrStore(s, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			case worker.EventRunFailed:
				if failed.Add(1) <= 3 {
					fmt.Println("run failed:", ev.Err)
				}
			default:
				other.Add(1)
			}
		}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// One post per watch per minute, spread evenly.
	var pmu sync.Mutex
	postTime := map[string]time.Time{}
	pctx, pcancel := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		next := 0
		perTick := float64(*users) / 600
		acc := 0.0
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			acc += perTick
			for ; acc >= 1; acc-- {
				id := sb.Post(xsandbox.Post{AuthorID: xids[next], Text: "new #tag" + xids[next]})
				pmu.Lock()
				postTime[id] = time.Now()
				pmu.Unlock()
				next = (next + 1) % *users
			}
		}
	}()

	start := time.Now()
	cpu0 := cpuTime()
	var steadyCPU0 time.Duration
	var steadyRuns0 int64
	steadyAt := start.Add(time.Minute + 5*time.Second) // after the first round (catch-up of new watches)
	for time.Now().Before(start.Add(*dur)) {
		time.Sleep(time.Second)
		if steadyCPU0 == 0 && time.Now().After(steadyAt) {
			steadyCPU0, steadyRuns0 = cpuTime(), runs.Load()
		}
	}
	end := time.Now()
	cpu := cpuTime() - cpu0
	steadyCPU := cpuTime() - steadyCPU0
	steadyRuns := runs.Load() - steadyRuns0
	steadyWall := end.Sub(steadyAt)
	pcancel()
	pwg.Wait()
	cancel()
	<-done
	_, peak := rssMiB()

	// Lag from a post's appearance to its outbox row.
	var lags []time.Duration
	queued := map[string]bool{}
	err = db.View(func(tx *vault.Tx) error {
		return tx.Outbox(func(r vault.OutboxRow) error {
			var n vault.Notice
			if err := json.Unmarshal(r.Payload, &n); err != nil {
				return err
			}
			for _, p := range n.Posts {
				if queued[p.ID] {
					return fmt.Errorf("post %s queued twice", p.ID)
				}
				queued[p.ID] = true
				if t, ok := postTime[p.ID]; ok {
					lags = append(lags, r.CreatedAt.Sub(t))
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// Every post made more than 70 s before the end must be queued.
	missing, old := 0, 0
	for id, t := range postTime {
		if end.Sub(t) > 70*time.Second {
			old++
			if !queued[id] {
				missing++
			}
		}
	}
	st := sb.Stats()
	ls := percentiles(lags)
	fmt.Printf("e2e: %d users/watches on @every 1m, %s run (shortened from a long run; first minute is the new watches' first round)\n", *users, end.Sub(start).Round(time.Second))
	fmt.Printf("runs: %d ok, %d failed, %d other events; steady state %.1f runs/s (need %.1f/s)\n",
		runs.Load(), failed.Load(), other.Load(), float64(steadyRuns)/steadyWall.Seconds(), float64(*users)/60)
	fmt.Printf("CPU: %.1f%% of a core over the run, %.1f%% in steady state (sandbox and post generator included)\n",
		100*cpu.Seconds()/end.Sub(start).Seconds(), 100*steadyCPU.Seconds()/steadyWall.Seconds())
	fmt.Printf("RSS peak: %.0f MiB (sandbox included)\n", peak)
	fmt.Printf("posts: %d made, %d queued (each once), %d of %d older than 70 s missing; sandbox posts read %d, 429s %d\n",
		len(postTime), len(queued), missing, old, st.PostsReadTotal, st.RateLimited)
	fmt.Printf("post-to-outbox lag: p50 %s p99 %s max %s (polling every minute bounds it at ~60 s)\n",
		ls.p50.Round(time.Millisecond), ls.p99.Round(time.Millisecond), ls.max.Round(time.Millisecond))
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}
