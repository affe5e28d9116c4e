package gateway

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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

// fakeUpstream is a loopback resolver that knows one name.
func fakeUpstream(t *testing.T) (addr netip.AddrPort, queries *atomic.Int32, last *atomic.Pointer[dns.Msg]) {
	t.Helper()
	queries, last = new(atomic.Int32), new(atomic.Pointer[dns.Msg])
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		queries.Add(1)
		last.Store(req.Copy())
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		if strings.EqualFold(req.Question[0].Name, "example.org.") && req.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		if opt := req.IsEdns0(); opt != nil {
			m.SetEdns0(4096, false)
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return netip.MustParseAddrPort(pc.LocalAddr().String()), queries, last
}

func TestDNSForward(t *testing.T) {
	up, queries, last := fakeUpstream(t)
	cfg := testConfig()
	cfg.Upstreams = []netip.AddrPort{up}
	g, _ := newTestGateway(t, cfg)
	mustUpdate(t, g, dnsState())
	addr := startDNS(t, g)
	for _, netw := range []string{"udp", "tcp"} {
		r := query(t, netw, addr, "ExAmple.ORG.", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" || !r.RecursionAvailable {
			t.Fatalf("forwarded answer: %v", r)
		}
		if r.Question[0].Name != "ExAmple.ORG." {
			t.Errorf("question case not preserved: %q", r.Question[0].Name)
		}
		if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
			t.Errorf("answer EDNS: %v", opt)
		}
	}
	if r := query(t, "udp", addr, "nope.example.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("upstream NXDOMAIN: got %s", dns.RcodeToString[r.Rcode])
	}
	sent := last.Load()
	if !sent.RecursionDesired || sent.IsEdns0() == nil || sent.IsEdns0().UDPSize() != ednsSize {
		t.Errorf("query sent upstream: %v", sent)
	}
	if n := queries.Load(); n != 3 {
		t.Errorf("upstream got %d queries, want 3", n)
	}
	// Mesh names never go upstream.
	query(t, "udp", addr, "diois.booture.internal.", dns.TypeA)
	if n := queries.Load(); n != 3 {
		t.Errorf("a mesh name went upstream")
	}

	// The LAN gets no recursion (nor mesh names: TestDNSRefusesTheLAN).
	r := ask(g, "192.0.2.10:5353", "example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeRefused || r.RecursionAvailable || queries.Load() != 3 {
		t.Errorf("public source: got %s ra=%v", dns.RcodeToString[r.Rcode], r.RecursionAvailable)
	}
	for _, src := range []string{"10.77.2.9:5353", "[fd00:77:77:1::7]:5353", "10.77.1.1:5353"} {
		if r := ask(g, src, "example.org.", dns.TypeA); r.Rcode != dns.RcodeSuccess || !r.RecursionAvailable {
			t.Errorf("mesh source %s: got %s", src, dns.RcodeToString[r.Rcode])
		}
	}
}

// elapsed returns how long f took.
func elapsed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// The forward timeout is long (10 s): answers that come well before it did
// not wait for it. Bounds are generous for slow machines; the real figures
// are microseconds.
func TestDNSFailFast(t *testing.T) {
	const forwardTimeout = 10 * time.Second
	const fast = forwardTimeout / 2

	deadPort := func() netip.AddrPort {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return netip.MustParseAddrPort(pc.LocalAddr().String())
	}

	for _, tc := range []struct {
		name      string
		upstreams []netip.AddrPort
	}{
		{"no upstream", nil},
		{"dead port", []netip.AddrPort{deadPort()}},
		{"own address", []netip.AddrPort{netip.MustParseAddrPort("10.77.1.1:53")}}, // would loop
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ForwardTimeout = forwardTimeout
			cfg.Upstreams = tc.upstreams
			g, _ := newTestGateway(t, cfg)
			mustUpdate(t, g, dnsState())
			addr := startDNS(t, g)
			for i := range 3 {
				var r *dns.Msg
				d := elapsed(func() { r = query(t, "udp", addr, "example.org.", dns.TypeA) })
				if r.Rcode != dns.RcodeServerFailure {
					t.Fatalf("query %d: got %s, want SERVFAIL", i, dns.RcodeToString[r.Rcode])
				}
				if d > fast {
					t.Errorf("query %d took %v: it waited for the forward timeout", i, d)
				}
				if i > 0 && !hasEDE(r, dns.ExtendedErrorCodeNetworkError) {
					t.Errorf("query %d: no 'offline' extended error: %v", i, r)
				}
				t.Logf("query %d: %v", i, d)
			}
		})
	}
}

// TestDNSBlackhole: an upstream that swallows queries costs a timeout for
// each of UpstreamDownAfter different names, then queries fail fast until
// its backoff ends.
func TestDNSBlackhole(t *testing.T) {
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })
	cfg := testConfig()
	cfg.ForwardTimeout = 2 * time.Second
	cfg.UpstreamBackoff = time.Minute
	cfg.UpstreamBackoffMax = time.Minute
	cfg.Upstreams = []netip.AddrPort{netip.MustParseAddrPort(hole.LocalAddr().String())}
	g, _ := newTestGateway(t, cfg)
	mustUpdate(t, g, dnsState())
	addr := startDNS(t, g)
	// Different names at once: the test waits for one timeout.
	errs := make(chan string, cfg.UpstreamDownAfter)
	for i := range cfg.UpstreamDownAfter {
		go func() {
			m := new(dns.Msg)
			m.SetQuestion("name"+strconv.Itoa(i)+".example.", dns.TypeA)
			m.SetEdns0(1232, false)
			r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, addr)
			switch {
			case err != nil:
				errs <- err.Error()
			case r.Rcode != dns.RcodeServerFailure || !hasEDE(r, dns.ExtendedErrorCodeNoReachableAuthority):
				errs <- r.String()
			default:
				errs <- ""
			}
		}()
	}
	for range cfg.UpstreamDownAfter {
		if e := <-errs; e != "" {
			t.Fatalf("query that timed out: %s", e)
		}
	}
	for i := range 3 {
		var r *dns.Msg
		d := elapsed(func() { r = query(t, "udp", addr, "example.org.", dns.TypeA) })
		if r.Rcode != dns.RcodeServerFailure || d > cfg.ForwardTimeout/2 {
			t.Errorf("query %d after a timeout: %s in %v, want SERVFAIL well under %v", i, dns.RcodeToString[r.Rcode], d, cfg.ForwardTimeout)
		}
	}
}

func TestUpstreamBackoff(t *testing.T) {
	u := &upstream{}
	t0 := time.Unix(1000, 0)
	r := healthRules{backoff: time.Second, backoffMax: 8 * time.Second, window: time.Minute, downAfter: 3}
	maxB := r.backoffMax
	if !u.take(t0) {
		t.Fatal("a new upstream is not usable")
	}
	if !u.done(t0, unreachable, "a.", r) {
		t.Error("first failure not reported as a change")
	}
	if u.take(t0.Add(999 * time.Millisecond)) {
		t.Error("usable during its backoff")
	}
	if !u.take(t0.Add(time.Second)) {
		t.Error("no probe after the backoff")
	}
	if u.take(t0.Add(time.Second)) {
		t.Error("two probes at once")
	}
	u.done(t0.Add(time.Second), nameFailed, "a.", r) // a failed probe: backoff 2s
	if u.take(t0.Add(2900*time.Millisecond)) || !u.take(t0.Add(3*time.Second)) {
		t.Error("backoff did not double")
	}
	for range 40 { // capped, no overflow
		u.done(t0, unreachable, "a.", r)
	}
	if u.take(t0.Add(maxB-time.Millisecond)) || !u.take(t0.Add(maxB)) {
		t.Error("backoff not capped at max")
	}
	if !u.done(t0, answered, "a.", r) || !u.take(t0) {
		t.Error("a success does not bring it back")
	}
}

// TestUpstreamDownAfterDifferentNames: names that fail (time out) put an
// upstream down only when enough different ones fail within the window
// with no answer in between.
func TestUpstreamDownAfterDifferentNames(t *testing.T) {
	r := healthRules{backoff: time.Second, backoffMax: 8 * time.Second, window: time.Minute, downAfter: 3}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		steps []string // name that fails, or "+" for an answer
		gap   time.Duration
		down  bool
	}{
		{"one name many times", []string{"a.", "a.", "a.", "a.", "a."}, 0, false},
		{"two names", []string{"a.", "b.", "a.", "b."}, 0, false},
		{"three names", []string{"a.", "b.", "c."}, 0, true},
		{"an answer in between", []string{"a.", "b.", "+", "c."}, 0, false},
		{"spread beyond the window", []string{"a.", "b.", "c."}, 40 * time.Second, false},
	} {
		u := &upstream{}
		now := t0
		changed := false
		for _, st := range tc.steps {
			o := nameFailed
			if st == "+" {
				o = answered
			}
			changed = u.done(now, o, st, r) || changed
			now = now.Add(tc.gap)
		}
		if got := !u.up(now); got != tc.down || changed != tc.down {
			t.Errorf("%s: down=%v changed=%v, want %v", tc.name, got, changed, tc.down)
		}
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	resolved := write("resolved.conf", "nameserver 198.51.100.53\nnameserver 2001:db8::53\n")
	for _, tc := range []struct {
		content string
		want    string
	}{
		{"nameserver 198.51.100.1\nnameserver 198.51.100.2\n", "198.51.100.1:53 198.51.100.2:53"},
		{"# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0\n", "198.51.100.53:53 [2001:db8::53]:53"},
		{"nameserver ::1\nnameserver 0.0.0.0\nnameserver 198.51.100.1\n", "198.51.100.1:53 198.51.100.53:53 [2001:db8::53]:53"},
		{"nameserver fe80::1%eth0\nnameserver not-an-address\n", "[fe80::1%eth0]:53"},
		{"", ""},
	} {
		got, err := readResolvConf(write("resolv.conf", tc.content), resolved)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if strings.Join(s, " ") != tc.want {
			t.Errorf("%q: got %v, want %s", tc.content, s, tc.want)
		}
	}
	if _, err := readResolvConf(filepath.Join(dir, "missing"), ""); err == nil {
		t.Error("no error for a missing resolv.conf")
	}
	// Missing resolved file: the stub is skipped, nothing else.
	got, err := readResolvConf(write("r2", "nameserver 127.0.0.53\n"), filepath.Join(dir, "missing"))
	if err != nil || len(got) != 0 {
		t.Errorf("stub without resolved: %v, %v", got, err)
	}

	// The gateway re-reads it (no query is sent to 198.51.100.7: only the
	// list is checked).
	p := write("live.conf", "")
	cfg := testConfig()
	cfg.ResolvConf, cfg.ResolvedConf = p, ""
	cfg.ResolvConfCheck = time.Hour
	g, _ := newTestGateway(t, cfg)
	mustUpdate(t, g, dnsState())
	now := time.Unix(1000, 0)
	g.fwd.now = func() time.Time { return now }
	if r := ask(g, "10.77.1.5:5353", "example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("empty resolv.conf: %v", r)
	}
	write("live.conf", "nameserver 198.51.100.7\n")
	if r := ask(g, "10.77.1.5:5353", "example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("re-read before ResolvConfCheck: %v", r)
	}
	now = now.Add(time.Hour)
	g.fwd.upstreams(now)
	g.fwd.mu.Lock()
	set := g.fwd.set
	g.fwd.mu.Unlock()
	if len(set) != 1 || set[0].addr.String() != "198.51.100.7:53" {
		t.Fatalf("after re-read: %v", set)
	}
}
