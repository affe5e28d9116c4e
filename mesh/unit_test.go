package mesh

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
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

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{Expires: time.Unix(1900000000, 0), Inviter: []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.1:7946"), netip.MustParseAddrPort("[2001:db8::1]:7946"),
	}}
	copy(tok.ID[:], bytes.Repeat([]byte{1}, 16))
	copy(tok.Secret[:], bytes.Repeat([]byte{2}, 32))
	text := tok.Encode()
	if !strings.HasPrefix(text, tokenPrefix) || strings.ContainsAny(text, "+/= \n") {
		t.Fatalf("token %q is not copy-paste safe", text)
	}
	got, err := ParseToken("  " + text + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != tok.ID || got.Secret != tok.Secret || !got.Expires.Equal(tok.Expires) || len(got.Inviter) != 2 || got.Inviter[1] != tok.Inviter[1] {
		t.Fatalf("round trip: got %+v", got)
	}
	// Every single-character change is caught as garbled.
	for i := len(tokenPrefix); i < len(text); i += 7 {
		b := []byte(text)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := ParseToken(string(b)); !errors.Is(err, ErrTokenGarbled) {
			t.Fatalf("changed character %d: got %v", i, err)
		}
	}
	for _, bad := range []string{"", "hello", tokenPrefix, tokenPrefix + "!!!", text[:len(text)-1]} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrTokenGarbled) {
			t.Fatalf("ParseToken(%q) = %v, want ErrTokenGarbled", bad, err)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	k, _ := NewPrivateKey()
	r := Record{
		Name: "diois", PublicKey: k.Public(), Site: 12, SiteClaim: 1700000000000,
		Endpoint: netip.MustParseAddrPort("198.51.100.9:51820"), Version: "1.2.3", Gen: 1700000000001,
	}
	b, err := encodeMeta(&r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 200 {
		t.Errorf("node metadata is %d bytes; keep it small", len(b))
	}
	gossip := netip.MustParseAddrPort("198.51.100.9:7946")
	got, err := decodeMeta("diois", gossip, b)
	if err != nil {
		t.Fatal(err)
	}
	r.Gossip = gossip
	if got != r {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	// A newer daemon's extra fields are ignored.
	newer := append(bytes.TrimSuffix(b, []byte("}")), []byte(`,"future":{"x":1}}`)...)
	if _, err := decodeMeta("diois", gossip, newer); err != nil {
		t.Fatalf("metadata with an unknown field: %v", err)
	}
	for name, bad := range map[string]string{
		"empty": "", "not json": "{", "no key": `{"v":1,"s":1}`, "site 0": `{"v":1,"k":"` + r.PublicKey.String() + `","s":0}`,
		"site 255": `{"v":1,"k":"` + r.PublicKey.String() + `","s":255}`, "version 0": `{"v":0}`,
	} {
		if _, err := decodeMeta("diois", gossip, []byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodeMeta("Bad_Name", gossip, b); err == nil {
		t.Error("invalid name accepted")
	}
}

func TestSummaryOrder(t *testing.T) {
	var a, b MeshID
	a[0], b[0] = 1, 2
	small := Summary{MeshID: a, Founded: 100, Size: 1}
	big := Summary{MeshID: b, Founded: 200, Size: 3}
	if !big.Beats(small) || small.Beats(big) {
		t.Fatal("the bigger mesh must win a merge")
	}
	older := Summary{MeshID: a, Founded: 100, Size: 3}
	if !older.Beats(big) || big.Beats(older) {
		t.Fatal("at equal size the older mesh must win")
	}
	e1 := Summary{MeshID: a, Epoch: 1, KeyHash: []byte{9}}
	e2 := Summary{MeshID: a, Epoch: 2, KeyHash: []byte{9}}
	if !e2.Beats(e1) || e1.Beats(e2) {
		t.Fatal("the newer epoch must win within a mesh")
	}
	x := Summary{MeshID: a, Epoch: 2, KeyHash: []byte{1}}
	if !x.Beats(e2) || e2.Beats(x) || x.Beats(x) {
		t.Fatal("equal epochs: the lower key hash wins, and nothing beats itself")
	}
}

func TestClaimOrder(t *testing.T) {
	k1, _ := NewPrivateKey()
	k2, _ := NewPrivateKey()
	early := Record{SiteClaim: 1, PublicKey: k1.Public()}
	late := Record{SiteClaim: 2, PublicKey: k2.Public()}
	if !claimLess(early, late) || claimLess(late, early) {
		t.Fatal("the earlier claim must win")
	}
	same := Record{SiteClaim: 1, PublicKey: k2.Public()}
	if claimLess(early, same) == claimLess(same, early) {
		t.Fatal("equal claims must be ordered by key, one way")
	}
}
