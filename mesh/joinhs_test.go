package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/key"
	"github.com/flynn/noise"
	"golang.org/x/crypto/hkdf"
	"golang.org/x/crypto/nacl/secretbox"
)

// joinAnswerOnly sends n's join request with tok and returns the inviter's
// answer without acting on it (an answer lost on the way back).
func joinAnswerOnly(t *testing.T, n *testNode, tok Token) joinReply {
	t.Helper()
	conn, err := n.transport().dialHandshake(tok.Inviter[0].String(), magicJoin, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hs, err := newJoinHandshake(true, tok.ID[:], tok.Secret[:])
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	body, _ := json.Marshal(joinRequest{Self: n.state.Self, Summary: n.summaryLocked()})
	n.mu.Unlock()
	msg1, _, _, err := hs.WriteMessage(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(conn, frameNoise, append(tok.ID[:], msg1...)); err != nil {
		t.Fatal(err)
	}
	kind, msg2, err := readFrame(conn, maxFrame)
	if err != nil || kind != frameNoise {
		t.Fatalf("first answer: kind %q, err %v", kind, err)
	}
	_, _, recv, err := hs.ReadMessage(nil, msg2)
	if err != nil {
		t.Fatal(err)
	}
	kind, sealed, err := readFrame(conn, maxFrame)
	if err != nil || kind != frameTransport {
		t.Fatalf("answer: kind %q, err %v", kind, err)
	}
	plain, err := openChunks(recv, sealed)
	var rep joinReply
	if err != nil || json.Unmarshal(plain, &rep) != nil {
		t.Fatalf("answer: %s, err %v", plain, err)
	}
	return rep
}

// recorder relays TCP streams to a target and keeps what went each way.
type recorder struct {
	ln       net.Listener
	mu       sync.Mutex
	toTarget []byte
	fromIt   []byte
	wg       sync.WaitGroup
}

func newRecorder(t *testing.T, target string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			copyRec := func(dst, src net.Conn, rec *[]byte) {
				buf := make([]byte, 4096)
				for {
					k, err := src.Read(buf)
					if k > 0 {
						r.mu.Lock()
						*rec = append(*rec, buf[:k]...)
						r.mu.Unlock()
						dst.Write(buf[:k])
					}
					if err != nil {
						dst.Close()
						return
					}
				}
			}
			r.wg.Go(func() { copyRec(up, c, &r.toTarget) })
			r.wg.Go(func() { copyRec(c, up, &r.fromIt) })
		}
	})
	return r
}

// splitFrames cuts a recorded stream into handshake frames (after the
// 4-byte magic for the joiner's side).
func splitFrames(b []byte) (frames [][]byte) {
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint32(b))
		if n == 0 || len(b) < 4+n {
			break
		}
		frames = append(frames, b[4:4+n])
		b = b[4+n:]
	}
	return frames
}

// openWithToken is everything someone who recorded a join and later got
// the token can decrypt of it: each frame tried with the earlier scheme
// (NaCl secretbox under a key derived from the token), and the Noise
// handshake replayed with the token as pre-shared key.
func openWithToken(t *testing.T, tok Token, joinerSide, inviterSide [][]byte) (opened [][]byte, replyOpened bool) {
	var v1 [32]byte
	io.ReadFull(hkdf.New(sha256.New, tok.Secret[:], nil, []byte("booture join v1")), v1[:])
	for _, f := range append(append([][]byte(nil), joinerSide...), inviterSide...) {
		for _, body := range [][]byte{f[1:], f[min(len(f), 17):]} { // with or without the token id
			if len(body) < 24 {
				continue
			}
			var nonce [24]byte
			copy(nonce[:], body[:24])
			if p, ok := secretbox.Open(nil, body[24:], &nonce, &v1); ok {
				opened = append(opened, p)
				if f[0] != 'N' && bytes.Equal(f, inviterSide[0]) {
					replyOpened = true
				}
			}
		}
	}
	if len(joinerSide) == 0 || len(inviterSide) < 2 || joinerSide[0][0] != frameNoise {
		return opened, replyOpened
	}
	msg1 := joinerSide[0][1+16:]
	// As the inviter: the request opens with the token alone.
	resp, err := newJoinHandshake(false, tok.ID[:], tok.Secret[:])
	if err != nil {
		t.Fatal(err)
	}
	if p, _, _, err := resp.ReadMessage(nil, msg1); err == nil {
		opened = append(opened, p)
	}
	// As the joiner: without the joiner's ephemeral key, only a fresh
	// one, the answer does not open.
	init, _ := newJoinHandshake(true, tok.ID[:], tok.Secret[:])
	init.WriteMessage(nil, nil)
	if _, _, recv, err := init.ReadMessage(nil, inviterSide[0][1:]); err == nil {
		if p, err := openChunks(recv, inviterSide[1][1:]); err == nil {
			opened = append(opened, p)
			replyOpened = true
		}
	}
	return opened, replyOpened
}

// TestJoinForwardSecrecy records a join, then plays someone who gets the
// (used) token afterwards: the gossip key and the roster the inviter sent
// must stay out of reach. Before, the token decrypted the whole join.
func TestJoinForwardSecrecy(t *testing.T) {
	a := startTestNode(t, "a", "", key.PrivateKey{})
	b := startTestNode(t, "b", "", key.PrivateKey{})
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(inv.Token)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, tok.Inviter[0].String())
	relayed := tok
	relayed.Inviter = []netip.AddrPort{netip.MustParseAddrPort(rec.ln.Addr().String())}
	if _, err := b.Join(context.Background(), relayed.Encode()); err != nil {
		t.Fatal(err)
	}
	key := currentCreds(a).Key
	if !bytes.Equal(currentCreds(b).Key, key) {
		t.Fatal("the joiner did not get the mesh's key")
	}
	rec.mu.Lock()
	toInviter, fromInviter := bytes.Clone(rec.toTarget), bytes.Clone(rec.fromIt)
	rec.mu.Unlock()
	joinerSide, inviterSide := splitFrames(toInviter[4:]), splitFrames(fromInviter)
	if len(joinerSide) == 0 || len(inviterSide) == 0 {
		t.Fatalf("recorded %d and %d frames", len(joinerSide), len(inviterSide))
	}
	opened, replyOpened := openWithToken(t, tok, joinerSide, inviterSide)
	secret := []byte(base64.StdEncoding.EncodeToString(key))
	aKey := []byte(a.PublicKey().String())
	for _, p := range opened {
		if bytes.Contains(p, secret) || bytes.Contains(p, aKey) {
			t.Fatalf("the token alone opened the inviter's answer: the gossip key or the roster is in %.80q...", p)
		}
	}
	if replyOpened {
		t.Fatal("the token alone opened the inviter's answer")
	}
	t.Logf("the token opened %d of %d recorded frames (the join request only)", len(opened), len(joinerSide)+len(inviterSide))
}

// TestJoinFromOlderBooture: a booture of the earlier handshake asking to
// join is told to upgrade, and its token stays usable.
func TestJoinFromOlderBooture(t *testing.T) {
	a := startTestNode(t, "a", "", key.PrivateKey{})
	b := startTestNode(t, "b", "", key.PrivateKey{})
	inv, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := ParseToken(inv.Token)
	conn, err := b.transport().dialHandshake(tok.Inviter[0].String(), magicJoinV1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writeFrame(conn, frameSealed, append(tok.ID[:], randomBytes(200)...))
	kind, body, err := readFrame(conn, maxFrame)
	conn.Close()
	if err != nil || kind != frameError || !strings.HasPrefix(string(body), "upgrade: ") {
		t.Fatalf("older booture's join: answer %q %q, %v; want an upgrade refusal", kind, body, err)
	}
	t.Logf("an older booture is told: %v", parseRefusal(body))
	if _, err := b.Join(context.Background(), inv.Token); err != nil {
		t.Fatalf("the token after an older booture's attempt: %v", err)
	}
}

// TestJoinToOlderInviter: an inviter of the earlier handshake passes the
// join to gossip, which answers with an encrypted gossip message; the
// joiner says the inviter must be upgraded, without retrying.
func TestJoinToOlderInviter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan int, 8)
	go func() {
		for i := 1; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- i
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.ReadFull(c, make([]byte, 8))
			// memberlist's error answer: encryptMsg, then its length.
			c.Write(append([]byte{gossipStreamStart, 0, 0, 0, 60}, randomBytes(60)...))
			c.Close()
		}
	}()
	b := startTestNode(t, "b", "", key.PrivateKey{})
	tok := Token{Expires: time.Now().Add(time.Hour), Inviter: []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}}
	rand.Read(tok.Secret[:])
	_, err = b.Join(context.Background(), tok.Encode())
	if !errors.Is(err, errOldInviter) {
		t.Fatalf("joining an older inviter: %v; want errOldInviter", err)
	}
	if len(accepted) != 1 {
		t.Errorf("joining an older inviter was tried %d times; want once", len(accepted))
	}
	t.Logf("the joiner is told: %v", err)
}

func TestRevokeInvitation(t *testing.T) {
	a := startTestNode(t, "a", "", key.PrivateKey{})
	b := startTestNode(t, "b", "", key.PrivateKey{})
	first, err := a.Invite(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.Invite(2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	list := a.Invitations()
	if len(list) != 2 || list[0].ID != first.ID || list[1].ID != second.ID || !list[1].Expires.Equal(second.Expires) {
		t.Fatalf("pending invitations %+v; want %s and %s", list, first.ID, second.ID)
	}
	if _, err := a.RevokeInvitation(first.ID[:minIDPrefix]); err != nil {
		t.Fatalf("revoking by id prefix: %v", err)
	}
	if list := a.Invitations(); len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("pending after a revocation: %+v", list)
	}
	_, err = b.Join(context.Background(), first.Token)
	if !errors.Is(err, ErrTokenRevoked) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("joining with a revoked token: %v; want ErrTokenRevoked", err)
	}
	if _, err := a.RevokeInvitation(second.Token); err != nil {
		t.Fatalf("revoking by token: %v", err)
	}
	if _, err := b.Join(context.Background(), second.Token); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("joining with the second revoked token: %v", err)
	}
	third, _ := a.Invite(time.Hour)
	if _, err := b.Join(context.Background(), third.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeInvitation(third.ID); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("revoking a used invitation: %v", err)
	}
	for _, bad := range []string{"0123456789abcdef0123", "abc", ""} {
		if _, err := a.RevokeInvitation(bad); err == nil {
			t.Errorf("revoking %q: no error", bad)
		}
	}
	// The state keeps no secret in what Invitations returns.
	out, _ := json.Marshal(a.Invitations())
	tok, _ := ParseToken(third.Token)
	if bytes.Contains(out, []byte(base64.StdEncoding.EncodeToString(tok.Secret[:]))) {
		t.Error("Invitations shows a secret")
	}
}

func TestChunks(t *testing.T) {
	for _, size := range []int{0, 1, maxChunk - 4, maxChunk - 3, 3*maxChunk + 7} {
		msg := randomBytes(size)
		send, recv := chunkStates()
		sealed, err := sealChunks(send, msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := openChunks(recv, sealed)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: round trip failed: %v", size, err)
		}
		if size > maxChunk {
			// Cut after the first chunk: refused.
			_, recv := chunkStates()
			first := 2 + int(binary.BigEndian.Uint16(sealed))
			if _, err := openChunks(recv, sealed[:first]); err == nil {
				t.Fatalf("%d bytes cut to one chunk: accepted", size)
			}
		}
	}
}

// chunkStates returns two cipher states with one key, one to encrypt and
// one to decrypt.
func chunkStates() (*noise.CipherState, *noise.CipherState) {
	var k [32]byte
	return noise.UnsafeNewCipherState(joinSuite, k, 0), noise.UnsafeNewCipherState(joinSuite, k, 0)
}

func FuzzOpenChunks(f *testing.F) {
	send, _ := chunkStates()
	good, _ := sealChunks(send, []byte(`{"outcome":"accept"}`))
	f.Add(good)
	f.Add([]byte{0, 16})
	f.Add([]byte{0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, recv := chunkStates()
		p, err := openChunks(recv, b)
		if err != nil {
			return
		}
		send, _ := chunkStates()
		again, err := sealChunks(send, p)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which is not what sealing %q gives", b, p)
		}
	})
}

func FuzzParseJoinRequestFrame(f *testing.F) {
	f.Add(make([]byte, 16+minNoiseMsg1))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseJoinRequestFrame(b)
		if err != nil {
			return
		}
		if len(r.ID) != 16 || len(r.Msg) < minNoiseMsg1 || !bytes.Equal(append(bytes.Clone(r.ID), r.Msg...), b) {
			t.Fatalf("parsed %x as %+v", b, r)
		}
	})
}
