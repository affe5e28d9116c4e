package mesh

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// A booture restored on a new machine from a backup taken before an
// expulsion comes back with the old gossip key: it catches up with the
// mesh's new key, as a booture that was off during the expulsion does.
func TestStaleSnapshotCatchesUp(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2 := nodes[0], nodes[1]
	snap, err := b2.StateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(b2.dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadStateBytes(t, snap); err != nil {
		t.Fatalf("snapshot does not load as a state file: %v", err)
	}
	if len(bytes.TrimSpace(onDisk)) == 0 {
		t.Fatal("no state on disk")
	}
	if _, err := b1.Expel(context.Background(), "b3"); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 20*time.Second, "b2 on the new key", func() bool { return b2.View().Epoch == 1 })
	b2.Close()

	restored := t.TempDir()
	if err := os.WriteFile(filepath.Join(restored, StateFile), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	b2again := startTestNode(t, "b2", restored, b2.priv)
	if b2again.View().Epoch != 0 {
		t.Fatal("the restored booture should start on the backup's key")
	}
	all := []*testNode{b1, b2again}
	waitfor.Cond(t, 30*time.Second, "restored b2 back on the new key", func() bool {
		return converged(all) && b2again.View().Epoch == 1
	})
	if p, ok := b2again.View().Peer("b3"); ok && p.State == StateAlive {
		t.Fatal("the restored booture still sees the expelled one alive")
	}
}

func loadStateBytes(t *testing.T, data []byte) (*persisted, error) {
	p := filepath.Join(t.TempDir(), StateFile)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return loadState(p)
}

// An older daemon refuses a mesh state file of a newer format, saying so.
func TestNewerStateRefused(t *testing.T) {
	n := startTestNode(t, "b1", "", key.PrivateKey{})
	snap, err := n.StateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	newer := bytes.Replace(snap, []byte(`"version": 1`), []byte(`"version": 2`), 1)
	if _, err := loadStateBytes(t, newer); err == nil || !strings.Contains(err.Error(), "newer booture") {
		t.Fatalf("got %v", err)
	}
}
