package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
	"github.com/booture/booture/internal/memtune"
)

const peersTable = "Idle bootured vs peers (userspace WireGuard)"

// footprint measures idle RSS and CPU of bootured with 0, 20, 50, 100 and
// 200 peers, and with 250 members (with the times of member add and list).
func (b *bench) footprint() error {
	const sec = "Footprint"
	window := b.dur(20*time.Second, 8*time.Second) // measured, after restAfter
	b.note(sec, "Idle footprint: a mesh of N+1 bootures in the lab (each has N peers), formed, then left alone for %v, then measured over %v: CPU from /proc/PID/stat over that window, RSS (VmRSS, and its anonymous part RssAnon: the rest is the mapped binary) at its end, and the peak (VmHWM) over the daemon's life. "+
		"Each lab host runs its own copy of bootured, as bootures on their own machines: the daemons share none of the binary's pages, so that each one's release of its start-up code (at its first rest %v or more after start, see the README) is what it would be alone. "+
		"Here the samples are the daemons of one mesh (median and min–max across them), not repeated runs. 0 peers: three bootures that never joined anyone. Gossip is sent + received bytes per second from `status`.", restAfter, window, memtune.ReleaseDelay)
	sizes := b.peerSizes()
	rc := &Curve{ID: "rss-vs-peers", Title: "Idle bootured memory vs peers (lab, userspace WireGuard)", XLabel: "peers", YLabel: "MB", Series: []Series{{Name: "VmRSS"}, {Name: "RssAnon"}}}
	cc := &Curve{ID: "cpu-vs-peers", Title: "Idle bootured CPU vs peers (lab)", XLabel: "peers", YLabel: "% of one core", Series: []Series{{Name: "CPU"}}}
	b.curve(rc)
	b.curve(cc)
	rssS, anonS, cpuS := &rc.Series[0], &rc.Series[1], &cc.Series[0]
	for _, peers := range sizes {
		// A mesh of 200 in the lab is heavy on small machines: it needs
		// time, and it must not eat the budget of the sections after it.
		need := time.Duration(peers+1)*900*time.Millisecond + restAfter + window + 40*time.Second
		if b.left() < need+b.dur(6*time.Minute, 2*time.Minute) {
			b.note(sec, "%d peers: skipped, not enough time left in the budget (needs about %v).", peers, need.Round(time.Second))
			continue
		}
		res, err := b.idleMesh(peers, window)
		if err != nil {
			b.note(sec, "%d peers: %v", peers, err)
			logf("footprint %d peers: %v", peers, err)
			if b.ctx.Err() != nil {
				return err
			}
			continue
		}
		x := float64(peers)
		rssS.Points = append(rssS.Points, point(x, res.rss))
		anonS.Points = append(anonS.Points, point(x, res.anon))
		cpuS.Points = append(cpuS.Points, point(x, res.cpu))
		b.save()
	}
	// Above b.simAbove (-sim-above, 100) peers, one real bootured is
	// measured and its peers are played by peersim: 201 real daemons, each
	// with 200 WireGuard peers, do not fit 2 cores.
	if slices.ContainsFunc(sizes, func(p int) bool { return p > b.simAbove }) {
		b.note(sec, "Above %d peers the mesh is not made of real daemons: 201 bootured processes, each with 200 userspace WireGuard peers, do not fit a 2-core machine "+
			"(tried on 2026-11-27: memory was fine, 19 GB left, but the load average reached 350 and the inviter could not answer an invitation request within 10 s). "+
			"So one real bootured (h1) is measured, and its peers are played by `bench/cmd/peersim` in a second namespace: one process running, per peer, a real mesh node that joined with one of h1's invitations "+
			"and a real wireguard-go device whose only peer is h1 (handshakes, keepalives every 25 s, rekeys). The simulated peers carry no traffic and make no tunnels among themselves, and gossip with the wan profile (probes every 5 s), which one process of 200 of them can keep up with; h1 cannot tell them from real bootures, but receives fewer probes than in a real lan mesh. Its rest period starts once its gossip has stayed under 2 KB/s for 5 s: the simulated bootures go on converging among themselves after h1 sees them all.", b.simAbove)
	}
	return b.membersBench()
}

// peerSizes are the peer counts of the idle meshes.
func (b *bench) peerSizes() []int {
	if b.peers != nil {
		return b.peers
	}
	if b.quick {
		return []int{0, 20}
	}
	// 200 peers are simulated (see simAbove).
	return []int{0, 20, 50, 100, 200}
}

// restAfter is how long after a mesh formed its daemons are at rest:
// each released its start-up code at its first rest memtune.ReleaseDelay
// or more after its start and has read back, within seconds, the code it
// still runs.
const restAfter = memtune.ReleaseDelay + 15*time.Second

// memberRest is how long the members bench lets its lone daemon settle.
const memberRest = memtune.ReleaseDelay + 5*time.Second

type idleResult struct{ rss, anon, peak, cpu []float64 }

// idleMesh forms a mesh where every booture has peers peers, lets it idle
// and measures every real daemon.
func (b *bench) idleMesh(peers int, window time.Duration) (*idleResult, error) {
	const sec = "Footprint"
	n := peers + 1
	if peers == 0 {
		n = 3
	}
	simulated := peers > b.simAbove
	if simulated {
		n = 2 // h1 under test, h2 runs peersim
	}
	t0 := time.Now()
	l, err := b.newLab(lab.Options{Hosts: n, OwnBinary: true})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	measured := l.Hosts
	switch {
	case peers == 0:
		if err := l.StartAll(); err != nil {
			return nil, err
		}
	case simulated:
		measured = l.Hosts[:1]
		if err := b.simulatePeers(l, peers, time.Duration(60+peers)*time.Second); err != nil {
			return nil, fmt.Errorf("%d simulated peers: %w", peers, err)
		}
	default:
		if err := b.formMesh(l, time.Duration(60+peers*3/2)*time.Second); err != nil {
			return nil, fmt.Errorf("mesh of %d did not form: %w", n, err)
		}
	}
	formed := time.Since(t0)
	logf("footprint: mesh with %d peers formed in %v", peers, formed.Round(time.Second))
	if err := b.sleep(restAfter); err != nil {
		return nil, err
	}
	before, err := statuses(measured)
	if err != nil {
		return nil, err
	}
	cpu0 := make([]time.Duration, len(measured))
	for i, h := range measured {
		cpu0[i], _ = lab.ProcCPU(h.PID())
	}
	t1 := time.Now()
	if err := b.sleep(window); err != nil {
		return nil, err
	}
	dt := time.Since(t1)
	after, err := statuses(measured)
	if err != nil {
		return nil, err
	}
	res := &idleResult{}
	var gossip []float64
	for i, h := range measured {
		c, err := lab.ProcCPU(h.PID())
		if err != nil {
			return nil, err
		}
		rss, err := lab.ProcMem(h.PID(), "VmRSS")
		if err != nil {
			return nil, err
		}
		anon, _ := lab.ProcMem(h.PID(), "RssAnon")
		peak, _ := lab.ProcMem(h.PID(), "VmHWM")
		if len(after[i].Peers) != peers {
			return nil, fmt.Errorf("%s has %d peers, want %d", h.Name, len(after[i].Peers), peers)
		}
		res.rss = append(res.rss, float64(rss)/1e6)
		res.anon = append(res.anon, float64(anon)/1e6)
		res.peak = append(res.peak, float64(peak)/1e6)
		res.cpu = append(res.cpu, 100*(c-cpu0[i]).Seconds()/dt.Seconds())
		g := after[i].GossipTraffic.In + after[i].GossipTraffic.Out - before[i].GossipTraffic.In - before[i].GossipTraffic.Out
		gossip = append(gossip, float64(g)/dt.Seconds())
	}
	cmd := fmt.Sprintf("bench/run.sh -only footprint: mesh of %d in the lab, idle %v then measured over %v; /proc/PID/status and /proc/PID/stat of each bootured", n, restAfter, window)
	switch {
	case peers == 0:
		cmd = fmt.Sprintf("bench/run.sh -only footprint: %d lone bootures, idle %v then measured over %v; /proc/PID/status and /proc/PID/stat", n, restAfter, window)
	case simulated:
		cmd = fmt.Sprintf("bench/run.sh -only footprint -peers %d: one bootured (h1) whose %d peers are played by bench/cmd/peersim in h2, idle %v then measured over %v; /proc/PID/status and /proc/PID/stat of h1's bootured", peers, peers, restAfter, window)
	}
	add := func(name, unit string, v []float64) {
		f := b.figure(sec, peersTable, fmt.Sprintf("%d peers: %s", peers, name), unit, cmd)
		for _, x := range v {
			f.add(x)
		}
		if simulated {
			f.note("one real bootured; its peers simulated (peersim)")
		}
	}
	add("RSS (avg of the daemons)", "MB", res.rss)
	add("RssAnon", "MB", res.anon)
	add("peak RSS (VmHWM)", "MB", res.peak)
	add("CPU", "% of a core", res.cpu)
	add("gossip sent + received", "B/s", gossip)
	f := b.figure(sec, peersTable, fmt.Sprintf("%d peers: time to start and form the mesh", peers), "s", cmd)
	f.add(formed.Seconds())
	return res, nil
}

// simulatePeers starts h1's bootured and has peersim, in h2, join it as
// peers bootures, each with its own WireGuard device; it returns once h1
// sees them all alive, each with a WireGuard handshake, and its gossip has
// settled.
func (b *bench) simulatePeers(l *lab.Lab, peers int, timeout time.Duration) error {
	h := l.H(1)
	if err := h.Start(); err != nil {
		return err
	}
	toks, err := invite(h, peers)
	if err != nil {
		return err
	}
	tokens := filepath.Join(l.Dir, "peersim-tokens")
	if err := os.WriteFile(tokens, []byte(strings.Join(toks, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(l.Dir, "peersim.log")
	p, err := l.H(2).Spawn(logPath, nil, b.bin.Path("peersim"), "-addr", l.H(2).IP.String(),
		"-tokens", tokens, "-target", h.Name, "-state", filepath.Join(l.Dir, "peersim"))
	if err != nil {
		return err
	}
	l.OnClose(p)
	deadline := time.Now().Add(timeout)
	for {
		up := 0
		if st, err := status(h); err == nil {
			for _, peer := range st.Peers {
				if peer.State == "alive" && peer.LastHandshake != nil {
					up++
				}
			}
		}
		if up == peers {
			return b.gossipSettled(h, 2000, time.Until(deadline)+time.Minute)
		}
		if p.Exited() {
			data, _ := os.ReadFile(logPath)
			return fmt.Errorf("peersim ended: %s", tail(string(data), 3))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v, %d of %d peers alive with a handshake", timeout, up, peers)
		}
		if err := b.sleep(2 * time.Second); err != nil {
			return err
		}
	}
}

// gossipSettled waits until h's gossip traffic (sent + received) stays
// under maxRate bytes/s over 5 s: a big simulated mesh is still converging
// among its own nodes (full-state exchanges with h) well after h sees
// them all, and a daemon is at rest only once that is over.
func (b *bench) gossipSettled(h *lab.Host, maxRate float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	total := func() (uint64, error) {
		st, err := status(h)
		return st.GossipTraffic.In + st.GossipTraffic.Out, err
	}
	for {
		g0, err := total()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := b.sleep(5 * time.Second); err != nil {
			return err
		}
		g1, err := total()
		if err != nil {
			return err
		}
		rate := float64(g1-g0) / time.Since(t0).Seconds()
		if rate < maxRate {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip of %s still at %.0f B/s after %v", h.Name, rate, timeout)
		}
	}
}

// membersBench adds 250 members through the CLI, timing each add, then
// times member list, and measures the daemon with them.
func (b *bench) membersBench() error {
	const sec = "Footprint"
	const table = "Members"
	count := 250
	if b.quick {
		count = 60
	}
	l, err := b.newLab(lab.Options{Hosts: 1, OwnBinary: true})
	if err != nil {
		return err
	}
	defer l.Close()
	h := l.H(1)
	if err := h.Start(); err != nil {
		return err
	}
	// At rest: after the daemon released its start-up code.
	b.sleep(memberRest)
	rss0, _ := lab.ProcMem(h.PID(), "VmRSS")
	fAdd := b.figure(sec, table, "member add, end to end (CLI)", "ms", "ip netns exec h1 booture --socket SOCK member add mNNN (one at a time, each timed)")
	for i := range count {
		t0 := time.Now()
		r := h.CLI("member", "add", fmt.Sprintf("m%03d", i))
		if err := r.Error(); err != nil {
			fAdd.fail(err)
			return err
		}
		fAdd.add(float64(time.Since(t0).Microseconds()) / 1000)
	}
	fAdd.note(fmt.Sprintf("%d adds; samples are the adds; state dir on the machine's disk (the add fsyncs)", count))
	// The CLI's own start-up, for scale: status is the cheapest call.
	fStat := b.figure(sec, table, "booture status (CLI, for comparison: process start + one API call)", "ms", "ip netns exec h1 booture --socket SOCK status --json")
	for range 10 {
		t0 := time.Now()
		if err := h.CLI("status", "--json").Error(); err != nil {
			return err
		}
		fStat.add(float64(time.Since(t0).Microseconds()) / 1000)
	}
	for _, args := range [][]string{{"member", "list", "--json"}, {"member", "list"}} {
		name := fmt.Sprintf("booture %s with %d members (CLI)", joinArgs(args), count)
		if args[len(args)-1] == "--json" {
			name = fmt.Sprintf("member list --json with %d members (CLI)", count)
			if count == 250 {
				name = "member list --json with 250 members (CLI)"
			}
		}
		f := b.figure(sec, table, name, "ms", "ip netns exec h1 booture --socket SOCK "+joinArgs(args))
		for range 10 {
			t0 := time.Now()
			r := h.CLI(args...)
			if err := r.Error(); err != nil {
				return err
			}
			f.add(float64(time.Since(t0).Microseconds()) / 1000)
			if args[len(args)-1] == "--json" {
				var ms []api.Member
				if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil || len(ms) != count {
					return fmt.Errorf("member list: %d members (%v)", len(ms), err)
				}
			}
		}
	}
	// The API call alone (no CLI process).
	fAPI := b.figure(sec, table, fmt.Sprintf("GET members through the admin API with %d members (no CLI process)", count), "ms", "api.Client.Members on the admin socket")
	for range 20 {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := h.Client().Members(ctx)
		cancel()
		if err != nil {
			return err
		}
		fAPI.add(float64(time.Since(t0).Microseconds()) / 1000)
	}
	b.sleep(b.dur(10*time.Second, 4*time.Second))
	cpu0, _ := lab.ProcCPU(h.PID())
	t1 := time.Now()
	b.sleep(b.dur(10*time.Second, 4*time.Second))
	cpu1, _ := lab.ProcCPU(h.PID())
	rss1, _ := lab.ProcMem(h.PID(), "VmRSS")
	name := fmt.Sprintf("RSS with %d members", count)
	cmd := fmt.Sprintf("VmRSS of bootured (no peer) after %d member adds", count)
	b.figure(sec, table, "RSS with no member", "MB", fmt.Sprintf("VmRSS of bootured (no peer), %v after start", memberRest)).add(float64(rss0) / 1e6)
	b.figure(sec, table, name, "MB", cmd).add(float64(rss1) / 1e6)
	b.figure(sec, table, fmt.Sprintf("idle CPU with %d members", count), "% of a core", cmd+", over 10 s").add(100 * (cpu1 - cpu0).Seconds() / time.Since(t1).Seconds())
	return nil
}

func joinArgs(a []string) string { return shellJoin(a) }
