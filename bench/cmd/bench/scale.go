package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// scale runs mesh's BenchmarkMeshScale (many mesh nodes in one process
// over loopback gossip, no WireGuard): 50 to 200 nodes with the lan
// profile, 254 (the largest mesh) with the wan one (see the note).
func (b *bench) scale() error {
	const sec = "In-process scale"
	const table = "Mesh scale (BenchmarkMeshScale, loopback, one process)"
	testBin := filepath.Join(b.tmp, "mesh.test")
	cmd := exec.CommandContext(b.ctx, "go", "test", "-c", "-o", testBin, "./mesh/")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c ./mesh/: %w\n%s", err, out)
	}
	idle := b.dur(30*time.Second, 5*time.Second) // push-pulls are minutes apart at 200: short windows are noisy
	type size struct {
		n, runs int
		profile string // gossip profile, "" for lan
	}
	sizes := []size{{50, 2, ""}, {100, 2, ""}, {150, 1, ""}, {200, 3, ""}, {254, 1, "wan"}}
	if b.quick {
		sizes = []size{{50, 1, ""}, {100, 1, ""}}
	}
	b.note(sec, "`BenchmarkMeshScale` (mesh/scale_test.go) starts N mesh nodes in one process on loopback, each given the mesh's credentials and one seed (as after invitations), and measures the time until every node's gossip lists all N, "+
		"then, after 5 s of settling, %v of idle: gossip bytes per second per node and the process's CPU divided by N (percent of one core). No WireGuard and no network namespaces: gossip only. All N nodes share the machine's %d cores, so convergence at large N is CPU-bound.", idle, b.res.Machine.Cores)
	b.note(sec, "254 nodes (the largest mesh there can be, one /24 site each) run with the wan gossip profile (probes every 5 s with a 3 s timeout). "+
		"With the lan profile (probes every second, 500 ms timeout) 254 nodes do not converge in one process on 2 cores: the process is saturated (a CPU profile of the first minute: 23 %% in memberlist's LZW compression of packets, 15 %% in the garbage collector, 10 %% decoding messages), "+
		"acknowledgements come later than the probe timeout, and nodes are suspected and refuted in a loop. Each real booture has its own CPU. "+
		"500 nodes (beyond a mesh's 254 sites: gossip only) do not converge in one process here with either profile: on 2026-11-27, with the wan profile, 3 minutes after the start the process was still saturated by hundreds of concurrent full-state exchanges (push-pull over TCP, 500 nodes each), and the memberlist locks they hold kept the convergence check itself waiting; `BOOTURE_SCALE_NODES=500 BOOTURE_SCALE_PROFILE=wan go test -timeout 30m -run '^$' -bench MeshScale -benchtime 1x ./mesh/` tries it on a bigger machine. "+
		"A few nodes often miss one newcomer's announcement and learn of it at the next full state exchange (push-pull, every 30 s with the lan profile and 60 s with the wan one, stretched by memberlist in big meshes): the slowest runs below are that wait, which the progress lines (`n8 misses n140`) show.")
	c1 := &Curve{ID: "scale-convergence", Title: "In-process mesh: convergence time vs nodes", XLabel: "nodes", YLabel: "seconds", Series: []Series{{Name: "convergence (lan profile)"}, {Name: "convergence (wan profile)"}}}
	c2 := &Curve{ID: "scale-gossip", Title: "In-process mesh: idle gossip per node vs nodes", XLabel: "nodes", YLabel: "bytes/s sent per node", Series: []Series{{Name: "lan profile"}, {Name: "wan profile"}}}
	c3 := &Curve{ID: "scale-cpu", Title: "In-process mesh: idle CPU per node vs nodes", XLabel: "nodes", YLabel: "% of one core per node", Series: []Series{{Name: "lan profile"}, {Name: "wan profile"}}}
	b.curve(c1)
	b.curve(c2)
	b.curve(c3)
	// First every size once, then more runs of the smaller
	// sizes while the budget lasts.
	type fig struct{ conv, out, in, cpu *Figure }
	figs := map[int]fig{}
	for _, s := range sizes {
		c := fmt.Sprintf("BOOTURE_SCALE_NODES=%d BOOTURE_SCALE_IDLE=%v go test -run '^$' -bench MeshScale -benchtime 1x ./mesh/", s.n, idle)
		name := fmt.Sprintf("%d nodes", s.n)
		if s.profile != "" {
			c = "BOOTURE_SCALE_PROFILE=" + s.profile + " " + c
			name += " (" + s.profile + " profile)"
		}
		figs[s.n] = fig{
			b.figure(sec, table, name+": convergence", "s", c),
			b.figure(sec, table, name+": idle gossip out per node", "B/s", c),
			b.figure(sec, table, name+": idle gossip in per node", "B/s", c),
			b.figure(sec, table, name+": idle CPU per node", "% of a core", c),
		}
	}
	maxRuns := 0
	for _, s := range sizes {
		maxRuns = max(maxRuns, s.runs)
	}
	for r := 0; r < maxRuns; r++ {
		for _, s := range sizes {
			if r >= s.runs {
				continue
			}
			f := figs[s.n]
			// Big sizes take minutes: skip what does not fit in the budget.
			need := time.Duration(s.n/4)*time.Second + idle + 30*time.Second
			if b.left() < need+b.reserve() {
				if r == 0 {
					f.conv.fail(fmt.Errorf("skipped: not enough time left in the budget"))
				}
				continue
			}
			m, err := b.runScale(testBin, s.n, idle, s.profile)
			if err != nil {
				f.conv.fail(err)
				if b.ctx.Err() != nil {
					return err
				}
				continue
			}
			f.conv.add(m["s-to-converge"])
			f.out.add(m["gossip-B/s/node-out"])
			f.in.add(m["gossip-B/s/node-in"])
			f.cpu.add(m["cpu-%/node"])
			logf("scale %d: converged %.1fs, %.0f B/s/node, %.3f%% CPU/node", s.n, m["s-to-converge"], m["gossip-B/s/node-out"], m["cpu-%/node"])
			for i := range 2 {
				c1.Series[i].Points, c2.Series[i].Points, c3.Series[i].Points = nil, nil, nil
			}
			for _, s := range sizes {
				i := 0
				if s.profile == "wan" {
					i = 1
				}
				if f := figs[s.n]; len(f.conv.Samples) > 0 {
					c1.Series[i].Points = append(c1.Series[i].Points, point(float64(s.n), f.conv.Samples))
					c2.Series[i].Points = append(c2.Series[i].Points, point(float64(s.n), f.out.Samples))
					c3.Series[i].Points = append(c3.Series[i].Points, point(float64(s.n), f.cpu.Samples))
				}
			}
			b.save()
		}
	}
	return nil
}

// reserve is the time the run keeps for writing its report.
func (b *bench) reserve() time.Duration { return 10 * time.Second }

var benchLine = regexp.MustCompile(`^BenchmarkMeshScale\S*\s+\d+\s+\d+ ns/op(.*)$`)

func (b *bench) runScale(testBin string, n int, idle time.Duration, profile string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBin, "-test.run", "^$", "-test.bench", "MeshScale", "-test.benchtime", "1x", "-test.timeout", "8m")
	cmd.Dir = filepath.Join(b.root, "mesh")
	cmd.Env = append(cmd.Environ(), fmt.Sprintf("BOOTURE_SCALE_NODES=%d", n), "BOOTURE_SCALE_IDLE="+idle.String(), "BOOTURE_SCALE_PROFILE="+profile)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		f := strings.Fields(m[1])
		res := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				res[f[i+1]] = v
			}
		}
		return res, nil
	}
	if err == nil {
		err = fmt.Errorf("no benchmark line")
	}
	return nil, fmt.Errorf("%d nodes: %w: %s", n, err, tail(string(out), 5))
}
