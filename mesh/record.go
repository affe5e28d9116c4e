package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/booture/booture/internal/names"
	"github.com/booture/booture/key"
)

// Record is what the mesh knows about one booture. Every booture keeps a
// roster of Records for all bootures it has seen in its mesh, alive or not,
// and exchanges it with the others, so that a site stays reserved while its
// booture is away and a booture that comes back is found again.
type Record struct {
	Name      string        `json:"name"`
	PublicKey key.PublicKey `json:"key"`
	Site      int           `json:"site"`
	// SiteClaim orders two claims on one site (lower wins): when the site
	// was assigned, in Unix milliseconds.
	SiteClaim int64 `json:"claim"`
	// Endpoint is the WireGuard endpoint other bootures send to.
	Endpoint netip.AddrPort `json:"endpoint"`
	// Gossip is the booture's gossip address.
	Gossip  netip.AddrPort `json:"gossip"`
	Version string         `json:"version,omitempty"`
	// Gen is bumped (to at least the current Unix time in ms) by the owner
	// each time it changes its record; the highest Gen wins a merge.
	Gen int64 `json:"gen"`
	// LeftAt is set (Unix ms) when the booture left gracefully.
	LeftAt int64 `json:"left_at,omitempty"`
	// SeenAt is when a booture of the mesh last saw it alive (Unix ms).
	SeenAt int64 `json:"seen_at,omitempty"`
	// Catalog is the version of the booture's service catalog; the
	// catalog itself is fetched from the booture when it changes.
	Catalog int64 `json:"catalog,omitempty"`
	// Sig is the owner's signature of the fields it sets (see sign.go).
	// It is zero on an older daemon's record, and on the record an
	// inviter holds for a booture it admitted until that booture speaks.
	Sig Signature `json:"sig,omitzero"`
}

// Left reports whether the booture left the mesh after its last change.
func (r *Record) Left() bool { return r.LeftAt > r.Gen }

// Validate checks a record received from the network or read from disk.
func (r *Record) Validate() error {
	if err := names.Check(r.Name); err != nil {
		return err
	}
	if r.PublicKey.IsZero() {
		return errors.New("record without a public key")
	}
	if !ValidSite(r.Site) {
		return fmt.Errorf("record of %s: site %d out of range", r.Name, r.Site)
	}
	if r.Endpoint.IsValid() && r.Endpoint.Port() == 0 {
		return fmt.Errorf("record of %s: endpoint without a port", r.Name)
	}
	if len(r.Version) > 32 {
		return fmt.Errorf("record of %s: version string too long", r.Name)
	}
	if r.Gen < 0 || r.SiteClaim < 0 || r.Catalog < 0 || r.LeftAt < 0 || r.SeenAt < 0 {
		return fmt.Errorf("record of %s: negative time", r.Name)
	}
	return nil
}

// sameSigned reports whether a and b carry the same signed fields and
// signature: one already checked needs no second check.
func sameSigned(a, b *Record) bool {
	return a.Sig == b.Sig && a.Name == b.Name && a.PublicKey == b.PublicKey && a.Site == b.Site &&
		a.SiteClaim == b.SiteClaim && a.Endpoint == b.Endpoint && a.Gossip == b.Gossip &&
		a.Version == b.Version && a.Gen == b.Gen && a.Catalog == b.Catalog
}

// maxClockSkew is how far ahead of a booture's clock the times in a record
// it receives may be. Generations, site claims and catalog versions are
// timestamps (Unix ms) taken by their owner: one further ahead is refused,
// so that no record can take a generation near the maximum and win every
// later merge. Two minutes leave room for clocks that NTP keeps loosely in
// step; a booture whose clock is further behind ignores the others' newest
// records until its clock is right (and says so).
const maxClockSkew = 2 * time.Minute

// errFuture refuses a record from the future.
var errFuture = errors.New("dated in the future (its clock or ours is wrong)")

// checkTimes refuses a record whose owner's times are more than
// maxClockSkew ahead of now.
func checkTimes(r *Record, now time.Time) error {
	limit := now.Add(maxClockSkew).UnixMilli()
	switch {
	case r.Gen > limit:
		return fmt.Errorf("record of %s: generation %w", r.Name, errFuture)
	case r.SiteClaim > limit:
		return fmt.Errorf("record of %s: site claim %w", r.Name, errFuture)
	case r.Catalog > limit:
		return fmt.Errorf("record of %s: catalog version %w", r.Name, errFuture)
	}
	return nil
}

// metaLimit is memberlist's limit for node metadata.
const metaLimit = 512

// Versions of the node metadata encoding. Decoders accept any version >= 1
// and ignore fields they do not know, so that bootures of different daemon
// versions understand each other. Version 2 adds the owner's signature, and
// a version 2 record without one is refused; version 1 (older daemons) is
// unsigned, and what the mesh does with it is told at upsertLocked.
const (
	metaUnsigned = 1
	metaSigned   = 2
)

// nodeMeta is the small record each booture attaches to its gossip identity
// (memberlist node metadata). The name and gossip address come from
// memberlist itself.
type nodeMeta struct {
	V        int            `json:"v"`
	Key      key.PublicKey  `json:"k"`
	Site     int            `json:"s"`
	Claim    int64          `json:"c"`
	Endpoint netip.AddrPort `json:"e"`
	Version  string         `json:"ver,omitempty"`
	Gen      int64          `json:"g"`
	Catalog  int64          `json:"cv,omitempty"`
	Sig      Signature      `json:"sig,omitzero"`
}

// encodeMeta returns the node metadata of r: signed (version 2) if r
// carries a signature.
func encodeMeta(r *Record) ([]byte, error) {
	v := metaSigned
	if r.Sig.IsZero() {
		v = metaUnsigned
	}
	b, err := json.Marshal(nodeMeta{
		V: v, Key: r.PublicKey, Site: r.Site, Claim: r.SiteClaim,
		Endpoint: r.Endpoint, Version: r.Version, Gen: r.Gen, Catalog: r.Catalog, Sig: r.Sig,
	})
	if err != nil {
		return nil, err
	}
	if len(b) > metaLimit {
		return nil, fmt.Errorf("node metadata is %d bytes, over the limit of %d", len(b), metaLimit)
	}
	return b, nil
}

// decodeMeta parses node metadata received from the network into a Record
// for the named booture at the given gossip address, and checks its
// signature (the name and gossip address are signed too). It never panics
// and rejects anything malformed or signed by another key; an unsigned
// record (version 1) is returned with a zero Sig.
func decodeMeta(v *verifier, name string, gossip netip.AddrPort, b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, errors.New("empty node metadata")
	}
	if len(b) > metaLimit {
		return Record{}, fmt.Errorf("node metadata of %d bytes is over the limit", len(b))
	}
	var m nodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return Record{}, fmt.Errorf("decoding node metadata: %w", err)
	}
	if m.V < 1 {
		return Record{}, fmt.Errorf("node metadata version %d is not supported", m.V)
	}
	r := Record{
		Name: name, PublicKey: m.Key, Site: m.Site, SiteClaim: m.Claim,
		Endpoint: m.Endpoint, Gossip: gossip, Version: m.Version, Gen: m.Gen, Catalog: m.Catalog,
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	if m.V >= metaSigned {
		r.Sig = m.Sig
		if !v.verifyRecord(&r) {
			return Record{}, fmt.Errorf("record of %s: %w", name, errBadSignature)
		}
	}
	return r, nil
}

// errBadSignature refuses a record or catalog its owner did not sign.
var errBadSignature = errors.New("not signed by its owner's key")

// nextGen returns a generation greater than prev and at least now (it
// stays at the maximum rather than wrap around). Generations only grow: a
// record another booture holds must never beat its owner's next one.
func nextGen(prev int64, now time.Time) int64 {
	g := now.UnixMilli()
	if g <= prev {
		g = prev
		if g < math.MaxInt64 {
			g++
		}
	}
	return g
}
