package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// UDPEcho is a UDP server in a namespace that answers each datagram with
// the source address it came from ("from IP:PORT"): it shows what address a
// packet had when it reached the server (e.g. after a masquerade).
type UDPEcho struct {
	Addr netip.AddrPort
	conn *net.UDPConn
	mu   sync.Mutex
	seen []netip.AddrPort
	done chan struct{}
}

// StartUDPEcho starts a UDPEcho in the namespace on addr ("IP:PORT").
func (n *NS) StartUDPEcho(addr string) (*UDPEcho, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	var conn *net.UDPConn
	err = n.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp echo in %s: %w", n.Name, err)
	}
	e := &UDPEcho{Addr: ap, conn: conn, done: make(chan struct{})}
	go e.serve()
	return e, nil
}

func (e *UDPEcho) serve() {
	defer close(e.done)
	buf := make([]byte, 2048)
	for {
		_, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		e.mu.Lock()
		e.seen = append(e.seen, from)
		e.mu.Unlock()
		e.conn.WriteToUDPAddrPort([]byte("from "+from.String()), from)
	}
}

// Seen returns the source addresses of the datagrams received so far.
func (e *UDPEcho) Seen() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.seen...)
}

// Close stops the server.
func (e *UDPEcho) Close() error {
	err := e.conn.Close()
	<-e.done
	return err
}

// UDPExchange sends msg from the namespace to dst and returns the first
// answer, waiting at most timeout.
func (n *NS) UDPExchange(dst netip.AddrPort, msg string, timeout time.Duration) (string, error) {
	var conn *net.UDPConn
	err := n.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	k, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("%s: no answer from %s: %w", n.Name, dst, err)
	}
	return string(buf[:k]), nil
}

// EchoSource sends a datagram to a UDPEcho at dst, retrying for at most
// timeout, and returns the source address the server saw.
func (n *NS) EchoSource(dst netip.AddrPort, timeout time.Duration) (netip.AddrPort, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ans, err := n.UDPExchange(dst, "booture lab", time.Second)
		if err == nil {
			s, ok := strings.CutPrefix(ans, "from ")
			if !ok {
				return netip.AddrPort{}, fmt.Errorf("unexpected echo answer %q", ans)
			}
			return netip.ParseAddrPort(s)
		}
		last = err
	}
	if last == nil {
		last = errors.New("timeout")
	}
	return netip.AddrPort{}, last
}
