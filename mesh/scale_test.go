package mesh

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// BenchmarkMeshScale measures, in one process over loopback, how long a
// mesh of BOOTURE_SCALE_NODES bootures (default 200) takes to converge once
// they all start, and what it costs at rest, once gossip has settled:
// gossip bytes per second and CPU per booture. The bootures are given the
// mesh's credentials and one seed directly (as after invitations), so the
// figure is gossip's own.
// BOOTURE_SCALE_PROFILE=wan uses the wan gossip profile;
// BOOTURE_SCALE_CPUPROFILE=FILE writes a CPU profile of the first minute.
// BOOTURE_SCALE_BATCH=K starts the bootures K at a time, each batch once the
// mesh so far has converged (as a mesh grows in life); the convergence
// figure is then the last batch's.
// Booture i holds site i; beyond 254 bootures (a mesh's maximum) sites
// repeat, conflicts cannot be settled, and only the gossip figures mean
// something. Timings are the daemon's (rejoin every 5 s).
//
//	go test -run '^$' -bench MeshScale -benchtime 1x ./mesh/
func BenchmarkMeshScale(b *testing.B) {
	count := 200
	if s := os.Getenv("BOOTURE_SCALE_NODES"); s != "" {
		count, _ = strconv.Atoi(s)
	}
	profile, err := ParseProfile(os.Getenv("BOOTURE_SCALE_PROFILE"))
	if err != nil {
		b.Fatal(err)
	}
	batch := 0
	if s := os.Getenv("BOOTURE_SCALE_BATCH"); s != "" {
		batch, _ = strconv.Atoi(s)
	}
	idle := 20 * time.Second
	if s := os.Getenv("BOOTURE_SCALE_IDLE"); s != "" {
		idle, _ = time.ParseDuration(s)
	}
	for i := 0; i < b.N; i++ {
		benchScale(b, count, batch, idle, profile)
	}
}

func benchScale(b *testing.B, count, batch int, idle time.Duration, profile Profile) {
	// The daemon's timings: startTestNode's rejoin rounds are shorter.
	daemonLike := func(c *Config) { c.Profile, c.RejoinInterval = profile, 5*time.Second }
	seed := startTestNode(b, "n1", "", key.PrivateKey{}, daemonLike)
	seed.mu.Lock()
	creds, seedRec := seed.state.Creds, seed.selfLocked()
	seed.mu.Unlock()
	nodes := []*testNode{seed}
	if path := os.Getenv("BOOTURE_SCALE_CPUPROFILE"); path != "" {
		// The first minute, where the joins happen (a failed run's
		// cleanup is long, so -cpuprofile would come late).
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		time.AfterFunc(time.Minute, func() { pprof.StopCPUProfile(); f.Close() })
	}
	start := time.Now()
	for i := 2; i <= count; i++ {
		dir := b.TempDir()
		priv, _ := key.NewPrivateKey()
		now := time.Now().UnixMilli()
		st := persisted{
			Version: stateVersion, Creds: creds,
			Self: Record{Name: fmt.Sprintf("n%d", i), PublicKey: priv.Public(), Site: (i-1)%MaxSite + 1, // sites repeat beyond 254 bootures: see BenchmarkMeshScale
				SiteClaim: now, Gen: now},
			Roster: []Record{seedRec},
		}
		if err := store.WriteJSON(filepath.Join(dir, StateFile), &st, 0o600); err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, startTestNode(b, st.Self.Name, dir, priv, daemonLike))
		if i%50 == 0 {
			progress("%d of %d bootures started after %v", i, count, time.Since(start).Round(time.Second))
		}
		if batch > 0 && i%batch == 0 && i < count {
			waitConverged(b, nodes, start)
			start = time.Now() // the figure is the last batch's
		}
	}
	started := time.Since(start)
	waitConverged(b, nodes, start)
	converged := time.Since(start)
	b.ReportMetric(started.Seconds(), "s-to-start-all")
	b.ReportMetric(converged.Seconds(), "s-to-converge")

	settled := settleGossip(nodes)
	b.ReportMetric(settled.Seconds(), "s-to-settle")
	sigs0 := totalSigs(nodes)
	cost := measureSigCost()
	b.ReportMetric(float64(cost.sign.Microseconds()), "us-cpu/sign")
	b.ReportMetric(float64(cost.verify.Microseconds()), "us-cpu/check")
	b.ReportMetric(float64(sigs0.checks)/float64(count), "sig-checks/node-joining")
	b.ReportMetric(float64(sigs0.signs)/float64(count), "signs/node-joining")
	b.ReportMetric(cost.of(sigs0).Seconds()/cpuTime().Seconds()*100, "sig-%-of-cpu-joining")
	in0, out0 := totalGossip(nodes)
	cpu0 := cpuTime()
	repairs0 := totalRepairs(nodes)
	time.Sleep(idle)
	in1, out1 := totalGossip(nodes)
	cpu := cpuTime() - cpu0
	sigs := totalSigs(nodes).minus(sigs0)
	b.ReportMetric(float64(sigs.checks+sigs.signs)/idle.Seconds()/float64(count), "sig-ops/s/node-idle")
	b.ReportMetric(cost.of(sigs).Seconds()/cpu.Seconds()*100, "sig-%-of-cpu-idle")
	b.ReportMetric(float64(repairs0), "repairs-joining")
	b.ReportMetric(float64(totalRepairs(nodes)-repairs0), "repairs-idle")
	perNode := float64(out1-out0) / idle.Seconds() / float64(count)
	b.ReportMetric(perNode, "gossip-B/s/node-out")
	b.ReportMetric(float64(in1-in0)/idle.Seconds()/float64(count), "gossip-B/s/node-in")
	b.ReportMetric(cpu.Seconds()/idle.Seconds()/float64(count)*100, "cpu-%/node")
	b.Logf("%d bootures: all started in %v, converged %v after the first start; idle: %.0f B/s out and %.0f B/s in per booture, %.3f%% CPU per booture",
		count, started.Round(time.Millisecond), converged.Round(time.Millisecond), perNode,
		float64(in1-in0)/idle.Seconds()/float64(count), cpu.Seconds()/idle.Seconds()/float64(count)*100)
}

// settleGossip waits until the mesh's gossip falls under 1 KB/s per
// booture over 5 s (at most three minutes), and says how long that took.
// After the last join its news still spreads for a while: each booture
// sends full packets until its queue of announcements is spent (about a
// minute with 254 bootures), and the idle figures are for a mesh at rest.
func settleGossip(nodes []*testNode) time.Duration {
	const window = 5 * time.Second
	start := time.Now()
	_, last := totalGossip(nodes)
	for time.Since(start) < 3*time.Minute {
		time.Sleep(window)
		_, out := totalGossip(nodes)
		rate := float64(out-last) / window.Seconds() / float64(len(nodes))
		last = out
		if rate < 1000 {
			break
		}
	}
	return time.Since(start)
}

// progress tells, on stderr and at once, how a long run goes (b.Logf
// prints only at the end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}

// waitConverged waits until every node's gossip lists all of them. It
// counts without copying memberlist's tables, and looks less often in a
// bigger mesh (every 50 ms for 50 bootures, 500 ms for 500): with 500
// bootures, polling Members() every 50 ms was a load of its own.
func waitConverged(b *testing.B, nodes []*testNode, start time.Time) {
	count := len(nodes)
	deadline := time.Now().Add(5 * time.Minute)
	lastLog := time.Now()
	for {
		lo, hi, done := count, 0, 0
		for _, n := range nodes {
			k := n.memberlist().NumMembers()
			lo, hi = min(lo, k), max(hi, k)
			if k == count {
				done++
			}
		}
		if done == count {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("no convergence after 5m: members seen min %d max %d; %d of %d bootures see all%s", lo, hi, done, count, missing(nodes, 3))
		}
		if time.Since(lastLog) > 5*time.Second {
			progress("after %v: members seen min %d max %d; %d of %d bootures see all%s", time.Since(start).Round(time.Second), lo, hi, done, count, missing(nodes, 3))
			lastLog = time.Now()
		}
		time.Sleep(time.Duration(count) * time.Millisecond)
	}
}

// missing tells, for up to limit bootures that do not see all the others,
// which ones they miss (up to 5 each): what a stuck run is stuck on.
func missing(nodes []*testNode, limit int) string {
	var b strings.Builder
	for _, n := range nodes {
		seen := make(map[string]bool)
		for _, m := range n.memberlist().Members() {
			seen[m.Name] = true
		}
		if len(seen) == len(nodes) {
			continue
		}
		if limit == 0 {
			b.WriteString("; ...")
			break
		}
		limit--
		var miss []string
		for _, o := range nodes {
			if name := o.cfg.Name; !seen[name] && len(miss) < 5 {
				miss = append(miss, name)
			}
		}
		fmt.Fprintf(&b, "; %s misses %s", n.cfg.Name, strings.Join(miss, " "))
	}
	return b.String()
}

func totalGossip(nodes []*testNode) (in, out uint64) {
	for _, n := range nodes {
		in += n.counters.In.Load()
		out += n.counters.Out.Load()
	}
	return in, out
}

// totalRepairs counts the full state exchanges view digests started.
func totalRepairs(nodes []*testNode) (k int64) {
	for _, n := range nodes {
		k += n.repairs.Load()
	}
	return k
}

// sigTotals adds up the signatures the nodes made and checked (sign.go).
type sigTotals struct{ checks, signs int64 }

func totalSigs(nodes []*testNode) (t sigTotals) {
	for _, n := range nodes {
		t.checks += n.verifier.checks.Load()
		t.signs += n.signs.Load()
	}
	return t
}

func (t sigTotals) minus(o sigTotals) sigTotals {
	return sigTotals{t.checks - o.checks, t.signs - o.signs}
}

// sigCost is the CPU time of one signature made and one checked.
type sigCost struct{ sign, verify time.Duration }

// of is the CPU time t's signatures took.
func (c sigCost) of(t sigTotals) time.Duration {
	return time.Duration(t.signs)*c.sign + time.Duration(t.checks)*c.verify
}

// measureSigCost measures what a signature costs in CPU, on one thread:
// timing each one in the mesh would count the waits of 2 cores shared by
// hundreds of goroutines (and other processes), not the work.
func measureSigCost() sigCost {
	priv, _ := key.NewPrivateKey()
	r := Record{Name: "n1", PublicKey: priv.Public(), Site: 1, Gen: 1}
	msg := recordMessage(&r)
	sig := sign(priv, msg, nil)
	var v verifier
	const runs = 200
	return sigCost{
		sign:   threadCPUPerRun(runs, func() { sign(priv, msg, nil) }),
		verify: threadCPUPerRun(runs, func() { v.verify(r.PublicKey, msg, sig) }),
	}
}

// threadCPUPerRun runs f runs times on one locked thread and returns the
// thread's CPU time per run, which the machine's load does not inflate as
// it does elapsed time.
func threadCPUPerRun(runs int, f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	for range runs {
		f()
	}
	return (threadCPU() - start) / time.Duration(runs)
}

// threadCPU is the CPU time of the calling thread (RUSAGE_THREAD, Linux).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
