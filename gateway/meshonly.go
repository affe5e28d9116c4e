package gateway

import (
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Why the DNS server checks the interface each query came in by.
//
// The daemon listens on its mesh addresses, but Linux takes a packet for
// any of its addresses on any interface (the weak host model): a LAN host
// that routes 10.77.0.0/16 through the booture's LAN address reaches the
// DNS server, and may give any source address it likes. Over UDP nothing
// proves the source, so a forged mesh source got recursion, answered to
// the forged address (blind, but a free resolver and a reflector).
//
// Binding the sockets to the WireGuard interface (SO_BINDTODEVICE) would
// also turn away the box's own queries (they arrive on loopback), and would
// go deaf if the interface were ever made anew. So the sockets read the
// incoming interface of each datagram (IP_PKTINFO, IPV6_RECVPKTINFO) and
// drop, unanswered, what did not come by the WireGuard interface or by
// loopback. WireGuard lets in only the sources each peer is allowed, so
// what comes by it is the mesh indeed.
//
// TCP needs no such check: its handshake proves that the client receives
// what is sent to its source, and public sources (the LAN) are refused by
// answerDNS.

// meshConn is a DNS server's UDP socket that drops the datagrams that did
// not arrive by an allowed interface. Writes, deadlines and Close go to the
// socket itself.
type meshConn struct {
	net.PacketConn
	read    func(b []byte) (n, ifindex int, src net.Addr, err error)
	allow   func(ifindex int) bool
	dropped func()
}

// ReadFrom returns the next datagram that arrived by an allowed interface.
func (c *meshConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ifi, src, err := c.read(b)
		if err != nil || c.allow(ifi) {
			return n, src, err
		}
		c.dropped()
	}
}

// meshOnly wraps the UDP socket pc (udp4 or udp6) so that it reads only
// datagrams that came by ifaces' interfaces.
func meshOnly(pc net.PacketConn, ifaces *ifaceSet, dropped func()) (net.PacketConn, error) {
	c := &meshConn{PacketConn: pc, allow: ifaces.allowed, dropped: dropped}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("dns socket %T: not UDP", pc)
	}
	if a, _ := udp.LocalAddr().(*net.UDPAddr); a != nil && a.IP.To4() == nil {
		p := ipv6.NewPacketConn(udp)
		if err := p.SetControlMessage(ipv6.FlagInterface, true); err != nil {
			return nil, fmt.Errorf("asking for the interface of dns queries: %w", err)
		}
		c.read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if cm == nil {
				return n, 0, src, err
			}
			return n, cm.IfIndex, src, err
		}
		return c, nil
	}
	p := ipv4.NewPacketConn(udp)
	if err := p.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		return nil, fmt.Errorf("asking for the interface of dns queries: %w", err)
	}
	c.read = func(b []byte) (int, int, net.Addr, error) {
		n, cm, src, err := p.ReadFrom(b)
		if cm == nil {
			return n, 0, src, err
		}
		return n, cm.IfIndex, src, err
	}
	return c, nil
}

// ifaceSet knows the indexes of the WireGuard interface (by name) and of the
// loopback interfaces. A datagram from an unknown index makes it look the
// interfaces up again, at most once a second: the interface may have been
// made anew with another index.
type ifaceSet struct {
	name  string
	now   func() time.Time
	every time.Duration
	// lookup lists the interfaces (net.Interfaces; a fake in tests).
	lookup func() ([]net.Interface, error)

	mu      sync.Mutex
	ok      map[int]bool
	checked time.Time
}

func newIfaceSet(name string) *ifaceSet {
	return &ifaceSet{name: name, now: time.Now, every: time.Second, lookup: net.Interfaces}
}

func (s *ifaceSet) allowed(ifindex int) bool {
	if ifindex <= 0 {
		return false // no control message: fail closed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok[ifindex] {
		return true
	}
	if now := s.now(); s.ok == nil || now.Sub(s.checked) >= s.every {
		s.checked = now
		s.refreshLocked()
	}
	return s.ok[ifindex]
}

func (s *ifaceSet) refreshLocked() {
	ifs, err := s.lookup()
	if err != nil {
		return // keep what was known
	}
	ok := make(map[int]bool, 2)
	for _, i := range ifs {
		if i.Name == s.name || i.Flags&net.FlagLoopback != 0 {
			ok[i.Index] = true
		}
	}
	s.ok = ok
}
