// Command bench runs booture's benchmarks and fault drills on this machine
// (as root: they run real bootures in network namespaces, see
// internal/lab) and writes the raw results (bench/results/latest.json), the
// report (BENCHMARKS.md) and its plots (bench/plots/*.svg). bench/run.sh
// (make bench) is the entry point.
//
//	go run ./bench/cmd/bench                    # everything (about 30 min)
//	go run ./bench/cmd/bench -quick             # a smoke run (about 5 min)
//	go run ./bench/cmd/bench -only dataplane,gateway
//	go run ./bench/cmd/bench -report            # BENCHMARKS.md again from latest.json
//
// Every figure records the command that made it, its samples, their median
// and spread. Figures that compare booture with a limit or an alternative
// are measured in the same run, interleaved round by round, and their
// ratios are computed round by round.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/booture/booture/internal/lab"
)

// section is one part of the benchmark run.
type section struct {
	id    string
	title string
	run   func(b *bench) error
}

func sections() []section {
	return []section{
		{"build", "Binaries", (*bench).buildSection},
		{"dataplane", "Data plane", (*bench).dataPlane},
		{"control", "Control plane", (*bench).controlPlane},
		{"footprint", "Footprint", (*bench).footprint},
		{"gateway", "Gateway", (*bench).gateway},
		{"drills", "Fault drills", (*bench).drills},
		// Last: its 500-node run takes what time is left.
		{"scale", "In-process scale", (*bench).scale},
	}
}

// bench is the state of a run.
type bench struct {
	ctx   context.Context
	quick bool
	root  string // module root
	tmp   string // scratch directory, removed at the end
	bin   *lab.Binaries
	res   *Results
	out   string // latest.json
	md    string // BENCHMARKS.md
	plots string // bench/plots
	start time.Time
	// deadline is when the whole run must end.
	deadline time.Time
	// peers overrides the footprint's peer counts.
	peers []int
	// simAbove is the largest idle mesh of real bootures: bigger ones are
	// one real bootured with simulated peers (peersim).
	simAbove int
	// cur is the id of the section running.
	cur string
}

func main() {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "smoke run: fewer rounds, shorter runs, smaller meshes (also BENCH_QUICK=1)")
	only := flag.String("only", "", "comma-separated sections to run (build is always run): "+sectionIDs())
	out := flag.String("out", "bench/results/latest.json", "raw results")
	md := flag.String("md", "BENCHMARKS.md", "report")
	plots := flag.String("plots", "bench/plots", "directory of the report's SVG plots")
	reportOnly := flag.Bool("report", false, "only regenerate the report and plots from -out")
	peers := flag.String("peers", "", "footprint: comma-separated peer counts of the idle meshes (default 0,20,50,100,200; quick 0,20)")
	simAbove := flag.Int("sim-above", 100, "footprint: idle meshes with more peers than this are one real bootured whose peers are played by peersim")
	budget := flag.Duration("budget", 0, "time budget of the measurements (default 30m, 6m with -quick), counted once the binaries are built; sections that do not fit are skipped")
	flag.Parse()

	if *reportOnly {
		res, err := loadResults(*out)
		if err == nil {
			err = writeReport(res, *md, *plots)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := lab.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if *budget == 0 {
		*budget = 30 * time.Minute
		if *quick {
			*budget = 6 * time.Minute
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var peerCounts []int
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(p, &n); err != nil || n < 0 || n >= lab.MaxLargeHosts {
			fmt.Fprintf(os.Stderr, "bench: -peers: bad count %q\n", p)
			os.Exit(2)
		}
		peerCounts = append(peerCounts, n)
	}
	os.Exit(run(ctx, options{quick: *quick, only: *only, out: *out, md: *md, plots: *plots, budget: *budget, peers: peerCounts, simAbove: *simAbove}))
}

// options are the command line's choices for one run.
type options struct {
	quick          bool
	only           string // comma-separated sections, "" for all
	out, md, plots string // raw results, report, plots directory
	budget         time.Duration
	peers          []int // footprint peer counts, nil for the default
	simAbove       int   // see bench.simAbove
}

func sectionIDs() string {
	var ids []string
	for _, s := range sections() {
		ids = append(ids, s.id)
	}
	return strings.Join(ids, ",")
}

// BuildTimeout bounds the build of the binaries, which the budget does not
// count: with a cold Go build cache on a small or busy machine, compiling
// the daemon and its cross builds takes minutes, and a smoke run whose budget
// went to the compiler measured nothing and failed (bench/run.sh's backstop
// timeout adds it too).
const BuildTimeout = 20 * time.Minute

// run runs the sections: the build within BuildTimeout, then the others
// within o.budget. ctx ends the run early (a signal).
func run(parent context.Context, o options) int {
	ctx, cancelBuild := context.WithTimeout(parent, BuildTimeout)
	defer cancelBuild()
	quick, only, out := o.quick, o.only, o.out
	root, err := lab.ModuleRoot(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if err := os.Chdir(root); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "booture-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	lab.Janitor(logf)
	b := &bench{
		ctx: ctx, quick: quick, root: root, tmp: tmp, out: out, md: o.md, plots: o.plots,
		start: time.Now(), deadline: time.Now().Add(BuildTimeout), peers: o.peers, simAbove: o.simAbove,
		res: &Results{Quick: quick, Started: time.Now(), Budget: o.budget.String(), Machine: describeMachine(ctx)},
	}
	// Large labs need machine-wide kernel limits raised (the neighbour
	// table is shared by all namespaces); they are put back at the end.
	maxHosts := 21
	for _, p := range b.peerSizes() {
		maxHosts = max(maxHosts, p+1)
	}
	changed, restore, err := lab.RaiseHostLimits(maxHosts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer restore()
	b.res.Machine.HostLimits = changed
	stopped := make(chan struct{})
	defer close(stopped)
	// measuring starts the budget once the binaries are built.
	measuring := func() {
		cancelBuild()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(parent, o.budget)
		b.ctx, b.deadline = ctx, time.Now().Add(o.budget)
		go func() {
			defer cancel()
			select {
			case <-ctx.Done():
				logf("%s: closing the labs", ctxReason(ctx))
				closeLabs()
			case <-stopped:
			}
		}()
	}
	b.res.Command = "bench/run.sh"
	if quick {
		b.res.Command = "BENCH_QUICK=1 bench/run.sh"
	}
	var want []string
	if only != "" {
		want = strings.Split(only, ",")
		for _, w := range want {
			if !slices.Contains(strings.Split(sectionIDs(), ","), w) {
				fmt.Fprintf(os.Stderr, "bench: -only: no section %q (sections: %s)\n", w, sectionIDs())
				return 2
			}
		}
		// A partial run updates the last results: what the other
		// sections measured stays, with when and on what it was measured.
		if old, err := loadResults(out); err == nil {
			old.dropSections(append([]string{"build"}, want...))
			old.Quick, old.Only, old.Command = quick, want, b.res.Command
			old.Machine, old.Budget, old.Started = b.res.Machine, b.res.Budget, b.res.Started
			b.res = old
			logf("updating %s: sections %s run again, the others kept", out, strings.Join(want, ","))
		} else {
			b.res.Only = want
		}
	}
	// failed: a section failed, or a drill check did; a section cut short
	// by the time budget is said in the report, but is no failure.
	failed, cut := false, false
	for _, s := range sections() {
		if s.id != "build" && want != nil && !slices.Contains(want, s.id) {
			continue
		}
		if ctx.Err() != nil {
			b.res.Sections = append(b.res.Sections, SectionRun{ID: s.id, Title: s.title, Status: "skipped: " + ctxReason(ctx), Started: time.Now(), Commit: b.res.Machine.Commit})
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cut = true
			} else {
				failed = true
			}
			continue
		}
		logf("==== %s (%s into the run)", s.title, time.Since(b.start).Round(time.Second))
		t0 := time.Now()
		b.cur = s.id
		err := runSection(b, s)
		sr := SectionRun{ID: s.id, Title: s.title, Seconds: time.Since(t0).Seconds(), Status: "ok", Started: t0, Commit: b.res.Machine.Commit}
		if err != nil {
			sr.Status = "error: " + err.Error()
			if ctx.Err() != nil {
				sr.Status = "cut short (" + ctxReason(ctx) + "): " + err.Error()
			}
			logf("%s: %v", s.title, err)
			if s.id != "build" && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cut = true
			} else {
				failed = true
			}
		}
		b.res.Sections = append(b.res.Sections, sr)
		b.save()
		if s.id == "build" {
			if err != nil {
				break
			}
			logf("binaries built in %s; the budget of %s starts now", time.Since(t0).Round(time.Second), o.budget)
			measuring()
		}
	}
	b.res.Finished = time.Now()
	b.res.WallSeconds = time.Since(b.start).Seconds()
	b.save()
	if err := writeReport(b.res, o.md, o.plots); err != nil {
		fmt.Fprintln(os.Stderr, "bench: writing the report:", err)
		return 1
	}
	logf("results in %s, report in %s, plots in %s (%s)", out, o.md, o.plots, time.Since(b.start).Round(time.Second))
	lab.RemoveBinaries()
	for _, d := range b.res.Drills {
		if d.OK || !slices.Contains(ranIDs(b.res, want), d.By) {
			continue
		}
		bad := 0
		for _, c := range d.Checked {
			if !c.OK {
				bad++
			}
		}
		if d.CutShort {
			bad-- // its "ran to its end"
			cut = true
			logf("drill cut short by the time budget: %s", d.Name)
		}
		if bad > 0 {
			logf("drill failed: %s", d.Name)
			failed = true
		}
	}
	if cut {
		logf("some sections were cut short or skipped by the time budget (%s): a larger BENCH_BUDGET runs them whole", o.budget)
	}
	if failed {
		return 1
	}
	return 0
}

// ranIDs returns the sections this run ran (a partial run keeps the other
// sections' results, including their drills, from earlier runs).
func ranIDs(res *Results, want []string) []string {
	if want != nil {
		return want
	}
	var ids []string
	for _, s := range sections() {
		ids = append(ids, s.id)
	}
	return ids
}

func ctxReason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "time budget spent"
	}
	return "interrupted"
}

// runSection runs a section, turning a panic into an error so that the
// labs it made are still closed by their deferred Close and the report is
// still written.
func runSection(b *bench, s section) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return s.run(b)
}

// save writes the raw results so far.
func (b *bench) save() {
	if err := os.MkdirAll(filepath.Dir(b.out), 0o755); err != nil {
		logf("saving results: %v", err)
		return
	}
	data, _ := json.MarshalIndent(b.res, "", "  ")
	if err := os.WriteFile(b.out, data, 0o644); err != nil {
		logf("saving results: %v", err)
	}
}

func loadResults(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	return &r, json.Unmarshal(data, &r)
}

// rounds returns full in a full run, quick in a quick one.
func (b *bench) rounds(full, quick int) int {
	if b.quick {
		return quick
	}
	return full
}

// dur returns full in a full run, quick in a quick one.
func (b *bench) dur(full, quick time.Duration) time.Duration {
	if b.quick {
		return quick
	}
	return full
}

// left is the time left in the budget.
func (b *bench) left() time.Duration { return time.Until(b.deadline) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// sleep waits d or until the run is cut short.
func (b *bench) sleep(d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}
