package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Names of the daemon's own nftables objects. The table is of family inet
// (IPv4 and IPv6 at once) and is the only one the daemon touches.
const (
	FirewallTable    = "booture"
	ChainPrerouting  = "prerouting"
	ChainInput       = "input"
	ChainForward     = "forward"
	ChainPostrouting = "postrouting"
	SetFullTunnel4   = "fulltunnel4"
	SetFullTunnel6   = "fulltunnel6"
)

// Verdicts of FirewallRule.
const (
	VerdictAccept     = "accept"
	VerdictDrop       = "drop"
	VerdictMasquerade = "masquerade"
)

// Layer 4 protocols of FirewallRule.Proto, as nft names them.
const (
	ProtoTCP    = "tcp"
	ProtoUDP    = "udp"
	ProtoICMP   = "icmp"
	ProtoICMPv6 = "ipv6-icmp"
)

// Loopback is the interface of the host's traffic to itself: a packet from
// a pool address may arrive there (the booture talking to its own mesh
// address), never from any other interface but the WireGuard one.
const Loopback = "lo"

// FirewallState is a Firewall resolved for one interface and uplink: exactly
// what the daemon's table holds. Apply rebuilds the table only when the
// FirewallState changes (or the table went missing).
type FirewallState struct {
	Interface string
	// Uplink is where full-tunnel traffic leaves; "" when there is none
	// (full-tunnel traffic is then dropped like any other).
	Uplink              string
	MeshIPv4            netip.Prefix
	MeshIPv6            netip.Prefix
	AllowMemberToMember bool
	// FullTunnel is unmapped, sorted and without duplicates.
	FullTunnel []netip.Addr
	// TCPPorts and UDPPorts are sorted and without duplicates.
	TCPPorts, UDPPorts []uint16
}

// ResolveFirewall normalises cfg.Firewall for cfg.Interface; uplink is
// cfg.Firewall.Uplink or else the default route's interface.
func ResolveFirewall(cfg Config, uplink string) FirewallState {
	f := cfg.Firewall
	if f.Uplink != "" {
		uplink = f.Uplink
	}
	if uplink == cfg.Interface {
		uplink = ""
	}
	fs := FirewallState{
		Interface:           cfg.Interface,
		Uplink:              uplink,
		AllowMemberToMember: f.AllowMemberToMember,
		TCPPorts:            sortedPorts(f.TCPPorts),
		UDPPorts:            sortedPorts(f.UDPPorts),
	}
	if f.MeshIPv4.IsValid() {
		fs.MeshIPv4 = unmapPrefix(f.MeshIPv4).Masked()
	}
	if f.MeshIPv6.IsValid() {
		fs.MeshIPv6 = f.MeshIPv6.Masked()
	}
	for _, a := range f.FullTunnel {
		fs.FullTunnel = append(fs.FullTunnel, a.Unmap().WithZone(""))
	}
	slices.SortFunc(fs.FullTunnel, netip.Addr.Compare)
	fs.FullTunnel = slices.Compact(fs.FullTunnel)
	return fs
}

func sortedPorts(ps []uint16) []uint16 {
	if len(ps) == 0 {
		return nil
	}
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// Equal reports whether f and g describe the same table.
func (f FirewallState) Equal(g FirewallState) bool {
	return f.Interface == g.Interface && f.Uplink == g.Uplink &&
		f.MeshIPv4 == g.MeshIPv4 && f.MeshIPv6 == g.MeshIPv6 &&
		f.AllowMemberToMember == g.AllowMemberToMember &&
		slices.Equal(f.FullTunnel, g.FullTunnel) &&
		slices.Equal(f.TCPPorts, g.TCPPorts) && slices.Equal(f.UDPPorts, g.UDPPorts)
}

// FirewallSet is a named set of addresses of one family (4 or 6).
type FirewallSet struct {
	Name     string
	Family   int
	Elements []netip.Addr
}

// FirewallChain is one base chain of the table.
type FirewallChain struct {
	Name string
	// Type is "filter" or "nat".
	Type string
	// Hook is "prerouting", "input", "forward" or "postrouting".
	Hook string
	// Priority is the hook priority, written with nft's keyword in Lines
	// (raw -300, filter 0, srcnat 100).
	Priority int
}

// Chain priorities of FirewallChain (as nft's keywords).
const (
	PriorityRaw    = -300
	PriorityFilter = 0
	PrioritySrcNAT = 100
)

// FirewallRule is one rule, described field by field so that the Linux
// implementation builds nftables expressions from it and the fake prints
// it; all set fields must match.
type FirewallRule struct {
	Chain    string
	InIface  string
	OutIface string
	// NotInIfaces: the packet came in by none of these interfaces.
	NotInIfaces []string
	// SrcPrefix/DstPrefix: the address is in this prefix.
	SrcPrefix netip.Prefix
	DstPrefix netip.Prefix
	// SrcMember/DstMember: the address is a member address of this pool: in
	// the pool, and its host part within its site (a /24 for IPv4, a /64 for
	// IPv6) is not 1 (host part 1 is a booture).
	SrcMember netip.Prefix
	DstMember netip.Prefix
	// SrcBooture: the source address is a booture's address of this pool
	// (in the pool, host part 1 within its site).
	SrcBooture netip.Prefix
	// SrcSet: the source address is in this named set of family Family.
	SrcSet string
	Family int
	// Established: the packet belongs to a connection already let through,
	// or relates to one (an ICMP error), as conntrack tracks them.
	Established bool
	// Proto is the layer 4 protocol (ProtoTCP, ...); DstPort, with TCP or
	// UDP, the destination port (0: any).
	Proto   string
	DstPort uint16
	Counter bool
	Verdict string
}

// IPFamily returns the address family (4 or 6) the rule is limited to, or
// 0 for a rule that matches both.
func (r FirewallRule) IPFamily() int {
	for _, p := range []netip.Prefix{r.SrcPrefix, r.DstPrefix, r.SrcMember, r.DstMember, r.SrcBooture} {
		if p.IsValid() {
			if p.Addr().Is4() {
				return 4
			}
			return 6
		}
	}
	switch r.Proto {
	case ProtoICMP:
		return 4
	case ProtoICMPv6:
		return 6
	}
	return r.Family
}

// Sets returns the named sets of the table (only non-empty ones).
func (f FirewallState) Sets() []FirewallSet {
	var v4, v6 []netip.Addr
	for _, a := range f.FullTunnel {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var sets []FirewallSet
	if len(v4) > 0 {
		sets = append(sets, FirewallSet{Name: SetFullTunnel4, Family: 4, Elements: v4})
	}
	if len(v6) > 0 {
		sets = append(sets, FirewallSet{Name: SetFullTunnel6, Family: 6, Elements: v6})
	}
	return sets
}

// Chains returns the table's base chains, in the order Lines writes them.
// Every chain has policy accept: the daemon filters only what concerns its
// interface and its pools, and leaves the host's other traffic to the
// host's own filter.
func (f FirewallState) Chains() []FirewallChain {
	chains := []FirewallChain{
		{Name: ChainPrerouting, Type: "filter", Hook: "prerouting", Priority: PriorityRaw},
		{Name: ChainInput, Type: "filter", Hook: "input", Priority: PriorityFilter},
		{Name: ChainForward, Type: "filter", Hook: "forward", Priority: PriorityFilter},
	}
	if f.HasNAT() {
		chains = append(chains, FirewallChain{Name: ChainPostrouting, Type: "nat", Hook: "postrouting", Priority: PrioritySrcNAT})
	}
	return chains
}

func (f FirewallState) pools() []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range []netip.Prefix{f.MeshIPv4, f.MeshIPv6} {
		if p.IsValid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// Rules returns the table's rules in order. Access to services is decided
// by source address (members, mesh, public), so the filter's first job is
// that a pool address can only be the source of what comes out of the
// tunnel, where WireGuard checks each peer's allowed IPs.
//
// Prerouting (priority raw, before conntrack sees the packet):
//
//  1. a pool source that did not arrive by the interface (or by loopback,
//     the host talking to itself), drop.
//
// Input (packets for the host itself):
//
//  1. from the interface, replies to the host's own connections, accept;
//  2. from the interface to the host's mesh addresses: the TCPPorts and
//     UDPPorts (the gateway's HTTP and DNS) and ICMP, accept;
//  3. anything else from the interface, drop (with a counter): members and
//     other bootures reach no other socket of the host, such as sshd, an
//     upstream bound to 0.0.0.0 or the gossip port, nor the host's LAN or
//     uplink addresses through the tunnel. The mesh needs nothing more
//     through the tunnel: gossip, joins and catch-up run over the underlay,
//     as WireGuard itself;
//  4. to the mesh addresses from any other interface (the LAN, through the
//     kernel's weak host model), drop (with a counter).
//
// Forward:
//
//  1. unless AllowMemberToMember: member to member through the interface,
//     drop (with a counter), replies included, as before;
//  2. into the interface, replies (established, related), accept;
//  3. a booture to a member through the interface (another booture opening
//     a connection to a member), drop (with a counter);
//  4. in and out the interface (mesh traffic), accept;
//  5. full-tunnel sources out the uplink, accept;
//  6. anything else from the interface, drop (with a counter);
//  7. anything else into the interface (the LAN opening connections to
//     members), drop (with a counter).
//
// The postrouting chain masquerades full-tunnel sources on the uplink.
func (f FirewallState) Rules() []FirewallRule {
	ifc := f.Interface
	pools := f.pools()
	others := []string{ifc, Loopback}
	var rules []FirewallRule
	add := func(r FirewallRule) { rules = append(rules, r) }

	for _, pool := range pools {
		add(FirewallRule{Chain: ChainPrerouting, NotInIfaces: others, SrcPrefix: pool, Counter: true, Verdict: VerdictDrop})
	}

	add(FirewallRule{Chain: ChainInput, InIface: ifc, Established: true, Verdict: VerdictAccept})
	for _, pool := range pools {
		for _, p := range f.TCPPorts {
			add(FirewallRule{Chain: ChainInput, InIface: ifc, DstPrefix: pool, Proto: ProtoTCP, DstPort: p, Verdict: VerdictAccept})
		}
		for _, p := range f.UDPPorts {
			add(FirewallRule{Chain: ChainInput, InIface: ifc, DstPrefix: pool, Proto: ProtoUDP, DstPort: p, Verdict: VerdictAccept})
		}
		icmp := ProtoICMP
		if !pool.Addr().Is4() {
			icmp = ProtoICMPv6
		}
		add(FirewallRule{Chain: ChainInput, InIface: ifc, DstPrefix: pool, Proto: icmp, Verdict: VerdictAccept})
	}
	add(FirewallRule{Chain: ChainInput, InIface: ifc, Counter: true, Verdict: VerdictDrop})
	for _, pool := range pools {
		add(FirewallRule{Chain: ChainInput, NotInIfaces: others, DstPrefix: pool, Counter: true, Verdict: VerdictDrop})
	}

	if !f.AllowMemberToMember {
		for _, pool := range pools {
			add(FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: ifc,
				SrcMember: pool, DstMember: pool, Counter: true, Verdict: VerdictDrop})
		}
	}
	add(FirewallRule{Chain: ChainForward, OutIface: ifc, Established: true, Verdict: VerdictAccept})
	for _, pool := range pools {
		add(FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: ifc,
			SrcBooture: pool, DstMember: pool, Counter: true, Verdict: VerdictDrop})
	}
	add(FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: ifc, Verdict: VerdictAccept})
	sets := f.Sets()
	if f.Uplink != "" {
		for _, s := range sets {
			add(FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: f.Uplink,
				SrcSet: s.Name, Family: s.Family, Verdict: VerdictAccept})
		}
	}
	add(FirewallRule{Chain: ChainForward, InIface: ifc, Counter: true, Verdict: VerdictDrop})
	add(FirewallRule{Chain: ChainForward, OutIface: ifc, Counter: true, Verdict: VerdictDrop})
	if f.Uplink != "" {
		for _, s := range sets {
			add(FirewallRule{Chain: ChainPostrouting, OutIface: f.Uplink,
				SrcSet: s.Name, Family: s.Family, Verdict: VerdictMasquerade})
		}
	}
	return rules
}

// HasNAT reports whether the table needs its postrouting (nat) chain.
func (f FirewallState) HasNAT() bool {
	return f.Uplink != "" && len(f.FullTunnel) > 0
}

// Lines renders the table as nft commands.
func (f FirewallState) Lines() []string {
	pre := "nft add "
	tbl := " inet " + FirewallTable
	lines := []string{pre + "table" + tbl}
	for _, s := range f.Sets() {
		typ := "ipv4_addr"
		if s.Family == 6 {
			typ = "ipv6_addr"
		}
		el := make([]string, len(s.Elements))
		for i, a := range s.Elements {
			el[i] = a.String()
		}
		lines = append(lines, fmt.Sprintf("%sset%s %s { type %s; elements = { %s }; }", pre, tbl, s.Name, typ, strings.Join(el, ", ")))
	}
	rules := f.Rules()
	for _, c := range f.Chains() {
		lines = append(lines, fmt.Sprintf("%schain%s %s { type %s hook %s priority %s; policy accept; }",
			pre, tbl, c.Name, c.Type, c.Hook, priorityName(c.Priority)))
		for _, r := range rules {
			if r.Chain == c.Name {
				lines = append(lines, pre+"rule"+tbl+" "+c.Name+" "+r.String())
			}
		}
	}
	return lines
}

func priorityName(p int) string {
	switch p {
	case PriorityRaw:
		return "raw"
	case PriorityFilter:
		return "filter"
	case PrioritySrcNAT:
		return "srcnat"
	}
	return strconv.Itoa(p)
}

// String renders the rule in nft syntax (as `nft list` prints it).
func (r FirewallRule) String() string {
	var p []string
	if r.InIface != "" {
		p = append(p, fmt.Sprintf("iifname %q", r.InIface))
	}
	if r.OutIface != "" {
		p = append(p, fmt.Sprintf("oifname %q", r.OutIface))
	}
	for _, n := range r.NotInIfaces {
		p = append(p, fmt.Sprintf("iifname != %q", n))
	}
	if r.SrcPrefix.IsValid() {
		p = append(p, fmt.Sprintf("%s saddr %s", familyWord(r.IPFamily()), r.SrcPrefix))
	}
	if r.DstPrefix.IsValid() {
		p = append(p, fmt.Sprintf("%s daddr %s", familyWord(r.IPFamily()), r.DstPrefix))
	}
	p = append(p, hostMatch("saddr", r.SrcMember, "!=")...)
	p = append(p, hostMatch("saddr", r.SrcBooture, "==")...)
	p = append(p, hostMatch("daddr", r.DstMember, "!=")...)
	if r.SrcSet != "" {
		p = append(p, fmt.Sprintf("%s saddr @%s", familyWord(r.Family), r.SrcSet))
	}
	if r.Established {
		p = append(p, "ct state established,related")
	}
	switch {
	case r.Proto != "" && r.DstPort != 0:
		p = append(p, fmt.Sprintf("%s dport %d", r.Proto, r.DstPort))
	case r.Proto != "":
		p = append(p, "meta l4proto "+r.Proto)
	}
	if r.Counter {
		p = append(p, "counter")
	}
	p = append(p, r.Verdict)
	return strings.Join(p, " ")
}

func familyWord(family int) string {
	if family == 6 {
		return "ip6"
	}
	return "ip"
}

// hostMatch renders "address in pool, and its host part within its site
// compared (op) with a booture's".
func hostMatch(field string, pool netip.Prefix, op string) []string {
	if !pool.IsValid() {
		return nil
	}
	mask, one := SiteHostMask(pool.Addr().Is4())
	fam := familyWord(4)
	if !pool.Addr().Is4() {
		fam = familyWord(6)
	}
	return []string{
		fmt.Sprintf("%s %s %s", fam, field, pool),
		fmt.Sprintf("%s %s & %s %s %s", fam, field, mask, op, one),
	}
}

// SiteHostMask returns the mask of the host part of an address within its
// site (0.0.0.255 for a /24, ::ffff:ffff:ffff:ffff for a /64) and the host
// part of a booture's own address (.1 / ::1).
func SiteHostMask(ipv4 bool) (mask, booture netip.Addr) {
	if ipv4 {
		return netip.AddrFrom4([4]byte{0, 0, 0, 255}), netip.AddrFrom4([4]byte{0, 0, 0, 1})
	}
	var m, one [16]byte
	for i := 8; i < 16; i++ {
		m[i] = 0xff
	}
	one[15] = 1
	return netip.AddrFrom16(m), netip.AddrFrom16(one)
}

// IsMemberAddr reports whether a is a member address of pool (see
// FirewallRule.SrcMember).
func IsMemberAddr(pool netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	if !pool.IsValid() || !pool.Contains(a) {
		return false
	}
	mask, one := SiteHostMask(a.Is4())
	b, m, o := a.AsSlice(), mask.AsSlice(), one.AsSlice()
	for i := range b {
		if b[i]&m[i] != o[i] {
			return true
		}
	}
	return false
}
