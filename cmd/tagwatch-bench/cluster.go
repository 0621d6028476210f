package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/pgtest"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
	"tagwatch/worker/xsource"
)

// benchCluster measures end-to-end runs/s of daemons sharing one
// PostgreSQL database: for each count in -daemons, a fresh database with
// -users users (grant and one watch each, on -every), that many daemons
// (each its own engine, vault, renewal and worker, sharing runs by
// claims) against one X sandbox, for -dur. Offered load is users/every
// runs/s: more than the machine can run, so the figure is the most the
// daemons achieve. The daemons share this process and its cores: on a
// machine of two cores, more daemons cannot add CPU, and the figure is
// what claiming costs, not what more machines would add.
func benchCluster(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	users := fs.Int("users", 1500, "users, one watch each")
	every := fs.Duration("every", 2*time.Second, "each watch's schedule (@every)")
	dur := fs.Duration("dur", 40*time.Second, "run time per daemon count, after a warm-up of one period")
	counts := fs.String("daemons", "1,3", "daemon counts to run, in order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ns []int
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-daemons: %q is not a positive count", f)
		}
		ns = append(ns, n)
	}
	bin, err := pgtest.FindBin()
	if err != nil {
		return err
	}
	pg, stop, err := pgtest.Launch(bin)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("machine: %s\nload average before: %s\n", machine(), loadavg())
	fmt.Printf("offered: %d watches @every %s = %.0f runs/s\n", *users, *every, float64(*users)/every.Seconds())
	var base float64
	for i, n := range ns {
		rate, err := clusterRound(pg, n, *users, *every, *dur)
		if err != nil {
			return err
		}
		if i == 0 {
			base = rate
		}
		fmt.Printf("ratio %d daemons / %d: %.2f\n", n, ns[0], rate/base)
	}
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}

// clusterRound runs n daemons on a fresh database and returns their
// steady runs/s.
func clusterRound(pg *pgtest.Cluster, n, users int, every, dur time.Duration) (float64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	name, err := pg.NewDB(ctx)
	if err != nil {
		return 0, err
	}
	dsn := pg.DSN(name)
	sb, err := xsandbox.Start(xsandbox.Config{ClientID: "tagwatch", ClientSecret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:1/cb"}})
	if err != nil {
		return 0, err
	}
	defer sb.Close()
	sb.SetRateLimit(xsandbox.EndpointSearch, 1_000_000, 0, 15*time.Minute)
	prov, err := provider.New(ctx, provider.Config{Name: "x", Kind: provider.KindX, ClientID: "tagwatch",
		ClientSecret: secret.NewClientSecret("s3cret"), RedirectURL: "http://127.0.0.1:1/cb",
		AuthURL: sb.URL() + "/i/oauth2/authorize", TokenURL: sb.URL() + "/2/oauth2/token", RevokeURL: sb.URL() + "/2/oauth2/revoke",
		APIURL: sb.URL(), Logger: quiet})
	if err != nil {
		return 0, err
	}
	master, _, err := seal.NewMasterKey()
	if err != nil {
		return 0, err
	}
	dbs := make([]*vault.DB, n)
	for i := range dbs {
		e, err := pgkv.Open(ctx, pgkv.Options{DSN: dsn})
		if err != nil {
			return 0, err
		}
		if dbs[i], err = vault.Open(vault.Options{Engine: e, Master: master, Create: true, Logger: quiet,
			Holder: fmt.Sprintf("bench-%d", i), Lease: 10 * time.Second}); err != nil {
			return 0, err
		}
		defer dbs[i].Close()
	}
	if _, err := seedUsers(dbs[0], sb, users, "@every "+every.String()); err != nil {
		return 0, err
	}
	var runs, failed, elsewhere atomic.Int64
	done := make(chan error, n)
	for _, db := range dbs {
		mgr := renew.New(renew.Config{DB: db, Providers: map[string]renew.Provider{"x": prov}, PublicURL: "http://127.0.0.1:1", Logger: quiet})
		w, err := worker.New(worker.Config{DB: db, Sources: map[string]worker.Source{"x": xsource.New(xapi.New(xapi.Config{BaseURL: prov.APIURL()}))},
			Tokens: func(id string) worker.TokenSource { return mgr.Source(id) }, Workers: 32, PerProviderConcurrency: 64,
			CatchUpWindow: every, MinInterval: time.Second, AppRequestsPerWindow: -1, Logger: quiet,
			Claims: db.Cluster(), Holder: db.Holder(), Lease: db.Lease(),
			Observer: func(ev worker.Event) {
				switch ev.Kind {
				case worker.EventRun:
					runs.Add(1)
				case worker.EventRunFailed:
					if failed.Add(1) <= 3 && ctx.Err() == nil {
						fmt.Println("run failed:", ev.Err)
					}
				case worker.EventClaimedElsewhere:
					elsewhere.Add(1)
				}
			}})
		if err != nil {
			return 0, err
		}
		go func() { done <- w.Run(ctx) }()
	}
	time.Sleep(every + time.Second) // the catch-up round
	r0, f0, c0, p0, t0 := runs.Load(), failed.Load(), cpuTime(), postgresCPU(), time.Now()
	time.Sleep(dur)
	r1, f1, c1, p1, t1 := runs.Load(), failed.Load(), cpuTime(), postgresCPU(), time.Now()
	cancel()
	for range dbs {
		<-done
	}
	wall := t1.Sub(t0).Seconds()
	rate := float64(r1-r0) / wall
	fmt.Printf("%d daemon(s): %.0f runs/s; CPU: daemons and sandbox %.0f%% of a core, PostgreSQL %.0f%%; %d runs failed, %d fires claimed by another daemon\n",
		n, rate, 100*(c1-c0).Seconds()/wall, 100*(p1-p0).Seconds()/wall, f1-f0, elsewhere.Load())
	return rate, nil
}

// postgresCPU is the CPU time (user+system) of every postgres process
// on the machine now, read from /proc (clock ticks of 1/100 s, Linux's
// USER_HZ); processes that ended meanwhile are not counted, so compare
// two readings of one cluster's lifetime only.
func postgresCPU() time.Duration {
	var total time.Duration
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "postgres" {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}
