package mesh

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/hkdf"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// handshakeTimeout bounds a whole join or catch-up exchange.
const handshakeTimeout = 10 * time.Second

// maxFrame bounds a handshake frame (a roster of 254 bootures fits easily).
const maxFrame = 1 << 20

// Frame kinds of the join and catch-up handshakes.
const (
	frameError  = 'E' // plain text: a refusal, shown to the user
	framePlain  = 'P' // plain JSON, nothing secret
	frameSealed = 'S' // nonce(24) | NaCl secretbox or box
)

func writeFrame(w io.Writer, kind byte, body []byte) error {
	if len(body)+1 > maxFrame {
		return fmt.Errorf("handshake frame of %d bytes is too large", len(body))
	}
	hdr := binary.BigEndian.AppendUint32(nil, uint32(len(body)+1))
	hdr = append(hdr, kind)
	if _, err := w.Write(append(hdr, body...)); err != nil {
		return fmt.Errorf("sending handshake frame: %w", err)
	}
	return nil
}

func readFrame(r io.Reader) (kind byte, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("reading handshake frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return 0, nil, fmt.Errorf("handshake frame length %d out of range", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("reading handshake frame: %w", err)
	}
	return buf[0], buf[1:], nil
}

// tokenKey derives the symmetric key that protects a join handshake from an
// invitation's secret.
func tokenKey(secret []byte) *[32]byte {
	var k [32]byte
	r := hkdf.New(sha256.New, secret, nil, []byte("booture join v1"))
	if _, err := io.ReadFull(r, k[:]); err != nil {
		panic("hkdf: " + err.Error())
	}
	return &k
}

func newNonce() *[24]byte {
	var n [24]byte
	if _, err := rand.Read(n[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return &n
}

// sealSym encrypts and authenticates msg with a shared key.
func sealSym(key *[32]byte, msg []byte) []byte {
	n := newNonce()
	return secretbox.Seal(n[:], msg, n, key)
}

var errOpen = errors.New("message authentication failed")

// openSym reverses sealSym.
func openSym(key *[32]byte, b []byte) ([]byte, error) {
	if len(b) < 24+secretbox.Overhead {
		return nil, errOpen
	}
	var n [24]byte
	copy(n[:], b[:24])
	out, ok := secretbox.Open(nil, b[24:], &n, key)
	if !ok {
		return nil, errOpen
	}
	return out, nil
}

// sealTo encrypts msg so that only the holder of the private key of to can
// read it, and it can tell that the holder of from's private key wrote it.
func sealTo(to Key, from Key, msg []byte) []byte {
	n := newNonce()
	pub, priv := [32]byte(to), [32]byte(from)
	return box.Seal(n[:], msg, n, &pub, &priv)
}

// openFrom reverses sealTo: sender is the author's public key, priv our
// private key.
func openFrom(sender Key, priv Key, b []byte) ([]byte, error) {
	if len(b) < 24+box.Overhead {
		return nil, errOpen
	}
	var n [24]byte
	copy(n[:], b[:24])
	pub, pk := [32]byte(sender), [32]byte(priv)
	out, ok := box.Open(nil, b[24:], &n, &pub, &pk)
	if !ok {
		return nil, errOpen
	}
	return out, nil
}
