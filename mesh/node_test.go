package mesh

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

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
