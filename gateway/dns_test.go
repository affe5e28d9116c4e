package gateway

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
)

func dnsState() State {
	return state([]catalog.Route{{Service: "cloud", Host: cloudHost, Upstream: "http://127.0.0.1:1"}},
		svc("photos", "crest", catalog.AccessMesh, catalog.HealthHealthy),
		svc("ghost", "nowhere", catalog.AccessMesh, catalog.HealthHealthy), // booture unknown: no address
	)
}

// query asks addr over net ("udp" or "tcp") with a client timeout far
// above what any answer should take.
func query(t *testing.T, netw, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: netw, Timeout: 30 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", netw, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("id %d, want %d", r.Id, m.Id)
	}
	return r
}

func TestDNSMeshNames(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	addr := startDNS(t, g)
	if r := query(t, "udp", addr, "diois.booture.internal.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("before the first Update: got %s, want SERVFAIL (nothing cached)", dns.RcodeToString[r.Rcode])
	}
	mustUpdate(t, g, dnsState())
	type want struct {
		rcode  int
		answer []string // A/AAAA values
		soa    bool
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  want
	}{
		{"diois.booture.internal.", dns.TypeA, want{dns.RcodeSuccess, []string{"10.77.1.1"}, false}},
		{"DiOiS.BOOTURE.internal.", dns.TypeAAAA, want{dns.RcodeSuccess, []string{"fd00:77:77:1::1"}, false}},
		{"cloud.diois.booture.internal.", dns.TypeA, want{dns.RcodeSuccess, []string{"10.77.1.1"}, false}},
		{"Cloud.Diois.Booture.Internal.", dns.TypeANY, want{dns.RcodeSuccess, []string{"10.77.1.1", "fd00:77:77:1::1"}, false}},
		{"photos.crest.booture.internal.", dns.TypeA, want{dns.RcodeSuccess, []string{"10.77.2.1"}, false}},
		{"photos.crest.booture.internal.", dns.TypeAAAA, want{dns.RcodeSuccess, nil, true}}, // NODATA: crest has no IPv6
		{"crest.booture.internal.", dns.TypeAAAA, want{dns.RcodeSuccess, nil, true}},
		{"diois.booture.internal.", dns.TypeMX, want{dns.RcodeSuccess, nil, true}},
		{"booture.internal.", dns.TypeA, want{dns.RcodeSuccess, nil, true}},
		{"nope.diois.booture.internal.", dns.TypeA, want{dns.RcodeNameError, nil, true}},
		{"photos.diois.booture.internal.", dns.TypeA, want{dns.RcodeNameError, nil, true}},
		{"ghost.nowhere.booture.internal.", dns.TypeA, want{dns.RcodeNameError, nil, true}},
		{"a.cloud.diois.booture.internal.", dns.TypeA, want{dns.RcodeNameError, nil, true}},
		{"nobody.booture.internal.", dns.TypeAAAA, want{dns.RcodeNameError, nil, true}},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			r := query(t, netw, addr, tc.name, tc.qtype)
			var got []string
			for _, rr := range r.Answer {
				if !strings.EqualFold(rr.Header().Name, tc.name) || rr.Header().Name != tc.name {
					t.Errorf("%s: answer owner %q does not echo the question", tc.name, rr.Header().Name)
				}
				switch rr := rr.(type) {
				case *dns.A:
					got = append(got, rr.A.String())
				case *dns.AAAA:
					got = append(got, rr.AAAA.String())
				}
				if rr.Header().Ttl != 60 {
					t.Errorf("%s: ttl %d", tc.name, rr.Header().Ttl)
				}
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if r.Rcode != tc.want.rcode || !slices.Equal(got, tc.want.answer) || hasSOA != tc.want.soa || !r.Authoritative {
				t.Errorf("%s %s %s: got %s %v soa=%v aa=%v, want %s %v soa=%v", netw, tc.name, dns.TypeToString[tc.qtype],
					dns.RcodeToString[r.Rcode], got, hasSOA, r.Authoritative, dns.RcodeToString[tc.want.rcode], tc.want.answer, tc.want.soa)
			}
			if hasSOA {
				soa := r.Ns[0].(*dns.SOA)
				if soa.Minttl != 10 || soa.Hdr.Ttl != 10 || soa.Ns != "diois.booture.internal." || soa.Hdr.Name != "booture.internal." {
					t.Errorf("%s: soa %v", tc.name, soa)
				}
			}
		}
	}
	r := query(t, "udp", addr, "booture.internal.", dns.TypeSOA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("SOA at the apex: %v", r.Answer)
	}
	r = query(t, "udp", addr, "booture.internal.", dns.TypeNS)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "diois.booture.internal." {
		t.Errorf("NS at the apex: %v", r.Answer)
	}
}

// fakeWriter is a dns.ResponseWriter with a chosen source address.
type fakeWriter struct {
	remote net.Addr
	msg    *dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(10, 77, 1, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	if _, err := m.Pack(); err != nil {
		return err
	}
	w.msg = m
	return nil
}
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

func ask(g *Gateway, src string, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	w := &fakeWriter{remote: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(src))}
	g.DNSHandler(context.Background()).ServeDNS(w, m)
	return w.msg
}

func hasEDE(m *dns.Msg, code uint16) bool {
	opt := m.IsEdns0()
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok && e.InfoCode == code {
			return true
		}
	}
	return false
}

func TestDNSGarbage(t *testing.T) {
	g, _ := newTestGateway(t, testConfig())
	mustUpdate(t, g, dnsState())
	addr := startDNS(t, g)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange := func(b []byte) *dns.Msg {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("unparsable answer: %v", err)
		}
		return m
	}
	two := new(dns.Msg)
	two.Id = 7
	two.Question = []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	twoB, _ := two.Pack()
	update := new(dns.Msg)
	update.SetUpdate("booture.internal.")
	updateB, _ := update.Pack()
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  int // -1: no answer
	}{
		{"truncated question", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'}, dns.RcodeFormatError},
		{"two questions", twoB, dns.RcodeFormatError},
		{"update", updateB, dns.RcodeNotImplemented},
		{"a response", []byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, -1},
	} {
		m := exchange(tc.bytes)
		switch {
		case tc.want == -1 && m != nil:
			t.Errorf("%s: answered %v", tc.name, m)
		case tc.want >= 0 && m == nil:
			t.Errorf("%s: no answer", tc.name)
		case tc.want >= 0 && m.Rcode != tc.want:
			t.Errorf("%s: got %s, want %s", tc.name, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.want])
		}
	}
	// The server still answers after all that.
	if r := query(t, "udp", addr, "diois.booture.internal.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after garbage: %v", r)
	}
	// EDNS version 1: BADVERS.
	m := new(dns.Msg)
	m.SetQuestion("diois.booture.internal.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: %v, %v", r, err)
	}
}

// TestServeDNS runs the real Serve with DNS and HTTP on loopback, and checks
// that an upstream equal to our own socket is never used (a loop).
func TestServeDNS(t *testing.T) {
	var ap netip.AddrPort
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap = netip.MustParseAddrPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp4", ap.String())
		pc.Close()
		if err == nil {
			ln.Close()
			break
		}
	}
	cfg := testConfig()
	cfg.Upstreams = []netip.AddrPort{ap}
	cfg.ForwardTimeout = 10 * time.Second
	g, _ := newTestGateway(t, cfg)
	mustUpdate(t, g, dnsState())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, Listen{DNS: []netip.AddrPort{ap}}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return")
		}
	})
	var r *dns.Msg
	waitfor.NoError(t, 10*time.Second, "the DNS listener", func() error {
		m := new(dns.Msg)
		m.SetQuestion("diois.booture.internal.", dns.TypeA)
		var err error
		r, _, err = (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(m, ap.String())
		return err
	})
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("mesh name through Serve: %v", r)
	}
	var fr *dns.Msg
	d := elapsed(func() { fr = query(t, "udp", ap.String(), "example.org.", dns.TypeA) })
	if fr.Rcode != dns.RcodeServerFailure || d > cfg.ForwardTimeout/2 {
		t.Errorf("upstream = ourselves: %s in %v", dns.RcodeToString[fr.Rcode], d)
	}
}
