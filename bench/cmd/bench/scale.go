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
// profile, 254 (the largest mesh) and 500 with the wan one (see the note).
func (b *bench) scale() error {
	const sec = "In-process scale"
	const table = "Mesh scale (BenchmarkMeshScale, loopback, one process)"
	testBin := filepath.Join(b.tmp, "mesh.test")
	cmd := exec.CommandContext(b.ctx, "go", "test", "-c", "-o", testBin, "./mesh/")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c ./mesh/: %w\n%s", err, out)
	}
	idle := b.dur(30*time.Second, 5*time.Second) // push-pulls are minutes apart at 200: short windows are noisy
	sizes := []scaleSize{{50, 2, "", 0}, {100, 2, "", 0}, {150, 1, "", 0}, {200, 3, "", 0}, {254, 1, "", 0}, {254, 1, "wan", 0}, {500, 1, "wan", 0}}
	if b.quick {
		sizes = []scaleSize{{50, 1, "", 0}, {100, 1, "", 0}}
	}
	b.note(sec, "`BenchmarkMeshScale` (mesh/scale_test.go) starts N mesh nodes in one process on loopback, each given the mesh's credentials and one seed (as after invitations), and measures the time until every node's gossip lists all N, "+
		"then, once gossip has settled (under 1 KB/s per node over 5 s, at most 3 minutes: the last announcements take a while to drain), %v of idle: gossip bytes per second per node and the process's CPU divided by N (percent of one core). No WireGuard and no network namespaces: gossip only. All N nodes share the machine's %d cores, so convergence at large N is CPU-bound.", idle, b.res.Machine.Cores)
	b.note(sec, "254 nodes (the largest mesh there can be, one /24 site each) run with both gossip profiles, 500 with the wan one (probes every 5 s with a 3 s timeout). "+
		"500 nodes with the lan profile (probes every second, 500 ms timeout) do not converge in one process on 2 cores, even joining 100 at a time: on 2026-11-27, once 400 had joined, the process was saturated, acknowledgements came later than the probe timeout, and nodes were suspected in a loop (some saw only 265 of 400). "+
		"Until that day's changes (mesh/memberstate.go, mesh/node.go: the per-change work of each node made cheaper), 254 nodes with the lan profile did not converge either. Each real booture has its own CPU. "+
		"500 nodes (beyond a mesh's 254 sites: gossip only; sites repeat, so every node also sees site conflicts it cannot settle) start all at once, like the others. "+
		"With `BOOTURE_SCALE_BATCH=100` they join 100 at a time instead, each batch once the mesh so far has converged, as a mesh grows in life; on 2026-11-27 the last 100 converged in 28 to 51 s (3 runs). "+
		"Now and then gossip misses a newcomer at one node; the view digests (mesh/digest.go) find it once views have settled and repair it with one full-state exchange, rather than waiting for memberlist's own (every 30 s to 5 min, stretched by memberlist in big meshes). The progress lines (`n8 misses n140`) show such waits.")
	c1 := &Curve{ID: "scale-convergence", Title: "In-process mesh: convergence time vs nodes", XLabel: "nodes", YLabel: "seconds", Series: []Series{{Name: "convergence (lan profile)"}, {Name: "convergence (wan profile)"}}}
	c2 := &Curve{ID: "scale-gossip", Title: "In-process mesh: idle gossip per node vs nodes", XLabel: "nodes", YLabel: "bytes/s sent per node", Series: []Series{{Name: "lan profile"}, {Name: "wan profile"}}}
	c3 := &Curve{ID: "scale-cpu", Title: "In-process mesh: idle CPU per node vs nodes", XLabel: "nodes", YLabel: "% of one core per node", Series: []Series{{Name: "lan profile"}, {Name: "wan profile"}}}
	b.curve(c1)
	b.curve(c2)
	b.curve(c3)
	// First every size once, then more runs of the smaller
	// sizes while the budget lasts.
	type fig struct{ conv, out, in, cpu *Figure }
	figs := make([]fig, len(sizes)) // by index in sizes
	for i, s := range sizes {
		c := fmt.Sprintf("BOOTURE_SCALE_NODES=%d BOOTURE_SCALE_IDLE=%v go test -timeout %v -run '^$' -bench MeshScale -benchtime 1x ./mesh/", s.n, idle, s.timeout())
		name := fmt.Sprintf("%d nodes", s.n)
		if s.profile != "" {
			c = "BOOTURE_SCALE_PROFILE=" + s.profile + " " + c
			name += " (" + s.profile + " profile"
			if s.batch > 0 {
				c = fmt.Sprintf("BOOTURE_SCALE_BATCH=%d ", s.batch) + c
				name += fmt.Sprintf(", %d at a time", s.batch)
			}
			name += ")"
		}
		figs[i] = fig{
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
		for i, s := range sizes {
			if r >= s.runs {
				continue
			}
			f := figs[i]
			// Big sizes take minutes: skip what does not fit in the budget.
			if b.left() < s.need(idle)+b.reserve() {
				if r == 0 {
					f.conv.fail(fmt.Errorf("skipped: not enough time left in the budget"))
				}
				continue
			}
			m, err := b.runScale(testBin, s, idle)
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
			for k := range 2 {
				c1.Series[k].Points, c2.Series[k].Points, c3.Series[k].Points = nil, nil, nil
			}
			for j, s := range sizes {
				k := 0 // series: lan, then wan
				if s.profile == "wan" {
					k = 1
				}
				if f := figs[j]; len(f.conv.Samples) > 0 {
					c1.Series[k].Points = append(c1.Series[k].Points, point(float64(s.n), f.conv.Samples))
					c2.Series[k].Points = append(c2.Series[k].Points, point(float64(s.n), f.out.Samples))
					c3.Series[k].Points = append(c3.Series[k].Points, point(float64(s.n), f.cpu.Samples))
				}
			}
			b.save()
		}
	}
	return nil
}

// scaleSize is one size of the in-process scale runs.
type scaleSize struct {
	n, runs int
	profile string // gossip profile, "" for lan
	batch   int    // nodes started at a time, 0 for all at once
}

// need is about how long one run takes: the time to converge, idle and
// settling, and closing hundreds of nodes.
func (s scaleSize) need(idle time.Duration) time.Duration {
	conv := time.Duration(s.n/4) * time.Second
	if s.batch > 0 {
		conv = time.Duration(s.n/s.batch) * time.Minute
	}
	return conv + idle + 30*time.Second
}

// timeout bounds one run: each convergence may take 5 minutes before the
// benchmark gives up.
func (s scaleSize) timeout() time.Duration {
	if s.batch > 0 {
		return time.Duration(s.n/s.batch)*5*time.Minute + 5*time.Minute
	}
	return 8 * time.Minute
}

// reserve is the time the run keeps for writing its report.
func (b *bench) reserve() time.Duration { return 10 * time.Second }

var benchLine = regexp.MustCompile(`^BenchmarkMeshScale\S*\s+\d+\s+\d+ ns/op(.*)$`)

func (b *bench) runScale(testBin string, s scaleSize, idle time.Duration) (map[string]float64, error) {
	n := s.n
	ctx, cancel := context.WithTimeout(b.ctx, s.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, testBin, "-test.run", "^$", "-test.bench", "MeshScale", "-test.benchtime", "1x", "-test.timeout", s.timeout().String())
	cmd.Dir = filepath.Join(b.root, "mesh")
	cmd.Env = append(cmd.Environ(), fmt.Sprintf("BOOTURE_SCALE_NODES=%d", n), "BOOTURE_SCALE_IDLE="+idle.String(),
		"BOOTURE_SCALE_PROFILE="+s.profile, fmt.Sprintf("BOOTURE_SCALE_BATCH=%d", s.batch))
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
