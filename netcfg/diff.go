package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/booture/booture/key"
)

// Observed is the actual state of the system that Diff compares a Config
// with. Implementations read it just before computing the diff, after the
// interface exists.
type Observed struct {
	// Link.
	MTU int
	Up  bool
	// WireGuard device. PublicKey is that of the device's private key
	// (zero if none is set).
	PublicKey  key.PublicKey
	ListenPort int
	Peers      []PeerState
	// Addresses on the interface (IPv6 link-local ones left out).
	Addresses []netip.Prefix
	// Routes of the main table that go out the interface, leaving out the
	// connected routes the kernel made for addresses.
	Routes []netip.Prefix
	// Unreachable are the destinations of the main table's unreachable
	// routes of metric UnreachableMetric (those Apply made).
	Unreachable []netip.Prefix
	// DefaultMTU is the MTU used when Config.MTU is 0; 0 leaves the MTU
	// as it is (the underlay's could not be found, e.g. offline).
	DefaultMTU int
	// Uplink is Config.Firewall.Uplink, or else the interface of the
	// default route; "" if there is none.
	Uplink string
	// Firewall is what the daemon's nftables table holds: nil when the table
	// does not exist, a zero FirewallState when it exists with unknown
	// content (left over by an earlier run).
	Firewall *FirewallState
	// Sysctls holds the current values of the entries of SysctlKnobs (paths
	// under /proc/sys) that exist on this system.
	Sysctls map[string]string
	// Changed holds the entries earlier Applies changed, with the value each
	// had before.
	Changed map[string]string
}

// OpKind is the kind of one change.
type OpKind int

const (
	OpLinkAdd        OpKind = iota + 1 // create the interface (emitted by implementations, before Diff)
	OpLinkSet                          // set MTU and/or bring the link up
	OpDevice                           // set the private key and/or listen port
	OpPeer                             // add, update or remove one peer
	OpAddressDel                       // remove an address
	OpAddressAdd                       // add an address
	OpRouteDel                         // remove a route
	OpRouteAdd                         // add a route
	OpFirewallSet                      // (re)build the daemon's nftables table
	OpFirewallDel                      // delete the daemon's nftables table
	OpSysctl                           // write one /proc/sys entry
	OpUnreachableAdd                   // add an unreachable route of metric UnreachableMetric
	OpUnreachableDel                   // remove one
)

var opKindNames = map[OpKind]string{
	OpLinkAdd: "link-add", OpLinkSet: "link-set", OpDevice: "device", OpPeer: "peer",
	OpAddressDel: "address-del", OpAddressAdd: "address-add", OpRouteDel: "route-del",
	OpRouteAdd: "route-add", OpFirewallSet: "firewall-set", OpFirewallDel: "firewall-del",
	OpSysctl: "sysctl", OpUnreachableAdd: "unreachable-add", OpUnreachableDel: "unreachable-del",
}

func (k OpKind) String() string {
	if s, ok := opKindNames[k]; ok {
		return s
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Op is one change computed by Diff. Both the Linux implementation and the
// fake execute the same Ops, so tests of the fake test the diff. An Op never
// holds a secret: OpDevice says to set the Config's private key, it does not
// carry it.
type Op struct {
	Kind      OpKind
	Interface string

	// OpLinkSet: MTU to set (0: unchanged) and whether to bring the link up.
	MTU int
	Up  bool

	// OpDevice: SetPrivateKey sets Config.PrivateKey, whose public key is
	// PublicKey; ListenPort 0 leaves the port unchanged.
	SetPrivateKey bool
	PublicKey     key.PublicKey
	ListenPort    int

	// OpPeer: the change.
	Peer PeerChange

	// OpAddressAdd/Del, OpRouteAdd/Del, OpUnreachableAdd/Del.
	Prefix netip.Prefix

	// OpSysctl: Sysctl is a path under /proc/sys. Restore marks writing back
	// the value found before booture changed it.
	Sysctl  string
	Value   string
	Restore bool

	// OpFirewallSet: the table's complete content.
	Firewall FirewallState
}

// PeerChange is the change of one WireGuard peer, with the semantics of
// wgctrl's PeerConfig (the Linux Applier passes it on as one) and `wg set`.
type PeerChange struct {
	PublicKey key.PublicKey
	// Remove deletes the peer; the other fields are then unused.
	Remove bool
	// UpdateOnly changes the peer only if it exists: a peer that vanished
	// since it was observed is not re-created half-configured.
	UpdateOnly bool
	// Endpoint to set; the zero value leaves it unchanged.
	Endpoint netip.AddrPort
	// ReplaceAllowedIPs replaces the peer's allowed IPs with AllowedIPs
	// (possibly none); otherwise AllowedIPs are added.
	ReplaceAllowedIPs bool
	AllowedIPs        []netip.Prefix
	// PersistentKeepalive to set (0: off); nil leaves it unchanged.
	PersistentKeepalive *time.Duration
}

// Diff computes the minimal list of Ops that makes obs match cfg. cfg must
// be valid (Config.Validate). Peers whose key, endpoint, allowed IPs and
// keepalive match get no Op (unless Reset: then a removal and an addition);
// a peer without Endpoint in cfg keeps the endpoint WireGuard has learnt.
//
// Order: restoring forwarding sysctls no longer needed (closing the path
// first), link, firewall, unreachable routes, device, peers (removals
// first), addresses, routes, and enabling forwarding last, once the filter
// is in place.
func Diff(obs Observed, cfg Config) []Op {
	var ops []Op
	ifc := cfg.Interface
	uplink := obs.Uplink

	want := wantedSysctls(obs, cfg)
	var restores []string
	for k := range obs.Changed {
		if _, ok := want.m[k]; !ok {
			restores = append(restores, k)
		}
	}
	sort.Strings(restores)
	for _, k := range restores {
		ops = append(ops, Op{Kind: OpSysctl, Interface: ifc, Sysctl: k, Value: obs.Changed[k], Restore: true})
	}

	mtu := cfg.MTU
	if mtu == 0 {
		mtu = obs.DefaultMTU
	}
	if (mtu != 0 && mtu != obs.MTU) || !obs.Up {
		op := Op{Kind: OpLinkSet, Interface: ifc, Up: !obs.Up}
		if mtu != 0 && mtu != obs.MTU {
			op.MTU = mtu
		}
		ops = append(ops, op)
	}

	// The filter goes in before any peer: on a host that already forwards
	// (ip_forward=1, as Docker sets it) new peers must never be reachable
	// unfiltered, even for a moment.
	if cfg.Firewall.Enabled {
		fs := ResolveFirewall(cfg, uplink)
		if obs.Firewall == nil || !obs.Firewall.Equal(fs) {
			ops = append(ops, Op{Kind: OpFirewallSet, Interface: ifc, Firewall: fs})
		}
	} else if obs.Firewall != nil {
		ops = append(ops, Op{Kind: OpFirewallDel, Interface: ifc})
	}

	// The pools' unreachable routes, like the filter, before any peer:
	// traffic for a site without a route never leaves by the default route.
	wantUnreach := normPrefixes(cfg.Unreachable)
	haveUnreach := normPrefixes(obs.Unreachable)
	for _, r := range haveUnreach {
		if !slices.Contains(wantUnreach, r) {
			ops = append(ops, Op{Kind: OpUnreachableDel, Interface: ifc, Prefix: r})
		}
	}
	for _, r := range wantUnreach {
		if !slices.Contains(haveUnreach, r) {
			ops = append(ops, Op{Kind: OpUnreachableAdd, Interface: ifc, Prefix: r})
		}
	}

	pub := cfg.PrivateKey.Public()
	dev := Op{Kind: OpDevice, Interface: ifc, PublicKey: pub, SetPrivateKey: obs.PublicKey != pub}
	if cfg.ListenPort != 0 && cfg.ListenPort != obs.ListenPort {
		dev.ListenPort = cfg.ListenPort
	}
	if dev.SetPrivateKey || dev.ListenPort != 0 {
		ops = append(ops, dev)
	}

	ops = append(ops, diffPeers(ifc, obs.Peers, cfg.Peers)...)

	// Addresses: compared with their prefix length, as the kernel has them.
	wantAddr := normAddrs(cfg.Addresses)
	haveAddr := normAddrs(obs.Addresses)
	for _, a := range haveAddr {
		if !slices.Contains(wantAddr, a) {
			ops = append(ops, Op{Kind: OpAddressDel, Interface: ifc, Prefix: a})
		}
	}
	for _, a := range wantAddr {
		if !slices.Contains(haveAddr, a) {
			ops = append(ops, Op{Kind: OpAddressAdd, Interface: ifc, Prefix: a})
		}
	}

	// Routes: the connected routes of the addresses are the kernel's.
	var connected []netip.Prefix
	for _, a := range wantAddr {
		connected = append(connected, a.Masked())
	}
	var wantRoutes []netip.Prefix
	for _, r := range normPrefixes(cfg.Routes) {
		if !slices.Contains(connected, r) {
			wantRoutes = append(wantRoutes, r)
		}
	}
	haveRoutes := normPrefixes(obs.Routes)
	for _, r := range haveRoutes {
		if !slices.Contains(wantRoutes, r) && !slices.Contains(connected, r) {
			ops = append(ops, Op{Kind: OpRouteDel, Interface: ifc, Prefix: r})
		}
	}
	for _, r := range wantRoutes {
		if !slices.Contains(haveRoutes, r) {
			ops = append(ops, Op{Kind: OpRouteAdd, Interface: ifc, Prefix: r})
		}
	}

	for _, kv := range want.order {
		if obs.Sysctls[kv] != want.m[kv] {
			ops = append(ops, Op{Kind: OpSysctl, Interface: ifc, Sysctl: kv, Value: want.m[kv]})
		}
	}
	return ops
}

func diffPeers(ifc string, have []PeerState, want []Peer) []Op {
	var ops []Op
	actual := make(map[key.PublicKey]PeerState, len(have))
	for _, p := range have {
		actual[p.PublicKey] = p
	}
	desired := make(map[key.PublicKey]bool, len(want))
	for _, p := range want {
		desired[p.PublicKey] = true
	}
	var gone []key.PublicKey
	for k := range actual {
		if !desired[k] {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, key.PublicKey.Compare)
	for _, k := range gone {
		ops = append(ops, Op{Kind: OpPeer, Interface: ifc, Peer: PeerChange{PublicKey: k, Remove: true}})
	}

	sorted := slices.Clone(want)
	slices.SortFunc(sorted, func(a, b Peer) int { return a.PublicKey.Compare(b.PublicKey) })
	for _, d := range sorted {
		ka := d.PersistentKeepalive.Truncate(time.Second)
		allowed := normPrefixes(d.AllowedIPs)
		a, ok := actual[d.PublicKey]
		if ok && d.Reset {
			ops = append(ops, Op{Kind: OpPeer, Interface: ifc, Peer: PeerChange{PublicKey: d.PublicKey, Remove: true}})
			ok = false
		}
		if !ok {
			pc := PeerChange{PublicKey: d.PublicKey, ReplaceAllowedIPs: true, AllowedIPs: allowed}
			if d.Endpoint.IsValid() {
				pc.Endpoint = unmapAddrPort(d.Endpoint)
			}
			if ka != 0 {
				pc.PersistentKeepalive = &ka
			}
			ops = append(ops, Op{Kind: OpPeer, Interface: ifc, Peer: pc})
			continue
		}
		// UpdateOnly: if the peer vanished since it was observed, do not
		// re-create it half-configured; the next Apply adds it whole.
		pc := PeerChange{PublicKey: d.PublicKey, UpdateOnly: true}
		changed := false
		if ep := unmapAddrPort(d.Endpoint); ep.IsValid() && ep != unmapAddrPort(a.Endpoint) {
			pc.Endpoint = ep
			changed = true
		}
		if !slices.Equal(allowed, normPrefixes(a.AllowedIPs)) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = allowed
			changed = true
		}
		if ka != a.PersistentKeepalive {
			pc.PersistentKeepalive = &ka
			changed = true
		}
		if changed {
			ops = append(ops, Op{Kind: OpPeer, Interface: ifc, Peer: pc})
		}
	}
	return ops
}

// Sysctl paths (under /proc/sys) of the forwarding knobs.
const sysctlIPv6All = "net/ipv6/conf/all/forwarding"

func sysctlIPv4Fwd(ifc string) string      { return "net/ipv4/conf/" + ifc + "/forwarding" }
func sysctlIPv6Force(ifc string) string    { return "net/ipv6/conf/" + ifc + "/force_forwarding" }
func sysctlIPv6AcceptRA(ifc string) string { return "net/ipv6/conf/" + ifc + "/accept_ra" }

// SysctlKnobs lists the /proc/sys entries Diff consults for an interface and
// an uplink ("" for none). Implementations put the existing ones in
// Observed.Sysctls.
func SysctlKnobs(ifc, uplink string) []string {
	k := []string{sysctlIPv4Fwd(ifc), sysctlIPv6Force(ifc), sysctlIPv6All}
	if uplink != "" && uplink != ifc {
		k = append(k, sysctlIPv4Fwd(uplink), sysctlIPv6Force(uplink), sysctlIPv6AcceptRA(uplink))
	}
	return k
}

type sysctlSet struct {
	order []string
	m     map[string]string
}

func (s *sysctlSet) add(k, v string) {
	if _, ok := s.m[k]; !ok {
		s.order = append(s.order, k)
	}
	s.m[k] = v
}

// wantedSysctls decides which forwarding knobs must be on.
//
// IPv4 forwarding is per ingress interface: on the WireGuard interface when
// it has peers, and on the uplink too when full-tunnel members' replies come
// back through it.
//
// IPv6 has no per-interface forwarding before Linux 6.17: the global
// conf/all/forwarding also turns every interface into a router, which stops
// accepting router advertisements (accept_ra=1) and so can lose the uplink's
// IPv6 default route. Where the kernel has the per-interface
// force_forwarding, use it. Otherwise fall back to the global switch, after
// raising the uplink's accept_ra from 1 to 2 (accept RAs even when
// forwarding). If the host already forwards IPv6 globally, nothing is needed.
func wantedSysctls(obs Observed, cfg Config) sysctlSet {
	s := sysctlSet{m: map[string]string{}}
	ifc, uplink := cfg.Interface, obs.Uplink
	has4, has6 := false, false
	for _, a := range cfg.Addresses {
		if a.Addr().Unmap().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	peers := len(cfg.Peers) > 0
	ft4, ft6 := false, false
	if cfg.Firewall.Enabled && uplink != "" && uplink != ifc {
		for _, a := range cfg.Firewall.FullTunnel {
			if a.Unmap().Is4() {
				ft4 = true
			} else {
				ft6 = true
			}
		}
	}
	present := func(k string) bool { _, ok := obs.Sysctls[k]; return ok }
	if peers && has4 && present(sysctlIPv4Fwd(ifc)) {
		s.add(sysctlIPv4Fwd(ifc), "1")
	}
	if ft4 && present(sysctlIPv4Fwd(uplink)) {
		s.add(sysctlIPv4Fwd(uplink), "1")
	}
	need6 := []string{}
	if peers && has6 {
		need6 = append(need6, ifc)
	}
	if ft6 {
		need6 = append(need6, uplink)
	}
	_, allOurs := obs.Changed[sysctlIPv6All]
	switch {
	case len(need6) == 0, !present(sysctlIPv6All):
	case obs.Sysctls[sysctlIPv6All] == "1" && !allOurs:
		// The host is already an IPv6 router.
	case present(sysctlIPv6Force(ifc)):
		for _, i := range need6 {
			if present(sysctlIPv6Force(i)) {
				s.add(sysctlIPv6Force(i), "1")
			}
		}
	default:
		ra := sysctlIPv6AcceptRA(uplink)
		if _, ours := obs.Changed[ra]; uplink != "" && (obs.Sysctls[ra] == "1" || ours) {
			s.add(ra, "2")
		}
		s.add(sysctlIPv6All, "1")
	}
	return s
}

// String is a one-line summary of the Op as an ip/wg/nft/sysctl command.
func (o Op) String() string {
	if o.Kind == OpFirewallSet {
		fs := o.Firewall
		return fmt.Sprintf("nft replace table inet %s (%d sets, %d rules)", FirewallTable, len(fs.Sets()), len(fs.Rules()))
	}
	return strings.Join(o.Lines(), "\n")
}

// Lines renders the Op as the commands that would make the same change by
// hand. OpFirewallSet renders the whole table.
func (o Op) Lines() []string {
	ifc := o.Interface
	switch o.Kind {
	case OpLinkAdd:
		return []string{"ip link add " + ifc + " type wireguard"}
	case OpLinkSet:
		s := "ip link set " + ifc
		if o.MTU != 0 {
			s += " mtu " + strconv.Itoa(o.MTU)
		}
		if o.Up {
			s += " up"
		}
		return []string{s}
	case OpDevice:
		s := "wg set " + ifc
		if o.ListenPort != 0 {
			s += " listen-port " + strconv.Itoa(o.ListenPort)
		}
		if o.SetPrivateKey {
			s += " private-key <redacted> # public-key " + o.PublicKey.String()
		}
		return []string{s}
	case OpPeer:
		return []string{peerConfigLine(ifc, o.Peer)}
	case OpAddressAdd:
		return []string{"ip address add " + o.Prefix.String() + " dev " + ifc}
	case OpAddressDel:
		return []string{"ip address del " + o.Prefix.String() + " dev " + ifc}
	case OpRouteAdd:
		return []string{"ip route add " + o.Prefix.String() + " dev " + ifc}
	case OpRouteDel:
		return []string{"ip route del " + o.Prefix.String() + " dev " + ifc}
	case OpUnreachableAdd:
		return []string{UnreachableLine("add", o.Prefix)}
	case OpUnreachableDel:
		return []string{UnreachableLine("del", o.Prefix)}
	case OpSysctl:
		s := "sysctl -w " + SysctlName(o.Sysctl) + "=" + o.Value
		if o.Restore {
			s += " # restore"
		}
		return []string{s}
	case OpFirewallSet:
		return o.Firewall.Lines()
	case OpFirewallDel:
		return []string{"nft delete table inet " + FirewallTable}
	}
	return []string{o.Kind.String()}
}

// UnreachableLine renders adding or deleting (verb "add" or "del") the
// unreachable route of p as an ip(8) command.
func UnreachableLine(verb string, p netip.Prefix) string {
	return "ip route " + verb + " unreachable " + p.String() + " metric " + strconv.FormatUint(UnreachableMetric, 10)
}

// SysctlName turns a /proc/sys path into sysctl(8)'s dotted name (dots in
// interface names become slashes, as sysctl(8) expects).
func SysctlName(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}

func peerConfigLine(ifc string, pc PeerChange) string {
	var b strings.Builder
	b.WriteString("wg set " + ifc + " peer " + pc.PublicKey.String())
	if pc.Remove {
		b.WriteString(" remove")
		return b.String()
	}
	if pc.Endpoint.IsValid() {
		b.WriteString(" endpoint " + pc.Endpoint.String())
	}
	if pc.ReplaceAllowedIPs || len(pc.AllowedIPs) > 0 {
		b.WriteString(" allowed-ips " + joinPrefixes(pc.AllowedIPs))
	}
	if ka := pc.PersistentKeepalive; ka != nil {
		if *ka == 0 {
			b.WriteString(" persistent-keepalive off")
		} else {
			b.WriteString(" persistent-keepalive " + strconv.Itoa(int(*ka/time.Second)))
		}
	}
	return b.String()
}

func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return `""`
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// normPrefixes masks, unmaps, sorts and dedupes network prefixes.
func normPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, unmapPrefix(p).Masked())
	}
	return sortPrefixes(out)
}

// normAddrs unmaps, sorts and dedupes interface addresses (not masked).
func normAddrs(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, unmapPrefix(p))
	}
	return sortPrefixes(out)
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, comparePrefix)
	return slices.Compact(ps)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// WireGuard's overhead on the underlay (IPv6 outer header 40 + UDP 8 +
// WireGuard 32), and the interface MTU used when the underlay's is unknown.
const (
	WireGuardOverhead = 80
	DefaultMTU        = 1420
)
