package mesh

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// refuseAlive is an AliveDelegate that refuses the booture called name
// while refuse says so: that booture never hears of it by gossip meanwhile,
// as when gossip's random spreading misses it.
type refuseAlive struct {
	memberlist.AliveDelegate
	name   string
	refuse func() bool
}

func (r refuseAlive) NotifyAlive(m *memberlist.Node) error {
	if m.Name == r.name && r.refuse() {
		return errors.New("refused by the test")
	}
	return r.AliveDelegate.NotifyAlive(m)
}

// refuseRecords is a Delegate that drops the roster record of the booture
// called name from full state exchanges while refuse says so, so that the
// rejoin rounds cannot find it either.
type refuseRecords struct {
	memberlist.Delegate
	name   string
	refuse func() bool
}

func (r refuseRecords) MergeRemoteState(buf []byte, join bool) {
	if r.refuse() {
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

// digestLog is a Delegate that records whose view digests a booture
// received, in order.
type digestLog struct {
	memberlist.Delegate
	mu   sync.Mutex
	from []string
}

func (d *digestLog) NotifyMsg(b []byte) {
	d.Delegate.NotifyMsg(b)
	var v viewDigest
	if len(b) > 0 && b[0] == msgDigest && json.Unmarshal(b[1:], &v) == nil {
		d.mu.Lock()
		d.from = append(d.from, v.From)
		d.mu.Unlock()
	}
}

// heardSince reports whether the booture received, after the first mark
// digests, a digest from each of senders and then one more (by which time
// the earlier ones have been handled).
func (d *digestLog) heardSince(mark int, senders ...string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	missing := map[string]bool{}
	for _, s := range senders {
		missing[s] = true
	}
	for i := mark; i < len(d.from); i++ {
		if len(missing) == 0 {
			return true
		}
		delete(missing, d.from[i])
	}
	return false
}

func (d *digestLog) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.from)
}

// TestDigestRepairsMissedNewcomer: a booture that gossip never told of a
// newcomer learns of it through the view digests, with memberlist's own
// periodic full state exchange turned off; and once views agree, digests
// start no more exchanges.
func TestDigestRepairsMissedNewcomer(t *testing.T) {
	var ahead atomic.Int64 // every clock, to pass the least time between repairs
	logs := map[string]*digestLog{}
	tune := func(name string, more func(*memberlist.Config)) func(*memberlist.Config) {
		return func(c *memberlist.Config) {
			c.PushPullInterval = 0
			if more != nil {
				more(c)
			}
			logs[name] = &digestLog{Delegate: c.Delegate}
			c.Delegate = logs[name]
		}
	}
	a := startTunedNode(t, "a", "", key.PrivateKey{}, tune("a", nil), skewedClock(&ahead))
	// b hears of c only once it has started an exchange on a digest: gossip
	// never tells it, whatever its timing.
	var b *testNode
	var bStarted atomic.Bool
	missesC := func() bool { return !bStarted.Load() || b.repairs.Load() == 0 }
	b = startTunedNode(t, "b", "", key.PrivateKey{}, tune("b", func(c *memberlist.Config) {
		c.Alive = refuseAlive{c.Alive, "c", missesC}
		c.Delegate = refuseRecords{c.Delegate, "c", missesC}
	}), skewedClock(&ahead))
	bStarted.Store(true)
	b.joinVia(a)
	waitfor.Cond(t, 10*time.Second, "a and b to see each other", func() bool {
		return alivePeers(a.Node)["b"] && alivePeers(b.Node)["a"]
	})
	c := startTunedNode(t, "c", "", key.PrivateKey{}, tune("c", nil), skewedClock(&ahead))
	c.joinVia(a)
	waitfor.Cond(t, 10*time.Second, "a and c to see everyone", func() bool {
		return alivePeers(a.Node)["c"] && alivePeers(c.Node)["a"] && alivePeers(c.Node)["b"]
	})
	waitfor.Cond(t, 30*time.Second, "b to learn of c", func() bool { return alivePeers(b.Node)["c"] })
	repairs := func() int64 { return a.repairs.Load() + b.repairs.Load() + c.repairs.Load() }

	// Agreeing views start nothing more. Every clock moves past the least
	// time between two exchanges, and each booture then hears digests
	// from both others: had its view still differed, it would have
	// started an exchange by then.
	ahead.Store(int64(time.Hour))
	before := repairs()
	marks := map[string]int{}
	for name, l := range logs {
		marks[name] = l.count()
	}
	waitfor.Cond(t, 60*time.Second, "every booture to hear both others' digests", func() bool {
		return logs["a"].heardSince(marks["a"], "b", "c") && logs["b"].heardSince(marks["b"], "a", "c") &&
			logs["c"].heardSince(marks["c"], "a", "b")
	})
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
