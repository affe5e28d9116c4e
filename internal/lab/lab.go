package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Underlay addresses (TESTING.md: documentation ranges only).
var (
	// LANPrefix is the bridge's network: host i is .i, member i is .100+i.
	LANPrefix = netip.MustParsePrefix("198.51.100.0/24")
	// InternetPrefix is the link behind host 1: h1 is .1, the internet
	// host .2.
	InternetPrefix = netip.MustParsePrefix("203.0.113.0/24")
)

// MTU of the lab's underlay links, as on the machines this runs on.
const MTU = 1400

// Environment variables read by the harness.
const (
	// EnvLogLevel sets bootured's --log-level (default info).
	EnvLogLevel = "BOOTURE_LAB_LOGLEVEL"
	// EnvKeep=1 keeps a lab's directory (state, logs) after Close and
	// prints where it is.
	EnvKeep = "BOOTURE_LAB_KEEP"
)

// Options describes a lab.
type Options struct {
	// Hosts is the number of booture hosts, h1..hN (at least 1). Their
	// daemons are not started: see Host.Start and Lab.StartAll.
	Hosts int
	// Names are the bootures' names (--name), in order; hosts without one
	// are named after their namespace suffix: h1, h2, ...
	Names []string
	// Detach starts daemons so that they outlive this process (for a lab
	// that is kept: see Keep). Otherwise they are killed when it dies.
	Detach bool
	// Internet adds an "internet" namespace behind h1: h1's uplink "up0"
	// is 203.0.113.1/24 with its default route via 203.0.113.2, the
	// internet host, which has no route back to the LAN or the mesh.
	// Forwarding on h1 is left to bootured (full-tunnel members).
	Internet bool
	// Resync is bootured's --resync (0: the daemon's default).
	Resync time.Duration
	// DaemonArgs are extra bootured flags for every host.
	DaemonArgs []string
	// Logf receives progress lines (nil: none).
	Logf func(format string, args ...any)
	// Binaries to run (nil: Build's).
	Binaries *Binaries
	// OwnBinary gives each host its own copy of bootured, as bootures on
	// their own machines: the daemons then share none of the binary's
	// pages (footprint measurements; bootured releases its start-up
	// code's pages, which the kernel does only for unshared ones).
	OwnBinary bool
}

// Lab is a set of network namespaces on a bridge, with bootures and member
// clients.
type Lab struct {
	// ID is the short random id in every name of the lab.
	ID string
	// Dir holds the hosts' state, sockets, logs and member configurations.
	Dir string
	Bin *Binaries
	// Switch is the namespace of the bridge br0.
	Switch *NS
	Hosts  []*Host
	// Internet is set with Options.Internet.
	Internet *Internet

	opts Options

	mu         sync.Mutex
	namespaces []string // created, in order
	members    []*Member
	closers    []io.Closer
	closed     bool
}

// Internet is the namespace behind h1's uplink.
type Internet struct {
	NS
	// IP is the internet host's address, 203.0.113.2.
	IP netip.Addr
	// Gateway is h1's address on the uplink, 203.0.113.1.
	Gateway netip.Addr
	// Uplink is the name of h1's interface towards it.
	Uplink string
}

// New makes a lab for a test: t is skipped when labs cannot run here (see
// Require), fails if the lab cannot be made, and the lab is closed in
// t.Cleanup, printing the daemons' logs first when t failed.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	Require(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := Create(ctx, opts)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		// A daemon that died by itself, or does not stop cleanly on
		// SIGTERM, is a bug of its own.
		if err := l.StopAll(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, h := range l.Hosts {
				t.Logf("---- log of %s (%s), last lines ----\n%s", h.Name, h.LogPath, h.LogTail(150))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing lab %s: %v", l.ID, err)
		}
	})
	return l
}

// Create makes a lab of at most 99 hosts (members take .101 and up). Close
// it (also on error paths) to remove everything.
func Create(ctx context.Context, opts Options) (*Lab, error) {
	return create(ctx, opts, 99)
}

func create(ctx context.Context, opts Options, maxHosts int) (l *Lab, err error) {
	if opts.Hosts < 1 {
		return nil, errors.New("lab: at least one host")
	}
	if opts.Hosts > maxHosts {
		return nil, fmt.Errorf("lab: at most %d hosts", maxHosts)
	}
	if err := Check(); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	Janitor(opts.Logf)
	bin := opts.Binaries
	if bin == nil {
		if bin, err = Build(ctx); err != nil {
			return nil, err
		}
	}
	id, err := register()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bt"+id+"-")
	if err != nil {
		unregister(id)
		return nil, err
	}
	// bootured runs plugins as nobody: they pass through the lab's folder
	// to a site's folder in it (the daemons' state directories stay 0700).
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		unregister(id)
		return nil, err
	}
	l = &Lab{ID: id, Dir: dir, Bin: bin, opts: opts}
	if err := writeRegistration(id, dir); err != nil {
		l.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if err := l.setup(ctx); err != nil {
		return nil, err
	}
	opts.Logf("lab %s: %d host(s) on %s in namespaces %s*, files in %s", id, opts.Hosts, LANPrefix, l.prefix(), dir)
	return l, nil
}

func (l *Lab) prefix() string { return "bt" + l.ID }

// ip runs an ip(8) command in the root namespace (only ever with -n or
// netns arguments: nothing of the lab lives in the root namespace).
func (l *Lab) ip(args ...string) error {
	return run(context.Background(), DefaultTimeout, nil, append([]string{"ip"}, args...)...).Error()
}

func (l *Lab) addNS(name string) (*NS, error) {
	if err := l.ip("netns", "add", name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, name)
	l.mu.Unlock()
	if err := l.ip("-n", name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return &NS{Name: name}, nil
}

// attach makes a veth pair: eth0 in ns with addr, its peer swName on the
// bridge.
func (l *Lab) attach(ns *NS, swName string, addr netip.Addr) error {
	mtu := fmt.Sprint(MTU)
	steps := [][]string{
		{"link", "add", "eth0", "netns", ns.Name, "mtu", mtu, "type", "veth", "peer", "name", swName, "netns", l.Switch.Name, "mtu", mtu},
		{"-n", l.Switch.Name, "link", "set", swName, "master", "br0", "up"},
		{"-n", ns.Name, "addr", "add", netip.PrefixFrom(addr, LANPrefix.Bits()).String(), "dev", "eth0"},
		{"-n", ns.Name, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := l.ip(s...); err != nil {
			return err
		}
	}
	return nil
}

func hostAddr(p netip.Prefix, i int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

func (l *Lab) setup(ctx context.Context) error {
	sw, err := l.addNS(l.prefix() + "sw")
	if err != nil {
		return err
	}
	l.Switch = sw
	if err := l.ip("-n", sw.Name, "link", "add", "br0", "mtu", fmt.Sprint(MTU), "type", "bridge"); err != nil {
		return err
	}
	if err := l.ip("-n", sw.Name, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i := 1; i <= l.opts.Hosts; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := l.addHost(i); err != nil {
			return err
		}
	}
	if l.opts.Internet {
		if err := l.addInternet(); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) addHost(i int) (*Host, error) {
	port := fmt.Sprintf("h%d", i)
	ns, err := l.addNS(l.prefix() + port)
	if err != nil {
		return nil, err
	}
	name := port
	if i <= len(l.opts.Names) && l.opts.Names[i-1] != "" {
		name = l.opts.Names[i-1]
	}
	h := &Host{
		NS:       *ns,
		lab:      l,
		port:     port,
		Name:     name,
		Index:    i,
		IP:       hostAddr(LANPrefix, i),
		Iface:    fmt.Sprintf("%sw%d", l.prefix(), i),
		StateDir: filepath.Join(l.Dir, name),
		// Not in l.Dir itself: bootured makes its socket's folder 0700,
		// and plugins (run as nobody) pass through l.Dir to site folders.
		Socket:  filepath.Join(l.Dir, "sockets", name+".sock"),
		LogPath: filepath.Join(l.Dir, name+".log"),
	}
	if err := l.attach(&h.NS, port, h.IP); err != nil {
		return nil, err
	}
	if l.opts.OwnBinary {
		h.daemonBin = filepath.Join(l.Dir, name+".bootured")
		if err := copyFileSynced(l.Bin.Path("bootured"), h.daemonBin); err != nil {
			return nil, err
		}
	}
	// The lab is an isolated LAN: give the box an empty resolver file
	// (ip netns exec mounts it over /etc/resolv.conf), so that its daemon
	// forwards DNS nowhere, as a booture with no internet.
	if err := writeResolvConf(h.NS.Name, "# lab: an offline LAN, no upstream resolver\n"); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.Hosts = append(l.Hosts, h)
	l.mu.Unlock()
	return h, nil
}

func (l *Lab) addInternet() error {
	ns, err := l.addNS(l.prefix() + "in")
	if err != nil {
		return err
	}
	h1 := l.Hosts[0]
	in := &Internet{NS: *ns, IP: hostAddr(InternetPrefix, 2), Gateway: hostAddr(InternetPrefix, 1), Uplink: "up0"}
	mtu := fmt.Sprint(MTU)
	steps := [][]string{
		{"link", "add", in.Uplink, "netns", h1.NS.Name, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", ns.Name, "mtu", mtu},
		{"-n", h1.NS.Name, "addr", "add", netip.PrefixFrom(in.Gateway, InternetPrefix.Bits()).String(), "dev", in.Uplink},
		{"-n", h1.NS.Name, "link", "set", in.Uplink, "up"},
		{"-n", ns.Name, "addr", "add", netip.PrefixFrom(in.IP, InternetPrefix.Bits()).String(), "dev", "eth0"},
		{"-n", ns.Name, "link", "set", "eth0", "up"},
		{"-n", h1.NS.Name, "route", "add", "default", "via", in.IP.String(), "dev", in.Uplink},
	}
	for _, s := range steps {
		if err := l.ip(s...); err != nil {
			return err
		}
	}
	l.Internet = in
	return nil
}

// H returns host i (1-based).
func (l *Lab) H(i int) *Host { return l.Hosts[i-1] }

// Logf prints a progress line through Options.Logf.
func (l *Lab) Logf(format string, args ...any) { l.opts.Logf(format, args...) }

// OnClose registers c to be closed by Close (before the namespaces go).
func (l *Lab) OnClose(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, c)
}

// StartAll starts the daemons of the given hosts (all when none is given)
// in parallel and waits until each serves its API.
func (l *Lab) StartAll(hosts ...*Host) error {
	if len(hosts) == 0 {
		hosts = l.Hosts
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Start()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StopAll stops the running daemons (SIGTERM) in parallel and returns
// what went wrong: a daemon that had exited by itself, did not stop within
// 15 s, or exited with an error.
func (l *Lab) StopAll() error {
	errs := make([]error, len(l.Hosts))
	var wg sync.WaitGroup
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.Running() {
				errs[i] = h.Stop()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every daemon (SIGTERM, then SIGKILL), kills every process left
// in the lab's namespaces, deletes the namespaces (and so their links) and
// the lab's resolver files, WireGuard control sockets and directory. It is
// safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers := l.closers
	hosts := append([]*Host(nil), l.Hosts...)
	members := append([]*Member(nil), l.members...)
	namespaces := append([]string(nil), l.namespaces...)
	l.mu.Unlock()

	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i].Close()
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.Running() {
				if err := h.stop(5 * time.Second); err != nil {
					l.Logf("lab %s: stopping %s: %v", l.ID, h.Name, err)
				}
			}
		}()
	}
	wg.Wait()
	for _, m := range members {
		m.removeResolv()
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := removeNS(namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	removeSockets(l.ID)
	if os.Getenv(EnvKeep) == "1" {
		l.Logf("lab %s: %s=1: state and logs kept in %s", l.ID, EnvKeep, l.Dir)
	} else if l.Dir != "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	unregister(l.ID)
	return errors.Join(errs...)
}

// removeNS kills the processes of a namespace and deletes it.
func removeNS(name string) error {
	ns := &NS{Name: name}
	ns.killAll()
	r := run(context.Background(), DefaultTimeout, nil, "ip", "netns", "delete", name)
	if !r.OK() && !strings.Contains(r.Stderr, "No such file") {
		return r.Error()
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", name)); err == nil {
		os.Remove("/etc/netns") // fails unless empty
	}
	return nil
}

// removeSockets removes the WireGuard control sockets of the lab's
// interfaces (they outlive a killed daemon or wireguard-go).
func removeSockets(id string) {
	socks, _ := filepath.Glob(filepath.Join("/var/run/wireguard", "bt"+id+"*.sock"))
	for _, s := range socks {
		os.Remove(s)
	}
}

// newID returns a short random id of lower-case letters and digits.
func newID() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 4)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// Keep lets the lab outlive this process (start it with Options.Detach):
// the binaries are copied into Dir/bin, which BinPath then returns, and the
// janitor leaves the lab alone. CleanKept removes it later. Do not Close a
// kept lab.
func (l *Lab) Keep() error {
	bin := filepath.Join(l.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"bootured", "booture"} {
		b, err := os.ReadFile(l.Bin.Path(name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bin, name), b, 0o755); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.Bin = &Binaries{Dir: bin}
	l.mu.Unlock()
	return os.WriteFile(filepath.Join(RunDir, l.ID), fmt.Appendf(nil, "0 0 %s keep\n", l.Dir), 0o600)
}

// BinPath returns the path of a lab program (bootured, booture).
func (l *Lab) BinPath(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Bin.Path(name)
}

// writeResolvConf writes /etc/netns/NS/resolv.conf, which `ip netns exec NS`
// mounts over /etc/resolv.conf.
func writeResolvConf(ns, text string) error {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(text), 0o644)
}

// copyFileSynced copies an executable and flushes the copy to disk (the
// kernel cannot drop the pages of a file not written back yet).
func copyFileSynced(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	return out.Close()
}
