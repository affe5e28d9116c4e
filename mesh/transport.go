package mesh

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// The gossip port carries memberlist's own traffic and, on the same TCP
// listener, booture's two handshakes: joining with an invitation and catching
// up with the mesh's current credentials. A handshake stream starts with a
// 4-byte magic that can never start a memberlist stream (memberlist's first
// byte is a small message type or its label marker).
var (
	magicJoin    = []byte("BTJ1")
	magicCatchUp = []byte("BTC1")
)

// streamHandler handles a handshake stream; it owns conn.
type streamHandler func(conn net.Conn, magic []byte)

// muxTransport wraps a memberlist transport: it counts gossip bytes in both
// directions and diverts handshake streams to booture's handlers.
type muxTransport struct {
	memberlist.NodeAwareTransport
	log      *slog.Logger
	handle   streamHandler
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once

	counters *ByteCounters
}

// ByteCounters counts gossip traffic; they survive gossip restarts.
type ByteCounters struct {
	In, Out atomic.Uint64
}

func newMuxTransport(inner memberlist.NodeAwareTransport, handle streamHandler, counters *ByteCounters, log *slog.Logger) *muxTransport {
	t := &muxTransport{
		NodeAwareTransport: inner,
		log:                log,
		handle:             handle,
		packetCh:           make(chan *memberlist.Packet),
		streamCh:           make(chan net.Conn),
		done:               make(chan struct{}),
		counters:           counters,
	}
	t.wg.Add(2)
	go t.pumpPackets()
	go t.pumpStreams()
	return t
}

var _ memberlist.NodeAwareTransport = (*muxTransport)(nil)

func (t *muxTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *muxTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *muxTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.counters.Out.Add(uint64(len(b)))
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *muxTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	t.counters.Out.Add(uint64(len(b)))
	return t.NodeAwareTransport.WriteToAddress(b, addr)
}

func (t *muxTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, counters: t.counters}, nil
}

func (t *muxTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, counters: t.counters}, nil
}

// dialHandshake opens a handshake stream to addr and writes its magic.
func (t *muxTransport) dialHandshake(addr string, magic []byte, timeout time.Duration) (net.Conn, error) {
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

func (t *muxTransport) Shutdown() error {
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	// memberlist's own transport blocks, while shutting down, until its
	// listeners have handed over the packet or stream they hold: drain
	// them meanwhile (nobody else reads them any more).
	inner := t.NodeAwareTransport
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-inner.PacketCh():
			case c := <-inner.StreamCh():
				c.Close()
			case <-stop:
				return
			}
		}
	}()
	err := inner.Shutdown()
	close(stop)
	<-drained
	return err
}

func (t *muxTransport) pumpPackets() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.PacketCh()
	for {
		select {
		case p := <-in:
			t.counters.In.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *muxTransport) pumpStreams() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case c := <-in:
			t.wg.Add(1)
			go t.route(&countingConn{Conn: c, counters: t.counters})
		case <-t.done:
			return
		}
	}
}

// peekTimeout bounds how long a new stream may take to send its first bytes.
const peekTimeout = 5 * time.Second

// route peeks at a new stream and gives it to memberlist or a handshake
// handler.
func (t *muxTransport) route(c net.Conn) {
	defer t.wg.Done()
	c.SetReadDeadline(time.Now().Add(peekTimeout))
	br := bufio.NewReaderSize(c, 512)
	head, err := br.Peek(len(magicJoin))
	if err != nil {
		c.Close()
		return
	}
	if bytes.Equal(head, magicJoin) || bytes.Equal(head, magicCatchUp) {
		magic := append([]byte(nil), head...)
		br.Discard(len(magic))
		// Not counted in wg: a handshake may end in a gossip restart,
		// which shuts this transport down and waits for wg.
		go t.handle(&peekedConn{Conn: c, r: br}, magic)
		return
	}
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
