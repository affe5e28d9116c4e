// Package fakenet is an in-memory netcfg.Applier for tests.
//
// Fake keeps a WireGuard interface, its addresses, routes, nftables table
// and forwarding sysctls in memory, and changes them by executing the very
// Ops that netcfg.Diff computes, with WireGuard's semantics for peer
// changes: a test of the fake is a test of the diff. It records the Ops of
// the last Apply (so a test can assert that joining a booture added one peer
// and one route and touched nothing else), simulates drift made by hand
// (RemovePeer, DeleteRoute, ...) and failures (FailNextApply), and prints
// its state as `ip`/`wg`/`nft`/`sysctl` lines, never the private key.
package fakenet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
)

// ErrInjected is wrapped by the error of an Apply made to fail by
// FailNextApply when no error was given.
var ErrInjected = errors.New("fakenet: injected failure")

type peer struct {
	endpoint  netip.AddrPort
	allowed   []netip.Prefix
	keepalive time.Duration
	handshake time.Time
	rx, tx    int64
}

// Fake is an in-memory netcfg.Applier. Its methods are safe for concurrent
// use.
type Fake struct {
	mu sync.Mutex

	// Host, set by the Set* methods.
	mode       netcfg.Mode
	defaultMTU int
	uplink     string
	force6     bool // kernel has net.ipv6.conf.*.force_forwarding
	sysctl     map[string]string
	// handshakeOnAdd: a peer added with an endpoint completes a
	// handshake at once.
	handshakeOnAdd bool

	closed   bool
	link     bool
	iface    string
	mtu      int
	up       bool
	pub      key.PublicKey
	port     int
	peers    map[key.PublicKey]*peer
	addrs    []netip.Prefix
	routes   []netip.Prefix
	unreach  []netip.Prefix // unreachable routes of metric netcfg.UnreachableMetric
	firewall *netcfg.FirewallState
	changed  map[string]string // sysctl -> original value

	failAfter int // -1: no failure planned
	failErr   error
	applies   int
	lastOps   []netcfg.Op
}

var _ netcfg.Applier = (*Fake)(nil)

// New returns a Fake standing for a host whose default route goes out
// "eth0", whose underlay gives MTU 1420 and whose kernel has IPv6
// force_forwarding.
func New() *Fake {
	return &Fake{
		mode:       netcfg.ModeUserspace,
		defaultMTU: netcfg.DefaultMTU,
		uplink:     "eth0",
		force6:     true,
		sysctl:     map[string]string{},
		peers:      map[key.PublicKey]*peer{},
		changed:    map[string]string{},
		failAfter:  -1,
	}
}

// SetHandshakeOnAdd makes a peer added with an endpoint report a handshake
// completed when it was added, as if the other side answered at once (off
// by default: no handshake ever completes). Fakes have no data plane; a
// test of something else wants peers that settle.
func (f *Fake) SetHandshakeOnAdd(on bool) { f.mu.Lock(); f.handshakeOnAdd = on; f.mu.Unlock() }

// SetMode sets the mode State reports (default userspace).
func (f *Fake) SetMode(m netcfg.Mode) { f.mu.Lock(); f.mode = m; f.mu.Unlock() }

// SetDefaultMTU sets the MTU used when Config.MTU is 0.
func (f *Fake) SetDefaultMTU(mtu int) { f.mu.Lock(); f.defaultMTU = mtu; f.mu.Unlock() }

// SetUplink sets the default route's interface ("" for none).
func (f *Fake) SetUplink(name string) { f.mu.Lock(); f.uplink = name; f.mu.Unlock() }

// SetForceForwarding says whether the simulated kernel has IPv6
// force_forwarding (Linux 6.17+); without it netcfg falls back to the
// global switch.
func (f *Fake) SetForceForwarding(ok bool) { f.mu.Lock(); f.force6 = ok; f.mu.Unlock() }

// SetSysctl sets a /proc/sys entry (path form, e.g.
// "net/ipv6/conf/all/forwarding"), as the host's admin would.
func (f *Fake) SetSysctl(path, value string) { f.mu.Lock(); f.sysctl[path] = value; f.mu.Unlock() }

// Sysctl returns a /proc/sys entry; ok is false if it does not exist.
func (f *Fake) Sysctl(path string) (value string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readSysctlLocked(path)
}

// readSysctlLocked simulates the kernel's entries: forwarding 0, accept_ra 1
// unless set; the WireGuard interface's only while it exists.
func (f *Fake) readSysctlLocked(path string) (string, bool) {
	if v, ok := f.sysctl[path]; ok {
		return v, true
	}
	parts := strings.Split(path, "/")
	if len(parts) != 5 || parts[0] != "net" || parts[2] != "conf" {
		return "", false
	}
	ifc := parts[3]
	if ifc == f.iface && !f.link {
		return "", false
	}
	switch {
	case parts[4] == "forwarding":
		return "0", true
	case parts[1] == "ipv6" && parts[4] == "accept_ra":
		return "1", true
	case parts[1] == "ipv6" && parts[4] == "force_forwarding" && f.force6 && ifc != "all":
		return "0", true
	}
	return "", false
}

// FailNextApply makes the next Apply fail with err (or ErrInjected if nil)
// before changing anything.
func (f *Fake) FailNextApply(err error) { f.FailNextApplyAfter(0, err) }

// FailNextApplyAfter makes the next Apply fail with err (or ErrInjected)
// after executing n Ops, leaving a partly applied state like a real failure.
func (f *Fake) FailNextApplyAfter(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = ErrInjected
	}
	f.failAfter, f.failErr = n, err
}

// Apply implements netcfg.Applier.
func (f *Fake) Apply(ctx context.Context, cfg netcfg.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return netcfg.ErrClosed
	}
	if f.iface != "" && f.iface != cfg.Interface {
		return fmt.Errorf("%w: interface cannot change from %s to %s", netcfg.ErrInvalidConfig, f.iface, cfg.Interface)
	}
	f.iface = cfg.Interface
	f.applies++
	f.lastOps = nil
	failAfter, failErr := f.failAfter, f.failErr
	f.failAfter, f.failErr = -1, nil
	done := 0
	step := func(op netcfg.Op) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("applying network config: %w", err)
		}
		if done == failAfter {
			return fmt.Errorf("applying %s: %w", op.Kind, failErr)
		}
		f.execLocked(cfg, op)
		f.lastOps = append(f.lastOps, op)
		done++
		return nil
	}
	if !f.link {
		if err := step(netcfg.Op{Kind: netcfg.OpLinkAdd, Interface: cfg.Interface}); err != nil {
			return err
		}
	}
	for _, op := range netcfg.Diff(f.observedLocked(cfg), cfg) {
		if err := step(op); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fake) observedLocked(cfg netcfg.Config) netcfg.Observed {
	obs := netcfg.Observed{
		MTU:         f.mtu,
		Up:          f.up,
		PublicKey:   f.pub,
		ListenPort:  f.port,
		Peers:       f.peerStatesLocked(),
		Addresses:   slices.Clone(f.addrs),
		Routes:      slices.Clone(f.routes),
		Unreachable: slices.Clone(f.unreach),
		DefaultMTU:  f.defaultMTU,
		Uplink:      cfg.Firewall.Uplink,
		Sysctls:     map[string]string{},
		Changed:     map[string]string{},
	}
	if obs.Uplink == "" {
		obs.Uplink = f.uplink
	}
	if f.firewall != nil {
		fw := *f.firewall
		obs.Firewall = &fw
	}
	knobs := netcfg.SysctlKnobs(cfg.Interface, obs.Uplink)
	for k, v := range f.changed {
		obs.Changed[k] = v
		knobs = append(knobs, k)
	}
	for _, k := range knobs {
		if v, ok := f.readSysctlLocked(k); ok {
			obs.Sysctls[k] = v
		}
	}
	return obs
}

// execLocked executes one Op on the in-memory state.
func (f *Fake) execLocked(cfg netcfg.Config, op netcfg.Op) {
	switch op.Kind {
	case netcfg.OpLinkAdd:
		f.link, f.mtu, f.up = true, netcfg.DefaultMTU, false
	case netcfg.OpLinkSet:
		if op.MTU != 0 {
			f.mtu = op.MTU
		}
		if op.Up {
			f.up = true
		}
	case netcfg.OpDevice:
		if op.SetPrivateKey {
			f.pub = cfg.PrivateKey.Public()
		}
		if op.ListenPort != 0 {
			f.port = op.ListenPort
		}
	case netcfg.OpPeer:
		f.configurePeerLocked(op.Peer)
	case netcfg.OpAddressAdd:
		if !slices.Contains(f.addrs, op.Prefix) {
			f.addrs = append(f.addrs, op.Prefix)
		}
	case netcfg.OpAddressDel:
		f.addrs = slices.DeleteFunc(f.addrs, func(p netip.Prefix) bool { return p == op.Prefix })
	case netcfg.OpRouteAdd:
		if !slices.Contains(f.routes, op.Prefix) {
			f.routes = append(f.routes, op.Prefix)
		}
	case netcfg.OpRouteDel:
		f.routes = slices.DeleteFunc(f.routes, func(p netip.Prefix) bool { return p == op.Prefix })
	case netcfg.OpUnreachableAdd:
		if !slices.Contains(f.unreach, op.Prefix) {
			f.unreach = append(f.unreach, op.Prefix)
		}
	case netcfg.OpUnreachableDel:
		f.unreach = slices.DeleteFunc(f.unreach, func(p netip.Prefix) bool { return p == op.Prefix })
	case netcfg.OpFirewallSet:
		fw := op.Firewall
		f.firewall = &fw
	case netcfg.OpFirewallDel:
		f.firewall = nil
	case netcfg.OpSysctl:
		if op.Restore {
			delete(f.changed, op.Sysctl)
		} else if _, ok := f.changed[op.Sysctl]; !ok {
			orig, _ := f.readSysctlLocked(op.Sysctl)
			f.changed[op.Sysctl] = orig
		}
		f.writeSysctlLocked(op.Sysctl, op.Value)
	}
}

func (f *Fake) writeSysctlLocked(path, value string) {
	f.sysctl[path] = value
	// As the kernel does: turning global IPv6 forwarding off resets every
	// interface's force_forwarding.
	if path == "net/ipv6/conf/all/forwarding" && value == "0" {
		for k := range f.sysctl {
			if strings.HasSuffix(k, "/force_forwarding") {
				f.sysctl[k] = "0"
			}
		}
	}
}

// configurePeerLocked has wgctrl's (and WireGuard's) semantics for one
// PeerChange: unset fields leave settings alone, and an allowed IP given to a
// peer is taken from any other peer.
func (f *Fake) configurePeerLocked(pc netcfg.PeerChange) {
	p, ok := f.peers[pc.PublicKey]
	if pc.Remove {
		delete(f.peers, pc.PublicKey)
		return
	}
	if !ok {
		if pc.UpdateOnly {
			return
		}
		p = &peer{}
		f.peers[pc.PublicKey] = p
		if f.handshakeOnAdd && pc.Endpoint.IsValid() {
			p.handshake = time.Now()
		}
	}
	if ep := pc.Endpoint; ep.IsValid() {
		p.endpoint = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
	}
	if pc.ReplaceAllowedIPs {
		p.allowed = nil
	}
	for _, a := range pc.AllowedIPs {
		if !a.IsValid() {
			continue
		}
		a = a.Masked()
		for k, other := range f.peers {
			if k != pc.PublicKey {
				other.allowed = slices.DeleteFunc(other.allowed, func(b netip.Prefix) bool { return b == a })
			}
		}
		if !slices.Contains(p.allowed, a) {
			p.allowed = append(p.allowed, a)
		}
	}
	if pc.PersistentKeepalive != nil {
		p.keepalive = *pc.PersistentKeepalive
	}
}

func (f *Fake) sortedKeysLocked() []key.PublicKey {
	keys := make([]key.PublicKey, 0, len(f.peers))
	for k := range f.peers {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, key.PublicKey.Compare)
	return keys
}

func (f *Fake) peerStatesLocked() []netcfg.PeerState {
	var out []netcfg.PeerState
	for _, k := range f.sortedKeysLocked() {
		p := f.peers[k]
		out = append(out, netcfg.PeerState{
			PublicKey:           k,
			Endpoint:            p.endpoint,
			LastHandshake:       p.handshake,
			RxBytes:             p.rx,
			TxBytes:             p.tx,
			AllowedIPs:          slices.Clone(p.allowed),
			PersistentKeepalive: p.keepalive,
		})
	}
	return out
}

// State implements netcfg.Applier.
func (f *Fake) State(ctx context.Context) (netcfg.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return netcfg.State{}, netcfg.ErrClosed
	}
	if !f.link {
		return netcfg.State{}, netcfg.ErrNoInterface
	}
	return netcfg.State{
		Interface:  f.iface,
		Mode:       f.mode,
		ListenPort: f.port,
		MTU:        f.mtu,
		PublicKey:  f.pub,
		Peers:      f.peerStatesLocked(),
	}, nil
}

// Close implements netcfg.Applier: the interface, its routes, the
// unreachable routes and the table are gone and the sysctls are restored.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	keys := make([]string, 0, len(f.changed))
	for k := range f.changed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f.writeSysctlLocked(k, f.changed[k])
	}
	f.changed = map[string]string{}
	f.deleteLinkLocked()
	f.firewall = nil
	f.unreach = nil
	return nil
}

func (f *Fake) deleteLinkLocked() {
	f.link, f.mtu, f.up, f.pub, f.port = false, 0, false, key.PublicKey{}, 0
	f.peers = map[key.PublicKey]*peer{}
	f.addrs, f.routes = nil, nil
	for k := range f.sysctl {
		if strings.Contains(k, "/conf/"+f.iface+"/") {
			delete(f.sysctl, k)
		}
	}
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.closed }

// Applies returns how many times Apply ran past validation.
func (f *Fake) Applies() int { f.mu.Lock(); defer f.mu.Unlock(); return f.applies }

// LastOps returns the Ops the last Apply executed, in order.
func (f *Fake) LastOps() []netcfg.Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lastOps)
}

// LastOpLines renders LastOps as command lines.
func (f *Fake) LastOpLines() []string {
	var lines []string
	for _, op := range f.LastOps() {
		lines = append(lines, op.Lines()...)
	}
	return lines
}

// TouchedPeers returns the keys of the peers the last Apply added, changed
// or removed, sorted.
func (f *Fake) TouchedPeers() []key.PublicKey {
	var keys []key.PublicKey
	for _, op := range f.LastOps() {
		if op.Kind == netcfg.OpPeer && !slices.Contains(keys, op.Peer.PublicKey) {
			keys = append(keys, op.Peer.PublicKey)
		}
	}
	slices.SortFunc(keys, key.PublicKey.Compare)
	return keys
}

// Drift made by hand.

// RemovePeer removes a peer, like `wg set IFACE peer KEY remove`; it reports
// whether the peer existed.
func (f *Fake) RemovePeer(k key.PublicKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.peers[k]
	delete(f.peers, k)
	return ok
}

// SetPeerEndpoint sets a peer's endpoint as WireGuard does when it learns
// it from the peer's packets (roaming).
func (f *Fake) SetPeerEndpoint(k key.PublicKey, ep netip.AddrPort) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[k]
	if ok {
		p.endpoint = ep
	}
	return ok
}

// SetPeerStats sets what State reports for a peer's traffic.
func (f *Fake) SetPeerStats(k key.PublicKey, handshake time.Time, rx, tx int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[k]
	if ok {
		p.handshake, p.rx, p.tx = handshake, rx, tx
	}
	return ok
}

// DeleteRoute removes a route, like `ip route del PREFIX dev IFACE`.
func (f *Fake) DeleteRoute(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.routes)
	f.routes = slices.DeleteFunc(f.routes, func(r netip.Prefix) bool { return r == p })
	return len(f.routes) != n
}

// AddRoute adds a route out the interface, like `ip route add PREFIX dev
// IFACE`.
func (f *Fake) AddRoute(p netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.routes, p.Masked()) {
		f.routes = append(f.routes, p.Masked())
	}
}

// DeleteUnreachable removes an unreachable route, like `ip route del
// unreachable PREFIX metric netcfg.UnreachableMetric`; it reports whether it
// existed.
func (f *Fake) DeleteUnreachable(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.unreach)
	f.unreach = slices.DeleteFunc(f.unreach, func(r netip.Prefix) bool { return r == p })
	return len(f.unreach) != n
}

// DeleteAddress removes an address, like `ip address del`.
func (f *Fake) DeleteAddress(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.addrs)
	f.addrs = slices.DeleteFunc(f.addrs, func(a netip.Prefix) bool { return a == p })
	return len(f.addrs) != n
}

// DeleteFirewall removes the table, like `nft delete table inet booture`.
func (f *Fake) DeleteFirewall() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.firewall != nil
	f.firewall = nil
	return ok
}

// DeleteLink removes the interface with everything on it, like `ip link
// del IFACE`.
func (f *Fake) DeleteLink() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.link
	f.deleteLinkLocked()
	return ok
}

// String prints the state as the commands that would rebuild it, in a
// fixed order; "" when there is no interface.
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	if f.link {
		ifc := f.iface
		lines = append(lines, "ip link add "+ifc+" type wireguard")
		link := fmt.Sprintf("ip link set %s mtu %d", ifc, f.mtu)
		if f.up {
			link += " up"
		}
		lines = append(lines, link)
		dev := "wg set " + ifc
		if f.port != 0 {
			dev += fmt.Sprintf(" listen-port %d", f.port)
		}
		if !f.pub.IsZero() {
			dev += " private-key <redacted> # public-key " + f.pub.String()
		}
		lines = append(lines, dev)
		for _, k := range f.sortedKeysLocked() {
			p := f.peers[k]
			pc := netcfg.PeerChange{PublicKey: k, ReplaceAllowedIPs: true, Endpoint: p.endpoint, AllowedIPs: sortedPrefixes(p.allowed)}
			if p.keepalive != 0 {
				ka := p.keepalive
				pc.PersistentKeepalive = &ka
			}
			lines = append(lines, netcfg.Op{Kind: netcfg.OpPeer, Interface: ifc, Peer: pc}.Lines()...)
		}
		for _, a := range sortedPrefixes(f.addrs) {
			lines = append(lines, "ip address add "+a.String()+" dev "+ifc)
		}
		for _, r := range sortedPrefixes(f.routes) {
			lines = append(lines, "ip route add "+r.String()+" dev "+ifc)
		}
	}
	// Not on the interface: they outlive it.
	for _, r := range sortedPrefixes(f.unreach) {
		lines = append(lines, netcfg.UnreachableLine("add", r))
	}
	keys := make([]string, 0, len(f.changed))
	for k := range f.changed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v, ok := f.sysctl[k]; ok {
			lines = append(lines, "sysctl -w "+netcfg.SysctlName(k)+"="+v)
		}
	}
	if f.firewall != nil {
		lines = append(lines, f.firewall.Lines()...)
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}
