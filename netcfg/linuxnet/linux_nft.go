//go:build linux

package linuxnet

import (
	"fmt"
	"net/netip"

	"github.com/booture/booture/netcfg"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func nftTable() *nftables.Table {
	return &nftables.Table{Name: netcfg.FirewallTable, Family: nftables.TableFamilyINet}
}

// nftTableExists reports whether the daemon's table exists; checked at
// every Apply so that a table deleted by hand is rebuilt.
func nftTableExists() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("opening nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == netcfg.FirewallTable {
			return true, nil
		}
	}
	return false, nil
}

// nftReplace atomically replaces the daemon's table with fs's content: one
// batch that adds the table (a no-op if it exists), deletes it and builds it
// again, so there is never a moment without the filter.
func nftReplace(fs netcfg.FirewallState) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	t := nftTable()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	sets := map[string]*nftables.Set{}
	for _, s := range fs.Sets() {
		set := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.TypeIPAddr}
		if s.Family == 6 {
			set.KeyType = nftables.TypeIP6Addr
		}
		elems := make([]nftables.SetElement, len(s.Elements))
		for i, a := range s.Elements {
			elems[i] = nftables.SetElement{Key: a.AsSlice()}
		}
		if err := c.AddSet(set, elems); err != nil {
			return fmt.Errorf("adding nftables set %s: %w", s.Name, err)
		}
		sets[s.Name] = set
	}

	accept := nftables.ChainPolicyAccept
	chains := map[string]*nftables.Chain{}
	for _, ch := range fs.Chains() {
		typ, hook, err := chainKind(ch)
		if err != nil {
			return err
		}
		chains[ch.Name] = c.AddChain(&nftables.Chain{
			Name: ch.Name, Table: t, Type: typ, Hooknum: hook,
			Priority: nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority)), Policy: &accept,
		})
	}
	for _, r := range fs.Rules() {
		chain, ok := chains[r.Chain]
		if !ok {
			return fmt.Errorf("nftables rule in unknown chain %s", r.Chain)
		}
		exprs, err := ruleExprs(r, sets)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replacing nftables table inet %s: %w", netcfg.FirewallTable, err)
	}
	return nil
}

func nftDelete() error {
	ok, err := nftTableExists()
	if err != nil || !ok {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	c.DelTable(nftTable())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting nftables table inet %s: %w", netcfg.FirewallTable, err)
	}
	return nil
}

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func chainKind(ch netcfg.FirewallChain) (nftables.ChainType, *nftables.ChainHook, error) {
	var typ nftables.ChainType
	switch ch.Type {
	case "filter":
		typ = nftables.ChainTypeFilter
	case "nat":
		typ = nftables.ChainTypeNAT
	default:
		return "", nil, fmt.Errorf("nftables chain %s: unknown type %q", ch.Name, ch.Type)
	}
	hooks := map[string]*nftables.ChainHook{
		"prerouting":  nftables.ChainHookPrerouting,
		"input":       nftables.ChainHookInput,
		"forward":     nftables.ChainHookForward,
		"postrouting": nftables.ChainHookPostrouting,
	}
	hook, ok := hooks[ch.Hook]
	if !ok {
		return "", nil, fmt.Errorf("nftables chain %s: unknown hook %q", ch.Name, ch.Hook)
	}
	return typ, hook, nil
}

// addrField returns the network header offset and length of an address.
func addrField(family int, src bool) (offset, length uint32) {
	switch {
	case family == 4 && src:
		return 12, 4
	case family == 4:
		return 16, 4
	case src:
		return 8, 16
	default:
		return 24, 16
	}
}

func prefixFamily(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// prefixExprs matches "address in p" with payload + bitwise + cmp, as `ip
// daddr 10.77.0.0/16` compiles.
func prefixExprs(p netip.Prefix, src bool) []expr.Any {
	off, n := addrField(prefixFamily(p), src)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: netipMask(p.Bits(), int(n)*8), Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// hostExprs matches "address in pool, and its host part within its site is
// (booture) or is not (member) a booture's", as `ip daddr 10.77.0.0/16 ip
// daddr & 0.0.0.255 != 0.0.0.1` compiles.
func hostExprs(pool netip.Prefix, src, booture bool) []expr.Any {
	fam := prefixFamily(pool)
	off, n := addrField(fam, src)
	hostMask, one := netcfg.SiteHostMask(fam == 4)
	op := expr.CmpOpNeq
	if booture {
		op = expr.CmpOpEq
	}
	return append(prefixExprs(pool, src),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: hostMask.AsSlice(), Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: 1, Data: one.AsSlice()},
	)
}

func netipMask(ones, bits int) []byte {
	m := make([]byte, bits/8)
	for i := 0; i < ones; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func ifaceExprs(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifnameBytes(name)},
	}
}

var l4protos = map[string]byte{
	netcfg.ProtoTCP:    unix.IPPROTO_TCP,
	netcfg.ProtoUDP:    unix.IPPROTO_UDP,
	netcfg.ProtoICMP:   unix.IPPROTO_ICMP,
	netcfg.ProtoICMPv6: unix.IPPROTO_ICMPV6,
}

// ruleExprs builds the expressions of r in the order FirewallRule.String
// writes its matches, so that `nft list` prints the rule as Lines does.
func ruleExprs(r netcfg.FirewallRule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var e []expr.Any
	if r.InIface != "" {
		e = append(e, ifaceExprs(expr.MetaKeyIIFNAME, expr.CmpOpEq, r.InIface)...)
	}
	if r.OutIface != "" {
		e = append(e, ifaceExprs(expr.MetaKeyOIFNAME, expr.CmpOpEq, r.OutIface)...)
	}
	for _, n := range r.NotInIfaces {
		e = append(e, ifaceExprs(expr.MetaKeyIIFNAME, expr.CmpOpNeq, n)...)
	}
	switch r.IPFamily() {
	case 4:
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
	case 6:
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}})
	}
	if r.SrcPrefix.IsValid() {
		e = append(e, prefixExprs(r.SrcPrefix, true)...)
	}
	if r.DstPrefix.IsValid() {
		e = append(e, prefixExprs(r.DstPrefix, false)...)
	}
	if r.SrcMember.IsValid() {
		e = append(e, hostExprs(r.SrcMember, true, false)...)
	}
	if r.SrcBooture.IsValid() {
		e = append(e, hostExprs(r.SrcBooture, true, true)...)
	}
	if r.DstMember.IsValid() {
		e = append(e, hostExprs(r.DstMember, false, false)...)
	}
	if r.SrcSet != "" {
		set, ok := sets[r.SrcSet]
		if !ok {
			return nil, fmt.Errorf("nftables rule refers to unknown set %s", r.SrcSet)
		}
		off, n := addrField(r.Family, true)
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
	}
	if r.Established {
		zero := make([]byte, 4)
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: zero},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero})
	}
	if r.Proto != "" {
		proto, ok := l4protos[r.Proto]
		if !ok {
			return nil, fmt.Errorf("unknown layer 4 protocol %q", r.Proto)
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
		if r.DstPort != 0 {
			if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP {
				return nil, fmt.Errorf("destination port with protocol %s", r.Proto)
			}
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.DstPort)})
		}
	}
	if r.Counter {
		e = append(e, &expr.Counter{})
	}
	switch r.Verdict {
	case netcfg.VerdictAccept:
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case netcfg.VerdictDrop:
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
	case netcfg.VerdictMasquerade:
		e = append(e, &expr.Masq{})
	default:
		return nil, fmt.Errorf("unknown nftables verdict %q", r.Verdict)
	}
	return e, nil
}
