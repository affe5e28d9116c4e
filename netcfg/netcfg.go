// Package netcfg is the model of booture's seam with the operating system's
// network stack.
//
// The daemon describes the whole desired state of its WireGuard interface in
// one Config (keys, peers, addresses, routes, packet filter) and hands it to an
// Applier. Apply compares that Config with what the system actually has and
// changes only the difference: a peer whose settings did not change is never
// touched, so its WireGuard session and the traffic through it continue.
// Apply is idempotent and may be called any number of times with identical
// Configs; calling it again repairs drift (a peer removed with `wg set`, a
// route deleted with `ip route`).
//
// This package holds only the plain types and the pure Diff that every
// Applier executes; it imports nothing OS-specific, so the mesh can plan a
// Config without linking the network stack. The Linux Applier, in package
// netcfg/linuxnet, uses wgctrl, netlink and nftables, with the kernel's
// WireGuard where the module exists and an embedded wireguard-go otherwise.
// The fake in package netcfg/fakenet keeps the state in memory and prints it
// as `ip`/`wg` command lines, which makes golden tests read like a diff.
//
// This package imports nothing else of booture's.
package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/booture/booture/key"
)

// Config is the complete desired state of the booture's WireGuard interface.
// The zero value of an optional field means "not set" as documented per field.
type Config struct {
	// Interface is the WireGuard interface name (at most 15 bytes).
	Interface string
	// PrivateKey is the interface's private key. It is a secret, which
	// key.PrivateKey never prints.
	PrivateKey key.PrivateKey
	// ListenPort is the UDP port WireGuard listens on.
	ListenPort int
	// MTU of the interface; 0 lets the implementation choose (underlay MTU
	// minus WireGuard's overhead).
	MTU int
	// Addresses assigned to the interface, e.g. 10.77.3.1/24 and
	// fdxx:xxxx:xxxx:3::1/64. The prefix length creates the connected route
	// of the booture's own site.
	Addresses []netip.Prefix
	// Peers of the interface, keyed by public key. Peers not listed are
	// removed.
	Peers []Peer
	// Routes sent into the interface (other bootures' sites). Routes on the
	// interface that are not listed here (and are not the connected routes
	// of Addresses) are removed.
	Routes []netip.Prefix
	// Unreachable are prefixes (the mesh pools) given an unreachable route
	// of metric UnreachableMetric in the main table: traffic for a part of
	// them that has no more specific route (a site whose booture is down or
	// not allocated) is refused with an ICMP error instead of leaving in
	// clear by the default route. Routes of the sites, more specific, win.
	Unreachable []netip.Prefix
	// Firewall is the packet filter the daemon owns for this interface.
	Firewall Firewall
}

// UnreachableMetric is the metric of the routes of Config.Unreachable:
// high, so that any route the host's admin made for the same prefix wins,
// and how Apply tells its own unreachable routes from others.
const UnreachableMetric = 4000000000

// Peer is one WireGuard peer: another booture or a VPN member.
type Peer struct {
	PublicKey key.PublicKey
	// Endpoint is where to send packets; the zero value means unknown
	// (a roaming member: WireGuard learns it from the member's packets).
	// When a peer's endpoint is unset in the Config, Apply never clears an
	// endpoint WireGuard has learnt.
	Endpoint netip.AddrPort
	// AllowedIPs are the addresses this peer may send from and that are
	// routed to it inside WireGuard.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive; 0 disables it.
	PersistentKeepalive time.Duration
	// Reset has Apply remove the peer and add it again, even if nothing
	// differs: WireGuard forgets its handshake state, including its wait of
	// 5 s between two initiations, and a keepalive makes it start a fresh
	// handshake at once. It is a one-time action: the next Config leaves
	// it unset.
	Reset bool
}

// Firewall describes the nftables rules the daemon owns (one table of its
// own, never touching other tables). A zero Firewall (Enabled false) means
// the daemon's table is absent.
type Firewall struct {
	Enabled bool
	// MeshIPv4 and MeshIPv6 are the mesh pools (10.77.0.0/16 and the ULA
	// /48). Within them, every site is a /24 (IPv4) or /64 (IPv6); the
	// address with host part 1 of a site is a booture, any other is a member.
	MeshIPv4 netip.Prefix
	MeshIPv6 netip.Prefix
	// AllowMemberToMember, when false (the default), drops forwarded packets
	// whose source and destination are both member addresses (on this
	// booture or across the mesh). Members can always reach bootures.
	AllowMemberToMember bool
	// FullTunnel lists the member addresses whose traffic to destinations
	// outside the mesh is forwarded and masqueraded behind the uplink. Any
	// other forwarded packet from the WireGuard interface to a destination
	// outside the mesh is dropped.
	FullTunnel []netip.Addr
	// Uplink is the interface full-tunnel traffic leaves through; empty
	// means the interface of the default route.
	Uplink string
	// TCPPorts and UDPPorts are the ports of the booture's mesh addresses
	// open to packets from the WireGuard interface (the gateway's HTTP and
	// DNS). ICMP and replies to the host's own connections are let in too;
	// anything else from the interface to the host is dropped. See
	// FirewallState.Rules for the whole filter.
	TCPPorts, UDPPorts []uint16
}

// Mode is the WireGuard data plane in use.
type Mode string

const (
	ModeKernel    Mode = "kernel"
	ModeUserspace Mode = "userspace"
	// ModeAuto is only an option of implementations (kernel if the module
	// exists, else userspace); State never reports it.
	ModeAuto Mode = "auto"
)

// ParseMode parses a --wireguard-mode style value: "auto" (or ""),
// "kernel" or "userspace".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeKernel, ModeUserspace:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown wireguard mode %q (want auto, kernel or userspace)", s)
}

// State is what the system currently has, as far as status reporting needs.
type State struct {
	Interface  string
	Mode       Mode
	ListenPort int
	MTU        int
	PublicKey  key.PublicKey
	Peers      []PeerState
}

// PeerState is the live state of one WireGuard peer.
type PeerState struct {
	PublicKey     key.PublicKey
	Endpoint      netip.AddrPort // zero if unknown
	LastHandshake time.Time      // zero if never
	RxBytes       int64
	TxBytes       int64
	AllowedIPs    []netip.Prefix
	// PersistentKeepalive as WireGuard has it (whole seconds); 0 if off.
	PersistentKeepalive time.Duration
}

// Applier applies Configs to the system. Implementations must be safe for
// use by one goroutine at a time (the daemon's single reconciler); State may
// be called concurrently with Apply.
type Applier interface {
	// Apply makes the system match cfg, changing only what differs. It may
	// be called many times with identical Configs. On error, part of the
	// change may have been applied; calling Apply again continues from the
	// actual state.
	Apply(ctx context.Context, cfg Config) error
	// State reports the interface's live state. It returns an error wrapping
	// ErrNoInterface before the first successful Apply.
	State(ctx context.Context) (State, error)
	// Close removes what Apply created (interface, routes, nftables table)
	// and releases resources. The interface is removed so that a stopped
	// daemon leaves no stale routes behind.
	Close() error
}

// ErrNoInterface is returned by State when the interface does not exist yet.
var ErrNoInterface = errors.New("wireguard interface not created yet")

// ErrInvalidConfig is wrapped by the errors of Config.Validate, which Apply
// calls first: nothing is changed for an invalid Config.
var ErrInvalidConfig = errors.New("invalid network config")

// ErrClosed is returned by Apply and State after Close.
var ErrClosed = errors.New("network config closed")

// Validate reports the first problem of c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := validIfaceName(c.Interface); err != nil {
		return bad("interface: %v", err)
	}
	if c.PrivateKey.IsZero() {
		return bad("private key not set")
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return bad("listen port %d out of range", c.ListenPort)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return bad("mtu %d out of range (0 or 576-65535)", c.MTU)
	}
	for _, a := range c.Addresses {
		if !a.IsValid() {
			return bad("invalid address %v", a)
		}
	}
	own := c.PrivateKey.Public()
	seen := make(map[key.PublicKey]bool, len(c.Peers))
	for _, p := range c.Peers {
		switch {
		case p.PublicKey.IsZero():
			return bad("peer without public key")
		case p.PublicKey == own:
			return bad("peer %s is the interface's own key", p.PublicKey)
		case seen[p.PublicKey]:
			return bad("peer %s listed twice", p.PublicKey)
		case p.Endpoint.IsValid() && p.Endpoint.Port() == 0:
			return bad("peer %s: endpoint %v without port", p.PublicKey, p.Endpoint)
		case p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535*time.Second:
			return bad("peer %s: keepalive %v out of range", p.PublicKey, p.PersistentKeepalive)
		}
		seen[p.PublicKey] = true
		for _, a := range p.AllowedIPs {
			if !a.IsValid() {
				return bad("peer %s: invalid allowed ip %v", p.PublicKey, a)
			}
		}
	}
	for _, r := range c.Routes {
		if !r.IsValid() {
			return bad("invalid route %v", r)
		}
	}
	for _, r := range c.Unreachable {
		if !r.IsValid() {
			return bad("invalid unreachable route %v", r)
		}
	}
	if f := c.Firewall; f.Enabled {
		if f.MeshIPv4.IsValid() && (!f.MeshIPv4.Addr().Is4() || f.MeshIPv4.Bits() > 24) {
			return bad("firewall: mesh ipv4 pool %v is not an ipv4 prefix of /24 or shorter", f.MeshIPv4)
		}
		if f.MeshIPv6.IsValid() && (!f.MeshIPv6.Addr().Is6() || f.MeshIPv6.Addr().Is4In6() || f.MeshIPv6.Bits() > 64) {
			return bad("firewall: mesh ipv6 pool %v is not an ipv6 prefix of /64 or shorter", f.MeshIPv6)
		}
		for _, a := range f.FullTunnel {
			if !a.IsValid() {
				return bad("firewall: invalid full-tunnel address")
			}
		}
		if f.Uplink != "" {
			if err := validIfaceName(f.Uplink); err != nil {
				return bad("firewall uplink: %v", err)
			}
		}
		if slices.Contains(f.TCPPorts, 0) || slices.Contains(f.UDPPorts, 0) {
			return bad("firewall: port 0")
		}
	}
	return nil
}

func validIfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > 15:
		return fmt.Errorf("name %q longer than 15 bytes", name)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("name %q not allowed", name)
	}
	return nil
}

// String describes c without its private key, so that a Config printed or
// logged by mistake leaks no secret.
func (c Config) String() string {
	return fmt.Sprintf("netcfg.Config{Interface:%s PublicKey:%s ListenPort:%d MTU:%d Addresses:%v Peers:%d Routes:%d Firewall:%t}",
		c.Interface, publicKeyOf(c.PrivateKey), c.ListenPort, c.MTU, c.Addresses, len(c.Peers), len(c.Routes), c.Firewall.Enabled)
}

// Format makes every fmt verb (including %#v and %+v) print the same
// one-line summary.
func (c Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue makes slog print the same redacted summary.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("interface", c.Interface),
		slog.String("public_key", publicKeyOf(c.PrivateKey)),
		slog.Int("listen_port", c.ListenPort),
		slog.Int("mtu", c.MTU),
		slog.Int("peers", len(c.Peers)),
		slog.Int("routes", len(c.Routes)),
		slog.Bool("firewall", c.Firewall.Enabled),
	)
}

func publicKeyOf(k key.PrivateKey) string {
	if k.IsZero() {
		return "(none)"
	}
	return k.Public().String()
}
