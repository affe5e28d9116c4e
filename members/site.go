package members

import (
	"fmt"
	"net/netip"
)

// Host numbers of a site: host 1 is the booture itself, members get
// FirstHost to LastHost.
const (
	BootureHost = 1
	FirstHost   = 2
	LastHost    = 254
	// MaxMembers is how many members a site can hold.
	MaxMembers = LastHost - FirstHost + 1
)

// Site is the pair of prefixes a booture owns in the mesh: an IPv4 /24
// (10.77.S.0/24) and an IPv6 /64. Host N of a site is N in the last byte
// of both prefixes: 10.77.S.N and PREFIX::N.
type Site struct {
	IPv4 netip.Prefix // e.g. 10.77.3.0/24
	IPv6 netip.Prefix // e.g. fd12:3456:789a:3::/64
}

// ParseSite parses the two prefixes of a site, e.g.
// ParseSite("10.77.3.0/24", "fd12:3456:789a:3::/64").
func ParseSite(ipv4, ipv6 string) (Site, error) {
	p4, err := netip.ParsePrefix(ipv4)
	if err != nil {
		return Site{}, fmt.Errorf("%w: %w", ErrInvalidSite, err)
	}
	p6, err := netip.ParsePrefix(ipv6)
	if err != nil {
		return Site{}, fmt.Errorf("%w: %w", ErrInvalidSite, err)
	}
	s := Site{IPv4: p4, IPv6: p6}
	return s, s.Validate()
}

// Validate checks that IPv4 is an IPv4 /24 and IPv6 an IPv6 /64, both with no
// host bits set.
func (s Site) Validate() error {
	switch {
	case !s.IPv4.IsValid() || !s.IPv4.Addr().Is4():
		return fmt.Errorf("%w: IPv4 prefix %q is not an IPv4 /24", ErrInvalidSite, s.IPv4.String())
	case s.IPv4.Bits() != 24:
		return fmt.Errorf("%w: IPv4 prefix %s is not a /24", ErrInvalidSite, s.IPv4)
	case s.IPv4.Masked() != s.IPv4:
		return fmt.Errorf("%w: IPv4 prefix %s has host bits set (want %s)", ErrInvalidSite, s.IPv4, s.IPv4.Masked())
	case !s.IPv6.IsValid() || !s.IPv6.Addr().Is6() || s.IPv6.Addr().Is4In6() || s.IPv6.Addr().Zone() != "":
		return fmt.Errorf("%w: IPv6 prefix %q is not an IPv6 /64", ErrInvalidSite, s.IPv6.String())
	case s.IPv6.Bits() != 64:
		return fmt.Errorf("%w: IPv6 prefix %s is not a /64", ErrInvalidSite, s.IPv6)
	case s.IPv6.Masked() != s.IPv6:
		return fmt.Errorf("%w: IPv6 prefix %s has host bits set (want %s)", ErrInvalidSite, s.IPv6, s.IPv6.Masked())
	}
	return nil
}

// String returns both prefixes, e.g. "10.77.3.0/24, fd12:3456:789a:3::/64".
func (s Site) String() string { return s.IPv4.String() + ", " + s.IPv6.String() }

// Addrs returns the IPv4 and IPv6 addresses of host n (0 to 255) of a valid
// site.
func (s Site) Addrs(n int) (ipv4, ipv6 netip.Addr) {
	a4 := s.IPv4.Addr().As4()
	a4[3] = byte(n)
	a6 := s.IPv6.Addr().As16()
	for i := 8; i < 15; i++ {
		a6[i] = 0
	}
	a6[15] = byte(n)
	return netip.AddrFrom4(a4), netip.AddrFrom16(a6)
}

// Booture returns the booture's own addresses in the site (host 1), which
// members use as their DNS server.
func (s Site) Booture() (ipv4, ipv6 netip.Addr) { return s.Addrs(BootureHost) }

// hostOf returns the host number of the pair (ipv4, ipv6) in s, or an error
// if they are not the same member host of s.
func (s Site) hostOf(ipv4, ipv6 netip.Addr) (int, error) {
	if !s.IPv4.Contains(ipv4) {
		return 0, fmt.Errorf("IPv4 address %s is not in site %s", ipv4, s.IPv4)
	}
	if !ipv6.Is6() || ipv6.Is4In6() || !s.IPv6.Contains(ipv6) {
		return 0, fmt.Errorf("IPv6 address %s is not in site %s", ipv6, s.IPv6)
	}
	n := int(ipv4.As4()[3])
	if n < FirstHost || n > LastHost {
		return 0, fmt.Errorf("address %s is not a member address (host %d not in %d..%d)", ipv4, n, FirstHost, LastHost)
	}
	if _, want6 := s.Addrs(n); ipv6 != want6 {
		return 0, fmt.Errorf("IPv6 address %s does not match IPv4 address %s (want %s)", ipv6, ipv4, want6)
	}
	return n, nil
}
