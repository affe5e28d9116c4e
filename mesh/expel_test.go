package mesh

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

func TestExpel(t *testing.T) {
	nodes := startCluster(t, 4)
	b1, b2, b3, b4 := nodes[0], nodes[1], nodes[2], nodes[3]
	start := time.Now()
	res, err := b1.Expel(context.Background(), "b4")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notified) != 2 || len(res.Unreached) != 0 {
		t.Fatalf("expel reached %v, missed %v; want b2 and b3", res.Notified, res.Unreached)
	}
	remaining := []*testNode{b1, b2, b3}
	waitfor.Cond(t, 10*time.Second, "every remaining booture on the new key without b4", func() bool {
		for _, n := range remaining {
			v := n.View()
			if _, ok := v.Peer("b4"); ok || v.Epoch != 1 {
				return false
			}
		}
		return true
	})
	// Old keys are dropped after the grace period.
	waitfor.Cond(t, 2*rekeyGrace, "old gossip key dropped", func() bool {
		for _, n := range remaining {
			if n.GossipKeyCount() != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("expulsion effective everywhere after %v", time.Since(start).Round(time.Millisecond))

	// b4 keeps running with its old state: its gossip is refused...
	if k := b4.joinAddrs([]netip.AddrPort{b2.View().Self.Gossip}); k != 0 {
		t.Fatalf("expelled booture could still join gossip (%d)", k)
	}
	// ... catching up is refused too, and tells it why.
	b4.rejoinRound(context.Background())
	waitfor.Cond(t, 10*time.Second, "b4 to learn it was expelled", func() bool { return b4.View().Expelled })
	// ... once more, after it knows it was expelled ...
	b4.rejoinRound(context.Background())
	// ... while the remaining mesh still works: a new booture can join.
	b5 := startTestNode(t, "b5", "", key.PrivateKey{})
	b5.joinVia(b3)
	all := []*testNode{b1, b2, b3, b5}
	waitfor.Cond(t, 20*time.Second, "convergence after expel", func() bool { return converged(all) })
	// Gossip spread the newcomer to everyone after b4's last attempts:
	// nobody lists b4 again.
	for _, n := range all {
		if _, ok := n.View().Peer("b4"); ok {
			t.Fatalf("%s lists the expelled booture again", n.View().Self.Name)
		}
	}
	// Plans no longer carry b4.
	for _, n := range all {
		cfg := Plan(PlanInput{View: n.View(), Interface: "bt0"})
		for _, p := range cfg.Peers {
			if p.PublicKey == b4.PublicKey() {
				t.Fatalf("%s still plans a WireGuard peer for the expelled booture", n.View().Self.Name)
			}
		}
	}
}

// A booture that was down during an expulsion catches up with the new key
// when it comes back.
func TestCatchUpAfterMissedRekey(t *testing.T) {
	nodes := startCluster(t, 4)
	b1, b3 := nodes[0], nodes[2]
	b3.Close()
	waitfor.Cond(t, 20*time.Second, "b3 dead", func() bool {
		p, _ := b1.View().Peer("b3")
		return p.State == StateDead
	})
	if _, err := b1.Expel(context.Background(), "b4"); err != nil {
		t.Fatal(err)
	}
	b3again := startTestNode(t, "b3", b3.dir, b3.priv)
	if b3again.View().Epoch != 0 {
		t.Fatal("b3 should restart on the old key")
	}
	all := []*testNode{nodes[0], nodes[1], b3again}
	waitfor.Cond(t, 30*time.Second, "b3 back on the new key", func() bool {
		return converged(all) && b3again.View().Epoch == 1
	})
	if _, ok := b3again.View().Peer("b4"); ok {
		t.Fatal("b3 still lists the expelled booture after catching up")
	}
}

// Two parts of a partitioned mesh both invite a new booture: both are given
// the same free site. When the parts meet again the conflict is settled the
// same way everywhere and shown.
func TestSiteConflictAfterPartition(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	// Partition: stop b; a and b each invite a newcomer.
	b.Close()
	waitfor.Cond(t, 20*time.Second, "b dead on a", func() bool {
		p, _ := a.View().Peer("b2")
		return p.State == StateDead
	})
	c := startTestNode(t, "c", "", key.PrivateKey{})
	c.joinVia(a) // site 3
	// b comes back cut off from a and c (its roster points at a dead
	// address) and invites d.
	bAlone := startTestNode(t, "b2", b.dir, b.priv, func(cfg *Config) { cfg.RejoinInterval = time.Hour })
	bAlone.mu.Lock()
	var held []Record
	for _, r := range bAlone.roster.all() {
		held = append(held, r)
	}
	for _, r := range held {
		r.Gossip = netip.AddrPortFrom(loopback, 1) // unreachable
		bAlone.roster.set(r)
	}
	bAlone.mu.Unlock()
	d := startTestNode(t, "d", "", key.PrivateKey{})
	d.joinVia(bAlone) // site 3 as well: b2 does not know c
	if c.View().Site.Number != d.View().Site.Number {
		t.Fatalf("test setup: c holds site %d, d site %d; want the same", c.View().Site.Number, d.View().Site.Number)
	}
	// Heal the partition.
	bAlone.joinAddrs([]netip.AddrPort{a.View().Self.Gossip})
	all := []*testNode{a, bAlone, c, d}
	waitfor.Cond(t, 30*time.Second, "merged and settled", func() bool {
		if !converged(all) {
			return false
		}
		seen := map[int]bool{}
		for _, n := range all {
			seen[n.View().Site.Number] = true
		}
		return len(seen) == 4
	})
	// c joined first (earlier claim): it keeps site 3, d moved.
	if c.View().Site.Number != 3 || d.View().Site.Number == 3 {
		t.Fatalf("c holds %d and d %d: the earlier claim should win", c.View().Site.Number, d.View().Site.Number)
	}
	found := false
	for _, cf := range d.View().Conflicts {
		if cf.Site == 3 && cf.Winner == "c" && cf.Loser == "d" && cf.NewSite == d.View().Site.Number {
			found = true
		}
	}
	if !found {
		t.Fatalf("d's conflicts %+v do not record the settlement", d.View().Conflicts)
	}
}

func TestGossipBytesCounted(t *testing.T) {
	nodes := startCluster(t, 3)
	v := nodes[0].View()
	if v.GossipBytesIn == 0 || v.GossipBytesOut == 0 {
		t.Fatalf("gossip bytes not counted: in %d out %d", v.GossipBytesIn, v.GossipBytesOut)
	}
}
