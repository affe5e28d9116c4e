package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// currentCreds returns a copy of n's credentials.
func currentCreds(n *testNode) Credentials {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.state.Creds
	c.Key = bytes.Clone(c.Key)
	return c
}

// forgeRekey builds the rekey message a booture of the mesh (evil) could
// send to victim: a key it drew itself, at any epoch it likes.
func forgeRekey(evil, victim *testNode, epoch uint64, gossipKey []byte) []byte {
	c := currentCreds(evil)
	m := rekeyMsg{
		MeshID: c.MeshID, Founded: c.Founded, Epoch: epoch,
		Issuer: evil.PublicKey(), IssuerName: "evil",
		// It claims its own key was excluded, so that no booture
		// thinks the key exposed once it is expelled.
		Excludes: []key.PublicKey{evil.PublicKey()},
		Box:      sealTo(victim.PublicKey(), evil.priv, gossipKey),
	}
	b, _ := json.Marshal(m)
	return b
}

// TestRekeyEpochOverflowAttack: a booture about to be expelled sends the
// others a rekey at the largest epoch. It must be refused; before, it was
// taken, the expulsion's epoch wrapped to 0 and lost, and the expelled
// booture kept the gossip key.
func TestRekeyEpochOverflowAttack(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2, evil := nodes[0], nodes[1], nodes[2]
	evilKey := randomBytes(32)
	for _, victim := range []*testNode{b1, b2} {
		// What gossip delivers to handleRekey (see delegate.NotifyMsg).
		victim.handleRekey(forgeRekey(evil, victim, math.MaxUint64, evilKey))
	}
	for _, n := range []*testNode{b1, b2} {
		if c := currentCreds(n); c.Epoch != 0 || bytes.Equal(c.Key, evilKey) {
			t.Errorf("%s took the forged rekey: epoch %d", n.View().Self.Name, c.Epoch)
		}
	}
	if _, err := b1.Expel(context.Background(), "b3"); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 15*time.Second, "b1 and b2 on one key", func() bool {
		c1, c2 := currentCreds(b1), currentCreds(b2)
		return c1.Epoch == c2.Epoch && bytes.Equal(c1.Key, c2.Key)
	})
	for _, n := range []*testNode{b1, b2} {
		if c := currentCreds(n); bytes.Equal(c.Key, evilKey) || c.Epoch != 1 {
			t.Fatalf("%s after the expulsion: epoch %d, on the expelled booture's key: %v", n.View().Self.Name, c.Epoch, bytes.Equal(c.Key, evilKey))
		}
	}
}

// TestRekeyAcceptsOnlyTheNextEpoch: a rekey message may move the mesh one
// epoch on (or settle a tie at the current one), never further.
func TestRekeyAcceptsOnlyTheNextEpoch(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	for _, epoch := range []uint64{2, 3, maxEpochJump, maxEpoch, maxEpoch + 1, math.MaxUint64 - 1, math.MaxUint64} {
		a.handleRekey(forgeRekey(b, a, epoch, randomBytes(32)))
		if got := currentCreds(a).Epoch; got != 0 {
			t.Fatalf("a rekey at epoch %d moved the mesh from 0 to %d", epoch, got)
		}
	}
	next := randomBytes(32)
	a.handleRekey(forgeRekey(b, a, 1, next))
	if c := currentCreds(a); c.Epoch != 1 || !bytes.Equal(c.Key, next) {
		t.Fatalf("the next epoch's rekey was not taken: epoch %d", c.Epoch)
	}
}

// TestCatchUpEpochAttack: a booture of the mesh whose credentials claim the
// largest epoch hands them to another by catch-up, in both directions
// (it answers one's catch-up, it asks another). Neither takes them.
func TestCatchUpEpochAttack(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2, evil := nodes[0], nodes[1], nodes[2]
	evilKey := randomBytes(32)
	evil.mu.Lock()
	evil.state.Creds.Epoch, evil.state.Creds.Key = math.MaxUint64, evilKey
	evilRec := evil.state.Self
	evil.mu.Unlock()
	ctx := context.Background()
	// b1 asks evil: evil answers "mine" with its credentials.
	if err := b1.catchUp(ctx, evilRec); err == nil {
		t.Error("catch-up from a booture claiming the largest epoch: no error")
	}
	// evil asks b2: b2 answers "yours" and evil sends its credentials.
	b2rec := b2.View().Self
	evil.catchUp(ctx, b2rec)
	for _, n := range []*testNode{b1, b2} {
		if c := currentCreds(n); c.Epoch != 0 || bytes.Equal(c.Key, evilKey) {
			t.Fatalf("%s took credentials at epoch %d by catch-up", n.View().Self.Name, c.Epoch)
		}
	}
}

// TestCatchUpEpochJump: a booture that missed a few key changes catches
// up; credentials too far ahead are refused.
func TestCatchUpEpochJump(t *testing.T) {
	for _, tc := range []struct {
		jump uint64
		ok   bool
	}{{1, true}, {maxEpochJump, true}, {maxEpochJump + 1, false}} {
		nodes := startCluster(t, 2)
		a, b := nodes[0], nodes[1]
		key := randomBytes(32)
		b.mu.Lock()
		b.state.Creds.Epoch, b.state.Creds.Key = tc.jump, key
		brec := b.state.Self
		b.mu.Unlock()
		err := a.catchUp(context.Background(), brec)
		c := currentCreds(a)
		took := c.Epoch == tc.jump && bytes.Equal(c.Key, key)
		if took != tc.ok {
			t.Fatalf("jump of %d epochs: taken %v (err %v), want %v", tc.jump, took, err, tc.ok)
		}
	}
}

func TestNextEpoch(t *testing.T) {
	for _, tc := range []struct {
		in, want uint64
		ok       bool
	}{{0, 1, true}, {41, 42, true}, {maxEpoch - 1, maxEpoch, true}, {maxEpoch, 0, false}, {math.MaxUint64, 0, false}} {
		got, err := nextEpoch(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("nextEpoch(%d) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		from, to uint64
		ok       bool
	}{
		{0, 0, true}, {0, maxEpochJump, true}, {0, maxEpochJump + 1, false},
		{5, 4, false}, {maxEpoch - 1, maxEpoch, true}, {maxEpoch, maxEpoch + 1, false},
		{math.MaxUint64 - 1, math.MaxUint64, false}, {math.MaxUint64, 1, false},
	} {
		if got := epochReachable(tc.from, tc.to); got != tc.ok {
			t.Errorf("epochReachable(%d, %d) = %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}

// TestRekeyTieAttack: a booture about to be expelled sends another booture a
// rekey of the next epoch, with a key it drew (a low key hash, to win ties)
// and its own key listed as excluded. The expulsion then comes at the same
// epoch. Whatever the hashes, no booture may stay on the expelled booture's
// key: a key whose issuer the mesh revoked loses the tie, and the issuer
// always counts as holding the key it drew.
func TestRekeyTieAttack(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2, evil := nodes[0], nodes[1], nodes[2]
	var evilKey []byte
	for evilKey == nil || keyHash(evilKey)[0] != 0 {
		evilKey = randomBytes(32)
	}
	b2.handleRekey(forgeRekey(evil, b2, 1, evilKey))
	if c := currentCreds(b2); c.Epoch != 1 || !bytes.Equal(c.Key, evilKey) {
		t.Fatalf("b2 did not take a next-epoch rekey from a booture of the mesh (epoch %d)", c.Epoch)
	}
	if _, err := b1.Expel(context.Background(), "b3"); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 15*time.Second, "b1 and b2 on one key that the expelled booture does not have", func() bool {
		c1, c2 := currentCreds(b1), currentCreds(b2)
		return c1.Epoch == c2.Epoch && bytes.Equal(c1.Key, c2.Key) && !bytes.Equal(c1.Key, evilKey)
	})
}
