package mesh

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
)

// PoolIPv4 is the IPv4 pool every mesh uses: one /24 site per booture.
var PoolIPv4 = netip.MustParsePrefix("10.77.0.0/16")

// Sites are numbered 1..MaxSite: site S is 10.77.S.0/24 and subnet S of the
// mesh's ULA /48. 0 and 255 are left out so that no site holds an address
// that looks like a network or broadcast address of the pool.
const (
	MinSite = 1
	MaxSite = 254
)

// MeshID identifies a mesh. It is chosen at random when the mesh is founded.
type MeshID [16]byte

// String returns the ID in hex.
func (id MeshID) String() string { return fmt.Sprintf("%x", id[:]) }

// IsZero reports whether id is unset.
func (id MeshID) IsZero() bool { return id == MeshID{} }

// ULA derives the mesh's IPv6 unique local /48 from its identity, as RFC 4193
// suggests: fd00::/8 followed by 40 pseudo-random bits (here a hash of the
// mesh ID, so every booture computes the same prefix on its own).
func (id MeshID) ULA() netip.Prefix {
	sum := sha256.Sum256(append([]byte("booture ula "), id[:]...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], sum[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// Site is the address block one booture owns.
type Site struct {
	Number int
	IPv4   netip.Prefix // 10.77.S.0/24
	IPv6   netip.Prefix // ULA:S::/64
}

// SiteOf returns site number n of the mesh whose ULA is ula. n must be a
// valid site number.
func SiteOf(ula netip.Prefix, n int) Site {
	v4 := netip.AddrFrom4([4]byte{10, 77, byte(n), 0})
	a := ula.Addr().As16()
	a[6] = byte(n >> 8)
	a[7] = byte(n)
	return Site{
		Number: n,
		IPv4:   netip.PrefixFrom(v4, 24),
		IPv6:   netip.PrefixFrom(netip.AddrFrom16(a), 64),
	}
}

// ValidSite reports whether n is a usable site number.
func ValidSite(n int) bool { return n >= MinSite && n <= MaxSite }

// Host returns host number h of the site (1 is the booture itself, 2..254
// its members): 10.77.S.h and ULA:S::h.
func (s Site) Host(h int) (v4, v6 netip.Addr) {
	a4 := s.IPv4.Addr().As4()
	a4[3] = byte(h)
	a6 := s.IPv6.Addr().As16()
	a6[14] = byte(h >> 8)
	a6[15] = byte(h)
	return netip.AddrFrom4(a4), netip.AddrFrom16(a6)
}

// Booture returns the booture's own addresses in its site (host 1).
func (s Site) Booture() (v4, v6 netip.Addr) { return s.Host(1) }

// SiteNumberOf returns the site number holding addr in a mesh with the given
// ULA, or 0 if addr is outside the mesh's pools.
func SiteNumberOf(ula netip.Prefix, addr netip.Addr) int {
	addr = addr.Unmap()
	switch {
	case addr.Is4() && PoolIPv4.Contains(addr):
		return int(addr.As4()[2])
	case addr.Is6() && ula.Contains(addr):
		a := addr.As16()
		return int(a[6])<<8 | int(a[7])
	}
	return 0
}
