package mesh

import (
	"slices"
	"testing"

	"github.com/booture/booture/key"
)

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

func TestSiteContested(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	a, b, c := newPub(), newPub(), newPub()
	n := &Node{
		state:  persisted{Self: Record{Name: "self", Site: 1}},
		roster: newRoster(),
	}
	n.roster.set(Record{Name: "a", PublicKey: a, Site: 2})
	n.roster.set(Record{Name: "b", PublicKey: b, Site: 3})
	n.roster.set(Record{Name: "c", PublicKey: c, Site: 2})
	contested := func(states map[string]PeerState) bool {
		return n.roster.contest(n.state.Self, func(r Record) bool { return states[r.Name].Up() }).contested
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
		if got := contested(tc.states); got != tc.want {
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
	n.state.Self.Site = 3
	if !contested(map[string]PeerState{"b": StateAlive}) {
		t.Error("self and b on site 3: not contested")
	}
}

// The name index follows every change: a newcomer, a rename, a booture
// that left and one reinstalled under the same name with a new key.
func TestRosterNameIndex(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	ro := newRoster()
	old, fresh := newPub(), newPub()
	ro.set(Record{Name: "diois", PublicKey: old, Site: 2})
	if r, ok := ro.byName("diois"); !ok || r.PublicKey != old {
		t.Fatalf("byName(diois) = %v, %v; want the only record", r.PublicKey, ok)
	}
	// Reinstalled: the old record left, a new key carries the name.
	ro.set(Record{Name: "diois", PublicKey: old, Site: 2, LeftAt: 10})
	ro.set(Record{Name: "diois", PublicKey: fresh, Site: 3})
	for range 3 {
		if r, ok := ro.byName("diois"); !ok || r.PublicKey != fresh {
			t.Fatalf("byName(diois) = %v, %v; want the record that has not left", r.PublicKey, ok)
		}
		ro.dropIndex() // and again, rebuilt from scratch
	}
	// A newcomer that left does not take the name from one that has not.
	ro.set(Record{Name: "diois", PublicKey: newPub(), Site: 4, LeftAt: 20})
	if r, _ := ro.byName("diois"); r.PublicKey != fresh {
		t.Fatalf("byName(diois) = %v after a left newcomer; want the record that has not left", r.PublicKey)
	}
	// Renamed: found under its new name only.
	ro.set(Record{Name: "crest", PublicKey: fresh, Site: 3})
	if r, ok := ro.byName("crest"); !ok || r.PublicKey != fresh {
		t.Fatalf("byName(crest) = %v, %v after the rename", r.PublicKey, ok)
	}
	if r, ok := ro.byName("diois"); ok && r.PublicKey == fresh {
		t.Fatal("the renamed booture is still found under its old name")
	}
	// Removed: not found at all.
	if !ro.remove(fresh) || ro.remove(fresh) {
		t.Fatal("remove must report whether there was a record, once")
	}
	if _, ok := ro.byName("crest"); ok {
		t.Fatal("a removed booture is still found by name")
	}
}

// freeSite skips this booture's site, the sites held by bootures that have
// not left, and the excluded ones.
func TestRosterFreeSite(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	ro := newRoster()
	ro.set(Record{Name: "a", PublicKey: newPub(), Site: MinSite + 1})
	ro.set(Record{Name: "b", PublicKey: newPub(), Site: MinSite + 2, LeftAt: 5})
	if s, err := ro.freeSite(MinSite); err != nil || s != MinSite+2 {
		t.Errorf("freeSite = %d, %v; want %d (held by a booture that left)", s, err, MinSite+2)
	}
	if s, err := ro.freeSite(MinSite, MinSite+2); err != nil || s != MinSite+3 {
		t.Errorf("freeSite excluding %d = %d, %v; want %d", MinSite+2, s, err, MinSite+3)
	}
	full := newRoster()
	for s := MinSite + 1; s <= MaxSite; s++ {
		full.set(Record{Name: "x", PublicKey: newPub(), Site: s})
	}
	if s, err := full.freeSite(MinSite); err == nil {
		t.Errorf("freeSite in a full mesh = %d, want an error", s)
	}
}

// removeIf forgets exactly the records selected, and all iterates over
// what is left.
func TestRosterRemoveIf(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	ro := newRoster()
	a, b, c := newPub(), newPub(), newPub()
	ro.set(Record{Name: "a", PublicKey: a, Site: 2})
	ro.set(Record{Name: "b", PublicKey: b, Site: 3, LeftAt: 1})
	ro.set(Record{Name: "c", PublicKey: c, Site: 4, LeftAt: 1})
	gone := ro.removeIf(func(r Record) bool { return r.Left() })
	if len(gone) != 2 || !slices.Contains(gone, b) || !slices.Contains(gone, c) {
		t.Fatalf("removeIf(left) removed %v, want b and c", gone)
	}
	var names []string
	for _, r := range ro.all() {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"a"}) || ro.len() != 1 {
		t.Fatalf("left %v (len %d), want a only", names, ro.len())
	}
	if _, ok := ro.byName("b"); ok {
		t.Fatal("a removed booture is still found by name")
	}
	ro.clear()
	if ro.len() != 0 || ro.has(a) {
		t.Fatal("clear left records")
	}
}
