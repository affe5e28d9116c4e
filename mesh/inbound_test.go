package mesh

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestInboundSources(t *testing.T) {
	g := newInboundGuard(defaultInboundLimits(), slog.New(slog.DiscardHandler))
	key := func(s string) (netip.Prefix, bool) {
		return g.source(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)))
	}
	a, _ := key("[2001:db8:1:2::5]:1000")
	b, _ := key("[2001:db8:1:2:ffff::9]:2000")
	c, _ := key("[2001:db8:1:3::5]:1000")
	if a != b || a == c {
		t.Errorf("IPv6 sources %v, %v, %v: want one key per /64", a, b, c)
	}
	v4, _ := key("198.51.100.7:1")
	mapped, _ := key("[::ffff:198.51.100.7]:2")
	if v4 != mapped || v4.Bits() != 32 {
		t.Errorf("IPv4 source %v, mapped %v: want the same /32", v4, mapped)
	}
	if _, counted := key("127.0.0.1:5"); counted {
		t.Error("a loopback source is counted by default")
	}
	g.limits.limitLoopback = true
	if _, counted := key("127.0.0.1:5"); !counted {
		t.Error("a loopback source is not counted with limitLoopback")
	}
}

func TestSourceLimiter(t *testing.T) {
	l := sourceLimiter{total: 3, perSource: 2}
	x, y, z := netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("198.51.100.2/32"), netip.MustParsePrefix("198.51.100.3/32")
	for _, step := range []struct {
		src  netip.Prefix
		want bool
	}{{x, true}, {x, true}, {x, false}, {y, true}, {z, false}} {
		if got := l.acquire(step.src, 1); got != step.want {
			t.Fatalf("acquire(%v) = %v, want %v", step.src, got, step.want)
		}
	}
	l.release(x, 1)
	if !l.acquire(z, 1) || l.acquire(y, 1) {
		t.Fatal("after a release: want room for one more, then none")
	}
	l.release(x, 1)
	l.release(y, 1)
	l.release(z, 1)
	if l.n != 0 || len(l.by) != 0 {
		t.Fatalf("after releasing everything: %d held, %v", l.n, l.by)
	}
}

// TestGossipStreamLimits: streams that cannot be gossip (not encrypted),
// declare more than a gossip message may be, or come from a source over
// its count are closed before memberlist reads anything of them.
func TestGossipStreamLimits(t *testing.T) {
	l := defaultInboundLimits()
	l.limitLoopback = true
	l.streamsPerSource = 2
	tr, err := listenGossip(loopback, 0, nil, &ByteCounters{}, newInboundGuard(l, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	addr := netip.AddrPortFrom(loopback, uint16(tr.port)).String()
	dial := func(head []byte) net.Conn {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(head)
		return c
	}
	closed := func(c net.Conn) bool {
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
	}
	for name, head := range map[string][]byte{
		"plain":    {0, 0, 0, 0, 1},
		"too big":  binary.BigEndian.AppendUint32([]byte{gossipStreamStart}, maxGossipStream+1),
		"too long": binary.BigEndian.AppendUint32([]byte{gossipStreamStart}, 1<<31),
	} {
		c := dial(head)
		if !closed(c) {
			t.Errorf("%s stream: not closed", name)
		}
		c.Close()
	}
	// Two streams from one source are handed to memberlist; the third is
	// closed at once.
	ok := binary.BigEndian.AppendUint32([]byte{gossipStreamStart}, 100)
	c1, c2 := dial(ok), dial(ok)
	defer c1.Close()
	defer c2.Close()
	for range 2 {
		select {
		case s := <-tr.StreamCh():
			defer s.Close()
		case <-time.After(3 * time.Second):
			t.Fatal("a stream within the limits was not handed over")
		}
	}
	c3 := dial(ok)
	defer c3.Close()
	if !closed(c3) {
		t.Error("a third stream from one source: not closed")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
