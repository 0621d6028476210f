package main

import (
	"strings"
	"testing"
	"time"
)

// TestSchedBenchSmoke runs the sched bench's measurement for our engine and
// robfig with phases on a small load: every fire due in the window is
// seen, at about the asked rate, with the lag measured against the fire's
// own due time (a bookkeeping slip shows as missed fires or a lag of a
// whole period).
func TestSchedBenchSmoke(t *testing.T) {
	o := schedOpts{watches: 2000, rate: 1000, dur: time.Second, warm: time.Second, grace: 500 * time.Millisecond}
	for _, name := range []string{"ours", "robfig-phase"} {
		r, err := measureSched(name, o)
		if err != nil {
			t.Fatalf("measureSched(%s) = %v", name, err)
		}
		if r.Due < 500 || r.Missed != 0 {
			t.Errorf("%s: missed %d of %d due, want 0 of about 1000", name, r.Missed, r.Due)
		}
		if r.Fires < 700 || r.Fires > 1300 {
			t.Errorf("%s: %d fires in a 1 s window at 1,000/s", name, r.Fires)
		}
		if time.Duration(r.P50) > 500*time.Millisecond || r.P50 < 0 {
			t.Errorf("%s: lag p50 %s, want well under the 2 s period", name, time.Duration(r.P50))
		}
		if r.BytesPerEntry <= 0 || r.CPUNs <= 0 {
			t.Errorf("%s: %.0f bytes per entry, CPU %d ns: want both measured", name, r.BytesPerEntry, r.CPUNs)
		}
	}
}

// TestSchedBenchRefusesBadFlags: a value the measurement cannot run with is
// refused with the flag named, never a panic or an endless run.
func TestSchedBenchRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-watches", "-5"}, {"-watches", "0"}, {"-rate", "0"}, {"-rate", "-1"}, {"-rate", "NaN"},
		{"-dur", "0s"}, {"-alloc", "-1"}, {"-robfig-sizes", "abc"}, {"-robfig-sizes", "-3"},
	} {
		err := benchSched(args)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("sched %v = %v, want an error naming %s", args, err, args[0])
		}
	}
}
