package gateway

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// fakeForwarding makes g's forwarder ask a fake upstream instead of the
// network: names starting with "dead" time out (the upstream resolver
// cannot reach their servers), others resolve to 192.0.2.1. It returns the
// count of queries the upstream got.
func fakeForwarding(g *Gateway) *atomic.Int32 {
	n := new(atomic.Int32)
	g.fwd.exch = func(ctx context.Context, out *dns.Msg, u *upstream, tcp bool) (*dns.Msg, error) {
		n.Add(1)
		if strings.HasPrefix(lower(out.Question[0].Name), "dead") {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		r := new(dns.Msg)
		r.SetReply(out)
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: out.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
		return r, nil
	}
	return n
}

func forwardingGateway(t *testing.T) (*Gateway, *atomic.Int32) {
	cfg := testConfig()
	cfg.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")}
	g, _ := newTestGateway(t, cfg)
	mustUpdate(t, g, dnsState())
	return g, fakeForwarding(g)
}

// TestOneTimeoutDoesNotStopForwarding: a member asks for a name whose
// servers do not answer, so the upstream times out; every member must
// still resolve other names (it used to put the upstream in backoff: every
// name failed for up to 30 s). Only several different names timing out
// say that the upstream itself is gone.
func TestOneTimeoutDoesNotStopForwarding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, sent := forwardingGateway(t)
		timeout := g.cfg.ForwardTimeout
		start := time.Now()
		for i := range 5 { // the same name again and again: one name
			if r := ask(g, srcMember, "dead.example.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("dead name, try %d: %s", i, dns.RcodeToString[r.Rcode])
			}
		}
		if took := time.Since(start); took != 5*timeout {
			t.Errorf("5 tries of a dead name took %v, want 5 forward timeouts (%v)", took, 5*timeout)
		}
		r := ask(g, srcMesh, "example.org.", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("after one name timed out, another member's query: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
		}

		// Different names time out with no success in between: the
		// upstream is gone, and queries fail fast.
		for _, name := range []string{"dead1.example.", "dead2.example.", "dead3.example."} {
			ask(g, srcMember, name, dns.TypeA)
		}
		before := sent.Load()
		start = time.Now()
		r = ask(g, srcMember, "example.net.", dns.TypeA)
		if r.Rcode != dns.RcodeServerFailure || !hasEDE(r, dns.ExtendedErrorCodeNetworkError) || time.Since(start) != 0 || sent.Load() != before {
			t.Errorf("after three names timed out: %s in %v, %d queries sent; want SERVFAIL (offline) at once",
				dns.RcodeToString[r.Rcode], time.Since(start), sent.Load()-before)
		}
		// After the backoff one query probes the upstream, and it is back.
		time.Sleep(g.cfg.UpstreamBackoff)
		if r = ask(g, srcMember, "example.net.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
			t.Errorf("after the backoff: %s", dns.RcodeToString[r.Rcode])
		}
	})
}

// TestDNSRefusesTheLAN: a LAN host sends queries to the booture's mesh
// address (the LAN reaches it: weak host model) to list the mesh's names.
// It gets none.
func TestDNSRefusesTheLAN(t *testing.T) {
	g, sent := forwardingGateway(t)
	for _, name := range []string{
		"diois.booture.internal.", "cloud.diois.booture.internal.", "photos.crest.booture.internal.",
		"booture.internal.", "example.org.",
	} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeNS, dns.TypeSOA} {
			r := ask(g, srcPublic, name, qt)
			if r.Rcode != dns.RcodeRefused || len(r.Answer)+len(r.Ns) != 0 || r.RecursionAvailable {
				t.Errorf("LAN asking %s %s: %s answer=%v ns=%v", name, dns.TypeToString[qt], dns.RcodeToString[r.Rcode], r.Answer, r.Ns)
			}
		}
	}
	if sent.Load() != 0 {
		t.Errorf("the LAN's queries went upstream %d times", sent.Load())
	}
	// Members still get both.
	if r := ask(g, srcMember, "photos.crest.booture.internal.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("member, mesh name: %v", r)
	}
}

// TestDNSRateLimitPerClient: a member that floods the DNS server is
// refused beyond its burst, without slowing another member; its bucket
// refills with time; the booture itself is not limited.
func TestDNSRateLimitPerClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.DNSClientRate, cfg.DNSClientBurst, cfg.DNSClients = 10, 20, 64
		g, _ := newTestGateway(t, cfg)
		mustUpdate(t, g, dnsState())
		refused := func(src string, n int) (k int) {
			for range n {
				r := ask(g, src, "diois.booture.internal.", dns.TypeA)
				if r.Rcode == dns.RcodeRefused {
					if !hasEDE(r, dns.ExtendedErrorCodeOther) {
						t.Errorf("refused without saying why: %v", r)
					}
					k++
				}
			}
			return k
		}
		if k := refused(srcMember, 100); k != 80 {
			t.Errorf("100 queries at once: %d refused, want 80 (burst 20)", k)
		}
		if k := refused(srcMesh, 20); k != 0 {
			t.Errorf("another client: %d of 20 refused", k)
		}
		if k := refused(srcSelf, 100); k != 0 {
			t.Errorf("the booture itself: %d of 100 refused", k)
		}
		time.Sleep(time.Second) // 10 more tokens
		if k := refused(srcMember, 11); k != 1 {
			t.Errorf("a second later: %d of 11 refused, want 1", k)
		}
		// Other bootures' sites count per /64 over IPv6 (a booture may use
		// every address of its site); this booture's members per address.
		for i := range 30 {
			ask(g, "[fd00:77:77:2::"+strconv.FormatInt(int64(i+2), 16)+"]:53", "diois.booture.internal.", dns.TypeA)
		}
		if k := refused("[fd00:77:77:2::99]:53", 1); k != 1 {
			t.Error("30 addresses of another site's /64 got 30 buckets")
		}
		if k := refused("[fd00:77:77:1::99]:53", 1); k != 0 {
			t.Error("a member of this booture shares a bucket")
		}
		// The map stays bounded, whatever the number of clients.
		for i := range 1000 {
			ask(g, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, byte(3 + i/250), byte(1 + i%250)}), 53).String(), "diois.booture.internal.", dns.TypeA)
		}
		if n := g.limits.size(); n > cfg.DNSClients {
			t.Errorf("%d clients tracked, bound %d", n, cfg.DNSClients)
		}
	})
}

// TestDNSDropsQueriesFromOtherInterfaces serves DNS on a loopback socket
// wrapped as Serve wraps the mesh sockets, while the gateway believes the
// mesh interface is another one and loopback does not count: a query (as
// from a LAN host, or with a forged mesh source) is dropped unanswered.
// Then loopback is allowed again and a second query is answered: the
// first answer the client reads is the second's.
func TestDNSDropsQueriesFromOtherInterfaces(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testDNSDrops(t, "udp4", "127.0.0.1:0") })
	t.Run("ipv6", func(t *testing.T) { testDNSDrops(t, "udp6", "[::1]:0") })
}

func testDNSDrops(t *testing.T, network, addr string) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo interface: %v", err)
	}
	var allowLoopback atomic.Bool
	ifaces := newIfaceSet("bt-mesh")
	ifaces.every = 0 // look again at every unknown index
	ifaces.lookup = func() ([]net.Interface, error) {
		ifs := []net.Interface{{Index: lo.Index + 1000, Name: "bt-mesh"}}
		if allowLoopback.Load() {
			ifs = append(ifs, *lo)
		}
		return ifs, nil
	}
	g, _ := newTestGateway(t, testConfig())
	mustUpdate(t, g, dnsState())
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	dropped := make(chan struct{}, 10)
	mc, err := meshOnly(pc, ifaces, func() { dropped <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: mc, Handler: g.DNSHandler(context.Background())}
	started, done := make(chan struct{}), make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })

	c, err := net.Dial(network, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(id uint16) {
		m := new(dns.Msg)
		m.SetQuestion("diois.booture.internal.", dns.TypeA)
		m.Id = id
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	select {
	case <-dropped:
	case <-time.After(10 * time.Second):
		t.Fatal("the query from a foreign interface was not dropped")
	}
	allowLoopback.Store(true)
	send(2)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1500)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b[:n]); err != nil {
		t.Fatal(err)
	}
	if r.Id != 2 || len(r.Answer) != 1 {
		t.Errorf("first answer read: id %d %v, want the second query's (the first dropped)", r.Id, r.Answer)
	}
}

// TestIfaceSetLooksUpAtMostOnceASecond: datagrams from unknown interfaces
// (a LAN flood) do not make the server list the interfaces at each one, but
// an interface made anew is found within a second.
func TestIfaceSetLooksUpAtMostOnceASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lookups := 0
		mesh := 7
		s := newIfaceSet("booture0")
		s.lookup = func() ([]net.Interface, error) {
			lookups++
			return []net.Interface{{Index: 1, Name: "lo", Flags: net.FlagLoopback}, {Index: mesh, Name: "booture0"}}, nil
		}
		if !s.allowed(1) || !s.allowed(7) || s.allowed(2) || s.allowed(0) {
			t.Error("wrong verdicts")
		}
		for range 1000 {
			s.allowed(2)
		}
		if lookups != 1 {
			t.Errorf("%d lookups for 1000 datagrams of an unknown interface", lookups)
		}
		mesh = 9 // the interface was made anew
		time.Sleep(time.Second)
		if !s.allowed(9) || s.allowed(7) {
			t.Error("the new index of the mesh interface is not found")
		}
	})
}
