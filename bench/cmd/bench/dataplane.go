package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/booture/booture/internal/lab"
)

// path is a way from h1 to h2 that the data-plane benchmarks measure.
type path struct {
	name string
	dst  string // h2's address on that path
}

// standaloneWG is a hand-configured WireGuard tunnel between h1 and h2
// made by a standalone wireguard-go process on each side.
type standaloneWG struct {
	label  string
	ifaces [2]string
	addrs  [2]string
}

// startStandaloneWG runs prog (a wireguard-go binary) in h1 and h2 and
// configures a tunnel between them by hand with wg(8) and ip(8): ports
// port and port+1, tunnel addresses 203.0.113.(base+1) and (base+2)/28 (a
// documentation range), MTU mtu (the daemon's default, for a fair
// comparison).
func (b *bench) startStandaloneWG(l *lab.Lab, label, prog string, tag byte, port, base, mtu int) (*standaloneWG, []string, error) {
	hs := [2]*lab.Host{l.H(1), l.H(2)}
	w := &standaloneWG{label: label}
	var cmds []string
	var pubs [2]string
	var keyFiles [2]string
	for i, h := range hs {
		w.ifaces[i] = fmt.Sprintf("%sx%c%d", l.Prefix(), tag, i+1)
		w.addrs[i] = fmt.Sprintf("203.0.113.%d", base+i+1)
		p, err := h.Spawn(b.logPath(w.ifaces[i]), []string{"WG_PROCESS_FOREGROUND=1"}, prog, "-f", w.ifaces[i])
		if err != nil {
			return nil, nil, err
		}
		l.OnClose(p)
		sock := filepath.Join("/var/run/wireguard", w.ifaces[i]+".sock")
		if err := lab.Eventually(b.ctx, 10*time.Second, 50*time.Millisecond, func() error {
			if p.Exited() {
				return fmt.Errorf("%s exited: %s", prog, readTail(p.Log))
			}
			_, err := os.Stat(sock)
			return err
		}); err != nil {
			return nil, nil, err
		}
		priv, pub, err := lab.GenKey()
		if err != nil {
			return nil, nil, err
		}
		pubs[i] = pub
		keyFiles[i] = filepath.Join(b.tmp, w.ifaces[i]+".key")
		if err := os.WriteFile(keyFiles[i], []byte(priv+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
		cmds = append(cmds, nsCmd(h.Name, prog, "-f", "IFACE"))
	}
	for i, h := range hs {
		o := 1 - i
		steps := [][]string{
			{"wg", "set", w.ifaces[i], "listen-port", fmt.Sprint(port + i), "private-key", keyFiles[i],
				"peer", pubs[o], "endpoint", fmt.Sprintf("%s:%d", hs[o].IP, port+o), "allowed-ips", w.addrs[o] + "/32"},
			{"ip", "addr", "add", w.addrs[i] + "/28", "dev", w.ifaces[i]},
			{"ip", "link", "set", w.ifaces[i], "mtu", fmt.Sprint(mtu), "up"},
		}
		for _, s := range steps {
			if _, err := nsRun(&h.NS, 10*time.Second, s...); err != nil {
				return nil, nil, err
			}
		}
	}
	cmds = append(cmds, "wg set IFACE listen-port P private-key KEY peer PUB endpoint OTHER:P allowed-ips OTHER_TUNNEL/32",
		"ip addr add TUNNEL/28 dev IFACE", fmt.Sprintf("ip link set IFACE mtu %d up", mtu))
	return w, cmds, nil
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 5)
}

// dataPlane measures TCP throughput and latency between two bootures.
func (b *bench) dataPlane() error {
	const sec = "Data plane"
	// iperf3's port is opened to the mesh: the daemon's filter lets
	// nothing else than the gateway's ports through the tunnel to a host.
	l, err := b.newLab(lab.Options{Hosts: 2, DaemonArgs: []string{"--mesh-tcp-port", "5201"}})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := b.formMesh(l, 60*time.Second); err != nil {
		return err
	}
	h1, h2 := l.H(1), l.H(2)
	sts, err := statuses(l.Hosts)
	if err != nil {
		return err
	}
	mtu := sts[0].WireGuard.MTU
	b.note(sec, "Two bootures (h1, h2) in network namespaces on a bridge (veth, MTU %d); bootured in %s WireGuard mode, tunnel MTU %d (its default: underlay − 80). "+
		"iperf3 runs from h1 to a server in h2; every client and server and every WireGuard process share the machine's %d cores, so these are CPU-bound figures. "+
		"The paths are measured round by round, interleaved (raw, embedded, standalone...), and ratios are computed per round.",
		lab.MTU, sts[0].WireGuard.Mode, mtu, b.res.Machine.Cores)
	srv, err := h2.Spawn(b.logPath("iperf3-server"), nil, "iperf3", "-s", "-p", "5201")
	if err != nil {
		return err
	}
	l.OnClose(srv)

	up, upCmds, err := b.startStandaloneWG(l, "upstream", b.bin.Path("wireguard-go-upstream"), 'u', 51901, 0, mtu)
	if err != nil {
		return fmt.Errorf("standalone upstream wireguard-go: %w", err)
	}
	deb, _, err := b.startStandaloneWG(l, "debian", "wireguard-go", 'd', 51911, 16, mtu)
	if err != nil {
		return fmt.Errorf("standalone Debian wireguard-go: %w", err)
	}
	b.note(sec, "Standalone WireGuard (same hosts, same MTU %d, configured by hand): %s. "+
		"\"upstream\" is golang.zx2c4.com/wireguard at the version go.mod pins (the code bootured embeds), built as its own program; \"Debian\" is Debian 12's wireguard-go package (0.0.20220316, without the later GSO/GRO offloads).",
		mtu, strings.Join(upCmds, "; "))

	paths := []path{
		{"raw veth (the limit)", h2.IP.String()},
		{"bootured embedded wireguard-go", sts[1].MeshIPv4},
		{"standalone wireguard-go (upstream, go.mod version)", up.addrs[1]},
		{"standalone wireguard-go (Debian 0.0.20220316)", deb.addrs[1]},
	}
	// A path that never answers is recorded as failed, with what
	// WireGuard says, and left out of the rounds.
	dead := map[string]error{}
	for _, p := range paths {
		t0 := time.Now()
		if err := b.waitPing(&h1.NS, p.dst, 60*time.Second); err != nil {
			if b.ctx.Err() != nil {
				return err
			}
			var diag []string
			for _, h := range []*lab.Host{h1} { // wg show all lists every namespace's userspace interfaces
				if out, _ := nsRun(&h.NS, 5*time.Second, "wg", "show", "all", "transfer"); out != "" {
					var mine []string
					for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
						if strings.HasPrefix(line, l.Prefix()) {
							mine = append(mine, strings.Replace(line, l.Prefix(), "", 1))
						}
					}
					diag = append(diag, "`wg show all transfer` (interface without the lab prefix, peer, rx bytes, tx bytes): "+strings.Join(mine, "; "))
				}
			}
			dead[p.name] = fmt.Errorf("no ping reply from %s within 60 s: %s", p.dst, strings.Join(diag, " — "))
			b.note(sec, "**%s: no ping reply within 60 s**, so no figure: %s", p.name, strings.Join(diag, " — "))
			logf("data plane: %s: %v", p.name, dead[p.name])
			continue
		}
		logf("data plane: %s answers pings after %s", p.name, seconds(time.Since(t0)))
	}
	secs := int(b.dur(5*time.Second, 3*time.Second).Seconds())
	rounds := b.rounds(3, 1)

	// Throughput and latency, no loss.
	tput := map[string]*Figure{}
	for r := 0; r < rounds; r++ {
		for _, p := range paths {
			f := b.figure(sec, "TCP throughput h1 → h2, no loss", p.name, "Mbit/s", iperfCmd("h1", p.dst, secs))
			tput[p.name] = f
			if err := dead[p.name]; err != nil {
				if r == 0 {
					f.fail(err)
				}
				continue
			}
			mbps, _, err := iperf(&h1.NS, p.dst, secs)
			if err != nil {
				f.fail(err)
				continue
			}
			f.add(mbps)
		}
	}
	raw, emb, upf, debf := tput[paths[0].name], tput[paths[1].name], tput[paths[2].name], tput[paths[3].name]
	addRatio := func(table, name string, a, bb *Figure) {
		f := b.figure(sec, table, name, "ratio", "per round: "+a.Name+" / "+bb.Name)
		for _, v := range ratios(a.Samples, bb.Samples) {
			f.add(v)
		}
	}
	const rt = "Throughput ratios (same rounds)"
	addRatio(rt, "embedded / raw veth", emb, raw)
	addRatio(rt, "embedded / standalone upstream (target ≥ 1)", emb, upf)
	addRatio(rt, "embedded / standalone Debian", emb, debf)
	addRatio(rt, "standalone upstream / standalone Debian", upf, debf)

	count := b.rounds(200, 100)
	for r := 0; r < rounds; r++ {
		for _, p := range paths {
			f := b.figure(sec, "Latency h1 → h2 (ping, idle link)", p.name, "ms avg RTT", nsCmd("h1", pingArgs(p.dst, count, 5*time.Millisecond)...))
			if dead[p.name] != nil {
				continue
			}
			avg, _, err := ping(&h1.NS, p.dst, count, 5*time.Millisecond)
			if err != nil {
				f.fail(err)
				continue
			}
			f.add(avg)
		}
	}

	// Loss on the underlay.
	var lossPaths []path
	for _, p := range paths[:2] {
		if dead[p.name] == nil {
			lossPaths = append(lossPaths, p)
		}
	}
	for _, pct := range []int{1, 5} {
		table := fmt.Sprintf("Underlay loss %d %% each way (nftables numgen random drop on h1's and h2's eth0 egress)", pct)
		for _, h := range []*lab.Host{h1, h2} {
			if err := h.SetEgressLoss("eth0", pct); err != nil {
				return err
			}
		}
		for r := 0; r < rounds; r++ {
			for _, p := range lossPaths {
				f := b.figure(sec, table, "throughput, "+p.name, "Mbit/s", iperfCmd("h1", p.dst, secs))
				mbps, _, err := iperf(&h1.NS, p.dst, secs)
				if err != nil {
					f.fail(err)
				} else {
					f.add(mbps)
				}
				fl := b.figure(sec, table, "latency, "+p.name, "ms avg RTT", nsCmd("h1", pingArgs(p.dst, count, 5*time.Millisecond)...))
				fr := b.figure(sec, table, "ping loss, "+p.name, "% lost", nsCmd("h1", pingArgs(p.dst, count, 5*time.Millisecond)...))
				avg, loss, err := ping(&h1.NS, p.dst, count, 5*time.Millisecond)
				if err != nil {
					fl.fail(err)
				} else {
					fl.add(avg)
				}
				fr.add(loss)
			}
		}
		for _, h := range []*lab.Host{h1, h2} {
			if err := h.SetEgressLoss("eth0", 0); err != nil {
				return err
			}
		}
		if len(lossPaths) == 2 {
			t := b.figure(sec, table, "throughput, "+lossPaths[1].name, "", "")
			rr := b.figure(sec, table, "throughput, "+lossPaths[0].name, "", "")
			f := b.figure(sec, table, "throughput ratio embedded / raw", "ratio", "per round")
			for _, v := range ratios(t.Samples, rr.Samples) {
				f.add(v)
			}
		}
	}
	b.note(sec, "This kernel has no netem: loss is an nftables rule (`meta ... numgen random mod 100 < N drop` on eth0 egress, all protocols) on both hosts, so each direction loses N %% and a ping round trip about 2N %%. No delay could be added (netem is what adds delay), so all latencies are the machine's own.")

	// Bandwidth cap.
	const rate, rateMbit = "50mbit", 50.0
	table := "Under a bandwidth cap (tc tbf rate " + rate + " burst 64kb latency 50ms on h1's eth0)"
	if err := h1.SetRate("eth0", rate); err != nil {
		return err
	}
	capRaw, capEmb := &Figure{}, &Figure{}
	for r := 0; r < rounds; r++ {
		for i, p := range lossPaths {
			f := b.figure(sec, table, "throughput, "+p.name, "Mbit/s", "ip netns exec h1 tc qdisc add dev eth0 root tbf rate "+rate+" burst 64kb latency 50ms; "+iperfCmd("h1", p.dst, secs))
			if i == 0 {
				capRaw = f
			} else {
				capEmb = f
			}
			mbps, _, err := iperf(&h1.NS, p.dst, secs)
			if err != nil {
				f.fail(err)
				continue
			}
			f.add(mbps)
		}
	}
	if err := h1.SetRate("eth0", ""); err != nil {
		return err
	}
	fr := b.figure(sec, table, "embedded / raw (the tunnel's overhead under a cap)", "ratio", "per round")
	for _, v := range ratios(capEmb.Samples, capRaw.Samples) {
		fr.add(v)
	}
	fc := b.figure(sec, table, "embedded / cap", "ratio", "median throughput / "+rate)
	for _, v := range capEmb.Samples {
		fc.add(v / rateMbit)
	}

	if err := dead[paths[1].name]; err != nil {
		b.note(sec, "MTU choice: not measured, the embedded data plane passes no traffic.")
		return nil
	}
	// MTU choice: restart both bootures with --mtu.
	mtuTable := fmt.Sprintf("MTU choice on a %d-byte underlay (bootured --mtu, TCP h1 → h2 through the mesh)", lab.MTU)
	mc := &Curve{ID: "mtu", Title: "TCP throughput through the mesh vs tunnel MTU (underlay 1400)", XLabel: "bootured --mtu", YLabel: "Mbit/s", Series: []Series{{Name: "embedded wireguard-go"}}}
	b.curve(mc)
	mtuCurve := &mc.Series[0]
	for _, m := range []int{1280, mtu, 1420} {
		args := []string{"--mtu", fmt.Sprint(m)}
		name := fmt.Sprintf("--mtu %d", m)
		if m == mtu {
			args, name = nil, fmt.Sprintf("default (%d)", m)
		}
		for _, h := range l.Hosts {
			h.Args = args
			if err := h.Restart(); err != nil {
				return err
			}
		}
		mtuFlag := strings.Join(args, " ")
		if mtuFlag == "" {
			mtuFlag = "(no --mtu)"
		}
		f := b.figure(sec, mtuTable, name, "Mbit/s", "bootured "+mtuFlag+" on h1 and h2, restarted; "+iperfCmd("h1", sts[1].MeshIPv4, secs))
		if err := lab.Eventually(b.ctx, 60*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) }); err != nil {
			f.fail(err)
			continue
		}
		if err := b.waitPing(&h1.NS, sts[1].MeshIPv4, 30*time.Second); err != nil {
			f.fail(err)
			continue
		}
		// A big ping with DF set tells whether full-size tunnel packets
		// cross the underlay.
		df := b.figure(sec, mtuTable, name+": full-size ping (DF) through the tunnel", "% lost",
			nsCmd("h1", "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", "-M", "do", "-s", fmt.Sprint(m-28), sts[1].MeshIPv4))
		out, _ := nsRun(&h1.NS, 20*time.Second, "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", "-M", "do", "-s", fmt.Sprint(m-28), sts[1].MeshIPv4)
		if mm := pingLoss.FindStringSubmatch(out); mm != nil {
			var s, rcv float64
			fmt.Sscan(mm[1], &s)
			fmt.Sscan(mm[2], &rcv)
			df.add(100 * (s - rcv) / s)
		} else {
			df.fail(fmt.Errorf("ping: %s", tail(out, 2)))
		}
		for r := 0; r < rounds; r++ {
			mbps, _, err := iperf(&h1.NS, sts[1].MeshIPv4, secs)
			if err != nil {
				f.fail(err)
				continue
			}
			f.add(mbps)
		}
		if len(f.Samples) > 0 {
			mtuCurve.Points = append(mtuCurve.Points, point(float64(m), f.Samples))
		}
	}
	for _, h := range l.Hosts {
		h.Args = nil
	}
	return nil
}
