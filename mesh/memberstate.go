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
// both, so nodeStates reads memberlist's own node table, under its lock,
// through reflection. The layout is checked at every call; if a memberlist
// upgrade changes it, nodeStates returns ok=false and callers fall back to
// the public API (suspect shows as alive, left as dead), and
// TestNodeStatesReadsMemberlist fails to flag it.

// nodeStates returns memberlist's state of every node it knows.
func nodeStates(ml *memberlist.Memberlist) (map[string]memberlist.NodeStateType, bool) {
	v := reflect.ValueOf(ml).Elem()
	lockF := v.FieldByName("nodeLock")
	nodesF := v.FieldByName("nodes")
	if !lockF.IsValid() || lockF.Type() != reflect.TypeOf(sync.RWMutex{}) ||
		!nodesF.IsValid() || nodesF.Kind() != reflect.Slice || nodesF.Type().Elem().Kind() != reflect.Pointer {
		return nil, false
	}
	ns := nodesF.Type().Elem().Elem()
	stateF, ok1 := ns.FieldByName("State")
	nodeF, ok2 := ns.FieldByName("Node")
	if !ok1 || !ok2 || len(stateF.Index) != 1 || stateF.Type != reflect.TypeOf(memberlist.StateAlive) ||
		nodeF.Type != reflect.TypeOf(memberlist.Node{}) {
		return nil, false
	}
	lock := (*sync.RWMutex)(unsafe.Pointer(lockF.UnsafeAddr()))
	lock.RLock()
	defer lock.RUnlock()
	out := make(map[string]memberlist.NodeStateType, nodesF.Len())
	for i := 0; i < nodesF.Len(); i++ {
		p := nodesF.Index(i)
		if p.IsNil() {
			continue
		}
		s := p.Elem()
		name := s.FieldByIndex(nodeF.Index).FieldByName("Name").String()
		out[name] = memberlist.NodeStateType(s.FieldByIndex(stateF.Index).Int())
	}
	return out, true
}
