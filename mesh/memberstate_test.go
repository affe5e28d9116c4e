package mesh

import (
	"io"
	"testing"

	"github.com/hashicorp/memberlist"
)

// TestNodeStatesReadsMemberlist flags a memberlist upgrade that changes the
// node table nodeStates reads: status would then show suspect bootures as
// alive and those that left as dead.
func TestNodeStatesReadsMemberlist(t *testing.T) {
	c := memberlist.DefaultLocalConfig()
	c.Name, c.BindAddr, c.BindPort = "diois", "127.0.0.1", 0
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	states, ok := nodeStates(ml)
	if !ok {
		t.Fatal("memberlist's node table changed: update nodeStates")
	}
	if len(states) != 1 || states["diois"] != StateAlive {
		t.Fatalf("nodeStates = %v; want diois alive", states)
	}
}
