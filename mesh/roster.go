package mesh

import (
	"fmt"
	"iter"
	"sync"

	"github.com/booture/booture/key"
)

// roster holds the records of the other bootures of the mesh, by public
// key, with an index by name. It has its own lock, taken by each method, so
// that it is always consistent; a caller that needs several steps to be
// atomic with the rest of the node's state (read a record, then replace it)
// holds n.mu around them too. The lock order is n.mu, then the roster's:
// the roster never calls back into the node.
type roster struct {
	mu      sync.Mutex
	records map[key.PublicKey]Record
	// names indexes records by name (nil: rebuilt on use, see byName).
	names map[string]key.PublicKey
}

func newRoster() *roster {
	return &roster{records: make(map[key.PublicKey]Record)}
}

// len returns how many records the roster holds (left ones included).
func (ro *roster) len() int {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return len(ro.records)
}

// get returns the record of key k.
func (ro *roster) get(k key.PublicKey) (Record, bool) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	r, ok := ro.records[k]
	return r, ok
}

// has tells whether the roster holds a record of key k.
func (ro *roster) has(k key.PublicKey) bool {
	_, ok := ro.get(k)
	return ok
}

// set adds or replaces the record of r's key, keeping the name index
// right.
func (ro *roster) set(r Record) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	old, had := ro.records[r.PublicKey]
	ro.records[r.PublicKey] = r
	switch {
	case !had && ro.names != nil:
		// A newcomer: index it as byName would, rather than rebuild
		// the index at every arrival in a growing mesh.
		cur, dup := ro.records[ro.names[r.Name]]
		if !dup || (cur.Left() && !r.Left()) {
			ro.names[r.Name] = r.PublicKey
		}
	case had && (r.Name != old.Name || r.Left() != old.Left()):
		ro.names = nil
	}
}

// remove forgets the record of key k, and reports whether there was one.
func (ro *roster) remove(k key.PublicKey) bool {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if _, ok := ro.records[k]; !ok {
		return false
	}
	delete(ro.records, k)
	ro.names = nil
	return true
}

// removeIf forgets the records drop selects and returns their keys.
func (ro *roster) removeIf(drop func(Record) bool) []key.PublicKey {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	var gone []key.PublicKey
	for k, r := range ro.records {
		if drop(r) {
			delete(ro.records, k)
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 {
		ro.names = nil
	}
	return gone
}

// all iterates over the records, in no order, with the roster's lock held:
// the loop's body must not call the roster.
func (ro *roster) all() iter.Seq2[key.PublicKey, Record] {
	return func(yield func(key.PublicKey, Record) bool) {
		ro.mu.Lock()
		defer ro.mu.Unlock()
		for k, r := range ro.records {
			if !yield(k, r) {
				return
			}
		}
	}
}

// byName returns the record of the booture called name. Gossip asks this
// for every alive message, so it is an index lookup; every change of the
// roster's keys, names or left marks drops the index. When several records
// carry the name (a booture reinstalled with a new key), one that has not
// left is returned.
func (ro *roster) byName(name string) (Record, bool) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.lookupName(name)
}

// lookupName is byName; ro.mu must be held.
func (ro *roster) lookupName(name string) (Record, bool) {
	if ro.names == nil {
		ro.names = make(map[string]key.PublicKey, len(ro.records))
		for k, r := range ro.records {
			if cur, ok := ro.names[r.Name]; ok {
				if c := ro.records[cur]; !c.Left() || r.Left() {
					continue
				}
			}
			ro.names[r.Name] = k
		}
	}
	k, ok := ro.names[name]
	if !ok {
		return Record{}, false
	}
	r, ok := ro.records[k]
	if !ok || r.Name != name { // a change that forgot to drop the index
		ro.names = nil
		return ro.lookupName(name)
	}
	return r, true
}

// clear forgets every record.
func (ro *roster) clear() {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.records = make(map[key.PublicKey]Record)
	ro.names = nil
}

// dropIndex drops the name index (tests: it is rebuilt on use).
func (ro *roster) dropIndex() {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.names = nil
}

// freeSite returns the lowest site no booture of the roster holds (left
// ones excepted), nor this one (at selfSite), skipping exclude.
func (ro *roster) freeSite(selfSite int, exclude ...int) (int, error) {
	used := make(map[int]bool)
	used[selfSite] = true
	for _, e := range exclude {
		used[e] = true
	}
	ro.mu.Lock()
	for _, r := range ro.records {
		if !r.Left() {
			used[r.Site] = true
		}
	}
	ro.mu.Unlock()
	for s := MinSite; s <= MaxSite; s++ {
		if !used[s] {
			return s, nil
		}
	}
	return 0, fmt.Errorf("the mesh is full: all %d sites are taken", MaxSite-MinSite+1)
}

// contest runs the contest for sites among self and the bootures of the
// roster that up says are up, as markSiteLosers sees them.
func (ro *roster) contest(self Record, up func(Record) bool) *siteContest {
	c := new(siteContest)
	c.add(self)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	for _, r := range ro.records {
		if up(r) {
			c.add(r)
		}
	}
	return c
}

// markSiteLosers flags, among bootures that are up (alive or suspect, and
// this one), those holding a site that another one won. Only bootures that
// are up compete: a dead booture's record reserves its site for new
// invitations but never takes it from a live one.
func markSiteLosers(v *View) {
	var c siteContest
	c.add(v.Self)
	for _, p := range v.Peers {
		if p.State.Up() {
			c.add(p.Record)
		}
	}
	for i := range v.Peers {
		p := &v.Peers[i]
		p.SiteLost = p.State.Up() && c.lost(p.Record)
	}
}

// siteContest finds the winning claim on each site among the bootures
// added (those that are up), in one pass and without allocating: it runs at
// every change of a big mesh.
type siteContest struct {
	held      [MaxSite + 1]bool
	winner    [MaxSite + 1]siteClaim
	contested bool // two claims on one site were added
}

// siteClaim is what orders two claims on one site.
type siteClaim struct {
	at  int64
	key key.PublicKey
}

func (c *siteContest) add(r Record) {
	if r.Site < 0 || r.Site > MaxSite {
		return
	}
	cl := siteClaim{r.SiteClaim, r.PublicKey}
	if !c.held[r.Site] {
		c.held[r.Site], c.winner[r.Site] = true, cl
		return
	}
	c.contested = true
	if cl.less(c.winner[r.Site]) {
		c.winner[r.Site] = cl
	}
}

// lost tells whether r, added before, lost its site to another claim.
func (c *siteContest) lost(r Record) bool {
	return r.Site >= 0 && r.Site <= MaxSite && c.held[r.Site] && c.winner[r.Site].key != r.PublicKey
}

// claimLess orders two claims on one site: the earlier claim wins, then the
// lower public key. Every booture computes the same winner.
func claimLess(a, b Record) bool {
	return siteClaim{a.SiteClaim, a.PublicKey}.less(siteClaim{b.SiteClaim, b.PublicKey})
}

func (a siteClaim) less(b siteClaim) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.key.String() < b.key.String()
}
