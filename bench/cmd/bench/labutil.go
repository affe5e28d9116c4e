package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// newLab makes a lab with the run's binaries. Close it; an
// interrupted run closes every lab at once (closeLabs).
func (b *bench) newLab(opts lab.Options) (*lab.Lab, error) {
	opts.Binaries, opts.Logf = b.bin, logf
	l, err := lab.CreateLarge(b.ctx, opts)
	if err != nil {
		return nil, err
	}
	labsMu.Lock()
	labs = append(labs, l)
	labsMu.Unlock()
	return l, nil
}

var (
	labsMu sync.Mutex
	labs   []*lab.Lab
)

// closeLabs closes every lab the run made (Close is idempotent): on
// Ctrl-C, namespaces and processes go at once, and the sections' commands
// fail fast.
func closeLabs() {
	labsMu.Lock()
	ls := labs
	labsMu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// startFounderFirst starts h1, then the other hosts in parallel (at most
// par at once).
func startFounderFirst(l *lab.Lab, par int) error {
	if err := l.H(1).Start(); err != nil {
		return err
	}
	return parallel(len(l.Hosts)-1, par, func(i int) error { return l.Hosts[i+1].Start() })
}

// parallel runs f(0..n-1) with at most par at once and joins the errors.
func parallel(n, par int, f func(i int) error) error {
	if par < 1 {
		par = 1
	}
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// invite returns n tokens of h (through its admin API).
func invite(h *lab.Host, n int) ([]string, error) {
	toks := make([]string, n)
	for i := range toks {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		inv, err := h.Client().Invite(ctx, "")
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: invite: %w", h.Name, err)
		}
		toks[i] = inv.Token
	}
	return toks, nil
}

// joinAll has every host but the first join h1's mesh with its own token,
// at most par at once, with the CLI. A join that fails is tried once more
// with a fresh token; it returns how many joins needed that.
func joinAll(l *lab.Lab, par int) (retried int, err error) {
	toks, err := invite(l.H(1), len(l.Hosts)-1)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	err = parallel(len(toks), par, func(i int) error {
		h := l.Hosts[i+1]
		err := h.Join(toks[i])
		if err == nil {
			return nil
		}
		mu.Lock()
		retried++
		mu.Unlock()
		logf("join of %s failed, trying again: %s", h.Name, firstLine(err.Error()))
		time.Sleep(time.Second)
		tok, ierr := invite(l.H(1), 1)
		if ierr != nil {
			return ierr
		}
		return h.Join(tok[0])
	})
	return retried, err
}

// formMesh starts every daemon and links them into one mesh, then waits
// until every booture has every other alive with its WireGuard peer.
func (b *bench) formMesh(l *lab.Lab, timeout time.Duration) error {
	par := 8
	if err := startFounderFirst(l, par); err != nil {
		return err
	}
	retried, err := joinAll(l, par)
	if retried > 0 {
		b.note("Footprint", "Forming a mesh of %d: %d of %d joins failed once and were retried with a fresh invitation.", len(l.Hosts), retried, len(l.Hosts)-1)
	}
	if err != nil {
		return err
	}
	if len(l.Hosts) > 30 {
		// CheckPeers runs `wg show` in every namespace: too heavy to poll
		// in a large lab. Poll the admin APIs first.
		err := lab.Eventually(b.ctx, timeout, 2*time.Second, func() error { return allAlive(l.Hosts) })
		if err != nil {
			return err
		}
		return lab.Eventually(b.ctx, timeout, 5*time.Second, func() error { return lab.CheckPeers(l.Hosts...) })
	}
	return lab.Eventually(b.ctx, timeout, 250*time.Millisecond, func() error { return lab.CheckPeers(l.Hosts...) })
}

// allAlive checks, through the admin APIs only, that every host sees every
// other alive.
func allAlive(hosts []*lab.Host) error {
	sts, err := statuses(hosts)
	if err != nil {
		return err
	}
	for _, st := range sts {
		alive := 0
		for _, p := range st.Peers {
			if p.State == "alive" {
				alive++
			}
		}
		if alive != len(hosts)-1 {
			return fmt.Errorf("%s sees %d of %d bootures alive", st.Name, alive, len(hosts)-1)
		}
	}
	return nil
}

// status returns a host's status through its admin API (cheap: no CLI
// process).
func status(h *lab.Host) (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.Client().Status(ctx)
}

// statuses is status of every host, in parallel.
func statuses(hosts []*lab.Host) ([]api.Status, error) {
	out := make([]api.Status, len(hosts))
	err := parallel(len(hosts), 16, func(i int) (err error) {
		out[i], err = status(hosts[i])
		if err != nil {
			err = fmt.Errorf("%s: %w", hosts[i].Name, err)
		}
		return err
	})
	return out, err
}

// nsRun runs a command in a namespace with a timeout and returns its
// output, or an error with its stderr.
func nsRun(ns *lab.NS, timeout time.Duration, args ...string) (string, error) {
	r := ns.RunContext(context.Background(), timeout, args...)
	return r.Stdout, r.Error()
}

// nsCmd is the command line of args run in ns, for the report (the lab's
// random namespace names replaced by the host's role).
func nsCmd(host string, args ...string) string {
	return "ip netns exec " + host + " " + shellJoin(args)
}

// iperf runs an iperf3 client from ns to dst (a server on port 5201) for
// secs seconds after a 1 s warm-up it omits, and returns the received
// throughput in Mbit/s and the sender's retransmissions.
func iperf(ns *lab.NS, dst string, secs int) (mbps float64, retrans int, err error) {
	out, err := nsRun(ns, time.Duration(secs+20)*time.Second, "iperf3", "-c", dst, "-p", "5201", "-t", strconv.Itoa(secs), "-O", "1", "-J")
	var r struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, 0, fmt.Errorf("iperf3 to %s: %w", dst, err)
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("iperf3 to %s: %s", dst, r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6, r.End.SumSent.Retransmits, nil
}

func iperfCmd(host, dst string, secs int) string {
	return nsCmd(host, "iperf3", "-c", dst, "-p", "5201", "-t", strconv.Itoa(secs), "-O", "1", "-J")
}

var (
	pingLoss = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT  = regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`)
)

// ping sends count echo requests from ns to dst every interval and
// returns the average round trip (ms) and the loss (%).
func ping(ns *lab.NS, dst string, count int, interval time.Duration) (avgMS, lossPct float64, err error) {
	args := pingArgs(dst, count, interval)
	out, _ := nsRun(ns, time.Duration(count)*interval+10*time.Second, args...)
	m := pingLoss.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("ping %s: %q", dst, out)
	}
	sent, _ := strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	lossPct = 100 * float64(sent-recv) / float64(sent)
	if m := pingRTT.FindStringSubmatch(out); m != nil {
		avgMS, _ = strconv.ParseFloat(m[2], 64)
	} else {
		return 0, lossPct, fmt.Errorf("ping %s: no reply", dst)
	}
	return avgMS, lossPct, nil
}

func pingArgs(dst string, count int, interval time.Duration) []string {
	return []string{"ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", dst}
}

// waitPing waits until one ping from ns to dst gets a reply.
func (b *bench) waitPing(ns *lab.NS, dst string, timeout time.Duration) error {
	return lab.Eventually(b.ctx, timeout, 100*time.Millisecond, func() error { return ns.PingErr(dst) })
}

// pingStarAndRing pings (IPv4, mesh addresses) from hosts[0] to every host,
// from every host to hosts[0], and from each host to the next, in
// parallel, each retried until it passes or timeout.
func pingStarAndRing(hosts []*lab.Host, sts []api.Status, timeout time.Duration) error {
	type pair struct{ from, to int }
	var pairs []pair
	for i := 1; i < len(hosts); i++ {
		pairs = append(pairs, pair{0, i}, pair{i, 0}, pair{i, (i + 1) % len(hosts)})
	}
	return parallel(len(pairs), 32, func(k int) error {
		p := pairs[k]
		return hosts[p.from].WaitPing(sts[p.to].MeshIPv4, timeout)
	})
}

// logPath is a file for a helper process's output.
func (b *bench) logPath(name string) string {
	d := filepath.Join(b.tmp, "logs")
	os.MkdirAll(d, 0o755)
	return filepath.Join(d, name+".log")
}

// seconds formats a duration for a message.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
