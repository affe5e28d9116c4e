package mesh

import (
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/booture/booture/internal/names"
)

// Gossip spreads the news of a newcomer to random bootures, a few times
// each, and now and then one booture never hears it. Memberlist repairs that
// only at its next full state exchange (push/pull), which it spaces out as
// the mesh grows: 30 s to 2 min on lan, up to 5 min on wan. Meanwhile that
// booture has no tunnel to the newcomer.
//
// To close the gap sooner, each booture whose view of the mesh has not
// changed for a while sends, once per rejoin round, a digest of that view
// (how many bootures are up, and a hash of their names) to one booture it
// sees up. A booture that missed a newcomer receives digests that all
// differ from its own; once three in a row from different bootures (fewer
// in a smaller mesh) have differed while its view stood still, it starts a
// full state exchange with the last sender, which brings both views
// together. The bootures that did not miss anything hear a differing
// digest only now and then, and start nothing; views still changing (a
// mesh forming, a booture coming and going) are left to gossip; and a
// booture starts at most one exchange per repairEveryLocked. A first
// version, which acted on the first differing digest, started hundreds of
// exchanges at once in a loaded 500-booture mesh and kept it from settling.

// msgDigest is the user message type of a view digest.
const msgDigest byte = 4

// viewDigest summarizes the bootures a booture sees up, itself included.
type viewDigest struct {
	V     int    `json:"v"`
	From  string `json:"from"`
	Count int    `json:"count"`
	Hash  uint64 `json:"hash"`
}

func (d viewDigest) sameView(o viewDigest) bool { return d.Count == o.Count && d.Hash == o.Hash }

// digestOf is the digest of the bootures states has up. The hash is a sum
// of per-name FNV-1a hashes (the same on every booture), so the order
// memberlist lists them in does not matter.
func digestOf(states map[string]PeerState) viewDigest {
	var d viewDigest
	h := fnv.New64a()
	var buf []byte
	for name, s := range states {
		if s.Up() {
			h.Reset()
			buf = append(buf[:0], name...)
			h.Write(buf)
			d.Count++
			d.Hash += h.Sum64()
		}
	}
	return d
}

// noteViewLocked records this booture's view, as read by refreshStates.
func (n *Node) noteViewLocked(states map[string]PeerState) {
	d := digestOf(states)
	if !d.sameView(n.view) || n.viewSince.IsZero() {
		n.view, n.viewSince = d, n.now()
		clear(n.differ)
	}
}

// viewSettledLocked tells whether this booture's view has not changed for
// two rejoin rounds.
func (n *Node) viewSettledLocked() bool {
	return !n.viewSince.IsZero() && n.now().Sub(n.viewSince) >= 2*n.cfg.RejoinInterval
}

// repairEveryLocked is the least time between two full state exchanges a
// booture starts on a digest: six rejoin rounds (30 s), plus as much per 100
// bootures, so that views that cannot be brought together (a booture some
// refuse) cost a bounded, small load.
func (n *Node) repairEveryLocked() time.Duration {
	return time.Duration(1+n.roster.len()/100) * 6 * n.cfg.RejoinInterval
}

// shareView sends this booture's digest to one booture it sees up, if its
// view is settled.
func (n *Node) shareView() {
	ml := n.memberlist()
	if ml == nil {
		return
	}
	n.mu.Lock()
	if !n.viewSettledLocked() {
		n.mu.Unlock()
		return
	}
	d := n.view
	d.V, d.From = 1, n.state.Self.Name
	// One booture that is up, drawn at random in one pass (reservoir
	// sampling): this runs every round on every booture.
	var peer netip.AddrPort
	seen := 0
	for k, r := range n.roster.all() {
		if n.isLiveLocked(k) && r.Gossip.IsValid() {
			if seen++; rand.N(seen) == 0 {
				peer = r.Gossip
			}
		}
	}
	n.mu.Unlock()
	if seen == 0 {
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		return
	}
	if err := ml.SendToAddress(memberlist.Address{Addr: peer.String()}, append([]byte{msgDigest}, b...)); err != nil {
		n.log.Debug("sending our view of the mesh", "to", peer.String(), "err", err)
	}
}

// handleDigest compares another booture's view with ours, and starts a full
// state exchange with it when ours, settled, differs from the views of
// several bootures in a row.
func (n *Node) handleDigest(b []byte) {
	var d viewDigest
	if err := json.Unmarshal(b, &d); err != nil || d.V < 1 || names.Check(d.From) != nil {
		n.log.Debug("dropping malformed view digest")
		return
	}
	n.mu.Lock()
	if d.sameView(n.view) || !n.viewSettledLocked() {
		clear(n.differ)
		n.mu.Unlock()
		return
	}
	if n.differ == nil {
		n.differ = make(map[string]bool)
	}
	n.differ[d.From] = true
	r, ok := n.roster.byName(d.From)
	if len(n.differ) < min(3, n.view.Count-1) || n.now().Sub(n.lastRepair) < n.repairEveryLocked() ||
		!ok || !r.Gossip.IsValid() || r.Left() {
		n.mu.Unlock()
		return
	}
	n.lastRepair = n.now()
	clear(n.differ)
	ours := n.view.Count
	n.mu.Unlock()
	n.repairs.Add(1)
	n.log.Info("our view of the mesh differs from other bootures'; exchanging full state with one",
		"peer", d.From, "up_here", ours, "up_there", d.Count)
	n.joinAddrs([]netip.AddrPort{r.Gossip})
}
