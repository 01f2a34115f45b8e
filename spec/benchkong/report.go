package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// metric is one figure of a result.
type metric struct {
	name string
	of   func(result) float64
}

var (
	p50       = metric{"p50", func(r result) float64 { return float64(r.p50) }}
	p99       = metric{"p99", func(r result) float64 { return float64(r.p99) }}
	rps       = metric{"req/s", func(r result) float64 { return r.rps }}
	totalCPU  = metric{"CPU (Kong workers + plugin servers)", result.totalCPU}
	pluginCPU = metric{"plugin-server CPU", result.pluginCPU}
)

// ratio is a row of the ratio table: num's metric over den's, each taken
// in the same round, the median over the rounds.
type ratio struct {
	num, den string
	m        metric
	target   string
}

var ratios = []ratio{
	{"empty", "none", p50, ""},
	{"floor", "empty", p50, ""},
	{"subgate", "floor", p50, "≤ 0.95 at c=1, ≤ 1.05 at c=8 and 32"},
	{"subgate", "floor", p99, "≤ 1.2"},
	{"subgate", "floor", totalCPU, "≤ 1.1"},
	{"subgate", "chain", p50, "≤ 0.45"},
	{"subgate", "chain", totalCPU, "≤ 0.45"},
	{"subgate", "subgate-seq", p50, ""},
	{"subgate", "subgate-seq", totalCPU, ""},
	{"subgate", "base", p50, ""},
	{"subgate", "base", p99, ""},
	{"subgate", "base", totalCPU, ""},
	{"base", "floor", p50, ""},
	{"base", "floor", totalCPU, ""},
	{"subgate-deny", "subgate", rps, "denials/s against allows/s"},
	{"subgate-deny", "subgate", pluginCPU, "≤ 1"},
	{"chain-deny", "chain", rps, ""},
	{"subgate-foreign", "subgate", pluginCPU, ""},
	{"subgate-foreign", "subgate", metric{"identity GETs", func(r result) float64 { return r.identityCalls }}, ""},
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// of returns the results of one shape at one worker count and concurrency,
// by round.
func (b *bench) of(shape string, w, c int) map[int]result {
	out := map[int]result{}
	for _, r := range b.results {
		if r.shape == shape && r.workers == w && r.conc == c {
			out[r.round] = r
		}
	}
	return out
}

func (b *bench) medianOf(shape string, w, c int, f func(result) float64) float64 {
	var v []float64
	for _, r := range b.of(shape, w, c) {
		v = append(v, f(r))
	}
	return median(v)
}

func (b *bench) ratio(q ratio, w, c int) (float64, bool) {
	num, den := b.of(q.num, w, c), b.of(q.den, w, c)
	var v []float64
	for round, n := range num {
		if d, ok := den[round]; ok && q.m.of(d) > 0 {
			v = append(v, q.m.of(n)/q.m.of(d))
		}
	}
	return median(v), len(v) > 0
}

func ms(ns float64) string { return fmt.Sprintf("%.2f", ns/float64(time.Millisecond)) }

// report prints the medians and the ratios as Markdown tables.
func (b *bench) report(w io.Writer, shapes []shape, workers, concs []int) {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "bench-kong: Kong %s, %d rounds of %v per cell (warm-up %v), %d CPUs (%s, %s), load average at the end %s\n\n",
		kongVersion(b), b.o.rounds, b.o.duration, b.o.warmup, runtime.NumCPU(), host, cpuModel(), strings.Join(strings.Fields(string(load))[:3], " "))
	var idle []string
	for name, v := range b.idle {
		idle = append(idle, fmt.Sprintf("%s %.0f", name, v))
	}
	slices.Sort(idle)
	fmt.Fprintf(w, "CPU per request is net of each process's CPU at idle (µs/s, taken out): %s\n\n", strings.Join(idle, ", "))
	for _, wk := range workers {
		fmt.Fprintf(w, "worker_processes %d: medians over the rounds\n\n", wk)
		fmt.Fprintln(w, "| shape | c | p50 ms | p99 ms | req/s | Kong workers µs/req | plugin servers µs/req | total µs/req | identity GETs/req |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, s := range shapes {
			for _, c := range concs {
				fmt.Fprintf(w, "| %s | %d | %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f |\n", s.name, c,
					ms(b.medianOf(s.name, wk, c, p50.of)), ms(b.medianOf(s.name, wk, c, p99.of)), b.medianOf(s.name, wk, c, rps.of),
					b.medianOf(s.name, wk, c, func(r result) float64 { return r.kongCPU }), b.medianOf(s.name, wk, c, pluginCPU.of),
					b.medianOf(s.name, wk, c, totalCPU.of), b.medianOf(s.name, wk, c, func(r result) float64 { return r.identityCalls }))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Ratios, each the median over the rounds of the ratio measured within a round:")
	fmt.Fprintln(w)
	head := "| ratio | target |"
	sep := "| --- | --- |"
	for _, wk := range workers {
		for _, c := range concs {
			head += fmt.Sprintf(" w=%d c=%d |", wk, c)
			sep += " --- |"
		}
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, q := range ratios {
		row := fmt.Sprintf("| %s / %s, %s | %s |", q.num, q.den, q.m.name, q.target)
		any := false
		for _, wk := range workers {
			for _, c := range concs {
				v, ok := b.ratio(q, wk, c)
				if !ok {
					row += " |"
					continue
				}
				any = true
				row += fmt.Sprintf(" %.2f |", v)
			}
		}
		if any {
			fmt.Fprintln(w, row)
		}
	}
}

func kongVersion(b *bench) string {
	for _, k := range b.kongs {
		if out, err := k.Run("version"); err == nil {
			return strings.TrimSpace(out)
		}
	}
	return "?"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
