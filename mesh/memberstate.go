package mesh

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// memberlist's public API reports live members only, and the State field of
// the Nodes it hands out is never updated: it cannot tell a suspect booture
// from an alive one, nor one that left from one that died. Status needs
// both, so nodeStates reads memberlist's own node table, under its lock, at
// offsets found by reflection. The layout is checked once; if a memberlist
// upgrade changes it, nodeStates returns ok=false and callers fall back to
// the public API (suspect shows as alive, left as dead), and
// TestNodeStatesReadsMemberlist fails to flag it.

// tableLayout is where nodeStates finds memberlist's node table: byte
// offsets in Memberlist and in its nodeState.
type tableLayout struct {
	lock, nodes uintptr
	state, name uintptr
}

// memberlistLayout checks memberlist's layout once. nodeStates runs at every
// change of a big mesh: looking fields up by name, then through reflect
// values, was most of its cost.
var memberlistLayout = sync.OnceValues(func() (tableLayout, bool) {
	mt := reflect.TypeOf(memberlist.Memberlist{})
	lockF, ok1 := mt.FieldByName("nodeLock")
	nodesF, ok2 := mt.FieldByName("nodes")
	if !ok1 || !ok2 || len(lockF.Index) != 1 || len(nodesF.Index) != 1 ||
		lockF.Type != reflect.TypeOf(sync.RWMutex{}) ||
		nodesF.Type.Kind() != reflect.Slice || nodesF.Type.Elem().Kind() != reflect.Pointer {
		return tableLayout{}, false
	}
	ns := nodesF.Type.Elem().Elem()
	stateF, ok1 := ns.FieldByName("State") // its own, not the embedded Node's
	nodeF, ok2 := ns.FieldByName("Node")
	if !ok1 || !ok2 || len(stateF.Index) != 1 || len(nodeF.Index) != 1 ||
		stateF.Type != reflect.TypeOf(memberlist.StateAlive) || nodeF.Type != reflect.TypeOf(memberlist.Node{}) {
		return tableLayout{}, false
	}
	nameF, ok := nodeF.Type.FieldByName("Name")
	if !ok || len(nameF.Index) != 1 || nameF.Type.Kind() != reflect.String {
		return tableLayout{}, false
	}
	return tableLayout{lock: lockF.Offset, nodes: nodesF.Offset, state: stateF.Offset, name: nodeF.Offset + nameF.Offset}, true
})

// nodeStates returns memberlist's state of every node it knows, as the
// PeerState status shows.
func nodeStates(ml *memberlist.Memberlist) (map[string]PeerState, bool) {
	l, ok := memberlistLayout()
	if !ok {
		return nil, false
	}
	base := unsafe.Pointer(ml)
	lock := (*sync.RWMutex)(unsafe.Add(base, l.lock))
	lock.RLock()
	defer lock.RUnlock()
	nodes := *(*[]unsafe.Pointer)(unsafe.Add(base, l.nodes))
	out := make(map[string]PeerState, len(nodes))
	for _, p := range nodes {
		if p == nil {
			continue
		}
		name := *(*string)(unsafe.Add(p, l.name))
		out[name] = peerState(*(*memberlist.NodeStateType)(unsafe.Add(p, l.state)))
	}
	return out, true
}

func peerState(s memberlist.NodeStateType) PeerState {
	switch s {
	case memberlist.StateAlive:
		return StateAlive
	case memberlist.StateSuspect:
		return StateSuspect
	case memberlist.StateLeft:
		return StateLeft
	}
	return StateDead
}
