// Command tagwatch-bench measures tagwatch's watch engine and worker.
//
//	go run ./cmd/tagwatch-bench sched [-watches 1000000] [-rate 5000] [-dur 20s] [-engines ours,robfig,robfig-phase] [-robfig-sizes ...] [-alloc 0] [-resolution 0] [-cpuprofile f] [-trace f]
//	go run ./cmd/tagwatch-bench e2e   [-watches 1000000] [-per-user 10] [-schedule '@every 1h'] [-measure 3m] [-cpuprofile f] [-memprofile f]
//	go run ./cmd/tagwatch-bench e2e   -sweep 10000,100000,1000000 [-chart e2e-sweep.png] [other e2e flags]
//	go run ./cmd/tagwatch-bench cluster [-users 1500] [-daemons 1,3]
//
// sched: our engine (worker/sched) against robfig/cron/v3 as it is
// (`@every`) and with per-entry phases (a custom cron.Schedule), each in a
// process of its own, with the same entries (1,000,000) and fire rate
// (5,000/s) and the same job: CPU per fire (getrusage), fire lag
// p50/p99/max, missed fires, bytes per watch; a robfig variant that cannot
// keep up is measured again at smaller sizes (sched.go, sched_child.go).
//
// e2e: what the daemon runs for its watches (the worker with the sched
// engine, renewal, the notifier, the vault on a bbolt file) in this
// process, against a peer process (this program again, in a hidden mode:
// e2epeer.go) holding the X sandbox, the post generator and a webhook
// receiver, so this process's CPU and RSS are the daemon's own. The peer
// seeds users, grants, watches and cursors (seed.go) before anything is
// measured; each watch then gets one post shortly (-lead) before each of
// its fires. Reported: runs/s run against runs/s due, CPU share of a core
// and RSS of the daemon's process in the window, the lag from a watch's
// fire (and from its post) to its outbox row and to the webhook, and
// every post checked: queued exactly once, delivered. X's app-wide
// request window and the worker's fair share of it are off (a million
// watches need far more than 450 searches per 15 minutes); the per-user
// window stays while the schedule keeps within it. With -sweep it runs
// once per watch count, each in a process of its own (sweep.go), and
// writes a table and a chart of CPU, RSS and p99 lag against watches.
//
// cluster: daemons sharing one PostgreSQL database (cluster.go).
//
// It lives under cmd/ because it wires packages the way the daemon does
// (renewal into the worker), which nothing under worker/ may.
package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(peerEnv) == "1" {
		os.Exit(peerMain())
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tagwatch-bench sched|e2e|cluster [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "sched":
		err = benchSched(os.Args[2:])
	case "e2e":
		err = benchE2E(os.Args[2:])
	case "cluster":
		err = benchCluster(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagwatch-bench:", err)
		os.Exit(1)
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func rssMiB() (cur, peak float64) {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(l, "VmRSS: %f kB", &kb); err == nil {
			cur = kb / 1024
		}
		if _, err := fmt.Sscanf(l, "VmHWM: %f kB", &kb); err == nil {
			peak = kb / 1024
		}
	}
	return
}

// rssSplit returns the resident set's anonymous memory (the heap,
// stacks) and its file pages (bbolt's memory map of the vault file), in
// MiB.
func rssSplit() (anon, file float64) {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(l, "RssAnon: %f kB", &kb); err == nil {
			anon = kb / 1024
		}
		if _, err := fmt.Sscanf(l, "RssFile: %f kB", &kb); err == nil {
			file = kb / 1024
		}
	}
	return
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

type lagStats struct{ p50, p99, max time.Duration }

func percentiles(lags []time.Duration) lagStats {
	if len(lags) == 0 {
		return lagStats{}
	}
	slices.Sort(lags)
	at := func(q float64) time.Duration { return lags[min(len(lags)-1, int(q*float64(len(lags))))] }
	return lagStats{at(0.50), at(0.99), lags[len(lags)-1]}
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s, GOMAXPROCS %d", model, runtime.NumCPU(), runtime.Version(), runtime.GOMAXPROCS(0))
}
