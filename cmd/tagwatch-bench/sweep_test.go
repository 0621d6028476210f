package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSweepOutput: the sweep's table has a row per size and the growth
// from one size to the next, and its chart is a PNG of three panels.
func TestSweepOutput(t *testing.T) {
	var rs []*e2eResult
	for i, n := range []int{10_000, 100_000, 1_000_000} {
		k := float64(n) / 10_000
		rs = append(rs, &e2eResult{Opts: e2eOpts{Watches: n, PerUser: 10, Schedule: "@every 1h", Measure: time.Minute, Lead: 2 * time.Second},
			Machine: "test", Scheduled: 2.78 * k, Sustained: 2.78 * k, CPU: 0.01 * k, CPUPerRun: 2 * time.Millisecond,
			RSSSteadMiB: 40 * k, RSSAnonMiB: 10 * k, RSSFileMiB: 30 * k, RSSPeakMiB: 45 * k, HeapMiB: 5 * k,
			FireLag:    lagStats{time.Millisecond, time.Duration(i+2) * time.Millisecond, 10 * time.Millisecond},
			DueToRow:   lagStats{2 * time.Millisecond, time.Duration(i+5) * time.Millisecond, 20 * time.Millisecond},
			PostToRow:  lagStats{2 * time.Second, 2*time.Second + 9*time.Millisecond, 3 * time.Second},
			PostToHook: lagStats{2 * time.Second, 2*time.Second + 12*time.Millisecond, 3 * time.Second}})
	}
	table := sweepTable(rs)
	for _, want := range []string{"| 10000 | 2.8 | 2.8 | 1.0% |", "| 1000000 | 278.0 | 278.0 | 100.0% |", "| 100000 | 1000000 | ×10 | ×10.00 | ×10.00 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("sweepTable() lacks %q:\n%s", want, table)
		}
	}
	path := filepath.Join(t.TempDir(), "sweep.png")
	if err := sweepChart(rs, path); err != nil {
		t.Fatalf("sweepChart() = %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 3*b.Dy() || b.Dy() < 300 {
		t.Errorf("chart of %dx%d pixels, want three panels side by side", b.Dx(), b.Dy())
	}
}

func TestShortNumber(t *testing.T) {
	for v, want := range map[float64]string{0.5: "0.5", 20: "20", 5000: "5000", 10_000: "10k", 200_000: "200k", 1e6: "1M", 2e6: "2M"} {
		if got := shortNumber(v); got != want {
			t.Errorf("shortNumber(%g) = %q, want %q", v, got, want)
		}
	}
}
