package mesh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/booture/booture/key"
	"go.step.sm/crypto/x25519"
)

// Every booture holds the mesh's gossip key, so gossip alone cannot tell
// who wrote a record or a catalog: a booture could pass off a record of
// another with its own endpoint, or a catalog of another with a service
// pointing elsewhere. So each booture signs its own record and catalog, and
// the others accept only what the owner of the key signed: a booture can
// speak only for itself.
//
// Why XEdDSA, with the WireGuard key itself. A booture's identity is its
// WireGuard Curve25519 key, and Curve25519 keys are for key agreement, not
// signatures. The ways out considered:
//
//   - A separate Ed25519 key per booture, its public half carried in the
//     record. Then something must bind it to the WireGuard key, or a rogue
//     booture publishes the victim's WireGuard key with its own signing key.
//     A certificate from the inviter makes every booture a certificate
//     authority for every other (a rogue inviter certifies a false binding);
//     a proof made with the WireGuard key by key agreement (a NaCl box)
//     convinces only the one booture it is sealed to, not the mesh; trusting
//     the first binding seen leaves a race to whoever speaks first. And the
//     key costs 44 of the 512 bytes memberlist allows a record.
//   - XEdDSA (Signal's, specified with X3DH and used by it for a decade):
//     the Curve25519 private key signs, and the signature verifies with the
//     Curve25519 public key, converted to its Edwards form. Nothing to bind,
//     nothing to certify, nothing added to the record but the signature; no
//     booture and no inviter is trusted for anyone else's key.
//
// We take XEdDSA, from go.step.sm/crypto/x25519 (Smallstep's maintained
// crypto library, over filippo.io/edwards25519). Using one key both for
// WireGuard's key agreement and for signatures is what XEdDSA was designed
// for; the messages signed here start with a domain string, so a signature
// of one kind never passes for another.

// Signature is a booture's XEdDSA signature of its record or catalog.
type Signature [x25519.SignatureSize]byte

// IsZero reports whether s is unset (an unsigned record: an older daemon's,
// or one an inviter holds for a booture that has not spoken yet).
func (s Signature) IsZero() bool { return s == Signature{} }

// MarshalText encodes the signature in unpadded base64.
func (s Signature) MarshalText() ([]byte, error) {
	return base64.RawStdEncoding.AppendEncode(nil, s[:]), nil
}

// UnmarshalText decodes an unpadded base64 signature.
func (s *Signature) UnmarshalText(b []byte) error {
	var v Signature
	if base64.RawStdEncoding.DecodedLen(len(b)) != len(v) {
		return errors.New("signature: want 86 base64 characters")
	}
	if _, err := base64.RawStdEncoding.Decode(v[:], b); err != nil {
		return errors.New("signature: not base64")
	}
	*s = v
	return nil
}

// Domain strings of what is signed.
const (
	recordDomain  = "booture record v2\x00"
	catalogDomain = "booture catalog v2\x00"
)

// recordMessage is what a booture signs of its record: every field it sets
// itself, gossip address included (so that its record cannot be replayed
// from another address). SeenAt and LeftAt are what others saw, and are not
// signed. A later format that signs more fields must change the domain.
func recordMessage(r *Record) []byte {
	b := make([]byte, 0, 128+len(r.Name)+len(r.Version))
	b = append(b, recordDomain...)
	b = appendString(b, r.Name)
	pub := r.PublicKey.Raw32()
	b = append(b, pub[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Site))
	b = binary.BigEndian.AppendUint64(b, uint64(r.SiteClaim))
	b = appendAddrPort(b, r.Endpoint)
	b = appendAddrPort(b, r.Gossip)
	b = appendString(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Gen))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Catalog))
	return b
}

// catalogMessage is what a booture signs of its catalog: the exact bytes of
// its services as sent, so that a newer daemon's extra fields are signed
// too and an older one can still check them.
func catalogMessage(from string, pub key.PublicKey, version int64, services []byte) []byte {
	b := make([]byte, 0, 64+len(from)+len(services))
	b = append(b, catalogDomain...)
	b = appendString(b, from)
	raw := pub.Raw32()
	b = append(b, raw[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(version))
	return appendString(b, string(services))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if a.IsValid() {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	v, _ := a.MarshalBinary() // never fails
	b = append(b, byte(len(v)))
	return append(b, v...)
}

// sign signs msg with a booture's private key, and counts it in count if
// not nil.
func sign(priv key.PrivateKey, msg []byte, count *atomic.Int64) Signature {
	if count != nil {
		count.Add(1)
	}
	raw := priv.RevealRaw32()
	s, err := x25519.Sign(rand.Reader, x25519.PrivateKey(raw[:]), msg)
	if err != nil {
		panic("signing: " + err.Error()) // only crypto/rand failing
	}
	return Signature(s)
}

// verifier checks signatures. It keeps each key's Edwards form (the
// conversion costs a field inversion) and counts the signatures it checked
// (for the scale benchmark).
type verifier struct {
	mu     sync.Mutex
	keys   map[key.PublicKey]ed25519.PublicKey
	checks atomic.Int64
}

// maxVerifierKeys bounds the converted keys kept: a mesh has at most 254
// bootures, but anyone can present keys.
const maxVerifierKeys = 4 * (MaxSite + 1)

// verify reports whether sig is pub's signature of msg.
func (v *verifier) verify(pub key.PublicKey, msg []byte, sig Signature) bool {
	v.checks.Add(1)
	v.mu.Lock()
	ed, ok := v.keys[pub]
	v.mu.Unlock()
	if !ok {
		raw := pub.Raw32()
		b, err := x25519.PublicKey(raw[:]).ToEd25519()
		if err != nil {
			return false
		}
		ed = b
		v.mu.Lock()
		if v.keys == nil || len(v.keys) >= maxVerifierKeys {
			v.keys = make(map[key.PublicKey]ed25519.PublicKey)
		}
		v.keys[pub] = ed
		v.mu.Unlock()
	}
	return ed25519.Verify(ed, msg, sig[:])
}

// verifyRecord reports whether r carries its owner's signature.
func (v *verifier) verifyRecord(r *Record) bool {
	return !r.Sig.IsZero() && v.verify(r.PublicKey, recordMessage(r), r.Sig)
}
