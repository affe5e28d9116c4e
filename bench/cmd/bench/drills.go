package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// drill collects the checks of one fault drill.
type drill struct {
	*Drill
	t0 time.Time
}

func (b *bench) newDrill(name, what string) *drill {
	d := &drill{Drill: &Drill{Name: name, What: what, Command: "bench/run.sh -only drills"}, t0: time.Now()}
	return d
}

// check records an assertion.
func (d *drill) check(what string, err error, detail string) bool {
	c := Check{What: what, OK: err == nil, Detail: detail}
	if err != nil {
		msg := err.Error()
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		c.Detail = strings.TrimSpace(detail + " " + msg)
	}
	d.Checked = append(d.Checked, c)
	logf("drill %s: %s: ok=%v %s", d.Name, what, c.OK, c.Detail)
	return c.OK
}

func (d *drill) found(format string, args ...any) {
	d.Found = append(d.Found, fmt.Sprintf(format, args...))
}

// done files the drill; err is what stopped it early, if anything.
func (b *bench) done(d *drill, err error) {
	if err != nil {
		detail := ""
		if errors.Is(b.ctx.Err(), context.DeadlineExceeded) {
			d.CutShort, detail = true, "cut short by the time budget:"
		}
		d.check("drill ran to its end", err, detail)
	}
	d.Seconds = time.Since(d.t0).Seconds()
	d.OK = len(d.Checked) > 0
	for _, c := range d.Checked {
		d.OK = d.OK && c.OK
	}
	b.drill(d.Drill)
	b.save()
}

// drills runs the fault drills (the partition drill runs with the control
// plane's partition benchmark).
func (b *bench) drills() error {
	var errs []error
	for _, f := range []func() error{b.drillKillDuringJoins, b.drillLoss, b.drillPluginCrashLoop, b.drillDiskFull} {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// noCrash checks that no daemon of l exited by itself and no log has a
// panic.
func noCrash(d *drill, l *lab.Lab) {
	var bad []string
	for _, h := range l.Hosts {
		if err := h.Crashed(); err != nil {
			bad = append(bad, err.Error())
		}
		if strings.Contains(h.Log(), "panic:") {
			bad = append(bad, h.Name+": panic in its log")
		}
	}
	d.check("no daemon crashed or panicked", errIf(len(bad) > 0, strings.Join(bad, "; ")), "")
}

// sameIdentity checks that every host kept its key, site and mesh.
func sameIdentity(d *drill, what string, before, after []api.Status) {
	var bad []string
	for i := range before {
		if i >= len(after) {
			break
		}
		if before[i].PublicKey != after[i].PublicKey || before[i].Site != after[i].Site || before[i].MeshID != after[i].MeshID {
			bad = append(bad, fmt.Sprintf("%s: site %d→%d, key changed %v, mesh changed %v", before[i].Name, before[i].Site, after[i].Site,
				before[i].PublicKey != after[i].PublicKey, before[i].MeshID != after[i].MeshID))
		}
	}
	d.check(what, errIf(len(bad) > 0, strings.Join(bad, "; ")), "")
}

// distinctSites checks that no two bootures hold one site and nobody
// reports a conflict.
func distinctSites(d *drill, sts []api.Status) {
	seen := map[int]string{}
	var bad []string
	for _, st := range sts {
		if o, ok := seen[st.Site]; ok {
			bad = append(bad, fmt.Sprintf("%s and %s both hold site %d", o, st.Name, st.Site))
		}
		seen[st.Site] = st.Name
		if len(st.Conflicts) > 0 {
			bad = append(bad, fmt.Sprintf("%s reports conflicts %+v", st.Name, st.Conflicts))
		}
	}
	d.check("every booture holds its own site, no conflict reported", errIf(len(bad) > 0, strings.Join(bad, "; ")), fmt.Sprintf("%d bootures", len(sts)))
}

// drillKillDuringJoins kills a joining booture, then the inviter, with
// kill -9 while joins are in flight.
func (b *bench) drillKillDuringJoins() error {
	d := b.newDrill("kill -9 during joins",
		"8 bootures. h2..h5 join h1's mesh at once and h3 (a joiner) is killed with kill -9 15 ms into the joins (a join takes tens of ms: the kill lands while they are in flight); then h6..h8 join at once and h1 (the inviter) is killed 15 ms into them. "+
			"Both are restarted; bootures whose join failed join again with a fresh invitation from h2. Every join the CLI reported done must hold, and the mesh must end whole.")
	err := func() error {
		l, err := b.newLab(lab.Options{Hosts: 8})
		if err != nil {
			return err
		}
		defer l.Close()
		if err := startFounderFirst(l, 8); err != nil {
			return err
		}
		before, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		reported := map[string]bool{} // joins the CLI reported done
		usedBy := map[string]string{} // tokens of joins reported done → the booture that used each
		const killAfter = 15 * time.Millisecond
		phase := func(joiners []*lab.Host, victim *lab.Host) (map[string]error, error) {
			toks, err := invite(l.H(1), len(joiners))
			if err != nil {
				return nil, err
			}
			res := map[string]error{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i, j := range joiners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := j.Join(toks[i])
					mu.Lock()
					res[j.Name] = err
					if err == nil {
						reported[j.Name] = true
						usedBy[toks[i]] = j.Name
					}
					mu.Unlock()
				}()
			}
			time.Sleep(killAfter)
			kerr := victim.Kill()
			wg.Wait()
			if kerr != nil {
				return res, kerr
			}
			return res, victim.Start()
		}
		r1, err := phase([]*lab.Host{l.H(2), l.H(3), l.H(4), l.H(5)}, l.H(3))
		if err != nil {
			return err
		}
		r2, err := phase([]*lab.Host{l.H(6), l.H(7), l.H(8)}, l.H(1))
		if err != nil {
			return err
		}
		var summary []string
		for _, r := range []map[string]error{r1, r2} {
			names := make([]string, 0, len(r))
			for n := range r {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				if r[n] == nil {
					summary = append(summary, n+": done")
				} else {
					summary = append(summary, n+": "+firstLine(r[n].Error()))
				}
			}
		}
		d.found("join results as the CLI reported them: %s", strings.Join(summary, "; "))
		// Joins reported done must hold without any retry.
		var done []*lab.Host
		done = append(done, l.H(1))
		for _, h := range l.Hosts[1:] {
			if reported[h.Name] {
				done = append(done, h)
			}
		}
		t0 := time.Now()
		err = lab.Eventually(b.ctx, 60*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(done...) })
		d.check(fmt.Sprintf("the %d joins reported done hold (with h1) without any retry", len(done)-1), err, "after "+seconds(time.Since(t0)))
		// The others join again with a fresh token from h2.
		var retried []string
		for _, h := range l.Hosts[1:] {
			if reported[h.Name] {
				continue
			}
			st, err := status(h)
			if err == nil && st.MeshID == before[0].MeshID {
				retried = append(retried, h.Name+" (already in: its join had gone through)")
				continue
			}
			tok, err := invite(l.H(2), 1)
			if err != nil {
				return err
			}
			err = h.Join(tok[0])
			d.check(h.Name+" joins again with a fresh invitation after the failed one", err, "")
			retried = append(retried, h.Name)
		}
		if len(retried) > 0 {
			d.found("joined again: %s", strings.Join(retried, ", "))
		}
		t0 = time.Now()
		err = lab.Eventually(b.ctx, 90*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) })
		d.check("the 8 bootures end in one full mesh", err, "after "+seconds(time.Since(t0)))
		after, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		sameIdentity(d, "the killed inviter h1 kept its key, site and mesh", before[:1], after[:1])
		d.check("the killed joiner h3 kept its key", errIf(before[2].PublicKey != after[2].PublicKey, "h3's key changed"), "")
		distinctSites(d, after)
		// The booture that used a token may redeem it again for a while (a
		// retry after a lost answer; the mesh tests check that window), so
		// the token is tried by another booture: it must be refused as used.
		if tok, by, again := reuseOtherThanRedeemer(usedBy, l.Hosts[1:]); again != nil {
			err := again.Join(tok)
			var bad error
			switch {
			case err == nil:
				bad = errors.New("the used token was accepted")
			case !strings.Contains(err.Error(), "already used"):
				bad = errors.New("refused, but not as a used token")
			}
			// The CLI's answer only: the command line holds the token.
			answer := firstLine(fmt.Sprint(err))
			if i := strings.Index(answer, ": exit "); i >= 0 {
				answer = answer[i+2:]
			}
			d.check(fmt.Sprintf("a token of a join reported done (%s's) is refused when %s uses it", by, again.Name), bad, answer)
		}
		noCrash(d, l)
		return nil
	}()
	b.done(d, err)
	return err
}

// reuseOtherThanRedeemer picks a used token and a booture of hosts other
// than the one that used it (the same ones give the same choice, whatever
// order the joins finished in); again is nil if there is no such pair.
func reuseOtherThanRedeemer(usedBy map[string]string, hosts []*lab.Host) (tok, by string, again *lab.Host) {
	toks := slices.Sorted(maps.Keys(usedBy))
	slices.SortStableFunc(toks, func(a, b string) int { return strings.Compare(usedBy[a], usedBy[b]) })
	for _, t := range toks {
		for _, h := range hosts {
			if h.Name != usedBy[t] {
				return t, usedBy[t], h
			}
		}
	}
	return "", "", nil
}

// drillLoss puts 30 % loss on the underlay for a minute.
func (b *bench) drillLoss() error {
	dur := b.dur(60*time.Second, 20*time.Second)
	d := b.newDrill("underlay packet loss 30 % for a minute",
		fmt.Sprintf("4 bootures in one mesh, a member on h1. Every host's eth0 drops 30 %% of what it sends (nftables numgen random, all protocols) for %v: each packet on the LAN has a 30 %% chance to be lost. "+
			"Meanwhile states are polled every second on every booture, h1 pings h2's mesh address, and a member is added on h2. Then the loss is lifted.", dur))
	err := func() error {
		l, err := b.newLab(lab.Options{Hosts: 4})
		if err != nil {
			return err
		}
		defer l.Close()
		if err := b.formMesh(l, 60*time.Second); err != nil {
			return err
		}
		if err := l.H(1).CLI("member", "add", "before-loss").Error(); err != nil {
			return err
		}
		before, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		for _, h := range l.Hosts {
			if err := h.SetEgressLoss("eth0", 30); err != nil {
				return err
			}
		}
		t0 := time.Now()
		type pingRes struct {
			avg, loss float64
			err       error
		}
		pingDone := make(chan pingRes, 1)
		go func() {
			count := int(dur / (200 * time.Millisecond))
			avg, loss, err := ping(&l.H(1).NS, before[1].MeshIPv4, count, 200*time.Millisecond)
			pingDone <- pingRes{avg, loss, err}
		}()
		addErr := l.H(2).CLI("member", "add", "during-loss").Error()
		polls, notAlive, dead := 0, 0, 0
		flaps := map[string]int{}
		last := map[string]string{}
		for time.Since(t0) < dur {
			for _, h := range l.Hosts {
				st, err := status(h)
				if err != nil {
					continue
				}
				for _, p := range st.Peers {
					polls++
					if p.State != "alive" {
						notAlive++
					}
					if p.State == "dead" {
						dead++
					}
					k := h.Name + ">" + p.Name
					if last[k] != "" && last[k] != p.State {
						flaps[k]++
					}
					last[k] = p.State
				}
			}
			if err := b.sleep(time.Second); err != nil {
				return err
			}
		}
		for _, h := range l.Hosts {
			if err := h.SetEgressLoss("eth0", 0); err != nil {
				return err
			}
		}
		t1 := time.Now()
		pr := <-pingDone
		nflaps := 0
		for _, v := range flaps {
			nflaps += v
		}
		if pr.err != nil {
			d.found("during the loss: mesh pings h1 → h2: %v", pr.err)
		} else {
			d.found("during the loss: %.0f %% of mesh pings h1 → h2 lost (a round trip crosses the loss twice: 51 %% expected), average RTT of the others %.2f ms", pr.loss, pr.avg)
		}
		d.found("during the loss: peers seen not alive in %d of %d observations (%d of them dead), %d state changes over %d booture→peer pairs",
			notAlive, polls, dead, nflaps, len(flaps))
		d.check("member add on h2 during the loss", addErr, "")
		var firstMiss error
		err = lab.Eventually(b.ctx, 60*time.Second, 100*time.Millisecond, func() error {
			err := lab.CheckPeers(l.Hosts...)
			if err != nil && firstMiss == nil {
				firstMiss = err
			}
			return err
		})
		d.check("the mesh is whole again within 60 s of the loss ending", err, "after "+seconds(time.Since(t1)))
		if firstMiss != nil {
			d.found("when the loss ended, the mesh was not whole: %s", firstLine(firstMiss.Error()))
		}
		sts, err := statuses(l.Hosts)
		if err != nil {
			return err
		}
		err = pingStarAndRing(l.Hosts, sts, 30*time.Second)
		d.check("pings pass between all bootures", err, "after "+seconds(time.Since(t1)))
		sameIdentity(d, "every booture kept its key, site and mesh", before, sts)
		distinctSites(d, sts)
		d.check("members are all there (before-loss on h1, during-loss on h2)", errors.Join(hasMember(l.H(1), "before-loss"), hasMember(l.H(2), "during-loss")), "")
		var left []string
		for _, st := range sts {
			if st.Expelled {
				left = append(left, st.Name+" expelled")
			}
			for _, p := range st.Peers {
				if p.State == "left" {
					left = append(left, st.Name+" sees "+p.Name+" left")
				}
			}
		}
		d.check("no booture left or was expelled", errIf(len(left) > 0, strings.Join(left, "; ")), "")
		noCrash(d, l)
		return nil
	}()
	b.done(d, err)
	return err
}

// pluginPIDs returns the pids of the daemon's children running name.
func pluginPIDs(h *lab.Host, name string) []int {
	var out []int
	for pid, n := range lab.Children(h.PID()) {
		if n == name {
			out = append(out, pid)
		}
	}
	return out
}

func pluginState(h *lab.Host, name string) (api.Plugin, error) {
	var pls []api.Plugin
	if err := h.CLIJSON(&pls, "plugin", "list"); err != nil {
		return api.Plugin{}, err
	}
	for _, p := range pls {
		if p.Name == name {
			return p, nil
		}
	}
	return api.Plugin{}, fmt.Errorf("no plugin %s in plugin list", name)
}

// drillPluginCrashLoop kills the staticsite plugin with kill -9 each time
// it comes back, until its state is failed.
func (b *bench) drillPluginCrashLoop() error {
	d := b.newDrill("plugin crash loop",
		"2 bootures; h1 serves a site through the staticsite plugin. The plugin process is killed with kill -9 every time it comes back, until `plugin list` shows it failed (at most 90 s). Then the admin reloads it.")
	err := func() error {
		l, host, err := b.pluginLab(false)
		if err != nil {
			return err
		}
		defer l.Close()
		h1, h2 := l.H(1), l.H(2)
		st, err := status(h1)
		if err != nil {
			return err
		}
		const name = "booture-plugin-staticsite"
		curl := func() string {
			out, _ := nsRun(&h1.NS, 10*time.Second, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: "+host, "http://"+st.MeshIPv4+"/")
			return out
		}
		t0 := time.Now()
		kills := 0
		killed := map[int]bool{}
		var final api.Plugin
		var states []string
		for time.Since(t0) < 90*time.Second {
			for _, pid := range pluginPIDs(h1, name) {
				if !killed[pid] {
					syscall.Kill(pid, syscall.SIGKILL)
					killed[pid] = true
					kills++
				}
			}
			p, err := pluginState(h1, "staticsite")
			if err == nil {
				if len(states) == 0 || states[len(states)-1] != p.State {
					states = append(states, p.State)
				}
				final = p
				if p.State == "failed" {
					break
				}
			}
			if err := b.sleep(100 * time.Millisecond); err != nil {
				return err
			}
		}
		took := time.Since(t0)
		d.found("%d kills; states seen: %s; restarts %d; last error %q", kills, strings.Join(states, " → "), final.Restarts, final.LastError)
		d.check("the plugin ends in state failed (no busy restart loop)", errIf(final.State != "failed", "state "+final.State), fmt.Sprintf("after %s and %d kills", seconds(took), kills))
		b.sleep(2 * time.Second)
		d.check("no plugin process left running", errIf(len(pluginPIDs(h1, name)) > 0, fmt.Sprint("processes ", pluginPIDs(h1, name))), "")
		code := curl()
		d.check("the gateway answers the site's requests with a clear error (502/503), not a hang", errIf(code != "502" && code != "503", "HTTP "+code), "HTTP "+code)
		err = lab.Eventually(b.ctx, 30*time.Second, 250*time.Millisecond, func() error { return lab.CheckPeers(h1, h2) })
		d.check("the daemon and the mesh are fine (status, peers, WireGuard)", err, "")
		sts, err := statuses(l.Hosts)
		if err == nil {
			err = h2.WaitPing(sts[0].MeshIPv4, 10*time.Second)
		}
		d.check("h2 pings h1 over the mesh", err, "")
		err = lab.Eventually(b.ctx, 30*time.Second, 500*time.Millisecond, func() error {
			var svcs []api.Service
			if err := h2.CLIJSON(&svcs, "services"); err != nil {
				return err
			}
			for _, s := range svcs {
				if s.Name == "site" && s.Health != "healthy" {
					return nil
				}
			}
			return fmt.Errorf("h2 still shows the site healthy: %+v", svcs)
		})
		d.check("the other booture's catalog shows the site not healthy", err, "")
		t1 := time.Now()
		r := h1.CLI("plugin", "reload", "staticsite")
		err = r.Error()
		if err == nil {
			err = lab.Eventually(b.ctx, 30*time.Second, 200*time.Millisecond, func() error {
				if c := curl(); c != "200" {
					return fmt.Errorf("HTTP %s", c)
				}
				return nil
			})
		}
		d.check("`booture plugin reload staticsite` brings the site back", err, "after "+seconds(time.Since(t1)))
		noCrash(d, l)
		return nil
	}()
	b.done(d, err)
	return err
}

// drillDiskFull runs bootured with its state directory on a small tmpfs
// and adds members until the disk is full.
func (b *bench) drillDiskFull() error {
	d := b.newDrill("state directory full during member adds",
		"One booture whose state directory is a 512 KiB tmpfs, filled with a file until about 24 KiB are left. Members are added one at a time (at most 400) until adds fail, then 5 more are tried. "+
			"Then the daemon is killed with kill -9 and restarted, the filler removed, and one more member added.")
	err := func() error {
		l, err := b.newLab(lab.Options{Hosts: 1})
		if err != nil {
			return err
		}
		defer l.Close()
		h := l.H(1)
		if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
			return err
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", h.StateDir).CombinedOutput(); err != nil {
			return fmt.Errorf("mount tmpfs: %v: %s", err, out)
		}
		umount := func() {
			if out, err := exec.Command("umount", h.StateDir).CombinedOutput(); err != nil {
				exec.Command("umount", "-l", h.StateDir).Run()
				logf("umount %s: %v %s (lazy unmount)", h.StateDir, err, out)
			}
		}
		l.OnClose(closerFunc(func() error { return exec.Command("umount", "-l", h.StateDir).Run() }))
		defer func() { h.Stop(); umount() }()
		if err := h.Start(); err != nil {
			return err
		}
		filler := filepath.Join(h.StateDir, "filler")
		var fs syscall.Statfs_t
		if err := syscall.Statfs(h.StateDir, &fs); err != nil {
			return err
		}
		free := int64(fs.Bavail) * int64(fs.Bsize)
		if err := os.WriteFile(filler, make([]byte, max(0, free-24*1024)), 0o600); err != nil {
			return err
		}
		syscall.Statfs(h.StateDir, &fs)
		d.found("state directory %s: %d KiB free after the filler", "(tmpfs)", int64(fs.Bavail)*int64(fs.Bsize)/1024)
		var ok []string
		var firstErr string
		failures := 0
		for i := 0; i < 400 && failures < 6; i++ {
			name := fmt.Sprintf("full%03d", i)
			r := h.CLI("member", "add", name)
			if r.OK() {
				if failures > 0 {
					d.found("add %s succeeded after %d failures (space freed by the failed write?)", name, failures)
				}
				ok = append(ok, name)
				continue
			}
			failures++
			if firstErr == "" {
				firstErr = strings.TrimSpace(r.Stderr + r.Stdout)
			}
		}
		d.found("%d adds reported done before the disk was full; first error: %q", len(ok), firstErr)
		d.check("adds fail once the disk is full", errIf(failures == 0, "no add failed"), fmt.Sprintf("%d failures", failures))
		low := strings.ToLower(firstErr)
		d.check("the error is one clear line that says the disk is full", errIf(!strings.Contains(low, "space") || strings.Count(strings.TrimSpace(firstErr), "\n") > 0, "unclear: "+firstErr), firstErr)
		ms, err := h.MemberList()
		d.check("the running daemon lists exactly the adds reported done", errors.Join(err, sameNames(ms, ok)), fmt.Sprintf("%d members", len(ms)))
		ents, _ := os.ReadDir(h.StateDir)
		var stray []string
		for _, e := range ents {
			if n := e.Name(); n != "filler" && n != "private.key" && n != "mesh.json" && n != "members.json" && n != "members.lock" && n != "plugins" && !strings.HasSuffix(n, ".lock") {
				stray = append(stray, n)
			}
		}
		d.check("nothing half-written: no temporary file left in the state directory", errIf(len(stray) > 0, strings.Join(stray, ", ")), "files: "+dirNames(ents))
		if err := h.Kill(); err != nil {
			return err
		}
		raw, rerr := os.ReadFile(filepath.Join(h.StateDir, "members.json"))
		var anyJSON any
		if rerr == nil {
			rerr = json.Unmarshal(raw, &anyJSON)
		}
		d.check("members.json is whole, valid JSON after kill -9", rerr, fmt.Sprintf("%d bytes", len(raw)))
		err = h.Start()
		d.check("the daemon restarts on the full disk", err, "")
		if err == nil {
			ms, err := h.MemberList()
			d.check("after the restart, every add reported done is there (and nothing else)", errors.Join(err, sameNames(ms, ok)), fmt.Sprintf("%d members", len(ms)))
		}
		os.Remove(filler)
		if h.Running() {
			err = h.CLI("member", "add", "after-space").Error()
			d.check("with space again, an add works", err, "")
		}
		noCrash(d, l)
		return nil
	}()
	b.done(d, err)
	return err
}

func sameNames(ms []api.Member, want []string) error {
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		var missing, extra []string
		for _, n := range w {
			if !slices.Contains(got, n) {
				missing = append(missing, n)
			}
		}
		for _, n := range got {
			if !slices.Contains(w, n) {
				extra = append(extra, n)
			}
		}
		return fmt.Errorf("missing %v, unexpected %v", missing, extra)
	}
	return nil
}

func dirNames(ents []os.DirEntry) string {
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}

// closerFunc is an io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
