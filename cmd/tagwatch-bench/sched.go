package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// benchSched compares the watch engine (worker/sched) with robfig/cron/v3
// at the same entry count and fire rate, each engine in a child process of
// its own (this program re-executed with -child) so its CPU (getrusage),
// heap and GC are its own:
//
//   - ours: sched.Engine, `@every period` with its per-entry phases, the
//     daemon's defaults (32 workers, 1 run per user at once);
//   - robfig: robfig/cron/v3 as it is, `@every period` (whole seconds: every
//     entry of a second fires in one burst), each entry on its own second,
//     as entries added over time are;
//   - robfig-phase: robfig/cron/v3 with a cron.Schedule whose Next adds the
//     entry's phase, as ours has (the fair comparison): every due entry on
//     its own time, so robfig's loop wakes for each and sorts every entry.
//
// The job is the same cheap function for every engine (sched_child.go).
// When a robfig variant cannot keep up at -watches (a fire missed, or lag
// past -keep-up), it runs again at each of -robfig-sizes, largest first, at
// the same fire rate, until it keeps up.
func benchSched(args []string) error {
	fs := flag.NewFlagSet("sched", flag.ContinueOnError)
	o := schedOpts{}
	fs.IntVar(&o.watches, "watches", 1_000_000, "entries in each engine")
	fs.Float64Var(&o.rate, "rate", 5000, "fires per second (each entry's period is watches/rate)")
	fs.DurationVar(&o.dur, "dur", 20*time.Second, "measured window for each engine")
	fs.DurationVar(&o.warm, "warm", 5*time.Second, "run time before the window")
	fs.DurationVar(&o.grace, "grace", 2*time.Second, "time after the window for late fires before a due fire counts as missed")
	engines := fs.String("engines", "ours,robfig,robfig-phase", "engines to run, comma-separated")
	sizes := fs.String("robfig-sizes", "300000,100000,30000,10000,3000", "smaller sizes (same fire rate) for a robfig variant that cannot keep up at -watches")
	keepUp := fs.Duration("keep-up", time.Second, "a robfig variant keeps up when it misses no fire, its max lag stays under this and it takes under 90% of a core")
	fs.IntVar(&o.alloc, "alloc", 0, "bytes each fire's job allocates (garbage, as a daemon's runs make), so collections run in the window")
	fs.DurationVar(&o.resolution, "resolution", 0, "ours: sched.Config.Resolution (0: its default)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of ours' window to this file")
	fs.StringVar(&o.traceFile, "trace", "", "write an execution trace of ours' window to this file")
	child := fs.String("child", "", "internal: run one engine in this process and print its result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if *child != "" {
		return schedChild(*child, o)
	}
	var fallback []int
	for _, s := range strings.Split(*sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("sched: -robfig-sizes: %q is not a positive entry count", s)
		}
		fallback = append(fallback, n)
	}
	fmt.Printf("machine: %s\nload average before: %s\n", machine(), loadavg())
	fmt.Printf("%d entries at %.0f fires/s (each on `@every %s`), window %s after %s, each engine in its own process; the job allocates %d bytes\n",
		o.watches, o.rate, o.period(o.watches), o.dur, o.warm, o.alloc)
	var ours *schedResult
	theirs := map[string][]*schedResult{} // at -watches, then at the size it keeps up with
	for _, name := range strings.Split(*engines, ",") {
		name = strings.TrimSpace(name)
		r, err := runSchedChild(name, o, o.watches)
		if err != nil {
			return err
		}
		r.print()
		if name == "ours" {
			ours = r
			continue
		}
		theirs[name] = []*schedResult{r}
		if r.keepsUp(*keepUp) {
			continue
		}
		fmt.Printf("  %s does not keep up at %d entries (missed %d, max lag %s, %.0f%% of a core); the same rate with fewer entries:\n",
			name, r.Entries, r.Missed, time.Duration(r.Max), 100*float64(r.CPUNs)/float64(r.WallNs))
		for _, n := range fallback {
			if n >= o.watches {
				continue
			}
			small, err := runSchedChild(name, o, n)
			if err != nil {
				return err
			}
			small.print()
			if small.keepsUp(*keepUp) {
				fmt.Printf("  %s keeps up at %d entries\n", name, n)
				theirs[name] = append(theirs[name], small)
				break
			}
		}
	}
	if ours != nil {
		for _, name := range []string{"robfig", "robfig-phase"} {
			for _, r := range theirs[name] {
				fmt.Printf("ours (%d) vs %s (%d): CPU per fire %.3fx (ours/theirs: below 1, ours is cheaper), p99 lag %.3fx, max lag %.3fx, bytes per watch %.2fx\n",
					ours.Entries, name, r.Entries, ours.cpuPerFire()/r.cpuPerFire(), float64(ours.P99)/float64(max(r.P99, 1)),
					float64(ours.Max)/float64(max(r.Max, 1)), ours.BytesPerEntry/r.BytesPerEntry)
			}
		}
		ok := func(b bool) string {
			if b {
				return "met"
			}
			return "NOT met"
		}
		cheaper, compared := true, 0
		for _, name := range []string{"robfig", "robfig-phase"} {
			if rs := theirs[name]; len(rs) > 0 && rs[0].Entries == ours.Entries {
				compared++
				if ours.cpuPerFire() > rs[0].cpuPerFire() {
					cheaper = false
				}
			}
		}
		cpuGoal := ok(cheaper)
		if compared == 0 {
			cpuGoal = "not measured (no robfig engine ran)"
		}
		fmt.Printf("goals for ours at %d: CPU per fire <= robfig's at the same size: %s; p99 %s (goal < 5ms): %s; max %s (goal < 50ms): %s; missed %d (goal 0): %s; %.0f B per watch (goal <= 160): %s\n",
			ours.Entries, cpuGoal, rd(ours.P99), ok(time.Duration(ours.P99) < 5*time.Millisecond), rd(ours.Max),
			ok(time.Duration(ours.Max) < 50*time.Millisecond), ours.Missed, ok(ours.Missed == 0), ours.BytesPerEntry, ok(ours.BytesPerEntry <= 160))
	}
	fmt.Printf("load average after: %s (figures measured under another load, above ~1 on 2 cores, are not comparable)\n", loadavg())
	return nil
}

// check refuses options the measurement cannot run with, naming the flag.
func (o schedOpts) check() error {
	switch {
	case o.watches <= 0:
		return fmt.Errorf("sched: -watches %d: want a positive entry count", o.watches)
	case !(o.rate > 0) || o.rate > 1e6:
		return fmt.Errorf("sched: -rate %v: want fires per second above 0 and at most 1,000,000", o.rate)
	case o.dur <= 0 || o.warm < 0 || o.grace < 0:
		return fmt.Errorf("sched: -dur %s, -warm %s, -grace %s: want a positive window and no negative time", o.dur, o.warm, o.grace)
	case o.alloc < 0 || o.resolution < 0:
		return fmt.Errorf("sched: -alloc %d, -resolution %s: want neither negative", o.alloc, o.resolution)
	}
	return nil
}

type schedOpts struct {
	watches               int
	rate                  float64
	dur, warm, grace      time.Duration
	resolution            time.Duration
	alloc                 int
	cpuProfile, traceFile string
}

// period is each entry's interval for n entries at the fire rate, in whole
// seconds (robfig's @every has no finer grain).
func (o schedOpts) period(n int) time.Duration {
	return max(time.Second, time.Duration(float64(n)/o.rate)*time.Second)
}

// schedResult is one engine's run, printed by the child as JSON.
type schedResult struct {
	Engine        string
	Entries       int
	PeriodSec     float64
	Fires         int64 // run in the window
	WallNs        int64
	CPUNs         int64 // getrusage, whole process, over the window
	GCCPUNs       int64 // of CPUNs, the garbage collector's (runtime/metrics)
	GCs           uint32
	P50, P99, Max int64 // lag ns, fires due in the window
	P99FirstHalf  int64
	P99LastHalf   int64
	Due, Missed   int
	BytesPerEntry float64 // heap after loading, keys included
	LoadNs        int64
	CtxSwitches   int64 // of the process's threads, over the window
	Note          string
}

func (r *schedResult) cpuPerFire() float64 { return float64(r.CPUNs) / float64(max(r.Fires, 1)) }

// keepsUp: no fire missed, no lag past limit, and its loop not saturated
// (under 90% of a core).
func (r *schedResult) keepsUp(limit time.Duration) bool {
	return r.Missed == 0 && time.Duration(r.Max) < limit && float64(r.CPUNs) < 0.9*float64(r.WallNs)
}

func (r *schedResult) print() {
	wall := time.Duration(r.WallNs)
	fmt.Printf("%-12s %8d entries @every %gs: %7d fires in %s (%.0f/s), CPU %.1f%% of a core, %.2f µs/fire (GC %.0f%% of it, %d GCs), "+
		"%.2f thread wake-ups/fire, lag p50 %s p99 %s max %s (p99 first/second half %s/%s), missed %d of %d due, %.0f B/entry (load %s)\n",
		r.Engine, r.Entries, r.PeriodSec, r.Fires, wall.Round(time.Millisecond), float64(r.Fires)/wall.Seconds(),
		100*float64(r.CPUNs)/float64(r.WallNs), r.cpuPerFire()/1e3, 100*float64(r.GCCPUNs)/float64(max(r.CPUNs, 1)), r.GCs, float64(r.CtxSwitches)/float64(max(r.Fires, 1)),
		rd(r.P50), rd(r.P99), rd(r.Max), rd(r.P99FirstHalf), rd(r.P99LastHalf), r.Missed, r.Due, r.BytesPerEntry,
		time.Duration(r.LoadNs).Round(time.Millisecond))
	if r.Note != "" {
		fmt.Printf("  note: %s\n", r.Note)
	}
}

func rd(ns int64) time.Duration {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// runSchedChild runs one engine in a child process and returns its result.
func runSchedChild(name string, o schedOpts, n int) (*schedResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"sched", "-child", name, "-watches", strconv.Itoa(n), "-rate", strconv.FormatFloat(o.rate, 'g', -1, 64),
		"-dur", o.dur.String(), "-warm", o.warm.String(), "-grace", o.grace.String(), "-alloc", strconv.Itoa(o.alloc)}
	if name == "ours" {
		args = append(args, "-cpuprofile", o.cpuProfile, "-trace", o.traceFile, "-resolution", o.resolution.String())
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var r *schedResult
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			r = new(schedResult)
			if err := json.Unmarshal([]byte(js), r); err != nil {
				return nil, fmt.Errorf("sched: child %s: %w", name, err)
			}
			continue
		}
		fmt.Println("  " + line)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("sched: child %s: %w", name, err)
	}
	if r == nil {
		return nil, fmt.Errorf("sched: child %s printed no result", name)
	}
	return r, nil
}
