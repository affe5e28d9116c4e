package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Names of the daemon's own nftables objects. The table is of family inet
// (IPv4 and IPv6 at once) and is the only one the daemon touches.
const (
	FirewallTable    = "booture"
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

// Equal reports whether f and g describe the same table.
func (f FirewallState) Equal(g FirewallState) bool {
	return f.Interface == g.Interface && f.Uplink == g.Uplink &&
		f.MeshIPv4 == g.MeshIPv4 && f.MeshIPv6 == g.MeshIPv6 &&
		f.AllowMemberToMember == g.AllowMemberToMember &&
		slices.Equal(f.FullTunnel, g.FullTunnel)
}

// FirewallSet is a named set of addresses of one family (4 or 6).
type FirewallSet struct {
	Name     string
	Family   int
	Elements []netip.Addr
}

// FirewallRule is one rule, described field by field so that the Linux
// implementation builds nftables expressions from it and the fake prints
// it; all set fields must match.
type FirewallRule struct {
	Chain    string
	InIface  string
	OutIface string
	// SrcMember/DstMember: the address is a member address of this pool: in
	// the pool, and its host part within its site (a /24 for IPv4, a /64 for
	// IPv6) is not 1 (host part 1 is a booture).
	SrcMember netip.Prefix
	DstMember netip.Prefix
	// SrcSet: the source address is in this named set of family Family.
	SrcSet  string
	Family  int
	Counter bool
	Verdict string
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

// Rules returns the table's rules in order. The forward chain (policy
// accept: the daemon filters only traffic of its interface):
//
//  1. unless AllowMemberToMember: member to member through the interface,
//     drop (with a counter);
//  2. in and out the interface (mesh traffic), accept;
//  3. full-tunnel sources out the uplink, accept;
//  4. anything else from the interface, drop (with a counter).
//
// The postrouting chain masquerades full-tunnel sources on the uplink.
func (f FirewallState) Rules() []FirewallRule {
	ifc := f.Interface
	var rules []FirewallRule
	if !f.AllowMemberToMember {
		for _, pool := range []netip.Prefix{f.MeshIPv4, f.MeshIPv6} {
			if pool.IsValid() {
				rules = append(rules, FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: ifc,
					SrcMember: pool, DstMember: pool, Counter: true, Verdict: VerdictDrop})
			}
		}
	}
	rules = append(rules, FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: ifc, Verdict: VerdictAccept})
	sets := f.Sets()
	if f.Uplink != "" {
		for _, s := range sets {
			rules = append(rules, FirewallRule{Chain: ChainForward, InIface: ifc, OutIface: f.Uplink,
				SrcSet: s.Name, Family: s.Family, Verdict: VerdictAccept})
		}
	}
	rules = append(rules, FirewallRule{Chain: ChainForward, InIface: ifc, Counter: true, Verdict: VerdictDrop})
	if f.Uplink != "" {
		for _, s := range sets {
			rules = append(rules, FirewallRule{Chain: ChainPostrouting, OutIface: f.Uplink,
				SrcSet: s.Name, Family: s.Family, Verdict: VerdictMasquerade})
		}
	}
	return rules
}

// HasNAT reports whether the table needs its postrouting (nat) chain.
func (f FirewallState) HasNAT() bool {
	for _, r := range f.Rules() {
		if r.Chain == ChainPostrouting {
			return true
		}
	}
	return false
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
	chains := []struct{ name, def string }{
		{ChainForward, "type filter hook forward priority filter; policy accept;"},
		{ChainPostrouting, "type nat hook postrouting priority srcnat; policy accept;"},
	}
	for _, c := range chains {
		if c.name == ChainPostrouting && !f.HasNAT() {
			continue
		}
		lines = append(lines, fmt.Sprintf("%schain%s %s { %s }", pre, tbl, c.name, c.def))
		for _, r := range rules {
			if r.Chain == c.name {
				lines = append(lines, pre+"rule"+tbl+" "+c.name+" "+r.String())
			}
		}
	}
	return lines
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
	p = append(p, memberMatch("saddr", r.SrcMember)...)
	p = append(p, memberMatch("daddr", r.DstMember)...)
	if r.SrcSet != "" {
		p = append(p, fmt.Sprintf("%s saddr @%s", familyWord(r.Family), r.SrcSet))
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

func memberMatch(field string, pool netip.Prefix) []string {
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
		fmt.Sprintf("%s %s & %s != %s", fam, field, mask, one),
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
