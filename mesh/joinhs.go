package mesh

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"
	"golang.org/x/crypto/hkdf"
)

// The join handshake is the Noise protocol Noise_NNpsk0_25519_ChaChaPoly_SHA256
// (github.com/flynn/noise) with a key derived from the invitation's secret
// as pre-shared key:
//
//	joiner  -> inviter: token id | psk, e   (the join request)
//	inviter -> joiner:  e, ee               (then the answer, see below)
//
// The request is encrypted with the token alone: the inviter can tell at
// once whether the joiner holds it. Everything after it (the mesh's gossip
// key and roster, or the joiner's credentials in a merge) is encrypted with
// keys that also depend on both sides' ephemeral keys, forgotten once the
// join is over: someone who recorded the join and later learns the token
// (a used token found in a chat log) cannot read them. The version before
// (magicJoinV1) sealed everything with the token's key alone.
//
// Noise messages are at most 65535 bytes and a roster can be bigger: what
// follows the handshake is sent as a sequence of transport messages (see
// sealChunks).

var joinSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// joinPSK derives the handshake's pre-shared key from a token's secret.
func joinPSK(secret []byte) []byte {
	k := make([]byte, 32)
	r := hkdf.New(sha256.New, secret, nil, []byte("booture join v2 psk"))
	if _, err := io.ReadFull(r, k); err != nil {
		panic("hkdf: " + err.Error())
	}
	return k
}

// newJoinHandshake starts the joiner's (initiator) or the inviter's side of
// the handshake for the token id with secret. The id, sent in the clear
// before the first message, is bound to the handshake as its prologue.
func newJoinHandshake(initiator bool, id, secret []byte) (*noise.HandshakeState, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           joinSuite,
		Random:                rand.Reader,
		Pattern:               noise.HandshakeNN,
		Initiator:             initiator,
		Prologue:              append([]byte("booture join v2 "), id...),
		PresharedKey:          joinPSK(secret),
		PresharedKeyPlacement: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the join handshake: %w", err)
	}
	return hs, nil
}

// joinRequestFrame is the body of the joiner's first frame: the token's id
// then the first Noise message.
type joinRequestFrame struct {
	ID  []byte
	Msg []byte
}

// minNoiseMsg1 is the size of a first message with an empty payload: the
// ephemeral key and the payload's tag.
const minNoiseMsg1 = 32 + 16

func parseJoinRequestFrame(b []byte) (joinRequestFrame, error) {
	if len(b) < 16+minNoiseMsg1 {
		return joinRequestFrame{}, errors.New("join request too short")
	}
	return joinRequestFrame{ID: b[:16], Msg: b[16:]}, nil
}

// maxChunk is the plaintext of one transport message: a Noise message is at
// most 65535 bytes, tag included.
const maxChunk = noise.MaxMsgLen - 16

// sealChunks encrypts msg with cs as transport messages, each preceded by
// its length (2 bytes). The plaintext starts with msg's length (4 bytes):
// a sequence cut short is refused.
func sealChunks(cs *noise.CipherState, msg []byte) ([]byte, error) {
	plain := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(msg)), uint32(len(msg)))
	plain = append(plain, msg...)
	var out []byte
	for len(plain) > 0 {
		n := min(len(plain), maxChunk)
		ct, err := cs.Encrypt(nil, nil, plain[:n])
		if err != nil {
			return nil, fmt.Errorf("encrypting: %w", err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(ct)))
		out = append(out, ct...)
		plain = plain[n:]
	}
	return out, nil
}

var errChunks = errors.New("encrypted message failed authentication")

// openChunks reverses sealChunks.
func openChunks(cs *noise.CipherState, b []byte) ([]byte, error) {
	var plain []byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errChunks
		}
		n := int(binary.BigEndian.Uint16(b))
		if n < 16 || len(b) < 2+n {
			return nil, errChunks
		}
		p, err := cs.Decrypt(plain, nil, b[2:2+n])
		if err != nil {
			return nil, errChunks
		}
		plain = p
		b = b[2+n:]
	}
	if len(plain) < 4 || uint64(binary.BigEndian.Uint32(plain)) != uint64(len(plain)-4) {
		return nil, errChunks
	}
	return plain[4:], nil
}
