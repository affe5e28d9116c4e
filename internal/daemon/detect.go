package daemon

import (
	"errors"
	"net"
	"net/netip"
)

// detectAdvertise picks the underlay address other bootures and members
// use when none is configured: the address the kernel would use as source
// towards the default route, or else the first global unicast address of an
// interface that is up. Asking the kernel sends nothing: a UDP "connect" only
// selects a route.
func detectAdvertise() (netip.Addr, error) {
	if c, err := net.Dial("udp4", "203.0.113.1:9"); err == nil {
		ap := netip.MustParseAddrPort(c.LocalAddr().String())
		c.Close()
		if a := ap.Addr().Unmap(); a.IsGlobalUnicast() || a.IsPrivate() {
			return a, nil
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
					return ip.Unmap(), nil
				}
			}
		}
	}
	return netip.Addr{}, errors.New("no usable underlay address found: set --advertise or --listen")
}
