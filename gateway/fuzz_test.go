package gateway

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func FuzzDNSQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"diois.booture.internal.", dns.TypeA},
		{"Cloud.Diois.Booture.Internal.", dns.TypeAAAA},
		{"x.y.z.booture.internal.", dns.TypeANY},
		{"booture.internal.", dns.TypeSOA},
		{"example.org.", dns.TypeA},
		{".", dns.TypeNS},
		{"a\\000b.diois.booture.internal.", dns.TypeTXT},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b, false, false)
		m.SetEdns0(4096, true)
		b, _ = m.Pack()
		f.Add(b, true, true)
	}
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'}, false, false)
	f.Add([]byte("garbage that is not dns at all"), true, false)

	g, _ := newTestGateway(f, testConfig()) // no upstream: forwards fail fast, offline
	if err := g.Update(dnsState()); err != nil {
		f.Fatal(err)
	}
	h := g.DNSHandler(context.Background())
	f.Fuzz(func(t *testing.T, data []byte, public, tcp bool) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return // the dns server answers FORMERR itself
		}
		src := netip.MustParseAddrPort("10.77.1.5:5353")
		if public {
			src = netip.MustParseAddrPort("192.0.2.10:5353")
		}
		var remote net.Addr = net.UDPAddrFromAddrPort(src)
		if tcp {
			remote = net.TCPAddrFromAddrPort(src)
		}
		w := &fakeWriter{remote: remote}
		h.ServeDNS(w, m)
		switch {
		case m.Response && w.msg != nil:
			t.Fatalf("answered a response: %v", w.msg)
		case !m.Response && w.msg == nil:
			t.Fatalf("no answer (or an answer that does not pack) to %v", m)
		case w.msg != nil && w.msg.Id != m.Id:
			t.Fatalf("id %d, want %d", w.msg.Id, m.Id)
		case w.msg != nil && public && w.msg.RecursionAvailable:
			t.Fatalf("recursion offered to the LAN")
		}
	})
}

func FuzzHostName(f *testing.F) {
	for _, s := range []string{
		"cloud.diois.booture.internal", "CLOUD.Diois.booture.internal.:80", "[::1]:80", "[fe80::1%eth0]", "[FD00::1]",
		"10.77.1.1:8080", "::1", "a..b", ".", "", ":", "x:y", "[", "]:", "diois.booture.internal",
		"photos.crest.booture.internal", "crest.booture.internal", "a.b.c.booture.internal",
	} {
		f.Add(s)
	}
	g, _ := newTestGateway(f, testConfig())
	if err := g.Update(dnsState()); err != nil {
		f.Fatal(err)
	}
	s := g.snap.Load()
	f.Fuzz(func(t *testing.T, in string) {
		h, ok := hostName(in)
		if !ok {
			if h != "" {
				t.Fatalf("rejected %q but returned %q", in, h)
			}
			return
		}
		if strings.ContainsFunc(h, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
			t.Fatalf("hostName(%q) = %q: not lower case", in, h)
		}
		if h2, ok := hostName(h); !ok || h2 != h {
			t.Fatalf("hostName not idempotent: %q -> %q -> %q, %v", in, h, h2, ok)
		}
		m := s.lookupHost(h)
		if m.kind == hostLocal && m.routes == nil {
			t.Fatalf("local host %q without routes", h)
		}
		_ = isIPLiteral(h)
	})
}
