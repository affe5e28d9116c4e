package mesh

import (
	"net/netip"
	"testing"
)

func TestSiteAddresses(t *testing.T) {
	var id MeshID
	copy(id[:], "0123456789abcdef")
	ula := id.ULA()
	if ula.Bits() != 48 || ula.Addr().As16()[0] != 0xfd {
		t.Fatalf("ULA %v is not an fd00::/8 /48", ula)
	}
	if ula != id.ULA() {
		t.Fatal("ULA is not deterministic")
	}
	s := SiteOf(ula, 7)
	if s.IPv4.String() != "10.77.7.0/24" {
		t.Fatalf("site 7 IPv4 = %v", s.IPv4)
	}
	v4, v6 := s.Booture()
	if v4.String() != "10.77.7.1" || !s.IPv6.Contains(v6) || v6.As16()[15] != 1 {
		t.Fatalf("booture addresses %v %v", v4, v6)
	}
	m4, m6 := s.Host(42)
	if m4.String() != "10.77.7.42" || m6.As16()[15] != 42 {
		t.Fatalf("host 42 = %v %v", m4, m6)
	}
	for _, a := range []netip.Addr{v4, v6, m4, m6} {
		if got := SiteNumberOf(ula, a); got != 7 {
			t.Fatalf("SiteNumberOf(%v) = %d", a, got)
		}
	}
	if SiteNumberOf(ula, netip.MustParseAddr("192.0.2.1")) != 0 {
		t.Fatal("an address outside the mesh has a site")
	}
}
