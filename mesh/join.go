package mesh

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/booture/booture/key"
	"github.com/flynn/noise"
)

// credsPayload is what a booture hands to another that adopts its
// credentials: the credentials, the roster (including the sender) and the
// revocations. It only ever travels sealed.
type credsPayload struct {
	Creds   Credentials  `json:"credentials"`
	Roster  []Record     `json:"roster"`
	Revoked []Revocation `json:"revoked"`
}

func (p *credsPayload) validate() error {
	if err := p.Creds.validate(); err != nil {
		return err
	}
	if len(p.Roster) > maxPushRecords || len(p.Revoked) > maxPushRecords {
		return errors.New("credentials payload too large")
	}
	if p.Creds.Epoch > maxEpoch {
		return fmt.Errorf("credentials at epoch %d, past the last one (%d)", p.Creds.Epoch, uint64(maxEpoch))
	}
	return nil
}

// joinRequest is the joiner's first message (see joinhs.go).
type joinRequest struct {
	Self    Record  `json:"self"`
	Summary Summary `json:"summary"`
}

// joinReply is the inviter's answer (see joinhs.go).
type joinReply struct {
	// Outcome is "accept" (the joiner adopts the inviter's mesh, with
	// Site) or "merge" (the joiner's mesh wins: the inviter adopts the
	// joiner's credentials, sent next).
	Outcome string        `json:"outcome"`
	Creds   *credsPayload `json:"creds,omitempty"`
	Site    int           `json:"site,omitempty"`
	Claim   int64         `json:"claim,omitempty"`
	Inviter string        `json:"inviter"`
	// Self is the inviter's record.
	Self Record `json:"self"`
}

// JoinResult describes a successful join.
type JoinResult struct {
	MeshID  MeshID
	Site    int
	Inviter string
	// Merged is set when the joiner's mesh was the bigger one: the
	// inviter (and later its whole mesh) moved into the joiner's mesh.
	Merged bool
}

// Invitation describes a token this booture issued.
type Invitation struct {
	Token   string
	Expires time.Time
	// ID names the invitation without its secret (see Invitations).
	ID string
}

// InvitationInfo describes a pending invitation: issued, not used, not
// revoked and not expired. It never carries the secret.
type InvitationInfo struct {
	ID               string
	Created, Expires time.Time
}

// invitationID is the text form of an invitation's id: hex.
func invitationID(id []byte) string { return hex.EncodeToString(id) }

// Invitations lists the pending invitations, oldest first.
func (n *Node) Invitations() []InvitationInfo {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []InvitationInfo
	for _, inv := range n.state.Invitations {
		if inv.UsedAt == 0 && inv.RevokedAt == 0 && !now.After(time.Unix(inv.Expires, 0)) {
			out = append(out, inv.info())
		}
	}
	return out
}

func (inv *invitation) info() InvitationInfo {
	return InvitationInfo{ID: invitationID(inv.ID), Created: time.UnixMilli(inv.Created), Expires: time.Unix(inv.Expires, 0)}
}

// ErrInvitationNotFound is returned by RevokeInvitation for a token or id
// that names no invitation of this booture.
var ErrInvitationNotFound = errors.New("no such invitation on this booture")

// minIDPrefix is the shortest prefix of an invitation id RevokeInvitation
// takes.
const minIDPrefix = 8

// RevokeInvitation revokes an unused invitation, named by its token or its
// id (or a unique prefix of the id of at least 8 characters): whoever
// holds the token can no longer join with it, and is told it was revoked.
func (n *Node) RevokeInvitation(tokenOrID string) (InvitationInfo, error) {
	tokenOrID = strings.TrimSpace(tokenOrID)
	var match func(inv *invitation) bool
	switch {
	case strings.HasPrefix(tokenOrID, tokenPrefix):
		tok, err := ParseToken(tokenOrID)
		if err != nil {
			return InvitationInfo{}, err
		}
		match = func(inv *invitation) bool { return bytes.Equal(inv.ID, tok.ID[:]) }
	case len(tokenOrID) >= minIDPrefix:
		id := strings.ToLower(tokenOrID)
		match = func(inv *invitation) bool { return strings.HasPrefix(invitationID(inv.ID), id) }
	default:
		return InvitationInfo{}, fmt.Errorf("%q is neither a token nor an invitation id (at least %d characters of it)", tokenOrID, minIDPrefix)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var found *invitation
	for i := range n.state.Invitations {
		inv := &n.state.Invitations[i]
		if !match(inv) {
			continue
		}
		if found != nil {
			return InvitationInfo{}, fmt.Errorf("%q names several invitations: give more of the id", tokenOrID)
		}
		found = inv
	}
	switch {
	case found == nil:
		return InvitationInfo{}, fmt.Errorf("%w: %q", ErrInvitationNotFound, tokenOrID)
	case found.UsedAt != 0:
		return InvitationInfo{}, fmt.Errorf("invitation %s was already used by %s", invitationID(found.ID), found.UsedBy)
	case found.RevokedAt != 0:
		return found.info(), nil
	}
	found.RevokedAt = n.now().UnixMilli()
	if err := n.saveLocked(); err != nil {
		found.RevokedAt = 0
		return InvitationInfo{}, err
	}
	n.log.Info("invitation revoked", "id", invitationID(found.ID))
	return found.info(), nil
}

// DefaultInviteTTL is how long an invitation is valid by default.
const DefaultInviteTTL = 24 * time.Hour

// Invite issues a one-time invitation valid for ttl.
func (n *Node) Invite(ttl time.Duration) (Invitation, error) {
	if ttl <= 0 {
		ttl = DefaultInviteTTL
	}
	if ttl > 30*24*time.Hour {
		return Invitation{}, errors.New("an invitation may be valid for 30 days at most")
	}
	now := n.now()
	inv := invitation{
		ID: randomBytes(16), Secret: randomBytes(32),
		Created: now.UnixMilli(), Expires: now.Add(ttl).Unix(),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state.Expelled {
		return Invitation{}, errors.New("this booture was expelled from its mesh: it cannot invite")
	}
	if !n.state.Self.Gossip.IsValid() {
		return Invitation{}, errors.New("gossip is not running yet")
	}
	n.state.Invitations = append(n.state.Invitations, inv)
	if err := n.saveLocked(); err != nil {
		n.state.Invitations = n.state.Invitations[:len(n.state.Invitations)-1]
		return Invitation{}, err
	}
	t := Token{Expires: time.Unix(inv.Expires, 0), Inviter: []netip.AddrPort{n.state.Self.Gossip}}
	copy(t.ID[:], inv.ID)
	copy(t.Secret[:], inv.Secret)
	n.log.Info("invitation issued", "expires", t.Expires.UTC().Format(time.RFC3339))
	return Invitation{Token: t.Encode(), Expires: t.Expires, ID: invitationID(inv.ID)}, nil
}

// summaryLocked summarizes the current credentials.
func (n *Node) summaryLocked() Summary {
	size := 1
	for _, r := range n.roster.all() {
		if !r.Left() {
			size++
		}
	}
	return Summary{
		MeshID: n.state.Creds.MeshID, Founded: n.state.Creds.Founded, Size: size,
		Epoch: n.state.Creds.Epoch, KeyHash: keyHash(n.state.Creds.Key),
	}
}

// payloadLocked returns our credentials, roster and revocations.
func (n *Node) payloadLocked() *credsPayload {
	p := &credsPayload{Creds: n.state.Creds, Revoked: append([]Revocation(nil), n.state.Revoked...)}
	p.Roster = append(p.Roster, n.selfLocked())
	for _, r := range n.roster.all() {
		p.Roster = append(p.Roster, r)
	}
	return p
}

// Join redeems an invitation token: this booture joins the inviter's mesh
// (or, if this booture's mesh is the bigger one, the two meshes merge into
// it).
func (n *Node) Join(ctx context.Context, tokenText string) (JoinResult, error) {
	tok, err := ParseToken(tokenText)
	if err != nil {
		return JoinResult{}, err
	}
	if n.now().After(tok.Expires) {
		return JoinResult{}, fmt.Errorf("%w (at %s)", ErrTokenExpired, tok.Expires.UTC().Format(time.RFC3339))
	}
	// No lock is held while talking to the inviter: two bootures joining
	// each other at the same time must not wait for one another.
	var errs []error
	// A few attempts: the inviter may be restarting its gossip for a join
	// of its own at this very moment.
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return JoinResult{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		errs = errs[:0]
		for _, addr := range tok.Inviter {
			res, err := n.redeem(ctx, addr, tok)
			if err == nil {
				return res, nil
			}
			for _, final := range []error{ErrTokenGarbled, ErrTokenExpired, ErrTokenUsed, ErrTokenUnknown, ErrTokenRevoked, errRefused, errOldInviter} {
				if errors.Is(err, final) {
					return JoinResult{}, err
				}
			}
			errs = append(errs, err)
		}
	}
	return JoinResult{}, fmt.Errorf("cannot reach the inviter: %w", errors.Join(errs...))
}

func (n *Node) redeem(ctx context.Context, addr netip.AddrPort, tok Token) (JoinResult, error) {
	mt := n.transport()
	if mt == nil {
		return JoinResult{}, errors.New("gossip is not running")
	}
	conn, err := mt.dialHandshake(addr.String(), magicJoin, 5*time.Second)
	if err != nil {
		return JoinResult{}, fmt.Errorf("%s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	hs, err := newJoinHandshake(true, tok.ID[:], tok.Secret[:])
	if err != nil {
		return JoinResult{}, err
	}
	n.mu.Lock()
	req := joinRequest{Self: n.selfLocked(), Summary: n.summaryLocked()}
	n.mu.Unlock()
	body, err := json.Marshal(req)
	if err != nil {
		return JoinResult{}, err
	}
	msg1, _, _, err := hs.WriteMessage(nil, body)
	if err != nil {
		return JoinResult{}, fmt.Errorf("join request: %w", err)
	}
	if err := writeFrame(conn, frameNoise, append(tok.ID[:], msg1...)); err != nil {
		return JoinResult{}, fmt.Errorf("%s: %w", addr, err)
	}
	kind, body, err := readFrame(conn, maxFrame)
	switch {
	case errors.Is(err, errFrameLength):
		// An inviter that does not know this handshake passes it to
		// gossip, which answers with an encrypted gossip message.
		return JoinResult{}, fmt.Errorf("%s: %w", addr, errOldInviter)
	case err != nil:
		return JoinResult{}, fmt.Errorf("%s: %w", addr, err)
	case kind == frameError:
		return JoinResult{}, parseRefusal(body)
	case kind != frameNoise:
		return JoinResult{}, fmt.Errorf("%s: unexpected handshake frame %q", addr, kind)
	}
	_, send, recv, err := hs.ReadMessage(nil, body)
	if err != nil || send == nil {
		return JoinResult{}, fmt.Errorf("%s: the inviter's answer failed authentication", addr)
	}
	kind, body, err = readFrame(conn, maxFrame)
	if err != nil {
		return JoinResult{}, fmt.Errorf("%s: %w", addr, err)
	}
	plain, err := openChunks(recv, body)
	if kind != frameTransport || err != nil {
		return JoinResult{}, fmt.Errorf("%s: the inviter's answer failed authentication", addr)
	}
	var rep joinReply
	if err := json.Unmarshal(plain, &rep); err != nil {
		return JoinResult{}, fmt.Errorf("%s: decoding the inviter's answer: %w", addr, err)
	}
	switch rep.Outcome {
	case "accept":
		if rep.Creds == nil || rep.Creds.validate() != nil || !ValidSite(rep.Site) {
			return JoinResult{}, fmt.Errorf("%s: the inviter's answer is incomplete", addr)
		}
		n.opMu.Lock()
		err := n.adopt(rep.Creds, rep.Site, rep.Claim, []netip.AddrPort{addr})
		n.opMu.Unlock()
		if err != nil {
			return JoinResult{}, err
		}
		n.log.Info("joined the mesh", "inviter", rep.Inviter, "mesh", rep.Creds.Creds.MeshID.String(), "site", rep.Site)
		return JoinResult{MeshID: rep.Creds.Creds.MeshID, Site: rep.Site, Inviter: rep.Inviter}, nil
	case "merge":
		n.mu.Lock()
		if rep.Self.Validate() == nil {
			n.upsertLocked(rep.Self, false)
		}
		p := n.payloadLocked()
		site, id := n.state.Self.Site, n.state.Creds.MeshID
		n.mu.Unlock()
		body, err := json.Marshal(p)
		if err != nil {
			return JoinResult{}, err
		}
		sealed, err := sealChunks(send, body)
		if err != nil {
			return JoinResult{}, err
		}
		if err := writeFrame(conn, frameTransport, sealed); err != nil {
			return JoinResult{}, fmt.Errorf("%s: %w", addr, err)
		}
		kind, body, err := readFrame(conn, maxFirstFrame)
		if err != nil {
			return JoinResult{}, fmt.Errorf("%s: waiting for the inviter to merge: %w", addr, err)
		}
		if kind == frameError {
			return JoinResult{}, parseRefusal(body)
		}
		n.log.Info("meshes merged: the inviter's mesh joined ours", "inviter", rep.Inviter, "mesh", id.String())
		n.changed()
		return JoinResult{MeshID: id, Site: site, Inviter: rep.Inviter, Merged: true}, nil
	}
	return JoinResult{}, fmt.Errorf("%s: unknown join outcome %q", addr, rep.Outcome)
}

// handleStream serves a handshake stream diverted from the gossip port.
func (n *Node) handleStream(conn net.Conn, magic []byte) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	var err error
	switch {
	case bytes.Equal(magic, magicJoin):
		err = n.serveJoin(ctx, conn)
	case bytes.Equal(magic, magicJoinV1):
		// An older booture's join: read its request (so that it reads
		// the answer rather than a reset), then say why it cannot join.
		if _, _, err = readFrame(conn, maxFirstFrame); err == nil {
			err = refuse(conn, &JoinRefusal{Code: RefusedUpgrade, Reason: "the inviter runs a newer booture, whose invitations need the newer join handshake: upgrade booture on this box, then join again with the same token"})
		}
	case bytes.Equal(magic, magicCatchUp):
		err = n.serveCatchUp(ctx, conn)
	}
	if err != nil {
		n.log.Warn("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
	}
}

func (n *Node) serveJoin(ctx context.Context, conn net.Conn) error {
	kind, body, err := readFrame(conn, maxFirstFrame)
	if err != nil {
		return err
	}
	f, err := parseJoinRequestFrame(body)
	if kind != frameNoise || err != nil {
		return refuse(conn, &JoinRefusal{Code: RefusedGarbled, Reason: "malformed join request"})
	}
	// The handshake's inviter side, once the invitation's secret is known.
	var hs *noise.HandshakeState
	open := func(secret []byte) ([]byte, error) {
		var err error
		if hs, err = newJoinHandshake(false, f.ID, secret); err != nil {
			return nil, err
		}
		plain, _, _, err := hs.ReadMessage(nil, f.Msg)
		return plain, err
	}

	// Serialize with every other change of credentials, but never hold the
	// lock while waiting for the network.
	n.opMu.Lock()
	reply, err := n.admit(f.ID, open)
	n.opMu.Unlock()
	if err != nil {
		return refuse(conn, refusalOf(err))
	}
	body, err = json.Marshal(reply)
	if err != nil {
		return err
	}
	msg2, recv, send, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return fmt.Errorf("join answer: %w", err)
	}
	sealed, err := sealChunks(send, body)
	if err != nil {
		return err
	}
	if err := writeFrame(conn, frameNoise, msg2); err != nil {
		return err
	}
	if err := writeFrame(conn, frameTransport, sealed); err != nil {
		return err
	}
	joiner := reply.joiner
	if reply.Outcome == "accept" {
		n.log.Info("booture joined with an invitation", "peer", joiner.Name, "site", reply.Site)
		n.changed()
		return nil
	}

	// Merge: the joiner's mesh is bigger; adopt its credentials.
	kind, body, release, err := readFrameReserved(ctx, conn, n.guard)
	if err != nil {
		return err
	}
	defer release()
	plain, err := openChunks(recv, body)
	if kind != frameTransport || err != nil {
		return refuse(conn, &JoinRefusal{Code: RefusedGarbled, Reason: "merge credentials failed authentication"})
	}
	var p credsPayload
	if err := json.Unmarshal(plain, &p); err != nil || p.validate() != nil {
		return refuse(conn, &JoinRefusal{Code: RefusedInvalid, Reason: "malformed merge credentials"})
	}
	n.opMu.Lock()
	err = n.adopt(&p, 0, 0, []netip.AddrPort{joiner.Gossip})
	n.opMu.Unlock()
	if err != nil {
		return refuse(conn, &JoinRefusal{Code: RefusedOther, Reason: err.Error()})
	}
	n.log.Info("merged into the joiner's mesh", "peer", joiner.Name, "mesh", p.Creds.MeshID.String())
	return writeFrame(conn, framePlain, []byte(`{"ok":true}`))
}

// admission is the inviter's decision on a join request.
type admission struct {
	joinReply
	joiner Record
}

// redeemRetryWindow is how long after using a token the same booture may
// redeem it again: the answer to its first request can be lost (a timeout
// on a slow or loaded link) after the inviter admitted it, and the joiner
// retries. Later, the token is used, as for anyone else.
const redeemRetryWindow = 5 * time.Minute

// admit checks an invitation and decides the outcome of a join; open
// decrypts the request with the invitation's secret. A refusal is a
// *JoinRefusal, for the joiner. n.opMu must be held.
func (n *Node) admit(id []byte, open func(secret []byte) ([]byte, error)) (admission, error) {
	var reply admission
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	inv := n.invitationLocked(id)
	if inv == nil {
		return reply, &JoinRefusal{Code: RefusedUnknown}
	}
	used := fmt.Sprintf("by %s at %s", inv.UsedBy, time.UnixMilli(inv.UsedAt).UTC().Format(time.RFC3339))
	// A used token may only be asked for again by the booture that used
	// it, shortly after (see redeemRetryWindow): that is checked once the
	// request is open.
	retry := inv.UsedAt != 0 && !inv.UsedByKey.IsZero() && now.Sub(time.UnixMilli(inv.UsedAt)) <= redeemRetryWindow
	switch {
	case inv.RevokedAt != 0:
		return reply, &JoinRefusal{Code: RefusedRevoked, Reason: "at " + time.UnixMilli(inv.RevokedAt).UTC().Format(time.RFC3339)}
	case inv.UsedAt != 0 && !retry:
		return reply, &JoinRefusal{Code: RefusedUsed, Reason: used}
	case now.After(time.Unix(inv.Expires, 0)):
		return reply, &JoinRefusal{Code: RefusedExpired, Reason: "at " + time.Unix(inv.Expires, 0).UTC().Format(time.RFC3339)}
	}
	plain, err := open(inv.Secret)
	if err != nil {
		return reply, &JoinRefusal{Code: RefusedGarbled, Reason: "the token's secret does not match"}
	}
	var req joinRequest
	if err := json.Unmarshal(plain, &req); err != nil {
		return reply, &JoinRefusal{Code: RefusedGarbled, Reason: "malformed join request"}
	}
	joiner := req.Self
	if retry && inv.UsedByKey != joiner.PublicKey {
		return reply, &JoinRefusal{Code: RefusedUsed, Reason: used}
	}
	if err := joiner.Validate(); err != nil {
		return reply, &JoinRefusal{Code: RefusedInvalid, Reason: err.Error()}
	}
	if err := n.checkJoinerLocked(joiner); err != nil {
		return reply, err
	}
	ours := n.summaryLocked()
	prev, hadPrev := n.roster.get(joiner.PublicKey)
	reply.Inviter, reply.Self = n.state.Self.Name, n.selfLocked()
	// A join joins the inviter's mesh; only a strictly bigger mesh on the
	// joiner's side makes the inviter's mesh move instead (fewer bootures
	// renumber). Catch-up settles any other difference later with Beats.
	if req.Summary.MeshID != ours.MeshID && req.Summary.Size > ours.Size {
		reply.Outcome = "merge"
	} else {
		site := 0
		if hadPrev && (req.Summary.MeshID == ours.MeshID || retry) {
			site = prev.Site // a booture of this mesh coming back, or asking again
		} else if site, err = n.roster.freeSite(n.state.Self.Site); err != nil {
			return reply, &JoinRefusal{Code: RefusedOther, Reason: err.Error()}
		}
		joiner.Site, joiner.SiteClaim = site, now.UnixMilli()
		joiner.Gen = nextGen(joiner.Gen, now)
		// Our word, not the joiner's: unsigned until the joiner's own
		// record, signed, replaces it (see upsertLocked).
		joiner.Sig = Signature{}
		reply.Outcome, reply.Site, reply.Claim = "accept", site, joiner.SiteClaim
		n.roster.set(joiner)
		reply.Creds = n.payloadLocked()
	}
	// Mark the token used before answering: a token works once, even if
	// this booture crashes right after.
	usedBefore := *inv
	if !retry {
		inv.UsedAt, inv.UsedBy, inv.UsedByKey = now.UnixMilli(), joiner.Name, joiner.PublicKey
	}
	if err := n.saveLocked(); err != nil {
		n.log.Error("saving mesh state", "err", err)
		*inv = usedBefore
		if hadPrev {
			n.roster.set(prev)
		} else {
			n.roster.remove(joiner.PublicKey)
		}
		return reply, &JoinRefusal{Code: RefusedOther, Reason: "the inviter could not save its state"}
	}
	reply.joiner = joiner
	return reply, nil
}

// checkJoinerLocked returns, as a refusal, why a booture may not join, or
// nil.
func (n *Node) checkJoinerLocked(j Record) *JoinRefusal {
	switch {
	case n.state.Expelled:
		return &JoinRefusal{Code: RefusedOther, Reason: "this booture was expelled from its mesh"}
	case j.PublicKey == n.publicKey:
		return &JoinRefusal{Code: RefusedOther, Reason: "a booture cannot join itself"}
	case j.Name == n.state.Self.Name:
		return &JoinRefusal{Code: RefusedOther, Reason: fmt.Sprintf("the name %q is already used in this mesh (by the inviter)", j.Name)}
	case n.revokedLocked(j.PublicKey):
		return &JoinRefusal{Code: RefusedOther, Reason: "this booture was expelled from the mesh"}
	}
	if r, ok := n.roster.byName(j.Name); ok && r.PublicKey != j.PublicKey && !r.Left() {
		return &JoinRefusal{Code: RefusedOther, Reason: fmt.Sprintf("the name %q is already used in this mesh by another booture (expel it first if it was reinstalled)", j.Name)}
	}
	return nil
}

func (n *Node) invitationLocked(id []byte) *invitation {
	for i := range n.state.Invitations {
		if bytes.Equal(n.state.Invitations[i].ID, id) {
			return &n.state.Invitations[i]
		}
	}
	return nil
}

// adopt switches this booture to the credentials in p (a join, a merge, or
// catching up with a key change). site, when valid, is the site assigned by
// the inviter; otherwise the current site is kept unless another booture of
// p's roster holds it. seeds are gossip addresses to join. n.opMu must be
// held.
func (n *Node) adopt(p *credsPayload, site int, claim int64, seeds []netip.AddrPort) error {
	now := n.now()
	n.mu.Lock()
	sameMesh := p.Creds.MeshID == n.state.Creds.MeshID
	oldKey := n.state.Creds.Key
	n.state.Creds = p.Creds
	n.applyRevocationsLocked(p.Revoked)
	for _, r := range p.Roster {
		if r.Validate() == nil {
			n.upsertLocked(r, false)
		}
	}
	selfChanged := false
	switch {
	case ValidSite(site):
		n.state.Self.Site, n.state.Self.SiteClaim = site, claim
		selfChanged = true
	case !sameMesh:
		for _, pr := range p.Roster {
			// What was accepted of it, not what it says.
			r, ok := n.roster.get(pr.PublicKey)
			if ok && r.Site == n.state.Self.Site && !r.Left() {
				s, err := n.roster.freeSite(n.state.Self.Site, r.Site)
				if err != nil {
					n.mu.Unlock()
					return err
				}
				n.log.Warn("our site is taken in the mesh we join: moving to a free site (members need their new configuration)", "old_site", n.state.Self.Site, "new_site", s)
				n.state.Self.Site, n.state.Self.SiteClaim = s, now.UnixMilli()
				selfChanged = true
				break
			}
		}
	}
	if !sameMesh {
		// Bootures of the mesh we leave stay in the roster: when they
		// notice we are gone, they ask us (catch-up) and follow.
		n.state.Conflicts, n.noted = nil, nil
		n.retry = make(map[key.PublicKey]*retryState)
		selfChanged = true
	}
	if selfChanged {
		n.state.Self.Gen = nextGen(n.state.Self.Gen, now)
	}
	err := n.saveLocked()
	for _, r := range n.roster.all() {
		if !r.Left() && r.Gossip.IsValid() {
			seeds = append(seeds, r.Gossip)
		}
	}
	kr, ml := n.gossipKeyring, n.gossipList
	if sameMesh && kr != nil && !bytes.Equal(oldKey, p.Creds.Key) {
		n.rotateKeyLocked(oldKey, p.Creds.Key)
	}
	n.mu.Unlock()
	if err != nil {
		return err
	}
	if !sameMesh {
		if err := n.restartGossip(seeds); err != nil {
			return err
		}
	} else {
		if selfChanged && ml != nil {
			ml.UpdateNode(time.Second)
		}
		go n.joinAddrs(seeds)
	}
	n.changed()
	return nil
}
