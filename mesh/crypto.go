package mesh

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/booture/booture/key"
	"golang.org/x/crypto/nacl/box"
)

// handshakeTimeout bounds a whole join or catch-up exchange.
const handshakeTimeout = 10 * time.Second

// maxFrame bounds a handshake frame (a roster of 254 bootures fits easily).
const maxFrame = 1 << 20

// maxFirstFrame bounds the first frame a booture reads from a handshake it
// serves, before anything authenticates the peer: a join or catch-up
// request is a record and a summary, well under 1 KiB.
const maxFirstFrame = 4 << 10

// Frame kinds of the join and catch-up handshakes.
const (
	frameError  = 'E' // plain text: a refusal, shown to the user
	framePlain  = 'P' // plain JSON, nothing secret
	frameSealed = 'S' // nonce(24) | NaCl box
	// The join handshake's frames (joinhs.go): a Noise handshake message
	// (the first preceded by the token's id), and transport messages.
	frameNoise     = 'N'
	frameTransport = 'T'
)

// errFrameLength is a frame whose declared length is out of range.
var errFrameLength = errors.New("handshake frame length out of range")

// errOldInviter is a join answered as a gossip stream: the inviter runs a
// booture from before the current join handshake (magicJoin).
var errOldInviter = errors.New("the inviter runs an older booture that does not know this join handshake: upgrade booture there, then join again")

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

// readFrame reads a frame of at most limit bytes (kind included).
func readFrame(r io.Reader, limit int) (kind byte, body []byte, err error) {
	n, err := readFrameLen(r, limit)
	if err != nil {
		return 0, nil, err
	}
	return readFrameBody(r, n)
}

// readFrameReserved reads a frame of up to maxFrame bytes from a peer
// being served, whose size is first reserved from g's frame budget
// (waiting until ctx ends): what peers can make a booture hold at once
// stays bounded. release gives the reservation back once the body is no
// longer used.
func readFrameReserved(ctx context.Context, conn net.Conn, g *inboundGuard) (kind byte, body []byte, release func(), err error) {
	n, err := readFrameLen(conn, maxFrame)
	if err != nil {
		return 0, nil, nil, err
	}
	release, err = g.reserve(ctx, &g.frameBytes, conn.RemoteAddr(), int64(n), "handshake bytes")
	if err != nil {
		return 0, nil, nil, fmt.Errorf("waiting to read a handshake frame of %d bytes: %w", n, err)
	}
	kind, body, err = readFrameBody(conn, n)
	if err != nil {
		release()
		return 0, nil, nil, err
	}
	return kind, body, release, nil
}

func readFrameLen(r io.Reader, limit int) (uint32, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("reading handshake frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(limit) {
		return 0, fmt.Errorf("%w: %d (at most %d)", errFrameLength, n, limit)
	}
	return n, nil
}

func readFrameBody(r io.Reader, n uint32) (kind byte, body []byte, err error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("reading handshake frame: %w", err)
	}
	return buf[0], buf[1:], nil
}

func newNonce() *[24]byte {
	var n [24]byte
	if _, err := rand.Read(n[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return &n
}

var errOpen = errors.New("message authentication failed")

// sealTo encrypts msg so that only the holder of the private key of to can
// read it, and it can tell that the holder of from's private key wrote it.
func sealTo(to key.PublicKey, from key.PrivateKey, msg []byte) []byte {
	n := newNonce()
	pub, priv := to.Raw32(), from.RevealRaw32()
	return box.Seal(n[:], msg, n, &pub, &priv)
}

// openFrom reverses sealTo: sender is the author's public key, priv our
// private key.
func openFrom(sender key.PublicKey, priv key.PrivateKey, b []byte) ([]byte, error) {
	if len(b) < 24+box.Overhead {
		return nil, errOpen
	}
	var n [24]byte
	copy(n[:], b[:24])
	pub, pk := sender.Raw32(), priv.RevealRaw32()
	out, ok := box.Open(nil, b[24:], &n, &pub, &pk)
	if !ok {
		return nil, errOpen
	}
	return out, nil
}
