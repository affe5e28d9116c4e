// Command peersim plays many peer bootures in one process, so that the
// footprint bench can measure one real bootured with more peers than this
// machine can run real daemons (201 bootured processes do not fit 2 cores).
//
// Each simulated booture is a real mesh node (gossip, the mesh's keys, its
// own site) that joined with an invitation of the booture under test, and
// a real userspace WireGuard device (wireguard-go) whose only peer is that
// booture: handshakes, keepalives and rekeys are what a real peer sends.
// Their tunnels carry no traffic: the device's TUN side is a null device,
// and the simulated bootures make no WireGuard peers among themselves.
//
//	peersim -addr 198.51.100.2 -tokens FILE -target h1 -state DIR
//
// FILE holds one invitation token per line (one simulated booture each).
// It prints "ready N" once every WireGuard device has its peer, and runs
// until SIGINT or SIGTERM.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/booture/booture/key"
	"github.com/booture/booture/mesh"
)

func main() {
	addrFlag := flag.String("addr", "", "underlay address of this namespace (gossip and WireGuard)")
	tokensFile := flag.String("tokens", "", "file of invitation tokens, one per line")
	target := flag.String("target", "", "name of the booture under test (the inviter)")
	stateDir := flag.String("state", "", "directory for the simulated bootures' state")
	portBase := flag.Int("wg-port-base", 52000, "WireGuard port of the first simulated booture (then +1 each)")
	par := flag.Int("parallel", 4, "joins at once")
	profile := flag.String("profile", "wan", "gossip profile of the simulated bootures (lan or wan)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: peersim -addr ADDR -tokens FILE -target NAME -state DIR\n\nPlays one peer booture per token (mesh node + WireGuard device) against the booture under test.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	addr, err := netip.ParseAddr(*addrFlag)
	if err != nil || *tokensFile == "" || *target == "" || *stateDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	prof, err := mesh.ParseProfile(*profile)
	if err != nil {
		fatal(err)
	}
	tokens, err := readTokens(*tokensFile)
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	sims := make([]*sim, len(tokens))
	defer func() {
		for _, s := range sims {
			if s != nil {
				s.close()
			}
		}
	}()
	sem := make(chan struct{}, max(*par, 1))
	var wg sync.WaitGroup
	errs := make([]error, len(tokens))
	for i, tok := range tokens {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sims[i], errs[i] = startSim(ctx, log, prof, i, addr, uint16(*portBase+i), filepath.Join(*stateDir, fmt.Sprintf("s%03d", i)), tok)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fatal(err)
	}
	// Each device gets its peer once the simulated booture's view has the
	// booture under test; then keep them in step (a new endpoint or site):
	// every second until all have it, then every 10 s.
	wait := time.Second
	for {
		n := 0
		for _, s := range sims {
			if err := s.sync(*target); err != nil {
				log.Warn("wireguard peer", "sim", s.name, "err", err)
			} else if s.peerConf != "" {
				n++
			}
		}
		if n == len(sims) && wait == time.Second {
			fmt.Printf("ready %d\n", n)
			wait = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "peersim:", err)
	os.Exit(1)
}

func readTokens(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no token", path)
	}
	return out, nil
}

// sim is one simulated peer booture.
type sim struct {
	name     string
	node     *mesh.Node
	dev      *device.Device
	peerConf string // the UAPI peer section last set ("" until it has its peer)
}

func startSim(ctx context.Context, log *slog.Logger, prof mesh.Profile, i int, addr netip.Addr, wgPort uint16, dir, token string) (*sim, error) {
	name := fmt.Sprintf("s%03d", i)
	priv, err := key.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	node, err := mesh.New(mesh.Config{
		Name: name, StateDir: dir, PrivateKey: priv, Bind: addr, Advertise: addr,
		WireGuardEndpoint: netip.AddrPortFrom(addr, wgPort), Version: "peersim", Profile: prof,
		Logger: log.With("sim", name),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := node.Start(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &sim{name: name, node: node}
	// The inviter may be busy with other joins: a few tries.
	for try := 0; ; try++ {
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = node.Join(jctx, token)
		cancel()
		if err == nil || try == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("%s joins: %w", name, err)
	}
	s.dev = device.NewDevice(newNullTUN(), &udpBind{addr: addr}, device.NewLogger(device.LogLevelSilent, ""))
	if err := s.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hexKey(priv.RevealRaw32()), wgPort)); err != nil {
		s.close()
		return nil, fmt.Errorf("%s: wireguard: %w", name, err)
	}
	if err := s.dev.Up(); err != nil {
		s.close()
		return nil, fmt.Errorf("%s: wireguard up: %w", name, err)
	}
	return s, nil
}

// sync gives the device the booture under test as its peer, as this
// simulated booture's view of the mesh has it.
func (s *sim) sync(target string) error {
	v := s.node.View()
	for _, p := range v.Peers {
		if p.Name != target || !p.Endpoint.IsValid() {
			continue
		}
		site := mesh.SiteOf(v.ULA, p.Site)
		conf := fmt.Sprintf("public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=%s\nallowed_ip=%s\n",
			hexKey(p.PublicKey.Raw32()), p.Endpoint, int(mesh.PeerKeepalive.Seconds()), site.IPv4, site.IPv6)
		if conf == s.peerConf {
			return nil
		}
		if err := s.dev.IpcSet("replace_peers=true\n" + conf); err != nil {
			return err
		}
		s.peerConf = conf
		return nil
	}
	return nil
}

func (s *sim) close() {
	if s.dev != nil {
		s.dev.Close()
	}
	s.node.Close()
}

// hexKey is a key as wireguard-go's UAPI wants it.
func hexKey(k [key.Len]byte) string { return hex.EncodeToString(k[:]) }

// udpBind is a WireGuard bind on one IPv4 UDP socket that receives one
// packet at a time. wireguard-go's default bind keeps a batch of 64 KiB
// buffers per socket (128 on Linux, 16 MB a device), which 200 devices in
// one process cannot afford, and a peer without traffic does not need.
type udpBind struct {
	addr netip.Addr
	mu   sync.Mutex
	conn *net.UDPConn
}

func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.addr, port)))
	if err != nil {
		return nil, 0, err
	}
	b.conn = c
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, from, err := c.ReadFromUDPAddrPort(bufs[0])
		if err != nil {
			return 0, err
		}
		sizes[0], eps[0] = n, udpEndpoint(from)
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil
	}
	err := b.conn.Close()
	b.conn = nil
	return err
}

func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	c := b.conn
	b.mu.Unlock()
	if c == nil {
		return net.ErrClosed
	}
	dst, ok := ep.(udpEndpoint)
	if !ok {
		return fmt.Errorf("unexpected endpoint %T", ep)
	}
	for _, buf := range bufs {
		if _, err := c.WriteToUDPAddrPort(buf, netip.AddrPort(dst)); err != nil {
			return err
		}
	}
	return nil
}

func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return udpEndpoint(ap), err
}

func (*udpBind) SetMark(uint32) error { return nil }
func (*udpBind) BatchSize() int       { return 1 }

// udpEndpoint is a peer's address (no sticky source address).
type udpEndpoint netip.AddrPort

func (udpEndpoint) ClearSrc()             {}
func (udpEndpoint) SrcToString() string   { return "" }
func (udpEndpoint) SrcIP() netip.Addr     { return netip.Addr{} }
func (e udpEndpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e udpEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e udpEndpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}

// nullTUN is a TUN device with no traffic: reads block until it is
// closed, writes are dropped.
type nullTUN struct {
	events chan tun.Event
	done   chan struct{}
	once   sync.Once
}

func newNullTUN() *nullTUN {
	t := &nullTUN{events: make(chan tun.Event, 1), done: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *nullTUN) File() *os.File { return nil }

func (t *nullTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-t.done
	return 0, os.ErrClosed
}

func (t *nullTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (t *nullTUN) MTU() (int, error)                            { return 1420, nil }
func (t *nullTUN) Name() (string, error)                        { return "null", nil }
func (t *nullTUN) Events() <-chan tun.Event                     { return t.events }
func (t *nullTUN) BatchSize() int                               { return 1 }

func (t *nullTUN) Close() error {
	t.once.Do(func() {
		close(t.done)
		close(t.events)
	})
	return nil
}
