//go:build linux

package linuxnet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/booture/booture/netcfg"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// retryNetlink runs f again when the kernel interrupted it (EINTR) or a dump
// was invalidated by a concurrent change (netlink.ErrDumpInterrupted, which
// comes with partial results). Every netlink call of this package goes
// through it.
func retryNetlink[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 10 {
		v, err = f()
		if !errors.Is(err, syscall.EINTR) && !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

// retryNetlinkDo is retryNetlink for calls without a result.
func retryNetlinkDo(f func() error) error {
	_, err := retryNetlink(func() (struct{}, error) { return struct{}{}, f() })
	return err
}

func linkByName(name string) (netlink.Link, error) {
	return retryNetlink(func() (netlink.Link, error) { return netlink.LinkByName(name) })
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// UnderlayMTU returns the MTU for the WireGuard interface: the MTU of the
// interface that holds listen (or, if listen is unset or unspecified, of
// the default route's interface) minus WireGuardOverhead, or DefaultMTU when
// neither can be found.
func UnderlayMTU(listen netip.Addr) int {
	if mtu, ok := underlayMTU(listen); ok {
		return mtu
	}
	return netcfg.DefaultMTU
}

// underlayMTU is UnderlayMTU without the fallback.
func underlayMTU(listen netip.Addr) (int, bool) {
	idx := 0
	if listen.IsValid() && !listen.IsUnspecified() {
		idx = addrLinkIndex(listen.Unmap())
	}
	if idx == 0 {
		idx = defaultRouteLinkIndex()
	}
	if idx == 0 {
		return 0, false
	}
	link, err := retryNetlink(func() (netlink.Link, error) { return netlink.LinkByIndex(idx) })
	if err != nil || link.Attrs().MTU <= netcfg.WireGuardOverhead {
		return 0, false
	}
	return link.Attrs().MTU - netcfg.WireGuardOverhead, true
}

func addrLinkIndex(a netip.Addr) int {
	addrs, err := retryNetlink(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return 0
	}
	for _, ad := range addrs {
		if ad.IPNet == nil {
			continue
		}
		if b, ok := netip.AddrFromSlice(ad.IP); ok && b.Unmap() == a {
			return ad.LinkIndex
		}
	}
	return 0
}

// defaultRouteLinkIndex returns the interface of the main table's default
// route with the lowest metric, IPv4 first; 0 if there is none.
func defaultRouteLinkIndex() int {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := retryNetlink(func() ([]netlink.Route, error) {
			return netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			continue
		}
		sort.SliceStable(routes, func(i, j int) bool { return routes[i].Priority < routes[j].Priority })
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.LinkIndex != 0 {
				return r.LinkIndex
			}
			for _, nh := range r.MultiPath {
				if nh.LinkIndex != 0 {
					return nh.LinkIndex
				}
			}
		}
	}
	return 0
}

// defaultRouteLinkName is the name of defaultRouteLinkIndex's interface.
func defaultRouteLinkName() string {
	idx := defaultRouteLinkIndex()
	if idx == 0 {
		return ""
	}
	link, err := retryNetlink(func() (netlink.Link, error) { return netlink.LinkByIndex(idx) })
	if err != nil {
		return ""
	}
	return link.Attrs().Name
}

// linkAddresses lists the interface's addresses, IPv6 link-local left out.
func linkAddresses(link netlink.Link) ([]netip.Prefix, error) {
	addrs, err := retryNetlink(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		p, ok := prefixFromIPNet(*a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// linkRoutes lists the main table's unicast routes out the interface,
// without the kernel's connected routes and IPv6 link-local ones.
func linkRoutes(link netlink.Link) ([]netip.Prefix, error) {
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN}
	routes, err := retryNetlink(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST {
			continue
		}
		dst := r.Dst
		if dst == nil {
			if r.Family == netlink.FAMILY_V6 {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			} else {
				dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			}
		}
		p, ok := prefixFromIPNet(*dst)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addAddress(link netlink.Link, p netip.Prefix) error {
	err := retryNetlinkDo(func() error { return netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixIPNet(p)}) })
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

func delAddress(link netlink.Link, p netip.Prefix) error {
	err := retryNetlinkDo(func() error { return netlink.AddrDel(link, &netlink.Addr{IPNet: prefixIPNet(p)}) })
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

func routeFor(link netlink.Link, p netip.Prefix) *netlink.Route {
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixIPNet(p), Table: unix.RT_TABLE_MAIN}
	if p.Addr().Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

func addRoute(link netlink.Link, p netip.Prefix) error {
	// Replace, not add: idempotent when the route appeared meanwhile.
	return retryNetlinkDo(func() error { return netlink.RouteReplace(routeFor(link, p)) })
}

func delRoute(link netlink.Link, p netip.Prefix) error {
	// Scope "nowhere" matches a route of any scope: netlink.RouteDel
	// sends the Route's scope, and the zero value (universe) would not
	// match a `dev` route (scope link), which the kernel reports as ESRCH.
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixIPNet(p), Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_NOWHERE}
	err := retryNetlinkDo(func() error { return netlink.RouteDel(r) })
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// unreachableRoutes lists the main table's unreachable routes of metric
// netcfg.UnreachableMetric: those Apply made.
func unreachableRoutes() ([]netip.Prefix, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNREACHABLE}
	routes, err := retryNetlink(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	})
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Priority != unreachablePriority || r.Dst == nil {
			continue
		}
		if p, ok := prefixFromIPNet(*r.Dst); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// unreachablePriority is netcfg.UnreachableMetric as netlink's int
// Priority: the metric is a u32 that does not fit a 32-bit int (armhf),
// where netlink converts it the same way when reading routes back.
var unreachablePriority = func() int { m := uint32(netcfg.UnreachableMetric); return int(m) }()

func unreachableRoute(p netip.Prefix) *netlink.Route {
	return &netlink.Route{Dst: prefixIPNet(p), Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNREACHABLE, Priority: unreachablePriority}
}

func addUnreachable(p netip.Prefix) error {
	// Replace, not add: idempotent when the route appeared meanwhile.
	return retryNetlinkDo(func() error { return netlink.RouteReplace(unreachableRoute(p)) })
}

func delUnreachable(p netip.Prefix) error {
	err := retryNetlinkDo(func() error { return netlink.RouteDel(unreachableRoute(p)) })
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

const procSys = "/proc/sys/"

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(procSys + path)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(path, value string) error {
	return os.WriteFile(procSys+path, []byte(value+"\n"), 0o644)
}
