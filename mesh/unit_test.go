package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
	"github.com/hashicorp/memberlist"
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
	k, _ := key.NewPrivateKey()
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
	got, err := decodeMeta(new(verifier), "diois", gossip, b)
	if err != nil {
		t.Fatal(err)
	}
	r.Gossip = gossip
	if got != r {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	// A newer daemon's extra fields are ignored.
	newer := append(bytes.TrimSuffix(b, []byte("}")), []byte(`,"future":{"x":1}}`)...)
	if _, err := decodeMeta(new(verifier), "diois", gossip, newer); err != nil {
		t.Fatalf("metadata with an unknown field: %v", err)
	}
	for name, bad := range map[string]string{
		"empty": "", "not json": "{", "no key": `{"v":1,"s":1}`, "site 0": `{"v":1,"k":"` + r.PublicKey.String() + `","s":0}`,
		"site 255": `{"v":1,"k":"` + r.PublicKey.String() + `","s":255}`, "version 0": `{"v":0}`,
	} {
		if _, err := decodeMeta(new(verifier), "diois", gossip, []byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodeMeta(new(verifier), "Bad_Name", gossip, b); err == nil {
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
	k1, _ := key.NewPrivateKey()
	k2, _ := key.NewPrivateKey()
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

func TestRosterByName(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	self := newPub()
	n := &Node{pub: self, roster: map[key.PublicKey]Record{}, now: time.Now}
	old := Record{Name: "diois", PublicKey: newPub(), Site: 2, Gen: 10, LeftAt: 20}
	n.upsertLocked(old, false)
	if r, ok := n.byNameLocked("diois"); !ok || r.PublicKey != old.PublicKey {
		t.Fatalf("byName(diois) = %+v, %v; want the only record", r, ok)
	}
	// Reinstalled with a new key: the record that has not left wins,
	// whatever the map's order.
	fresh := Record{Name: "diois", PublicKey: newPub(), Site: 3, Gen: 30}
	n.upsertLocked(fresh, true)
	if r, ok := n.byNameLocked("diois"); !ok || r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(diois) after indexing the newcomer = %s, %v; want the record that has not left", r.PublicKey, ok)
	}
	// A third record that left does not take the name from it.
	gone := Record{Name: "diois", PublicKey: newPub(), Site: 4, Gen: 40, LeftAt: 50}
	n.upsertLocked(gone, false)
	if r, _ := n.byNameLocked("diois"); r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(diois) = %s after a left record came; want the record that has not left", r.PublicKey)
	}
	for range 20 {
		n.names = nil
		if r, ok := n.byNameLocked("diois"); !ok || r.PublicKey != fresh.PublicKey {
			t.Fatalf("byName(diois) = %s, %v; want the record that has not left", r.PublicKey, ok)
		}
	}
	// A renamed booture is found under its new name only.
	fresh.Name, fresh.Gen = "crest", 40
	n.upsertLocked(fresh, true)
	if r, ok := n.byNameLocked("crest"); !ok || r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(crest) = %+v, %v", r, ok)
	}
	if r, ok := n.byNameLocked("diois"); !ok || (r.PublicKey != old.PublicKey && r.PublicKey != gone.PublicKey) {
		t.Fatalf("byName(diois) after the rename = %s, %v; want a record that left", r.PublicKey, ok)
	}
	if _, ok := n.byNameLocked("nyons"); ok {
		t.Fatal("found a booture that does not exist")
	}
}

func TestDecodeMetaMemory(t *testing.T) {
	k, _ := key.NewPrivateKey()
	n := &Node{}
	r := Record{Name: "diois", PublicKey: k.Public(), Site: 4, SiteClaim: 1, Gen: 2}
	b, _ := encodeMeta(&r)
	gossip := netip.MustParseAddrPort("198.51.100.9:7946")
	for range 3 {
		got, err := n.decodeMetaLocked("diois", gossip, b)
		if err != nil || got.Site != 4 || got.Gossip != gossip {
			t.Fatalf("decode = %+v, %v", got, err)
		}
	}
	// A changed record or address is decoded again.
	r.Site, r.Gen = 5, 3
	b2, _ := encodeMeta(&r)
	if got, _ := n.decodeMetaLocked("diois", gossip, b2); got.Site != 5 {
		t.Fatalf("changed record: site %d, want 5", got.Site)
	}
	other := netip.MustParseAddrPort("198.51.100.10:7946")
	if got, _ := n.decodeMetaLocked("diois", other, b2); got.Gossip != other {
		t.Fatalf("moved booture: gossip %v, want %v", got.Gossip, other)
	}
	if _, err := n.decodeMetaLocked("diois", gossip, []byte("{")); err == nil {
		t.Fatal("malformed record decoded")
	}
}

func TestSiteContested(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	a, b, c := newPub(), newPub(), newPub()
	n := &Node{
		st: persisted{Self: Record{Name: "self", Site: 1}},
		roster: map[key.PublicKey]Record{
			a: {Name: "a", PublicKey: a, Site: 2},
			b: {Name: "b", PublicKey: b, Site: 3},
			c: {Name: "c", PublicKey: c, Site: 2},
		},
	}
	for _, tc := range []struct {
		name   string
		states map[string]PeerState
		want   bool
	}{
		{"a and c alive on site 2", map[string]PeerState{"a": StateAlive, "b": StateAlive, "c": StateAlive}, true},
		{"c suspect still holds it", map[string]PeerState{"a": StateAlive, "c": StateSuspect}, true},
		{"c dead does not compete", map[string]PeerState{"a": StateAlive, "b": StateAlive, "c": StateDead}, false},
		{"c left, unknown to gossip", map[string]PeerState{"a": StateAlive, "b": StateAlive}, false},
	} {
		if got := n.siteContestLocked(tc.states).contested; got != tc.want {
			t.Errorf("%s: contested = %v, want %v", tc.name, got, tc.want)
		}
		// The full view agrees: a loser exactly when contested.
		v := n.viewLocked(tc.states)
		lost := false
		for _, p := range v.Peers {
			lost = lost || p.SiteLost
		}
		if lost != tc.want {
			t.Errorf("%s: view has a site loser = %v, contested = %v", tc.name, lost, tc.want)
		}
	}
	// This booture's own site counts.
	n.st.Self.Site = 3
	if !n.siteContestLocked(map[string]PeerState{"b": StateAlive}).contested {
		t.Error("self and b on site 3: not contested")
	}
}

// TestConflictsNotedOnce: in a mesh with more conflicts than the 20 kept
// for status (a full mesh), each is still recorded and logged once, not
// again at every change once it has left the list.
func TestConflictsNotedOnce(t *testing.T) {
	var logs bytes.Buffer
	n := &Node{log: slog.New(slog.NewTextHandler(&logs, nil)), now: time.Now}
	for round := 0; round < 2; round++ {
		for i := 0; i < 30; i++ {
			n.noteConflictLocked(i+1, "", fmt.Sprintf("b%d", i), 0)
		}
		n.st.Conflicts = n.st.Conflicts[len(n.st.Conflicts)-20:] // as the flush trims
	}
	if got := len(n.st.Conflicts); got != 20 {
		t.Errorf("%d conflicts kept, want 20", got)
	}
	if got := strings.Count(logs.String(), "site conflict between two bootures"); got != 30 {
		t.Errorf("%d conflicts logged, want 30 (once each)", got)
	}
	// This booture losing one of them is still recorded, with its winner.
	n.noteConflictLocked(30, "b99", "b29", 7)
	if c := n.st.Conflicts[len(n.st.Conflicts)-1]; c.Winner != "b99" || c.NewSite != 7 {
		t.Errorf("own move not recorded: %+v", c)
	}
}

// TestNodeStatesReadsMemberlist flags a memberlist upgrade that changes the
// node table nodeStates reads: status would then show suspect bootures as
// alive and those that left as dead.
func TestNodeStatesReadsMemberlist(t *testing.T) {
	c := memberlist.DefaultLocalConfig()
	c.Name, c.BindAddr, c.BindPort = "diois", "127.0.0.1", 0
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	states, ok := nodeStates(ml)
	if !ok {
		t.Fatal("memberlist's node table changed: update nodeStates")
	}
	if len(states) != 1 || states["diois"] != StateAlive {
		t.Fatalf("nodeStates = %v; want diois alive", states)
	}
}
