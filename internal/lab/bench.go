package lab

// Helpers for the benchmarks and fault drills of bench/: large labs, loss,
// partitions and rate limits on the underlay, long-running processes in a
// namespace, and per-process CPU and memory. They add to the harness and
// change nothing of what the tests use.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxLargeHosts is the most hosts CreateLarge makes: the LAN is a /24 and
// hosts are .1 to .N. A large lab has no members (they would take .101 and
// up).
const MaxLargeHosts = 250

// CreateLarge is Create for more than 99 hosts (at most MaxLargeHosts),
// for footprint benchmarks. Do not add members to a lab of more than 99
// hosts.
func CreateLarge(ctx context.Context, opts Options) (*Lab, error) {
	return create(ctx, opts, MaxLargeHosts)
}

// Prefix is the prefix of every name the lab makes (namespaces, WireGuard
// interfaces): "bt" and the lab's id. Interfaces named Prefix()+"x..." are
// cleaned up with the lab's own.
func (l *Lab) Prefix() string { return l.prefix() }

// nftScript loads an nftables script in the namespace.
func (n *NS) nftScript(script string) error {
	f, err := os.CreateTemp("", "bootlab-nft-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return n.Run("nft", "-f", f.Name()).Error()
}

const (
	egressLossTable = "bootlab_bench_loss"
	blockTable      = "bootlab_bench_block"
)

// SetEgressLoss drops pct percent of all packets (any protocol) leaving the
// namespace by dev, with an nftables `numgen random` rule (this kernel has
// no netem). Applied on every host of a link, each packet crosses exactly
// one such rule: the underlay loses pct percent in each direction. pct 0
// removes the rule.
func (n *NS) SetEgressLoss(dev string, pct int) error {
	n.Run("nft", "delete", "table", "inet", egressLossTable) // may not exist
	if pct <= 0 {
		return nil
	}
	pct = min(pct, 100)
	return n.nftScript(fmt.Sprintf(`table inet %s {
	chain out { type filter hook postrouting priority -10; oifname %q numgen random mod 100 < %d drop; }
}
`, egressLossTable, dev, pct))
}

// Block drops every packet between the namespace and the given underlay
// addresses, both ways (a partition); Block() with none lifts it.
func (n *NS) Block(addrs ...netip.Addr) error {
	n.Run("nft", "delete", "table", "inet", blockTable) // may not exist
	if len(addrs) == 0 {
		return nil
	}
	set := make([]string, len(addrs))
	for i, a := range addrs {
		set[i] = a.String()
	}
	s := strings.Join(set, ", ")
	return n.nftScript(fmt.Sprintf(`table inet %[1]s {
	chain in { type filter hook input priority -20; ip saddr { %[2]s } drop; }
	chain out { type filter hook output priority -20; ip daddr { %[2]s } drop; }
}
`, blockTable, s))
}

// SetRate caps what leaves the namespace by dev to rate (tc's syntax, e.g.
// "50mbit") with a token bucket filter; "" removes it.
func (n *NS) SetRate(dev, rate string) error {
	n.Run("tc", "qdisc", "del", "dev", dev, "root") // may not exist
	if rate == "" {
		return nil
	}
	return n.Run("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "50ms").Error()
}

// Proc is a long-running process in a namespace (a server, a standalone
// WireGuard, nginx), in its own process group, killed if this process
// dies.
type Proc struct {
	Args []string
	// Log is where its output goes.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Spawn starts args in the namespace (ip netns exec), its output appended
// to logPath. env entries are added to its environment. Stop it, or let
// the lab's Close kill it with every process of its namespaces.
func (n *NS) Spawn(logPath string, env []string, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Env = append(append(cmd.Environ(), n.env...), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", n.Name, strings.Join(args, " "), err)
	}
	p := &Proc{Args: args, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop kills the process group (SIGTERM, then SIGKILL after 3 s) and waits.
func (p *Proc) Stop() error {
	p.once.Do(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return nil
}

// Close is Stop (for Lab.OnClose).
func (p *Proc) Close() error { return p.Stop() }

// ProcCPU returns the CPU time (user + system) process pid used so far.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	// Fields after the command: utime is field 14 of stat, stime 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// ProcMem returns a memory field of /proc/PID/status (VmRSS, RssAnon...)
// in bytes.
func ProcMem(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			if f := strings.Fields(v); len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// Children returns the processes whose parent is pid, with the base name
// of their program (the first word of /proc/PID/cmdline).
func Children(pid int) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			arg0, _, _ := strings.Cut(string(cmdline), "\x00")
			out[p] = filepath.Base(arg0)
		}
	}
	return out
}

// hostLimit is a machine-wide kernel setting a large lab may need raised.
type hostLimit struct {
	path string
	need func(hosts int) int
}

// hostLimits are the settings RaiseHostLimits raises. The kernel's ARP and
// neighbour tables are one table for all network namespaces, capped by
// gc_thresh3 (1024 by default): a lab of N hosts that all talk to each
// other needs about N×(N−1) entries, so from about 30 hosts on, sends fail
// with ENOBUFS ("No buffer space available") and joins time out. Each
// userspace WireGuard interface (wireguard-go's UAPI socket) takes an
// inotify instance, 128 per user by default for the whole machine.
var hostLimits = []hostLimit{
	{"/proc/sys/net/ipv4/neigh/default/gc_thresh1", func(n int) int { return n * n }},
	{"/proc/sys/net/ipv4/neigh/default/gc_thresh2", func(n int) int { return 2 * n * n }},
	{"/proc/sys/net/ipv4/neigh/default/gc_thresh3", func(n int) int { return 4 * n * n }},
	{"/proc/sys/net/ipv6/neigh/default/gc_thresh1", func(n int) int { return n * n }},
	{"/proc/sys/net/ipv6/neigh/default/gc_thresh2", func(n int) int { return 2 * n * n }},
	{"/proc/sys/net/ipv6/neigh/default/gc_thresh3", func(n int) int { return 4 * n * n }},
	{"/proc/sys/fs/inotify/max_user_instances", func(n int) int { return 4*n + 512 }},
}

// RaiseHostLimits raises the machine-wide kernel limits that a lab of
// hosts bootures needs (see hostLimits), never lowering one, and returns
// what it changed (as "path: old → new") and a function that puts the old
// values back (each only if nobody changed it since).
func RaiseHostLimits(hosts int) (changed []string, restore func(), err error) {
	type old struct {
		path     string
		val, set string
	}
	var olds []old
	restore = func() {
		for i := len(olds) - 1; i >= 0; i-- {
			b, err := os.ReadFile(olds[i].path)
			if err != nil || strings.TrimSpace(string(b)) != olds[i].set {
				continue // changed by someone else meanwhile: theirs now
			}
			os.WriteFile(olds[i].path, []byte(olds[i].val+"\n"), 0o644)
		}
	}
	for _, l := range hostLimits {
		b, err := os.ReadFile(l.path)
		if err != nil {
			continue // not on this kernel
		}
		cur := strings.TrimSpace(string(b))
		v, err := strconv.Atoi(cur)
		if err != nil {
			continue
		}
		want := l.need(hosts)
		if want <= v {
			continue
		}
		if err := os.WriteFile(l.path, []byte(strconv.Itoa(want)+"\n"), 0o644); err != nil {
			restore()
			return nil, func() {}, fmt.Errorf("raising %s to %d: %w", l.path, want, err)
		}
		olds = append(olds, old{l.path, cur, strconv.Itoa(want)})
		changed = append(changed, fmt.Sprintf("%s: %s → %d", strings.TrimPrefix(l.path, "/proc/sys/"), cur, want))
	}
	return changed, restore, nil
}
