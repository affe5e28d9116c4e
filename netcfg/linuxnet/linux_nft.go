//go:build linux

package linuxnet

import (
	"fmt"
	"net/netip"

	"github.com/booture/booture/netcfg"
	"github.com/google/nftables"
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
	chains := map[string]*nftables.Chain{
		netcfg.ChainForward: c.AddChain(&nftables.Chain{
			Name: netcfg.ChainForward, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		}),
	}
	if fs.HasNAT() {
		chains[netcfg.ChainPostrouting] = c.AddChain(&nftables.Chain{
			Name: netcfg.ChainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
		})
	}
	for _, r := range fs.Rules() {
		exprs, err := ruleExprs(r, sets)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[r.Chain], Exprs: exprs})
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

func ruleFamily(r netcfg.FirewallRule) int {
	for _, p := range []netip.Prefix{r.SrcMember, r.DstMember} {
		if p.IsValid() {
			if p.Addr().Is4() {
				return 4
			}
			return 6
		}
	}
	return r.Family
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

// memberExprs matches "address in pool and host part within its site is
// not 1" with payload + bitwise + cmp, as `ip daddr 10.77.0.0/16 ip daddr &
// 0.0.0.255 != 0.0.0.1` compiles.
func memberExprs(pool netip.Prefix, src bool) []expr.Any {
	fam := 6
	if pool.Addr().Is4() {
		fam = 4
	}
	off, n := addrField(fam, src)
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
	poolMask := netipMask(pool.Bits(), int(n)*8)
	hostMask, one := netcfg.SiteHostMask(fam == 4)
	zero := make([]byte, n)
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: poolMask, Xor: zero},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pool.Masked().Addr().AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: hostMask.AsSlice(), Xor: zero},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: one.AsSlice()},
	}
}

func netipMask(ones, bits int) []byte {
	m := make([]byte, bits/8)
	for i := 0; i < ones; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func ruleExprs(r netcfg.FirewallRule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var e []expr.Any
	if r.InIface != "" {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(r.InIface)})
	}
	if r.OutIface != "" {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(r.OutIface)})
	}
	switch ruleFamily(r) {
	case 4:
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
	case 6:
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}})
	}
	if r.SrcMember.IsValid() {
		e = append(e, memberExprs(r.SrcMember, true)...)
	}
	if r.DstMember.IsValid() {
		e = append(e, memberExprs(r.DstMember, false)...)
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
