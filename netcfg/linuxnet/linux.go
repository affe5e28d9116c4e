//go:build linux

package linuxnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/booture/booture/key"
	"github.com/booture/booture/netcfg"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Options configures New.
type Options struct {
	// Mode is the data plane: netcfg.ModeKernel, ModeUserspace, or ModeAuto (the
	// default, also for ""): the kernel's WireGuard, falling back to the
	// embedded wireguard-go when the kernel refuses to create the link.
	Mode netcfg.Mode
	// Listen is the underlay address the daemon binds; it picks the
	// interface whose MTU sets the default MTU (see UnderlayMTU). The zero
	// value means the default route's interface.
	Listen netip.Addr
}

// Applier is the netcfg.Applier of a Linux host: wgctrl for WireGuard (kernel or
// embedded wireguard-go), netlink for link, addresses and routes, nftables
// for the filter, /proc/sys for forwarding.
//
// In userspace mode the embedded wireguard-go serves the usual control
// socket (UAPISocket), so wgctrl and `wg show` work as on a kernel
// interface; the socket is removed on Close.
//
// Only the main routing table is managed: routes out the interface that the
// Config does not list are removed, except the kernel's connected ones.
//
// The filter is one nftables table of its own (inet netcfg.FirewallTable),
// rebuilt atomically when its netcfg.FirewallState changes and re-checked at every Apply,
// so that a table deleted by hand comes back; other tables are never
// touched. Its chains (prerouting, input, forward, postrouting) have policy
// accept: they filter only what concerns the WireGuard interface and the
// mesh pools (see netcfg.FirewallState.Rules). Config.Unreachable routes
// are unreachable routes of metric netcfg.UnreachableMetric in the main
// table, which is how they are told from others; Close removes them.
//
// Forwarding is enabled per interface and only where needed (see
// netcfg.Diff):
// IPv4 forwarding on the WireGuard interface when there are peers, and on
// the uplink when there are full-tunnel members (their replies enter
// there). For IPv6 the per-interface force_forwarding (Linux 6.17+) is used,
// because the global switch turns every interface into a router that stops
// accepting router advertisements; on older kernels the global switch is
// used after raising the uplink's accept_ra from 1 to 2. Values changed are
// restored when no longer needed and on Close.
//
// When Config.MTU is 0 the MTU is UnderlayMTU's; if the underlay cannot be
// found later (default route gone), the interface keeps the MTU it has.
type Applier struct {
	log  *slog.Logger
	opts Options

	mu      sync.Mutex // held by Apply, State and Close for their whole run
	closed  bool
	iface   string      // fixed by the first Apply
	mode    netcfg.Mode // data plane of the current link; "" before it exists
	wg      *wgctrl.Client
	user    *userspaceDevice      // in userspace mode
	fw      *netcfg.FirewallState // content of the table as last built
	changed []sysctlChange        // entries changed, in order, with their original values
	lastOps []netcfg.Op
}

type sysctlChange struct{ path, orig string }

var _ netcfg.Applier = (*Applier)(nil)

// New returns an Applier for this host. It changes nothing until the
// first Apply. A nil logger discards logs.
func New(logger *slog.Logger, opts Options) (*Applier, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch opts.Mode {
	case "":
		opts.Mode = netcfg.ModeAuto
	case netcfg.ModeAuto, netcfg.ModeKernel, netcfg.ModeUserspace:
	default:
		return nil, fmt.Errorf("unknown wireguard mode %q", opts.Mode)
	}
	return &Applier{log: logger.With("subsystem", "netcfg"), opts: opts}, nil
}

// LastOps returns the changes the last Apply made (for logs and tests).
func (l *Applier) LastOps() []netcfg.Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lastOps)
}

// Apply implements Applier.
func (l *Applier) Apply(ctx context.Context, cfg netcfg.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return netcfg.ErrClosed
	}
	if l.iface != "" && l.iface != cfg.Interface {
		return fmt.Errorf("%w: interface cannot change from %s to %s", netcfg.ErrInvalidConfig, l.iface, cfg.Interface)
	}
	l.iface = cfg.Interface
	l.lastOps = nil

	link, err := l.ensureLinkLocked(cfg)
	if err != nil {
		return err
	}
	obs, err := l.observeLocked(link, cfg)
	if err != nil {
		return err
	}
	return l.executeLocked(ctx, link, cfg, netcfg.Diff(obs, cfg))
}

func (l *Applier) record(op netcfg.Op) {
	l.lastOps = append(l.lastOps, op)
	l.log.Info("network change", "op", op.String())
}

// ensureLinkLocked returns the interface, creating it when missing (first
// Apply, or deleted by hand since).
func (l *Applier) ensureLinkLocked(cfg netcfg.Config) (netlink.Link, error) {
	name := cfg.Interface
	link, err := linkByName(name)
	switch {
	case err == nil && link.Type() == "wireguard":
		if l.opts.Mode == netcfg.ModeUserspace {
			return nil, fmt.Errorf("interface %s is a kernel wireguard link, but userspace mode was asked for", name)
		}
		if l.user != nil { // ours was replaced behind our back
			_ = l.user.close()
			l.user = nil
		}
		if l.mode != netcfg.ModeKernel {
			l.log.Info("using existing kernel wireguard interface", "interface", name)
		}
		return link, l.setModeLocked(netcfg.ModeKernel)
	case err == nil && l.user != nil:
		return link, l.user.ensureSocket()
	case err == nil:
		return nil, fmt.Errorf("interface %s exists (type %s) and is not a wireguard interface of this daemon", name, link.Type())
	case !isLinkNotFound(err):
		return nil, fmt.Errorf("looking up interface %s: %w", name, err)
	}

	if l.user != nil { // the tun was deleted by hand: the old device is dead
		_ = l.user.close()
		l.user = nil
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = UnderlayMTU(l.opts.Listen)
	}
	mode := netcfg.ModeUserspace
	if l.opts.Mode != netcfg.ModeUserspace {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = name, mtu
		err := retryNetlinkDo(func() error { return netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la}) })
		switch {
		case err == nil:
			mode = netcfg.ModeKernel
		case l.opts.Mode == netcfg.ModeKernel:
			return nil, fmt.Errorf("creating kernel wireguard interface %s: %w", name, err)
		default:
			l.log.Info("kernel wireguard unavailable, using embedded wireguard-go", "interface", name, "err", err)
		}
	}
	if mode == netcfg.ModeUserspace {
		u, err := newUserspaceDevice(l.log, name, mtu)
		if err != nil {
			return nil, err
		}
		l.user = u
	}
	if err := l.setModeLocked(mode); err != nil {
		return nil, err
	}
	l.record(netcfg.Op{Kind: netcfg.OpLinkAdd, Interface: name})
	l.log.Info("wireguard interface created", "interface", name, "mode", mode)
	link, err = linkByName(name)
	if err != nil {
		return nil, fmt.Errorf("looking up new interface %s: %w", name, err)
	}
	return link, nil
}

// setModeLocked records the data plane and (re)opens the wgctrl client,
// which finds the kernel's genetlink family only if the module was loaded
// when the client was made.
func (l *Applier) setModeLocked(mode netcfg.Mode) error {
	if l.wg != nil && l.mode == mode {
		return nil
	}
	if l.wg != nil {
		_ = l.wg.Close()
		l.wg = nil
	}
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("opening wgctrl: %w", err)
	}
	l.wg, l.mode = c, mode
	return nil
}

func (l *Applier) observeLocked(link netlink.Link, cfg netcfg.Config) (netcfg.Observed, error) {
	name := cfg.Interface
	attrs := link.Attrs()
	obs := netcfg.Observed{MTU: attrs.MTU, Up: attrs.Flags&net.FlagUp != 0}

	dev, err := l.wg.Device(name)
	if err != nil {
		return obs, fmt.Errorf("reading wireguard device %s: %w", name, err)
	}
	obs.ListenPort = dev.ListenPort
	if dev.PrivateKey != (wgtypes.Key{}) {
		obs.PublicKey = key.PublicKeyFromRaw32(dev.PublicKey)
	}
	obs.Peers = peerStates(dev.Peers)

	if obs.Addresses, err = linkAddresses(link); err != nil {
		return obs, fmt.Errorf("listing addresses of %s: %w", name, err)
	}
	if obs.Routes, err = linkRoutes(link); err != nil {
		return obs, fmt.Errorf("listing routes of %s: %w", name, err)
	}
	if obs.Unreachable, err = unreachableRoutes(); err != nil {
		return obs, fmt.Errorf("listing unreachable routes: %w", err)
	}
	if cfg.MTU == 0 {
		// Unknown underlay (e.g. the default route went away): keep the
		// MTU the interface has rather than jump to the fallback.
		obs.DefaultMTU, _ = underlayMTU(l.opts.Listen)
	}
	obs.Uplink = cfg.Firewall.Uplink
	if obs.Uplink == "" {
		obs.Uplink = defaultRouteLinkName()
	}

	exists, err := nftTableExists()
	if err != nil && (cfg.Firewall.Enabled || l.fw != nil) {
		return obs, err
	}
	// Without nftables in the kernel, a Config without firewall still works.
	if exists {
		obs.Firewall = &netcfg.FirewallState{} // unknown content: rebuilt or deleted
		if l.fw != nil {
			fw := *l.fw
			obs.Firewall = &fw
		}
	}

	obs.Sysctls = map[string]string{}
	obs.Changed = map[string]string{}
	knobs := netcfg.SysctlKnobs(name, obs.Uplink)
	for _, c := range l.changed {
		obs.Changed[c.path] = c.orig
		knobs = append(knobs, c.path)
	}
	for _, k := range knobs {
		if v, err := readSysctl(k); err == nil {
			obs.Sysctls[k] = v
		}
	}
	return obs, nil
}

func peerStates(peers []wgtypes.Peer) []netcfg.PeerState {
	out := make([]netcfg.PeerState, 0, len(peers))
	for _, p := range peers {
		out = append(out, netcfg.PeerState{
			PublicKey:           key.PublicKeyFromRaw32(p.PublicKey),
			Endpoint:            addrPortFromUDP(p.Endpoint),
			LastHandshake:       p.LastHandshakeTime,
			RxBytes:             p.ReceiveBytes,
			TxBytes:             p.TransmitBytes,
			AllowedIPs:          fromIPNets(p.AllowedIPs),
			PersistentKeepalive: p.PersistentKeepaliveInterval,
		})
	}
	return out
}

func isWireGuardOp(k netcfg.OpKind) bool { return k == netcfg.OpDevice || k == netcfg.OpPeer }

func (l *Applier) executeLocked(ctx context.Context, link netlink.Link, cfg netcfg.Config, ops []netcfg.Op) error {
	for i := 0; i < len(ops); {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("applying network config: %w", err)
		}
		op := ops[i]
		if isWireGuardOp(op.Kind) {
			// Consecutive WireGuard changes go in one ConfigureDevice call;
			// only the listed peers are touched (never ReplacePeers).
			j := i
			var wc wgtypes.Config
			for ; j < len(ops) && isWireGuardOp(ops[j].Kind); j++ {
				o := ops[j]
				if o.Kind == netcfg.OpPeer {
					wc.Peers = append(wc.Peers, peerConfig(o.Peer))
					continue
				}
				if o.SetPrivateKey {
					k := wgtypes.Key(cfg.PrivateKey.RevealRaw32())
					wc.PrivateKey = &k
				}
				if o.ListenPort != 0 {
					p := o.ListenPort
					wc.ListenPort = &p
				}
			}
			if err := l.wg.ConfigureDevice(cfg.Interface, wc); err != nil {
				return fmt.Errorf("configuring wireguard device %s: %w", cfg.Interface, err)
			}
			for _, o := range ops[i:j] {
				l.record(o)
			}
			i = j
			continue
		}
		if err := l.execOneLocked(link, op); err != nil {
			return err
		}
		l.record(op)
		i++
	}
	return nil
}

func (l *Applier) execOneLocked(link netlink.Link, op netcfg.Op) error {
	switch op.Kind {
	case netcfg.OpLinkSet:
		if op.MTU != 0 {
			if err := retryNetlinkDo(func() error { return netlink.LinkSetMTU(link, op.MTU) }); err != nil {
				return fmt.Errorf("setting mtu of %s to %d: %w", op.Interface, op.MTU, err)
			}
		}
		if op.Up {
			if err := retryNetlinkDo(func() error { return netlink.LinkSetUp(link) }); err != nil {
				return fmt.Errorf("setting %s up: %w", op.Interface, err)
			}
		}
	case netcfg.OpAddressAdd:
		if err := addAddress(link, op.Prefix); err != nil {
			return fmt.Errorf("adding address %s: %w", op.Prefix, err)
		}
	case netcfg.OpAddressDel:
		if err := delAddress(link, op.Prefix); err != nil {
			return fmt.Errorf("removing address %s: %w", op.Prefix, err)
		}
	case netcfg.OpRouteAdd:
		if err := addRoute(link, op.Prefix); err != nil {
			return fmt.Errorf("adding route %s: %w", op.Prefix, err)
		}
	case netcfg.OpRouteDel:
		if err := delRoute(link, op.Prefix); err != nil {
			return fmt.Errorf("removing route %s: %w", op.Prefix, err)
		}
	case netcfg.OpUnreachableAdd:
		if err := addUnreachable(op.Prefix); err != nil {
			return fmt.Errorf("adding unreachable route %s: %w", op.Prefix, err)
		}
	case netcfg.OpUnreachableDel:
		if err := delUnreachable(op.Prefix); err != nil {
			return fmt.Errorf("removing unreachable route %s: %w", op.Prefix, err)
		}
	case netcfg.OpFirewallSet:
		if err := nftReplace(op.Firewall); err != nil {
			return err
		}
		fw := op.Firewall
		l.fw = &fw
	case netcfg.OpFirewallDel:
		if err := nftDelete(); err != nil {
			return err
		}
		l.fw = nil
	case netcfg.OpSysctl:
		return l.setSysctlLocked(op)
	default:
		return fmt.Errorf("unexpected network change %v", op.Kind)
	}
	return nil
}

// setSysctlLocked writes one /proc/sys entry, remembering the original value
// the first time so that it can be restored when no longer needed and on
// Close.
func (l *Applier) setSysctlLocked(op netcfg.Op) error {
	idx := slices.IndexFunc(l.changed, func(c sysctlChange) bool { return c.path == op.Sysctl })
	if !op.Restore && idx < 0 {
		orig, err := readSysctl(op.Sysctl)
		if err != nil {
			return fmt.Errorf("reading sysctl %s: %w", netcfg.SysctlName(op.Sysctl), err)
		}
		l.changed = append(l.changed, sysctlChange{op.Sysctl, orig})
	}
	err := writeSysctl(op.Sysctl, op.Value)
	if op.Restore && idx >= 0 && (err == nil || errors.Is(err, os.ErrNotExist)) {
		l.changed = slices.Delete(l.changed, idx, idx+1)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%s: %w", netcfg.SysctlName(op.Sysctl), op.Value, err)
	}
	return nil
}

// State implements Applier.
func (l *Applier) State(ctx context.Context) (netcfg.State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return netcfg.State{}, netcfg.ErrClosed
	}
	if l.wg == nil {
		return netcfg.State{}, netcfg.ErrNoInterface
	}
	link, err := linkByName(l.iface)
	if isLinkNotFound(err) {
		return netcfg.State{}, fmt.Errorf("%w: %s is gone", netcfg.ErrNoInterface, l.iface)
	}
	if err != nil {
		return netcfg.State{}, fmt.Errorf("looking up interface %s: %w", l.iface, err)
	}
	dev, err := l.wg.Device(l.iface)
	if errors.Is(err, os.ErrNotExist) {
		return netcfg.State{}, fmt.Errorf("%w: %s is not a wireguard device", netcfg.ErrNoInterface, l.iface)
	}
	if err != nil {
		return netcfg.State{}, fmt.Errorf("reading wireguard device %s: %w", l.iface, err)
	}
	st := netcfg.State{
		Interface:  l.iface,
		Mode:       l.mode,
		ListenPort: dev.ListenPort,
		MTU:        link.Attrs().MTU,
		Peers:      peerStates(dev.Peers),
	}
	if dev.PrivateKey != (wgtypes.Key{}) {
		st.PublicKey = key.PublicKeyFromRaw32(dev.PublicKey)
	}
	return st, nil
}

// Close implements Applier: it restores the forwarding sysctls it changed,
// removes the interface (with its routes and, in userspace mode, the
// embedded device and its socket) and the nftables table. Further calls do
// nothing.
func (l *Applier) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	// Forwarding off first, so that nothing is forwarded unfiltered.
	for i := len(l.changed) - 1; i >= 0; i-- {
		c := l.changed[i]
		if err := writeSysctl(c.path, c.orig); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("restoring sysctl %s: %w", netcfg.SysctlName(c.path), err))
		}
	}
	l.changed = nil
	if l.user != nil {
		if err := l.user.close(); err != nil {
			errs = append(errs, err)
		}
		l.user = nil
	}
	// l.wg is set once an interface of ours exists: never delete a link or
	// table of someone else after a failed first Apply.
	if l.wg != nil {
		if link, err := linkByName(l.iface); err == nil {
			if err := retryNetlinkDo(func() error { return netlink.LinkDel(link) }); err != nil && !isLinkNotFound(err) {
				errs = append(errs, fmt.Errorf("removing interface %s: %w", l.iface, err))
			}
		}
		// The pools' unreachable routes are not on the interface: they
		// outlive it.
		if routes, err := unreachableRoutes(); err != nil {
			errs = append(errs, fmt.Errorf("listing unreachable routes: %w", err))
		} else {
			for _, p := range routes {
				if err := delUnreachable(p); err != nil {
					errs = append(errs, fmt.Errorf("removing unreachable route %s: %w", p, err))
				}
			}
		}
		// A table is left only by a firewall we built; without one, failing
		// to reach nftables (a kernel without it) is no error.
		if err := nftDelete(); err != nil && l.fw != nil {
			errs = append(errs, err)
		}
		l.fw = nil
		_ = l.wg.Close()
		l.wg = nil
	}
	return errors.Join(errs...)
}
