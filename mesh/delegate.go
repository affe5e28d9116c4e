package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/booture/booture/key"
	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist.Delegate: node metadata, user messages and
// the roster exchanged at push/pull.
type delegate Node

// events implements memberlist's EventDelegate, AliveDelegate and
// ConflictDelegate.
type events Node

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*events)(nil)
	_ memberlist.AliveDelegate    = (*events)(nil)
	_ memberlist.ConflictDelegate = (*events)(nil)
)

// User message types (first byte of a memberlist user message).
const (
	msgRekey byte = 1
)

func (d *delegate) NodeMeta(limit int) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	self := n.selfLocked()
	b, err := encodeMeta(&self)
	if err != nil || len(b) > limit {
		n.log.Error("node metadata does not fit", "bytes", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgRekey:
		// memberlist reuses the buffer; handle a copy outside its
		// goroutine, since handling may change the keyring.
		msg := append([]byte(nil), b[1:]...)
		go n.handleRekey(msg)
	case msgCatalogRequest:
		msg := append([]byte(nil), b[1:]...)
		go n.handleCatalogRequest(msg)
	case msgCatalog:
		msg := append([]byte(nil), b[1:]...)
		go n.handleCatalog(msg)
	case msgDigest:
		msg := append([]byte(nil), b[1:]...)
		go n.handleDigest(msg)
	default:
		n.log.Debug("ignoring unknown gossip message type", "type", b[0])
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// pushState is what bootures exchange at push/pull (anti-entropy): the
// records of bootures the sender does not see alive (alive ones travel as
// node metadata already) and the revocations.
type pushState struct {
	V       int          `json:"v"`
	Records []Record     `json:"records,omitempty"`
	Revoked []Revocation `json:"revoked,omitempty"`
}

// maxPushRecords bounds the records accepted from one push/pull.
const maxPushRecords = 4 * (MaxSite + 1)

func (d *delegate) LocalState(join bool) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := pushState{V: 1, Revoked: n.state.Revoked, Records: []Record{n.selfLocked()}}
	for k, r := range n.roster.all() {
		if !n.isLiveLocked(k) {
			ps.Records = append(ps.Records, r)
		}
	}
	b, err := json.Marshal(ps)
	if err != nil {
		n.log.Error("encoding gossip state", "err", err)
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	n := (*Node)(d)
	ps, err := decodePushState(buf)
	if err != nil {
		n.log.Warn("dropping malformed gossip state", "err", err)
		return
	}
	n.mu.Lock()
	changed := n.applyRevocationsLocked(ps.Revoked)
	for _, r := range ps.Records {
		if n.upsertLocked(r, false) {
			changed = true
		}
	}
	n.mu.Unlock()
	if changed {
		n.changed()
	}
}

// decodePushState parses push/pull state from another booture, dropping
// invalid records; it fails only when the whole buffer is unusable.
func decodePushState(buf []byte) (pushState, error) {
	var ps pushState
	if len(buf) == 0 {
		return ps, nil
	}
	if err := json.Unmarshal(buf, &ps); err != nil {
		return ps, fmt.Errorf("decoding gossip state: %w", err)
	}
	if ps.V < 1 {
		return ps, fmt.Errorf("gossip state version %d is not supported", ps.V)
	}
	if len(ps.Records) > maxPushRecords || len(ps.Revoked) > maxPushRecords {
		return ps, errors.New("gossip state too large")
	}
	valid := ps.Records[:0]
	for _, r := range ps.Records {
		if r.Validate() == nil {
			valid = append(valid, r)
		}
	}
	ps.Records = valid
	revs := ps.Revoked[:0]
	for _, rv := range ps.Revoked {
		if !rv.Key.IsZero() {
			revs = append(revs, rv)
		}
	}
	ps.Revoked = revs
	return ps, nil
}

// isLiveLocked reports whether gossip currently sees the booture with key k
// up.
func (n *Node) isLiveLocked(k key.PublicKey) bool {
	_, ok := n.liveKeys[k]
	return ok
}

// metaEntry is a booture's last decoded node record.
type metaEntry struct {
	gossip netip.AddrPort
	meta   string
	rec    Record
	err    error
}

// decodeMetaLocked is decodeMeta with a memory of the last record of each
// booture: gossip repeats the same alive messages many times.
func (n *Node) decodeMetaLocked(name string, gossip netip.AddrPort, b []byte) (Record, error) {
	if e, ok := n.metas[name]; ok && e.gossip == gossip && e.meta == string(b) {
		return e.rec, e.err
	}
	r, err := decodeMeta(&n.verifier, name, gossip, b)
	if n.metas == nil || len(n.metas) > 4*MaxSite {
		n.metas = make(map[string]metaEntry)
	}
	n.metas[name] = metaEntry{gossip, string(b), r, err}
	return r, err
}

// upsertLocked merges r, received from the network, into the roster. live
// says r comes from the booture's own metadata (it is alive now), which
// decodeMeta has checked. It reports whether something the network plan
// depends on changed.
//
// A record must be signed by the key it names (sign.go), with times no
// further ahead than maxClockSkew; of two records of one key, a signed one
// beats an unsigned one, then the higher generation wins. Unsigned records
// come from daemons older than signatures: they are taken, so that a mesh
// keeps working while its bootures upgrade one by one, but only for a key
// no signed record is held for. So once a booture has upgraded (and its
// signed record has reached this one), nobody can speak for it any more;
// until then, it is no worse off than before.
func (n *Node) upsertLocked(r Record, live bool) bool {
	if r.PublicKey == n.publicKey || n.revokedLocked(r.PublicKey) {
		return false
	}
	old, ok := n.roster.get(r.PublicKey)
	if err := n.vetLocked(&r, old, ok, live); err != nil {
		n.refusedLocked(r, err)
		return false
	}
	now := n.now().UnixMilli()
	// What others saw is not signed: it may not be from the future.
	r.SeenAt, r.LeftAt = min(r.SeenAt, now), min(r.LeftAt, now)
	if live {
		r.SeenAt = now
	}
	if ok {
		r.SeenAt = max(r.SeenAt, old.SeenAt)
		r.LeftAt = max(r.LeftAt, old.LeftAt)
		keepOld := old.Gen > r.Gen
		if old.Sig.IsZero() != r.Sig.IsZero() {
			keepOld = r.Sig.IsZero()
		}
		if keepOld {
			old.SeenAt, old.LeftAt = r.SeenAt, r.LeftAt
			r = old
		} else if r.Sig.IsZero() && !r.Gossip.IsValid() {
			r.Gossip = old.Gossip // a signed record is kept as signed
		}
	}
	n.roster.set(r)
	n.dirty = true
	if !ok {
		return true
	}
	return r.Site != old.Site || r.Endpoint != old.Endpoint || r.Gossip != old.Gossip ||
		r.Left() != old.Left() || r.Name != old.Name
}

// errUnsignedAfterSigned refuses an unsigned record of a booture whose
// signed record is held.
var errUnsignedAfterSigned = errors.New("unsigned, but its owner signs its records")

// errNameTaken refuses a record whose name another booture holds.
var errNameTaken = errors.New("its name is another booture's")

// vetLocked checks a record received from the network against the one held
// for its key (old, if had): see upsertLocked.
func (n *Node) vetLocked(r *Record, old Record, had, checked bool) error {
	if err := checkTimes(r, n.now()); err != nil {
		return err
	}
	// A name is a booture's as its key is (services and DNS names hang
	// on it): taken until its holder leaves or is expelled, as at a join
	// and in NotifyAlive. A booture signing a record of its own under
	// another's name is not speaking for itself either.
	if cur, ok := n.roster.byName(r.Name); ok && cur.PublicKey != r.PublicKey && !cur.Left() {
		return errNameTaken
	}
	switch {
	case r.Sig.IsZero():
		if had && !old.Sig.IsZero() {
			return errUnsignedAfterSigned
		}
	case checked, had && sameSigned(r, &old):
	case !n.verifier.verifyRecord(r):
		return fmt.Errorf("record of %s: %w", r.Name, errBadSignature)
	}
	return nil
}

// refusedLocked logs a refused record, once per key and reason: gossip
// brings the same record again and again. A record with a bad signature is
// a forgery (or a bug) and is logged as a warning; the others are not
// alarming (an inviter's unsigned record of a booture it admitted, a clock
// out of step).
func (n *Node) refusedLocked(r Record, err error) {
	if !n.firstLocked(r.PublicKey, err.Error()) {
		return
	}
	switch {
	case errors.Is(err, errBadSignature):
		n.log.Warn("refusing a record not signed by the booture it names (a forgery, or a bug)", "peer", r.Name, "key", r.PublicKey.String())
	case errors.Is(err, errNameTaken):
		n.log.Warn("refusing a record under the name of another booture", "peer", r.Name, "key", r.PublicKey.String())
	case errors.Is(err, errFuture):
		n.log.Warn("refusing a record from the future: check that both bootures' clocks are right", "peer", r.Name, "err", err)
	default:
		n.log.Debug("refusing a record", "peer", r.Name, "err", err)
	}
}

// firstLocked reports whether what is said of the booture with key pub is
// said for the first time (since start, or since the memory of it was last
// cleared).
func (n *Node) firstLocked(pub key.PublicKey, what string) bool {
	if n.said == nil || len(n.said) > 4*MaxSite {
		n.said = make(map[said]bool)
	}
	k := said{pub, what}
	if n.said[k] {
		return false
	}
	n.said[k] = true
	return true
}

// said is something logged once about a booture.
type said struct {
	key  key.PublicKey
	what string
}

func (n *Node) revokedLocked(k key.PublicKey) bool {
	for _, rv := range n.state.Revoked {
		if rv.Key == k {
			return true
		}
	}
	return false
}

// applyRevocationsLocked adds revocations and forgets the bootures they
// name. It reports whether anything changed.
func (n *Node) applyRevocationsLocked(revs []Revocation) bool {
	changed := false
	for _, rv := range revs {
		if n.revokedLocked(rv.Key) {
			continue
		}
		n.state.Revoked = append(n.state.Revoked, rv)
		changed = true
		if rv.Key == n.publicKey {
			n.state.Expelled = true
			n.log.Error("this booture was expelled from the mesh", "by", rv.By)
			continue
		}
		if n.roster.remove(rv.Key) {
			delete(n.liveKeys, rv.Key)
			n.log.Warn("booture expelled from the mesh", "peer", rv.Name, "by", rv.By)
		}
	}
	if changed {
		if err := n.saveLocked(); err != nil {
			n.log.Error("saving mesh state", "err", err)
		}
	}
	return changed
}

func nodeGossipAddr(m *memberlist.Node) netip.AddrPort {
	a, ok := netip.AddrFromSlice(m.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), m.Port)
}

func (e *events) NotifyJoin(m *memberlist.Node) { e.notifyLive(m) }

func (e *events) NotifyUpdate(m *memberlist.Node) { e.notifyLive(m) }

func (e *events) notifyLive(m *memberlist.Node) {
	n := (*Node)(e)
	if m.Name == n.cfg.Name {
		return
	}
	n.mu.Lock()
	r, err := n.decodeMetaLocked(m.Name, nodeGossipAddr(m), m.Meta)
	if err != nil {
		n.mu.Unlock()
		n.log.Warn("ignoring booture with malformed record", "peer", m.Name, "err", err)
		return
	}
	changed := n.upsertLocked(r, true)
	if _, ok := n.roster.get(r.PublicKey); !ok {
		n.mu.Unlock() // refused (and logged)
		return
	}
	if r.Sig.IsZero() && n.firstLocked(r.PublicKey, "unsigned") {
		n.log.Warn("booture runs a daemon too old to sign its record: accepted until it upgrades, but others could speak for it meanwhile",
			"peer", m.Name, "version", r.Version)
	}
	wasLive := n.isLiveLocked(r.PublicKey)
	if !wasLive {
		n.liveKeys[r.PublicKey] = n.now()
	}
	held, _ := n.roster.get(r.PublicKey)
	wantCatalog := n.catalogWantedLocked(held)
	n.mu.Unlock()
	if wantCatalog {
		go n.requestCatalogs()
	}
	if !wasLive {
		n.log.Info("booture is up", "peer", m.Name, "site", r.Site, "endpoint", r.Endpoint.String())
	}
	if changed || !wasLive {
		n.changed()
	}
}

func (e *events) NotifyLeave(m *memberlist.Node) {
	n := (*Node)(e)
	if m.Name == n.cfg.Name {
		return
	}
	// Whether it left or died is read from memberlist's table later
	// (refreshStates): m.State is not maintained by memberlist.
	n.mu.Lock()
	if r, ok := n.roster.byName(m.Name); ok {
		delete(n.liveKeys, r.PublicKey)
	}
	n.mu.Unlock()
	n.changed()
}

// NotifyAlive vets a booture before gossip accepts it: its record must be
// well-formed and its key not revoked.
func (e *events) NotifyAlive(m *memberlist.Node) error {
	n := (*Node)(e)
	if m.Name == n.cfg.Name {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r, err := n.decodeMetaLocked(m.Name, nodeGossipAddr(m), m.Meta)
	if err != nil {
		if errors.Is(err, errBadSignature) && n.firstLocked(key.PublicKey{}, "forged metadata of "+m.Name) {
			n.log.Warn("refusing a record not signed by the booture it names (a forgery, or a bug)",
				"peer", m.Name, "address", nodeGossipAddr(m).String())
		}
		return fmt.Errorf("booture %s: %w", m.Name, err)
	}
	if r.PublicKey == n.publicKey {
		return fmt.Errorf("booture %s uses our own public key", m.Name)
	}
	if n.revokedLocked(r.PublicKey) {
		return fmt.Errorf("booture %s was expelled", m.Name)
	}
	old, had := n.roster.get(r.PublicKey)
	if err := n.vetLocked(&r, old, had, true); err != nil {
		n.refusedLocked(r, err)
		return fmt.Errorf("booture %s: %w", m.Name, err)
	}
	if old, ok := n.roster.byName(m.Name); ok && old.PublicKey != r.PublicKey && !old.Left() {
		return fmt.Errorf("booture %s presents another key than the one the mesh knows", m.Name)
	}
	return nil
}

func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	n := (*Node)(e)
	n.log.Warn("two bootures claim the same name", "name", existing.Name,
		"address", nodeGossipAddr(existing).String(), "other_address", nodeGossipAddr(other).String())
}
