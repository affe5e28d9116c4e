package mesh

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

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
		state: persisted{Self: Record{Name: "self", Site: 1}},
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
	n.state.Self.Site = 3
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
		n.state.Conflicts = n.state.Conflicts[len(n.state.Conflicts)-20:] // as the flush trims
	}
	if got := len(n.state.Conflicts); got != 20 {
		t.Errorf("%d conflicts kept, want 20", got)
	}
	if got := strings.Count(logs.String(), "site conflict between two bootures"); got != 30 {
		t.Errorf("%d conflicts logged, want 30 (once each)", got)
	}
	// This booture losing one of them is still recorded, with its winner.
	n.noteConflictLocked(30, "b99", "b29", 7)
	if c := n.state.Conflicts[len(n.state.Conflicts)-1]; c.Winner != "b99" || c.NewSite != 7 {
		t.Errorf("own move not recorded: %+v", c)
	}
}
