package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace of a lab.
type NS struct {
	// Name is the namespace's name (ip netns).
	Name string
	// env is added to the environment of commands run in it.
	env []string
}

// Run runs a command in the namespace (ip netns exec) with DefaultTimeout.
func (n *NS) Run(args ...string) Result {
	return n.RunContext(context.Background(), DefaultTimeout, args...)
}

// RunContext runs a command in the namespace with a timeout.
func (n *NS) RunContext(ctx context.Context, timeout time.Duration, args ...string) Result {
	return run(ctx, timeout, n.env, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// PingResult counts the echo requests a ping sent and the replies it got.
type PingResult struct {
	Sent, Received int
	// AvgRTT is the average round trip of the replies (0 without reply).
	AvgRTT time.Duration
	Output string
}

// Lost is the number of requests without reply.
func (p PingResult) Lost() int { return p.Sent - p.Received }

var (
	pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT   = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)
)

// Ping pings dst (IPv4 or IPv6) count times, one request every interval,
// waiting at most a second for each reply; the whole run is bounded.
func (n *NS) Ping(dst string, count int, interval time.Duration) (PingResult, error) {
	if count < 1 {
		count = 1
	}
	if interval <= 0 {
		interval = time.Second
	}
	timeout := time.Duration(count)*interval + 5*time.Second
	r := n.RunContext(context.Background(), timeout, "ping", "-n", "-q", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", dst)
	m := pingStats.FindStringSubmatch(r.Stdout)
	if m == nil {
		if err := r.Error(); err != nil {
			return PingResult{Output: r.Stdout + r.Stderr}, err
		}
		return PingResult{Output: r.Stdout}, fmt.Errorf("ping %s: no statistics in output: %q", dst, r.Stdout)
	}
	sent, _ := strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	res := PingResult{Sent: sent, Received: recv, Output: r.Stdout + r.Stderr}
	if m := pingRTT.FindStringSubmatch(r.Stdout); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		res.AvgRTT = time.Duration(ms * float64(time.Millisecond))
	}
	return res, nil
}

// CanPing reports whether one ping to dst gets its reply within a second.
func (n *NS) CanPing(dst string) bool {
	p, err := n.Ping(dst, 1, time.Second)
	return err == nil && p.Received == 1
}

// PingErr returns nil when one ping to dst gets its reply within a second.
func (n *NS) PingErr(dst string) error {
	p, err := n.Ping(dst, 1, time.Second)
	if err != nil {
		return err
	}
	if p.Received != 1 {
		return fmt.Errorf("%s: no reply from %s", n.Name, dst)
	}
	return nil
}

// WaitPing pings dst until a reply comes, for at most timeout.
func (n *NS) WaitPing(dst string, timeout time.Duration) error {
	return Eventually(context.Background(), timeout, 100*time.Millisecond, func() error { return n.PingErr(dst) })
}

// WGPeer is one peer of `wg show IFACE dump`.
type WGPeer struct {
	PublicKey string
	Endpoint  string   // "(none)" when unknown
	AllowedIP []string // sorted
	// LatestHandshake is zero when there was none.
	LatestHandshake time.Time
	RxBytes         int64
	TxBytes         int64
	Keepalive       string // "off" or seconds
}

// WGDevice is `wg show IFACE dump`.
type WGDevice struct {
	PublicKey  string
	ListenPort int
	Peers      []WGPeer
}

// Peer returns the peer with public key key.
func (d WGDevice) Peer(key string) (WGPeer, bool) {
	for _, p := range d.Peers {
		if p.PublicKey == key {
			return p, true
		}
	}
	return WGPeer{}, false
}

// WGShow runs `wg show IFACE dump` in the namespace and parses it.
func (n *NS) WGShow(iface string) (WGDevice, error) {
	r := n.Run("wg", "show", iface, "dump")
	if err := r.Error(); err != nil {
		return WGDevice{}, err
	}
	return parseWGDump(r.Stdout)
}

func parseWGDump(s string) (WGDevice, error) {
	var d WGDevice
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return d, fmt.Errorf("wg show dump: empty output")
	}
	f := strings.Split(lines[0], "\t")
	if len(f) != 4 {
		return d, fmt.Errorf("wg show dump: bad interface line %q", lines[0])
	}
	d.PublicKey = f[1]
	d.ListenPort, _ = strconv.Atoi(f[2])
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 8 {
			return d, fmt.Errorf("wg show dump: bad peer line %q", l)
		}
		p := WGPeer{PublicKey: f[0], Endpoint: f[2], Keepalive: f[7]}
		if f[3] != "(none)" {
			p.AllowedIP = strings.Split(f[3], ",")
			sort.Strings(p.AllowedIP)
		}
		if hs, _ := strconv.ParseInt(f[4], 10, 64); hs > 0 {
			p.LatestHandshake = time.Unix(hs, 0)
		}
		p.RxBytes, _ = strconv.ParseInt(f[5], 10, 64)
		p.TxBytes, _ = strconv.ParseInt(f[6], 10, 64)
		d.Peers = append(d.Peers, p)
	}
	return d, nil
}

// Routes returns the destinations of the main table's IPv4 and IPv6 routes
// out dev (ip route show dev DEV).
func (n *NS) Routes(dev string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, fam := range []string{"-4", "-6"} {
		r := n.Run("ip", "-o", fam, "route", "show", "dev", dev)
		if err := r.Error(); err != nil {
			return nil, err
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			if p, err := netip.ParsePrefix(f[0]); err == nil {
				out = append(out, p)
			} else if a, err := netip.ParseAddr(f[0]); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	return out, nil
}

// HasRoute reports whether routes holds p.
func HasRoute(routes []netip.Prefix, p netip.Prefix) bool {
	for _, r := range routes {
		if r == p.Masked() {
			return true
		}
	}
	return false
}

// lossTable is the nftables table the lab uses to drop packets.
const lossTable = "bootlab_loss"

// SetLoss drops pct percent of the UDP packets (WireGuard and gossip) that
// enter and leave the namespace, with an nftables rule (`numgen random`:
// this kernel has no netem). pct 0 removes the rule.
func (n *NS) SetLoss(pct int) error {
	n.Run("nft", "delete", "table", "inet", lossTable) // may not exist
	if pct <= 0 {
		return nil
	}
	if pct > 100 {
		pct = 100
	}
	script := fmt.Sprintf(`table inet %[1]s {
	chain in { type filter hook input priority -10; meta l4proto udp numgen random mod 100 < %[2]d drop; }
	chain out { type filter hook output priority -10; meta l4proto udp numgen random mod 100 < %[2]d drop; }
}
`, lossTable, pct)
	return n.nftScript(script)
}

// PIDs returns the processes running in the namespace.
func (n *NS) PIDs() []int {
	r := run(context.Background(), 10*time.Second, nil, "ip", "netns", "pids", n.Name)
	var pids []int
	for _, f := range strings.Fields(r.Stdout) {
		if p, err := strconv.Atoi(f); err == nil && p > 1 && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// killAll kills every process of the namespace and waits (bounded) for
// them to be gone.
func (n *NS) killAll() {
	pids := n.PIDs()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for time.Now().Before(deadline) {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Do runs f on an OS thread switched into the namespace: sockets f opens
// belong to the namespace and stay there after Do returns. f must not start
// goroutines that open sockets (they run on other threads).
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked (and so destroyed when this goroutine
		// ends) unless it is back in its own namespace.
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("namespace %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving namespace %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func mustPrefix(s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
