package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/booture/booture/internal/lab"
)

const joinTable = "Join convergence (all joins at once, through h1's invitations)"

// controlPlane measures join convergence for 3, 10 and 20 bootures, the
// time to mark a killed booture dead, and the time to re-form after a
// partition of half the mesh.
func (b *bench) controlPlane() error {
	const sec = "Control plane"
	sizes := []int{3, 10, 20}
	if b.quick {
		sizes = []int{3, 10}
	}
	rounds := b.rounds(3, 1)
	b.note(sec, "Join convergence: a fresh lab per run; h1 starts first, then the others; h1 makes one invitation per booture; then every other booture runs `booture join TOKEN` at the same moment. "+
		"*WireGuard peers* is the time from the joins until every booture's WireGuard interface has a peer for each other booture (a booture only has a peer for a booture gossip shows up); the bench reads the interfaces through their control sockets every %v, which costs the daemons little. "+
		"*First packet* is measured from the moment the last `booture join` answered: every booture sends a UDP datagram to every other's mesh IPv4 every %v until it answers, and each notes when the first datagram from each other one arrives; *both ways, every pair* is when the last of these first arrivals happened (each of the N×(N−1) directions has passed traffic), *after configured on both sides* is, per direction, the arrival minus the moment both bootures of the pair had each other as a WireGuard peer (as the poll saw it: up to %v late), over every direction of every run. "+
		"Everything (daemons, probes, polls) shares %d cores.", peerPoll, probeEvery, peerPoll, b.res.Machine.Cores)
	jc := &Curve{ID: "join-convergence", Title: "Join convergence vs number of bootures (namespace lab)", XLabel: "bootures", YLabel: "seconds",
		Series: []Series{{Name: "every WireGuard peer configured (from the joins)"}, {Name: "first packet both ways, every pair (from the last join answer)"}}}
	b.curve(jc)
	peersSeries, firstSeries := &jc.Series[0], &jc.Series[1]
	var kept *lab.Lab
	defer func() {
		if kept != nil {
			kept.Close()
		}
	}()
	for _, n := range sizes {
		cmd := fmt.Sprintf("bench/run.sh -only control: %d hosts; h1: booture invite ×%d; h2..h%d: booture join TOKEN at once", n, n-1, n)
		fp := b.figure(sec, joinTable, fmt.Sprintf("%d bootures: every WireGuard peer configured", n), "s", cmd+"; poll the WireGuard interfaces")
		fa := b.figure(sec, joinTable, fmt.Sprintf("%d bootures: first packet both ways, every pair", n), "s", cmd+"; UDP probes between all mesh IPv4s, from the last join answer")
		fc := b.figure(sec, joinTable, fmt.Sprintf("%d bootures: first packet after configured on both sides, per direction", n), "ms", cmd+"; UDP probes; arrival − both WireGuard peers seen")
		var after []float64
		for r := 0; r < rounds; r++ {
			l, jr, err := b.joinOnce(n)
			if err != nil && jr.peers == 0 {
				fp.fail(err)
				if l != nil {
					l.Close()
				}
				if b.ctx.Err() != nil {
					return err
				}
				continue
			}
			fp.add(jr.peers.Seconds())
			if err != nil {
				fa.fail(err)
			} else {
				fa.add(jr.firstPacket.Seconds())
				for _, d := range jr.afterConfigured {
					after = append(after, float64(d)/float64(time.Millisecond))
				}
			}
			if n == 10 && r == rounds-1 {
				kept = l
			} else {
				l.Close()
			}
		}
		// One sample per direction of every run: the spread is over pairs.
		for _, v := range after {
			fc.add(v)
		}
		if len(fp.Samples) > 0 {
			peersSeries.Points = append(peersSeries.Points, point(float64(n), fp.Samples))
		}
		if len(fa.Samples) > 0 {
			firstSeries.Points = append(firstSeries.Points, point(float64(n), fa.Samples))
		}
	}
	b.save()
	if kept == nil {
		return fmt.Errorf("no 10-booture mesh for the dead-detection and partition benchmarks")
	}
	if err := b.deadDetection(kept); err != nil {
		return err
	}
	b.save()
	return b.partition(kept)
}

const (
	// peerPoll is how often the join benchmark reads the WireGuard
	// interfaces, probeEvery how often a probe is sent again.
	peerPoll   = 20 * time.Millisecond
	probeEvery = 10 * time.Millisecond
)

// joinRun is what one join convergence measured.
type joinRun struct {
	// peers: from the joins until every booture has every other as a
	// WireGuard peer.
	peers time.Duration
	// firstPacket: from the last join answer until a datagram has passed
	// in each direction between every two bootures.
	firstPacket time.Duration
	// afterConfigured: per direction, the first arrival minus when both
	// bootures of the pair had each other as a WireGuard peer.
	afterConfigured []time.Duration
}

// joinOnce makes a lab of n hosts and measures one join convergence.
func (b *bench) joinOnce(n int) (*lab.Lab, joinRun, error) {
	var jr joinRun
	l, err := b.newLab(lab.Options{Hosts: n})
	if err != nil {
		return nil, jr, err
	}
	if err := startFounderFirst(l, 8); err != nil {
		return l, jr, err
	}
	toks, err := invite(l.H(1), n-1)
	if err != nil {
		return l, jr, err
	}
	before, err := statuses(l.Hosts)
	if err != nil {
		return l, jr, err
	}
	keys := make([]string, n)
	for i, st := range before {
		keys[i] = st.PublicKey
	}
	time.Sleep(time.Second) // let the starts settle
	t0 := time.Now()
	watch, err := lab.WatchPeers(l.Hosts, keys, peerPoll, t0)
	if err != nil {
		return l, jr, err
	}
	defer watch.Close()
	addrs := make([]netip.Addr, n)
	addrs[0], err = netip.ParseAddr(before[0].MeshIPv4)
	if err != nil {
		return l, jr, fmt.Errorf("h1's mesh address: %w", err)
	}
	var mu sync.Mutex
	var lastJoin time.Time
	err = parallel(n-1, n, func(i int) error {
		h := l.Hosts[i+1]
		if err := h.Join(toks[i]); err != nil {
			return err
		}
		mu.Lock()
		lastJoin = time.Now()
		mu.Unlock()
		st, err := status(h)
		if err != nil {
			return err
		}
		addrs[i+1], err = netip.ParseAddr(st.MeshIPv4)
		if err != nil {
			return fmt.Errorf("%s's mesh address: %w", h.Name, err)
		}
		return nil
	})
	if err != nil {
		return l, jr, err
	}
	probes, err := lab.StartProbes(l.Hosts, addrs, probeEvery, lastJoin)
	if err != nil {
		return l, jr, err
	}
	defer probes.Close()
	perr := probes.Wait(b.ctx, 30*time.Second)
	probes.Close()
	// Every peer configured: the poll has seen all by now unless the mesh
	// did not converge.
	if err := lab.Eventually(b.ctx, 60*time.Second, 100*time.Millisecond, func() error {
		for i, row := range watch.Configured() {
			for j, at := range row {
				if i != j && at == 0 {
					return fmt.Errorf("%s has no WireGuard peer for %s", l.Hosts[i].Name, l.Hosts[j].Name)
				}
			}
		}
		return nil
	}); err != nil {
		return l, jr, err
	}
	conf := watch.Configured()
	arr := probes.Arrivals()
	started := probes.Started()
	for i := range n {
		for j := range n {
			if i != j {
				jr.peers = max(jr.peers, conf[i][j])
			}
		}
	}
	if perr != nil {
		return l, jr, fmt.Errorf("first packets: %w", perr)
	}
	// conf counts from t0, arrivals from the last join answer.
	shift := lastJoin.Sub(t0)
	type direction struct {
		name             string
		arrival, after   time.Duration
		fromConf, toConf time.Duration
	}
	var dirs []direction
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			jr.firstPacket = max(jr.firstPacket, arr[i][j])
			// From when both had the peer, or when i first sent if later
			// (the probes start once every join has answered).
			both := max(conf[i][j]-shift, conf[j][i]-shift, started[i])
			after := max(0, arr[i][j]-both)
			jr.afterConfigured = append(jr.afterConfigured, after)
			dirs = append(dirs, direction{l.Hosts[i].Name + "→" + l.Hosts[j].Name, arr[i][j], after, conf[i][j] - shift, conf[j][i] - shift})
		}
	}
	if err := lab.Eventually(b.ctx, 30*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) }); err != nil {
		return l, jr, err
	}
	slices.SortFunc(dirs, func(a, b direction) int { return int(b.arrival - a.arrival) })
	var slow []string
	for _, d := range dirs[:min(3, len(dirs))] {
		slow = append(slow, fmt.Sprintf("%s at %s (peers configured at %s and %s, %s after both)", d.name, ms(d.arrival), ms(d.fromConf), ms(d.toConf), ms(d.after)))
	}
	logf("join convergence, %d bootures: WireGuard peers %s from the joins; the last join answered %s after them; probes sent from %s after it; first packet both ways, every pair %s after it (slowest: %s)",
		n, seconds(jr.peers), seconds(shift), ms(slices.Min(started)), seconds(jr.firstPacket), strings.Join(slow, "; "))
	return l, jr, nil
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// deadDetection kills the last booture of l with kill -9 and measures how
// long the others take to show it dead.
func (b *bench) deadDetection(l *lab.Lab) error {
	const sec = "Control plane"
	n := len(l.Hosts)
	table := fmt.Sprintf("Dead detection (kill -9 of one booture of %d, lan profile)", n)
	victim, observers := l.Hosts[n-1], l.Hosts[:n-1]
	cmd := fmt.Sprintf("kill -9 bootured of h%d; poll the admin API of h1..h%d every 50 ms", n, n-1)
	ff := b.figure(sec, table, "first observer sees it dead", "s", cmd)
	fl := b.figure(sec, table, "last observer sees it dead", "s", cmd)
	for r := 0; r < b.rounds(5, 2); r++ {
		if err := lab.Eventually(b.ctx, 60*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) }); err != nil {
			return err
		}
		b.sleep(2 * time.Second)
		t0 := time.Now()
		if err := victim.Kill(); err != nil {
			return err
		}
		first, last, err := lab.WaitDead(b.ctx, t0, 50*time.Millisecond, victim, observers)
		if err != nil {
			ff.fail(err)
		} else {
			ff.add(first.Seconds())
			fl.add(last.Seconds())
			logf("dead detection: first %.2fs, last %.2fs", first.Seconds(), last.Seconds())
		}
		if err := victim.Start(); err != nil {
			return err
		}
	}
	return nil
}

// partition cuts the mesh in two halves (nftables drops between their
// underlay addresses), keeps them apart, adds a member on each side,
// restores the link and measures how long the mesh takes to re-form. It
// reports a fault drill too: nothing may be lost.
func (b *bench) partition(l *lab.Lab) error {
	const sec = "Control plane"
	const table = "Partition of half the mesh, then restore"
	n := len(l.Hosts)
	a, bb := l.Hosts[:n/2], l.Hosts[n/2:]
	cut := b.dur(60*time.Second, 15*time.Second)
	cmd := fmt.Sprintf("nft drop between h1..h%d and h%d..h%d (underlay, both ways) for %v; then delete the rule", n/2, n/2+1, n, cut)
	fSplit := b.figure(sec, table, "split seen by every booture (other half not alive)", "s", cmd)
	fPeers := b.figure(sec, table, "re-form: every peer alive + WireGuard peer", "s", cmd+"; poll status + wg show every 100 ms")
	fPing := b.figure(sec, table, "re-form: pings pass (star + ring)", "s", cmd+"; ping mesh IPv4s")
	d := &Drill{Name: "Partition of half the mesh", Command: "bench/run.sh -only control",
		What: fmt.Sprintf("A mesh of %d bootures is cut in two halves of %d for %v, %d times: a member is added on each side during the cut; then the link comes back.", n, n/2, cut, b.rounds(3, 1))}
	t0d := time.Now()
	defer func() {
		d.Seconds = time.Since(t0d).Seconds()
		d.OK = true
		for _, c := range d.Checked {
			d.OK = d.OK && c.OK
		}
		b.drill(d)
	}()
	check := func(what string, err error, detail string) {
		c := Check{What: what, OK: err == nil, Detail: detail}
		if err != nil {
			c.Detail = strings.TrimSpace(detail + " " + err.Error())
		}
		d.Checked = append(d.Checked, c)
	}
	var aAddrs []netip.Addr
	for _, h := range a {
		aAddrs = append(aAddrs, h.IP)
	}
	for r := 0; r < b.rounds(3, 1); r++ {
		if err := lab.Eventually(b.ctx, 60*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) }); err != nil {
			return err
		}
		before, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		for _, h := range bb {
			if err := h.Block(aAddrs...); err != nil {
				return err
			}
		}
		t0 := time.Now()
		err = lab.Eventually(b.ctx, 60*time.Second, 200*time.Millisecond, func() error {
			return parallel(n, n, func(i int) error {
				h := l.Hosts[i]
				other := bb
				if i >= n/2 {
					other = a
				}
				st, err := status(h)
				if err != nil {
					return err
				}
				for _, o := range other {
					if p, ok := lab.FindPeer(st, o.Name); ok && p.State == "alive" {
						return fmt.Errorf("%s still sees %s alive", h.Name, o.Name)
					}
				}
				return nil
			})
		})
		if err != nil {
			fSplit.fail(err)
		} else {
			fSplit.add(time.Since(t0).Seconds())
		}
		// Each side keeps working: a mesh of its own, and members can be added.
		check(fmt.Sprintf("round %d: each half stays a full mesh during the cut", r+1),
			errors.Join(lab.Eventually(b.ctx, 30*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(a...) }),
				lab.Eventually(b.ctx, 30*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(bb...) })), "")
		ma, mb := fmt.Sprintf("part-a-%d", r+1), fmt.Sprintf("part-b-%d", r+1)
		check(fmt.Sprintf("round %d: member add on each side during the cut", r+1),
			errors.Join(a[0].CLI("member", "add", ma).Error(), bb[len(bb)-1].CLI("member", "add", mb).Error()), ma+" on h1, "+mb+" on h"+fmt.Sprint(n))
		if err := b.sleep(time.Until(t0.Add(cut))); err != nil {
			return err
		}
		for _, h := range bb {
			if err := h.Block(); err != nil {
				return err
			}
		}
		t1 := time.Now()
		err = lab.Eventually(b.ctx, 120*time.Second, 100*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) })
		if err != nil {
			fPeers.fail(err)
			check(fmt.Sprintf("round %d: mesh re-forms within 120 s", r+1), err, "")
			continue
		}
		fPeers.add(time.Since(t1).Seconds())
		sts, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		if err := pingStarAndRing(l.Hosts, sts, 60*time.Second); err != nil {
			fPing.fail(err)
		} else {
			fPing.add(time.Since(t1).Seconds())
		}
		logf("partition round %d: split seen %v, re-formed %.2fs", r+1, fSplit.Samples, time.Since(t1).Seconds())
		// Nothing lost: same sites and keys, no conflict, the members.
		var lost []string
		for i, st := range sts {
			if st.Site != before[i].Site || st.PublicKey != before[i].PublicKey || st.MeshID != before[i].MeshID {
				lost = append(lost, fmt.Sprintf("%s: site %d→%d key changed %v mesh changed %v", st.Name, before[i].Site, st.Site, st.PublicKey != before[i].PublicKey, st.MeshID != before[i].MeshID))
			}
			if len(st.Conflicts) > 0 {
				lost = append(lost, fmt.Sprintf("%s: conflicts %+v", st.Name, st.Conflicts))
			}
		}
		check(fmt.Sprintf("round %d: sites, keys and mesh id unchanged, no site conflict", r+1), errIf(len(lost) > 0, strings.Join(lost, "; ")), fmt.Sprintf("re-formed in %.1f s", fPeers.Samples[len(fPeers.Samples)-1]))
		check(fmt.Sprintf("round %d: the members added during the cut are there", r+1),
			errors.Join(hasMember(a[0], ma), hasMember(bb[len(bb)-1], mb)), "")
	}
	if len(fPeers.Samples) > 0 {
		d.Found = append(d.Found, fmt.Sprintf("the split is seen everywhere in %s s (median) and the mesh re-forms %s s (median) after the link returns; pings pass after %s s",
			fmtNum(fSplit.Median), fmtNum(fPeers.Median), fmtNum(fPing.Median)))
	}
	return nil
}

func hasMember(h *lab.Host, name string) error {
	ms, err := h.MemberList()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name == name {
			return nil
		}
	}
	return fmt.Errorf("%s: member %s missing", h.Name, name)
}

func errIf(cond bool, msg string) error {
	if cond {
		return fmt.Errorf("%s", msg)
	}
	return nil
}
