package mesh

import (
	"encoding/json"
	"fmt"
	"sort"
)

// StateSnapshot returns the mesh state file's content as of now (what
// saveLocked would write), taken under the node's lock: a backup gets the
// current credentials and roster even when the file on disk lags behind.
func (n *Node) StateSnapshot() ([]byte, error) {
	n.mu.Lock()
	p := n.persistedLocked()
	n.mu.Unlock()
	data, err := json.MarshalIndent(&p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding mesh state: %w", err)
	}
	return append(data, '\n'), nil
}

// persistedLocked returns the state as the state file holds it. n.mu must
// be held.
func (n *Node) persistedLocked() persisted {
	p := n.state
	p.Roster = make([]Record, 0, n.roster.len())
	for _, r := range n.roster.all() {
		p.Roster = append(p.Roster, r)
	}
	sort.Slice(p.Roster, func(i, j int) bool { return p.Roster[i].Name < p.Roster[j].Name })
	return p
}
