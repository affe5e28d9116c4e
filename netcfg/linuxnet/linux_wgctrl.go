//go:build linux

package linuxnet

import (
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/booture/booture/netcfg"
)

// The conversions between netcfg's types (netip, key) and those of wgctrl
// and netlink (net, wgtypes) happen here, at the edge, and nowhere else.

// peerConfig turns a peer change into wgctrl's form.
func peerConfig(pc netcfg.PeerChange) wgtypes.PeerConfig {
	out := wgtypes.PeerConfig{
		PublicKey:                   wgtypes.Key(pc.PublicKey.Raw32()),
		Remove:                      pc.Remove,
		UpdateOnly:                  pc.UpdateOnly,
		ReplaceAllowedIPs:           pc.ReplaceAllowedIPs,
		PersistentKeepaliveInterval: pc.PersistentKeepalive,
	}
	if pc.Endpoint.IsValid() {
		out.Endpoint = net.UDPAddrFromAddrPort(unmapAddrPort(pc.Endpoint))
	}
	if pc.ReplaceAllowedIPs || len(pc.AllowedIPs) > 0 {
		out.AllowedIPs = toIPNets(pc.AllowedIPs)
	}
	return out
}

func toIPNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return out
}

// prefixFromIPNet converts a net.IPNet (as wgctrl and netlink use) to a
// netip.Prefix, unmapping IPv4-in-IPv6; ok is false for a malformed one.
func prefixFromIPNet(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 {
		return netip.Prefix{}, false
	}
	if a.Is4In6() {
		a = a.Unmap()
		if bits == 128 {
			ones -= 96
		}
	}
	if ones < 0 || ones > a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// fromIPNets converts wgctrl's allowed IPs, leaving out malformed ones.
func fromIPNets(ns []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		if p, ok := prefixFromIPNet(n); ok {
			out = append(out, p)
		}
	}
	return out
}

// addrPortFromUDP converts a wgctrl endpoint; nil gives the zero AddrPort.
func addrPortFromUDP(a *net.UDPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return unmapAddrPort(a.AddrPort())
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
