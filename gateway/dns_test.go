package gateway

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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

func TestAudienceMay(t *testing.T) {
	for _, tc := range []struct {
		a    Audience
		acc  catalog.Access
		want bool
	}{
		{AudienceSelf, catalog.AccessMembers, true},
		{AudienceMember, catalog.AccessMembers, true},
		{AudienceMesh, catalog.AccessMembers, false},
		{AudiencePublic, catalog.AccessMembers, false},
		{AudienceMesh, catalog.AccessMesh, true},
		{AudiencePublic, catalog.AccessMesh, false},
		{AudiencePublic, catalog.AccessPublic, true},
		{AudienceMember, "", true},
		{AudienceMesh, "", false},
		{AudienceMember, "bogus", false},
		{AudienceSelf, "bogus", true},
	} {
		if got := tc.a.May(tc.acc); got != tc.want {
			t.Errorf("%s may %q: got %v", tc.a, tc.acc, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Domain = "Bad_Domain"
	c.ForwardTimeout = 0
	c.MaxForwards = -1
	c.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")}
	err := c.Validate()
	for _, want := range []string{"domain", "forward timeout", "max forwards", "upstream"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v lacks %q", err, want)
		}
	}
	if _, err := New(c, nil, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}
