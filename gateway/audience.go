package gateway

import (
	"fmt"
	"net/netip"

	"github.com/booture/booture/catalog"
)

// Audience is who a request comes from, as told by its source address.
type Audience uint8

const (
	// AudiencePublic is anyone else: the LAN, or an unparsable source.
	AudiencePublic Audience = iota
	// AudienceMesh is a member of another booture, or another booture.
	AudienceMesh
	// AudienceMember is a member of this booture (its site, not the
	// booture's own address).
	AudienceMember
	// AudienceSelf is the booture itself: loopback or its own mesh
	// addresses.
	AudienceSelf
)

func (a Audience) String() string {
	switch a {
	case AudienceSelf:
		return "self"
	case AudienceMember:
		return "member"
	case AudienceMesh:
		return "mesh"
	}
	return "public"
}

// May reports whether a may use a service with the given access. An empty
// access is AccessMembers, the safe default of catalog.Spec; an unknown one
// is reserved to the booture itself.
func (a Audience) May(access catalog.Access) bool {
	switch access {
	case catalog.AccessPublic:
		return true
	case catalog.AccessMesh:
		return a >= AudienceMesh
	case catalog.AccessMembers, "":
		return a >= AudienceMember
	}
	return a == AudienceSelf
}

// Network is what classifying a source address needs: this booture's site
// and the mesh pools. A zero prefix means that family is not in use.
type Network struct {
	// Site4 and Site6 are this booture's site (10.77.S.0/24 and a /64);
	// the booture is their first host address (.1 / ::1).
	Site4, Site6 netip.Prefix
	// Pool4 and Pool6 are the mesh pools (10.77.0.0/16 and the ULA /48).
	Pool4, Pool6 netip.Prefix
}

// Validate checks that each prefix is of its family and that the sites lie
// in the pools.
func (n Network) Validate() error {
	for _, p := range []struct {
		name string
		p    netip.Prefix
		v4   bool
	}{{"site4", n.Site4, true}, {"pool4", n.Pool4, true}, {"site6", n.Site6, false}, {"pool6", n.Pool6, false}} {
		if p.p == (netip.Prefix{}) {
			continue
		}
		if !p.p.IsValid() || p.p.Addr().Is4() != p.v4 || p.p.Addr().Is4In6() {
			return fmt.Errorf("%s %s: not a valid IPv%s prefix", p.name, p.p, map[bool]string{true: "4", false: "6"}[p.v4])
		}
	}
	if n.Site4.IsValid() && n.Pool4.IsValid() && !(n.Pool4.Contains(n.Site4.Addr()) && n.Site4.Bits() >= n.Pool4.Bits()) {
		return fmt.Errorf("site4 %s: not inside pool4 %s", n.Site4, n.Pool4)
	}
	if n.Site6.IsValid() && n.Pool6.IsValid() && !(n.Pool6.Contains(n.Site6.Addr()) && n.Site6.Bits() >= n.Pool6.Bits()) {
		return fmt.Errorf("site6 %s: not inside pool6 %s", n.Site6, n.Pool6)
	}
	return nil
}

// SelfAddrs returns the booture's own addresses in its sites (.1 and ::1),
// invalid for a family that is not in use.
func (n Network) SelfAddrs() (v4, v6 netip.Addr) {
	if n.Site4.IsValid() {
		v4 = n.Site4.Masked().Addr().Next()
	}
	if n.Site6.IsValid() {
		v6 = n.Site6.Masked().Addr().Next()
	}
	return v4, v6
}

// Classify tells who a source address is. It does not allocate: it runs
// for every request and query.
func (n Network) Classify(a netip.Addr) Audience {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return AudiencePublic
	}
	var aud Audience
	if a.Is4() {
		aud = classifyIn(a, n.Site4, n.Pool4)
	} else {
		aud = classifyIn(a, n.Site6, n.Pool6)
	}
	// Loopback last: real sites never contain it, and tests can then use
	// loopback sites with real sockets.
	if aud == AudiencePublic && a.IsLoopback() {
		return AudienceSelf
	}
	return aud
}

func classifyIn(a netip.Addr, site, pool netip.Prefix) Audience {
	if site.IsValid() && site.Contains(a) {
		if a == site.Masked().Addr().Next() {
			return AudienceSelf
		}
		return AudienceMember
	}
	if pool.IsValid() && pool.Contains(a) {
		return AudienceMesh
	}
	return AudiencePublic
}

// ClassifyRemote classifies an "ip:port" remote address as found in
// http.Request.RemoteAddr; anything unparsable is public.
func (n Network) ClassifyRemote(remote string) Audience {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return AudiencePublic
	}
	return n.Classify(ap.Addr())
}
