package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// runSweep runs the e2e bench once per watch count in counts, each in a
// process of its own (so each RSS peak is that size's alone), with the
// other flags of args, then prints a table, writes it next to the chart
// (a .md file) and draws the chart (PNG): CPU, RSS and p99 lag against
// watches.
func runSweep(args []string, counts, chart string) error {
	var ns []int
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-sweep: %q is not a watch count", f)
		}
		ns = append(ns, n)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tagwatch-sweep")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pass := sweepArgs(args)
	var rs []*e2eResult
	for _, n := range ns {
		out := filepath.Join(dir, fmt.Sprintf("%d.json", n))
		cargs := append([]string{"e2e"}, pass...)
		cargs = append(cargs, "-watches", strconv.Itoa(n), "-json", out)
		fmt.Printf("=== %d watches: %s %s\n", n, filepath.Base(exe), strings.Join(cargs, " "))
		cmd := exec.Command(exe, cargs...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("sweep at %d watches: %w", n, err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		var r e2eResult
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		fmt.Printf("=== %d watches done in %s\n\n", n, time.Since(t0).Round(time.Second))
		rs = append(rs, &r)
	}
	table := sweepTable(rs)
	fmt.Print(table)
	if err := os.WriteFile(strings.TrimSuffix(chart, filepath.Ext(chart))+".md", []byte(table), 0o644); err != nil {
		return err
	}
	if err := sweepChart(rs, chart); err != nil {
		return err
	}
	fmt.Printf("chart: %s\n", chart)
	return nil
}

// sweepArgs drops from args the flags the sweep sets per run.
func sweepArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		switch name {
		case "sweep", "chart", "watches", "json", "cpuprofile", "memprofile", "loadprofile":
			if !hasValue && i+1 < len(args) {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// sweepTable is the sweep's table (Markdown) and what scales how.
func sweepTable(rs []*e2eResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "e2e sweep: %s per user, on %s; %s window; machine: %s\n\n", plural(rs[0].Opts.PerUser, "watch"),
		rs[0].Opts.Schedule, rs[0].Opts.Measure, rs[0].Machine)
	b.WriteString("| watches | runs/s due | runs/s run | CPU (share of a core) | CPU per run | RSS in the window (anon + vault map) | RSS peak | heap | p99 fire lag | p99 due to row | p99 post to row | p99 post to webhook | load | missed | duplicated |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %.1f | %.1f | %.1f%% | %s | %.0f MiB (%.0f + %.0f) | %.0f MiB | %.0f MiB | %s | %s | %s | %s | %s | %d | %d |\n",
			r.Opts.Watches, r.Scheduled, r.Sustained, 100*r.CPU, r.CPUPerRun.Round(time.Microsecond), r.RSSSteadMiB, r.RSSAnonMiB,
			r.RSSFileMiB, r.RSSPeakMiB, r.HeapMiB, ms(r.FireLag.p99), ms(r.DueToRow.p99), ms(r.PostToRow.p99), ms(r.PostToHook.p99),
			r.Load.Round(100*time.Millisecond), r.Missed, r.Duplicated)
	}
	if len(rs) > 1 {
		b.WriteString("\nGrowth from one size to the next (linear growth: each column grows as the watches do):\n\n")
		b.WriteString("| from | to | watches | runs/s | CPU | RSS anon | RSS vault map | p99 due to row |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i := 1; i < len(rs); i++ {
			a, z := rs[i-1], rs[i]
			x := func(from, to float64) string {
				if from <= 0 {
					return "-"
				}
				return fmt.Sprintf("×%.2f", to/from)
			}
			fmt.Fprintf(&b, "| %d | %d | ×%.0f | %s | %s | %s | %s | %s |\n", a.Opts.Watches, z.Opts.Watches,
				float64(z.Opts.Watches)/float64(a.Opts.Watches), x(a.Sustained, z.Sustained), x(a.CPU, z.CPU),
				x(a.RSSAnonMiB, z.RSSAnonMiB), x(a.RSSFileMiB, z.RSSFileMiB), x(float64(a.DueToRow.p99), float64(z.DueToRow.p99)))
		}
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ses", n, what)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// sweepChart draws CPU, RSS and p99 lag against watches, three panels
// side by side, watches on a log scale; CPU and RSS on log scales too,
// with the line of linear growth from the smallest size dashed: a curve
// parallel to it grows linearly, steeper faster, flatter slower (a fixed
// cost shared by more watches).
func sweepChart(rs []*e2eResult, path string) error {
	xs := func(f func(r *e2eResult) float64) plotter.XYs {
		pts := make(plotter.XYs, len(rs))
		for i, r := range rs {
			pts[i] = plotter.XY{X: float64(r.Opts.Watches), Y: f(r)}
		}
		return pts
	}
	linear := func(pts plotter.XYs) plotter.XYs {
		out := make(plotter.XYs, len(pts))
		for i, p := range pts {
			out[i] = plotter.XY{X: p.X, Y: pts[0].Y * p.X / pts[0].X}
		}
		return out
	}
	colors := []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 255}}
	type series struct {
		name   string
		pts    plotter.XYs
		dashed bool
	}
	panel := func(title, ylabel string, logY bool, ss []series) (*plot.Plot, error) {
		p := plot.New()
		if !logY {
			p.Y.Min = 0
			p.Legend.Left = false
			p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
				ts := plot.DefaultTicks{}.Ticks(min, max)
				for i := range ts {
					if ts[i].Label != "" {
						ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
					}
				}
				return ts
			})
		}
		p.Title.Text = title
		p.X.Label.Text = "watches"
		p.Y.Label.Text = ylabel
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, logTicks{}
		if logY {
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		}
		p.Legend.Top = true
		if logY {
			p.Legend.Left = true
		}
		for i, s := range ss {
			pts := make(plotter.XYs, 0, len(s.pts))
			for _, pt := range s.pts {
				if !logY || pt.Y > 0 {
					pts = append(pts, pt)
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			l.Color, sc.Color = colors[i%len(colors)], colors[i%len(colors)]
			if s.dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				l.Color = color.Gray{Y: 128}
				p.Add(l)
				p.Legend.Add(s.name, l)
				continue
			}
			p.Add(l, sc)
			p.Legend.Add(s.name, l, sc)
		}
		if !logY {
			p.Y.Max *= 1.3 // room for the legend
		}
		return p, nil
	}
	cpu := xs(func(r *e2eResult) float64 { return 100 * r.CPU })
	rss := xs(func(r *e2eResult) float64 { return r.RSSSteadMiB })
	anon := xs(func(r *e2eResult) float64 { return r.RSSAnonMiB })
	file := xs(func(r *e2eResult) float64 { return r.RSSFileMiB })
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p1, err := panel("CPU of the daemon's process", "% of one core", true, []series{
		{"CPU", cpu, false}, {"linear growth (from the smallest)", linear(cpu), true}})
	if err != nil {
		return err
	}
	p2, err := panel("RSS of the daemon's process", "MiB", true, []series{
		{"RSS", rss, false}, {"anonymous (heap)", anon, false}, {"vault file's map", file, false}, {"linear growth of RSS (from the smallest)", linear(rss), true}})
	if err != nil {
		return err
	}
	p3, err := panel("p99 lag", "ms", false, []series{
		{"due to outbox row", xs(func(r *e2eResult) float64 { return msOf(r.DueToRow.p99) }), false},
		{"due to run start", xs(func(r *e2eResult) float64 { return msOf(r.FireLag.p99) }), false},
		{"post to webhook - lead", xs(func(r *e2eResult) float64 { return msOf(r.PostToHook.p99 - r.Opts.Lead) }), false}})
	if err != nil {
		return err
	}
	const w, h = 18 * vg.Inch, 5.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 3, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 4,
		PadBottom: vg.Millimeter * 4, PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 4}
	plots := [][]*plot.Plot{{p1, p2, p3}}
	canvases := plot.Align(plots, tiles, dc)
	for j, p := range plots[0] {
		p.Draw(canvases[0][j])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// logTicks marks 1, 2 and 5 times each power of ten, labelled short
// (500, 10k, 1M).
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(min)); math.Pow(10, e) <= max; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < min || v > max {
				continue
			}
			ts = append(ts, plot.Tick{Value: v, Label: shortNumber(v)})
		}
	}
	return ts
}

// shortNumber writes v as 0.5, 20, 10k or 1M.
func shortNumber(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
