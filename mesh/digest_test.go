package mesh

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// refuseAlive is an AliveDelegate that refuses the booture called name while
// refuse is set: that booture never hears of it by gossip meanwhile, as when
// gossip's random spreading misses it.
type refuseAlive struct {
	memberlist.AliveDelegate
	name   string
	refuse *atomic.Bool
}

func (r refuseAlive) NotifyAlive(m *memberlist.Node) error {
	if m.Name == r.name && r.refuse.Load() {
		return errors.New("refused by the test")
	}
	return r.AliveDelegate.NotifyAlive(m)
}

// refuseRecords is a Delegate that drops the roster record of the booture
// called name from full state exchanges while refuse is set, so that the
// rejoin rounds cannot find it either.
type refuseRecords struct {
	memberlist.Delegate
	name   string
	refuse *atomic.Bool
}

func (r refuseRecords) MergeRemoteState(buf []byte, join bool) {
	if r.refuse.Load() {
		var ps pushState
		if json.Unmarshal(buf, &ps) == nil {
			kept := ps.Records[:0]
			for _, rec := range ps.Records {
				if rec.Name != r.name {
					kept = append(kept, rec)
				}
			}
			ps.Records = kept
			buf, _ = json.Marshal(ps)
		}
	}
	r.Delegate.MergeRemoteState(buf, join)
}

// TestDigestRepairsMissedNewcomer: a booture that gossip never told of a
// newcomer learns of it through the view digests, with memberlist's own
// periodic full state exchange turned off; and once views agree, digests
// start no more exchanges.
func TestDigestRepairsMissedNewcomer(t *testing.T) {
	noPushPull := func(c *memberlist.Config) { c.PushPullInterval = 0 }
	var refuse atomic.Bool
	refuse.Store(true)
	a := startTunedNode(t, "a", "", Key{}, noPushPull)
	b := startTunedNode(t, "b", "", Key{}, func(c *memberlist.Config) {
		noPushPull(c)
		c.Alive = refuseAlive{c.Alive, "c", &refuse}
		c.Delegate = refuseRecords{c.Delegate, "c", &refuse}
	})
	b.joinVia(a)
	waitFor(t, 10*time.Second, "a and b to see each other", func() bool {
		return alivePeers(a.Node)["b"] && alivePeers(b.Node)["a"]
	})
	c := startTunedNode(t, "c", "", Key{}, noPushPull)
	c.joinVia(a)
	waitFor(t, 10*time.Second, "a and c to see everyone", func() bool {
		return alivePeers(a.Node)["c"] && alivePeers(c.Node)["a"] && alivePeers(c.Node)["b"]
	})
	// Let gossip's retransmissions of c's arrival run out, then stop
	// refusing: from here on, only a full state exchange tells b of c.
	time.Sleep(3 * time.Second)
	if alivePeers(b.Node)["c"] {
		t.Fatal("b sees c while refusing it")
	}
	refuse.Store(false)
	waitFor(t, 30*time.Second, "b to learn of c", func() bool { return alivePeers(b.Node)["c"] })
	repairs := func() int64 { return a.repairs.Load() + b.repairs.Load() + c.repairs.Load() }
	if repairs() == 0 {
		t.Fatal("b learned of c without a digest starting an exchange")
	}
	// Agreeing views start nothing more (b's last exchange may still be
	// under way: count from when it settled).
	time.Sleep(3 * time.Second)
	before := repairs()
	time.Sleep(8 * time.Second)
	if after := repairs(); after != before {
		t.Errorf("%d exchanges started while all three views agreed", after-before)
	}
}

func TestViewDigest(t *testing.T) {
	one := digestOf(map[string]PeerState{"a": StateAlive, "b": StateSuspect, "c": StateDead, "d": StateLeft})
	two := digestOf(map[string]PeerState{"b": StateAlive, "a": StateAlive})
	if one.Count != 2 || !one.sameView(two) {
		t.Errorf("digests %+v and %+v differ; want both a and b up", one, two)
	}
	if three := digestOf(map[string]PeerState{"a": StateAlive, "c": StateAlive}); three.sameView(one) {
		t.Error("another booture up gives the same digest")
	}
}
