package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"sync"
	"time"

	"github.com/booture/booture/key"
	"github.com/hashicorp/memberlist"
)

// Expelling a booture means two things: every remaining booture drops its
// WireGuard peer at once, and the mesh moves to a new gossip key that the
// expelled booture never sees. The expelling booture draws the new key and
// sends it to each booture it sees alive in a rekey message, through gossip
// (still encrypted with the old key), but with the key itself sealed to the
// recipient's public key (NaCl box): the expelled booture may receive the
// message, it cannot open it. Bootures switch to the new key at once and
// keep accepting the old one for rekeyGrace only, so that messages in flight
// are not lost; after that the expelled booture's gossip no longer decrypts
// anywhere. A booture that was unreachable during the change gets the new
// key later by catch-up from any booture that knows it.

// rekeyGrace is how long a replaced gossip key is still accepted.
const rekeyGrace = 3 * time.Second

// Epochs order the mesh's gossip keys: the key of the highest epoch wins.
// Whoever could make the mesh take a key at an epoch beyond reach would keep
// it for good (an expulsion's epoch+1 wrapped to 0 and lost), so epochs only
// ever move in small steps, with checked arithmetic, and never past
// maxEpoch.
const (
	// maxEpoch is the highest epoch a mesh can reach: 4 billion key
	// changes, far more than any mesh makes, and far from wrapping.
	maxEpoch = 1 << 32
	// maxEpochJump is how many epochs credentials of the same mesh may
	// move a booture on at once by catch-up: a booture that was off while
	// the mesh expelled up to that many bootures still catches up (more
	// is not a plausible federation of associations; it must be invited
	// again). A rekey message moves it one epoch only (see
	// acceptRekeyLocked). With these steps, driving a mesh to maxEpoch
	// would take tens of millions of adoptions.
	maxEpochJump = 64
)

// errEpochsExhausted is returned by a key change at maxEpoch.
var errEpochsExhausted = errors.New("the mesh has used all its key epochs: found a new mesh")

// nextEpoch returns the epoch after e, or an error past maxEpoch.
func nextEpoch(e uint64) (uint64, error) {
	next, carry := bits.Add64(e, 1, 0)
	if carry != 0 || next > maxEpoch {
		return 0, errEpochsExhausted
	}
	return next, nil
}

// epochReachable tells whether credentials of our mesh at epoch to may
// replace ours at epoch from by catch-up: not older, at most maxEpochJump
// ahead, and not past maxEpoch.
func epochReachable(from, to uint64) bool {
	limit, carry := bits.Add64(from, maxEpochJump, 0)
	return to >= from && to <= maxEpoch && (carry != 0 || to <= limit)
}

// ErrNotFound is returned for a name that is not a booture of the mesh.
var ErrNotFound = errors.New("no such booture in this mesh")

type rekeyMsg struct {
	MeshID     MeshID          `json:"mesh_id"`
	Founded    int64           `json:"founded"`
	Epoch      uint64          `json:"epoch"`
	Issuer     key.PublicKey   `json:"issuer"`
	IssuerName string          `json:"issuer_name"`
	Revoked    []Revocation    `json:"revoked"`
	Excludes   []key.PublicKey `json:"excludes"`
	// Box is the new gossip key, sealed by the issuer to the recipient.
	Box []byte `json:"box"`
}

// ExpelResult says what an expulsion reached.
type ExpelResult struct {
	Name string
	// Notified are the bootures that received the new key directly;
	// Unreached will get it by catch-up when they are reachable again.
	Notified, Unreached []string
}

// Expel removes the booture named name from the mesh and changes the gossip
// key so that it can no longer take part.
func (n *Node) Expel(ctx context.Context, name string) (ExpelResult, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	if name == n.state.Self.Name {
		n.mu.Unlock()
		return ExpelResult{}, errors.New("a booture cannot expel itself: use leave")
	}
	if n.state.Expelled {
		n.mu.Unlock()
		return ExpelResult{}, errors.New("this booture was expelled from its mesh")
	}
	target, ok := n.roster.byName(name)
	self := n.state.Self.Name
	n.mu.Unlock()
	if !ok {
		return ExpelResult{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	rv := Revocation{Name: target.Name, Key: target.PublicKey, By: self, At: n.now().UnixMilli()}
	res, err := n.rekey(ctx, []Revocation{rv})
	res.Name = name
	if err == nil {
		n.log.Warn("booture expelled; gossip key changed", "peer", name,
			"notified", len(res.Notified), "unreached", len(res.Unreached))
	}
	return res, err
}

// rekey draws a new gossip key, applies revs, and hands the key to every
// booture seen alive. n.opMu must be held.
func (n *Node) rekey(ctx context.Context, revs []Revocation) (ExpelResult, error) {
	newKey := randomBytes(32)
	n.mu.Lock()
	ml, kr := n.gossipList, n.gossipKeyring
	if ml == nil || kr == nil {
		n.mu.Unlock()
		return ExpelResult{}, errors.New("gossip is not running")
	}
	epoch, err := nextEpoch(n.state.Creds.Epoch)
	if err != nil {
		n.mu.Unlock()
		return ExpelResult{}, err
	}
	for i := range revs {
		revs[i].Epoch = epoch
	}
	n.applyRevocationsLocked(revs)
	msg := rekeyMsg{
		MeshID: n.state.Creds.MeshID, Founded: n.state.Creds.Founded, Epoch: epoch,
		Issuer: n.publicKey, IssuerName: n.state.Self.Name, Revoked: append([]Revocation(nil), n.state.Revoked...),
	}
	for _, rv := range n.state.Revoked {
		msg.Excludes = append(msg.Excludes, rv.Key)
	}
	recipients := make(map[string]key.PublicKey)
	for k, r := range n.roster.all() {
		if n.isLiveLocked(k) {
			recipients[r.Name] = k
		}
	}
	// Accept the new key before anyone uses it.
	if err := kr.AddKey(newKey); err != nil {
		n.mu.Unlock()
		return ExpelResult{}, fmt.Errorf("installing the new gossip key: %w", err)
	}
	n.mu.Unlock()

	// Deliver, encrypted with the current key which every recipient has.
	var res ExpelResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ml.Members() {
		to, ok := recipients[m.Name]
		if !ok {
			continue
		}
		wg.Add(1)
		go func(m *memberlist.Node, to key.PublicKey) {
			defer wg.Done()
			mm := msg
			mm.Box = sealTo(to, n.privateKey, newKey)
			b, _ := json.Marshal(mm)
			err := ml.SendReliable(m, append([]byte{msgRekey}, b...))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Unreached = append(res.Unreached, m.Name)
			} else {
				res.Notified = append(res.Notified, m.Name)
			}
			delete(recipients, m.Name)
		}(m, to)
	}
	wg.Wait()
	for name := range recipients {
		res.Unreached = append(res.Unreached, name)
	}
	sort.Strings(res.Notified)
	sort.Strings(res.Unreached)

	n.mu.Lock()
	old := n.state.Creds.Key
	n.state.Creds = Credentials{MeshID: msg.MeshID, Founded: msg.Founded, Key: newKey, Epoch: epoch, Excludes: msg.Excludes, Issuer: n.publicKey}
	n.rotateKeyLocked(old, newKey)
	err = n.saveLocked()
	n.mu.Unlock()
	n.changed()
	return res, err
}

// rotateKeyLocked makes newKey the primary gossip key and drops old after
// rekeyGrace.
func (n *Node) rotateKeyLocked(old, newKey []byte) {
	kr := n.gossipKeyring
	if kr == nil {
		return
	}
	if err := kr.AddKey(newKey); err != nil {
		n.log.Error("installing the new gossip key", "err", err)
		return
	}
	if err := kr.UseKey(newKey); err != nil {
		n.log.Error("switching to the new gossip key", "err", err)
		return
	}
	if bytes.Equal(old, newKey) {
		return
	}
	n.oldGossipKeys = append(n.oldGossipKeys, old)
	time.AfterFunc(rekeyGrace, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.gossipKeyring != kr {
			return // gossip restarted meanwhile with a fresh keyring
		}
		if err := kr.RemoveKey(old); err != nil {
			n.log.Debug("removing the old gossip key", "err", err)
		}
		for i, k := range n.oldGossipKeys {
			if bytes.Equal(k, old) {
				n.oldGossipKeys = append(n.oldGossipKeys[:i], n.oldGossipKeys[i+1:]...)
				break
			}
		}
	})
}

// handleRekey processes a rekey message from another booture.
func (n *Node) handleRekey(b []byte) {
	var m rekeyMsg
	if err := json.Unmarshal(b, &m); err != nil {
		n.log.Warn("dropping malformed rekey message", "err", err)
		return
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	changed, err := n.acceptRekeyLocked(&m)
	n.mu.Unlock()
	if err != nil {
		n.log.Warn("rejecting rekey message", "from", m.IssuerName, "err", err)
		return
	}
	if changed {
		n.changed()
	}
}

func (n *Node) acceptRekeyLocked(m *rekeyMsg) (bool, error) {
	if m.MeshID != n.state.Creds.MeshID {
		return false, errors.New("rekey for another mesh")
	}
	if _, ok := n.roster.get(m.Issuer); !ok {
		return false, errUnknownPeer
	}
	if n.revokedLocked(m.Issuer) {
		return false, errors.New("rekey from an expelled booture")
	}
	for _, rv := range m.Revoked {
		if rv.Key == m.Issuer {
			return false, errors.New("rekey from a booture it expels")
		}
	}
	newKey, err := openFrom(m.Issuer, n.privateKey, m.Box)
	if err != nil || len(newKey) != 32 {
		return false, errors.New("sealed key failed authentication")
	}
	cur := n.state.Creds
	// The key of the next epoch is taken, or another of the current one
	// (two expulsions at once: the lower key hash wins everywhere); an
	// older one only brings its revocations. A rekey is only ever sent
	// encrypted with the sender's current key, so a booture that can read
	// it is at most one epoch behind: a message further ahead is forged.
	next, nextErr := nextEpoch(cur.Epoch)
	if m.Epoch > cur.Epoch && (nextErr != nil || m.Epoch != next) {
		return false, fmt.Errorf("rekey to epoch %d from epoch %d: only the next epoch is accepted", m.Epoch, cur.Epoch)
	}
	changed := n.applyRevocationsLocked(m.Revoked)
	// A tie goes to the lower key hash, unless the current key's issuer
	// has just been revoked: a booture about to be expelled could draw a
	// key of low hash and send it ahead of its expulsion to win the tie.
	curRevoked := !cur.Issuer.IsZero() && n.revokedLocked(cur.Issuer)
	newer := m.Epoch > cur.Epoch ||
		m.Epoch == cur.Epoch && !bytes.Equal(newKey, cur.Key) &&
			(curRevoked || bytes.Compare(keyHash(newKey), keyHash(cur.Key)) < 0)
	if !newer {
		return changed, nil
	}
	// The issuer holds the key it drew whatever its message claims: it is
	// never one of the excluded, so that its later revocation shows the key
	// exposed (checkKeyExposure).
	excludes := make([]key.PublicKey, 0, len(m.Excludes))
	for _, k := range m.Excludes {
		if k != m.Issuer {
			excludes = append(excludes, k)
		}
	}
	n.state.Creds = Credentials{MeshID: cur.MeshID, Founded: cur.Founded, Key: newKey, Epoch: m.Epoch, Excludes: excludes, Issuer: m.Issuer}
	n.rotateKeyLocked(cur.Key, newKey)
	if err := n.saveLocked(); err != nil {
		n.log.Error("saving mesh state", "err", err)
	}
	n.log.Info("gossip key changed", "by", m.IssuerName, "epoch", m.Epoch)
	return true, nil
}

// checkKeyExposure rekeys when the current key may have reached an expelled
// booture (two expulsions at once: the winning key was sealed to a booture
// the other expelled). One booture does it: the one with the lowest name
// among those alive.
func (n *Node) checkKeyExposure() {
	n.mu.Lock()
	excluded := make(map[key.PublicKey]bool)
	for _, k := range n.state.Creds.Excludes {
		excluded[k] = true
	}
	exposed := false
	for _, rv := range n.state.Revoked {
		if !excluded[rv.Key] {
			exposed = true
		}
	}
	designated := n.state.Self.Name
	for k, r := range n.roster.all() {
		if n.isLiveLocked(k) && r.Name < designated {
			designated = r.Name
		}
	}
	me := designated == n.state.Self.Name && !n.state.Expelled && n.gossipList != nil
	n.mu.Unlock()
	if !exposed || !me {
		return
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.log.Warn("the gossip key may be known to an expelled booture: changing it")
	if _, err := n.rekey(context.Background(), nil); err != nil {
		n.log.Error("changing the gossip key", "err", err)
	}
}

// Leave leaves the mesh gracefully: the other bootures drop this one at
// once. This booture then founds a new mesh of one, with a new site.
func (n *Node) Leave(ctx context.Context) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if ml := n.memberlist(); ml != nil {
		if err := ml.Leave(2 * time.Second); err != nil {
			n.log.Warn("leave message may not have reached every booture", "err", err)
		}
	}
	n.stopGossip()
	n.mu.Lock()
	old := n.state.Creds.MeshID
	n.foundLocked()
	err := n.saveLocked()
	n.mu.Unlock()
	if err != nil {
		return err
	}
	if err := n.startGossip(); err != nil {
		return err
	}
	n.log.Info("left the mesh; founded a new mesh of one", "old_mesh", old.String(), "mesh", n.View().MeshID.String())
	n.changed()
	return nil
}
