package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
)

// ProbePort is the UDP port Probes listens on in every host.
const ProbePort = 7177

// Probes measures when traffic first passes between every ordered pair of
// bootures over the mesh: each host sends a small UDP datagram to every
// other host's mesh address every interval until that host answers, and
// every host notes when the first datagram from each other one arrives. A
// ping waits a second between tries; probes resolve a first packet to the
// interval (datagrams WireGuard holds until a handshake completes arrive as
// soon as it does).
//
// Times are durations since the t0 given to StartProbes, on the one clock of
// this process.
type Probes struct {
	hosts    []*Host
	addrs    []netip.Addr
	conns    []*net.UDPConn
	t0       time.Time
	interval time.Duration

	mu      sync.Mutex
	arrived [][]time.Duration // [from][to]: first datagram from `from` seen by `to`; 0 = not yet
	answer  [][]time.Duration // [from][to]: first answer of `to` seen by `from`
	sent    []time.Duration   // [from]: when `from` sent its first probes
	left    int               // answers still missing
	done    chan struct{}     // closed when left reaches 0
	stop    chan struct{}
	wg      sync.WaitGroup
}

// probe datagrams: kind byte, sender index (uint16).
const (
	probeAsk = 'p'
	probeAns = 'a'
)

// StartProbes starts probing between hosts, whose mesh addresses are addrs
// (same order), every interval; times count from t0.
func StartProbes(hosts []*Host, addrs []netip.Addr, interval time.Duration, t0 time.Time) (*Probes, error) {
	if len(hosts) != len(addrs) || len(hosts) < 2 {
		return nil, errors.New("probes: need as many addresses as hosts, at least two")
	}
	n := len(hosts)
	p := &Probes{
		hosts: hosts, addrs: addrs, t0: t0, interval: interval,
		conns: make([]*net.UDPConn, n), arrived: grid(n), answer: grid(n), sent: make([]time.Duration, n),
		left: n * (n - 1), done: make(chan struct{}), stop: make(chan struct{}),
	}
	for i, h := range hosts {
		err := h.Do(func() error {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: ProbePort})
			p.conns[i] = c
			return err
		})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("probes: listening in %s: %w", h.Name, err)
		}
	}
	for i := range hosts {
		p.wg.Add(2)
		go p.read(i)
		go p.send(i)
	}
	return p, nil
}

func grid(n int) [][]time.Duration {
	g := make([][]time.Duration, n)
	for i := range g {
		g[i] = make([]time.Duration, n)
	}
	return g
}

// read notes arrivals at host i and answers probes.
func (p *Probes) read(i int) {
	defer p.wg.Done()
	buf := make([]byte, 64)
	for {
		k, from, err := p.conns[i].ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		at := time.Since(p.t0)
		if k != 3 {
			continue
		}
		j := int(binary.BigEndian.Uint16(buf[1:3]))
		if j >= len(p.hosts) || j == i {
			continue
		}
		p.mu.Lock()
		switch buf[0] {
		case probeAsk:
			if p.arrived[j][i] == 0 {
				p.arrived[j][i] = max(at, 1)
			}
		case probeAns:
			if p.answer[i][j] == 0 {
				p.answer[i][j] = max(at, 1)
				p.left--
				if p.left == 0 {
					close(p.done)
				}
			}
		}
		p.mu.Unlock()
		if buf[0] == probeAsk {
			p.conns[i].WriteToUDPAddrPort(msg(probeAns, i), from)
		}
	}
}

func msg(kind byte, i int) []byte {
	return []byte{kind, byte(i >> 8), byte(i)}
}

// send probes, from host i, every host that has not answered yet.
func (p *Probes) send(i int) {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	ask := msg(probeAsk, i)
	for {
		var to []int
		p.mu.Lock()
		for j := range p.hosts {
			if j != i && p.answer[i][j] == 0 {
				to = append(to, j)
			}
		}
		p.mu.Unlock()
		if len(to) == 0 {
			return
		}
		for _, j := range to {
			// Errors (no route yet: the peer is not configured) are
			// what probing waits out.
			p.conns[i].WriteToUDPAddrPort(ask, netip.AddrPortFrom(p.addrs[j], ProbePort))
		}
		p.mu.Lock()
		if p.sent[i] == 0 {
			p.sent[i] = max(time.Since(p.t0), 1)
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// Wait waits until every host has answered every other, at most timeout.
func (p *Probes) Wait(ctx context.Context, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var missing []string
	for i := range p.hosts {
		for j := range p.hosts {
			if i != j && p.answer[i][j] == 0 {
				missing = append(missing, p.hosts[i].Name+"→"+p.hosts[j].Name)
			}
		}
	}
	return fmt.Errorf("no answer within %v: %s", timeout, strings.Join(missing, " "))
}

// Arrivals returns, for each ordered pair [from][to], when the first
// datagram from `from` reached `to` (0 if none did, and on the diagonal).
func (p *Probes) Arrivals() [][]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := grid(len(p.hosts))
	for i := range out {
		copy(out[i], p.arrived[i])
	}
	return out
}

// Started returns when each host sent its first probes (0 if not yet).
func (p *Probes) Started() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.sent...)
}

// Close stops probing and closes the sockets.
func (p *Probes) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	for _, c := range p.conns {
		if c != nil {
			c.Close()
		}
	}
	p.wg.Wait()
}

// PeerWatch polls the WireGuard devices of hosts (through their control
// sockets, from this process: no command is run) and notes when each host
// first has each other's public key as a peer.
type PeerWatch struct {
	hosts []*Host
	keys  []string
	t0    time.Time
	stop  chan struct{}
	done  chan struct{}

	mu  sync.Mutex
	has [][]time.Duration // [host][peer]: first seen configured; 0 = not yet
}

// WatchPeers starts polling every interval until every host has every
// other's peer, or Close. keys are the hosts' public keys (base64, as
// `booture status` shows them); times count from t0.
func WatchPeers(hosts []*Host, keys []string, interval time.Duration, t0 time.Time) (*PeerWatch, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	w := &PeerWatch{hosts: hosts, keys: keys, t0: t0, stop: make(chan struct{}), done: make(chan struct{}), has: grid(len(hosts))}
	idx := map[string]int{}
	for i, k := range keys {
		idx[k] = i
	}
	go func() {
		defer close(w.done)
		defer c.Close()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			left := 0
			for i, h := range hosts {
				dev, err := c.Device(h.Iface)
				at := time.Since(t0)
				if err != nil {
					left++
					continue
				}
				w.mu.Lock()
				for _, pe := range dev.Peers {
					if j, ok := idx[pe.PublicKey.String()]; ok && j != i && w.has[i][j] == 0 {
						w.has[i][j] = max(at, 1)
					}
				}
				for j := range hosts {
					if j != i && w.has[i][j] == 0 {
						left++
					}
				}
				w.mu.Unlock()
			}
			if left == 0 {
				return
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w, nil
}

// Configured returns, for each [host][peer], when host was first seen with
// peer's WireGuard peer (0 if not yet).
func (w *PeerWatch) Configured() [][]time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := grid(len(w.hosts))
	for i := range out {
		copy(out[i], w.has[i])
	}
	return out
}

// Close stops polling.
func (w *PeerWatch) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
