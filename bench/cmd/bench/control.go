package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
		"*peers* is the time from the joins until every booture's `status` lists every other alive and its `wg show` has a peer with its site for each (polled every 100 ms: the poll itself costs CPU on %d cores); "+
		"*pings* is until pings pass from h1 to all, all to h1, and around the ring (a ping without reply is sent again after its 1 s wait, so *pings* has a resolution of about 1 s: a first packet that waits for a WireGuard handshake costs a second).", b.res.Machine.Cores)
	jc := &Curve{ID: "join-convergence", Title: "Join convergence vs number of bootures (namespace lab)", XLabel: "bootures", YLabel: "seconds from the joins",
		Series: []Series{{Name: "every peer alive + WireGuard peer"}, {Name: "pings pass (star + ring)"}}}
	b.curve(jc)
	peersSeries, pingSeries := &jc.Series[0], &jc.Series[1]
	var kept *lab.Lab
	defer func() {
		if kept != nil {
			kept.Close()
		}
	}()
	for _, n := range sizes {
		fp := b.figure(sec, joinTable, fmt.Sprintf("%d bootures: every peer alive + WireGuard peer", n), "s",
			fmt.Sprintf("bench/run.sh -only control: %d hosts; h1: booture invite ×%d; h2..h%d: booture join TOKEN at once; poll status + wg show", n, n-1, n))
		fa := b.figure(sec, joinTable, fmt.Sprintf("%d bootures: pings pass (star + ring)", n), "s", fp.Command+"; ping mesh IPv4s")
		for r := 0; r < rounds; r++ {
			l, tp, ta, err := b.joinOnce(n)
			if err != nil && tp == 0 {
				fp.fail(err)
				if l != nil {
					l.Close()
				}
				if b.ctx.Err() != nil {
					return err
				}
				continue
			}
			fp.add(tp.Seconds())
			if err != nil {
				fa.fail(err)
			} else {
				fa.add(ta.Seconds())
			}
			if n == 10 && r == rounds-1 {
				kept = l
			} else {
				l.Close()
			}
		}
		if len(fp.Samples) > 0 {
			peersSeries.Points = append(peersSeries.Points, point(float64(n), fp.Samples))
		}
		if len(fa.Samples) > 0 {
			pingSeries.Points = append(pingSeries.Points, point(float64(n), fa.Samples))
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

// joinOnce makes a lab of n hosts and measures one join convergence.
func (b *bench) joinOnce(n int) (*lab.Lab, time.Duration, time.Duration, error) {
	l, err := b.newLab(lab.Options{Hosts: n})
	if err != nil {
		return nil, 0, 0, err
	}
	if err := startFounderFirst(l, 8); err != nil {
		return l, 0, 0, err
	}
	toks, err := invite(l.H(1), n-1)
	if err != nil {
		return l, 0, 0, err
	}
	time.Sleep(time.Second) // let the starts settle
	t0 := time.Now()
	if err := parallel(n-1, n, func(i int) error { return l.Hosts[i+1].Join(toks[i]) }); err != nil {
		return l, 0, 0, err
	}
	if err := lab.Eventually(b.ctx, 60*time.Second, 100*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) }); err != nil {
		return l, 0, 0, err
	}
	tp := time.Since(t0)
	sts, err := statuses(l.Hosts)
	if err != nil {
		return l, 0, 0, err
	}
	if err := pingStarAndRing(l.Hosts, sts, 30*time.Second); err != nil {
		return l, tp, 0, fmt.Errorf("pings did not pass within 30 s: %w", err)
	}
	ta := time.Since(t0)
	logf("join convergence, %d bootures: peers %s, pings %s", n, seconds(tp), seconds(ta))
	return l, tp, ta, nil
}

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
