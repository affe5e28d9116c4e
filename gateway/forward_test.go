package gateway

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// switchableUpstream is a loopback resolver on a fixed port that the test
// turns on and off: off, nothing listens there, and a query gets "port
// unreachable" at once (a network error without waiting for a timeout).
// Its server goroutines run outside any synctest bubble (a goroutine of
// the bubble blocked reading a socket would stop the bubble's clock), so
// the bubble asks a controller goroutine to switch it.
type switchableUpstream struct {
	addr netip.AddrPort
	ctl  chan bool // true: on, false: off
	ack  chan error
}

func newSwitchableUpstream(t *testing.T) *switchableUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &switchableUpstream{
		addr: netip.MustParseAddrPort(pc.LocalAddr().String()),
		ctl:  make(chan bool), ack: make(chan error),
	}
	pc.Close()
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var srv *dns.Server
		var served chan struct{}
		off := func() {
			if srv != nil {
				_ = srv.Shutdown()
				<-served
				srv = nil
			}
		}
		defer off()
		for {
			select {
			case <-stop:
				return
			case on := <-u.ctl:
				if !on {
					off()
					u.ack <- nil
					continue
				}
				pc, err := net.ListenPacket("udp4", u.addr.String())
				if err != nil {
					u.ack <- err
					continue
				}
				srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(answerExampleOrg)}
				started := make(chan struct{})
				srv.NotifyStartedFunc = func() { close(started) }
				served = make(chan struct{})
				go func() { defer close(served); _ = srv.ActivateAndServe() }()
				<-started
				u.ack <- nil
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })
	return u
}

func (u *switchableUpstream) set(t *testing.T, on bool) {
	t.Helper()
	u.ctl <- on
	if err := <-u.ack; err != nil {
		t.Fatalf("switching the upstream on: %v", err)
	}
}

// answerExampleOrg answers example.org A with 192.0.2.1.
func answerExampleOrg(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
	_ = w.WriteMsg(m)
}

// TestDNSUpstreamBackoff follows an unreachable upstream on synctest's
// clock: the forwarder tries it again after the backoff (1 s, doubling up
// to the maximum), answers "offline" without trying it in between, and
// forwards again from the first try after the upstream came back.
func TestDNSUpstreamBackoff(t *testing.T) {
	up := newSwitchableUpstream(t)
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Upstreams = []netip.AddrPort{up.addr}
		cfg.UpstreamBackoff, cfg.UpstreamBackoffMax = time.Second, 8*time.Second
		g, _ := newTestGateway(t, cfg)
		mustUpdate(t, g, dnsState())
		start := time.Now()
		// outcome asks for a name outside the mesh, as a member would.
		outcome := func() string {
			r := ask(g, srcMember, "example.org.", dns.TypeA)
			switch {
			case r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1:
				return "answered"
			case r.Rcode == dns.RcodeServerFailure && hasEDE(r, dns.ExtendedErrorCodeNetworkError):
				return "skipped" // offline: not tried
			case r.Rcode == dns.RcodeServerFailure && hasEDE(r, dns.ExtendedErrorCodeNoReachableAuthority):
				return "tried"
			}
			t.Fatalf("unexpected answer at %v: %v", time.Since(start), r)
			return ""
		}

		// Down: tried at 0, then after 1, 2, 4, 8, 8 s.
		var tries []time.Duration
		for time.Since(start) < 32*time.Second {
			if outcome() == "tried" {
				tries = append(tries, time.Since(start))
			}
			time.Sleep(250 * time.Millisecond)
		}
		want := []time.Duration{0, 1, 3, 7, 15, 23, 31}
		for i := range want {
			want[i] *= time.Second
		}
		if !slices.Equal(tries, want) {
			t.Fatalf("tried the unreachable upstream at %v, want %v", tries, want)
		}

		// Back up: still skipped until its backoff ends (39 s), then
		// forwarded at once, and from then on.
		up.set(t, true)
		time.Sleep(39*time.Second - time.Since(start) - time.Millisecond)
		if got := outcome(); got != "skipped" {
			t.Errorf("just before the backoff ends: %s, want skipped", got)
		}
		time.Sleep(time.Millisecond)
		for i := range 3 {
			if got := outcome(); got != "answered" {
				t.Errorf("query %d once the upstream is back and its backoff over: %s, want answered", i, got)
			}
		}

		// Down again: backoff starts again from 1 s.
		up.set(t, false)
		restart := time.Since(start)
		if got := outcome(); got != "tried" {
			t.Fatalf("first query after the upstream went down again: %s, want tried", got)
		}
		time.Sleep(time.Second - time.Millisecond)
		if got := outcome(); got != "skipped" {
			t.Errorf("%v after going down again: %s, want skipped", time.Since(start)-restart, got)
		}
		time.Sleep(time.Millisecond)
		if got := outcome(); got != "tried" {
			t.Errorf("1 s after going down again: %s, want tried (the backoff starts again from 1 s)", got)
		}
	})
}
