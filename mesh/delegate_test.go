package mesh

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/booture/booture/key"
)

func TestRosterByName(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	self := newPub()
	n := &Node{publicKey: self, roster: newRoster(), now: time.Now, log: slog.New(slog.DiscardHandler)}
	old := Record{Name: "diois", PublicKey: newPub(), Site: 2, Gen: 10, LeftAt: 20}
	n.upsertLocked(old, false)
	if r, ok := n.roster.byName("diois"); !ok || r.PublicKey != old.PublicKey {
		t.Fatalf("byName(diois) = %+v, %v; want the only record", r, ok)
	}
	// Reinstalled with a new key: the record that has not left wins,
	// whatever the map's order.
	fresh := Record{Name: "diois", PublicKey: newPub(), Site: 3, Gen: 30}
	n.upsertLocked(fresh, true)
	if r, ok := n.roster.byName("diois"); !ok || r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(diois) after indexing the newcomer = %s, %v; want the record that has not left", r.PublicKey, ok)
	}
	// A third record that left does not take the name from it.
	gone := Record{Name: "diois", PublicKey: newPub(), Site: 4, Gen: 40, LeftAt: 50}
	n.upsertLocked(gone, false)
	if r, _ := n.roster.byName("diois"); r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(diois) = %s after a left record came; want the record that has not left", r.PublicKey)
	}
	for range 20 {
		n.roster.dropIndex()
		if r, ok := n.roster.byName("diois"); !ok || r.PublicKey != fresh.PublicKey {
			t.Fatalf("byName(diois) = %s, %v; want the record that has not left", r.PublicKey, ok)
		}
	}
	// A renamed booture is found under its new name only.
	fresh.Name, fresh.Gen = "crest", 40
	n.upsertLocked(fresh, true)
	if r, ok := n.roster.byName("crest"); !ok || r.PublicKey != fresh.PublicKey {
		t.Fatalf("byName(crest) = %+v, %v", r, ok)
	}
	if r, ok := n.roster.byName("diois"); !ok || (r.PublicKey != old.PublicKey && r.PublicKey != gone.PublicKey) {
		t.Fatalf("byName(diois) after the rename = %s, %v; want a record that left", r.PublicKey, ok)
	}
	if _, ok := n.roster.byName("nyons"); ok {
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
