package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is bench/results/latest.json.
type Results struct {
	Machine     Machine      `json:"machine"`
	Command     string       `json:"command"`
	Quick       bool         `json:"quick"`
	Only        []string     `json:"only,omitempty"`
	Budget      string       `json:"budget"`
	Started     time.Time    `json:"started"`
	Finished    time.Time    `json:"finished"`
	WallSeconds float64      `json:"wall_seconds"`
	Sections    []SectionRun `json:"sections"`
	Figures     []*Figure    `json:"figures"`
	Curves      []*Curve     `json:"curves"`
	Drills      []*Drill     `json:"drills"`
	Notes       []Note       `json:"notes"`
}

// SectionRun says how a section went.
type SectionRun struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Status  string    `json:"status"`
	Seconds float64   `json:"seconds"`
	Started time.Time `json:"started"`
	Commit  string    `json:"commit"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryGB int    `json:"memory_gib"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	Commit   string `json:"commit"`
	Tools    string `json:"tools"`
	// HostLimits are the kernel limits the run raised for its labs (put
	// back at the end).
	HostLimits []string `json:"host_limits,omitempty"`
}

// Figure is one measured quantity: its samples (one per round) and their
// summary.
type Figure struct {
	// By is the id of the section of the run that made it (-only reruns
	// replace what their sections made).
	By      string    `json:"by"`
	Section string    `json:"section"`
	Table   string    `json:"table"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Command string    `json:"command"`
	Note    string    `json:"note,omitempty"`
	// Failed counts rounds that produced no sample (with why in Note).
	Failed int `json:"failed,omitempty"`
}

// Curve is a plot: series of (x, median, min, max) points.
type Curve struct {
	By     string   `json:"by"`
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	XLabel string   `json:"x_label"`
	YLabel string   `json:"y_label"`
	Series []Series `json:"series"`
	// LogX plots x on a log scale.
	LogX bool `json:"log_x,omitempty"`
}

// Series is one line of a curve.
type Series struct {
	Name   string  `json:"name"`
	Points []Point `json:"points"`
}

// Point is a median with its spread.
type Point struct {
	X      float64 `json:"x"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Drill is a fault drill's report.
type Drill struct {
	By      string   `json:"by"`
	Name    string   `json:"name"`
	What    string   `json:"what"`
	Command string   `json:"command"`
	Checked []Check  `json:"checked"`
	Found   []string `json:"found"`
	OK      bool     `json:"ok"`
	Seconds float64  `json:"seconds"`
	// CutShort: the time budget ended the drill (its unfinished check
	// fails, but the run does not count it as a failed drill).
	CutShort bool `json:"cut_short,omitempty"`
}

// Check is one assertion of a drill.
type Check struct {
	What   string `json:"what"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Note is something the report says about a section.
type Note struct {
	By      string `json:"by"`
	Section string `json:"section"`
	Text    string `json:"text"`
}

// figure adds (or returns the existing) figure of the given table and name.
func (b *bench) figure(section, table, name, unit, command string) *Figure {
	for _, f := range b.res.Figures {
		if f.Section == section && f.Table == table && f.Name == name {
			return f
		}
	}
	f := &Figure{By: b.cur, Section: section, Table: table, Name: name, Unit: unit, Command: command}
	b.res.Figures = append(b.res.Figures, f)
	return f
}

// add records a sample.
func (f *Figure) add(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	f.Samples = append(f.Samples, v)
	f.Median, f.Min, f.Max = summary(f.Samples)
}

// fail records a round without a sample.
func (f *Figure) fail(err error) {
	f.Failed++
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if f.Note == "" {
		f.Note = "failed round: " + msg
	} else if !strings.Contains(f.Note, msg) {
		f.Note += "; failed round: " + msg
	}
}

// note adds a remark to a figure.
func (f *Figure) note(s string) {
	if strings.Contains(f.Note, s) {
		return
	}
	if f.Note != "" {
		f.Note += "; "
	}
	f.Note += s
}

func (b *bench) note(section, format string, args ...any) {
	b.res.Notes = append(b.res.Notes, Note{By: b.cur, Section: section, Text: fmt.Sprintf(format, args...)})
}

// curve adds a curve.
func (b *bench) curve(c *Curve) {
	c.By = b.cur
	b.res.Curves = append(b.res.Curves, c)
}

// drill files a drill's report.
func (b *bench) drill(d *Drill) {
	d.By = b.cur
	b.res.Drills = append(b.res.Drills, d)
}

// dropSections removes from r what the given sections made (before they
// run again).
func (r *Results) dropSections(ids []string) {
	r.Figures = slices.DeleteFunc(r.Figures, func(f *Figure) bool { return slices.Contains(ids, f.By) })
	r.Curves = slices.DeleteFunc(r.Curves, func(c *Curve) bool { return slices.Contains(ids, c.By) })
	r.Drills = slices.DeleteFunc(r.Drills, func(d *Drill) bool { return slices.Contains(ids, d.By) })
	r.Notes = slices.DeleteFunc(r.Notes, func(n Note) bool { return slices.Contains(ids, n.By) })
	r.Sections = slices.DeleteFunc(r.Sections, func(s SectionRun) bool { return slices.Contains(ids, s.ID) })
}

// point summarises samples at x.
func point(x float64, samples []float64) Point {
	m, lo, hi := summary(samples)
	return Point{X: x, Median: m, Min: lo, Max: hi}
}

func summary(s []float64) (median, lo, hi float64) {
	if len(s) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		median = c[n/2]
	} else {
		median = (c[n/2-1] + c[n/2]) / 2
	}
	return median, c[0], c[n-1]
}

// ratios returns a[i]/b[i] for the rounds both have.
func ratios(a, b []float64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

func describeMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemoryGB = int(math.Round(float64(kb) / (1 << 20)))
	}
	out := func(args ...string) string {
		o, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(o))
	}
	m.Kernel = out("uname", "-sr")
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Commit = out("git", "describe", "--tags", "--always", "--dirty")
	if c := os.Getenv("BENCH_COMMIT"); c != "" {
		m.Commit = c
	}
	var tools []string
	for _, p := range []string{"iperf3", "wrk", "nginx-light", "wireguard-go", "wireguard-tools", "nftables", "iproute2"} {
		if v := out("dpkg-query", "-W", "-f=${Version}", p); v != "" {
			tools = append(tools, p+" "+v)
		}
	}
	m.Tools = strings.Join(tools, ", ")
	return m
}
