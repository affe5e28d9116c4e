package gateway

import (
	"context"
	"net"
	"net/netip"
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
