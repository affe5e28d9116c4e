package lab_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/booture/booture/internal/lab"
)

// attackWait bounds each attempt that must fail: a packet the filter drops
// gets no answer, so every such attempt lasts this long.
const attackWait = 2 * time.Second

// The LAN of this test also has IPv6 (documentation range 2001:db8::/32),
// so that the booture has an IPv6 default route to leak by.
var (
	lan6A    = netip.MustParseAddr("2001:db8::1")
	lan6Evil = netip.MustParseAddr("2001:db8::101")
)

// TestFirewallAttacks performs, in a lab, the attacks of a security review
// against the network layer of a booture, each of which worked before the
// daemon filtered its traffic:
//
//   - a LAN host that is the booture's default router (as it could become
//     by ARP or DHCP spoofing) adds an address of an unallocated site of
//     the pool and talks to the booture's mesh address: the gateway and the
//     DNS server took it for a member of the mesh;
//   - a LAN host, without spoofing, reaches the mesh addresses (the
//     kernel's weak host model): DNS lists every name of the mesh;
//   - a LAN host reaches a member's device through the booture (forwarding
//     is on once a full-tunnel member exists);
//   - a member reaches sockets of the booture's host that are not services:
//     a TCP port bound to 0.0.0.0 (standing for sshd or an upstream) and the
//     gossip port on the LAN address, through the tunnel (a port the admin
//     opened with --mesh-tcp-port stays reachable);
//   - another booture opens connections to a member's device;
//   - traffic for an unallocated site (the booture's own and a full-tunnel
//     member's) leaves in clear by the default route, to the LAN router.
//
// What must keep working is checked too: the member reaches the gateway,
// other bootures and answers; bootures reach each other.
func TestFirewallAttacks(t *testing.T) {
	t.Parallel()
	// A port the admin opened to the mesh (--mesh-tcp-port).
	const opened = 5201
	l := startFounderFirst(t, lab.Options{Hosts: 2, DaemonArgs: []string{"--mesh-tcp-port", fmt.Sprint(opened)}})
	a, b := l.H(1), l.H(2)
	must(t, b.JoinVia(a))
	must(t, lab.WaitMesh(15*time.Second, a, b))
	stA, stB := status(t, a), status(t, b)
	meshA4 := netip.MustParseAddr(stA.MeshIPv4)
	meshA6 := netip.MustParseAddr(stA.MeshIPv6)
	pool6 := prefix(t, stA.MeshPool6)

	// evil: a plain host of the LAN (a member namespace whose WireGuard
	// client never comes up), A's default router for IPv4 and IPv6.
	evil, err := l.AddMember()
	must(t, err)
	must(t, evil.Run("ip", "addr", "add", lan6Evil.String()+"/64", "dev", "eth0", "nodad").Error())
	for _, c := range [][]string{
		{"ip", "addr", "add", lan6A.String() + "/64", "dev", "eth0", "nodad"},
		{"ip", "route", "add", "default", "via", evil.IP.String()},
		{"ip", "-6", "route", "add", "default", "via", lan6Evil.String()},
	} {
		must(t, a.Run(c...).Error())
	}

	// erin: a full-tunnel member of A (which turns forwarding on on A's
	// uplink, the LAN), with a TCP service on her device.
	erinCfg := memberAdd(t, a, "erin", "--full-tunnel")
	erin, err := l.AddMember()
	must(t, err)
	must(t, erin.Up(erinCfg))
	erin4, _ := addrOf(t, erinCfg)
	reachable(t, &erin.NS, pingWait, stA.MeshIPv4, stB.MeshIPv4, stA.MeshIPv6, stB.MeshIPv6)
	erinSvc := listenTCP(t, &erin.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	erinSvc4 := netip.AddrPortFrom(netip.MustParseAddr(erin4), erinSvc.Port())

	// Still works: members reach the gateway and other bootures.
	must(t, dialFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, 80), 5*time.Second))
	if _, err := dnsFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, 53), a.Name+".booture.internal"); err != nil {
		t.Errorf("erin cannot use A's DNS: %v", err)
	}

	t.Run("LAN host with a pool source reaches mesh services", func(t *testing.T) {
		spoof4 := netip.MustParseAddr("10.77.200.5")
		spoof6 := siteAddr(pool6, 200, 5)
		for _, c := range [][]string{
			{"ip", "addr", "add", spoof4.String() + "/32", "dev", "eth0"},
			{"ip", "addr", "add", spoof6.String() + "/128", "dev", "eth0", "nodad"},
			{"ip", "route", "add", stA.MeshPool4, "via", a.IP.String()},
			{"ip", "-6", "route", "add", stA.MeshPool6, "via", lan6A.String()},
		} {
			must(t, evil.Run(c...).Error())
		}
		for _, c := range []struct {
			src, dst netip.Addr
		}{{spoof4, meshA4}, {spoof6, meshA6}} {
			if line, err := httpFrom(&evil.NS, c.src, netip.AddrPortFrom(c.dst, 80), a.Name+".booture.internal"); err == nil {
				t.Errorf("LAN host with source %s got an answer from A's gateway on %s: %q", c.src, c.dst, line)
			}
			if r, err := dnsFrom(&evil.NS, c.src, netip.AddrPortFrom(c.dst, 53), b.Name+".booture.internal"); err == nil {
				t.Errorf("LAN host with source %s got an answer from A's DNS on %s: %v", c.src, c.dst, r.Answer)
			}
		}
	})

	t.Run("LAN host reaches the mesh addresses", func(t *testing.T) {
		// evil's route to the pool via A (added above, or here if the
		// subtest runs alone).
		evil.Run("ip", "route", "add", stA.MeshPool4, "via", a.IP.String())
		if r, err := dnsFrom(&evil.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, 53), b.Name+".booture.internal"); err == nil {
			t.Errorf("LAN host got an answer from A's DNS on its mesh address: %v", r.Answer)
		}
		if line, err := httpFrom(&evil.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, 80), a.Name+".booture.internal"); err == nil {
			t.Errorf("LAN host got an answer from A's gateway on its mesh address: %q", line)
		}
	})

	t.Run("LAN host reaches a member through the booture", func(t *testing.T) {
		evil.Run("ip", "route", "add", stA.MeshPool4, "via", a.IP.String())
		unreachable(t, &evil.NS, erin4)
		if err := dialFrom(&evil.NS, netip.Addr{}, erinSvc4, attackWait); err == nil {
			t.Errorf("LAN host opened a connection to member erin's device (%s)", erinSvc4)
		}
	})

	t.Run("member reaches host sockets that are not services", func(t *testing.T) {
		// A listener on every address of A's host, as sshd or a service's
		// upstream bound to 0.0.0.0.
		hostSvc := listenTCP(t, &a.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err := dialFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, hostSvc.Port()), attackWait); err == nil {
			t.Errorf("member erin reached A's port %d (bound to 0.0.0.0) on A's mesh address", hostSvc.Port())
		}
		// A's LAN address through the tunnel, as a member may route it:
		// the gossip port, and the same listener. Only TCP goes there (a
		// route for the whole address would take WireGuard's own packets
		// to A into the tunnel); table 51820 is wg-quick's full-tunnel
		// table.
		rule := []string{"priority", "100", "to", a.IP.String() + "/32", "ipproto", "tcp", "lookup", "51820"}
		must(t, erin.Run(append([]string{"ip", "rule", "add"}, rule...)...).Error())
		for _, port := range []uint16{7946, hostSvc.Port()} {
			if err := dialFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(a.IP, port), attackWait); err == nil {
				t.Errorf("member erin reached A's LAN address %s port %d through the tunnel", a.IP, port)
			}
		}
		must(t, erin.Run(append([]string{"ip", "rule", "del"}, rule...)...).Error())
		// Still works: the gateway, and a port the admin opened.
		if err := dialFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, 80), 5*time.Second); err != nil {
			t.Errorf("member erin cannot reach A's gateway: %v", err)
		}
		listenTCP(t, &a.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), opened))
		if err := dialFrom(&erin.NS, netip.Addr{}, netip.AddrPortFrom(meshA4, opened), 5*time.Second); err != nil {
			t.Errorf("member erin cannot reach port %d, opened with --mesh-tcp-port: %v", opened, err)
		}
	})

	t.Run("another booture opens connections to a member", func(t *testing.T) {
		unreachable(t, &b.NS, erin4)
		if err := dialFrom(&b.NS, netip.Addr{}, erinSvc4, attackWait); err == nil {
			t.Errorf("booture B opened a connection to member erin's device (%s)", erinSvc4)
		}
		// Still works: erin reaches B, and B answers.
		reachable(t, &erin.NS, pingWait, stB.MeshIPv4, stB.MeshIPv6)
	})

	t.Run("traffic for an unallocated site leaves by the default route", func(t *testing.T) {
		dst4 := netip.MustParseAddr("10.77.200.9")
		dst6 := siteAddr(pool6, 200, 9)
		for _, dst := range []netip.Addr{dst4, dst6} {
			// An unreachable route makes the lookup fail ("No route to
			// host"); a leak is a route via the LAN router.
			if r := a.Run("ip", "route", "get", dst.String()); r.OK() {
				t.Errorf("on A, ip route get %s: %q; want no route", dst, r.Stdout)
			}
		}
		// What reaches the LAN router: A's own packets and a full-tunnel
		// member's, counted on evil.
		must(t, evil.Run("nft", "add", "table", "inet", "leak").Error())
		must(t, evil.Run("nft", "add", "chain", "inet", "leak", "in", "{ type filter hook prerouting priority -300; }").Error())
		must(t, evil.Run("nft", "add", "rule", "inet", "leak", "in", "ip", "daddr", dst4.String(), "counter").Error())
		must(t, evil.Run("nft", "add", "rule", "inet", "leak", "in", "ip6", "daddr", dst6.String(), "counter").Error())
		for _, dst := range []netip.Addr{dst4, dst6} {
			a.Ping(dst.String(), 2, 200*time.Millisecond)
			erin.Ping(dst.String(), 2, 200*time.Millisecond)
		}
		out := evil.Run("nft", "list", "chain", "inet", "leak", "in").Stdout
		if n := countPackets(out); n != 0 {
			t.Errorf("%d packets for an unallocated site left A by its default route:\n%s", n, out)
		}
	})
}

// siteAddr returns the address with host part host in site n of a /48.
func siteAddr(pool netip.Prefix, n int, host byte) netip.Addr {
	b := pool.Masked().Addr().As16()
	b[6], b[7] = byte(n>>8), byte(n)
	b[15] = host
	return netip.AddrFrom16(b)
}

var packetsRE = regexp.MustCompile(`counter packets (\d+)`)

func countPackets(nftOut string) int {
	n := 0
	for _, m := range packetsRE.FindAllStringSubmatch(nftOut, -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// listenTCP starts a TCP listener in the namespace on addr (port 0: any)
// that accepts and closes connections; it is closed when the test ends.
func listenTCP(t *testing.T, ns *lab.NS, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	must(t, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// dialFrom opens a TCP connection from the namespace (from src, unless it
// is the zero Addr) to dst and closes it.
func dialFrom(ns *lab.NS, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: connecting to %s: %w", ns.Name, dst, err)
	}
	return c.Close()
}

// httpFrom sends GET / for host from the namespace (from src, unless it is
// the zero Addr) to dst and returns the status line of the answer.
func httpFrom(ns *lab.NS, src netip.Addr, dst netip.AddrPort, host string) (string, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: attackWait}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(attackWait))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// dnsFrom asks server for name's A record from the namespace (from src,
// unless it is the zero Addr) over UDP.
func dnsFrom(ns *lab.NS, src netip.Addr, server netip.AddrPort, name string) (*dns.Msg, error) {
	var r *dns.Msg
	err := ns.Do(func() error {
		d := &net.Dialer{Timeout: attackWait}
		if src.IsValid() {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		c := dns.Client{Net: "udp", Timeout: attackWait, Dialer: d}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		var err error
		r, _, err = c.Exchange(q, server.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}
