package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/booture/booture/key"
)

// Catch-up lets two bootures that know each other compare credentials
// outside gossip, which needs a shared key. It is how a booture that missed
// a key change (it was off or cut off during an expulsion) gets the new key,
// and how a merge spreads: the bootures of a mesh that lost a merge follow
// the ones that moved. Secrets only travel sealed (NaCl box) from one
// roster member to another; an unknown or expelled key gets nothing.

type catchUpRequest struct {
	Key     key.PublicKey `json:"key"`
	Name    string        `json:"name"`
	Summary Summary       `json:"summary"`
}

type catchUpReply struct {
	Key     key.PublicKey `json:"key"`
	Name    string        `json:"name"`
	Summary Summary       `json:"summary"`
	// Outcome: "same" (nothing to do), "mine" (Sealed holds the
	// responder's credentials, which win), "yours" (the requester's win:
	// it sends them sealed next), "expelled" (Sealed holds the revocation).
	Outcome string `json:"outcome"`
	Sealed  []byte `json:"sealed,omitempty"`
}

// unreachableError is a catch-up that could not connect at all.
type unreachableError struct{ error }

func (e *unreachableError) Unwrap() error { return e.error }

// errUnknownPeer is returned when a booture answers with a key we do not
// trust.
var errUnknownPeer = errors.New("answer from a booture that is not in our roster")

// catchUp compares credentials with the booture r and, where they differ,
// the loser adopts the winner's.
func (n *Node) catchUp(ctx context.Context, r Record) error {
	mt := n.transport()
	if mt == nil {
		return errors.New("gossip is not running")
	}
	conn, err := mt.dialHandshake(r.Gossip.String(), magicCatchUp, 2*time.Second)
	if err != nil {
		return &unreachableError{err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	n.mu.Lock()
	req := catchUpRequest{Key: n.publicKey, Name: n.state.Self.Name, Summary: n.summaryLocked()}
	n.mu.Unlock()
	body, _ := json.Marshal(req)
	if err := writeFrame(conn, framePlain, body); err != nil {
		return err
	}
	kind, body, err := readFrame(conn, maxFrame)
	if err != nil {
		return err
	}
	if kind == frameError {
		return fmt.Errorf("refused: %s", body)
	}
	var rep catchUpReply
	if kind != framePlain || json.Unmarshal(body, &rep) != nil {
		return errors.New("malformed catch-up answer")
	}
	n.mu.Lock()
	known := rep.Key == r.PublicKey && !n.revokedLocked(rep.Key)
	n.mu.Unlock()
	if !known {
		return errUnknownPeer
	}
	switch rep.Outcome {
	case "same":
		return nil
	case "expelled":
		plain, err := openFrom(rep.Key, n.privateKey, rep.Sealed)
		if err != nil {
			return err
		}
		var rv Revocation
		if json.Unmarshal(plain, &rv) != nil || rv.Key != n.publicKey {
			return errors.New("malformed revocation")
		}
		n.mu.Lock()
		n.applyRevocationsLocked([]Revocation{rv})
		n.mu.Unlock()
		n.changed()
		return errors.New("this booture was expelled from the mesh")
	case "mine":
		plain, err := openFrom(rep.Key, n.privateKey, rep.Sealed)
		if err != nil {
			return err
		}
		var p credsPayload
		if json.Unmarshal(plain, &p) != nil || p.validate() != nil {
			return errors.New("malformed credentials")
		}
		n.opMu.Lock()
		defer n.opMu.Unlock()
		n.mu.Lock()
		ours := n.summaryLocked()
		n.mu.Unlock()
		if !rep.Summary.Beats(ours) || rep.Summary.MeshID != p.Creds.MeshID || rep.Summary.Epoch != p.Creds.Epoch {
			return nil // we changed meanwhile; the next round compares again
		}
		if p.Creds.MeshID == ours.MeshID && !epochReachable(ours.Epoch, p.Creds.Epoch) {
			return fmt.Errorf("refusing credentials at epoch %d from epoch %d: too far ahead (this booture must be invited again if the mesh really changed its key that often)", p.Creds.Epoch, ours.Epoch)
		}
		n.log.Info("catching up with the mesh's credentials", "from", rep.Name, "mesh", p.Creds.MeshID.String(), "epoch", p.Creds.Epoch)
		return n.adopt(&p, 0, 0, []netip.AddrPort{r.Gossip})
	case "yours":
		n.mu.Lock()
		body, err := json.Marshal(n.payloadLocked())
		n.mu.Unlock()
		if err != nil {
			return err
		}
		if err := writeFrame(conn, frameSealed, sealTo(rep.Key, n.privateKey, body)); err != nil {
			return err
		}
		_, _, err = readFrame(conn, maxFirstFrame) // wait until it adopted them
		return err
	}
	return fmt.Errorf("unknown catch-up outcome %q", rep.Outcome)
}

func (n *Node) serveCatchUp(ctx context.Context, conn net.Conn) error {
	kind, body, err := readFrame(conn, maxFirstFrame)
	if err != nil {
		return err
	}
	var req catchUpRequest
	if kind != framePlain || json.Unmarshal(body, &req) != nil || req.Key.IsZero() {
		return refuse(conn, &JoinRefusal{Code: RefusedGarbled, Reason: "malformed catch-up request"})
	}
	// The requester is not authenticated until it sends sealed
	// credentials (if ever): the answer is decided under n.mu alone, and
	// n.opMu, which every expulsion, join and rekey takes, is only held
	// to adopt what it sent once opened.
	n.mu.Lock()
	rep := catchUpReply{Key: n.publicKey, Name: n.state.Self.Name, Summary: n.summaryLocked()}
	var rv *Revocation
	for i := range n.state.Revoked {
		if n.state.Revoked[i].Key == req.Key {
			rv = &n.state.Revoked[i]
		}
	}
	_, known := n.roster.get(req.Key)
	switch {
	case n.state.Expelled:
		n.mu.Unlock()
		return refuse(conn, &JoinRefusal{Code: RefusedOther, Reason: "this booture was expelled from its mesh"})
	case rv != nil:
		b, _ := json.Marshal(rv)
		rep.Outcome, rep.Sealed = "expelled", sealTo(req.Key, n.privateKey, b)
	case !known:
		n.mu.Unlock()
		return refuse(conn, &JoinRefusal{Code: RefusedUnknown, Reason: "not a booture of this mesh"})
	case rep.Summary.Same(req.Summary):
		rep.Outcome = "same"
	case rep.Summary.Beats(req.Summary):
		b, err := json.Marshal(n.payloadLocked())
		if err != nil {
			n.mu.Unlock()
			return err
		}
		rep.Outcome, rep.Sealed = "mine", sealTo(req.Key, n.privateKey, b)
	case req.Summary.MeshID == rep.Summary.MeshID && !epochReachable(rep.Summary.Epoch, req.Summary.Epoch):
		n.mu.Unlock()
		return refuse(conn, &JoinRefusal{Code: RefusedOther, Reason: fmt.Sprintf("epoch %d is too far ahead of this mesh's %d", req.Summary.Epoch, rep.Summary.Epoch)})
	default:
		rep.Outcome = "yours"
	}
	n.mu.Unlock()
	b, _ := json.Marshal(rep)
	if err := writeFrame(conn, framePlain, b); err != nil {
		return err
	}
	if rep.Outcome != "yours" {
		return nil
	}
	kind, body, release, err := readFrameReserved(ctx, conn, n.guard)
	if err != nil {
		return err
	}
	defer release()
	plain, err := openFrom(req.Key, n.privateKey, body)
	if kind != frameSealed || err != nil {
		return errors.New("catch-up credentials failed authentication")
	}
	var p credsPayload
	if json.Unmarshal(plain, &p) != nil || p.validate() != nil {
		return errors.New("malformed catch-up credentials")
	}
	if !req.Summary.Beats(rep.Summary) || req.Summary.MeshID != p.Creds.MeshID || req.Summary.Epoch != p.Creds.Epoch {
		return errors.New("catch-up credentials do not match their summary")
	}
	var seeds []netip.AddrPort
	for _, r := range p.Roster {
		if r.PublicKey == req.Key {
			seeds = append(seeds, r.Gossip)
		}
	}
	if err := n.adoptUnchanged(&p, rep.Summary, req.Name, seeds); err != nil {
		return err
	}
	return writeFrame(conn, framePlain, []byte(`{"ok":true}`))
}

// adoptUnchanged adopts credentials a booture sent by catch-up, unless ours
// changed since they were found to win over answered (the answer "yours"
// is given without n.opMu): the next round compares again.
func (n *Node) adoptUnchanged(p *credsPayload, answered Summary, from string, seeds []netip.AddrPort) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	same := n.summaryLocked().Same(answered) && !n.state.Expelled
	n.mu.Unlock()
	if !same {
		return errors.New("credentials changed during the catch-up")
	}
	n.log.Info("adopting a peer's newer credentials", "from", from, "mesh", p.Creds.MeshID.String(), "epoch", p.Creds.Epoch)
	return n.adopt(p, 0, 0, seeds)
}
