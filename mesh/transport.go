package mesh

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// The gossip port carries memberlist's own traffic and, on the same TCP
// listener, booture's two handshakes: joining with an invitation and catching
// up with the mesh's current credentials. A handshake stream starts with a
// 4-byte magic that can never start a memberlist stream (memberlist's first
// byte is a small message type or its label marker). magicJoinV1 is the
// join of older bootures, only answered with a refusal that says to
// upgrade (see joinhs.go).
var (
	magicJoin    = []byte("BTJ2")
	magicJoinV1  = []byte("BTJ1")
	magicCatchUp = []byte("BTC1")
)

func isHandshakeMagic(b []byte) bool {
	return bytes.Equal(b, magicJoin) || bytes.Equal(b, magicCatchUp) || bytes.Equal(b, magicJoinV1)
}

// streamHandler handles a handshake stream; it owns conn.
type streamHandler func(conn net.Conn, magic []byte)

// gossipTransport is memberlist's transport for a booture: UDP and TCP on
// the gossip port. It counts gossip bytes in both directions and diverts
// handshake streams to booture's handlers.
//
// It replaces memberlist's NetTransport, which reads every UDP packet into
// a fresh 64 KiB buffer: at rest that was 40 % of the daemon's
// allocations, each one zeroed and so made resident. Here one buffer is
// reused and each packet is copied out at its size.
type gossipTransport struct {
	log      *slog.Logger
	handle   streamHandler
	udp      *net.UDPConn
	tcp      *net.TCPListener
	port     int
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once

	counters *ByteCounters
	guard    *inboundGuard
}

// ByteCounters counts gossip traffic; they survive gossip restarts.
type ByteCounters struct {
	In, Out atomic.Uint64
}

const (
	// maxPacketSize is the largest UDP datagram.
	maxPacketSize = 65535
	// udpReadBuffer is the socket receive buffer asked for (halved until
	// the kernel accepts it), as memberlist does: gossip comes in bursts.
	udpReadBuffer = 2 << 20
)

// listenGossip opens the gossip port on bind (invalid means every IPv4
// address) and port (0 means any port free for both TCP and UDP). guard
// bounds inbound streams (nil: the default limits).
func listenGossip(bind netip.Addr, port int, handle streamHandler, counters *ByteCounters, guard *inboundGuard, log *slog.Logger) (*gossipTransport, error) {
	if guard == nil {
		guard = newInboundGuard(defaultInboundLimits(), log)
	}
	ip := netip.IPv4Unspecified()
	if bind.IsValid() {
		ip = bind
	}
	t := &gossipTransport{
		log:      log,
		handle:   handle,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
		counters: counters,
		guard:    guard,
	}
	var err error
	// With port 0 the TCP port the kernel picks may be taken for UDP:
	// try another.
	for try := 0; ; try++ {
		t.tcp, t.udp, err = listenBoth(ip, port)
		if err == nil || port != 0 || try == 10 {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening gossip port %s: %w", netip.AddrPortFrom(ip, uint16(port)), err)
	}
	t.port = t.tcp.Addr().(*net.TCPAddr).Port
	for size := udpReadBuffer; size > 0; size /= 2 {
		if t.udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

func listenBoth(ip netip.Addr, port int) (*net.TCPListener, *net.UDPConn, error) {
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return nil, nil, err
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		tcp.Close()
		return nil, nil, err
	}
	return tcp, udp, nil
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *gossipTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

// FinalAdvertiseAddr returns the address the node advertises: the one
// configured, else the bound one.
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		a := t.tcp.Addr().(*net.TCPAddr)
		if a.IP.IsUnspecified() {
			return nil, 0, fmt.Errorf("gossip is bound to every address: an advertise address is needed")
		}
		return a.IP, t.port, nil
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, 0, fmt.Errorf("advertise address: %w", err)
	}
	if port == 0 {
		port = t.port
	}
	return net.IP(addr.Unmap().AsSlice()), port, nil
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		// Not IP:port: a host name (a join address given by hand).
		ua, rerr := net.ResolveUDPAddr("udp", a.Addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		to = ua.AddrPort()
	}
	t.counters.Out.Add(uint64(len(b)))
	_, err = t.udp.WriteToUDPAddrPort(b, to)
	return time.Now(), err
}

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", a.Addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, counters: t.counters}, nil
}

// dialHandshake opens a handshake stream to addr and writes its magic.
func (t *gossipTransport) dialHandshake(addr string, magic []byte, timeout time.Duration) (net.Conn, error) {
	c, err := t.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := c.Write(magic); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Shutdown closes the gossip port and waits for the transport's
// goroutines (not for handshakes, which may restart gossip themselves).
func (t *gossipTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.tcp.Close()
		t.udp.Close()
	})
	t.wg.Wait()
	return nil
}

func (t *gossipTransport) closing() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// readPackets hands each UDP packet to memberlist in a buffer of its own
// size.
func (t *gossipTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacketSize)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			if t.closing() {
				return
			}
			t.log.Debug("reading a gossip packet", "err", err)
			continue
		}
		if n == 0 {
			continue
		}
		t.counters.In.Add(uint64(n))
		p := &memberlist.Packet{
			Buf:       bytes.Clone(buf[:n]),
			From:      net.UDPAddrFromAddrPort(netip.AddrPortFrom(from.Addr().Unmap(), from.Port())),
			Timestamp: now,
		}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}

// acceptStreams routes each TCP stream; accept errors (out of file
// descriptors, say) are retried with a growing pause.
func (t *gossipTransport) acceptStreams() {
	defer t.wg.Done()
	var pause time.Duration
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if t.closing() {
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			t.log.Warn("accepting a gossip stream", "err", err)
			select {
			case <-time.After(pause):
			case <-t.done:
				return
			}
			continue
		}
		pause = 0
		release, ok := t.guard.admitStream(c.RemoteAddr())
		if !ok {
			c.Close()
			continue
		}
		gc := &guardedConn{Conn: &countingConn{Conn: c, counters: t.counters}}
		gc.onClose(release)
		t.wg.Add(1)
		go t.route(gc)
	}
}

// gossipStreamStart is the first byte of every gossip stream: memberlist's
// encryptMsg (booture always encrypts gossip, and memberlist refuses a
// plain stream when GossipVerifyIncoming is set). Four bytes of length
// follow.
const gossipStreamStart = 10

// peekTimeout bounds how long a new stream may take to send its first bytes.
const peekTimeout = 5 * time.Second

// route peeks at a new stream and gives it to memberlist or a handshake
// handler, within the guard's limits.
func (t *gossipTransport) route(c *guardedConn) {
	defer t.wg.Done()
	deadline := time.Now().Add(peekTimeout)
	c.SetReadDeadline(deadline)
	br := bufio.NewReaderSize(c, 512)
	head, err := br.Peek(len(magicJoin))
	if err != nil {
		c.Close()
		return
	}
	if isHandshakeMagic(head) {
		release, ok := t.guard.admitHandshake(c.RemoteAddr())
		if !ok {
			c.Close()
			return
		}
		c.onClose(release)
		magic := append([]byte(nil), head...)
		br.Discard(len(magic))
		// Not counted in wg: a handshake may end in a gossip restart,
		// which shuts this transport down and waits for wg.
		go t.handle(&peekedConn{Conn: c, r: br}, magic)
		return
	}
	// Memberlist reads a stream's whole first message before it can
	// decrypt it: bound what it may declare, and reserve that much of
	// the budget before handing the stream over.
	head, err = br.Peek(5)
	if err != nil || head[0] != gossipStreamStart {
		c.Close()
		return
	}
	size := int64(binary.BigEndian.Uint32(head[1:5]))
	if size > maxGossipStream {
		c.Close()
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	release, err := t.guard.reserve(ctx, &t.guard.gossipBytes, c.RemoteAddr(), size, "gossip bytes")
	cancel()
	if err != nil {
		c.Close()
		return
	}
	c.onClose(release)
	c.SetReadDeadline(time.Time{})
	select {
	case t.streamCh <- &peekedConn{Conn: c, r: br}:
	case <-t.done:
		c.Close()
	}
}

// peekedConn is a conn whose first bytes were read into a buffer.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// countingConn counts the bytes of a gossip stream.
type countingConn struct {
	net.Conn
	counters *ByteCounters
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.counters.In.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.counters.Out.Add(uint64(n))
	return n, err
}
